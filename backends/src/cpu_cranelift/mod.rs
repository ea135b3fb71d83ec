//! Kernel IR to machine code through Cranelift.
