//! C functions the JIT provides itself, so that kernels compiled into this
//! process never depend on what the process happens to link: the libm
//! functions kernels call by name (`expf`, `powf`, …) and the ones
//! Cranelift calls for instructions a CPU lacks (`floorf`, `fmaf`, …).
//! All come from the `libm` crate (`native::libm_symbols`). (The code generator emits no shuffle
//! that would need Cranelift's `__cranelift_x86_pshufb` helper on x86-64
//! without SSSE3.) An object file instead leaves them to the system libm at
//! link time.

/// Name and address of every function the JIT provides.
pub(super) fn builtins() -> &'static [(&'static str, *const u8)] {
    crate::native::libm_symbols()
}
