//! The lowering context of one group: the kernel under construction, its
//! buffers bound to graph values, and the epilogue applied on store.

use super::fuse::{Group, Tree};
use super::{Arg, Unsupported, elementwise, unsupported};
use saturn_ir::graph::{Graph, Node, NodeId, Value};
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::{BufId, BufKind, Expr, Kernel};
use saturn_ir::target::Target;
use saturn_ir::tensor::Tensor;
use saturn_ir::{AttrValue, DType};
use std::collections::HashMap;

/// Lanes of one vector register of `dt` on `target`.
pub fn lanes_for(target: &Target, dt: DType) -> u16 {
    (target.vector_bits.max(8) / dt.bits().max(8) as u32).clamp(1, 64) as u16
}

/// The block of C an f32 GEMM-like micro-kernel holds in registers:
/// `mr` rows (broadcast operand) × `nv` vectors of `lanes` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegBlock {
    pub mr: usize,
    pub nv: usize,
    pub lanes: usize,
    /// Vector registers a kernel may assume: 32 with 512-bit vectors, 16
    /// otherwise (AVX2, SSE; NEON's 32 are not counted on).
    pub registers: usize,
}

impl RegBlock {
    /// Sized to the register file: 512-bit vectors come with 32
    /// registers (AVX-512): 8 × 2 accumulators; 256-bit ones with 16
    /// (AVX2): 6 × 2; 128-bit ones (SSE, NEON, Cranelift): 4 × 2.
    pub fn for_target(target: &Target) -> RegBlock {
        let lanes = lanes_for(target, DType::F32) as usize;
        let mr = match lanes {
            16.. => 8,
            8 => 6,
            _ => 4,
        };
        let registers = if lanes >= 16 { 32 } else { 16 };
        RegBlock {
            mr,
            nv: 2,
            lanes,
            registers,
        }
    }

    /// Columns of the block.
    pub fn nr(&self) -> usize {
        self.nv * self.lanes
    }
}

/// Lowering state for one group. Anchor lowerings read their inputs
/// through [`NodeCx::input`] and write results with
/// [`NodeCx::store_out`], which applies the epilogue.
pub struct NodeCx<'a> {
    pub g: &'a Graph,
    pub target: &'a Target,
    pub group: &'a Group,
    pub b: KernelBuilder,
    args: Vec<Arg>,
    bufs: HashMap<Value, BufId>,
    /// Whether the kernel writes each output element once, through
    /// [`NodeCx::store_out`], and never reads the output back: an
    /// epilogue operand of the output's shape may then share its memory.
    reusable: bool,
}

impl<'a> NodeCx<'a> {
    pub(crate) fn new(
        g: &'a Graph,
        target: &'a Target,
        group: &'a Group,
    ) -> Result<NodeCx<'a>, Unsupported> {
        let name = match (group.anchor, &group.epilogue) {
            (Some(a), Some(_)) => format!("{}_fused", g.node(a).op.name()),
            (Some(a), None) => g.node(a).op.name().to_string(),
            (None, Some(Tree::Node(n, _))) => g.node(*n).op.name().to_string(),
            _ => "kernel".to_string(),
        };
        let mut cx = NodeCx {
            g,
            target,
            group,
            b: KernelBuilder::new(name),
            args: Vec::new(),
            bufs: HashMap::new(),
            reusable: false,
        };
        if let Some(a) = group.anchor {
            for v in g.node(a).inputs.iter().flatten() {
                cx.bind_input(*v)?;
            }
        }
        if let Some(t) = &group.epilogue {
            for v in t.leaves() {
                cx.bind_input(v)?;
            }
        }
        let outs: Vec<Value> = match (group.root, group.anchor) {
            (Some(r), _) => vec![r],
            (None, Some(a)) => g.node(a).outputs.clone(),
            (None, None) => vec![],
        };
        for v in outs {
            let (dt, n) = cx.static_type(v)?;
            let b = cx.b.output(&clean(g.name(v)), dt, n);
            cx.args.push(Arg::Value(v));
            cx.bufs.insert(v, b);
        }
        Ok(cx)
    }

    fn static_type(&self, v: Value) -> Result<(DType, usize), Unsupported> {
        let ty = self.g.ty(v);
        let Some(storage) = super::storage_dtype(ty.dtype) else {
            return unsupported(format!("dtype {} has no kernel lowering", ty.dtype));
        };
        if storage != ty.dtype
            && let Some(a) = self.group.anchor
            && !super::half::moves_bits(&self.g.node(a).op)
        {
            return unsupported(format!(
                "`{}` computes in {}, which kernels hold only as bits (it was not widened to f32)",
                self.g.node(a).op.name(),
                ty.dtype
            ));
        }
        let Some(shape) = ty.shape.as_known() else {
            return unsupported(format!("value `{}` has no static shape", self.g.name(v)));
        };
        Ok((storage, shape.iter().product()))
    }

    fn bind_input(&mut self, v: Value) -> Result<BufId, Unsupported> {
        if let Some(b) = self.bufs.get(&v) {
            return Ok(*b);
        }
        let (dt, n) = self.static_type(v)?;
        let b = self.b.input(&clean(self.g.name(v)), dt, n);
        self.args.push(Arg::Value(v));
        self.bufs.insert(v, b);
        Ok(b)
    }

    /// The anchor node.
    /// Lanes of one vector register of `dt` on the target (at least 1):
    /// 16 f32 lanes with 512-bit vectors, 8 with 256, 4 with 128.
    pub fn lanes(&self, dt: DType) -> u16 {
        lanes_for(self.target, dt)
    }

    /// f32 lanes of one vector register.
    pub fn f32_lanes(&self) -> usize {
        self.lanes(DType::F32) as usize
    }

    /// The register block of f32 GEMM-like micro-kernels on the target.
    pub fn reg_block(&self) -> RegBlock {
        RegBlock::for_target(self.target)
    }

    pub fn node(&self) -> &'a Node {
        self.g.node(self.group.anchor.expect("anchor"))
    }

    pub fn anchor_id(&self) -> NodeId {
        self.group.anchor.expect("anchor")
    }

    /// The buffer of the anchor's input `i`, if present.
    pub fn input(&self, i: usize) -> Option<BufId> {
        let v = (*self.node().inputs.get(i)?)?;
        self.bufs.get(&v).copied()
    }

    /// The buffer bound to a value of the group.
    pub fn buf(&self, v: Value) -> BufId {
        self.bufs[&v]
    }

    pub fn in_value(&self, i: usize) -> Option<Value> {
        self.node().inputs.get(i).copied().flatten()
    }

    /// Static shape of the anchor's input `i`.
    pub fn in_shape(&self, i: usize) -> Vec<usize> {
        self.in_value(i)
            .and_then(|v| self.g.ty(v).shape.as_known())
            .unwrap_or_default()
    }

    pub fn in_dtype(&self, i: usize) -> DType {
        self.g.ty(self.in_value(i).expect("input")).dtype
    }

    /// The constant bound to buffer `b`, if `b` holds a graph constant.
    pub fn const_of_buf(&self, b: BufId) -> Option<&'a Tensor> {
        let v = self.bufs.iter().find(|(_, x)| **x == b).map(|(v, _)| *v)?;
        self.g.const_value(v).map(|t| &**t)
    }

    /// The constant value of the anchor's input `i`, if it is one.
    pub fn in_const(&self, i: usize) -> Option<&'a Tensor> {
        self.g.const_value(self.in_value(i)?).map(|t| &**t)
    }

    pub fn out_shape(&self, i: usize) -> Vec<usize> {
        self.g
            .ty(self.node().outputs[i])
            .shape
            .as_known()
            .unwrap_or_default()
    }

    pub fn out_dtype(&self, i: usize) -> DType {
        self.g.ty(self.node().outputs[i]).dtype
    }

    /// The buffer the anchor's output `i` is finally stored to (the
    /// group's root when an epilogue follows).
    pub fn out_buf(&self, i: usize) -> BufId {
        match self.group.root {
            Some(r) => self.bufs[&r],
            None => self.bufs[&self.node().outputs[i]],
        }
    }

    /// Whether stores of output 0 go through an epilogue.
    pub fn has_epilogue(&self) -> bool {
        self.group.anchor.is_some() && self.group.epilogue.is_some()
    }

    /// Fails when the lowering needs to read its output back (then the
    /// group is retried without fusion).
    pub fn no_epilogue(&self) -> Result<(), Unsupported> {
        if self.has_epilogue() {
            return unsupported("this lowering does not take an epilogue");
        }
        Ok(())
    }

    /// Records a schedule knob on the kernel.
    pub fn schedule(&mut self, key: &str, v: AttrValue) {
        self.b.schedule(key, v);
    }

    /// Stores `value` (scalar, or `lanes` consecutive elements along the
    /// innermost dim) as output 0 at the multi-index `idx`, after the
    /// epilogue.
    pub fn store_out(
        &mut self,
        idx: &[Expr],
        value: Expr,
        mask: Option<Expr>,
    ) -> Result<(), Unsupported> {
        let out_shape = self.final_shape();
        self.store_out_view(&out_shape, idx, value, mask)
    }

    /// The shape of what the group finally stores.
    pub fn final_shape(&self) -> Vec<usize> {
        match self.group.root {
            Some(r) => self.g.ty(r).shape.as_known().unwrap_or_default(),
            None => self.out_shape(0),
        }
    }

    /// [`NodeCx::store_out`] with the output seen as `view`: the output
    /// shape with some adjacent dims merged (a conv stores `[n, c, h·w]`).
    /// Fails (and the group is retried unfused) when an epilogue operand
    /// cannot be read through the merged view.
    pub fn store_out_view(
        &mut self,
        view: &[usize],
        idx: &[Expr],
        value: Expr,
        mask: Option<Expr>,
    ) -> Result<(), Unsupported> {
        let out_shape = self.final_shape();
        let value = match &self.group.epilogue {
            Some(t) if self.group.anchor.is_some() => {
                let lanes = self.b.ty(&value).lanes;
                let t = t.clone();
                let v = self.b.let_("acc", value);
                elementwise::emit_tree_view(
                    self,
                    &t,
                    &out_shape,
                    view,
                    idx,
                    lanes,
                    mask.clone(),
                    Some(&v),
                )?
            }
            _ => value,
        };
        let flat = flat_index(view, idx);
        let buf = self.out_buf(0);
        let final_dtype = match self.group.root {
            Some(r) => self.g.ty(r).dtype,
            None => self.out_dtype(0),
        };
        let value = super::elementwise::to_storage(&mut self.b, value, final_dtype);
        self.b.store_vec(buf, flat, value, 1, mask);
        Ok(())
    }

    /// Declares that the kernel stores each element of its output once,
    /// through [`NodeCx::store_out`] (which reads the epilogue's operands
    /// at that element first), and reads none back: the output may then
    /// be written over an epilogue operand of its shape that nothing reads
    /// later (a residual), which the runtime decides.
    pub fn stores_each_output_once(&mut self) {
        self.reusable = true;
    }

    /// The epilogue operand the output may reuse: the first of the
    /// output's dtype and shape that the anchor does not read.
    fn reusable_leaf(&self) -> Option<Value> {
        let (anchor, tree) = (self.group.anchor?, self.group.epilogue.as_ref()?);
        if !self.reusable
            || self
                .b
                .kernel()
                .bufs
                .iter()
                .filter(|b| b.kind == BufKind::Output)
                .count()
                != 1
        {
            return None;
        }
        let trim =
            |s: Vec<usize>| -> Vec<usize> { s.into_iter().skip_while(|&d| d == 1).collect() };
        let out_shape = trim(self.final_shape());
        let out_dtype = match self.group.root {
            Some(r) => self.g.ty(r).dtype,
            None => self.out_dtype(0),
        };
        let anchor_inputs = &self.g.node(anchor).inputs;
        tree.leaves().into_iter().find(|&v| {
            let ty = self.g.ty(v);
            ty.dtype == out_dtype
                && ty.shape.as_known().map(trim) == Some(out_shape.clone())
                && !anchor_inputs.contains(&Some(v))
        })
    }

    /// The kernel and its arguments; input buffers the body never reads
    /// (a weight the lowering repacked at compile time) are dropped.
    pub(crate) fn finish(mut self) -> Result<(Kernel, Vec<Arg>), Unsupported> {
        if let Some(v) = self.reusable_leaf() {
            let (out, input) = (self.out_buf(0), self.bufs[&v]);
            self.b.reuse(out, input);
        }
        let mut k = self.b.finish();
        let used = k.used_bufs();
        let keep: Vec<bool> = k
            .bufs
            .iter()
            .zip(&used)
            .map(|(b, &u)| u || b.kind != saturn_ir::kernel::BufKind::Input)
            .collect();
        let mut args = self.args;
        if keep.iter().any(|k| !k) {
            k.retain_bufs(&keep);
            let mut i = 0;
            args.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        Ok((k, args))
    }

    /// An input buffer holding `t`, computed now (at compile time): e.g.
    /// constant weights in the layout the micro-kernel reads.
    pub fn const_buf(&mut self, name: &str, t: Tensor) -> BufId {
        let b = self.b.input(name, t.dtype(), t.numel());
        self.args.push(Arg::Const(std::sync::Arc::new(t)));
        b
    }

    /// Declares a scratch buffer bound to working memory.
    pub fn scratch(&mut self, name: &str, dtype: DType, len: usize) -> BufId {
        let b = self.b.scratch(name, dtype, len);
        self.args.push(Arg::Scratch);
        b
    }
}

/// Row-major flat index of a multi-index into `shape`.
pub fn flat_index(shape: &[usize], idx: &[Expr]) -> Expr {
    let strides = saturn_ir::tensor::strides(shape);
    let mut e = Expr::idx(0);
    for (i, s) in idx.iter().zip(strides) {
        e = e + i.clone() * s as i64;
    }
    e
}

/// A buffer name from a value name: identifier characters only.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
