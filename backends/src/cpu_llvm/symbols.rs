//! C functions the JIT provides itself (the libm functions kernels call
//! by name, and the ones LLVM calls for operations a CPU lacks, such as
//! `fmodf` for a vector remainder), so that kernels compiled into this
//! process never depend on what the process happens to link. An object
//! file instead leaves them to the system libm at link time.

/// Name and address of every function the JIT provides.
pub(super) fn builtins() -> &'static [(&'static str, *const u8)] {
    crate::native::libm_symbols()
}
