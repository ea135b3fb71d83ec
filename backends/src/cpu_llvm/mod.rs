//! Kernel IR to machine code through LLVM (feature `llvm`).
//!
//! The same two products as the Cranelift code generator, from the same
//! kernels: [`Llvm::jit`] compiles into this process, [`Llvm::emit_object`]
//! writes a relocatable object for a shared library. Unlike Cranelift,
//! LLVM keeps vectors of any width whole, so 256- and 512-bit Kernel IR
//! vectors become AVX2 / AVX-512 registers, and it schedules and allocates
//! registers for the micro-kernels of GEMM and convolution.
//!
//! # Kernel ABI
//!
//! The one of [`crate::cpu_cranelift`]: every kernel is
//! `extern "C" fn(bufs: *const *mut u8, dims: *const i64, rt: *mut c_void)`,
//! parallel loops are outlined into `extern "C" fn(ctx: *const u8, lo: i64,
//! hi: i64)` bodies run by the imported
//! `saturn_parallel_for(rt, body, ctx, start, end, step)`, and `Expr::Call`
//! calls the C function of that name lane by lane. Behind the ABI entry,
//! each kernel's body is a function taking every buffer as a `noalias`
//! pointer (inlined into the entry): buffers of one call never overlap,
//! and LLVM may keep values in registers across stores.
//!
//! # Target
//!
//! A [`Machine`]: this machine (LLVM's host CPU name and features), or a
//! named triple, CPU and features for cross compilation (objects only).
//! Functions carry the CPU, its features and the vector width as
//! attributes, and the module is optimised with LLVM's `default<O3>`
//! pipeline for that target before code generation.
//!
//! Module map: `settings` the machine, `abi` the signatures and function
//! attributes, `lower` statements and loops (outlining of parallel
//! bodies), `value` the representation of values, `ops` the arithmetic,
//! `memory` loads and stores, `symbols` the functions the JIT provides.

mod abi;
mod lower;
mod memory;
mod ops;
mod settings;
mod symbols;
mod value;

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{FileType, TargetMachine};
use saturn_ir::kernel::Kernel;
use std::collections::HashMap;

pub use crate::cpu_cranelift::{KernelFn, PARALLEL_FOR, ParallelBodyFn};
pub use settings::Machine;

use lower::ModCx;

/// Why kernels could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// The kernel uses something this code generator does not handle.
    #[error("kernel `{kernel}`: {what} is not supported by the llvm backend")]
    Unsupported { kernel: String, what: String },
    /// The kernel is malformed (a type mismatch, an undefined variable, …).
    #[error("kernel `{kernel}`: {what}")]
    Invalid { kernel: String, what: String },
    /// LLVM rejected the generated IR (a bug of this code generator).
    #[error("kernel `{kernel}`: llvm: {message}")]
    Llvm { kernel: String, message: String },
    /// The target triple, CPU or features.
    #[error("target: {0}")]
    Target(String),
    /// An imported function is neither supplied nor found in the process.
    #[error("symbol `{0}` is neither supplied to the JIT nor found in this process")]
    Unresolved(String),
    /// Running code generated for another machine.
    #[error("cannot run code for {0} on this machine (emit an object instead)")]
    NotHost(String),
    /// Writing the object file or the module.
    #[error("object file: {0}")]
    Object(String),
}

impl From<inkwell::builder::BuilderError> for CodegenError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        CodegenError::Llvm {
            kernel: String::new(),
            message: e.to_string(),
        }
    }
}

impl CodegenError {
    /// Names `kernel` in an error that does not name one yet.
    fn in_kernel(self, kernel: &str) -> CodegenError {
        match self {
            CodegenError::Llvm { kernel: k, message } if k.is_empty() => CodegenError::Llvm {
                kernel: kernel.to_string(),
                message,
            },
            e => e,
        }
    }
}

/// The LLVM code generator for one machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Llvm {
    machine: Machine,
}

/// Symbols of kernels compiled into this process.
const JIT_PREFIX: &str = "__saturn_kernel_";

impl Llvm {
    /// Code for this machine, with every extension it has.
    pub fn host() -> Llvm {
        Llvm {
            machine: Machine::host(),
        }
    }

    pub fn for_machine(machine: Machine) -> Llvm {
        Llvm { machine }
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Compiles `kernels` into this process. `symbols` supplies functions
    /// the kernels import (the runtime passes [`PARALLEL_FOR`]); the libm
    /// functions are provided by the module itself, other imports are
    /// looked up in the process. `symbols` take precedence.
    pub fn jit(
        &self,
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
    ) -> Result<LlvmJit, CodegenError> {
        let host = Machine::host();
        if self.machine.triple != host.triple {
            return Err(CodegenError::NotHost(self.machine.to_string()));
        }
        let context = Box::new(Context::create());
        // SAFETY: the context is boxed and outlives the module and engine,
        // which are dropped before it (see `LlvmJit`'s field order).
        let c: &'static Context = unsafe { &*(context.as_ref() as *const Context) };
        let tm = self.machine.target_machine(false)?;
        let module = build(c, kernels, &self.machine, &tm, JIT_PREFIX)?;
        let engine = module
            .create_jit_execution_engine(OptimizationLevel::Aggressive)
            .map_err(|e| CodegenError::Target(format!("LLVM JIT: {e}")))?;
        map_symbols(&module, &engine, symbols)?;
        let mut entries = HashMap::new();
        for k in kernels {
            let addr = engine
                .get_function_address(&format!("{JIT_PREFIX}{}", k.name))
                .map_err(|e| CodegenError::Llvm {
                    kernel: k.name.clone(),
                    message: format!("no machine code: {e:?}"),
                })?;
            // SAFETY: the function was defined with the kernel signature,
            // which is this C ABI.
            let f = unsafe { std::mem::transmute::<usize, KernelFn>(addr) };
            entries.insert(k.name.clone(), f);
        }
        Ok(LlvmJit {
            entries,
            engine,
            module,
            _context: context,
        })
    }

    /// Compiles `kernels` into a relocatable object (position independent)
    /// exporting each kernel as `{symbol_prefix}{name}`, with
    /// [`PARALLEL_FOR`] and the called functions as undefined imports.
    pub fn emit_object(
        &self,
        kernels: &[Kernel],
        symbol_prefix: &str,
    ) -> Result<Vec<u8>, CodegenError> {
        let c = Context::create();
        let tm = self.machine.target_machine(true)?;
        let module = build(&c, kernels, &self.machine, &tm, symbol_prefix)?;
        let buf = tm
            .write_to_memory_buffer(&module, FileType::Object)
            .map_err(|e| CodegenError::Object(e.to_string()))?;
        Ok(buf.as_slice().to_vec())
    }

    /// The optimized LLVM IR of `kernels`, as text.
    pub fn emit_ir(&self, kernels: &[Kernel]) -> Result<String, CodegenError> {
        let c = Context::create();
        let tm = self.machine.target_machine(true)?;
        let module = build(&c, kernels, &self.machine, &tm, "")?;
        Ok(module.print_to_string().to_string())
    }

    /// The assembly of `kernels` for the machine.
    pub fn emit_asm(&self, kernels: &[Kernel]) -> Result<String, CodegenError> {
        let c = Context::create();
        let tm = self.machine.target_machine(true)?;
        let module = build(&c, kernels, &self.machine, &tm, "")?;
        let buf = tm
            .write_to_memory_buffer(&module, FileType::Assembly)
            .map_err(|e| CodegenError::Object(e.to_string()))?;
        Ok(String::from_utf8_lossy(buf.as_slice()).into_owned())
    }
}

/// Builds, verifies and optimizes the module of `kernels` for `tm`.
fn build<'ctx>(
    c: &'ctx Context,
    kernels: &[Kernel],
    machine: &Machine,
    tm: &TargetMachine,
    prefix: &str,
) -> Result<Module<'ctx>, CodegenError> {
    let cx = ModCx {
        c,
        m: c.create_module("saturn_kernels"),
        machine: machine.clone(),
    };
    cx.m.set_triple(&tm.get_triple());
    cx.m.set_data_layout(&tm.get_target_data().get_data_layout());
    for k in kernels {
        if kernels.iter().filter(|o| o.name == k.name).count() > 1 {
            return Err(CodegenError::Invalid {
                kernel: k.name.clone(),
                what: "two kernels have this name".into(),
            });
        }
        lower::define_kernel(&cx, k, &format!("{prefix}{}", k.name))
            .map_err(|e| e.in_kernel(&k.name))?;
    }
    cx.m.verify().map_err(|e| CodegenError::Llvm {
        kernel: kernels
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        message: e.to_string(),
    })?;
    cx.m.run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| CodegenError::Llvm {
            kernel: String::new(),
            message: format!("optimizing: {e}"),
        })?;
    Ok(cx.m)
}

/// Points the module's imports at `symbols`, then at the libm functions
/// the JIT provides; any other import must be found in the process (MCJIT
/// would abort on an unresolved one).
fn map_symbols(
    module: &Module<'_>,
    engine: &ExecutionEngine<'_>,
    symbols: &[(&str, *const u8)],
) -> Result<(), CodegenError> {
    let mut mapped: HashMap<&str, usize> = HashMap::new();
    for &(name, addr) in symbols::builtins().iter().chain(symbols) {
        mapped.insert(name, addr as usize);
    }
    let void_fn = module.get_context().void_type().fn_type(&[], false);
    for (&name, &addr) in &mapped {
        // Declared too when unused, so that calls LLVM itself introduces
        // (e.g. `fmodf` for a vector `frem`) find them.
        let f = module
            .get_function(name)
            .unwrap_or_else(|| module.add_function(name, void_fn, Some(Linkage::External)));
        engine.add_global_mapping(&f, addr);
    }
    inkwell::support::load_visible_symbols();
    for f in module.get_functions() {
        let name = f.get_name().to_string_lossy();
        if f.count_basic_blocks() > 0
            || name.starts_with("llvm.")
            || mapped.contains_key(name.as_ref())
        {
            continue;
        }
        if inkwell::support::search_for_address_of_symbol(&name).is_none() {
            return Err(CodegenError::Unresolved(name.into_owned()));
        }
    }
    Ok(())
}

/// Kernels compiled into this process's memory.
///
/// The code stays valid as long as the module lives: function pointers
/// from [`LlvmJit::entry`] must not be called after it is dropped.
pub struct LlvmJit {
    entries: HashMap<String, KernelFn>,
    // Dropped in this order: the engine (and the code it owns), the
    // module, then the context they were built in.
    #[allow(dead_code)]
    engine: ExecutionEngine<'static>,
    #[allow(dead_code)]
    module: Module<'static>,
    _context: Box<Context>,
}

// SAFETY: after construction the LLVM objects are never used again, only
// dropped (from whichever thread drops the module); the entry points are
// plain machine code that may run on any thread.
unsafe impl Send for LlvmJit {}
unsafe impl Sync for LlvmJit {}

impl LlvmJit {
    /// The entry point of the kernel called `name`.
    pub fn entry(&self, name: &str) -> Option<KernelFn> {
        self.entries.get(name).copied()
    }

    /// Names of the compiled kernels.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for LlvmJit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort();
        f.debug_struct("LlvmJit").field("kernels", &names).finish()
    }
}

impl crate::native::Codegen for Llvm {
    fn name(&self) -> &'static str {
        "llvm"
    }

    fn vector_bits(&self) -> u32 {
        self.machine.vector_bits()
    }

    fn has_ldexp(&self) -> bool {
        self.machine.has_scalef()
    }

    fn jit(
        &self,
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
    ) -> Result<Box<dyn crate::native::JitCode>, crate::BackendError> {
        let m = Llvm::jit(self, kernels, symbols)
            .map_err(|e| crate::BackendError::Run(e.to_string()))?;
        Ok(Box::new(m))
    }

    fn object(&self, kernels: &[Kernel], prefix: &str) -> Result<Vec<u8>, crate::BackendError> {
        self.emit_object(kernels, prefix)
            .map_err(|e| crate::BackendError::Run(e.to_string()))
    }

    fn assembly(&self, kernels: &[Kernel]) -> Result<Option<String>, crate::BackendError> {
        self.emit_asm(kernels)
            .map(Some)
            .map_err(|e| crate::BackendError::Run(e.to_string()))
    }
}

impl crate::native::JitCode for LlvmJit {
    fn entry(&self, name: &str) -> Option<KernelFn> {
        LlvmJit::entry(self, name)
    }
}
