//! Kernel IR to machine code through Cranelift.
//!
//! Two products from one lowering: [`JitModule::compile`] compiles kernels
//! into executable memory of this process, [`emit_object`] writes them into
//! a relocatable ELF object to be linked into a shared library later.
//!
//! # Kernel ABI
//!
//! Every kernel becomes one function
//! `extern "C" fn(bufs: *const *mut u8, dims: *const i64, rt: *mut c_void)`:
//! `bufs[i]` is the base address of `Kernel::bufs[i]` (inputs, outputs and
//! scratch alike, in order), `dims[i]` the value of `Expr::Dim(i)`, and `rt`
//! an opaque runtime pointer handed on to parallel loops.
//!
//! A [`LoopKind::Parallel`](saturn_ir::kernel::LoopKind) loop is outlined
//! into a body function `extern "C" fn(ctx: *const u8, lo: i64, hi: i64)`
//! running the iterations `v = lo, lo + step, … < hi`; the kernel stores
//! what the body reads (the `bufs`, `dims` and `rt` pointers, then the
//! values of the outer variables it uses) in a block on its stack and calls
//! the imported
//! `saturn_parallel_for(rt, body, ctx, start, end, step)`, which runs the
//! body over chunks of `[start, end)` (each chunk starting at
//! `start + k * step`) and returns when all are done. Parallel loops inside
//! a parallel body run serially.
//!
//! `Expr::Call` and `Stmt::Call` call the C function of that name (`expf`,
//! `fmodf`, …) with scalar arguments, lane by lane for vectors.
//!
//! # Values
//!
//! Scalars are Cranelift scalars (bool: `i8` 0 or 1). Vectors of 128 bits
//! in all are one native SIMD value; wider ones whose width is a multiple
//! of 128 bits are several; other widths are kept lane by lane. Boolean
//! vectors are lane masks (all ones or zero) as wide as the lanes of the
//! values they were computed from, converted where they meet other widths.
//! See `value.rs`.
//!
//! Module map: `settings` picks the target and its flags, `abi` the
//! signatures and symbol names, `lower` lowers statements (loops,
//! outlining of parallel bodies), `value` the representation of values,
//! `ops` the arithmetic, `memory` loads and stores.

mod abi;
mod lower;
mod memory;
mod ops;
mod settings;
mod symbols;
mod value;

use cranelift_codegen::ir;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, ModuleError, ModuleRelocTarget};
use cranelift_object::{ObjectBuilder, ObjectModule};
use saturn_ir::kernel::Kernel;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

pub use settings::Cpu;

/// A compiled kernel: `(bufs, dims, rt)`, see the module documentation.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, *mut c_void);

/// The body of an outlined parallel loop: `(ctx, lo, hi)`.
pub type ParallelBodyFn = unsafe extern "C" fn(*const u8, i64, i64);

/// The runtime entry point parallel loops call.
pub const PARALLEL_FOR: &str = "saturn_parallel_for";

/// Why kernels could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// The kernel uses something this code generator does not handle.
    #[error("kernel `{kernel}`: {what} is not supported by the cranelift backend")]
    Unsupported { kernel: String, what: String },
    /// The kernel is malformed (a type mismatch, an undefined variable, …).
    #[error("kernel `{kernel}`: {what}")]
    Invalid { kernel: String, what: String },
    /// Cranelift rejected the generated function or the module.
    #[error("kernel `{kernel}`: cranelift: {message}")]
    Cranelift { kernel: String, message: String },
    /// Linking or mapping the compiled module.
    #[error("cranelift module: {0}")]
    Module(String),
    /// The target triple or its flags.
    #[error("target: {0}")]
    Target(String),
    /// An imported function is neither supplied nor found in the process.
    #[error("symbol `{0}` is neither supplied to the JIT nor found in this process")]
    Unresolved(String),
    /// Writing the object file.
    #[error("object file: {0}")]
    Object(String),
}

/// Kernels compiled into this process's memory.
///
/// The code stays valid as long as the module lives: function pointers
/// from [`JitModule::entry`] must not be called after it is dropped.
pub struct JitModule {
    /// Only touched when dropped (the entry points are kept apart), so the
    /// mutex is never contended; it makes the module `Sync`.
    module: Mutex<Option<JITModule>>,
    entries: HashMap<String, KernelFn>,
}

impl JitModule {
    /// Compiles `kernels` for this machine. `symbols` supplies functions
    /// the kernels import (the runtime passes [`PARALLEL_FOR`]); the libm
    /// functions (`expf`, `powf`, …) are provided by the module itself,
    /// and other imports are looked up in the process. `symbols` take
    /// precedence.
    pub fn compile(
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
    ) -> Result<JitModule, CodegenError> {
        JitModule::compile_for(kernels, symbols, &Cpu::Host)
    }

    /// [`JitModule::compile`] using only the instruction-set extensions
    /// `cpu` names (tests use this to exercise the fallbacks a smaller CPU
    /// needs).
    pub fn compile_for(
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
        cpu: &Cpu,
    ) -> Result<JitModule, CodegenError> {
        let isa = settings::isa(None, cpu, false)?;
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        for &(name, ptr) in symbols::builtins() {
            builder.symbol(name, ptr);
        }
        for &(name, ptr) in symbols {
            builder.symbol(name, ptr);
        }
        let mut module = JITModule::new(builder);
        let ids = define_kernels(
            &mut module,
            kernels,
            "__saturn_kernel_",
            Linkage::Local,
            Linkage::Preemptible,
        )?;
        check_imports(&module)?;
        module
            .finalize_definitions()
            .map_err(|e| CodegenError::Module(e.to_string()))?;
        let entries = kernels
            .iter()
            .zip(ids)
            .map(|(k, id)| {
                let ptr = module.get_finalized_function(id);
                // SAFETY: the function was defined with the kernel
                // signature, which is this C ABI.
                let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) };
                (k.name.clone(), f)
            })
            .collect();
        Ok(JitModule {
            module: Mutex::new(Some(module)),
            entries,
        })
    }

    /// The entry point of the kernel called `name`.
    pub fn entry(&self, name: &str) -> Option<KernelFn> {
        self.entries.get(name).copied()
    }

    /// Names of the compiled kernels.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

impl Drop for JitModule {
    fn drop(&mut self) {
        let module = match self.module.get_mut() {
            Ok(m) => m.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(m) = module {
            // SAFETY: entry points must not be used after the module is
            // dropped (documented on the type).
            unsafe { m.free_memory() };
        }
    }
}

impl std::fmt::Debug for JitModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort();
        f.debug_struct("JitModule")
            .field("kernels", &names)
            .finish()
    }
}

/// Compiles `kernels` into a relocatable object (ELF on Linux) exporting
/// each kernel as `{symbol_prefix}{name}`, position independent, with
/// [`PARALLEL_FOR`] and the called functions as undefined imports. The
/// target is this machine with all its extensions unless `triple` names
/// another (then with that target's baseline features).
pub fn emit_object(
    kernels: &[Kernel],
    triple: Option<&str>,
    symbol_prefix: &str,
) -> Result<Vec<u8>, CodegenError> {
    emit_object_for(kernels, triple, symbol_prefix, &Cpu::Host)
}

/// [`emit_object`] for the CPU extensions `cpu` names (`Cpu::Host` means
/// the target's baseline when `triple` is given).
pub fn emit_object_for(
    kernels: &[Kernel],
    triple: Option<&str>,
    symbol_prefix: &str,
    cpu: &Cpu,
) -> Result<Vec<u8>, CodegenError> {
    let isa = settings::isa(triple, cpu, true)?;
    let builder = ObjectBuilder::new(
        isa,
        "saturn_kernels",
        cranelift_module::default_libcall_names(),
    )
    .map_err(|e| CodegenError::Target(e.to_string()))?;
    let mut module = ObjectModule::new(builder);
    define_kernels(
        &mut module,
        kernels,
        symbol_prefix,
        Linkage::Export,
        Linkage::Import,
    )?;
    module
        .finish()
        .emit()
        .map_err(|e| CodegenError::Object(e.to_string()))
}

/// Declares and defines every kernel (and its outlined parallel bodies)
/// with `linkage`; called functions are declared with `imports`.
fn define_kernels(
    module: &mut dyn Module,
    kernels: &[Kernel],
    prefix: &str,
    linkage: Linkage,
    imports: Linkage,
) -> Result<Vec<FuncId>, CodegenError> {
    let mut ids = Vec::with_capacity(kernels.len());
    for k in kernels {
        if kernels.iter().filter(|o| o.name == k.name).count() > 1 {
            return Err(CodegenError::Invalid {
                kernel: k.name.clone(),
                what: "two kernels have this name".into(),
            });
        }
        let symbol = format!("{prefix}{}", k.name);
        let id = lower::define_kernel(module, k, &symbol, linkage, imports)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Every import of a JIT module must resolve: cranelift-jit would panic
/// on a missing one while linking. Imports are declared preemptible, so an
/// unresolved one reads as a null address here.
fn check_imports(module: &JITModule) -> Result<(), CodegenError> {
    let imports: Vec<(FuncId, String)> = module
        .declarations()
        .get_functions()
        .filter(|(_, d)| d.linkage == Linkage::Preemptible)
        .map(|(id, d)| (id, d.linkage_name(id).into_owned()))
        .collect();
    for (id, name) in imports {
        if module.get_address(&ModuleRelocTarget::from(id)).is_null() {
            return Err(CodegenError::Unresolved(name));
        }
    }
    Ok(())
}

/// Turns a module error into a codegen error for `kernel`.
fn module_error(kernel: &str, func: Option<&ir::Function>, e: ModuleError) -> CodegenError {
    let message = match (e, func) {
        (ModuleError::Compilation(err), Some(f)) => {
            cranelift_codegen::print_errors::pretty_error(f, err)
        }
        (e, _) => e.to_string(),
    };
    CodegenError::Cranelift {
        kernel: kernel.to_string(),
        message,
    }
}

/// Cranelift as the code generator of a CPU backend: code for this
/// machine with all its extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cranelift;

impl crate::native::Codegen for Cranelift {
    fn name(&self) -> &'static str {
        "cranelift"
    }

    /// Cranelift's SIMD types are 128 bits wide.
    fn vector_bits(&self) -> u32 {
        128
    }

    fn jit(
        &self,
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
    ) -> Result<Box<dyn crate::native::JitCode>, crate::BackendError> {
        let m = JitModule::compile(kernels, symbols)
            .map_err(|e| crate::BackendError::Run(e.to_string()))?;
        Ok(Box::new(m))
    }

    fn object(&self, kernels: &[Kernel], prefix: &str) -> Result<Vec<u8>, crate::BackendError> {
        emit_object(kernels, None, prefix).map_err(|e| crate::BackendError::Run(e.to_string()))
    }
}

impl crate::native::JitCode for JitModule {
    fn entry(&self, name: &str) -> Option<KernelFn> {
        JitModule::entry(self, name)
    }
}
