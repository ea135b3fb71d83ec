//! The Kernel IR evaluator on kernels written as text: results, and the
//! errors that name the kernel and the buffer when a kernel goes wrong.
//! (Its agreement with generated code is checked by the Cranelift tests,
//! which run every kernel through both.)

use saturn_ir::kernel::eval::eval_kernel;
use saturn_ir::kernel::text::parse_kernel;

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run(src: &str, bufs: &mut [Vec<u8>], dims: &[i64]) -> Result<(), String> {
    let k = parse_kernel(src).unwrap_or_else(|e| panic!("{e}"));
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    eval_kernel(&k, &mut refs, dims).map_err(|e| e.to_string())
}

#[test]
fn masked_vector_loop_with_a_tail() {
    let src = "kernel @scale(in %x: f32[6], out %y: f32[6]) {
  for %i = 0 to 4 step 4 {
    store %y[%i] x4 = load %x[%i] x4 * 2.0: f32x4
  }
  store %y[4] x4 mask 2 = load %x[4] x4 mask 2 * 2.0: f32x4
}
";
    let mut bufs = vec![f32s(&[1., 2., 3., 4., 5., 6.]), f32s(&[0.; 6])];
    if let Err(e) = run(src, &mut bufs, &[]) {
        panic!("{e}");
    }
    assert_eq!(bufs[1], f32s(&[2., 4., 6., 8., 10., 12.]));
}

#[test]
fn out_of_bounds_access_names_the_buffer() {
    let src = "kernel @oob(in %x: f32[4], out %y: f32[4]) {
  for %i = 0 to 5 {
    store %y[%i] = load %x[%i]
  }
}
";
    let mut bufs = vec![f32s(&[0.; 4]), f32s(&[0.; 4])];
    let e = run(src, &mut bufs, &[]).unwrap_err();
    assert!(
        e.contains("`oob`") && e.contains("index 4 out of bounds of `x`"),
        "{e}"
    );
}

#[test]
fn short_buffers_and_missing_extents_are_errors() {
    let src = "kernel @k(in %x: f32[%n], out %y: f32[%n]) dims(%n) {
  store %y[0] = load %x[0]
}
";
    let e = run(src, &mut [f32s(&[0.; 2]), f32s(&[0.; 2])], &[]).unwrap_err();
    assert!(e.contains("extent 0 was not given"), "{e}");
    let e = run(src, &mut [f32s(&[0.; 2]), f32s(&[0.; 1])], &[2]).unwrap_err();
    assert!(e.contains("buffer `y` needs 8 bytes"), "{e}");
}

mod half_storage {
    use half::{bf16, f16};
    use saturn_ir::DType;
    use saturn_ir::kernel::build::KernelBuilder;
    use saturn_ir::kernel::eval::eval_kernel;
    use saturn_ir::kernel::math::{Half, f32_to_half, half_to_f32};
    use saturn_ir::kernel::{Expr, Kernel, LoopKind};

    /// `out[i] = widen(bits[i])` four lanes at a time.
    fn widen_kernel(h: Half, n: usize) -> Kernel {
        let mut b = KernelBuilder::new("widen");
        let x = b.input("x", DType::U16, n);
        let y = b.output("y", DType::F32, n);
        b.for_("i", 0, n, 4, LoopKind::Serial, |b, i| {
            let v = half_to_f32(b, Expr::load_vec(x, i.clone(), 4, 1, None), h);
            b.store_vec(y, i, v, 1, None);
        });
        b.finish()
    }

    fn narrow_kernel(h: Half, n: usize) -> Kernel {
        let mut b = KernelBuilder::new("narrow");
        let x = b.input("x", DType::F32, n);
        let y = b.output("y", DType::U16, n);
        b.for_("i", 0, n, 4, LoopKind::Serial, |b, i| {
            let v = f32_to_half(b, Expr::load_vec(x, i.clone(), 4, 1, None), h);
            b.store_vec(y, i, v, 1, None);
        });
        b.finish()
    }

    fn run(k: &Kernel, input: Vec<u8>, out_bytes: usize) -> Vec<u8> {
        let mut bufs = [input, vec![0u8; out_bytes]];
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        eval_kernel(k, &mut refs, &[]).unwrap();
        let [_, out] = bufs;
        out
    }

    #[test]
    fn every_half_widens_exactly() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let input: Vec<u8> = all.iter().flat_map(|b| b.to_le_bytes()).collect();
        for h in [Half::F16, Half::BF16] {
            let out = run(&widen_kernel(h, all.len()), input.clone(), all.len() * 4);
            for (i, c) in out.chunks(4).enumerate() {
                let got = f32::from_le_bytes(c.try_into().unwrap());
                let want = match h {
                    Half::F16 => f16::from_bits(i as u16).to_f32(),
                    Half::BF16 => bf16::from_bits(i as u16).to_f32(),
                };
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{h:?} {i:#06x}: got {got:e}, want {want:e}"
                );
            }
        }
    }

    #[test]
    fn floats_narrow_to_the_nearest_half_ties_to_even() {
        // Edge values, then a spread of bit patterns over the whole range.
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65519.0,
            65520.0,
            1e9,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            6.1035156e-5,
            6.1e-5,
            5.96e-8,
            2.98e-8,
            2.99e-8,
            1e-10,
            1.00048828125,
            1.000732421875,
            3.0e38,
            f32::MIN_POSITIVE,
        ];
        let mut s = 0x9e37_79b9u32;
        for _ in 0..40_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            xs.push(f32::from_bits(s));
        }
        xs.truncate(xs.len() / 4 * 4);
        let input: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        for h in [Half::F16, Half::BF16] {
            let out = run(&narrow_kernel(h, xs.len()), input.clone(), xs.len() * 2);
            for (x, c) in xs.iter().zip(out.chunks(2)) {
                let got = u16::from_le_bytes(c.try_into().unwrap());
                let (want, got_nan) = match h {
                    Half::F16 => (f16::from_f32(*x).to_bits(), f16::from_bits(got).is_nan()),
                    Half::BF16 => (bf16::from_f32(*x).to_bits(), bf16::from_bits(got).is_nan()),
                };
                assert!(
                    got == want || (x.is_nan() && got_nan),
                    "{h:?} {x:e} ({:#010x}): got {got:#06x}, want {want:#06x}",
                    x.to_bits()
                );
            }
        }
    }
}

#[test]
fn ldexp_is_an_exact_scale_by_a_power_of_two() {
    let src = "kernel @ldexp(in %a: f32[17], in %b: f32[17], out %y: f32[17]) {
  for %i = 0 to 17 {
    store %y[%i] = ldexp(load %a[%i], load %b[%i])
  }
}
";
    let inf = f32::INFINITY;
    let tiny = f32::from_bits(1); // 2^-149, the smallest subnormal
    #[rustfmt::skip]
    let cases: [(f32, f32, f32); 17] = [
        (1.5, 3.7, 12.0),              // b is floored
        (3.0, -2.5, 0.375),            // floor(-2.5) = -3
        (1.0, -149.0, tiny),
        (1.0, -150.0, 0.0),            // half the smallest subnormal: to even
        (1.5, -150.0, tiny),           // above half: up
        (2f32.powi(-140), 200.0, 2f32.powi(60)), // from a subnormal, exact
        (3e38, 1.0, inf),
        (-0.0, 10.0, -0.0),
        (-2.0, inf, -inf),
        (5.0, -inf, 0.0),
        (1.0, 1e30, inf),
        (1e30, -1e30, 0.0),
        (0.0, inf, f32::NAN),          // 0 · 2^+inf
        (inf, -inf, f32::NAN),         // inf · 2^-inf
        (1.0, f32::NAN, f32::NAN),
        (f32::NAN, inf, inf),          // as vscalef
        (f32::NAN, -inf, 0.0),
    ];
    let a: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let b: Vec<f32> = cases.iter().map(|c| c.1).collect();
    let mut bufs = vec![f32s(&a), f32s(&b), f32s(&[0.; 17])];
    if let Err(e) = run(src, &mut bufs, &[]) {
        panic!("{e}");
    }
    for (i, (c, y)) in cases.iter().zip(bufs[2].chunks(4)).enumerate() {
        let y = f32::from_le_bytes(y.try_into().unwrap());
        let same = if c.2.is_nan() {
            y.is_nan()
        } else {
            y.to_bits() == c.2.to_bits()
        };
        assert!(
            same,
            "case {i}: ldexp({}, {}) = {y:e}, want {:e}",
            c.0, c.1, c.2
        );
    }
}
