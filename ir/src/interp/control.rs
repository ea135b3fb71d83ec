//! Control flow: If, Loop, Scan. Bodies run through
//! [`EvalCx::run_subgraph`], which resolves their captures in the
//! enclosing graphs.

use super::kernels::{axis, split_at_axis};
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::invalid;
use crate::ops::*;
use crate::shape::TensorType;
use crate::tensor::{Data, MAX_ELEMENTS, Tensor};

/// Most iterations a Loop runs before giving up: a loop whose trip count
/// is absent and whose condition never turns false must not hang.
pub const MAX_ITERATIONS: u64 = 1 << 31;

/// The boolean in a one-element tensor.
fn truth(t: &Tensor, what: &str) -> Result<bool, OpError> {
    if t.dtype() != DType::Bool || t.numel() != 1 {
        return invalid!(
            "{what} must be a single bool, found {}{:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(t.get_f64(0) != 0.0)
}

impl Eval for If {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let branch = if truth(cx.input(0)?, "the condition")? {
            &self.then_branch
        } else {
            &self.else_branch
        };
        cx.run_subgraph(branch, Vec::new())
    }
}

/// The per-iteration values of one scan output, stacked when the loop ends.
struct Stack {
    parts: Vec<Tensor>,
    numel: u64,
}

impl Stack {
    fn new() -> Stack {
        Stack {
            parts: Vec::new(),
            numel: 0,
        }
    }

    fn push(&mut self, t: Tensor, index: usize) -> Result<(), OpError> {
        if let Some(first) = self.parts.first()
            && (first.shape() != t.shape() || first.dtype() != t.dtype())
        {
            return invalid!(
                "scan output {index} is {}{:?} in one iteration and {}{:?} in another",
                first.dtype(),
                first.shape(),
                t.dtype(),
                t.shape()
            );
        }
        self.numel += t.numel() as u64;
        if self.numel > MAX_ELEMENTS {
            return invalid!("scan output {index} grows past {MAX_ELEMENTS} elements");
        }
        self.parts.push(t);
        Ok(())
    }

    /// Stacks the parts along a new axis `at` (in `[0, rank]` of a part),
    /// in reverse order when `prepend`. With no parts the result has a
    /// zero extent there and takes its other dims and dtype from `ty`.
    fn finish(self, at: i64, prepend: bool, ty: &TensorType) -> Result<Tensor, OpError> {
        let Stack { mut parts, .. } = self;
        let Some(first) = parts.first() else {
            let mut dims: Vec<usize> = match ty.shape.dims() {
                Some(d) => d.iter().map(|d| d.known().unwrap_or(0) as usize).collect(),
                None => vec![0],
            };
            let at = axis(at, dims.len().max(1))?;
            if let Some(d) = dims.get_mut(at) {
                *d = 0;
            }
            return Tensor::zeros(ty.dtype, dims).map_err(|e| OpError::Invalid(e.to_string()));
        };
        let (dtype, elem) = (first.dtype(), first.shape().to_vec());
        let at = axis(at, elem.len() + 1)?;
        if prepend {
            parts.reverse();
        }
        let steps = parts.len();
        let datas: Vec<Data> = parts.into_iter().map(Tensor::into_data).collect();
        let refs: Vec<&Data> = datas.iter().collect();
        let all = Data::concat(&refs, dtype);
        let mut shape = elem.clone();
        shape.insert(at, steps);
        let flat = Tensor::new(dtype, vec![all.len()], all)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        if at == 0 {
            return flat
                .reshape(shape)
                .map_err(|e| OpError::Invalid(e.to_string()));
        }
        // `all` is laid out [steps, outer, inner]; the result [outer, steps, inner].
        let outer: usize = elem[..at].iter().product();
        let inner: usize = elem[at..].iter().product();
        let mut idx = Vec::with_capacity(steps * outer * inner);
        for o in 0..outer {
            for t in 0..steps {
                let base = (t * outer + o) * inner;
                idx.extend(base..base + inner);
            }
        }
        Ok(flat.gather_flat(shape, &idx))
    }
}

impl Eval for Loop {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        self.run(cx, MAX_ITERATIONS)
    }
}

impl Loop {
    /// Runs the loop, failing once it reaches `max_iterations`.
    fn run(&self, cx: &EvalCx, max_iterations: u64) -> Result<Vec<Tensor>, OpError> {
        let trip_count = match cx.opt_input(0) {
            Some(m) if m.numel() != 1 => {
                return invalid!(
                    "the trip count must have one element, found {:?}",
                    m.shape()
                );
            }
            Some(m) => Some(m.get_i64(0).max(0) as u64),
            None => None,
        };
        let mut cond = match cx.opt_input(1) {
            Some(c) => truth(c, "the condition")?,
            None => true,
        };
        let n = cx.num_inputs().saturating_sub(2);
        let mut carried: Vec<Tensor> = (0..n)
            .map(|i| cx.input(2 + i).cloned())
            .collect::<Result<_, _>>()?;
        let num_body_outputs = self.body.outputs().len();
        if num_body_outputs < n + 1 {
            return invalid!(
                "the body has {num_body_outputs} outputs, fewer than the condition and {n} carried values"
            );
        }
        let k = num_body_outputs - 1 - n;
        let mut scans: Vec<Stack> = (0..k).map(|_| Stack::new()).collect();

        let mut i: u64 = 0;
        while cond && trip_count.is_none_or(|m| i < m) {
            if i >= max_iterations {
                return invalid!("the loop ran {max_iterations} iterations without stopping");
            }
            let mut inputs = Vec::with_capacity(n + 2);
            inputs.push(Tensor::scalar(i as i64));
            inputs.push(Tensor::scalar(cond));
            inputs.append(&mut carried);
            let mut outs = cx.run_subgraph(&self.body, inputs)?.into_iter();
            let c = outs
                .next()
                .ok_or_else(|| OpError::Invalid("the body gave no condition".into()))?;
            // Without a condition input the body's condition is ignored.
            if cx.opt_input(1).is_some() {
                cond = truth(&c, "the body's condition")?;
            }
            carried = outs.by_ref().take(n).collect();
            for (j, (s, t)) in scans.iter_mut().zip(outs).enumerate() {
                s.push(t, j)?;
            }
            i += 1;
        }

        let mut results = carried;
        for (j, s) in scans.into_iter().enumerate() {
            let ty = cx.output_types.get(n + j).cloned().unwrap_or_else(|| {
                TensorType::unknown_rank(self.body.ty(self.body.outputs()[1 + n + j]).dtype)
            });
            results.push(s.finish(0, false, &ty)?);
        }
        Ok(results)
    }
}

/// Index `t` of `x` along `axis`, without that axis.
fn slice_at(x: &Tensor, axis: usize, t: usize) -> Tensor {
    let (outer, len, inner) = split_at_axis(x.shape(), axis);
    let mut idx = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let base = (o * len + t) * inner;
        idx.extend(base..base + inner);
    }
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    x.gather_flat(shape, &idx)
}

impl Eval for Scan {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (n, m) = self.counts(cx.num_inputs())?;
        let num_body_outputs = self.body.outputs().len();
        if num_body_outputs < n {
            return invalid!("the body has {num_body_outputs} outputs, fewer than {n} states");
        }
        let k = num_body_outputs - n;
        let in_axes = Scan::flags(&self.scan_input_axes, m, "scan_input_axes")?;
        let in_rev = Scan::directions(&self.scan_input_directions, m, "scan_input_directions")?;
        let out_axes = Scan::flags(&self.scan_output_axes, k, "scan_output_axes")?;
        let out_rev = Scan::directions(&self.scan_output_directions, k, "scan_output_directions")?;

        let mut states: Vec<Tensor> = (0..n)
            .map(|i| cx.input(i).cloned())
            .collect::<Result<_, _>>()?;
        let mut xs = Vec::with_capacity(m);
        let mut len = None;
        for (j, &a) in in_axes.iter().enumerate() {
            let x = cx.input(n + j)?;
            if x.rank() == 0 {
                return invalid!("scan input {j} is a scalar, it has no axis to scan");
            }
            let a = axis(a, x.rank())?;
            let l = x.shape()[a];
            if len.is_some_and(|len| len != l) {
                return invalid!("scan inputs have different sequence lengths");
            }
            len = Some(l);
            xs.push((x, a));
        }
        let len = len.unwrap_or(0);

        let mut scans: Vec<Stack> = (0..k).map(|_| Stack::new()).collect();
        for t in 0..len {
            let mut inputs = std::mem::take(&mut states);
            for (&(x, a), &rev) in xs.iter().zip(&in_rev) {
                inputs.push(slice_at(x, a, if rev { len - 1 - t } else { t }));
            }
            let mut outs = cx.run_subgraph(&self.body, inputs)?.into_iter();
            states = outs.by_ref().take(n).collect();
            for (j, (s, y)) in scans.iter_mut().zip(outs).enumerate() {
                s.push(y, j)?;
            }
        }

        let mut results = states;
        for (j, s) in scans.into_iter().enumerate() {
            let ty = cx.output_types.get(n + j).cloned().unwrap_or_else(|| {
                TensorType::unknown_rank(self.body.ty(self.body.outputs()[n + j]).dtype)
            });
            results.push(s.finish(out_axes[j], out_rev[j], &ty)?);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(parts: Vec<Tensor>, at: i64, prepend: bool) -> Tensor {
        let mut s = Stack::new();
        for p in parts {
            s.push(p, 0).unwrap();
        }
        s.finish(at, prepend, &TensorType::unknown_rank(DType::I64))
            .unwrap()
    }

    #[test]
    fn stacking_along_an_axis() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]);
        let b = Tensor::from_vec(vec![2, 2], vec![5i64, 6, 7, 8]);
        let s0 = stack(vec![a.clone(), b.clone()], 0, false);
        assert_eq!(s0.shape(), &[2, 2, 2]);
        assert_eq!(s0.as_slice::<i64>().unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let s1 = stack(vec![a.clone(), b.clone()], 1, false);
        assert_eq!(s1.shape(), &[2, 2, 2]);
        assert_eq!(s1.as_slice::<i64>().unwrap(), &[1, 2, 5, 6, 3, 4, 7, 8]);
        let s2 = stack(vec![a.clone(), b.clone()], -1, true);
        assert_eq!(s2.shape(), &[2, 2, 2]);
        assert_eq!(s2.as_slice::<i64>().unwrap(), &[5, 1, 6, 2, 7, 3, 8, 4]);
    }

    #[test]
    fn empty_stack_has_a_zero_extent() {
        let ty = TensorType::new(
            DType::F32,
            crate::shape::Shape::Ranked(vec![
                crate::shape::Dim::Unknown,
                crate::shape::Dim::Known(3),
            ]),
        );
        let t = Stack::new().finish(0, false, &ty).unwrap();
        assert_eq!(t.shape(), &[0, 3]);
        assert_eq!(t.dtype(), DType::F32);
    }

    #[test]
    fn slices_along_an_axis() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i64, 2, 3, 4, 5, 6]);
        assert_eq!(slice_at(&x, 1, 2).as_slice::<i64>().unwrap(), &[3, 6]);
        assert_eq!(slice_at(&x, 0, 1).as_slice::<i64>().unwrap(), &[4, 5, 6]);
    }

    #[test]
    fn mismatched_scan_outputs_are_errors() {
        let mut s = Stack::new();
        s.push(Tensor::from_vec(vec![2], vec![1i64, 2]), 0).unwrap();
        assert!(s.push(Tensor::from_vec(vec![1], vec![1i64]), 0).is_err());
    }

    use std::sync::Arc;

    use crate::builder::GraphBuilder;
    use crate::graph::Graph;
    use crate::interp::run;
    use crate::shape::{Dim, Shape};

    fn scalar(d: DType) -> TensorType {
        TensorType::new(d, Shape::scalar())
    }

    /// A loop body: `x_out = x_in + d` (d captured), the condition
    /// `x_out < limit` (limit captured), and the scan output `x_in`.
    fn counting_body() -> Graph {
        let mut b = GraphBuilder::new("body");
        let _i = b.input("i", scalar(DType::I64)).unwrap();
        let _c = b.input("cond_in", scalar(DType::Bool)).unwrap();
        let x = b.input("x_in", scalar(DType::F32)).unwrap();
        let d = b.capture("d", scalar(DType::F32)).unwrap();
        let limit = b.capture("limit", scalar(DType::F32)).unwrap();
        let next = b.op(Add {}, &[x, d]).unwrap();
        let cond = b.op(Less {}, &[next, limit]).unwrap();
        let seen = b.op(Identity {}, &[x]).unwrap();
        b.finish(vec![cond, next, seen])
    }

    /// Runs `Loop(m, cond, x0)` over [`counting_body`] with `d = 1`.
    fn run_loop(m: Option<i64>, cond: Option<bool>, limit: f32) -> Vec<Tensor> {
        let mut b = GraphBuilder::new("main");
        // The body captures these by name.
        let _d = b.input("d", scalar(DType::F32)).unwrap();
        let _limit = b.input("limit", scalar(DType::F32)).unwrap();
        let x0 = b.input("x0", scalar(DType::F32)).unwrap();
        let mut inputs = vec![
            Tensor::scalar(1.0f32),
            Tensor::scalar(limit),
            Tensor::scalar(0.0f32),
        ];
        let m = m.map(|m| {
            inputs.push(Tensor::scalar(m));
            b.input("m", scalar(DType::I64)).unwrap()
        });
        let c = cond.map(|c| {
            inputs.push(Tensor::scalar(c));
            b.input("c", scalar(DType::Bool)).unwrap()
        });
        let body = Arc::new(counting_body());
        let outs = vec![("x".into(), None), ("xs".into(), None)];
        let vs = b
            .node("", Loop { body }.into(), vec![m, c, Some(x0)], outs)
            .unwrap();
        // The scan output's type has an unknown iteration count.
        assert_eq!(b.graph().ty(vs[1]).shape, Shape::Ranked(vec![Dim::Unknown]));
        run(&b.finish(vs), inputs).unwrap()
    }

    #[test]
    fn loop_with_trip_count() {
        let out = run_loop(Some(3), None, 100.0);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[3.0]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[0.0, 1.0, 2.0]);
    }

    #[test]
    fn loop_stops_on_its_condition() {
        // x goes 1, 2, 3; 3 < 3 is false after the third iteration.
        let out = run_loop(None, Some(true), 3.0);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[3.0]);
        assert_eq!(out[1].shape(), &[3]);
        // Both: the trip count stops it first.
        let out = run_loop(Some(2), Some(true), 3.0);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0]);
    }

    #[test]
    fn loop_with_no_iterations() {
        let out = run_loop(Some(5), Some(false), 3.0);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[0.0]);
        assert_eq!(out[1].shape(), &[0]);
        let out = run_loop(Some(-1), None, 3.0);
        assert_eq!(out[1].shape(), &[0]);
    }

    #[test]
    fn if_picks_a_branch_that_reads_the_outer_graph() {
        let branch = |name: &str, negate: bool| {
            let mut b = GraphBuilder::new(name);
            let x = b.capture("x", scalar(DType::F32)).unwrap();
            let y = if negate {
                b.op(Neg {}, &[x]).unwrap()
            } else {
                b.op(Identity {}, &[x]).unwrap()
            };
            Arc::new(b.finish(vec![y]))
        };
        let mut b = GraphBuilder::new("main");
        let c = b.input("c", scalar(DType::Bool)).unwrap();
        let _x = b.input("x", scalar(DType::F32)).unwrap();
        let op = If {
            then_branch: branch("then", false),
            else_branch: branch("else", true),
        };
        let y = b.op(op, &[c]).unwrap();
        let g = b.finish(vec![y]);
        for (c, want) in [(true, 2.0f32), (false, -2.0)] {
            let out = run(&g, vec![Tensor::scalar(c), Tensor::scalar(2.0f32)]).unwrap();
            assert_eq!(out[0].as_slice::<f32>().unwrap(), &[want]);
        }
    }

    #[test]
    fn scan_runs_reversed_along_an_axis() {
        // Running sum over the columns of a [2, 3] input, right to left,
        // with the per-step sums stacked along axis 1.
        let mut body = GraphBuilder::new("body");
        let acc = body
            .input("acc", TensorType::known(DType::F32, &[2]))
            .unwrap();
        let col = body
            .input("col", TensorType::known(DType::F32, &[2]))
            .unwrap();
        let sum = body.op(Add {}, &[acc, col]).unwrap();
        let copy = body.op(Identity {}, &[sum]).unwrap();
        let body = Arc::new(body.finish(vec![sum, copy]));
        let mut b = GraphBuilder::new("main");
        let init = b
            .input("init", TensorType::known(DType::F32, &[2]))
            .unwrap();
        let x = b
            .input("x", TensorType::known(DType::F32, &[2, 3]))
            .unwrap();
        let op = Scan {
            body,
            num_scan_inputs: 1,
            scan_input_axes: Some(vec![1]),
            scan_input_directions: Some(vec![1]),
            scan_output_axes: Some(vec![-1]),
            scan_output_directions: None,
        };
        let outs = vec![("total".into(), None), ("sums".into(), None)];
        let vs = b
            .node("", op.into(), vec![Some(init), Some(x)], outs)
            .unwrap();
        assert_eq!(b.graph().ty(vs[1]), &TensorType::known(DType::F32, &[2, 3]));
        let g = b.finish(vs);
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0]);
        let out = run(&g, vec![Tensor::from_vec(vec![2], vec![0.0f32, 0.0]), x]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[6.0, 60.0]);
        assert_eq!(
            out[1].as_slice::<f32>().unwrap(),
            &[3.0, 5.0, 6.0, 30.0, 50.0, 60.0]
        );
    }

    #[test]
    fn endless_loop_stops_with_an_error() {
        // No trip count, no condition: the body's condition is ignored.
        let mut b = GraphBuilder::new("body");
        let _i = b.input("i", scalar(DType::I64)).unwrap();
        let c = b.input("cond_in", scalar(DType::Bool)).unwrap();
        let x = b.input("x_in", scalar(DType::F32)).unwrap();
        let c2 = b.op(Identity {}, &[c]).unwrap();
        let x2 = b.op(Identity {}, &[x]).unwrap();
        let op = Loop {
            body: Arc::new(b.finish(vec![c2, x2])),
        };
        let empty = Graph::default();
        let scope = super::super::Scope {
            parent: None,
            graph: &empty,
            env: &[],
        };
        let x = Tensor::scalar(1.0f32);
        let inputs = [None, None, Some(&x)];
        let types = [scalar(DType::F32)];
        let cx = EvalCx {
            inputs: &inputs,
            output_types: &types,
            num_outputs: 1,
            scope: &scope,
        };
        let err = op.run(&cx, 10).unwrap_err();
        assert!(err.to_string().contains("10 iterations"), "{err}");
    }
}
