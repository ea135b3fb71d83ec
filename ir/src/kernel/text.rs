//! The Kernel IR text format: printer and parser.
