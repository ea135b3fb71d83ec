//! Control flow: If, Loop, Scan.
//!
//! The bodies are subgraphs; their input and output types, recorded when
//! they were built, give the ops' output types.

use super::infer::{Infer, InferCx, normalize_axis};
use super::*;
use crate::invalid;
use crate::shape::{Dim, Shape};

/// The least type that admits both `a` and `b`: dims that differ become
/// unknown, shapes of different ranks an unknown rank.
pub fn join_types(a: &TensorType, b: &TensorType) -> Result<TensorType, OpError> {
    if a.dtype != b.dtype {
        return invalid!("types {a} and {b} have different element types");
    }
    let shape = match (&a.shape, &b.shape) {
        (Shape::Ranked(x), Shape::Ranked(y)) if x.len() == y.len() => Shape::Ranked(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown })
                .collect(),
        ),
        _ => Shape::UnknownRank,
    };
    Ok(TensorType::new(a.dtype, shape))
}

fn output_types(g: &Graph) -> Vec<TensorType> {
    g.outputs().iter().map(|&v| g.ty(v).clone()).collect()
}

fn input_types(g: &Graph) -> Vec<TensorType> {
    g.inputs().iter().map(|&v| g.ty(v).clone()).collect()
}

fn expect_scalar(cx: &InferCx, i: usize, dtype: DType, what: &str) -> Result<(), OpError> {
    if let Some(t) = cx.opt_input(i) {
        let one_element = t.shape.numel().is_none_or(|n| n == 1) && t.rank().is_none_or(|r| r <= 1);
        if t.dtype != dtype || !one_element {
            return invalid!("{what} must be a {dtype} scalar or single element, found {t}");
        }
    }
    Ok(())
}

impl Infer for If {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let cond = cx.input(0)?;
        if cond.dtype != DType::Bool {
            return invalid!("the condition must be bool, found {cond}");
        }
        let then = output_types(&self.then_branch);
        let els = output_types(&self.else_branch);
        if then.len() != els.len() {
            return invalid!(
                "the then branch has {} outputs and the else branch {}",
                then.len(),
                els.len()
            );
        }
        if then.len() != cx.num_outputs {
            return invalid!(
                "the branches have {} outputs, the node {}",
                then.len(),
                cx.num_outputs
            );
        }
        // A known condition picks its branch's types.
        if let Some(c) = cx.value(0).filter(|c| c.numel() == 1) {
            return Ok(if c.get_f64(0) != 0.0 { then } else { els });
        }
        then.iter()
            .zip(&els)
            .map(|(a, b)| join_types(a, b))
            .collect()
    }
}

impl Infer for Loop {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        expect_scalar(cx, 0, DType::I64, "the trip count")?;
        expect_scalar(cx, 1, DType::Bool, "the condition")?;
        let n = cx.num_inputs().saturating_sub(2);
        let ins = input_types(&self.body);
        let outs = output_types(&self.body);
        if ins.len() != n + 2 {
            return invalid!(
                "the body takes {} inputs, the loop passes {} (iteration, condition and {n} carried values)",
                ins.len(),
                n + 2
            );
        }
        if outs.len() < n + 1 {
            return invalid!(
                "the body has {} outputs, fewer than the condition and {n} carried values",
                outs.len()
            );
        }
        if outs[0].dtype != DType::Bool {
            return invalid!("the body's condition output is {}, not bool", outs[0]);
        }
        let k = outs.len() - 1 - n;
        if cx.num_outputs != n + k {
            return invalid!(
                "the loop has {} outputs, its body {n} carried values and {k} scan outputs",
                cx.num_outputs
            );
        }
        let mut types = Vec::with_capacity(n + k);
        for i in 0..n {
            // Zero iterations give the initial value back.
            let init = cx.input(2 + i)?;
            types.push(join_types(init, &outs[1 + i])?);
        }
        for t in &outs[1 + n..] {
            let shape = match &t.shape {
                Shape::Ranked(d) => {
                    Shape::Ranked(std::iter::once(Dim::Unknown).chain(d.clone()).collect())
                }
                Shape::UnknownRank => Shape::UnknownRank,
            };
            types.push(TensorType::new(t.dtype, shape));
        }
        Ok(types)
    }
}

impl Scan {
    /// The number of state variables N and scan inputs M.
    pub fn counts(&self, num_inputs: usize) -> Result<(usize, usize), OpError> {
        let m = usize::try_from(self.num_scan_inputs)
            .ok()
            .filter(|&m| m >= 1 && m <= num_inputs)
            .ok_or_else(|| {
                OpError::Invalid(format!(
                    "num_scan_inputs is {}, the node has {num_inputs} inputs",
                    self.num_scan_inputs
                ))
            })?;
        Ok((num_inputs - m, m))
    }

    /// A per-input (or per-output) attribute list, defaulting to zeros.
    pub fn flags(list: &Option<Vec<i64>>, len: usize, what: &str) -> Result<Vec<i64>, OpError> {
        match list {
            None => Ok(vec![0; len]),
            Some(v) if v.len() == len => Ok(v.clone()),
            Some(v) => invalid!("{what} has {} entries, expected {len}", v.len()),
        }
    }

    /// Checks that directions are 0 or 1.
    pub fn directions(
        list: &Option<Vec<i64>>,
        len: usize,
        what: &str,
    ) -> Result<Vec<bool>, OpError> {
        Scan::flags(list, len, what)?
            .into_iter()
            .map(|d| match d {
                0 => Ok(false),
                1 => Ok(true),
                _ => invalid!("{what} must be 0 or 1, found {d}"),
            })
            .collect()
    }
}

impl Infer for Scan {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let (n, m) = self.counts(cx.num_inputs())?;
        let ins = input_types(&self.body);
        let outs = output_types(&self.body);
        if ins.len() != n + m {
            return invalid!(
                "the body takes {} inputs, the scan passes {n} states and {m} scan inputs",
                ins.len()
            );
        }
        if outs.len() < n {
            return invalid!("the body has {} outputs, fewer than {n} states", outs.len());
        }
        let k = outs.len() - n;
        if cx.num_outputs != n + k {
            return invalid!(
                "the scan has {} outputs, its body {n} states and {k} scan outputs",
                cx.num_outputs
            );
        }
        let in_axes = Scan::flags(&self.scan_input_axes, m, "scan_input_axes")?;
        Scan::directions(&self.scan_input_directions, m, "scan_input_directions")?;
        let out_axes = Scan::flags(&self.scan_output_axes, k, "scan_output_axes")?;
        Scan::directions(&self.scan_output_directions, k, "scan_output_directions")?;

        // The sequence length: the scan inputs' extents along their axes.
        let mut len = Dim::Unknown;
        for (j, &a) in in_axes.iter().enumerate() {
            let t = cx.input(n + j)?;
            if t.dtype != ins[n + j].dtype {
                return invalid!("scan input {j} is {t}, the body takes {}", ins[n + j]);
            }
            let Some(dims) = t.shape.dims() else { continue };
            let axis = normalize_axis(a, dims.len())?;
            let d = &dims[axis];
            if let (Dim::Known(x), Dim::Known(y)) = (&len, d)
                && x != y
            {
                return invalid!("scan inputs have different sequence lengths {x} and {y}");
            }
            if !len.is_known() {
                len = d.clone();
            }
        }

        let mut types = Vec::with_capacity(n + k);
        for (i, out) in outs[..n].iter().enumerate() {
            types.push(join_types(cx.input(i)?, out)?);
        }
        for (t, &a) in outs[n..].iter().zip(&out_axes) {
            let shape = match &t.shape {
                Shape::Ranked(d) => {
                    let axis = normalize_axis(a, d.len() + 1)?;
                    let mut d = d.clone();
                    d.insert(axis, len.clone());
                    Shape::Ranked(d)
                }
                Shape::UnknownRank => Shape::UnknownRank,
            };
            types.push(TensorType::new(t.dtype, shape));
        }
        Ok(types)
    }
}
