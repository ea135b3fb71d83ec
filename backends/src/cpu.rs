//! The CPU backends: lowering to Kernel IR, machine code through a
//! [`Codegen`] compiled into the process, run by the runtime. `cpu` uses
//! Cranelift; `llvm` (feature `llvm`) uses LLVM.
//!
//! A graph whose shapes are all static compiles once, in `prepare`. A
//! graph with symbolic dims compiles per set of concrete input shapes, on
//! first use: the graph is specialised to those shapes, optimized again
//! (shapes now known fold away) and lowered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use saturn_ir::graph::{Graph, ValueDef};
use saturn_ir::kernel::BufKind;
use saturn_ir::target::Target;
use saturn_ir::{Tensor, builder};
use saturn_passes::lower::{self, Arg, LowerOptions, Lowered, Step};
use saturn_runtime::{KernelFn, Plan, PlanStep, Session, Slot, SlotKind};

use super::native::{Codegen, JitCode};
use super::{Backend, BackendError, Executable, PrepareOptions};

/// A CPU backend: its name and its code generator for this machine.
pub struct Cpu {
    pub name: &'static str,
    pub description: &'static str,
    pub codegen: fn() -> Box<dyn Codegen>,
}

/// `cpu`: Cranelift.
pub static CPU: Cpu = Cpu {
    name: "cpu",
    description: "native code for this CPU through Cranelift (128-bit SIMD), compiled in process",
    codegen: || Box::new(super::cpu_cranelift::Cranelift),
};

/// `llvm`: LLVM for this CPU.
#[cfg(feature = "llvm")]
pub static LLVM: Cpu = Cpu {
    name: "llvm",
    description: "native code for this CPU through LLVM (AVX-512 / AVX2 / NEON), compiled in process",
    codegen: || Box::new(super::cpu_llvm::Llvm::host()),
};

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, BackendError> {
        self.prepare_with(graph, &PrepareOptions::default())
    }

    fn prepare_with(
        &self,
        graph: &Graph,
        opts: &PrepareOptions,
    ) -> Result<Box<dyn Executable>, BackendError> {
        let exe = CpuExecutable {
            graph: graph.clone(),
            opts: opts.clone(),
            codegen: (self.codegen)(),
            compiled: Mutex::new(HashMap::new()),
        };
        if let Some(shapes) = static_input_shapes(graph) {
            let c = compile_with(graph, &opts.target, opts.threads, exe.codegen.as_ref())?;
            exe.compiled
                .lock()
                .expect("fresh lock")
                .insert(shapes, Arc::new(c));
        }
        Ok(Box::new(exe))
    }
}

fn static_input_shapes(g: &Graph) -> Option<Vec<Vec<usize>>> {
    g.inputs()
        .iter()
        .map(|v| g.ty(*v).shape.as_known())
        .collect()
}

struct CpuExecutable {
    graph: Graph,
    opts: PrepareOptions,
    codegen: Box<dyn Codegen>,
    compiled: Mutex<HashMap<Vec<Vec<usize>>, Arc<Compiled>>>,
}

impl Executable for CpuExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let c = self.compiled_for(&inputs)?;
        c.session
            .run(&inputs)
            .map_err(|e| BackendError::Run(e.to_string()))
    }

    fn run_into(&self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<(), BackendError> {
        let c = self.compiled_for(inputs)?;
        c.session
            .run_into(inputs, outputs)
            .map_err(|e| BackendError::Run(e.to_string()))
    }

    fn profile(&self, inputs: Vec<Tensor>) -> Result<Option<Vec<(String, f64)>>, BackendError> {
        let c = self.compiled_for(&inputs)?;
        let (_, steps) = c
            .session
            .profile(&inputs)
            .map_err(|e| BackendError::Run(e.to_string()))?;
        Ok(Some(steps))
    }
}

impl CpuExecutable {
    /// The compiled model for the shapes of `inputs` (compiled now if new).
    fn compiled_for(&self, inputs: &[Tensor]) -> Result<Arc<Compiled>, BackendError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let c = {
            let mut cache = self
                .compiled
                .lock()
                .map_err(|_| BackendError::Run("a previous compile panicked".into()))?;
            match cache.get(&shapes) {
                Some(c) => c.clone(),
                None => {
                    check_against(&self.graph, inputs)?;
                    let g = builder::specialize(&self.graph, &shapes)
                        .map_err(|e| BackendError::Run(e.to_string()))?;
                    let g = saturn_passes::eqsat::optimize(&g, &self.opts.target)
                        .map(|(g, _)| g)
                        .unwrap_or(g);
                    let c = Arc::new(compile_with(
                        &g,
                        &self.opts.target,
                        self.opts.threads,
                        self.codegen.as_ref(),
                    )?);
                    cache.insert(shapes, c.clone());
                    c
                }
            }
        };
        Ok(c)
    }
}

/// Inputs must agree with the graph's declared types before the graph is
/// specialised to them.
fn check_against(g: &Graph, inputs: &[Tensor]) -> Result<(), BackendError> {
    if inputs.len() != g.inputs().len() {
        return Err(BackendError::Run(format!(
            "expected {} inputs, got {}",
            g.inputs().len(),
            inputs.len()
        )));
    }
    for (i, (t, v)) in inputs.iter().zip(g.inputs()).enumerate() {
        let ty = g.ty(*v);
        if t.dtype() != ty.dtype || !ty.shape.admits(t.shape()) {
            return Err(BackendError::Run(format!(
                "input {i} (`{}`): expected {}, got {}{:?}",
                g.name(*v),
                ty,
                t.dtype(),
                t.shape()
            )));
        }
    }
    Ok(())
}

/// A graph compiled for the CPU: the graph as lowered (half-precision ops
/// widened to f32), its lowering (for reports) and a session.
pub struct Compiled {
    pub graph: Graph,
    pub lowered: Lowered,
    pub session: Session,
}

/// Lowers a graph with static shapes and compiles its kernels in process
/// with Cranelift.
pub fn compile(g: &Graph, target: &Target, threads: usize) -> Result<Compiled, BackendError> {
    compile_with(g, target, threads, &super::cpu_cranelift::Cranelift)
}

/// Lowers a graph with static shapes and compiles its kernels in process
/// with `codegen`.
pub fn compile_with(
    g: &Graph,
    target: &Target,
    threads: usize,
    codegen: &dyn Codegen,
) -> Result<Compiled, BackendError> {
    let g = lower::half::widen_half(g);
    let target = super::native::lowering_target(target, codegen);
    let lowered = lower::lower(&g, &target, &LowerOptions::default());
    let plan = build_plan(&g, &lowered)?;
    let jit: Arc<dyn JitCode> = Arc::from(codegen.jit(
        &lowered.kernels,
        &[(
            "saturn_parallel_for",
            saturn_runtime::pool::saturn_parallel_for as *const u8,
        )],
    )?);
    let fns: Vec<KernelFn> = plan
        .kernels
        .iter()
        .map(|name| {
            jit.entry(name)
                .map(|f| f as KernelFn)
                .ok_or_else(|| BackendError::Run(format!("kernel `{name}` was not compiled")))
        })
        .collect::<Result<_, _>>()?;
    let session = Session::new(plan, fns, threads, Arc::new(jit))
        .map_err(|e| BackendError::Run(e.to_string()))?;
    Ok(Compiled {
        graph: g,
        lowered,
        session,
    })
}

/// Makes the inputs of a concatenation whose parts are contiguous blocks
/// of its output (every dim before the axis is 1) views of the output, so
/// that their producers write them in place and the concatenation has
/// nothing left to do; `true` if it did. Each part must be an intermediate
/// that already has a slot of its own (so not a graph input, constant or
/// output, nor a part of another concatenation), each used once here, and
/// the output an intermediate too.
fn concat_in_place(
    g: &Graph,
    nodes: &[saturn_ir::NodeId],
    plan: &mut Plan,
    slot_of: &mut [Option<usize>],
) -> bool {
    let [n] = nodes else {
        return false;
    };
    let node = g.node(*n);
    let saturn_ir::ops::Op::Concat(c) = &node.op else {
        return false;
    };
    let out = node.outputs[0];
    let Some(shape) = g.ty(out).shape.as_known() else {
        return false;
    };
    let axis = if c.axis < 0 {
        c.axis + shape.len() as i64
    } else {
        c.axis
    };
    if axis < 0
        || axis as usize > shape.len()
        || shape[..axis as usize].iter().product::<usize>() != 1
    {
        return false;
    }
    let is_output = |v: saturn_ir::graph::Value| g.outputs().contains(&v);
    if is_output(out) || slot_of[out.index()].is_some() {
        return false;
    }
    let mut parts = Vec::new();
    for v in &node.inputs {
        let Some(v) = v else {
            return false;
        };
        let Some(s) = slot_of[v.index()] else {
            return false;
        };
        if is_output(*v) || !matches!(plan.slots[s].kind, SlotKind::Temp) || parts.contains(&s) {
            return false;
        }
        parts.push(s);
    }
    plan.slots.push(Slot {
        name: g.value(out).name.clone(),
        dtype: g.ty(out).dtype,
        shape,
        kind: SlotKind::Temp,
    });
    let base = plan.slots.len() - 1;
    slot_of[out.index()] = Some(base);
    let mut offset = 0;
    for s in parts {
        plan.slots[s].kind = SlotKind::View { base, offset };
        offset += plan.slots[s].bytes();
    }
    debug_assert_eq!(offset, plan.slots[base].bytes());
    true
}

/// The last step reading each value (`None`: no step reads it).
fn last_uses(g: &Graph, lowered: &Lowered) -> Vec<Option<usize>> {
    let mut last = vec![None; g.num_values()];
    for (t, step) in lowered.steps.iter().enumerate() {
        match step {
            Step::Kernel { args, .. } => {
                for a in args {
                    if let Arg::Value(v) = a {
                        last[v.index()] = Some(t);
                    }
                }
            }
            Step::Fallback { node, .. } => {
                for v in g.node(*node).inputs.iter().flatten() {
                    last[v.index()] = Some(t);
                }
            }
        }
    }
    last
}

/// Places the output of step `t` over an input it may reuse
/// ([`saturn_ir::kernel::Buf::reuses`]: a residual added in the epilogue)
/// when nothing reads that input after this step: the output becomes a
/// view of the input's slot, and its sum is written over the residual, so
/// the kernel moves one tensor less through memory. The input must be an
/// intermediate with a slot of its own, passed once, and neither value a
/// graph output.
fn reuse_in_place(
    g: &Graph,
    k: &saturn_ir::kernel::Kernel,
    args: &[Arg],
    t: usize,
    last_use: &[Option<usize>],
    plan: &mut Plan,
    slot_of: &mut [Option<usize>],
) {
    for (b, arg) in k.bufs.iter().zip(args) {
        let (Some(r), Arg::Value(out)) = (b.reuses, arg) else {
            continue;
        };
        let Some(Arg::Value(input)) = args.get(r.0 as usize) else {
            continue;
        };
        let passed_once = args
            .iter()
            .filter(|a| matches!(a, Arg::Value(v) if v == input))
            .count()
            == 1;
        let is_output = |v: &saturn_ir::graph::Value| g.outputs().contains(v);
        let (Some(base), Some(shape)) = (slot_of[input.index()], g.ty(*out).shape.as_known())
        else {
            continue;
        };
        let fits = g.ty(*out).dtype == g.ty(*input).dtype
            && shape.iter().product::<usize>() == plan.slots[base].shape.iter().product();
        if !passed_once
            || !fits
            || is_output(out)
            || is_output(input)
            || slot_of[out.index()].is_some()
            || last_use[input.index()] != Some(t)
            || !matches!(plan.slots[base].kind, SlotKind::Temp)
        {
            continue;
        }
        plan.slots.push(Slot {
            name: g.value(*out).name.clone(),
            dtype: g.ty(*out).dtype,
            shape,
            kind: SlotKind::View { base, offset: 0 },
        });
        slot_of[out.index()] = Some(plan.slots.len() - 1);
    }
}

/// The runtime plan of a lowered graph: a slot per value it touches and
/// per kernel scratch buffer.
pub fn build_plan(g: &Graph, lowered: &Lowered) -> Result<Plan, BackendError> {
    let mut plan = Plan {
        kernels: lowered.kernels.iter().map(|k| k.name.clone()).collect(),
        ..Plan::default()
    };
    let mut slot_of: Vec<Option<usize>> = vec![None; g.num_values()];
    let slot = |plan: &mut Plan,
                slot_of: &mut Vec<Option<usize>>,
                v: saturn_ir::graph::Value|
     -> Result<usize, BackendError> {
        if let Some(s) = slot_of[v.index()] {
            return Ok(s);
        }
        let data = g.value(v);
        let shape = data.ty.shape.as_known().ok_or_else(|| {
            BackendError::Run(format!("value `{}` has no static shape", data.name))
        })?;
        let kind = match &data.def {
            ValueDef::Input(i) => SlotKind::Input(*i),
            ValueDef::Const(t) => SlotKind::Const(t.clone()),
            ValueDef::Capture => {
                return Err(BackendError::Run(format!(
                    "capture `{}` at top level",
                    data.name
                )));
            }
            ValueDef::Node { .. } => SlotKind::Temp,
        };
        plan.slots.push(Slot {
            name: data.name.clone(),
            dtype: data.ty.dtype,
            shape,
            kind,
        });
        slot_of[v.index()] = Some(plan.slots.len() - 1);
        Ok(plan.slots.len() - 1)
    };
    for &v in g.inputs() {
        let s = slot(&mut plan, &mut slot_of, v)?;
        plan.inputs.push(s);
    }
    let last_use = last_uses(g, lowered);
    for (t, step) in lowered.steps.iter().enumerate() {
        match step {
            Step::Kernel { nodes, .. } if concat_in_place(g, nodes, &mut plan, &mut slot_of) => {}
            Step::Kernel { kernel, args, .. } => {
                let k = &lowered.kernels[*kernel];
                reuse_in_place(g, k, args, t, &last_use, &mut plan, &mut slot_of);
                let mut slots = Vec::with_capacity(args.len());
                for (a, b) in args.iter().zip(&k.bufs) {
                    slots.push(match a {
                        Arg::Value(v) => slot(&mut plan, &mut slot_of, *v)?,
                        Arg::Const(t) => {
                            plan.slots.push(Slot {
                                name: format!("{}.{}", k.name, b.name),
                                dtype: t.dtype(),
                                shape: t.shape().to_vec(),
                                kind: SlotKind::Const(t.clone()),
                            });
                            plan.slots.len() - 1
                        }
                        Arg::Scratch => {
                            debug_assert_eq!(b.kind, BufKind::Scratch);
                            let len = b.len.as_int().ok_or_else(|| {
                                BackendError::Run(format!(
                                    "scratch `{}` has no static length",
                                    b.name
                                ))
                            })?;
                            plan.slots.push(Slot {
                                name: format!("{}.{}", k.name, b.name),
                                dtype: b.dtype,
                                shape: vec![len as usize],
                                kind: SlotKind::Scratch,
                            });
                            plan.slots.len() - 1
                        }
                    });
                }
                plan.steps.push(PlanStep::Kernel {
                    kernel: *kernel,
                    args: slots,
                });
            }
            Step::Fallback { node, .. } => {
                let n = g.node(*node);
                let mut inputs = Vec::new();
                for v in &n.inputs {
                    inputs.push(match v {
                        Some(v) => Some(slot(&mut plan, &mut slot_of, *v)?),
                        None => None,
                    });
                }
                let mut outputs = Vec::new();
                for v in &n.outputs {
                    outputs.push(slot(&mut plan, &mut slot_of, *v)?);
                }
                plan.steps.push(PlanStep::Fallback {
                    label: n.label(g).to_string(),
                    op: n.op.clone(),
                    inputs,
                    outputs,
                    types: n.outputs.iter().map(|v| g.ty(*v).clone()).collect(),
                });
            }
        }
    }
    for &v in g.outputs() {
        let s = slot(&mut plan, &mut slot_of, v)?;
        plan.outputs.push(s);
    }
    Ok(plan)
}
