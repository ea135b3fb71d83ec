//! Target descriptions: what passes may know about the hardware.
//!
//! A pass never names a backend; it reads a [`Target`]: vector width,
//! caches, bandwidths, peak rates and the cost of launching a kernel. The
//! cost model turns these into estimates (roofline: bytes moved against
//! bandwidth, flops against peak, plus a fixed overhead per kernel).
//!
//! [`Target::host`] describes the machine Saturn runs on (cache sizes and
//! vector width read from the system, rates from nominal figures per
//! core); the named reference targets ([`Target::named`]) are fixed, so
//! that pass snapshots do not depend on the machine that runs them.

use std::fmt;

/// One level of the cache hierarchy.
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    /// 1, 2, 3 …
    pub level: u32,
    /// Capacity in bytes (per core for private levels).
    pub bytes: u64,
    /// Read bandwidth from this level in bytes per second, per core.
    pub bandwidth: f64,
}

/// What a pass may know about a target.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    /// Widest SIMD register in bits (128, 256, 512).
    pub vector_bits: u32,
    /// Cores a kernel may use.
    pub cores: usize,
    /// Caches from L1 outwards.
    pub caches: Vec<Cache>,
    /// Main-memory bandwidth in bytes per second (all cores together).
    pub dram_bandwidth: f64,
    /// Peak f32 rate of one core in flop/s (FMA counted as two).
    pub peak_flops_f32: f64,
    /// Fixed cost of running one kernel, in seconds.
    pub kernel_overhead: f64,
    /// The code generator has one instruction for `ldexp` (x · 2^n, as
    /// AVX-512's `vscalefps`): kernels may scale by powers of two with it
    /// rather than by building `2^n` from exponent bits. Set from the code
    /// generator ([`Target::host`] and the reference targets say no).
    pub has_ldexp: bool,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}-bit vectors, {} cores",
            self.name, self.vector_bits, self.cores
        )?;
        for c in &self.caches {
            write!(f, ", L{} {} KiB", c.level, c.bytes / 1024)?;
        }
        write!(
            f,
            ", {:.0} GB/s DRAM, {:.0} GFLOP/s/core)",
            self.dram_bandwidth / 1e9,
            self.peak_flops_f32 / 1e9
        )
    }
}

/// Nominal clock for peak estimates, in Hz.
const NOMINAL_HZ: f64 = 3.0e9;

impl Target {
    /// Names accepted by [`Target::named`].
    pub const NAMES: &'static [&'static str] = &[
        "host",
        "x86-64-avx512",
        "x86-64-avx2",
        "x86-64-sse2",
        "aarch64-neon",
    ];

    /// A target by name: `host` or one of the fixed reference targets.
    pub fn named(name: &str) -> Option<Target> {
        Some(match name {
            "host" => Target::host(),
            "x86-64-avx512" => Target::reference(name, 512, 48 << 10, 2 << 20, 32 << 20),
            "x86-64-avx2" => Target::reference(name, 256, 32 << 10, 1 << 20, 16 << 20),
            "x86-64-sse2" => Target::reference(name, 128, 32 << 10, 1 << 20, 16 << 20),
            "aarch64-neon" => Target::reference(name, 128, 64 << 10, 1 << 20, 8 << 20),
            _ => return None,
        })
    }

    /// A fixed description with the given vector width and cache sizes,
    /// 2 cores and nominal rates.
    fn reference(name: &str, vector_bits: u32, l1: u64, l2: u64, l3: u64) -> Target {
        let peak = Target::nominal_peak(vector_bits);
        Target {
            name: name.to_string(),
            vector_bits,
            cores: 2,
            caches: vec![
                Cache {
                    level: 1,
                    bytes: l1,
                    bandwidth: 200e9,
                },
                Cache {
                    level: 2,
                    bytes: l2,
                    bandwidth: 100e9,
                },
                Cache {
                    level: 3,
                    bytes: l3,
                    bandwidth: 50e9,
                },
            ],
            dram_bandwidth: 20e9,
            peak_flops_f32: peak,
            kernel_overhead: 2e-6,
            has_ldexp: false,
        }
    }

    /// f32 lanes × 2 FMA pipes × 2 flops per FMA × clock.
    fn nominal_peak(vector_bits: u32) -> f64 {
        (vector_bits / 32) as f64 * 2.0 * 2.0 * NOMINAL_HZ
    }

    /// The machine Saturn runs on.
    pub fn host() -> Target {
        let vector_bits = host_vector_bits();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut t = Target::reference("host", vector_bits, 32 << 10, 1 << 20, 16 << 20);
        t.cores = cores;
        if let Some(sizes) = host_cache_sizes() {
            for c in &mut t.caches {
                if let Some(&(_, bytes)) = sizes.iter().find(|(l, _)| *l == c.level) {
                    c.bytes = bytes;
                }
            }
        }
        t
    }

    /// The last-level cache size in bytes.
    pub fn last_level_cache(&self) -> u64 {
        self.caches.last().map(|c| c.bytes).unwrap_or(0)
    }

    /// The smallest cache holding `bytes`, if any.
    pub fn cache_holding(&self, bytes: u64) -> Option<&Cache> {
        self.caches.iter().find(|c| c.bytes >= bytes)
    }

    /// f32 elements per vector register.
    pub fn f32_lanes(&self) -> usize {
        (self.vector_bits / 32).max(1) as usize
    }
}

fn host_vector_bits() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return 256;
        }
    }
    128
}

/// (level, bytes) of the data and unified caches of cpu0, from Linux sysfs.
fn host_cache_sizes() -> Option<Vec<(u32, u64)>> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let read = |f: &str| {
            std::fs::read_to_string(p.join(f))
                .ok()
                .map(|s| s.trim().to_string())
        };
        if read("type").as_deref() == Some("Instruction") {
            continue;
        }
        let (Some(level), Some(size)) = (read("level"), read("size")) else {
            continue;
        };
        let Ok(level) = level.parse::<u32>() else {
            continue;
        };
        let bytes = match size.strip_suffix('K') {
            Some(k) => k.parse::<u64>().ok().map(|k| k << 10),
            None => match size.strip_suffix('M') {
                Some(m) => m.parse::<u64>().ok().map(|m| m << 20),
                None => size.parse::<u64>().ok(),
            },
        };
        if let Some(bytes) = bytes {
            out.push((level, bytes));
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_targets() {
        for name in Target::NAMES {
            let t = Target::named(name).unwrap();
            assert!(t.caches.windows(2).all(|w| w[0].bytes < w[1].bytes), "{t}");
            assert!(t.peak_flops_f32 > 0.0 && t.dram_bandwidth > 0.0);
        }
        assert!(Target::named("z80").is_none());
        let t = Target::named("x86-64-avx512").unwrap();
        assert_eq!(t.f32_lanes(), 16);
        assert_eq!(t.last_level_cache(), 32 << 20);
        assert_eq!(t.cache_holding(100 << 10).unwrap().level, 2);
        assert!(t.cache_holding(64 << 20).is_none());
    }
}
