//! Signatures of kernels, parallel bodies and the runtime's parallel-for,
//! and the attributes every generated function carries.

use inkwell::AddressSpace;
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::context::Context;
use inkwell::types::{BasicMetadataTypeEnum, BasicTypeEnum, FunctionType};
use inkwell::values::FunctionValue;

use super::settings::Machine;
use saturn_ir::kernel::Buf;

/// `void (ptr bufs, ptr dims, ptr rt)`: the kernel ABI.
pub(super) fn kernel_type(c: &Context) -> FunctionType<'_> {
    let p = c.ptr_type(AddressSpace::default());
    c.void_type()
        .fn_type(&[p.into(), p.into(), p.into()], false)
}

/// `void (ptr ctx, i64 lo, i64 hi)`: an outlined parallel body.
pub(super) fn body_type(c: &Context) -> FunctionType<'_> {
    let p = c.ptr_type(AddressSpace::default());
    let i = c.i64_type();
    c.void_type()
        .fn_type(&[p.into(), i.into(), i.into()], false)
}

/// `void saturn_parallel_for(ptr rt, ptr body, ptr ctx, i64 start, i64
/// end, i64 step)`.
pub(super) fn parallel_for_type(c: &Context) -> FunctionType<'_> {
    let p = c.ptr_type(AddressSpace::default());
    let i = c.i64_type();
    c.void_type().fn_type(
        &[p.into(), p.into(), p.into(), i.into(), i.into(), i.into()],
        false,
    )
}

/// The function type of an inner body: every buffer as its own pointer,
/// then `extra` (dims, the runtime pointer, captures, bounds).
pub(super) fn inner_type<'ctx>(
    c: &'ctx Context,
    bufs: usize,
    extra: &[BasicTypeEnum<'ctx>],
) -> FunctionType<'ctx> {
    let p = c.ptr_type(AddressSpace::default());
    let mut params: Vec<BasicMetadataTypeEnum> = vec![p.into(); bufs];
    params.extend(extra.iter().map(|&t| BasicMetadataTypeEnum::from(t)));
    c.void_type().fn_type(&params, false)
}

fn enum_attr(c: &Context, name: &str) -> Attribute {
    c.create_enum_attribute(Attribute::get_named_enum_kind_id(name), 0)
}

/// Target CPU and features, vector width, and no unwinding, on `f`.
pub(super) fn machine_attrs(c: &Context, f: FunctionValue, m: &Machine) {
    let fnloc = AttributeLoc::Function;
    f.add_attribute(fnloc, c.create_string_attribute("target-cpu", &m.cpu));
    if !m.features.is_empty() {
        f.add_attribute(
            fnloc,
            c.create_string_attribute("target-features", &m.features),
        );
    }
    // Kernel IR vectors are as wide as the target's registers: keep them
    // whole rather than split to a narrower preferred width.
    let bits = m.vector_bits().to_string();
    f.add_attribute(
        fnloc,
        c.create_string_attribute("prefer-vector-width", &bits),
    );
    f.add_attribute(
        fnloc,
        c.create_string_attribute("min-legal-vector-width", &bits),
    );
    f.add_attribute(fnloc, enum_attr(c, "nounwind"));
}

/// Inner bodies: inlined into their wrapper, buffers never alias (the
/// memory plan gives every buffer of one call its own memory), except an
/// output that may reuse an input's memory and that input.
pub(super) fn inner_attrs(c: &Context, f: FunctionValue, bufs: &[Buf]) {
    f.add_attribute(AttributeLoc::Function, enum_attr(c, "alwaysinline"));
    let shared: Vec<usize> = bufs
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.reuses.map(|r| [i, r.0 as usize]))
        .flatten()
        .collect();
    for i in (0..bufs.len()).filter(|i| !shared.contains(i)) {
        f.add_attribute(AttributeLoc::Param(i as u32), enum_attr(c, "noalias"));
    }
}
