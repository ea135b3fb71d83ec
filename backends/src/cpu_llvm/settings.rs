//! The target machine: triple, CPU and features, and LLVM's view of it.

use super::CodegenError;
use inkwell::OptimizationLevel;
use inkwell::targets::{
    CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine, TargetTriple,
};
use std::sync::Once;

/// What machine code is generated for: an LLVM target triple, a CPU name
/// (`znver4`, `skylake-avx512`, `neoverse-v1`, `generic`, …) and extra
/// feature flags (`+avx512f,-avx512bw`, empty for the CPU's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub triple: String,
    pub cpu: String,
    pub features: String,
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let config = InitializationConfig::default();
        LlvmTarget::initialize_x86(&config);
        LlvmTarget::initialize_aarch64(&config);
    });
}

/// CPUs of x86-64 with 512-bit vectors (AVX-512F).
const X86_AVX512: &[&str] = &[
    "x86-64-v4",
    "knl",
    "knm",
    "skylake-avx512",
    "cascadelake",
    "cooperlake",
    "cannonlake",
    "icelake-client",
    "icelake-server",
    "rocketlake",
    "tigerlake",
    "sapphirerapids",
    "emeraldrapids",
    "graniterapids",
    "graniterapids-d",
    "diamondrapids",
    "znver4",
    "znver5",
];

/// CPUs of x86-64 with 256-bit vectors (AVX2) and no AVX-512.
const X86_AVX2: &[&str] = &[
    "x86-64-v3",
    "haswell",
    "broadwell",
    "skylake",
    "alderlake",
    "raptorlake",
    "meteorlake",
    "arrowlake",
    "arrowlake-s",
    "lunarlake",
    "pantherlake",
    "gracemont",
    "sierraforest",
    "grandridge",
    "clearwaterforest",
    "bdver4",
    "znver1",
    "znver2",
    "znver3",
];

impl Machine {
    /// This machine: LLVM's host triple, CPU name and feature list.
    pub fn host() -> Machine {
        init();
        Machine {
            triple: TargetMachine::get_default_triple()
                .as_str()
                .to_string_lossy()
                .into_owned(),
            cpu: TargetMachine::get_host_cpu_name().to_string(),
            features: TargetMachine::get_host_cpu_features().to_string(),
        }
    }

    /// A named target: `triple` (`x86_64-unknown-linux-gnu`,
    /// `aarch64-unknown-linux-gnu`, …), a CPU (default `generic`) and
    /// extra features. Fails if LLVM does not know the triple's
    /// architecture (this saturn is built with x86-64 and AArch64).
    pub fn new(
        triple: &str,
        cpu: Option<&str>,
        features: Option<&str>,
    ) -> Result<Machine, CodegenError> {
        init();
        let m = Machine {
            triple: triple.to_string(),
            cpu: cpu.unwrap_or("generic").to_string(),
            features: features.unwrap_or("").to_string(),
        };
        m.llvm_target()?;
        Ok(m)
    }

    /// Whether code for this machine runs here.
    pub fn is_host(&self) -> bool {
        *self == Machine::host()
    }

    pub fn is_x86_64(&self) -> bool {
        self.triple.starts_with("x86_64")
    }

    pub fn is_aarch64(&self) -> bool {
        self.triple.starts_with("aarch64") || self.triple.starts_with("arm64")
    }

    /// Whether the feature list names `+feature`, or the CPU has it
    /// (for the features that decide vector widths).
    fn has(&self, feature: &str) -> bool {
        let flag = |sign: char| {
            self.features
                .split(',')
                .any(|f| f.strip_prefix(sign) == Some(feature))
        };
        if flag('-') {
            return false;
        }
        if flag('+') {
            return true;
        }
        match feature {
            "avx512f" => X86_AVX512.contains(&self.cpu.as_str()),
            "avx2" => {
                X86_AVX512.contains(&self.cpu.as_str()) || X86_AVX2.contains(&self.cpu.as_str())
            }
            _ => false,
        }
    }

    /// The widest vector registers, in bits: 512 with AVX-512F, 256 with
    /// AVX2, else 128 (SSE2, NEON).
    pub fn vector_bits(&self) -> u32 {
        if self.is_x86_64() {
            if self.has("avx512f") {
                return 512;
            }
            if self.has("avx2") {
                return 256;
            }
        }
        128
    }

    /// Whether masked loads and stores are single instructions with
    /// mask registers (AVX-512), not microcoded or emulated.
    pub fn has_mask_registers(&self) -> bool {
        self.is_x86_64() && self.has("avx512f")
    }

    /// Whether AVX-512's `vscalef` (x · 2^floor(n)) exists.
    pub fn has_scalef(&self) -> bool {
        self.is_x86_64() && self.has("avx512f")
    }

    /// Whether fused multiply-add is one instruction.
    pub fn has_fma(&self) -> bool {
        self.is_aarch64() || (self.is_x86_64() && (self.has("fma") || self.vector_bits() >= 256))
    }

    fn llvm_target(&self) -> Result<LlvmTarget, CodegenError> {
        init();
        LlvmTarget::from_triple(&TargetTriple::create(&self.triple))
            .map_err(|e| CodegenError::Target(format!("`{}`: {e}", self.triple)))
    }

    /// An LLVM target machine for this machine; position-independent code
    /// when `pic` (shared libraries).
    pub(super) fn target_machine(&self, pic: bool) -> Result<TargetMachine, CodegenError> {
        let t = self.llvm_target()?;
        t.create_target_machine(
            &TargetTriple::create(&self.triple),
            &self.cpu,
            &self.features,
            OptimizationLevel::Aggressive,
            if pic {
                RelocMode::PIC
            } else {
                RelocMode::Default
            },
            CodeModel::Default,
        )
        .ok_or_else(|| {
            CodegenError::Target(format!(
                "LLVM cannot make a target machine for `{}` (cpu `{}`, features `{}`)",
                self.triple, self.cpu, self.features
            ))
        })
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (cpu {}", self.triple, self.cpu)?;
        if !self.features.is_empty() && self.features.len() < 80 {
            write!(f, ", features {}", self.features)?;
        }
        write!(f, ", {}-bit vectors)", self.vector_bits())
    }
}
