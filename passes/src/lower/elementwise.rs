//! Elementwise ops: one expression per op, a tree of them per fused group,
//! one loop nest per tree.
//!
//! The loop nest runs over the group's output shape after merging
//! adjacent dims that every operand walks contiguously (or broadcasts
//! alike); the innermost loop is vectorised (`vector` lanes, a masked
//! tail for the remainder) and the outermost runs in parallel when the
//! output is large.

use super::cx::NodeCx;
use super::fuse::Tree;
use super::{Unsupported, unsupported};
use saturn_ir::graph::{Graph, Node, NodeId, Value};
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::math::Half;
use saturn_ir::kernel::{BinOp, Expr, LoopKind, Ty, UnOp, math};
use saturn_ir::ops::GeluApproximation;
use saturn_ir::{AttrValue, DType, Op};

/// Outputs at least this large run their outer loop in parallel.
const PARALLEL_MIN: usize = 1 << 15;

/// Inputs of an op that are elementwise operands (others are parameters
/// such as Expand's shape).
pub fn data_inputs(op: &Op, n: usize) -> Vec<usize> {
    match op {
        // CastLike's second input gives only its dtype.
        Op::Expand(_) | Op::Dropout(_) | Op::CastLike(_) => vec![0],
        _ => (0..n).collect(),
    }
}

/// Whether the node lowers as part of an elementwise tree.
pub fn is_elementwise(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    if node.outputs.len() != 1 || !supported(&node.op, g, node) {
        return false;
    }
    let data = data_inputs(&node.op, node.inputs.len());
    let ok = |v: Value| {
        let ty = g.ty(v);
        super::storage_dtype(ty.dtype).is_some() && ty.shape.as_known().is_some()
    };
    ok(node.outputs[0])
        && node
            .inputs
            .iter()
            .enumerate()
            .all(|(i, v)| !data.contains(&i) || v.is_none_or(ok))
}

fn supported(op: &Op, g: &Graph, node: &Node) -> bool {
    let float_in = node
        .inputs
        .first()
        .copied()
        .flatten()
        .is_some_and(|v| g.ty(v).dtype.is_float());
    use Op::*;
    match op {
        Abs(_) | Neg(_) | Identity(_) | Add(_) | Sub(_) | Mul(_) | Div(_) | Max(_) | Min(_)
        | Sum(_) | Mean(_) | Where(_) | Equal(_) | Greater(_) | GreaterOrEqual(_) | Less(_)
        | LessOrEqual(_) | And(_) | Or(_) | Xor(_) | Not(_) | BitwiseAnd(_) | BitwiseOr(_)
        | BitwiseXor(_) | BitwiseNot(_) | BitShift(_) | Cast(_) | CastLike(_) | Clip(_)
        | Expand(_) | Sign(_) | Relu(_) | Mod(_) => true,
        // Inference only: a training-mode dropout draws random masks.
        Dropout(_) => {
            node.outputs.len() == 1
                && match node.inputs.get(2).copied().flatten() {
                    None => true,
                    Some(t) => g
                        .const_value(t)
                        .is_some_and(|t| t.numel() == 1 && t.get_f64(0) == 0.0),
                }
        }
        Ceil(_) | Floor(_) | Round(_) | Sqrt(_) | Exp(_) | Log(_) | Tanh(_) | Sigmoid(_)
        | Erf(_) | Sin(_) | Cos(_) | Reciprocal(_) | LeakyRelu(_) | PRelu(_) | Elu(_) | Selu(_)
        | Celu(_) | HardSigmoid(_) | HardSwish(_) | Softplus(_) | Softsign(_)
        | ThresholdedRelu(_) | Shrink(_) | Swish(_) | Mish(_) | Gelu(_) | Pow(_) | IsNaN(_)
        | IsInf(_) | Tan(_) | Asin(_) | Acos(_) | Atan(_) | Sinh(_) | Cosh(_) | Asinh(_)
        | Acosh(_) | Atanh(_) => float_in,
        _ => false,
    }
}

fn k(v: f64, ty: Ty) -> Expr {
    Expr::constant(v, ty)
}

fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::bin(op, a, b)
}

/// A libm function applied lane by lane (rare ops off the hot path).
fn libm(name32: &str, name64: &str, x: Expr, ty: Ty) -> Expr {
    let name = if ty.elem == DType::F64 {
        name64
    } else {
        name32
    };
    Expr::Call(name.to_string(), vec![x], ty)
}

/// The expression of one elementwise node applied to its operands.
pub fn op_expr(
    b: &mut KernelBuilder,
    g: &Graph,
    node: &Node,
    args: Vec<Option<Expr>>,
) -> Result<Expr, Unsupported> {
    let out_dt = g.ty(node.outputs[0]).dtype;
    let mut it = args.into_iter();
    let x = it.next().flatten();
    let rest: Vec<Option<Expr>> = it.collect();
    let Some(x) = x else {
        return unsupported("elementwise op without its first operand");
    };
    let ty = b.ty(&x);
    let y = || rest.first().cloned().flatten().expect("second operand");
    let fl = ty.elem.is_float();
    use Op::*;
    let e = match &node.op {
        Identity(_) | Expand(_) | Dropout(_) => x,
        Abs(_) if ty.elem.is_unsigned_int() || ty.elem == DType::Bool => x,
        Abs(_) => Expr::un(UnOp::Abs, x),
        Neg(_) => Expr::un(UnOp::Neg, x),
        Ceil(_) => Expr::un(UnOp::Ceil, x),
        Floor(_) => Expr::un(UnOp::Floor, x),
        Round(_) => Expr::un(UnOp::Round, x),
        Sqrt(_) => Expr::un(UnOp::Sqrt, x),
        Reciprocal(_) => bin(BinOp::Div, k(1.0, ty), x),
        Exp(_) => math::exp(b, x),
        Log(_) => fm::log(b, x),
        Tanh(_) => fm::tanh(b, x),
        Sigmoid(_) => fm::sigmoid(b, x),
        Erf(_) => fm::erf(b, x),
        Sin(_) => fm::sin(b, x),
        Cos(_) => fm::cos(b, x),
        Tan(_) => libm("tanf", "tan", x, ty),
        Asin(_) => libm("asinf", "asin", x, ty),
        Acos(_) => libm("acosf", "acos", x, ty),
        Atan(_) => libm("atanf", "atan", x, ty),
        Sinh(_) => libm("sinhf", "sinh", x, ty),
        Cosh(_) => libm("coshf", "cosh", x, ty),
        Asinh(_) => libm("asinhf", "asinh", x, ty),
        Acosh(_) => libm("acoshf", "acosh", x, ty),
        Atanh(_) => libm("atanhf", "atanh", x, ty),
        Sign(_) => {
            let x = b.let_("x", x);
            let s = Expr::select(
                bin(BinOp::Gt, x.clone(), k(0.0, ty)),
                k(1.0, ty),
                Expr::select(
                    bin(BinOp::Lt, x.clone(), k(0.0, ty)),
                    k(-1.0, ty),
                    k(0.0, ty),
                ),
            );
            if fl {
                Expr::select(bin(BinOp::Ne, x.clone(), x.clone()), x, s)
            } else {
                s
            }
        }
        IsNaN(_) => {
            let x = b.let_("x", x);
            bin(BinOp::Ne, x.clone(), x)
        }
        IsInf(o) => {
            let x = b.let_("x", x);
            let pos = bin(BinOp::Eq, x.clone(), k(f64::INFINITY, ty));
            let neg = bin(BinOp::Eq, x, k(f64::NEG_INFINITY, ty));
            match (o.detect_positive, o.detect_negative) {
                (true, true) => bin(BinOp::Or, pos, neg),
                (true, false) => pos,
                (false, true) => neg,
                (false, false) => Expr::Int(0, ty.with_elem(DType::Bool)),
            }
        }
        // `x < 0 ? 0 : x` keeps a NaN (it is not below 0) as `max` does,
        // and is one `maxps` on x86 (`max` must also order -0 below +0).
        Relu(_) if ty.elem.is_float() => {
            let x = b.let_("x", x);
            Expr::select(bin(BinOp::Lt, x.clone(), k(0.0, ty)), k(0.0, ty), x)
        }
        Relu(_) => Expr::bin(BinOp::Max, x, k(0.0, ty)),
        LeakyRelu(o) => {
            let x = b.let_("x", x);
            Expr::select(
                bin(BinOp::Lt, x.clone(), k(0.0, ty)),
                bin(BinOp::Mul, x.clone(), k(o.alpha as f64, ty)),
                x,
            )
        }
        PRelu(_) => {
            let x = b.let_("x", x);
            Expr::select(
                bin(BinOp::Lt, x.clone(), k(0.0, ty)),
                bin(BinOp::Mul, x.clone(), y()),
                x,
            )
        }
        ThresholdedRelu(o) => {
            let x = b.let_("x", x);
            Expr::select(
                bin(BinOp::Gt, x.clone(), k(o.alpha as f64, ty)),
                x,
                k(0.0, ty),
            )
        }
        Elu(o) => {
            let x = b.let_("x", x);
            let e = math::exp(b, x.clone());
            let neg = bin(
                BinOp::Mul,
                k(o.alpha as f64, ty),
                bin(BinOp::Sub, e, k(1.0, ty)),
            );
            Expr::select(bin(BinOp::Lt, x.clone(), k(0.0, ty)), neg, x)
        }
        Selu(o) => {
            let x = b.let_("x", x);
            let e = math::exp(b, x.clone());
            let a = o.alpha as f64;
            let neg = bin(BinOp::Sub, bin(BinOp::Mul, k(a, ty), e), k(a, ty));
            let v = Expr::select(bin(BinOp::Le, x.clone(), k(0.0, ty)), neg, x);
            bin(BinOp::Mul, k(o.gamma as f64, ty), v)
        }
        Celu(o) => {
            let x = b.let_("x", x);
            let a = o.alpha as f64;
            let e = math::exp(b, bin(BinOp::Div, x.clone(), k(a, ty)));
            let neg = bin(BinOp::Mul, k(a, ty), bin(BinOp::Sub, e, k(1.0, ty)));
            bin(
                BinOp::Add,
                bin(BinOp::Max, x, k(0.0, ty)),
                bin(BinOp::Min, neg, k(0.0, ty)),
            )
        }
        HardSigmoid(o) => {
            let v = Expr::mul_add(x, k(o.alpha as f64, ty), k(o.beta as f64, ty));
            bin(BinOp::Max, bin(BinOp::Min, v, k(1.0, ty)), k(0.0, ty))
        }
        HardSwish(_) => {
            let x = b.let_("x", x);
            let v = Expr::mul_add(x.clone(), k(1.0 / 6.0, ty), k(0.5, ty));
            let v = bin(BinOp::Max, bin(BinOp::Min, v, k(1.0, ty)), k(0.0, ty));
            bin(BinOp::Mul, x, v)
        }
        Softplus(_) => softplus(b, x),
        Softsign(_) => {
            let x = b.let_("x", x);
            let d = bin(BinOp::Add, k(1.0, ty), Expr::un(UnOp::Abs, x.clone()));
            bin(BinOp::Div, x, d)
        }
        Shrink(o) => {
            let x = b.let_("x", x);
            let (l, bias) = (o.lambd as f64, o.bias as f64);
            Expr::select(
                bin(BinOp::Lt, x.clone(), k(-l, ty)),
                bin(BinOp::Add, x.clone(), k(bias, ty)),
                Expr::select(
                    bin(BinOp::Gt, x.clone(), k(l, ty)),
                    bin(BinOp::Sub, x, k(bias, ty)),
                    k(0.0, ty),
                ),
            )
        }
        Swish(o) => {
            let x = b.let_("x", x);
            let s = fm::sigmoid(b, bin(BinOp::Mul, x.clone(), k(o.alpha as f64, ty)));
            bin(BinOp::Mul, x, s)
        }
        Mish(_) => {
            let x = b.let_("x", x);
            let sp = softplus(b, x.clone());
            let t = fm::tanh(b, sp);
            bin(BinOp::Mul, x, t)
        }
        Gelu(o) => {
            let x = b.let_("x", x);
            let inner = match o.approximate {
                GeluApproximation::None => fm::erf(
                    b,
                    bin(
                        BinOp::Mul,
                        x.clone(),
                        k(std::f64::consts::FRAC_1_SQRT_2, ty),
                    ),
                ),
                GeluApproximation::Tanh => {
                    let x3 = bin(BinOp::Mul, bin(BinOp::Mul, x.clone(), x.clone()), x.clone());
                    let u = Expr::mul_add(x3, k(0.044715, ty), x.clone());
                    let c = (2.0 / std::f64::consts::PI).sqrt();
                    fm::tanh(b, bin(BinOp::Mul, u, k(c, ty)))
                }
            };
            let h = bin(BinOp::Mul, x, k(0.5, ty));
            Expr::mul_add(h.clone(), inner, h)
        }
        Clip(_) => {
            let mut v = x;
            if let Some(lo) = rest.first().cloned().flatten() {
                v = bin(BinOp::Max, v, lo);
            }
            if let Some(hi) = rest.get(1).cloned().flatten() {
                v = bin(BinOp::Min, v, hi);
            }
            v
        }
        Add(_) => bin(BinOp::Add, x, y()),
        Sub(_) => bin(BinOp::Sub, x, y()),
        Mul(_) => bin(BinOp::Mul, x, y()),
        Div(_) => bin(BinOp::Div, x, y()),
        Pow(_) => {
            let e = y();
            let e = if b.ty(&e).elem != ty.elem {
                e.cast(ty.elem)
            } else {
                e
            };
            fm::pow(b, x, e)
        }
        Mod(o) => {
            let (x, yv) = (b.let_("x", x), b.let_("y", y()));
            if fl {
                // fmod: the remainder with the dividend's sign; without
                // `fmod`, Python's: the divisor's sign (x % -inf = -inf).
                let r = b.let_("r", bin(BinOp::Rem, x, yv.clone()));
                if o.fmod {
                    r
                } else {
                    let z = k(0.0, ty);
                    let fix = bin(
                        BinOp::And,
                        bin(BinOp::Ne, r.clone(), z.clone()),
                        bin(
                            BinOp::Ne,
                            bin(BinOp::Lt, r.clone(), z.clone()),
                            bin(BinOp::Lt, yv.clone(), z),
                        ),
                    );
                    Expr::select(fix, bin(BinOp::Add, r.clone(), yv), r)
                }
            } else {
                let r = b.let_("r", bin(BinOp::Rem, x, yv.clone()));
                if o.fmod || ty.elem.is_unsigned_int() {
                    r
                } else {
                    // Python's modulo: the remainder takes the divisor's sign.
                    let z = k(0.0, ty);
                    let fix = bin(
                        BinOp::And,
                        bin(BinOp::Ne, r.clone(), z.clone()),
                        bin(
                            BinOp::Ne,
                            bin(BinOp::Lt, r.clone(), z.clone()),
                            bin(BinOp::Lt, yv.clone(), z),
                        ),
                    );
                    Expr::select(fix, bin(BinOp::Add, r.clone(), yv), r)
                }
            }
        }
        Max(_) | Min(_) | Sum(_) | Mean(_) => {
            let op = match &node.op {
                Max(_) => BinOp::Max,
                Min(_) => BinOp::Min,
                _ => BinOp::Add,
            };
            let mut acc = x;
            let n = 1 + rest.len();
            for r in rest.iter().flatten() {
                acc = bin(op, acc, r.clone());
            }
            if matches!(node.op, Mean(_)) {
                acc = bin(BinOp::Div, acc, k(n as f64, ty));
            }
            acc
        }
        Where(_) => {
            let a = y();
            let c = rest.get(1).cloned().flatten().expect("third operand");
            Expr::select(x, a, c)
        }
        Equal(_) => bin(BinOp::Eq, x, y()),
        Greater(_) => bin(BinOp::Gt, x, y()),
        GreaterOrEqual(_) => bin(BinOp::Ge, x, y()),
        Less(_) => bin(BinOp::Lt, x, y()),
        LessOrEqual(_) => bin(BinOp::Le, x, y()),
        And(_) | BitwiseAnd(_) => bin(BinOp::And, x, y()),
        Or(_) | BitwiseOr(_) => bin(BinOp::Or, x, y()),
        Xor(_) | BitwiseXor(_) => bin(BinOp::Xor, x, y()),
        Not(_) | BitwiseNot(_) => Expr::un(UnOp::Not, x),
        BitShift(o) => {
            let op = match o.direction {
                saturn_ir::ops::ShiftDirection::Left => BinOp::Shl,
                saturn_ir::ops::ShiftDirection::Right => BinOp::Shr,
            };
            // Amounts outside [0, width) leave only the sign fill: -1 for a
            // right shift of a negative number, 0 otherwise.
            let (x, s) = (b.let_("x", x), b.let_("s", y()));
            let bits = ty.elem.bits() as f64;
            let in_range = bin(BinOp::Lt, s.clone(), k(bits, ty));
            let in_range = if ty.elem.is_signed_int() {
                bin(BinOp::And, in_range, bin(BinOp::Ge, s.clone(), k(0.0, ty)))
            } else {
                in_range
            };
            let fill = match o.direction {
                saturn_ir::ops::ShiftDirection::Right if ty.elem.is_signed_int() => Expr::select(
                    bin(BinOp::Lt, x.clone(), k(0.0, ty)),
                    k(-1.0, ty),
                    k(0.0, ty),
                ),
                _ => k(0.0, ty),
            };
            Expr::select(in_range, bin(op, x, s), fill)
        }
        Cast(_) | CastLike(_) => match Half::of(out_dt) {
            // Half results stay f32 in registers, rounded to the format.
            Some(h) => {
                let x = if ty.elem == DType::F32 {
                    x
                } else {
                    x.cast(DType::F32)
                };
                math::round_to_half(b, x, h)
            }
            None if out_dt == ty.elem => x,
            None => x.cast(out_dt),
        },
        _ => return unsupported(format!("`{}` has no elementwise lowering", node.op.name())),
    };
    Ok(e)
}

fn softplus(b: &mut KernelBuilder, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let x = b.let_("x", x);
    let e = math::exp(b, x.clone());
    let l = fm::log(b, bin(BinOp::Add, e, k(1.0, ty)));
    Expr::select(bin(BinOp::Gt, x.clone(), k(30.0, ty)), x, l)
}

/// Strides of `v` read at a multi-index of `out` (0 along broadcast dims).
pub fn broadcast_strides(v_shape: &[usize], out: &[usize]) -> Vec<i64> {
    let own = saturn_ir::tensor::strides(v_shape);
    let off = out.len() - v_shape.len();
    (0..out.len())
        .map(|d| {
            if d < off || v_shape[d - off] == 1 {
                0
            } else {
                own[d - off] as i64
            }
        })
        .collect()
}

/// A load of `buf` at the multi-index `idx` walked with `strides`; vectors
/// run along the innermost dim.
fn strided_load(
    buf: saturn_ir::kernel::BufId,
    strides: &[i64],
    idx: &[Expr],
    lanes: u16,
    mask: Option<Expr>,
) -> Expr {
    let mut index = Expr::idx(0);
    for (i, s) in idx.iter().zip(strides) {
        index = index + i.clone() * *s;
    }
    let inner = strides.last().copied().unwrap_or(0);
    if lanes == 1 {
        Expr::load(buf, index)
    } else if inner == 0 {
        Expr::load(buf, index).splat(lanes)
    } else {
        Expr::load_vec(buf, index, lanes, inner, mask)
    }
}

/// Emits the tree's value at the multi-index `idx` of the output shape
/// `out`; leaves broadcast against `out` unless `view` gives their strides
/// (on a coalesced shape). `anchor` is the anchor's value for epilogues.
#[allow(clippy::too_many_arguments)]
pub fn emit_tree(
    cx: &mut NodeCx,
    t: &Tree,
    out: &[usize],
    idx: &[Expr],
    lanes: u16,
    mask: Option<Expr>,
    anchor: Option<&Expr>,
) -> Result<Expr, Unsupported> {
    emit_with(
        cx,
        t,
        &|cx: &NodeCx, v: Value| {
            broadcast_strides(&cx.g.ty(v).shape.as_known().unwrap_or_default(), out)
        },
        idx,
        lanes,
        mask,
        anchor,
    )
}

/// [`emit_tree`] on `view`, a shape that merges adjacent dims of `out`.
#[allow(clippy::too_many_arguments)]
pub fn emit_tree_view(
    cx: &mut NodeCx,
    t: &Tree,
    out: &[usize],
    view: &[usize],
    idx: &[Expr],
    lanes: u16,
    mask: Option<Expr>,
    anchor: Option<&Expr>,
) -> Result<Expr, Unsupported> {
    if view == out {
        return emit_tree(cx, t, out, idx, lanes, mask, anchor);
    }
    // Which dims of `out` each view dim covers.
    let mut groups = Vec::new();
    let mut d = 0;
    for &e in view {
        let start = d;
        let mut p = 1;
        while p < e && d < out.len() {
            p *= out[d];
            d += 1;
        }
        if p != e {
            return unsupported("output view does not merge whole dims");
        }
        groups.push(start..d);
    }
    let mut merged = Vec::new();
    for v in t.leaves() {
        let full = broadcast_strides(&cx.g.ty(v).shape.as_known().unwrap_or_default(), out);
        let mut st = Vec::new();
        for g in &groups {
            let dims: Vec<usize> = g.clone().filter(|&i| out[i] != 1).collect();
            for w in dims.windows(2) {
                if full[w[0]] != full[w[1]] * out[w[1]] as i64 {
                    return unsupported("epilogue operand does not follow the output's layout");
                }
            }
            st.push(dims.last().map(|&i| full[i]).unwrap_or(0));
        }
        merged.push((v, st));
    }
    emit_with(
        cx,
        t,
        &move |_: &NodeCx, v: Value| {
            merged
                .iter()
                .find(|(l, _)| *l == v)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        },
        idx,
        lanes,
        mask,
        anchor,
    )
}

fn emit_with(
    cx: &mut NodeCx,
    t: &Tree,
    strides_of: &dyn Fn(&NodeCx, Value) -> Vec<i64>,
    idx: &[Expr],
    lanes: u16,
    mask: Option<Expr>,
    anchor: Option<&Expr>,
) -> Result<Expr, Unsupported> {
    match t {
        Tree::Leaf(v) => {
            let strides = strides_of(cx, *v);
            let x = strided_load(cx.buf(*v), &strides, idx, lanes, mask);
            Ok(match Half::of(cx.g.ty(*v).dtype) {
                Some(h) => {
                    let x = cx.b.let_("bits", x);
                    math::half_to_f32(&mut cx.b, x, h)
                }
                None => x,
            })
        }
        Tree::Anchor => match anchor {
            Some(a) => Ok(a.clone()),
            None => unsupported("anchor in a plain elementwise tree"),
        },
        Tree::Node(n, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(match a {
                    Some(a) => Some(emit_with(
                        cx,
                        a,
                        strides_of,
                        idx,
                        lanes,
                        mask.clone(),
                        anchor,
                    )?),
                    None => None,
                });
            }
            let (g, node) = (cx.g, cx.g.node(*n));
            op_expr(&mut cx.b, g, node, vals)
        }
    }
}

/// Merges adjacent dims that every operand walks alike. Returns the new
/// extents and, per operand, its new strides.
pub fn coalesce(extents: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let mut ext: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for d in 0..extents.len() {
        if extents[d] == 1 {
            continue;
        }
        let mergeable = !ext.is_empty()
            && strides
                .iter()
                .zip(&st)
                .all(|(s, ns)| *ns.last().unwrap() == s[d] * extents[d] as i64);
        if mergeable {
            *ext.last_mut().unwrap() *= extents[d];
            for (s, ns) in strides.iter().zip(st.iter_mut()) {
                *ns.last_mut().unwrap() = s[d];
            }
        } else {
            ext.push(extents[d]);
            for (s, ns) in strides.iter().zip(st.iter_mut()) {
                ns.push(s[d]);
            }
        }
    }
    (ext, st)
}

/// A vectorised loop over `[0, n)`: a main loop of full vectors and, when
/// `n` is not a multiple of `lanes`, one masked step for the rest. The
/// body gets the index and the mask (None for full vectors).
pub fn vector_loop(
    cx: &mut NodeCx,
    name: &str,
    n: usize,
    lanes: u16,
    body: &mut dyn FnMut(&mut NodeCx, Expr, Option<Expr>) -> Result<(), Unsupported>,
) -> Result<(), Unsupported> {
    let l = lanes as usize;
    let full = n / l * l;
    if full > 0 {
        let i = cx.b.begin_for(name, 0, full, l as i64, LoopKind::Serial);
        body(cx, i, None)?;
        cx.b.end_for();
    }
    if full < n {
        body(
            cx,
            Expr::idx(full as i64),
            Some(Expr::idx((n - full) as i64)),
        )?;
    }
    Ok(())
}

/// Lowers a group that is an elementwise tree alone.
pub fn lower_tree(cx: &mut NodeCx) -> Result<(), Unsupported> {
    let vl = cx.lanes(DType::F32);
    let tree = cx.group.epilogue.clone().expect("tree");
    let root = cx.group.root.expect("root");
    let out = cx.g.ty(root).shape.as_known().unwrap_or_default();
    let leaves = tree.leaves();
    let mut all: Vec<Vec<i64>> = leaves
        .iter()
        .map(|v| broadcast_strides(&cx.g.ty(*v).shape.as_known().unwrap_or_default(), &out))
        .collect();
    all.push(
        saturn_ir::tensor::strides(&out)
            .iter()
            .map(|s| *s as i64)
            .collect(),
    );
    let (shape, st) = coalesce(&out, &all);
    let strides: Vec<(Value, Vec<i64>)> = leaves.iter().copied().zip(st.iter().cloned()).collect();
    let strides_of = move |_: &NodeCx, v: Value| {
        strides
            .iter()
            .find(|(l, _)| *l == v)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    let total: usize = out.iter().product();
    let buf = cx.out_buf(0);
    let out_dt = cx.g.ty(root).dtype;
    if total == 0 {
        return Ok(());
    }
    if shape.is_empty() {
        let v = emit_with(cx, &tree, &strides_of, &[], 1, None, None)?;
        let v = cast_to(cx, v, out_dt);
        cx.b.store(buf, Expr::idx(0), v);
        return Ok(());
    }
    let rank = shape.len();
    let n = shape[rank - 1];
    let lanes = if n >= vl as usize { vl } else { 1 };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let parallel = total >= PARALLEL_MIN;
    let out_strides = st.last().cloned().unwrap_or_default();
    let mut idx = Vec::new();
    let store = |cx: &mut NodeCx, idx: &[Expr], mask: Option<Expr>, lanes: u16| {
        let v = emit_with(cx, &tree, &strides_of, idx, lanes, mask.clone(), None)?;
        let v = cast_to(cx, v, out_dt);
        let mut flat = Expr::idx(0);
        for (i, s) in idx.iter().zip(&out_strides) {
            flat = flat + i.clone() * *s;
        }
        cx.b.store_vec(buf, flat, v, 1, mask);
        Ok(())
    };
    if rank == 1 && parallel {
        // One long dim: parallel chunks of whole vectors, then the tail.
        let chunk = 4096usize;
        let l = lanes as usize;
        let full = n / l * l;
        cx.schedule("parallel", AttrValue::Str("c".into()));
        cx.schedule("chunk", AttrValue::Int(chunk as i64));
        let c =
            cx.b.begin_for("c", 0, full.div_ceil(chunk), 1, LoopKind::Parallel);
        let start = c.clone() * chunk as i64;
        let end = (start.clone() + chunk as i64).min(Expr::idx(full as i64));
        let i = cx.b.begin_for("d0", start, end, l as i64, LoopKind::Serial);
        store(cx, &[i], None, lanes)?;
        cx.b.end_for();
        cx.b.end_for();
        if full < n {
            store(
                cx,
                &[Expr::idx(full as i64)],
                Some(Expr::idx((n - full) as i64)),
                lanes,
            )?;
        }
        return Ok(());
    }
    for (d, &e) in shape[..rank - 1].iter().enumerate() {
        let kind = if parallel && d == 0 {
            cx.schedule("parallel", AttrValue::Str("d0".into()));
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        idx.push(cx.b.begin_for(&format!("d{d}"), 0, e, 1, kind));
    }
    vector_loop(
        cx,
        &format!("d{}", rank - 1),
        n,
        lanes,
        &mut |cx, i, mask| {
            let mut full = idx.clone();
            full.push(i);
            store(cx, &full, mask, lanes)
        },
    )?;
    for _ in 0..rank - 1 {
        cx.b.end_for();
    }
    Ok(())
}

/// Converts a value to the buffer dtype it is stored to.
pub fn cast_to(cx: &mut NodeCx, v: Expr, dt: DType) -> Expr {
    to_storage(&mut cx.b, v, dt)
}

/// A value computed for a graph value of dtype `dt`, converted to what its
/// buffer holds: the bits of a half format, else the dtype itself.
pub fn to_storage(b: &mut KernelBuilder, v: Expr, dt: DType) -> Expr {
    let have = b.ty(&v).elem;
    match Half::of(dt) {
        Some(h) => {
            let v = if have == DType::F32 {
                v
            } else {
                v.cast(DType::F32)
            };
            math::f32_to_half(b, v, h)
        }
        None if have != dt => v.cast(dt),
        None => v,
    }
}

/// Math functions: the hot ones (exp, log, tanh, erf, sigmoid) are
/// polynomial code from `kernel::math`; sin, cos and pow call libm.
mod fm {
    use super::{Expr, KernelBuilder, Ty, libm};
    use saturn_ir::kernel::{BinOp, math};
    pub fn log(b: &mut KernelBuilder, x: Expr) -> Expr {
        math::log(b, x)
    }
    pub fn tanh(b: &mut KernelBuilder, x: Expr) -> Expr {
        math::tanh(b, x)
    }
    pub fn erf(b: &mut KernelBuilder, x: Expr) -> Expr {
        math::erf(b, x)
    }
    pub fn sin(b: &mut KernelBuilder, x: Expr) -> Expr {
        let t = b.ty(&x);
        libm("sinf", "sin", x, t)
    }
    pub fn cos(b: &mut KernelBuilder, x: Expr) -> Expr {
        let t = b.ty(&x);
        libm("cosf", "cos", x, t)
    }
    pub fn sigmoid(b: &mut KernelBuilder, x: Expr) -> Expr {
        let t: Ty = b.ty(&x);
        let e = math::exp(b, -x);
        Expr::bin(
            BinOp::Div,
            Expr::constant(1.0, t),
            Expr::bin(BinOp::Add, Expr::constant(1.0, t), e),
        )
    }
    pub fn pow(b: &mut KernelBuilder, x: Expr, y: Expr) -> Expr {
        let t = b.ty(&x);
        let name = if t.elem == saturn_ir::DType::F64 {
            "pow"
        } else {
            "powf"
        };
        Expr::Call(name.to_string(), vec![x, y], t)
    }
}
