//! Matrix products: Gemm, MatMul and their integer forms, Einsum, Det.

use super::infer::{
    Infer, InferCx, broadcast_dim, broadcast_onto, broadcast2, expect_dtype, one, same_dtype,
};
use super::*;
use crate::shape::{Dim, Shape};

fn dim_conflict(what: &str, a: &Dim, b: &Dim) -> OpError {
    OpError::Invalid(format!("{what}: {a} and {b} differ"))
}

/// Shape of a numpy-style matrix product: 1-D operands become a row
/// (left) or column (right) vector whose unit dim is dropped again; the
/// batch dims broadcast.
pub fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    let (Some(a), Some(b)) = (a.dims(), b.dims()) else {
        return Ok(Shape::UnknownRank);
    };
    if a.is_empty() || b.is_empty() {
        return Err(OpError::Invalid(
            "matrix product operands must have rank 1 or more".into(),
        ));
    }
    let (ka, kb) = (&a[a.len() - 1], &b[b.len().saturating_sub(2)]);
    if !ka.compatible(kb) {
        return Err(dim_conflict("inner dims of the matrix product", ka, kb));
    }
    let batch_a = Shape::Ranked(a[..a.len().saturating_sub(2)].to_vec());
    let batch_b = Shape::Ranked(b[..b.len().saturating_sub(2)].to_vec());
    let Shape::Ranked(mut out) = broadcast2(&batch_a, &batch_b)? else {
        unreachable!("ranked shapes broadcast to a ranked shape")
    };
    if a.len() >= 2 {
        out.push(a[a.len() - 2].clone());
    }
    if b.len() >= 2 {
        out.push(b[b.len() - 1].clone());
    }
    Ok(Shape::Ranked(out))
}

/// Whether a dtype takes part in float or integer matrix products.
fn matmul_dtype(d: DType) -> bool {
    d.is_numeric() && !d.is_packed()
}

impl Infer for MatMul {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = same_dtype(cx, 0, 1)?;
        expect_dtype(cx, 0, matmul_dtype, "a numeric type")?;
        let shape = matmul_shape(&cx.input(0)?.shape, &cx.input(1)?.shape)?;
        one(TensorType::new(dtype, shape))
    }
}

impl Infer for MatMulInteger {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let byte = |d: DType| matches!(d, DType::I8 | DType::U8);
        expect_dtype(cx, 0, byte, "i8 or u8")?;
        expect_dtype(cx, 1, byte, "i8 or u8")?;
        let shape = matmul_shape(&cx.input(0)?.shape, &cx.input(1)?.shape)?;
        one(TensorType::new(DType::I32, shape))
    }
}

/// Type of `flat_gemm` and `gemv`: A `[..., M, K]` times a matrix B
/// `[K, N]`, plus an optional bias C that broadcasts onto the result
/// `[..., M, N]`. With `m_one`, M must be 1.
fn infer_small_m(cx: &InferCx, what: &str, m_one: bool) -> Result<Vec<TensorType>, OpError> {
    let dtype = same_dtype(cx, 0, 1)?;
    expect_dtype(cx, 0, |d| d.is_float() && !d.is_packed(), "a float type")?;
    if cx.opt_input(2).is_some() {
        same_dtype(cx, 0, 2)?;
    }
    let b = match cx.input(1)?.dims() {
        None => None,
        Some([k, n]) => Some((k, n)),
        Some(d) => {
            return Err(OpError::Invalid(format!(
                "{what}'s B must be a matrix, found rank {}",
                d.len()
            )));
        }
    };
    let Some(a) = cx.input(0)?.dims() else {
        return one(TensorType::unknown_rank(dtype));
    };
    let r = a.len();
    if r < 2 {
        return Err(OpError::Invalid(format!(
            "{what}'s A must have rank 2 or more, found {r}"
        )));
    }
    let (m, k) = (&a[r - 2], &a[r - 1]);
    if m_one && !m.compatible(&Dim::Known(1)) {
        return Err(OpError::Invalid(format!("{what} of {m} rows: M must be 1")));
    }
    if let Some((kb, _)) = b
        && !k.compatible(kb)
    {
        return Err(dim_conflict(&format!("inner dims of {what}"), k, kb));
    }
    let mut out = a[..r - 2].to_vec();
    out.push(if m_one { Dim::Known(1) } else { m.clone() });
    out.push(b.map_or(Dim::Unknown, |(_, n)| n.clone()));
    if let Some(cd) = cx.opt_input(2).and_then(|c| c.dims()) {
        out = broadcast_onto(&out, cd, &format!("{what}'s bias"))?;
    }
    one(TensorType::new(dtype, Shape::Ranked(out)))
}

impl FlatGemm {
    /// The schedule `(m_pad, n_tile, k_split)`, each checked to be 1 or
    /// more.
    pub fn tiling(&self) -> Result<(usize, usize, usize), OpError> {
        let check = |name: &str, v: i64| {
            usize::try_from(v).ok().filter(|&v| v >= 1).ok_or_else(|| {
                OpError::Invalid(format!("FlatGemm's {name} must be 1 or more, found {v}"))
            })
        };
        Ok((
            check("m_pad", self.m_pad)?,
            check("n_tile", self.n_tile)?,
            check("k_split", self.k_split)?,
        ))
    }
}

impl Infer for FlatGemm {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        self.tiling()?;
        infer_small_m(cx, "FlatGemm", false)
    }
}

impl Infer for Gemv {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        infer_small_m(cx, "Gemv", true)
    }
}

impl Infer for Gemm {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = same_dtype(cx, 0, 1)?;
        expect_dtype(cx, 0, matmul_dtype, "a numeric type")?;
        let matrix = |i: usize, trans: bool| -> Result<Option<(Dim, Dim)>, OpError> {
            match cx.input(i)?.dims() {
                None => Ok(None),
                Some([r, c]) if trans => Ok(Some((c.clone(), r.clone()))),
                Some([r, c]) => Ok(Some((r.clone(), c.clone()))),
                Some(d) => Err(OpError::Invalid(format!(
                    "Gemm operand {i} must be a matrix, found rank {}",
                    d.len()
                ))),
            }
        };
        let a = matrix(0, self.transA)?;
        let b = matrix(1, self.transB)?;
        if let (Some((_, ka)), Some((kb, _))) = (&a, &b)
            && !ka.compatible(kb)
        {
            return Err(dim_conflict("inner dims of Gemm", ka, kb));
        }
        let mut out = vec![
            a.map_or(Dim::Unknown, |a| a.0),
            b.map_or(Dim::Unknown, |b| b.1),
        ];
        if let Some(c) = cx.opt_input(2) {
            same_dtype(cx, 0, 2)?;
            // C broadcasts to Y, never the other way; where A and B leave
            // a dim of Y open, C's dim (unless 1) is its extent.
            if let Some(cd) = c.dims() {
                if cd.len() > 2 {
                    return Err(OpError::Invalid("Gemm's C has rank above 2".into()));
                }
                for (y, c) in out[2 - cd.len()..].iter_mut().zip(cd) {
                    match (&*y, c) {
                        (_, Dim::Known(1)) => {}
                        (Dim::Known(_), Dim::Known(_)) if y != c => {
                            return Err(dim_conflict("Gemm's C does not broadcast to Y", c, y));
                        }
                        (Dim::Known(_), _) => {}
                        (_, Dim::Known(_)) => *y = c.clone(),
                        _ => {}
                    }
                }
            }
        }
        one(TensorType::new(dtype, Shape::Ranked(out)))
    }
}

impl Infer for Det {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = expect_dtype(cx, 0, |d| d.is_float() && !d.is_packed(), "a float type")?;
        let Some(dims) = cx.input(0)?.dims() else {
            return one(TensorType::unknown_rank(dtype));
        };
        let r = dims.len();
        if r < 2 {
            return Err(OpError::Invalid(format!("Det of a tensor of rank {r}")));
        }
        if !dims[r - 1].compatible(&dims[r - 2]) {
            return Err(dim_conflict(
                "Det of a non-square matrix",
                &dims[r - 2],
                &dims[r - 1],
            ));
        }
        one(TensorType::new(
            dtype,
            Shape::Ranked(dims[..r - 2].to_vec()),
        ))
    }
}

/// One subscript of an einsum term.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Sub {
    Letter(u8),
    Ellipsis,
}

/// Splits `ab,b...->a...` into terms of subscripts; the output term is
/// `None` in implicit mode.
#[allow(clippy::type_complexity)]
fn parse_einsum(eq: &str) -> Result<(Vec<Vec<Sub>>, Option<Vec<Sub>>), OpError> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let term = |t: &str| -> Result<Vec<Sub>, OpError> {
        let mut out = Vec::new();
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphabetic() {
                out.push(Sub::Letter(b[i]));
                i += 1;
            } else if t[i..].starts_with("...") {
                if out.contains(&Sub::Ellipsis) {
                    return Err(OpError::Invalid(format!(
                        "two ellipses in einsum term `{t}`"
                    )));
                }
                out.push(Sub::Ellipsis);
                i += 3;
            } else {
                return Err(OpError::Invalid(format!("bad einsum term `{t}`")));
            }
        }
        Ok(out)
    };
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(term(r)?)),
        None => (eq.as_str(), None),
    };
    let inputs = lhs.split(',').map(term).collect::<Result<Vec<_>, _>>()?;
    Ok((inputs, rhs))
}

/// An einsum equation resolved against its operands' ranks. Labels are
/// numbered: letters first, then the ellipsis dims (right-aligned, so
/// they broadcast as in numpy).
#[derive(Clone, Debug, PartialEq)]
pub struct EinsumPlan {
    /// For each operand, the label of each of its dims.
    pub inputs: Vec<Vec<usize>>,
    /// The label of each output dim.
    pub output: Vec<usize>,
    /// How many labels there are.
    pub num_labels: usize,
}

impl EinsumPlan {
    pub fn new(equation: &str, ranks: &[usize]) -> Result<EinsumPlan, OpError> {
        let (terms, out) = parse_einsum(equation)?;
        if terms.len() != ranks.len() {
            return Err(OpError::Invalid(format!(
                "einsum `{equation}` has {} operands, the node {}",
                terms.len(),
                ranks.len()
            )));
        }
        // Letters get labels in order of first appearance.
        let mut letters: Vec<u8> = Vec::new();
        for s in terms.iter().flatten().chain(out.iter().flatten()) {
            if let Sub::Letter(c) = s
                && !letters.contains(c)
            {
                letters.push(*c);
            }
        }
        let label = |c: u8| letters.iter().position(|&l| l == c).unwrap_or(0);
        let mut ell_rank = 0;
        let mut ell_ranks = Vec::new();
        for (t, &r) in terms.iter().zip(ranks) {
            let n = t.iter().filter(|s| matches!(s, Sub::Letter(_))).count();
            let has_ell = t.contains(&Sub::Ellipsis);
            if r < n || (!has_ell && r != n) {
                return Err(OpError::Invalid(format!(
                    "einsum term of {n} subscripts for an operand of rank {r}"
                )));
            }
            ell_ranks.push(r - n);
            ell_rank = ell_rank.max(r - n);
        }
        let ell = |j: usize| letters.len() + j;
        let expand = |t: &[Sub], e: usize| -> Vec<usize> {
            let mut out = Vec::new();
            for s in t {
                match s {
                    Sub::Letter(c) => out.push(label(*c)),
                    Sub::Ellipsis => out.extend((ell_rank - e..ell_rank).map(ell)),
                }
            }
            out
        };
        let inputs: Vec<Vec<usize>> = terms
            .iter()
            .zip(&ell_ranks)
            .map(|(t, &e)| expand(t, e))
            .collect();
        let output = match out {
            Some(t) => {
                let o = expand(&t, ell_rank);
                for (i, l) in o.iter().enumerate() {
                    if o[..i].contains(l) {
                        return Err(OpError::Invalid(format!(
                            "einsum output `{equation}` repeats a subscript"
                        )));
                    }
                    if *l < letters.len() && !inputs.iter().flatten().any(|x| x == l) {
                        return Err(OpError::Invalid(format!(
                            "einsum output subscript of `{equation}` is in no operand"
                        )));
                    }
                }
                o
            }
            None => {
                // Implicit: the ellipsis dims, then the letters used once, sorted.
                let mut once: Vec<u8> = letters
                    .iter()
                    .copied()
                    .filter(|&c| inputs.iter().flatten().filter(|&&l| l == label(c)).count() == 1)
                    .collect();
                once.sort_unstable();
                (0..ell_rank)
                    .map(ell)
                    .chain(once.into_iter().map(label))
                    .collect()
            }
        };
        Ok(EinsumPlan {
            inputs,
            output,
            num_labels: letters.len() + ell_rank,
        })
    }
}

impl Infer for Einsum {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        for i in 1..cx.num_inputs() {
            same_dtype(cx, 0, i)?;
        }
        expect_dtype(cx, 0, matmul_dtype, "a numeric type")?;
        let mut dims = Vec::new();
        for i in 0..cx.num_inputs() {
            match cx.input(i)?.dims() {
                Some(d) => dims.push(d),
                None => return one(TensorType::unknown_rank(dtype)),
            }
        }
        let ranks: Vec<usize> = dims.iter().map(|d| d.len()).collect();
        let plan = EinsumPlan::new(&self.equation, &ranks)?;
        // Each label's extent: the broadcast of the dims it names.
        let mut size: Vec<Option<Dim>> = vec![None; plan.num_labels];
        for (labels, d) in plan.inputs.iter().zip(&dims) {
            for (&l, d) in labels.iter().zip(d.iter()) {
                size[l] = Some(match &size[l] {
                    None => d.clone(),
                    Some(s) => broadcast_dim(s, d).ok_or_else(|| {
                        OpError::Invalid(format!("einsum dims {s} and {d} of one subscript differ"))
                    })?,
                });
            }
        }
        let out = plan
            .output
            .iter()
            .map(|&l| size[l].clone().unwrap_or(Dim::Known(1)))
            .collect();
        one(TensorType::new(dtype, Shape::Ranked(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn einsum_plans() {
        let p = EinsumPlan::new("ij,jk->ik", &[2, 2]).unwrap();
        assert_eq!(p.inputs, vec![vec![0, 1], vec![1, 2]]);
        assert_eq!(p.output, vec![0, 2]);
        // Implicit output: letters used once, alphabetically.
        let p = EinsumPlan::new("ba,ac", &[2, 2]).unwrap();
        assert_eq!(p.output, vec![0, 2]);
        let p = EinsumPlan::new("ii", &[2]).unwrap();
        assert_eq!(p.output, Vec::<usize>::new());
        // Ellipsis dims are right-aligned and lead the implicit output.
        let p = EinsumPlan::new("...ij,...jk", &[4, 3]).unwrap();
        assert_eq!(p.inputs, vec![vec![3, 4, 0, 1], vec![4, 1, 2]]);
        assert_eq!(p.output, vec![3, 4, 0, 2]);
        assert!(EinsumPlan::new("ij,jk->il", &[2, 2]).is_err());
        assert!(EinsumPlan::new("ij", &[3]).is_err());
        assert!(EinsumPlan::new("i.j", &[2]).is_err());
    }
}

#[cfg(test)]
mod infer_tests {
    use super::super::reduce::testing::infer;
    use super::*;

    #[test]
    fn matmul_shapes() {
        let mm = || MatMul {};
        assert_eq!(
            infer(mm(), &["f32[2,1,3,4]", "f32[5,4,6]"], &[]),
            "f32[2,5,3,6]"
        );
        assert_eq!(infer(mm(), &["f32[4]", "f32[B,4,6]"], &[]), "f32[B,6]");
        assert_eq!(infer(mm(), &["f32[3,4]", "f32[4]"], &[]), "f32[3]");
        assert_eq!(infer(mm(), &["f32[4]", "f32[4]"], &[]), "f32[]");
        assert_eq!(infer(mm(), &["f32[*]", "f32[4]"], &[]), "f32[*]");
        assert!(infer(mm(), &["f32[3,4]", "f32[5,6]"], &[]).starts_with("error"));
        assert!(infer(mm(), &["f32[3,4]", "f64[4,6]"], &[]).starts_with("error"));
        assert_eq!(
            infer(MatMulInteger {}, &["u8[3,4]", "i8[4,2]"], &[]),
            "i32[3,2]"
        );
    }

    #[test]
    fn gemm_and_det_shapes() {
        let g = |transA, transB| Gemm {
            alpha: 1.0,
            beta: 1.0,
            transA,
            transB,
        };
        assert_eq!(
            infer(g(true, true), &["f32[4,3]", "f32[5,4]"], &[]),
            "f32[3,5]"
        );
        assert_eq!(
            infer(g(false, false), &["f32[?,4]", "f32[4,?]", "f32[7,5]"], &[]),
            "f32[7,5]"
        );
        assert!(
            infer(g(false, false), &["f32[3,4]", "f32[4,5]", "f32[2,5]"], &[]).starts_with("error")
        );
        assert_eq!(infer(Det {}, &["f64[2,3,3]"], &[]), "f64[2]");
        assert!(infer(Det {}, &["f64[2,3]"], &[]).starts_with("error"));
    }

    fn flat() -> FlatGemm {
        FlatGemm {
            m_pad: 8,
            n_tile: 64,
            k_split: 1,
            double_buffer: false,
        }
    }

    #[test]
    fn flat_gemm_shapes() {
        let f = flat;
        assert_eq!(infer(f(), &["f32[3,16]", "f32[16,40]"], &[]), "f32[3,40]");
        assert_eq!(
            infer(f(), &["f16[B,H,3,16]", "f16[16,N]"], &[]),
            "f16[B,H,3,N]"
        );
        assert_eq!(
            infer(f(), &["f32[B,3,16]", "f32[16,40]", "f32[40]"], &[]),
            "f32[B,3,40]"
        );
        // The bias fixes dims the operands leave open, never widens them.
        assert_eq!(
            infer(f(), &["f32[B,3,16]", "f32[16,40]", "f32[7,1,40]"], &[]),
            "f32[7,3,40]"
        );
        assert_eq!(
            infer(f(), &["f32[?,16]", "f32[16,?]", "f32[5,1]"], &[]),
            "f32[5,?]"
        );
        assert_eq!(infer(f(), &["f32[*]", "f32[16,4]"], &[]), "f32[*]");
        assert_eq!(infer(f(), &["f32[2,16]", "f32[*]"], &[]), "f32[2,?]");
        for bad in [
            &["f32[3,16]", "f32[15,40]"][..],
            &["f32[16]", "f32[16,40]"],
            &["f32[3,16]", "f32[2,16,40]"],
            &["f32[3,16]", "f32[16,40]", "f32[2,40]"],
            &["f32[3,16]", "f32[16,40]", "f32[1,3,40]"],
            &["f32[3,16]", "f16[16,40]"],
            &["i32[3,16]", "i32[16,40]"],
        ] {
            assert!(infer(f(), bad, &[]).starts_with("error"), "{bad:?}");
        }
        for (m_pad, n_tile, k_split) in [(0, 64, 1), (8, -1, 1), (8, 64, 0)] {
            let op = FlatGemm {
                m_pad,
                n_tile,
                k_split,
                double_buffer: true,
            };
            assert!(infer(op, &["f32[3,16]", "f32[16,40]"], &[]).starts_with("error"));
        }
    }

    #[test]
    fn gemv_shapes() {
        assert_eq!(
            infer(Gemv {}, &["f32[B,1,16]", "f32[16,8]"], &[]),
            "f32[B,1,8]"
        );
        // M can only be 1.
        assert_eq!(
            infer(Gemv {}, &["bf16[B,?,16]", "bf16[16,8]", "bf16[8]"], &[]),
            "bf16[B,1,8]"
        );
        assert_eq!(infer(Gemv {}, &["f32[M,16]", "f32[16,8]"], &[]), "f32[1,8]");
        assert!(infer(Gemv {}, &["f32[2,16]", "f32[16,8]"], &[]).starts_with("error"));
        assert!(infer(Gemv {}, &["f32[1,16]", "f32[16,8]", "f32[2,8]"], &[]).starts_with("error"));
    }

    #[test]
    fn flat_gemm_attributes() {
        use crate::attr::{AttrValue, Attrs};
        let attrs = Attrs::new()
            .with("k_split", AttrValue::Int(4))
            .with("double_buffer", AttrValue::Sym("true".into()));
        let op = Op::from_text("flat_gemm", attrs).unwrap().unwrap();
        let want = FlatGemm {
            k_split: 4,
            double_buffer: true,
            ..flat()
        };
        assert_eq!(op, Op::FlatGemm(want));
        assert_eq!(op.attrs().len(), 2);
        assert_eq!(
            Op::from_text("gemv", Attrs::new()).unwrap().unwrap(),
            Op::Gemv(Gemv {})
        );
    }

    #[test]
    fn einsum_shapes() {
        let e = |eq: &str| Einsum {
            equation: eq.into(),
        };
        assert_eq!(
            infer(e("bij,bjk->bik"), &["f32[B,2,3]", "f32[1,3,4]"], &[]),
            "f32[B,2,4]"
        );
        assert_eq!(infer(e("...ii->...i"), &["f32[5,3,3]"], &[]), "f32[5,3]");
        assert_eq!(infer(e("i,i"), &["f32[3]", "f32[3]"], &[]), "f32[]");
        assert!(infer(e("ij,jk"), &["f32[2,3]", "f32[4,5]"], &[]).starts_with("error"));
    }
}
