//! The target machine and its Cranelift flags.

use super::CodegenError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

/// Which instruction-set extensions generated code may use.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Cpu {
    /// Everything the compiling machine has (SSE4.1, AVX, FMA, … on
    /// x86-64). For an explicit target triple: that target's baseline.
    #[default]
    Host,
    /// The target's baseline (SSE2 on x86-64) plus these Cranelift ISA
    /// flags, e.g. `has_sse41`, `has_avx`, `has_avx2`, `has_fma`.
    Baseline(Vec<String>),
}

/// The ISA for `triple` (the host when `None`) restricted to `cpu`,
/// optimising for speed; position-independent code when `pic`.
pub(super) fn isa(
    triple: Option<&str>,
    cpu: &Cpu,
    pic: bool,
) -> Result<OwnedTargetIsa, CodegenError> {
    let target = |e: String| CodegenError::Target(e);
    let mut flags = settings::builder();
    for (name, value) in [
        ("opt_level", "speed"),
        ("is_pic", if pic { "true" } else { "false" }),
        ("use_colocated_libcalls", "false"),
    ] {
        flags
            .set(name, value)
            .map_err(|e| target(format!("flag {name}={value}: {e}")))?;
    }
    let mut builder = match (triple, cpu) {
        (None, Cpu::Host) => cranelift_native::builder().map_err(|e| target(e.to_string()))?,
        (None, Cpu::Baseline(_)) => {
            cranelift_native::builder_with_options(false).map_err(|e| target(e.to_string()))?
        }
        (Some(t), _) => {
            let triple = t
                .parse::<target_lexicon::Triple>()
                .map_err(|e| target(format!("`{t}`: {e}")))?;
            cranelift_codegen::isa::lookup(triple).map_err(|e| target(format!("`{t}`: {e}")))?
        }
    };
    if let Cpu::Baseline(features) = cpu {
        for f in features {
            builder
                .enable(f)
                .map_err(|e| target(format!("feature `{f}`: {e}")))?;
        }
    }
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| target(e.to_string()))
}
