//! Lowering of convolutions, transposed convolutions, Col2Im and pools,
//! checked against the interpreter on random inputs.

mod common;

use common::{Rng, check, check_with, single};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::kernel::Kernel;
use saturn_ir::ops::*;
use saturn_ir::{AttrValue, DType, Tensor, TensorType};
use saturn_passes::lower::{LowerOptions, Lowered};

fn tt(dt: DType, shape: &[usize]) -> TensorType {
    TensorType::known(dt, shape)
}

fn ints(v: &[i64]) -> Option<Vec<i64>> {
    Some(v.to_vec())
}

fn conv_op(group: i64, strides: &[i64], dilations: &[i64], pads: &[i64]) -> Conv {
    Conv {
        auto_pad: AutoPad::NotSet,
        dilations: (!dilations.is_empty()).then(|| dilations.to_vec()),
        group,
        kernel_shape: None,
        pads: (!pads.is_empty()).then(|| pads.to_vec()),
        strides: (!strides.is_empty()).then(|| strides.to_vec()),
    }
}

fn strategy(k: &Kernel) -> String {
    match k.schedule.get("conv") {
        Some(AttrValue::Str(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The kernel computing the graph's only node.
fn only_kernel(l: &Lowered) -> &Kernel {
    assert_eq!(
        l.kernels.len(),
        1,
        "{:?}",
        l.kernels.iter().map(|k| &k.name).collect::<Vec<_>>()
    );
    &l.kernels[0]
}

/// Checks one convolution (weights and bias as graph inputs); returns the
/// strategy the lowering chose.
fn conv_case(rng: &mut Rng, dt: DType, x: &[usize], w: &[usize], bias: bool, op: Conv) -> String {
    let mut types = vec![tt(dt, x), tt(dt, w)];
    let mut inputs = vec![rng.tensor(dt, x, 1.0), rng.tensor(dt, w, 1.0)];
    if bias {
        types.push(tt(dt, &[w[0]]));
        inputs.push(rng.tensor(dt, &[w[0]], 1.0));
    }
    let g = single(op, &types, &[]);
    let l = check(&g, inputs);
    strategy(only_kernel(&l))
}

#[test]
fn conv_2d_im2col_with_pads_strides_and_dilations() {
    let mut rng = Rng(1);
    for (x, w, strides, dil, pads) in [
        (
            vec![1, 3, 7, 9],
            vec![5, 3, 3, 3],
            vec![],
            vec![],
            vec![1, 1, 1, 1],
        ),
        (
            vec![2, 2, 9, 7],
            vec![6, 2, 3, 2],
            vec![2, 1],
            vec![],
            vec![0, 1, 2, 0],
        ),
        (
            vec![1, 3, 11, 10],
            vec![4, 3, 3, 3],
            vec![3, 2],
            vec![2, 1],
            vec![2, 0, 1, 3],
        ),
        (
            vec![1, 2, 6, 6],
            vec![7, 2, 5, 5],
            vec![1, 1],
            vec![1, 1],
            vec![3, 3, 3, 3],
        ),
        // Windows wider than the input: the whole tile is padding edges.
        (
            vec![1, 2, 3, 2],
            vec![3, 2, 3, 3],
            vec![1, 1],
            vec![],
            vec![2, 2, 2, 2],
        ),
    ] {
        for bias in [false, true] {
            let op = conv_op(1, &strides, &dil, &pads);
            let s = conv_case(&mut rng, DType::F32, &x, &w, bias, op);
            assert_eq!(s, "im2col_gemm", "{x:?} {w:?}");
        }
    }
}

#[test]
fn conv_1d_and_3d() {
    let mut rng = Rng(2);
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[2, 3, 13],
        &[5, 3, 3],
        true,
        conv_op(1, &[2], &[2], &[1, 2]),
    );
    assert_eq!(s, "im2col_gemm");
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[1, 2, 4, 5, 6],
        &[3, 2, 2, 3, 3],
        true,
        conv_op(1, &[1, 2, 1], &[1, 1, 2], &[1, 0, 1, 0, 1, 2]),
    );
    assert_eq!(s, "im2col_gemm");
}

#[test]
fn conv_pointwise_reads_the_input_as_it_is() {
    let mut rng = Rng(3);
    for (x, w) in [
        (vec![1, 6, 5, 7], vec![9, 6, 1, 1]),
        (vec![2, 4, 3, 3], vec![5, 4, 1, 1]),
        (vec![1, 5, 2], vec![2, 5, 1]),
    ] {
        let s = conv_case(
            &mut rng,
            DType::F32,
            &x,
            &w,
            true,
            conv_op(1, &[], &[], &[]),
        );
        assert_eq!(s, "gemm_1x1");
    }
    // Strided 1×1 needs the unfolding.
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[1, 4, 7, 7],
        &[3, 4, 1, 1],
        false,
        conv_op(1, &[2, 2], &[], &[]),
    );
    assert_eq!(s, "im2col_gemm");
}

#[test]
fn conv_groups_and_depthwise() {
    let mut rng = Rng(4);
    // Two groups of 3 channels, 4 maps each.
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[2, 6, 6, 5],
        &[8, 3, 3, 3],
        true,
        conv_op(2, &[1, 1], &[], &[1, 1, 1, 1]),
    );
    assert_eq!(s, "im2col_gemm");
    // Depthwise, stride 2, and with a channel multiplier of 2.
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[1, 4, 9, 11],
        &[4, 1, 3, 3],
        true,
        conv_op(4, &[2, 2], &[], &[1, 1, 1, 1]),
    );
    assert_eq!(s, "direct");
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[2, 3, 7, 10],
        &[6, 1, 3, 5],
        true,
        conv_op(3, &[1, 3], &[2, 1], &[2, 0, 1, 2]),
    );
    assert_eq!(s, "direct");
    // One input channel: direct as well; 1-D and 3-D.
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[1, 1, 17],
        &[3, 1, 4],
        false,
        conv_op(1, &[1], &[], &[2, 1]),
    );
    assert_eq!(s, "direct");
    let s = conv_case(
        &mut rng,
        DType::F32,
        &[1, 2, 4, 4, 6],
        &[2, 1, 2, 2, 3],
        true,
        conv_op(2, &[1, 1, 1], &[], &[1, 1, 0, 0, 0, 1]),
    );
    assert_eq!(s, "direct");
}

#[test]
fn conv_odd_widths_below_the_vector_width() {
    let mut rng = Rng(5);
    for wdt in 1..=6 {
        let x = [1, 2, 3, wdt];
        let s = conv_case(
            &mut rng,
            DType::F32,
            &x,
            &[3, 2, 3, 3],
            true,
            conv_op(1, &[], &[], &[1, 1, 1, 1]),
        );
        assert_eq!(s, "im2col_gemm");
        conv_case(
            &mut rng,
            DType::F32,
            &[1, 2, 3, wdt],
            &[2, 1, 3, 3],
            false,
            conv_op(2, &[], &[], &[1, 1, 1, 1]),
        );
    }
}

#[test]
fn conv_in_f64() {
    let mut rng = Rng(6);
    let s = conv_case(
        &mut rng,
        DType::F64,
        &[1, 3, 6, 7],
        &[5, 3, 3, 3],
        true,
        conv_op(1, &[2, 1], &[], &[1, 1, 0, 1]),
    );
    assert_eq!(s, "im2col_gemm");
    let s = conv_case(
        &mut rng,
        DType::F64,
        &[1, 3, 6, 7],
        &[3, 1, 3, 3],
        true,
        conv_op(3, &[], &[], &[1, 1, 1, 1]),
    );
    assert_eq!(s, "direct");
    let s = conv_case(
        &mut rng,
        DType::F64,
        &[1, 4, 3, 5],
        &[3, 4, 1, 1],
        false,
        conv_op(1, &[], &[], &[]),
    );
    assert_eq!(s, "gemm_1x1");
}

#[test]
fn conv_tiles_chunks_and_workers() {
    let mut rng = Rng(7);
    // K = 64·3·3 = 576 allows tiles of up to 112 columns: 144 positions
    // make two tiles of 72, one per worker; 6 maps leave a 2-row block.
    let g = single(
        conv_op(1, &[], &[], &[1, 1, 1, 1]),
        &[
            tt(DType::F32, &[1, 64, 12, 12]),
            tt(DType::F32, &[6, 64, 3, 3]),
        ],
        &[],
    );
    let l = check(
        &g,
        vec![
            rng.tensor(DType::F32, &[1, 64, 12, 12], 1.0),
            rng.tensor(DType::F32, &[6, 64, 3, 3], 1.0),
        ],
    );
    let k = only_kernel(&l);
    assert_eq!(k.schedule.get("tile_cols"), Some(&AttrValue::Int(72)));
    // 128 maps of 4 positions (less than one block): the channels are
    // split into chunks, run by several workers.
    let g = single(
        conv_op(1, &[], &[], &[]),
        &[
            tt(DType::F32, &[1, 256, 3, 3]),
            tt(DType::F32, &[128, 256, 2, 2]),
        ],
        &[],
    );
    let l = check(
        &g,
        vec![
            rng.tensor(DType::F32, &[1, 256, 3, 3], 1.0),
            rng.tensor(DType::F32, &[128, 256, 2, 2], 1.0),
        ],
    );
    let k = only_kernel(&l);
    assert_eq!(k.schedule.get("m_chunk"), Some(&AttrValue::Int(64)));
    assert!(matches!(k.schedule.get("workers"), Some(AttrValue::Int(w)) if *w > 1));
    // The weight repacking and the tasks.
    assert_eq!(
        k.count_loops(|k| k == saturn_ir::kernel::LoopKind::Parallel),
        2
    );
}

#[test]
fn conv_with_constant_weights() {
    let mut rng = Rng(8);
    // Weights repacked at compile time: the kernel reads a constant
    // `wpack` buffer, not the weights, and packs nothing per call.
    for (xs, ws, group) in [
        (vec![1, 2, 5, 6], vec![4, 2, 3, 3], 1),
        (vec![2, 8, 9, 7], vec![12, 4, 3, 3], 2),
        (vec![1, 16, 6, 6], vec![10, 16, 1, 1], 1),
    ] {
        let w = rng.tensor(DType::F32, &ws, 1.0);
        let b = rng.tensor(DType::F32, &[ws[0]], 1.0);
        let g = single(
            conv_op(group, &[1, 1], &[], &[1, 1, 1, 1]),
            &[tt(DType::F32, &xs)],
            &[(1, w), (2, b)],
        );
        let l = check(&g, vec![rng.tensor(DType::F32, &xs, 1.0)]);
        let k = only_kernel(&l);
        let names: Vec<&str> = k.bufs.iter().map(|b| b.name.as_str()).collect();
        assert!(
            k.bufs
                .iter()
                .any(|b| b.name == "wpack" && b.kind == saturn_ir::kernel::BufKind::Input),
            "{names:?}"
        );
        assert!(
            !names.contains(&"c1"),
            "the original weights are not read: {names:?}"
        );
    }
}

#[test]
fn conv_auto_pad() {
    let mut rng = Rng(9);
    for auto_pad in [AutoPad::SameUpper, AutoPad::SameLower, AutoPad::Valid] {
        let mut op = conv_op(1, &[2, 2], &[], &[]);
        op.auto_pad = auto_pad;
        conv_case(&mut rng, DType::F32, &[1, 2, 7, 6], &[3, 2, 3, 2], true, op);
    }
}

/// Conv → Relu (and Conv → Add(residual) → Relu): one fused kernel.
#[test]
fn conv_fuses_an_epilogue() {
    let mut rng = Rng(10);
    for (xs, ws, group) in [
        (vec![1, 3, 6, 7], vec![4, 3, 3, 3], 1),
        (vec![2, 4, 5, 5], vec![4, 1, 3, 3], 4),
        (vec![1, 4, 5, 6], vec![6, 2, 3, 3], 2),
        (vec![1, 4, 5, 6], vec![6, 4, 1, 1], 1),
    ] {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", tt(DType::F32, &xs)).unwrap();
        let w = b.input("w", tt(DType::F32, &ws)).unwrap();
        let bias = b.input("b", tt(DType::F32, &[ws[0]])).unwrap();
        let y = b
            .op(
                conv_op(
                    group,
                    &[],
                    &[],
                    &[1, 1, 1, 1][..if ws[2] == 1 { 0 } else { 4 }],
                ),
                &[x, w, bias],
            )
            .unwrap();
        let shape = b.graph().ty(y).shape.as_known().unwrap();
        let res = b.input("r", tt(DType::F32, &shape)).unwrap();
        let chan = b.input("s", tt(DType::F32, &[ws[0], 1, 1])).unwrap();
        let y = b.op(Add {}, &[y, res]).unwrap();
        let y = b.op(Mul {}, &[y, chan]).unwrap();
        let z = b.op(Relu {}, &[y]).unwrap();
        let g = b.finish(vec![z]);
        let inputs = vec![
            rng.tensor(DType::F32, &xs, 1.0),
            rng.tensor(DType::F32, &ws, 1.0),
            rng.tensor(DType::F32, &[ws[0]], 1.0),
            rng.tensor(DType::F32, &shape, 1.0),
            rng.tensor(DType::F32, &[ws[0], 1, 1], 1.0),
        ];
        let l = check(&g, inputs);
        let k = only_kernel(&l);
        assert!(k.name.contains("fused"), "{}", k.name);
    }
}

#[test]
fn conv_zero_sized() {
    let mut rng = Rng(11);
    let g = single(
        conv_op(1, &[], &[], &[]),
        &[tt(DType::F32, &[0, 2, 4, 4]), tt(DType::F32, &[3, 2, 3, 3])],
        &[],
    );
    check(
        &g,
        vec![
            rng.tensor(DType::F32, &[0, 2, 4, 4], 1.0),
            rng.tensor(DType::F32, &[3, 2, 3, 3], 1.0),
        ],
    );
}

// ---- transposed convolution and col2im ----

fn conv_t(
    group: i64,
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    output_padding: &[i64],
    output_shape: &[i64],
) -> ConvTranspose {
    let opt = |v: &[i64]| (!v.is_empty()).then(|| v.to_vec());
    ConvTranspose {
        auto_pad: AutoPad::NotSet,
        dilations: opt(dilations),
        group,
        kernel_shape: None,
        output_padding: opt(output_padding),
        output_shape: opt(output_shape),
        pads: opt(pads),
        strides: opt(strides),
    }
}

#[test]
fn conv_transpose_cases() {
    let mut rng = Rng(12);
    let cases: Vec<(Vec<usize>, Vec<usize>, ConvTranspose)> = vec![
        (
            vec![1, 2, 3, 3],
            vec![2, 3, 3, 3],
            conv_t(1, &[], &[], &[], &[], &[]),
        ),
        (
            vec![1, 2, 3, 4],
            vec![2, 2, 3, 3],
            conv_t(1, &[2, 3], &[], &[1, 0, 1, 2], &[1, 0], &[]),
        ),
        (
            vec![2, 4, 3, 3],
            vec![4, 1, 2, 3],
            conv_t(2, &[2, 2], &[2, 1], &[0, 1, 1, 0], &[], &[]),
        ),
        (
            vec![1, 1, 5],
            vec![1, 2, 3],
            conv_t(1, &[3], &[], &[], &[], &[17]),
        ),
        (
            vec![1, 2, 2, 3, 2],
            vec![2, 2, 2, 2, 2],
            conv_t(1, &[1, 2, 2], &[], &[], &[], &[]),
        ),
    ];
    for (xs, ws, op) in cases {
        for bias in [false, true] {
            let mut types = vec![tt(DType::F32, &xs), tt(DType::F32, &ws)];
            let m = ws[1] * op.group as usize;
            let mut inputs = vec![
                rng.tensor(DType::F32, &xs, 1.0),
                rng.tensor(DType::F32, &ws, 1.0),
            ];
            if bias {
                types.push(tt(DType::F32, &[m]));
                inputs.push(rng.tensor(DType::F32, &[m], 1.0));
            }
            let g = single(op.clone(), &types, &[]);
            check(&g, inputs);
        }
    }
    // f64 and auto_pad.
    let mut op = conv_t(1, &[2, 2], &[], &[], &[], &[]);
    op.auto_pad = AutoPad::SameUpper;
    let g = single(
        op,
        &[tt(DType::F64, &[1, 1, 3, 3]), tt(DType::F64, &[1, 2, 3, 3])],
        &[],
    );
    check(
        &g,
        vec![
            rng.tensor(DType::F64, &[1, 1, 3, 3], 1.0),
            rng.tensor(DType::F64, &[1, 2, 3, 3], 1.0),
        ],
    );
}

#[test]
fn col2im_cases() {
    let mut rng = Rng(13);
    // image 5×5, block 2×2, stride 1: 16 blocks; and with pads, dilations
    // and strides.
    let cases: Vec<(Vec<i64>, Vec<i64>, Col2Im, usize)> = vec![
        (
            vec![5, 5],
            vec![2, 2],
            Col2Im {
                dilations: None,
                pads: None,
                strides: None,
            },
            16,
        ),
        (
            vec![5, 6],
            vec![2, 3],
            Col2Im {
                dilations: ints(&[2, 1]),
                pads: ints(&[1, 0, 0, 1]),
                strides: ints(&[1, 2]),
            },
            // (5 + 1 − 3) / 1 + 1 = 4, (6 + 1 − 3) / 2 + 1 = 3.
            12,
        ),
    ];
    for (image, block, op, blocks) in cases {
        let taps: i64 = block.iter().product();
        let xs = [2, 2 * taps as usize, blocks];
        let g = single(
            op,
            &[tt(DType::F32, &xs)],
            &[
                (1, Tensor::from_vec(vec![image.len()], image.clone())),
                (2, Tensor::from_vec(vec![block.len()], block.clone())),
            ],
        );
        check(&g, vec![rng.tensor(DType::F32, &xs, 1.0)]);
    }
}

// ---- pools ----

fn max_pool(
    k: &[i64],
    strides: &[i64],
    dil: &[i64],
    pads: &[i64],
    ceil: bool,
    order: i64,
) -> MaxPool {
    let opt = |v: &[i64]| (!v.is_empty()).then(|| v.to_vec());
    MaxPool {
        auto_pad: AutoPad::NotSet,
        ceil_mode: ceil,
        dilations: opt(dil),
        kernel_shape: k.to_vec(),
        pads: opt(pads),
        storage_order: order,
        strides: opt(strides),
    }
}

fn avg_pool(
    k: &[i64],
    strides: &[i64],
    dil: &[i64],
    pads: &[i64],
    ceil: bool,
    include: bool,
) -> AveragePool {
    let opt = |v: &[i64]| (!v.is_empty()).then(|| v.to_vec());
    AveragePool {
        auto_pad: AutoPad::NotSet,
        ceil_mode: ceil,
        count_include_pad: include,
        dilations: opt(dil),
        kernel_shape: k.to_vec(),
        pads: opt(pads),
        strides: opt(strides),
    }
}

/// (input shape, kernel, strides, dilations, pads, ceil_mode)
type PoolCase = (Vec<usize>, Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>, bool);

fn pool_cases() -> Vec<PoolCase> {
    vec![
        (vec![1, 2, 11], vec![3], vec![], vec![], vec![], false),
        (
            vec![2, 3, 9, 10],
            vec![3, 3],
            vec![2, 2],
            vec![],
            vec![1, 1, 1, 1],
            false,
        ),
        (
            vec![1, 2, 8, 7],
            vec![2, 3],
            vec![2, 2],
            vec![],
            vec![0, 1, 1, 0],
            true,
        ),
        (
            vec![1, 1, 9, 9],
            vec![3, 2],
            vec![1, 3],
            vec![2, 2],
            vec![2, 1, 1, 2],
            false,
        ),
        (
            vec![1, 2, 5, 3],
            vec![3, 3],
            vec![1, 1],
            vec![],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![1, 2, 4, 5, 6],
            vec![2, 2, 3],
            vec![1, 2, 2],
            vec![1, 1, 2],
            vec![0, 1, 1, 1, 0, 1],
            false,
        ),
        (
            vec![1, 3, 2, 13],
            vec![1, 5],
            vec![1, 1],
            vec![],
            vec![0, 2, 0, 2],
            false,
        ),
    ]
}

#[test]
fn max_pool_cases() {
    let mut rng = Rng(14);
    for (xs, k, s, d, p, ceil) in pool_cases() {
        for dt in [DType::F32, DType::F64, DType::I8, DType::U8] {
            let g = single(max_pool(&k, &s, &d, &p, ceil, 0), &[tt(dt, &xs)], &[]);
            check(&g, vec![rng.tensor(dt, &xs, 100.0)]);
        }
    }
}

#[test]
fn max_pool_nans_and_empty_windows() {
    // A window of NaNs stays NaN; NaNs lose against numbers; a window
    // entirely in the padding gives 0 (and index -1).
    let x = Tensor::from_vec(
        vec![1, 1, 2, 4],
        vec![
            f32::NAN,
            f32::NAN,
            1.0,
            f32::NAN,
            -3.0,
            f32::NAN,
            f32::NAN,
            2.0,
        ],
    );
    for outputs in [1, 2] {
        let mut b = GraphBuilder::new("g");
        let xv = b.input("x", tt(DType::F32, &[1, 1, 2, 4])).unwrap();
        let op = max_pool(&[1, 2], &[1, 1], &[], &[0, 2, 0, 0], false, 0);
        let outs = b
            .node(
                "",
                op.into(),
                vec![Some(xv)],
                (0..outputs).map(|i| (format!("y{i}"), None)).collect(),
            )
            .unwrap();
        let g = b.finish(outs);
        check(&g, vec![x.clone()]);
    }
    // Wide rows (whole vectors of outputs, strided): windows of NaNs, of
    // NaNs and -inf (-inf), of -inf alone, and of numbers among NaNs.
    let vals: Vec<f32> = (0..2 * 70)
        .map(|i| match (i * 37) % 11 {
            0 | 1 | 2 | 3 => f32::NAN,
            4 | 5 => f32::NEG_INFINITY,
            k => k as f32 - 8.0 + i as f32 / 100.0,
        })
        .collect();
    let x = Tensor::from_vec(vec![1, 1, 2, 70], vals);
    for (k, s) in [([1, 2], [1, 1]), ([2, 3], [1, 2]), ([1, 3], [1, 2])] {
        let g = single(
            max_pool(&k, &s, &[], &[], false, 0),
            &[tt(DType::F32, &[1, 1, 2, 70])],
            &[],
        );
        check(&g, vec![x.clone()]);
    }
}

#[test]
fn max_pool_with_indices() {
    let mut rng = Rng(15);
    for (xs, k, s, d, p, ceil) in pool_cases() {
        for order in [0, 1] {
            let mut b = GraphBuilder::new("g");
            let x = b.input("x", tt(DType::F32, &xs)).unwrap();
            let outs = b
                .node(
                    "",
                    max_pool(&k, &s, &d, &p, ceil, order).into(),
                    vec![Some(x)],
                    vec![("y".into(), None), ("i".into(), None)],
                )
                .unwrap();
            let g = b.finish(outs);
            check(&g, vec![rng.tensor(DType::F32, &xs, 1.0)]);
        }
    }
    // Ties keep the first index.
    let x = Tensor::from_vec(vec![1, 1, 1, 6], vec![1.0f32, 1.0, 2.0, 2.0, 0.0, 0.0]);
    let mut b = GraphBuilder::new("g");
    let xv = b.input("x", tt(DType::F32, &[1, 1, 1, 6])).unwrap();
    let outs = b
        .node(
            "",
            max_pool(&[1, 3], &[1, 1], &[], &[], false, 0).into(),
            vec![Some(xv)],
            vec![("y".into(), None), ("i".into(), None)],
        )
        .unwrap();
    let g = b.finish(outs);
    check(&g, vec![x]);
}

#[test]
fn average_pool_cases() {
    let mut rng = Rng(16);
    for (xs, k, s, d, p, ceil) in pool_cases() {
        for include in [false, true] {
            for dt in [DType::F32, DType::F64] {
                let g = single(avg_pool(&k, &s, &d, &p, ceil, include), &[tt(dt, &xs)], &[]);
                check(&g, vec![rng.tensor(dt, &xs, 1.0)]);
            }
        }
    }
}

#[test]
fn lp_pool_cases() {
    let mut rng = Rng(17);
    for (xs, k, s, d, p, ceil) in pool_cases() {
        for pw in [1, 2, 3] {
            let opt = |v: &[i64]| (!v.is_empty()).then(|| v.to_vec());
            let op = LpPool {
                auto_pad: AutoPad::NotSet,
                ceil_mode: ceil,
                dilations: opt(&d),
                kernel_shape: k.clone(),
                p: pw,
                pads: opt(&p),
                strides: opt(&s),
            };
            let g = single(op, &[tt(DType::F32, &xs)], &[]);
            check_with(
                &g,
                vec![rng.tensor(DType::F32, &xs, 1.0)],
                &LowerOptions::default(),
                1e-4,
                1e-5,
            );
        }
    }
}

#[test]
fn pools_auto_pad() {
    let mut rng = Rng(18);
    for auto_pad in [AutoPad::SameUpper, AutoPad::SameLower, AutoPad::Valid] {
        let mut op = avg_pool(&[3, 2], &[2, 2], &[], &[], false, false);
        op.auto_pad = auto_pad;
        let g = single(op, &[tt(DType::F32, &[1, 2, 7, 6])], &[]);
        check(&g, vec![rng.tensor(DType::F32, &[1, 2, 7, 6], 1.0)]);
        let mut op = max_pool(&[3, 3], &[2, 1], &[], &[], false, 0);
        op.auto_pad = auto_pad;
        let g = single(op, &[tt(DType::F32, &[1, 2, 7, 6])], &[]);
        check(&g, vec![rng.tensor(DType::F32, &[1, 2, 7, 6], 1.0)]);
    }
}

#[test]
fn global_pools() {
    let mut rng = Rng(19);
    for xs in [
        vec![1, 3, 7, 7],
        vec![2, 2, 3],
        vec![1, 2, 1, 1],
        vec![2, 3, 5, 9],
        vec![1, 2, 2, 3, 4],
        vec![1, 2, 40],
    ] {
        for dt in [DType::F32, DType::F64] {
            let x = rng.tensor(dt, &xs, 1.0);
            check(
                &single(GlobalAveragePool {}, &[tt(dt, &xs)], &[]),
                vec![x.clone()],
            );
            check(
                &single(GlobalMaxPool {}, &[tt(dt, &xs)], &[]),
                vec![x.clone()],
            );
            for p in [1, 2, 3] {
                check(
                    &single(GlobalLpPool { p }, &[tt(dt, &xs)], &[]),
                    vec![x.clone()],
                );
            }
        }
        for dt in [DType::I8, DType::U8] {
            let x = rng.tensor(dt, &xs, 100.0);
            check(&single(GlobalMaxPool {}, &[tt(dt, &xs)], &[]), vec![x]);
        }
    }
    // NaN propagates through the global max.
    let x = Tensor::from_vec(vec![1, 1, 6], vec![1.0f32, f32::NAN, 3.0, 0.0, 5.0, 2.0]);
    check(
        &single(GlobalMaxPool {}, &[tt(DType::F32, &[1, 1, 6])], &[]),
        vec![x],
    );
}

/// GlobalAveragePool → Relu and MaxPool → Relu fuse.
#[test]
fn pools_fuse_an_epilogue() {
    let mut rng = Rng(20);
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", tt(DType::F32, &[2, 3, 5, 5])).unwrap();
    let y = b.op(GlobalAveragePool {}, &[x]).unwrap();
    let z = b.op(Relu {}, &[y]).unwrap();
    let g = b.finish(vec![z]);
    let l = check(&g, vec![rng.tensor(DType::F32, &[2, 3, 5, 5], 1.0)]);
    assert!(only_kernel(&l).name.contains("fused"));
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", tt(DType::F32, &[2, 3, 6, 5])).unwrap();
    let s = b.input("s", tt(DType::F32, &[3, 1, 1])).unwrap();
    let y = b
        .op(
            max_pool(&[3, 3], &[2, 2], &[], &[1, 1, 1, 1], false, 0),
            &[x],
        )
        .unwrap();
    let y = b.op(Mul {}, &[y, s]).unwrap();
    let z = b.op(Relu {}, &[y]).unwrap();
    let g = b.finish(vec![z]);
    let l = check(
        &g,
        vec![
            rng.tensor(DType::F32, &[2, 3, 6, 5], 1.0),
            rng.tensor(DType::F32, &[3, 1, 1], 1.0),
        ],
    );
    assert!(only_kernel(&l).name.contains("fused"));
}

/// Image and block shapes given as graph inputs: the block follows from
/// the static shapes when only one fits.
#[test]
fn col2im_with_runtime_shapes() {
    let mut rng = Rng(21);
    // Block [2, 3] over a 3×4 image padded by 1 on the width: 2 × 4
    // blocks of 6 taps; [1, 6], [3, 2] and [6, 1] do not fit.
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", tt(DType::F32, &[1, 6, 8])).unwrap();
    let image = b.input("image", tt(DType::I64, &[2])).unwrap();
    let block = b.input("block", tt(DType::I64, &[2])).unwrap();
    let outs = b
        .node(
            "",
            Col2Im {
                dilations: None,
                pads: ints(&[0, 1, 0, 1]),
                strides: None,
            }
            .into(),
            vec![Some(x), Some(image), Some(block)],
            vec![("y".into(), Some(tt(DType::F32, &[1, 1, 3, 4])))],
        )
        .unwrap();
    let g = b.finish(outs);
    check(
        &g,
        vec![
            rng.tensor(DType::F32, &[1, 6, 8], 1.0),
            Tensor::from_vec(vec![2], vec![3i64, 4]),
            Tensor::from_vec(vec![2], vec![2i64, 3]),
        ],
    );
}

// ---- integer convolutions ----

fn conv_int(group: i64, strides: &[i64], pads: &[i64]) -> ConvInteger {
    let opt = |v: &[i64]| (!v.is_empty()).then(|| v.to_vec());
    ConvInteger {
        auto_pad: AutoPad::NotSet,
        dilations: None,
        group,
        kernel_shape: None,
        pads: opt(pads),
        strides: opt(strides),
    }
}

#[test]
fn conv_integer_cases() {
    let mut rng = Rng(22);
    for (xs, ws, op) in [
        (
            vec![1, 2, 5, 6],
            vec![3, 2, 3, 3],
            conv_int(1, &[], &[1, 1, 1, 1]),
        ),
        (
            vec![2, 4, 7, 5],
            vec![4, 2, 2, 3],
            conv_int(2, &[2, 1], &[0, 1, 2, 0]),
        ),
        (vec![1, 3, 9], vec![2, 3, 3], conv_int(1, &[2], &[1, 1])),
    ] {
        for (xd, wd) in [
            (DType::U8, DType::U8),
            (DType::I8, DType::I8),
            (DType::U8, DType::I8),
        ] {
            // Without zero points, with shared ones, and per-channel weights.
            for zp in 0..3 {
                let mut types = vec![tt(xd, &xs), tt(wd, &ws)];
                let mut inputs = vec![rng.tensor(xd, &xs, 120.0), rng.tensor(wd, &ws, 120.0)];
                if zp > 0 {
                    types.push(tt(xd, &[]));
                    inputs.push(rng.tensor(xd, &[], 100.0));
                    let wz = if zp == 2 { vec![ws[0]] } else { vec![] };
                    types.push(tt(wd, &wz));
                    inputs.push(rng.tensor(wd, &wz, 100.0));
                }
                let g = single(op.clone(), &types, &[]);
                check(&g, inputs);
            }
        }
    }
}

#[test]
fn qlinear_conv_cases() {
    let mut rng = Rng(23);
    for (xs, ws, group, pads) in [
        (vec![1, 2, 5, 6], vec![3, 2, 3, 3], 1, vec![1, 1, 1, 1]),
        (vec![1, 4, 6, 5], vec![4, 2, 3, 2], 2, vec![0, 1, 1, 0]),
    ] {
        for dt in [DType::U8, DType::I8] {
            for (per_channel, bias) in [(false, false), (true, true)] {
                let m = ws[0];
                let op = QLinearConv {
                    auto_pad: AutoPad::NotSet,
                    dilations: None,
                    group,
                    kernel_shape: None,
                    pads: Some(pads.clone()),
                    strides: None,
                };
                let sc = |v: f32| Tensor::from_vec(vec![], vec![v]);
                let ws_t = if per_channel {
                    Tensor::from_vec(vec![m], (0..m).map(|i| 0.01 + 0.005 * i as f32).collect())
                } else {
                    sc(0.02)
                };
                let wz = if per_channel { vec![m] } else { vec![] };
                let mut consts = vec![
                    (1, sc(0.05)),
                    (2, rng.tensor(dt, &[], 30.0)),
                    (4, ws_t),
                    (5, rng.tensor(dt, &wz, 30.0)),
                    (6, sc(0.7)),
                    (7, rng.tensor(dt, &[], 30.0)),
                ];
                if bias {
                    consts.push((8, rng.tensor(DType::I32, &[m], 500.0)));
                }
                let g = single(op, &[tt(dt, &xs), tt(dt, &ws)], &consts);
                check(
                    &g,
                    vec![rng.tensor(dt, &xs, 120.0), rng.tensor(dt, &ws, 120.0)],
                );
            }
        }
    }
}

/// Lowers `g` for the named target, checking it against the interpreter
/// (the tolerances of the conv GEMMs).
fn lower_for(g: &saturn_ir::graph::Graph, inputs: Vec<Tensor>, target: &str) -> Lowered {
    common::check_for(g, inputs, &LowerOptions::default(), 1e-4, 1e-5, target)
}

/// `relu(conv(x, w, b) + r)` with random data, the weights and bias
/// constants or inputs: the graph and its inputs.
fn conv_residual_relu(
    rng: &mut Rng,
    op: Conv,
    xs: &[usize],
    ws: &[usize],
    konst: bool,
) -> (saturn_ir::Graph, Vec<Tensor>) {
    let w = rng.tensor(DType::F32, ws, 1.0);
    let b = rng.tensor(DType::F32, &[ws[0]], 1.0);
    let x = rng.tensor(DType::F32, xs, 1.0);
    let mut gb = GraphBuilder::new("g");
    let xv = gb.input("x", tt(DType::F32, xs)).unwrap();
    let (wv, bv) = if konst {
        (
            gb.constant("w", w.clone()).unwrap(),
            gb.constant("b", b.clone()).unwrap(),
        )
    } else {
        (
            gb.input("w", tt(DType::F32, ws)).unwrap(),
            gb.input("b", tt(DType::F32, &[ws[0]])).unwrap(),
        )
    };
    let y = gb.op(op, &[xv, wv, bv]).unwrap();
    let yshape = gb.graph().ty(y).shape.as_known().unwrap();
    let res = gb.input("r", tt(DType::F32, &yshape)).unwrap();
    let z = gb.op(Add {}, &[y, res]).unwrap();
    let z = gb.op(Relu {}, &[z]).unwrap();
    let g = gb.finish(vec![z]);
    let r = rng.tensor(DType::F32, &yshape, 1.0);
    let inputs = if konst { vec![x, r] } else { vec![x, w, b, r] };
    (g, inputs)
}

/// Small planes with many channels put the channels in the vector lanes
/// on wide targets (positions would mostly be padding): plain, strided,
/// 1×1 (packed in blocks of positions), grouped, a partial last channel
/// block, constant weights, bias and a fused residual + ReLU epilogue.
#[test]
fn small_planes_put_channels_in_lanes() {
    let mut rng = Rng(31);
    for (xs, ws, group, strides, pads, konst) in [
        (
            vec![1, 16, 7, 7],
            vec![64, 16, 3, 3],
            1,
            vec![],
            vec![1, 1, 1, 1],
            false,
        ),
        (
            vec![1, 16, 14, 14],
            vec![64, 16, 3, 3],
            1,
            vec![2, 2],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![2, 24, 7, 7],
            vec![80, 24, 1, 1],
            1,
            vec![],
            vec![],
            true,
        ),
        (
            vec![1, 32, 5, 5],
            vec![128, 16, 3, 3],
            2,
            vec![],
            vec![1, 1, 1, 1],
            false,
        ),
        (
            vec![1, 8, 9, 9],
            vec![88, 8, 3, 3],
            1,
            vec![1, 1],
            vec![0, 0, 0, 0],
            true,
        ),
        // 1×1, packed in blocks of positions: the last block of 25
        // positions is partial (zeros past the tile), and ends at the end
        // of the input.
        (
            vec![1, 24, 5, 5],
            vec![64, 24, 1, 1],
            1,
            vec![],
            vec![],
            false,
        ),
    ] {
        let op = conv_op(group, &strides, &[], &pads);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, konst);
        check(&g, inputs.clone());
        let l = lower_for(&g, inputs, "x86-64-avx512");
        let k = only_kernel(&l);
        assert_eq!(
            k.schedule.get("lanes_along"),
            Some(&AttrValue::Str("channels".into())),
            "{xs:?} {ws:?}"
        );
    }
}

/// Stride-1 convolutions whose padded rows are little wider than their
/// output rows read the padded input directly (no unfolding): plain,
/// dilated, asymmetric pads, grouped, channels in lanes, with bias and a
/// fused residual + ReLU.
#[test]
fn stride_one_convolutions_run_on_a_padded_grid() {
    let mut rng = Rng(41);
    for (xs, ws, group, dil, pads, konst) in [
        (
            vec![1, 8, 30, 30],
            vec![16, 8, 3, 3],
            1,
            vec![],
            vec![1, 1, 1, 1],
            false,
        ),
        (
            vec![2, 6, 18, 33],
            vec![8, 6, 3, 3],
            1,
            vec![2, 1],
            vec![2, 0, 2, 2],
            true,
        ),
        (
            vec![1, 8, 16, 40],
            vec![12, 4, 5, 3],
            2,
            vec![],
            vec![2, 1, 2, 1],
            true,
        ),
        (
            vec![1, 16, 6, 28],
            vec![64, 16, 3, 3],
            1,
            vec![],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![1, 4, 30, 30],
            vec![8, 4, 3, 3],
            1,
            vec![],
            vec![0, 0, 0, 0],
            false,
        ),
    ] {
        let op = conv_op(group, &[], &dil, &pads);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, konst);
        let l = check(&g, inputs);
        assert_eq!(strategy(only_kernel(&l)), "padded_gemm", "{xs:?} {ws:?}");
    }
}

/// Convolutions on small planes, or strided, put the channels in the
/// lanes and read the padded input in place, in blocks of positions that
/// stay within output rows (a partial block where the block does not
/// divide a row): resnet's 14×14 and 7×7 shapes, rows of 10 (blocks of 6
/// and 4), dilated, asymmetric pads, grouped, two images, strided (a 3×3
/// and a 7×7 stem on 3 channels), constant or computed weights, with bias
/// and a fused residual + ReLU. Without padding, the blocks read the
/// input itself.
#[test]
fn small_planes_run_in_row_blocks_on_the_padded_input() {
    let mut rng = Rng(43);
    for (xs, ws, group, strides, dil, pads, konst) in [
        (
            vec![1, 24, 14, 14],
            vec![64, 24, 3, 3],
            1,
            vec![],
            vec![],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![2, 16, 7, 7],
            vec![64, 16, 3, 3],
            1,
            vec![],
            vec![],
            vec![1, 1, 1, 1],
            false,
        ),
        (
            vec![1, 8, 7, 10],
            vec![32, 8, 3, 3],
            1,
            vec![],
            vec![],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![1, 8, 11, 12],
            vec![32, 8, 3, 3],
            1,
            vec![],
            vec![2, 2],
            vec![2, 1, 2, 3],
            false,
        ),
        (
            vec![1, 16, 7, 7],
            vec![64, 8, 3, 3],
            2,
            vec![],
            vec![],
            vec![0, 1, 2, 1],
            true,
        ),
        (
            vec![1, 8, 14, 15],
            vec![32, 8, 3, 3],
            1,
            vec![2, 2],
            vec![],
            vec![1, 1, 1, 1],
            true,
        ),
        (
            vec![2, 3, 20, 22],
            vec![32, 3, 7, 7],
            1,
            vec![2, 2],
            vec![],
            vec![3, 3, 3, 3],
            false,
        ),
        (
            vec![1, 64, 15, 16],
            vec![32, 64, 3, 2],
            1,
            vec![2, 2],
            vec![],
            vec![0, 0, 0, 0],
            false,
        ),
        // Unpadded rows of 11: blocks of 6, then one of exactly 5, read
        // in place.
        (
            vec![1, 16, 9, 13],
            vec![32, 16, 3, 3],
            1,
            vec![],
            vec![],
            vec![0, 0, 0, 0],
            true,
        ),
    ] {
        let op = conv_op(group, &strides, &dil, &pads);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, konst);
        check(&g, inputs.clone());
        let l = lower_for(&g, inputs, "x86-64-avx512");
        let k = only_kernel(&l);
        let want = if pads.iter().all(|&p| p == 0) {
            "rows_in_place"
        } else {
            "padded_rows"
        };
        assert_eq!(strategy(k), want, "{xs:?} {ws:?}");
        assert_eq!(
            k.schedule.get("lanes_along"),
            Some(&AttrValue::Str("channels".into())),
            "{xs:?} {ws:?}"
        );
    }
}

/// With AVX2's 16 vector registers, row blocks whose taps overlap (a
/// 3×3 at stride 1 or 2: tap `kw + 1` of one position is tap `kw` of the
/// next) are at most 5 positions wide, so that the 2 × rows sums, the 2
/// weight vectors and the shared broadcasts stay in registers (6 × 2
/// spilled in the innermost loop and ran at half speed); a row of 7 is cut
/// 4 + 3, one of 14 5 + 5 + 4, one of 12 4 + 4 + 4. A 1×1 at stride 2
/// (taps that do not overlap) is packed position by position, in blocks
/// that fill its plane (6 of 144 positions on AVX-512; AVX2 fills its
/// 16-wide vectors of positions). All agree with the interpreter.
#[test]
fn row_blocks_fit_the_register_file() {
    let mut rng = Rng(47);
    for (xs, ws, strides, pads, avx2_rows, avx512_rows) in [
        (
            vec![1, 16, 14, 14],
            vec![32, 16, 3, 3],
            vec![],
            vec![1, 1, 1, 1],
            Some(5),
            8,
        ),
        (
            vec![1, 16, 7, 7],
            vec![32, 16, 3, 3],
            vec![],
            vec![1, 1, 1, 1],
            Some(4),
            8,
        ),
        (
            vec![1, 16, 28, 28],
            vec![32, 16, 3, 3],
            vec![],
            vec![1, 1, 1, 1],
            Some(4),
            8,
        ),
        (
            vec![1, 16, 12, 12],
            vec![32, 16, 3, 3],
            vec![],
            vec![1, 1, 1, 1],
            Some(4),
            8,
        ),
        (
            vec![1, 16, 14, 14],
            vec![32, 16, 3, 3],
            vec![2, 2],
            vec![1, 1, 1, 1],
            Some(4),
            8,
        ),
        (
            vec![1, 64, 24, 24],
            vec![32, 64, 1, 1],
            vec![2, 2],
            vec![0, 0, 0, 0],
            None,
            6,
        ),
    ] {
        let op = conv_op(1, &strides, &[], &pads);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, true);
        for (target, rows) in [
            ("x86-64-avx2", avx2_rows),
            ("x86-64-avx512", Some(avx512_rows)),
        ] {
            let l = lower_for(&g, inputs.clone(), target);
            let k = only_kernel(&l);
            let along = if rows.is_some() {
                "channels"
            } else {
                "positions"
            };
            assert_eq!(
                k.schedule.get("lanes_along"),
                Some(&AttrValue::Str(along.into())),
                "{target} {xs:?} {ws:?} {strides:?}"
            );
            let Some(AttrValue::Ints(tile)) = k.schedule.get("tile") else {
                panic!("{target} {xs:?} {ws:?}: no tile in {:?}", k.schedule);
            };
            if let Some(rows) = rows {
                assert_eq!(tile[0], rows, "{target} {xs:?} {ws:?} {strides:?}");
            }
        }
    }
}

/// Strided 1×1 convolutions (resnet's downsampling) with the channels in
/// the lanes pack their blocks of positions from every `stride`-th input
/// position: 2-D with two images, a partial last block of positions and
/// of channels, 1-D and 3-D; a long `K` (1040 input channels) also runs
/// in blocks of `K`. All agree with the interpreter.
#[test]
fn strided_pointwise_convolutions_pack_positions() {
    let mut rng = Rng(53);
    for (xs, ws, strides, k_blocks) in [
        (vec![2, 64, 14, 14], vec![64, 64, 1, 1], vec![2, 2], false),
        (vec![1, 48, 13, 13], vec![112, 48, 1, 1], vec![2, 2], false),
        (vec![1, 32, 15], vec![32, 32, 1], vec![3], false),
        (
            vec![1, 16, 5, 6, 7],
            vec![64, 16, 1, 1, 1],
            vec![2, 2, 3],
            false,
        ),
        (vec![1, 1040, 7, 7], vec![32, 1040, 1, 1], vec![2, 2], true),
    ] {
        let op = conv_op(1, &strides, &[], &[]);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, true);
        check(&g, inputs.clone());
        let l = lower_for(&g, inputs, "x86-64-avx512");
        let k = only_kernel(&l);
        assert_eq!(strategy(k), "gemm_1x1_strided", "{xs:?} {ws:?}");
        assert_eq!(
            k.schedule.get("lanes_along"),
            Some(&AttrValue::Str("channels".into())),
            "{xs:?} {ws:?}"
        );
        assert_eq!(
            k.schedule.contains_key("k_block"),
            k_blocks,
            "{xs:?} {ws:?}"
        );
    }
}

/// With the channels in the lanes, a block of channels whose packed
/// weights (`K` × the block) would not fit half of L1 walks `K` in blocks
/// (whole input channels on a grid), its sums kept in scratch between
/// them: 3×3 in rows on the padded input (50 channels: 25 + 25 on AVX2,
/// 17 + 17 + 16 on AVX-512 with 32-lane blocks), unpadded in place,
/// strided, 1×1 packed in blocks of positions (700 channels: 234 + 234 +
/// 232 on AVX2), and two images with a partial last block of channels.
/// All agree with the interpreter.
#[test]
fn long_k_runs_in_blocks_that_fit_l1() {
    let mut rng = Rng(59);
    for (xs, ws, strides, pads, kc) in [
        (
            vec![1, 50, 7, 7],
            vec![32, 50, 3, 3],
            vec![],
            vec![1, 1, 1, 1],
            [225, 153],
        ),
        (
            vec![1, 50, 9, 9],
            vec![32, 50, 3, 3],
            vec![],
            vec![0, 0, 0, 0],
            [225, 153],
        ),
        (
            vec![1, 50, 14, 14],
            vec![32, 50, 3, 3],
            vec![2, 2],
            vec![1, 1, 1, 1],
            [225, 153],
        ),
        (
            vec![1, 700, 5, 5],
            vec![64, 700, 1, 1],
            vec![],
            vec![],
            [234, 175],
        ),
        (
            vec![2, 300, 6, 6],
            vec![48, 300, 1, 1],
            vec![],
            vec![],
            [150, 150],
        ),
    ] {
        let op = conv_op(1, &strides, &[], &pads);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, false);
        check(&g, inputs.clone());
        for (target, kc) in [("x86-64-avx2", kc[0]), ("x86-64-avx512", kc[1])] {
            let l = lower_for(&g, inputs.clone(), target);
            let k = only_kernel(&l);
            assert_eq!(
                k.schedule.get("lanes_along"),
                Some(&AttrValue::Str("channels".into())),
                "{target} {xs:?} {ws:?}"
            );
            assert_eq!(
                k.schedule.get("k_block"),
                Some(&AttrValue::Int(kc)),
                "{target} {xs:?} {ws:?}"
            );
        }
    }
}

/// Positions in the lanes over an unfolded panel take blocks of 5 rows on
/// AVX2 (the 6 × 2 block's 15 of 16 registers spilled next to the
/// unfolding's masked row tails); 1×1 convolutions, read in place or
/// strided, keep AVX2's 6. All agree with the interpreter.
#[test]
fn unfolded_blocks_leave_registers_spare() {
    let mut rng = Rng(61);
    for (xs, ws, strides, avx2_rows) in [
        (vec![1, 3, 45, 45], vec![64, 3, 3, 3], vec![2, 2], 5),
        (vec![1, 32, 16, 16], vec![48, 32, 1, 1], vec![], 6),
        (vec![1, 64, 24, 24], vec![32, 64, 1, 1], vec![2, 2], 6),
    ] {
        let op = conv_op(1, &strides, &[], &[]);
        let (g, inputs) = conv_residual_relu(&mut rng, op, &xs, &ws, true);
        check(&g, inputs.clone());
        let l = lower_for(&g, inputs, "x86-64-avx2");
        let k = only_kernel(&l);
        assert_eq!(
            k.schedule.get("lanes_along"),
            Some(&AttrValue::Str("positions".into())),
            "{xs:?} {ws:?}"
        );
        assert_eq!(
            k.schedule.get("tile").cloned(),
            Some(AttrValue::Ints(vec![avx2_rows, 16])),
            "{xs:?} {ws:?}"
        );
    }
}
