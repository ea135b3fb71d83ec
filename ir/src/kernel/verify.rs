//! The Kernel IR verifier.
