//! A reference evaluator for Kernel IR.
