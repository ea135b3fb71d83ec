//! Running a lowered graph step by step with any kernel executor (the
//! Kernel IR evaluator in tests, machine code in a backend), each value in
//! its own buffer. Fallback steps run the reference interpreter.

use super::{Arg, Lowered, Step};
use saturn_ir::graph::{Graph, Value, ValueDef};
use saturn_ir::kernel::Kernel;
use saturn_ir::tensor::Tensor;

/// Executes one kernel on its buffers (in `Kernel::bufs` order).
pub type KernelRunner<'a> = dyn FnMut(usize, &Kernel, &mut [&mut [u8]]) -> Result<(), String> + 'a;

/// Runs `lowered` (from `g`) on `inputs` and returns the graph outputs.
pub fn run_lowered(
    g: &Graph,
    lowered: &Lowered,
    inputs: Vec<Tensor>,
    run: &mut KernelRunner,
) -> Result<Vec<Tensor>, String> {
    let mut vals: Vec<Option<Tensor>> = vec![None; g.num_values()];
    for (v, data) in g.values() {
        match &data.def {
            ValueDef::Const(t) => vals[v.index()] = Some((**t).clone()),
            ValueDef::Input(i) => {
                let t = inputs
                    .get(*i)
                    .ok_or_else(|| format!("missing input {i}"))?
                    .clone();
                vals[v.index()] = Some(t);
            }
            _ => {}
        }
    }
    for step in &lowered.steps {
        match step {
            Step::Kernel { kernel, args, .. } => {
                let k = &lowered.kernels[*kernel];
                let mut storage: Vec<Vec<u8>> = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    let buf = &k.bufs[i];
                    let len = match &buf.len {
                        saturn_ir::kernel::Expr::Int(n, _) => *n as usize,
                        _ => return Err(format!("buffer `{}` has no static length", buf.name)),
                    };
                    let bytes = len * elem_bytes(buf.dtype);
                    storage.push(match a {
                        Arg::Value(v) => match &vals[v.index()] {
                            Some(t) => t.to_le_bytes().ok_or_else(|| {
                                format!("value `{}` has no byte form", g.name(*v))
                            })?,
                            None => vec![0xFF; bytes],
                        },
                        Arg::Scratch => vec![0xFF; bytes],
                        Arg::Const(t) => t
                            .to_le_bytes()
                            .ok_or_else(|| format!("constant `{}` has no byte form", buf.name))?,
                    });
                }
                {
                    let mut refs: Vec<&mut [u8]> =
                        storage.iter_mut().map(|s| s.as_mut_slice()).collect();
                    run(*kernel, k, &mut refs)?;
                }
                for ((a, buf), bytes) in args.iter().zip(&k.bufs).zip(storage) {
                    if let (Arg::Value(v), saturn_ir::kernel::BufKind::Output) = (a, buf.kind) {
                        // The graph's dtype: half values are stored as their bits.
                        let ty = g.ty(*v);
                        let shape = ty.shape.as_known().unwrap_or_default();
                        let t = Tensor::from_le_bytes(ty.dtype, shape, &bytes)
                            .map_err(|e| e.to_string())?;
                        vals[v.index()] = Some(t);
                    }
                }
            }
            Step::Fallback { node, .. } => {
                let n = g.node(*node);
                let ins: Vec<Option<&Tensor>> = n
                    .inputs
                    .iter()
                    .map(|v| v.and_then(|v| vals[v.index()].as_ref()))
                    .collect();
                let tys: Vec<_> = n.outputs.iter().map(|v| g.ty(*v).clone()).collect();
                let outs = saturn_ir::interp::eval_op(&n.op, &ins, &tys)
                    .map_err(|e| format!("node `{}`: {e}", n.label(g)))?;
                for (v, t) in n.outputs.iter().zip(outs) {
                    vals[v.index()] = Some(t);
                }
            }
        }
    }
    g.outputs()
        .iter()
        .map(|v: &Value| {
            vals[v.index()]
                .clone()
                .ok_or_else(|| format!("output `{}` was not computed", g.name(*v)))
        })
        .collect()
}

/// Bytes per element of a kernel dtype.
pub fn elem_bytes(d: saturn_ir::DType) -> usize {
    (d.bits() / 8).max(1)
}
