//! Signatures of kernels, parallel bodies and imported functions, and the
//! layout of the context block a parallel loop hands to its body.

use super::value::scalar_type;
use cranelift_codegen::ir::{AbiParam, ArgumentExtension, Signature, Type, types};
use cranelift_module::Module;
use saturn_ir::DType;

/// `(bufs: *const *mut u8, dims: *const i64, rt: *mut c_void)`.
pub(super) fn kernel_sig(m: &dyn Module) -> Signature {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.extend([AbiParam::new(ptr); 3]);
    sig
}

/// `(ctx: *const u8, lo: i64, hi: i64)`.
pub(super) fn body_sig(m: &dyn Module) -> Signature {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.push(AbiParam::new(ptr));
    sig.params.extend([AbiParam::new(types::I64); 2]);
    sig
}

/// `saturn_parallel_for(rt, body, ctx, start, end, step)`.
pub(super) fn parallel_for_sig(m: &dyn Module) -> Signature {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.extend([AbiParam::new(ptr); 3]);
    sig.params.extend([AbiParam::new(types::I64); 3]);
    sig
}

/// A C function taking scalars of `args` and returning `ret`; narrow
/// integers are extended as the C ABI wants (bool as unsigned).
pub(super) fn call_sig(m: &dyn Module, args: &[DType], ret: Option<DType>) -> Option<Signature> {
    let param = |d: DType| -> Option<AbiParam> {
        let t = scalar_type(d)?;
        let p = AbiParam::new(t);
        Some(if t.is_int() && t.bits() < 32 {
            if d.is_signed_int() {
                p.sext()
            } else {
                p.uext()
            }
        } else {
            p
        })
    };
    let mut sig = m.make_signature();
    for &d in args {
        sig.params.push(param(d)?);
    }
    if let Some(d) = ret {
        sig.returns.push(param(d)?);
    }
    debug_assert!(
        sig.params
            .iter()
            .all(|p| p.extension == ArgumentExtension::None || p.value_type.bits() < 32)
    );
    Some(sig)
}

/// Byte offsets of values of `types` laid out one after another, each
/// aligned to its size (at most 16), and the total size.
pub(super) fn ctx_layout(types: &[Type]) -> (Vec<u32>, u32) {
    let mut offsets = Vec::with_capacity(types.len());
    let mut at = 0u32;
    for t in types {
        let align = t.bytes().clamp(1, 16);
        at = at.div_ceil(align) * align;
        offsets.push(at);
        at += t.bytes();
    }
    (offsets, at.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_layout_aligns_vectors() {
        let (offs, size) = ctx_layout(&[types::I64, types::I8, types::F32X4, types::I32]);
        assert_eq!(offs, vec![0, 8, 16, 32]);
        assert_eq!(size, 36);
    }
}
