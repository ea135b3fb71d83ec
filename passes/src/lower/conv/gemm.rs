//! Convolution as im2col + GEMM, tiled along the output positions.
//!
//! Per image and group the convolution is the product `W·B` of the
//! weights `[M/g, C/g·taps]` and the unfolded input `B = [C/g·taps, L]`
//! (`L` output positions). The output positions are cut into tiles of `T`
//! columns (a multiple of the register block, sized so a tile of `B` stays
//! in L2), the output channels of a group, when there are few tasks, into
//! chunks. A task is one (image, group, channel chunk, tile): it unfolds
//! its tile of `B` into a worker-private scratch panel (`[C/g·taps, T]`,
//! rows copied contiguously, padding written as zeros so it is never
//! read), then runs the register-blocked micro-kernel over it: blocks of
//! `MR` rows × `NV` vectors held in registers over all of `K`, one
//! element of `W` broadcast per row and step of `K`, fused multiply-adds.
//! Finished blocks get the bias and are stored through the epilogue into
//! the `[N, M, L]` view of the output. 1×1 convolutions with stride 1 and
//! no padding read `B` from the input as it is (with the channels in the
//! lanes, they pack it in blocks of positions, `[K][MR]` each, which stay
//! in L1 while every block of channels passes over them; strided unpadded
//! 1×1 convolutions pack the same blocks position by position); stride-1
//! convolutions whose padded rows are little wider than the output's read
//! a zero-padded copy of the input in place (a grid of output rows as wide
//! as padded rows); and convolutions with the channels in the lanes (small
//! planes, or strided) read the padded copy (the input itself when there
//! is no padding) in place in blocks of positions within output rows, the
//! strided positions broadcast one by one. With the channels in the
//! lanes, a block of channels whose packed weights (`K × NB`) would not fit
//! half of L1 walks `K` in blocks (whole input channels on a grid): per
//! block of `K` every block of positions passes over the block's weights,
//! its sums waiting in a worker-private scratch until the last block,
//! which stores them. The weights are first repacked
//! (in scratch) as `[row block, K, MR]`, so a step of `K` reads the `MR`
//! values it broadcasts from one place.
//!
//! Tasks are spread over a fixed number of workers (the parallel loop);
//! each walks a contiguous run of tasks with its own panel, so the
//! scratch memory is bounded by workers × panel whatever the image size.

use super::super::Unsupported;
use super::super::cx::NodeCx;
use super::ConvShape;
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty};
use saturn_ir::tensor::{Tensor, strides};
use saturn_ir::{AttrValue, DType};

/// Widest tile of output positions.
const MAX_TILE: usize = 1024;
/// Largest scratch panel set, in elements.
pub(super) const MAX_SCRATCH: usize = 1 << 26;

/// What the vector lanes of the micro-kernel run along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Along {
    /// Output positions: `mr` channels (broadcast weights) × `nb`
    /// positions (vectors of the unfolded input).
    Positions,
    /// Output channels: `mr` positions (broadcast inputs) × `nb` channels
    /// (vectors of packed weights). For small planes, where vectors of
    /// positions would be mostly padding.
    Channels,
}

/// A stride-1 convolution computed on a grid of output rows as wide as a
/// zero-padded input row (`wp`): the unfolded input is then the padded
/// input itself, tap `(c, kh, kw)` of grid position `p` at
/// `c·plane + kh·dh·wp + kw·dw + p`, so nothing is unfolded per tile. The
/// `wp - ow` columns past each output row are computed and dropped when
/// the grid is copied to the output (with bias and epilogue). With
/// `rowwise`, any strides: output `(oy, ox)` reads the padded input from
/// `oy·sh·wp + ox·sw`, and only output positions are computed.
#[derive(Clone, Copy, Debug)]
struct Grid {
    /// Padded row width, padding before the first row and column.
    wp: usize,
    pad_top: usize,
    pad_left: usize,
    /// Rows of a padded plane (more than the input's, so that the last
    /// tile's taps stay inside), and its elements.
    rows: usize,
    plane: usize,
    /// Output rows and columns; grid positions `oh·wp`.
    oh: usize,
    ow: usize,
    lg: usize,
    kh: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    /// Strides (1 unless `rowwise`).
    sh: usize,
    sw: usize,
    /// Channels in lanes, blocks of positions within output rows: the
    /// padded input is read in place, but no grid positions past an
    /// output row are computed, so the output is stored directly (tiles
    /// are whole output rows, positions are the output's).
    rowwise: bool,
    /// Row blocks read the input itself (no padding).
    in_place: bool,
}

/// The tiling of one convolution.
pub(super) struct Plan {
    grid: Option<Grid>,
    /// Elements of the padded inputs and output grids of all images.
    grid_len: usize,
    along: Along,
    lanes: u16,
    /// Rows and vectors of columns of a register block.
    mr: usize,
    nv: usize,
    /// Columns of a register block.
    nb: usize,
    /// Rows of `B` (`C/g · taps`).
    kd: usize,
    /// Steps of `K` per block of `K` (a multiple of the taps on a grid),
    /// and the blocks: the sums of a block of positions wait in scratch
    /// between them.
    kc: usize,
    kblocks: usize,
    /// Columns of a tile.
    tile: usize,
    tiles: usize,
    /// Output channels per chunk, and chunks per group.
    mc: usize,
    chunks: usize,
    tasks: usize,
    workers: usize,
    /// Whether the convolution is 1×1 with stride 1 and no padding.
    pointwise: bool,
    /// Whether it is 1×1 with strides, unpadded, its blocks of positions
    /// packed like a pointwise one's (channels in the lanes).
    subsampled: bool,
    /// Whether `B` is read from the input as it is (else packed).
    direct_b: bool,
    /// Blocks of the broadcast side (channels; for [`Along::Channels`],
    /// of the vector side) per group, the last may be partial.
    nblk: usize,
}

/// How to cut a convolution into tasks for `workers` workers, each
/// taking a contiguous run: `(tiles, chunks)`, tiles of positions (at most
/// `widest` wide, in blocks of `step`) × chunks of the group's channels
/// (multiples of `cblock`, at least `4·mr`). Picks the cut whose busiest
/// worker has least to do; among nearly equal cuts, the one with fewest
/// chunks (each chunk unfolds its tile again), then fewest tiles.
fn split_work(
    s: &ConvShape,
    l: usize,
    step: usize,
    widest: usize,
    cblock: usize,
    mr: usize,
    workers: usize,
) -> (usize, usize) {
    let blocks = l.div_ceil(step);
    let min_tiles = l.div_ceil(widest).max(1);
    let mut chunk_options = vec![1];
    if workers > 1 {
        for cand in 2..=s.mg.min(8 * workers) {
            if s.mg.is_multiple_of(cand)
                && s.mg / cand >= 4 * cblock.min(mr)
                && (s.mg / cand).is_multiple_of(cblock)
            {
                chunk_options.push(cand);
            }
        }
    }
    let mut best: Option<(f64, usize, usize)> = None;
    let max_tiles = if workers > 1 {
        blocks.min(min_tiles.max(1) * 4 * workers)
    } else {
        min_tiles.min(blocks)
    };
    for &chunks in &chunk_options {
        for tiles in min_tiles.min(blocks)..=max_tiles.max(min_tiles.min(blocks)) {
            let tile = blocks.div_ceil(tiles) * step;
            let tiles = l.div_ceil(tile);
            // Positions of each task (in task order) and the busiest worker.
            let per_image: Vec<usize> = (0..tiles).map(|t| (l - t * tile).min(tile)).collect();
            let tasks: Vec<usize> = (0..s.n * s.g)
                .flat_map(|_| (0..chunks).flat_map(|_| per_image.iter().copied()))
                .collect();
            let n = tasks.len();
            let busiest = (0..workers.min(n))
                .map(|w| {
                    tasks[w * n / workers.min(n)..(w + 1) * n / workers.min(n)]
                        .iter()
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0) as f64
                / chunks as f64;
            let key = (busiest, chunks, tiles);
            let better = match best {
                None => true,
                Some((b, c, t)) => {
                    busiest < b * 0.98 || (busiest <= b * 1.02 && (chunks, tiles) < (c, t))
                }
            };
            if better {
                best = Some(key);
            }
        }
    }
    best.map_or((1, 1), |(_, c, t)| (t, c))
}

/// The fraction of a dimension of `n` that blocks of `b` cover usefully.
fn fill(n: usize, b: usize) -> f64 {
    n as f64 / (n.div_ceil(b) * b).max(1) as f64
}

/// Multiply-adds per step of `K` for a row of `ow` positions in blocks of
/// `mr` (the last one the rest) with `nv` vectors of channels, counting a
/// block as at least [`FMA_CHAINS`]: fewer independent sums than that
/// wait on the multiply-add latency.
fn row_cost(ow: usize, mr: usize, nv: usize) -> usize {
    let rest = ow % mr;
    ow / mr * mr * nv
        + if rest > 0 {
            (rest * nv).max(FMA_CHAINS)
        } else {
            0
        }
}

/// Independent multiply-adds that keep the FMA units busy: their latency
/// (4 cycles) times the units (2) on the x86 cores Saturn targets.
const FMA_CHAINS: usize = 8;

impl Plan {
    pub(super) fn new(cx: &NodeCx, s: &ConvShape, dt: DType) -> Plan {
        let lanes = cx.lanes(dt);
        let rb = cx.reg_block();
        let nv = rb.nv;
        let nb = nv * lanes as usize;
        let kd = s.cg * s.taps;
        let esize = (dt.bits() / 8).max(1);
        let pointwise = kd == 0
            || s.axes
                .iter()
                .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.output == a.input);
        // A strided 1×1 convolution (resnet's downsampling) is a pointwise
        // one of every `stride`-th input position: with the channels in
        // the lanes its blocks of positions are packed like a pointwise
        // one's, position by position.
        let subsampled = !pointwise
            && s.axes.iter().all(|a| {
                a.kernel == 1
                    && a.pad_begin == 0
                    && a.output > 0
                    && (a.output - 1) * a.stride < a.input
            });
        // Stride-1 2-D convolutions whose padded rows are not much wider
        // than their output rows run on a grid (no unfolding); with the
        // channels in the lanes, any 2-D convolution may read its padded
        // input in place (blocks within output rows).
        let candidate = match s.axes.as_slice() {
            [h, w]
                if !pointwise
                    && !subsampled
                    && h.pad_begin >= 0
                    && w.pad_begin >= 0
                    && w.output > 0
                    && h.output > 0 =>
            {
                let wp = w.input + w.pad_begin as usize + w.pad_end;
                Some(Grid {
                    wp,
                    pad_top: h.pad_begin as usize,
                    pad_left: w.pad_begin as usize,
                    rows: 0,
                    plane: 0,
                    oh: h.output,
                    ow: w.output,
                    lg: h.output * wp,
                    kh: h.kernel,
                    kw: w.kernel,
                    dh: h.dilation,
                    dw: w.dilation,
                    sh: h.stride,
                    sw: w.stride,
                    rowwise: false,
                    in_place: false,
                })
            }
            _ => None,
        };
        let mut grid = candidate.filter(|g| g.sh == 1 && g.sw == 1 && g.wp * 100 <= g.ow * 108);
        let l = grid.map_or(s.out_plane, |g| g.lg);
        // Small planes waste most of a wide vector of positions: put the
        // channels in the lanes instead, and (over the whole plane) pick
        // the block of positions (the widest that fits the registers, or
        // up to two narrower, at least 4) that wastes least of it.
        // Blocks of positions on a grid share broadcasts between the
        // unrolled kernel columns when the taps overlap (tap `kw + 1` of
        // position `p` is tap `kw` of `p + 1` at stride 1), and LLVM keeps
        // the shared ones in registers: the accumulators, the weight
        // vectors and the block's broadcasts must then all fit, or the
        // innermost loop spills (AVX2's 16 registers: 6 × 2 spills and
        // runs at half the speed of 5 × 2).
        let overlapping = candidate.is_some_and(|g| g.kw > 1 && g.sw <= (g.kw - 1) * g.dw);
        let widest = if overlapping {
            (rb.registers + 1).saturating_sub(nv) / (nv + 1)
        } else {
            rb.mr
        }
        .clamp(1, TRANSPOSE_ROWS);
        let narrowest = widest.saturating_sub(2).max(4).min(widest);
        let best_mr = |n: usize| {
            (narrowest..=widest)
                .rev()
                .max_by(|&a, &b| fill(n, a).total_cmp(&fill(n, b)))
                .unwrap_or(widest)
        };
        // Strided 2-D taps that do not overlap (resnet's 1×1
        // downsampling) give a channels block reading its input in place
        // a new input line per step of `K` for only 2·mr multiply-adds:
        // with AVX2's 6-row blocks that starves on L2 (1.3-1.5× slower
        // than positions in the lanes on an unfolded input); AVX-512's
        // 8-row blocks keep up.
        let lines_pay = pointwise || candidate.is_none() || overlapping || rb.registers >= 32;
        let channels = |n: usize, mr: usize, margin: f64| {
            lines_pay
                && (lanes as usize).is_multiple_of(TRANSPOSE_ROWS)
                && fill(n, mr) * fill(s.mg, nb) > fill(l, nb) + margin
        };
        // The channels in the lanes read the padded input in place with
        // no grid columns wasted (and strided too, where the positions in
        // the lanes need the input unfolded): taken unless the positions
        // fill their vectors clearly better (measured on resnet50's 3×3
        // convolutions, 56×56 to 7×7: 2-7% faster). A short `K` leaves
        // too little work per block to pay for its transposed store
        // (squeezenet's 3×3×3 stem: 0.53 ms unfolded, 0.64 in place).
        let margin = if kd >= 64 { -0.05 } else { 0.05 };
        // Within rows, the block that costs a row least (each row ends
        // with a block of the rest); among equals the widest: fewer blocks
        // (each transposes a full 8-row block and loads its weights once
        // per step of `K`).
        let row_mr = candidate.map(|c| {
            (narrowest..=widest)
                .rev()
                .min_by_key(|&mr| row_cost(c.ow, mr, nv))
                .unwrap_or(widest)
        });
        let plane_mr = best_mr(l);
        let (along, mr, step) = match (candidate, row_mr) {
            // Blocks within rows end each row with a block of the rest: no
            // positions wasted.
            (Some(c), Some(mr)) if channels(mr, mr, margin) => {
                let unpadded = s.axes.iter().all(|a| a.pad_begin == 0 && a.pad_end == 0);
                grid = Some(Grid {
                    rowwise: true,
                    in_place: unpadded,
                    lg: s.out_plane,
                    ..c
                });
                (Along::Channels, mr, c.ow)
            }
            _ if channels(l, plane_mr, 0.05) => (Along::Channels, plane_mr, plane_mr),
            // A panel unfolded from a window on 16 registers: blocks of 5
            // rows. The 6 × 2 block takes 15 of them, and next to the
            // unfolding's masked row tails LLVM's allocator spilled and
            // shuffled its sums (squeezenet's 3×3 /2 stem, rows of 111:
            // 2.1 → 1.0 ms). 1×1 convolutions (resnet's strided 1×1 was
            // 10% slower with 5) and grids read in place keep 6 rows.
            _ if grid.is_none() && !pointwise && !subsampled && rb.registers < 32 => {
                (Along::Positions, rb.mr.min(5), nb)
            }
            _ => (Along::Positions, rb.mr, nb),
        };
        let l = grid.map_or(s.out_plane, |g| g.lg);
        let l2 = cx
            .target
            .caches
            .iter()
            .find(|c| c.level == 2)
            .map_or(256 << 10, |c| c.bytes as usize);
        let budget = (l2 / 2).clamp(32 << 10, 256 << 10);
        // Tiles of positions: a multiple of the position block, sized so a
        // tile of the unfolded input stays in L2 (whole output rows when
        // blocks stay within rows: the input is read in place then).
        let widest = if let Some(g) = grid.filter(|g| g.rowwise) {
            // As many output rows as keep the input rows they read (all
            // channels of the group) within the budget: every block of
            // channels passes over them again.
            let row = g.wp * s.cg * esize;
            let rows = (budget / row.max(1)).saturating_sub(g.kh) / g.sh + 1;
            rows.min(g.oh) * g.ow
        } else {
            (budget / (kd.max(1) * esize) / step * step)
                .clamp(step, MAX_TILE)
                .min(l.div_ceil(step) * step)
                .max(step)
        };
        // Small convolutions are not worth waking other threads for.
        let flops = 2 * s.n * s.m * l * kd;
        let want = if flops >= 1 << 20 {
            cx.target.cores.max(1)
        } else {
            1
        };
        // On a grid, `B` is the padded input itself.
        // A 1×1 convolution with the channels in the lanes packs its input
        // in blocks of positions: in place, a block's rows are a plane
        // apart, and read again for every block of channels.
        let direct_b = grid.is_some() || (pointwise && along == Along::Positions);
        // The block of output channels a chunk must be a multiple of.
        let cblock = match along {
            Along::Positions => mr,
            Along::Channels => nb,
        };
        let (tiles, chunks) = split_work(s, l, step, widest, cblock, mr, want);
        let tile = l.div_ceil(tiles).div_ceil(step) * step;
        let tiles = l.div_ceil(tile);
        let base = s.n * s.g * tiles;
        // The padded plane: taps of the last (padded) tile stay inside.
        let grid = grid.map(|mut g| {
            if g.in_place {
                g.rows = s.axes[0].input;
                g.plane = s.in_plane;
                return g;
            }
            // Grid positions read, past the last tile's: a partial block at
            // the end of a row reads up to a block past it.
            let last = if g.rowwise {
                (g.oh - 1) * g.sh * g.wp + (g.ow + mr) * g.sw
            } else {
                tiles * tile
            };
            let reach = last + (g.kh - 1) * g.dh * g.wp + (g.kw - 1) * g.dw;
            g.rows = reach.div_ceil(g.wp).max(g.pad_top + s.axes[0].input);
            g.plane = g.rows * g.wp;
            g
        });
        // With the channels in the lanes a block of channels walks its
        // packed weights (`K × nb`) once per block of positions: past half
        // of L1 they come from L2 every time (resnet's 3×3 convolutions
        // over 256 channels: 2304 × 16 floats, 144 KiB per block). `K` is
        // then cut into blocks whose weights stay in L1, whole channels
        // on a grid.
        let l1 = cx
            .target
            .caches
            .iter()
            .find(|c| c.level == 1)
            .map_or(32 << 10, |c| c.bytes as usize);
        let (kc, kblocks) = match along {
            Along::Channels if kd > 0 => {
                let unit = grid.map_or(1, |g| g.kh * g.kw);
                let units = kd / unit;
                let fit = (l1 / 2 / (nb * esize) / unit).max(1);
                let blocks = units.div_ceil(fit);
                let per = units.div_ceil(blocks);
                (per * unit, units.div_ceil(per))
            }
            _ => (kd, 1),
        };
        let mc = s.mg / chunks;
        let tasks = base * chunks;
        let workers = tasks.min(want).max(1);
        let grid_len = grid.map_or(0, |g| match (g.in_place, g.rowwise) {
            (true, _) => 0,
            (false, true) => s.n * s.c * g.plane,
            (false, false) => s.n * s.c * g.plane + s.n * s.m * g.lg,
        });
        Plan {
            grid,
            grid_len,
            along,
            lanes,
            mr,
            nv,
            nb,
            kd,
            kc,
            kblocks,
            tile,
            tiles,
            mc,
            chunks,
            tasks,
            workers,
            pointwise,
            subsampled: subsampled && along == Along::Channels,
            direct_b,
            nblk: s.mg.div_ceil(cblock),
        }
    }

    /// Elements of scratch the plan needs.
    pub(super) fn scratch(&self) -> usize {
        self.panel_len() + self.grid_len + self.sums_len()
    }

    /// Elements of the sums kept between blocks of `K`: a tile (and a
    /// block past it) of positions × a block of channels, per worker.
    fn sums_len(&self) -> usize {
        if self.kblocks > 1 {
            self.workers * (self.tile + self.mr) * self.nb
        } else {
            0
        }
    }

    /// Positions per micro-kernel block.
    fn pos_block(&self) -> usize {
        match self.along {
            Along::Positions => self.nb,
            Along::Channels => self.mr,
        }
    }

    /// Channels per block of packed weights.
    fn wblock(&self) -> usize {
        match self.along {
            Along::Positions => self.mr,
            Along::Channels => self.nb,
        }
    }

    /// Elements of the unfolded-input panels.
    fn panel_len(&self) -> usize {
        if self.direct_b {
            0
        } else {
            self.workers * self.kd * self.tile
        }
    }
}

/// Where the micro-kernel reads `B`: element `(p, j)` of the tile is at
/// `off + p·rs + j`, or with `blocks` (blocks of `rs` columns, each
/// `[K][rs]`) at `off + (j - j mod rs)·K + p·rs + j mod rs`.
struct BOperand {
    buf: BufId,
    off: Expr,
    rs: i64,
    blocks: bool,
}

/// What one task's micro-kernels share.
struct Task<'a> {
    s: &'a ConvShape,
    plan: &'a Plan,
    dt: DType,
    /// The repacked weights and the offset of this task's first block.
    wpack: BufId,
    a0: Expr,
    bias: Option<BufId>,
    b: BOperand,
    /// Image, first output channel of the chunk, first output position.
    n: Expr,
    m0: Expr,
    l0: Expr,
    /// Columns of this tile.
    tl: Expr,
    /// On a grid: its geometry and the output grid buffer (none when
    /// blocks stay within output rows).
    grid: Option<(Grid, Option<BufId>)>,
    /// With blocks of `K`: the sums scratch and this worker's part of it
    /// (`[position][channel]` for the tile's positions).
    sums: Option<(BufId, Expr)>,
}

/// A block of output channels of a task with the channels in the lanes:
/// absolute channel `m`, `channels` of them, their packed weights at
/// `wblk`, and the block of `K` being walked (`kb`) when there are several.
struct ChannelBlock {
    m: Expr,
    wblk: Expr,
    channels: usize,
    kb: Option<Expr>,
}

pub(super) fn lower(
    cx: &mut NodeCx,
    s: &ConvShape,
    plan: &Plan,
    x: BufId,
    w: BufId,
    bias: Option<BufId>,
    dt: DType,
) -> Result<(), Unsupported> {
    let p = plan;
    // Every strategy stores an output element once, from registers or
    // from the output grid, after the last step of `K`.
    cx.stores_each_output_once();
    cx.schedule(
        "conv",
        AttrValue::Str(
            if p.pointwise {
                "gemm_1x1"
            } else if p.subsampled {
                "gemm_1x1_strided"
            } else if p.grid.is_some_and(|g| g.in_place) {
                "rows_in_place"
            } else if p.grid.is_some_and(|g| g.rowwise) {
                "padded_rows"
            } else if p.grid.is_some() {
                "padded_gemm"
            } else {
                "im2col_gemm"
            }
            .into(),
        ),
    );
    cx.schedule("vector", AttrValue::Int(p.lanes as i64));
    cx.schedule(
        "lanes_along",
        AttrValue::Str(
            match p.along {
                Along::Positions => "positions",
                Along::Channels => "channels",
            }
            .into(),
        ),
    );
    cx.schedule("tile", AttrValue::Ints(vec![p.mr as i64, p.nb as i64]));
    cx.schedule("tile_cols", AttrValue::Int(p.tile as i64));
    cx.schedule("m_chunk", AttrValue::Int(p.mc as i64));
    if p.kblocks > 1 {
        cx.schedule("k_block", AttrValue::Int(p.kc as i64));
    }
    cx.schedule("workers", AttrValue::Int(p.workers as i64));
    if p.workers > 1 {
        cx.schedule("parallel", AttrValue::Str("tasks".into()));
    }
    let panel = (!p.direct_b).then(|| cx.scratch("cols", dt, p.panel_len()));
    let sums = (p.kblocks > 1).then(|| cx.scratch("sums", dt, p.sums_len()));
    let kind = if p.workers > 1 {
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    let wpack = pack_weights(cx, s, p, dt, w, kind);
    let grid = match p.grid {
        Some(g) if g.in_place => Some((g, x, None)),
        Some(g) => {
            let xpad = cx.scratch("xpad", dt, s.n * s.c * g.plane);
            let ygrid = (!g.rowwise).then(|| cx.scratch("ygrid", dt, s.n * s.m * g.lg));
            pad_input(cx, s, p, &g, dt, x, xpad);
            Some((g, xpad, ygrid))
        }
        None => None,
    };
    let wk = cx.b.begin_for("worker", 0, p.workers, 1, kind);
    // Each worker takes a contiguous run of tasks: neighbouring tiles
    // write neighbouring output, and the cache lines between two tiles
    // are then shared by two workers at most once.
    let t = cx.b.begin_for(
        "task",
        wk.clone() * p.tasks as i64 / p.workers as i64,
        (wk.clone() + 1) * p.tasks as i64 / p.workers as i64,
        1,
        LoopKind::Serial,
    );
    let tile = cx.b.let_("tile", t.clone() % p.tiles as i64);
    let r1 = cx.b.let_("r1", t / p.tiles as i64);
    let chunk = cx.b.let_("chunk", r1.clone() % p.chunks as i64);
    let r2 = cx.b.let_("r2", r1 / p.chunks as i64);
    let gi = cx.b.let_("grp", r2.clone() % s.g as i64);
    let ni = cx.b.let_("img", r2 / s.g as i64);
    let l0 = cx.b.let_("l0", tile * p.tile as i64);
    let positions = grid.map_or(s.out_plane, |(g, _, _)| g.lg);
    let tl = cx.b.let_(
        "tl",
        (Expr::idx(positions as i64) - l0.clone()).min(Expr::idx(p.tile as i64)),
    );
    // The group's input channels.
    let xbase = cx.b.let_(
        "xbase",
        (ni.clone() * s.c as i64 + gi.clone() * s.cg as i64) * s.in_plane as i64,
    );
    let b = match (grid, panel) {
        (Some((g, xpad, _)), _) => {
            // A tile of whole output rows starts at its first row's grid
            // position.
            let gl0 = if g.rowwise {
                l0.clone() / g.ow as i64 * (g.sh * g.wp) as i64
            } else {
                l0.clone()
            };
            BOperand {
                buf: xpad,
                off: cx.b.let_(
                    "boff",
                    (ni.clone() * s.c as i64 + gi.clone() * s.cg as i64) * g.plane as i64 + gl0,
                ),
                rs: 0,
                blocks: false,
            }
        }
        (None, Some(buf)) if p.pointwise || p.subsampled => {
            let dbase = cx.b.let_("pbase", wk.clone() * (p.kd * p.tile) as i64);
            if p.subsampled {
                pack_subsampled(&mut cx.b, s, p, x, buf, &xbase, &l0, &dbase, &tl);
            } else {
                pack_blocks(&mut cx.b, s, p, x, buf, &(xbase + l0.clone()), &dbase, &tl);
            }
            BOperand {
                buf,
                off: dbase,
                rs: p.mr as i64,
                blocks: true,
            }
        }
        (None, Some(buf)) => {
            let dbase = cx.b.let_("pbase", wk.clone() * (p.kd * p.tile) as i64);
            pack(&mut cx.b, s, p, dt, x, buf, &xbase, &dbase, &l0, &tl);
            BOperand {
                buf,
                off: dbase,
                rs: p.tile as i64,
                blocks: false,
            }
        }
        (None, None) => BOperand {
            buf: x,
            off: cx.b.let_("boff", xbase + l0.clone()),
            rs: s.in_plane as i64,
            blocks: false,
        },
    };
    let m0 =
        cx.b.let_("m0", gi.clone() * s.mg as i64 + chunk.clone() * p.mc as i64);
    // Block `bi` of group `g` starts at `((g·nblk + bi)·K)·MR`; chunks
    // hold whole blocks.
    let a0 = cx.b.let_(
        "a0",
        gi * (p.nblk * p.kd * p.wblock()) as i64 + chunk * (p.mc * p.kd) as i64,
    );
    let task = Task {
        s,
        plan: p,
        dt,
        wpack,
        a0,
        bias,
        b,
        n: ni,
        m0,
        l0,
        tl,
        grid: grid.map(|(g, _, y)| (g, y)),
        sums: sums.map(|b| (b, wk.clone() * ((p.tile + p.mr) * p.nb) as i64)),
    };
    match p.along {
        Along::Positions => task.run(cx)?,
        Along::Channels => task.run_channels(cx)?,
    }
    cx.b.end_for();
    cx.b.end_for();
    if let Some((g, _, Some(ygrid))) = grid {
        store_grid(cx, s, &g, dt, ygrid, bias)?;
    }
    Ok(())
}

/// Copies the input into zero-padded planes of `g.rows × g.wp` (rows and
/// columns outside the input are zeros), a plane per image and channel.
fn pad_input(cx: &mut NodeCx, s: &ConvShape, p: &Plan, g: &Grid, dt: DType, x: BufId, xpad: BufId) {
    let (ih, iw) = (s.axes[0].input, s.axes[1].input);
    let lanes = p.lanes;
    let vty = Ty::vector(dt, lanes);
    let kind = if s.n * s.c * g.plane >= 1 << 15 && p.workers > 1 {
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    let pl = cx.b.begin_for("pplane", 0, s.n * s.c, 1, kind);
    let src = cx.b.let_("psrc", pl.clone() * (ih * iw) as i64);
    let dst = cx.b.let_("pdst", pl * g.plane as i64);
    let zero_row = |cx: &mut NodeCx, at: Expr, from: usize, to: usize| {
        if from < to {
            let z =
                cx.b.begin_for("pz", from, to, lanes as i64, LoopKind::Serial);
            let m = Expr::idx(to as i64) - z.clone();
            cx.b.store_vec(xpad, at + z, Expr::constant(0.0, vty), 1, Some(m));
            cx.b.end_for();
        }
    };
    // Rows above and below the input: zeros.
    for (r0, r1) in [(0, g.pad_top), (g.pad_top + ih, g.rows)] {
        if r0 < r1 {
            let r = cx.b.begin_for("prow", r0, r1, 1, LoopKind::Serial);
            let at = cx.b.let_("pat", dst.clone() + r * g.wp as i64);
            zero_row(cx, at, 0, g.wp);
            cx.b.end_for();
        }
    }
    // Input rows, with zeros left and right.
    let r = cx.b.begin_for("irow", 0, ih, 1, LoopKind::Serial);
    let at =
        cx.b.let_("pat", dst + (r.clone() + g.pad_top as i64) * g.wp as i64);
    zero_row(cx, at.clone(), 0, g.pad_left);
    zero_row(cx, at.clone(), g.pad_left + iw, g.wp);
    let from = cx.b.let_("pfrom", src + r * iw as i64);
    let c = cx.b.begin_for("pc", 0, iw, lanes as i64, LoopKind::Serial);
    let m = cx.b.let_("pm", Expr::idx(iw as i64) - c.clone());
    let v = Expr::load_vec(x, from + c.clone(), lanes, 1, Some(m.clone()));
    cx.b.store_vec(xpad, at + g.pad_left as i64 + c, v, 1, Some(m));
    cx.b.end_for();
    cx.b.end_for();
    cx.b.end_for();
}

/// The output grid to the output: each output row's first `ow` grid
/// columns, plus the bias, through the epilogue.
fn store_grid(
    cx: &mut NodeCx,
    s: &ConvShape,
    g: &Grid,
    dt: DType,
    ygrid: BufId,
    bias: Option<BufId>,
) -> Result<(), Unsupported> {
    let lanes = cx.lanes(dt);
    let kind = if s.n * s.m * s.out_plane >= 1 << 15 {
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    let (ni, mi) = super::plane_loop(cx, s.n, s.m, kind == LoopKind::Parallel);
    let gbase = cx.b.let_(
        "gbase",
        (ni.clone() * s.m as i64 + mi.clone()) * g.lg as i64,
    );
    let bv = bias.map(|b| cx.b.let_("gbias", Expr::load(b, mi.clone()).splat(lanes)));
    let oh = cx.b.begin_for("oh", 0, g.oh, 1, LoopKind::Serial);
    let c =
        cx.b.begin_for("ow", 0, g.ow, lanes as i64, LoopKind::Serial);
    let m = cx.b.let_("om", Expr::idx(g.ow as i64) - c.clone());
    let mask = (!g.ow.is_multiple_of(lanes as usize)).then(|| m.clone());
    let mut v = Expr::load_vec(
        ygrid,
        gbase.clone() + oh.clone() * g.wp as i64 + c.clone(),
        lanes,
        1,
        mask.clone(),
    );
    if let Some(b) = &bv {
        v = Expr::bin(BinOp::Add, v, b.clone());
    }
    let view = [s.n, s.m, s.out_plane];
    let idx = [ni, mi, oh * g.ow as i64 + c];
    cx.store_out_view(&view, &idx, v, mask)?;
    cx.b.end_for();
    cx.b.end_for();
    cx.b.end_for();
    Ok(())
}

/// Copies the weights `[M, K]` as `[G·nblk, K, W]`, `W` channels per
/// block (`mr` broadcast channels, or `nb` vector channels when channels
/// run along the lanes): channel `r` of block `bi` of group `g` at
/// `((g·nblk + bi)·K + p)·W + r` (channels past the group's end are
/// zeros). Constant weights are repacked now, into a constant buffer;
/// others in scratch, per call.
fn pack_weights(
    cx: &mut NodeCx,
    s: &ConvShape,
    p: &Plan,
    dt: DType,
    w: BufId,
    kind: LoopKind,
) -> BufId {
    let blocks = s.g * p.nblk;
    let width = p.wblock();
    if let Some(t) = cx.const_of_buf(w) {
        let src = t.to_f64_vec();
        let mut out = vec![0.0f64; (blocks * p.kd * width).max(1)];
        for g in 0..s.g {
            for bi in 0..p.nblk {
                for r in 0..width {
                    let row = bi * width + r;
                    if row >= s.mg {
                        continue;
                    }
                    let from = (g * s.mg + row) * p.kd;
                    let to = (g * p.nblk + bi) * p.kd * width + r;
                    for k in 0..p.kd {
                        out[to + k * width] = src[from + k];
                    }
                }
            }
        }
        let n = out.len();
        return cx.const_buf("wpack", Tensor::from_vec(vec![n], out).cast(dt, false));
    }
    let wpack = cx.scratch("wpack", dt, (blocks * p.kd * width).max(1));
    let rb = cx.b.begin_for("rb", 0, blocks, 1, kind);
    let g = cx.b.let_("g", rb.clone() / p.nblk as i64);
    let bi = cx.b.let_("bi", rb.clone() % p.nblk as i64);
    let row0 = cx.b.let_("row0", bi * width as i64);
    let src =
        cx.b.let_("wsrc", (g * s.mg as i64 + row0.clone()) * p.kd as i64);
    let dst = cx.b.let_("wdst", rb * (p.kd * width) as i64);
    let mask =
        (!s.mg.is_multiple_of(width)).then(|| cx.b.let_("rows", Expr::idx(s.mg as i64) - row0));
    let k = cx.b.begin_for("p", 0, p.kd, 1, LoopKind::Serial);
    let v = Expr::load_vec(w, src + k.clone(), width as u16, p.kd as i64, mask);
    cx.b.store_vec(wpack, dst + k * width as i64, v, 1, None);
    cx.b.end_for();
    cx.b.end_for();
    wpack
}

/// Unfolds the tile `[l0, l0 + tl)` of the group's input (at `xbase`) into
/// the panel at `dbase`: row `p = (ci, taps...)`, column `j` holds the
/// input under tap `p` of output position `l0 + j` (zero in the padding).
#[allow(clippy::too_many_arguments)]
fn pack(
    b: &mut KernelBuilder,
    s: &ConvShape,
    p: &Plan,
    dt: DType,
    x: BufId,
    panel: BufId,
    xbase: &Expr,
    dbase: &Expr,
    l0: &Expr,
    tl: &Expr,
) {
    let axes = &s.axes;
    let r = axes.len();
    let last = &axes[r - 1];
    let ow = last.output as i64;
    let lanes = p.lanes;
    let vty = Ty::vector(dt, lanes);
    let input: Vec<usize> = axes.iter().map(|a| a.input).collect();
    let kernel: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
    let outer_out: Vec<usize> = axes[..r - 1].iter().map(|a| a.output).collect();
    let (in_st, tap_st, row_st) = (strides(&input), strides(&kernel), strides(&outer_out));
    // Output rows (all axes but the last) that meet the tile.
    let row_a = b.let_("row_a", l0.clone() / ow);
    let row_b = b.let_("row_b", (l0.clone() + tl.clone() - 1) / ow + 1);
    let row = b.begin_for("row", row_a, row_b, 1, LoopKind::Serial);
    let rbase = b.let_("rbase", row.clone() * ow);
    let ow_a = b.let_("ow_a", (l0.clone() - rbase.clone()).max(Expr::idx(0)));
    let ow_b = b.let_(
        "ow_b",
        (l0.clone() + tl.clone() - rbase.clone()).min(Expr::idx(ow)),
    );
    let jcol = b.let_("jcol", rbase + ow_a.clone() - l0.clone());
    let o: Vec<Expr> = (0..r - 1)
        .map(|a| {
            let e = row.clone() / row_st[a] as i64 % outer_out[a] as i64;
            b.let_(&format!("o{a}"), e)
        })
        .collect();
    let ci = b.begin_for("ci", 0, s.cg, 1, LoopKind::Serial);
    let mut ks = Vec::new();
    for (a, &k) in kernel[..r - 1].iter().enumerate() {
        ks.push(b.begin_for(&format!("k{a}"), 0, k, 1, LoopKind::Serial));
    }
    // Validity and input row of the outer taps.
    let mut valid: Option<Expr> = None;
    let mut xrow = xbase.clone() + ci.clone() * s.in_plane as i64;
    let mut prow = ci * s.taps as i64;
    for a in 0..r - 1 {
        let ax = &axes[a];
        let i = b.let_(
            &format!("i{a}"),
            o[a].clone() * ax.stride as i64 - ax.pad_begin + ks[a].clone() * ax.dilation as i64,
        );
        let ok = Expr::bin(
            BinOp::And,
            i.clone().ge(Expr::idx(0)),
            i.clone().lt(Expr::idx(ax.input as i64)),
        );
        valid = Some(match valid {
            Some(v) => Expr::bin(BinOp::And, v, ok),
            None => ok,
        });
        xrow = xrow + i * in_st[a] as i64;
        prow = prow + ks[a].clone() * tap_st[a] as i64;
    }
    let valid = valid.map(|v| b.let_("valid", v));
    let xrow = b.let_("xrow", xrow);
    let prow = b.let_("prow", prow);
    let kw = b.begin_for(&format!("k{}", r - 1), 0, last.kernel, 1, LoopKind::Serial);
    let (st, d, pw, wi) = (
        last.stride as i64,
        last.dilation as i64,
        last.pad_begin,
        last.input as i64,
    );
    let kd_off = b.let_("kdo", kw.clone() * d - pw);
    // Outputs [lo, hi) of the segment read the input; the rest is padding.
    let lo = ((Expr::idx(pw + st - 1) - kw.clone() * d) / st)
        .max(ow_a.clone())
        .min(ow_b.clone());
    let hi = ((Expr::idx(wi + pw + st - 1) - kw.clone() * d) / st).min(ow_b.clone());
    let (lo, hi) = match &valid {
        Some(v) => (
            Expr::select(v.clone(), lo, ow_b.clone()),
            Expr::select(v.clone(), hi, ow_b.clone()),
        ),
        None => (lo, hi),
    };
    let lo = b.let_("lo", lo);
    let hi = b.let_("hi", hi.max(lo.clone()));
    let dst = b.let_(
        "dst",
        dbase.clone() + (prow + kw) * p.tile as i64 + jcol - ow_a.clone(),
    );
    let zero = Expr::constant(0.0, vty);
    let fill = |b: &mut KernelBuilder, from: &Expr, to: &Expr| {
        let v = b.begin_for(
            "z",
            from.clone(),
            to.clone(),
            lanes as i64,
            LoopKind::Serial,
        );
        let m = to.clone() - v.clone();
        b.store_vec(panel, dst.clone() + v, zero.clone(), 1, Some(m));
        b.end_for();
    };
    fill(b, &ow_a, &lo);
    // Whole vectors without masks, then one masked vector for the rest.
    let l = lanes as i64;
    let full = b.let_("full", lo.clone() + (hi.clone() - lo.clone()) / l * l);
    {
        let v = b.begin_for("c", lo.clone(), full.clone(), l, LoopKind::Serial);
        let src = xrow.clone() + v.clone() * st + kd_off.clone();
        let val = Expr::load_vec(x, src, lanes, st, None);
        b.store_vec(panel, dst.clone() + v, val, 1, None);
        b.end_for();
    }
    {
        let v = b.begin_for("ct", full, hi.clone(), l, LoopKind::Serial);
        let m = b.let_("m", hi.clone() - v.clone());
        let src = xrow.clone() + v.clone() * st + kd_off;
        let val = Expr::load_vec(x, src, lanes, st, Some(m.clone()));
        b.store_vec(panel, dst.clone() + v, val, 1, Some(m));
        b.end_for();
    }
    fill(b, &hi, &ow_b);
    b.end_for(); // kw
    for _ in 0..r - 1 {
        b.end_for();
    }
    b.end_for(); // ci
    b.end_for(); // row
    // Columns past a partial tile's end up to the register block are read
    // (not stored) by the micro-kernel: zeros, so they cannot be slow
    // denormals.
    let up = b.let_(
        "tl_up",
        (tl.clone() + (p.pos_block() as i64 - 1)) / p.pos_block() as i64 * p.pos_block() as i64,
    );
    let k = b.begin_for("pz", 0, p.kd, 1, LoopKind::Serial);
    let z = b.begin_for("z", tl.clone(), up.clone(), lanes as i64, LoopKind::Serial);
    let at = dbase.clone() + k * p.tile as i64 + z.clone();
    b.store_vec(panel, at, Expr::constant(0.0, vty), 1, Some(up - z));
    b.end_for();
    b.end_for();
}

/// A 1×1 convolution's tile of `tl` positions (input at `src`, rows a
/// plane apart) into `panel` at `dbase` as blocks of `mr` positions, each
/// `[K][mr]` contiguous, positions past the tile zero.
#[allow(clippy::too_many_arguments)]
fn pack_blocks(
    b: &mut KernelBuilder,
    s: &ConvShape,
    p: &Plan,
    x: BufId,
    panel: BufId,
    src: &Expr,
    dbase: &Expr,
    tl: &Expr,
) {
    let mr = p.mr as i64;
    let lanes = (p.mr as u16).next_power_of_two();
    let src = b.let_("psrc", src.clone());
    let j = b.begin_for("pj", 0, tl.clone(), mr, LoopKind::Serial);
    let n = b.let_("pn", (tl.clone() - j.clone()).min(Expr::idx(mr)));
    let from = b.let_("pfrom", src + j.clone());
    let to = b.let_("pto", dbase.clone() + j * p.kd as i64);
    let k = b.begin_for("pk", 0, p.kd, 1, LoopKind::Serial);
    let v = Expr::load_vec(
        x,
        from.clone() + k.clone() * s.in_plane as i64,
        lanes,
        1,
        Some(n.clone()),
    );
    // The masked load gives zeros past the tile.
    b.store_vec(panel, to.clone() + k * mr, v, 1, Some(Expr::idx(mr)));
    b.end_for();
    b.end_for();
}

/// [`pack_blocks`] for a strided 1×1 convolution: each position of a
/// block copied from its own input position (`stride` apart along each
/// axis), positions past the tile repeating its last one.
#[allow(clippy::too_many_arguments)]
fn pack_subsampled(
    b: &mut KernelBuilder,
    s: &ConvShape,
    p: &Plan,
    x: BufId,
    panel: BufId,
    xbase: &Expr,
    l0: &Expr,
    dbase: &Expr,
    tl: &Expr,
) {
    let mr = p.mr as i64;
    let j = b.begin_for("pj", 0, tl.clone(), mr, LoopKind::Serial);
    let to = b.let_("pto", dbase.clone() + j.clone() * p.kd as i64);
    let r = b.begin_for("pr", 0, mr, 1, LoopKind::Serial);
    let pos = b.let_("ppos", l0.clone() + (j + r.clone()).min(tl.clone() - 1));
    // The input position under output position `pos`, axis by axis from
    // the last (input strides are products of the later extents).
    let mut from = xbase.clone();
    let mut rest = pos;
    let mut instride = 1i64;
    for (i, a) in s.axes.iter().enumerate().rev() {
        let coord = if i == 0 {
            rest.clone()
        } else {
            rest.clone() % a.output as i64
        };
        from = from + coord * (a.stride as i64 * instride);
        rest = rest / a.output as i64;
        instride *= a.input as i64;
    }
    let from = b.let_("pfrom", from);
    let k = b.begin_for("pk", 0, p.kd, 1, LoopKind::Serial);
    let v = Expr::load(x, from + k.clone() * s.in_plane as i64);
    b.store(panel, to.clone() + k * mr + r, v);
    b.end_for();
    b.end_for();
    b.end_for();
}

impl Task<'_> {
    fn run(&self, cx: &mut NodeCx) -> Result<(), Unsupported> {
        let p = self.plan;
        let full_rows = p.mc / p.mr * p.mr;
        let nb = p.nb as i64;
        let mut row_blocks: Vec<(Option<Expr>, usize)> = Vec::new();
        if full_rows > 0 {
            row_blocks.push((None, p.mr));
        }
        if full_rows < p.mc {
            row_blocks.push((Some(Expr::idx(full_rows as i64)), p.mc - full_rows));
        }
        for (at, mr) in row_blocks {
            let (i, open) = match at {
                None => (
                    cx.b.begin_for("i", 0, full_rows, p.mr as i64, LoopKind::Serial),
                    true,
                ),
                Some(e) => (e, false),
            };
            let m = cx.b.let_("m", self.m0.clone() + i.clone());
            let ablk = cx.b.let_("ablk", self.a0.clone() + i * p.kd as i64);
            // Full column blocks, then at most one masked block.
            let j =
                cx.b.begin_for("j", 0, self.tl.clone() - (nb - 1), nb, LoopKind::Serial);
            self.micro(cx, &m, &ablk, &j, mr, false)?;
            cx.b.end_for();
            let jt = cx.b.begin_for(
                "jt",
                self.tl.clone() / nb * nb,
                self.tl.clone(),
                nb,
                LoopKind::Serial,
            );
            self.micro(cx, &m, &ablk, &jt, mr, true)?;
            cx.b.end_for();
            if open {
                cx.b.end_for();
            }
        }
        Ok(())
    }

    /// Rows `m..m+mr` (absolute output channels, their packed weights at
    /// `ablk`) × columns `j..j+nb` of the tile.
    #[allow(clippy::too_many_arguments)]
    fn micro(
        &self,
        cx: &mut NodeCx,
        m: &Expr,
        ablk: &Expr,
        j: &Expr,
        mr: usize,
        tail: bool,
    ) -> Result<(), Unsupported> {
        let p = self.plan;
        let l = p.lanes;
        let vty = Ty::vector(self.dt, l);
        let masks: Vec<Option<Expr>> = (0..p.nv)
            .map(|c| tail.then(|| self.tl.clone() - j.clone() - (c * l as usize) as i64))
            .map(|m| m.map(|m| cx.b.let_("mask", m)))
            .collect();
        let mut acc = Vec::new();
        for r in 0..mr {
            for c in 0..p.nv {
                acc.push(cx.b.decl(&format!("c{r}{c}"), Expr::constant(0.0, vty)));
            }
        }
        let ap = cx.b.decl("ap", ablk.clone());
        let unmasked = p.grid.is_some() || !p.direct_b;
        self.k_loop(cx, j, None, ap, p.mr, &mut |cx, brow| {
            let mut bv = Vec::new();
            for (c, mask) in masks.iter().enumerate() {
                // A panel (or the padded grid) holds whole tiles: columns
                // past the end are read (and never stored) unmasked. The
                // input itself is not.
                let mask = if unmasked { None } else { mask.clone() };
                let v = Expr::load_vec(
                    self.b.buf,
                    brow.clone() + (c * l as usize) as i64,
                    l,
                    1,
                    mask,
                );
                bv.push(cx.b.let_(&format!("b{c}"), v));
            }
            for r in 0..mr {
                let idx = Expr::Var(ap) + r as i64;
                let a =
                    cx.b.let_(&format!("a{r}"), Expr::load(self.wpack, idx).splat(l));
                for c in 0..p.nv {
                    let v = acc[r * p.nv + c];
                    cx.b.assign(v, Expr::mul_add(a.clone(), bv[c].clone(), Expr::Var(v)));
                }
            }
        });
        if let Some((g, Some(ygrid))) = self.grid {
            // Raw sums to the output grid; bias and epilogue come later.
            for r in 0..mr {
                let row = (self.n.clone() * self.s.m as i64 + m.clone() + r as i64) * g.lg as i64;
                for (c, mask) in masks.iter().enumerate() {
                    let at = row.clone() + self.l0.clone() + j.clone() + (c * l as usize) as i64;
                    cx.b.store_vec(ygrid, at, Expr::Var(acc[r * p.nv + c]), 1, mask.clone());
                }
            }
            return Ok(());
        }
        let s = self.s;
        let view = [s.n, s.m, s.out_plane];
        for r in 0..mr {
            let mm = m.clone() + r as i64;
            let bias = self
                .bias
                .map(|b| cx.b.let_("bias", Expr::load(b, mm.clone()).splat(l)));
            for (c, mask) in masks.iter().enumerate() {
                let mut v = Expr::Var(acc[r * p.nv + c]);
                if let Some(bv) = &bias {
                    v = Expr::bin(BinOp::Add, v, bv.clone());
                }
                let col = self.l0.clone() + j.clone() + (c * l as usize) as i64;
                let idx = [self.n.clone(), mm.clone(), col];
                cx.store_out_view(&view, &idx, v, mask.clone())?;
            }
        }
        Ok(())
    }

    /// The steps of `K` for the block at column `j` (those of block `kb`
    /// of `K`, given one): `body` gets the address of the step's row of
    /// `B` (column `j`); the packed-weights cursor `ap` advances by
    /// `astep` per step. `B` is walked linearly (rows `rs` apart), or on a
    /// grid as channel × kernel row × kernel column.
    fn k_loop(
        &self,
        cx: &mut NodeCx,
        j: &Expr,
        kb: Option<&Expr>,
        ap: saturn_ir::kernel::VarId,
        astep: usize,
        body: &mut dyn FnMut(&mut NodeCx, &Expr),
    ) {
        let p = self.plan;
        // Where the walk starts and ends, `B`'s rows of units of `unit`
        // steps `rs` apart from `from`: all `units` of them, or block `kb`.
        let span =
            |cx: &mut NodeCx, end: &str, from: Expr, units: usize, unit: usize, rs: i64| match kb {
                Some(kb) => {
                    let per = (p.kc / unit) as i64;
                    let u0 = cx.b.let_("k0", kb.clone() * per);
                    let u1 = (u0.clone() + per).min(Expr::idx(units as i64));
                    (
                        cx.b.let_("kstart", from.clone() + u0 * rs),
                        cx.b.let_(end, from + u1 * rs),
                    )
                }
                None => (from.clone(), cx.b.let_(end, from + units as i64 * rs)),
            };
        if let Some((g, _)) = self.grid {
            // Channel × kernel row × kernel column (unrolled): tap
            // `(c, kh, kw)` is the padded plane shifted by the tap.
            let bcol = cx.b.let_("bcol", self.b.off.clone() + j.clone());
            let (cstart, cend) = span(cx, "cend", bcol, self.s.cg, g.kh * g.kw, g.plane as i64);
            let ci =
                cx.b.begin_for("ci", cstart, cend, g.plane as i64, LoopKind::Serial);
            let kh = cx.b.begin_for("kh", 0, g.kh, 1, LoopKind::Serial);
            let hrow = cx.b.let_("hrow", ci + kh * (g.dh * g.wp) as i64);
            let unroll = if (2..=8).contains(&g.kw) {
                LoopKind::Unroll(g.kw as u32)
            } else {
                LoopKind::Serial
            };
            let kw = cx.b.begin_for("kw", 0, g.kw, 1, unroll);
            let brow = cx.b.let_("brow", hrow + kw * g.dw as i64);
            body(cx, &brow);
            cx.b.assign(ap, Expr::Var(ap) + astep as i64);
            cx.b.end_for();
            cx.b.end_for();
            cx.b.end_for();
            return;
        }
        // The loop walks B's address; A's follows in a variable of its
        // own, so neither is recomputed from the step count.
        let col = if self.b.blocks {
            j.clone() * p.kd as i64
        } else {
            j.clone()
        };
        let bcol = cx.b.let_("bcol", self.b.off.clone() + col);
        let (bstart, bend) = span(cx, "bend", bcol, p.kd, 1, self.b.rs);
        let brow =
            cx.b.begin_for("q", bstart, bend, self.b.rs, LoopKind::Serial);
        body(cx, &brow);
        cx.b.assign(ap, Expr::Var(ap) + astep as i64);
        cx.b.end_for();
    }

    /// [`Task::run`] with the channels along the lanes: blocks of `nb`
    /// channels (the last of the group partial) × `mr` positions (the last
    /// of the tile, or of an output row, partial).
    fn run_channels(&self, cx: &mut NodeCx) -> Result<(), Unsupported> {
        let p = self.plan;
        let (nb, mr) = (p.nb, p.mr as i64);
        let full = p.mc / nb * nb;
        let mut blocks: Vec<(Option<Expr>, usize)> = Vec::new();
        if full > 0 {
            blocks.push((None, nb));
        }
        if full < p.mc {
            blocks.push((Some(Expr::idx(full as i64)), p.mc - full));
        }
        for (at, channels) in blocks {
            let (i, open) = match at {
                None => (
                    cx.b.begin_for("i", 0, full, nb as i64, LoopKind::Serial),
                    true,
                ),
                Some(e) => (e, false),
            };
            let m = cx.b.let_("m", self.m0.clone() + i.clone());
            let wblk = cx.b.let_("wblk", self.a0.clone() + i * p.kd as i64);
            // Blocks of `K` outermost: a block's weights stay in L1 while
            // every block of positions passes over them.
            let kb =
                (p.kblocks > 1).then(|| cx.b.begin_for("kb", 0, p.kblocks, 1, LoopKind::Serial));
            let blk = ChannelBlock {
                m,
                wblk,
                channels,
                kb,
            };
            match self.grid {
                Some((g, None)) => self.row_blocks(cx, &g, &blk)?,
                _ => {
                    let j =
                        cx.b.begin_for("j", 0, self.tl.clone() - (mr - 1), mr, LoopKind::Serial);
                    self.micro_channels(cx, &blk, &j, &j, p.mr, None)?;
                    cx.b.end_for();
                    let jt = cx.b.begin_for(
                        "jt",
                        self.tl.clone() / mr * mr,
                        self.tl.clone(),
                        mr,
                        LoopKind::Serial,
                    );
                    let valid = cx.b.let_("valid", self.tl.clone() - jt.clone());
                    self.micro_channels(cx, &blk, &jt, &jt, p.mr, Some(valid))?;
                    cx.b.end_for();
                }
            }
            if blk.kb.is_some() {
                cx.b.end_for();
            }
            if open {
                cx.b.end_for();
            }
        }
        Ok(())
    }

    /// [`Task::run_channels`] over the tile's output rows when blocks stay
    /// within rows: full blocks of `mr` positions, then a partial one at
    /// the end of each row when `mr` does not divide it.
    fn row_blocks(&self, cx: &mut NodeCx, g: &Grid, blk: &ChannelBlock) -> Result<(), Unsupported> {
        let mr = self.plan.mr;
        let row =
            cx.b.begin_for("row", 0, self.tl.clone() / g.ow as i64, 1, LoopKind::Serial);
        let grow = cx.b.let_("grow", row.clone() * (g.sh * g.wp) as i64);
        let orow = cx.b.let_("orow", row * g.ow as i64);
        let full = g.ow / mr * mr;
        if full > 0 {
            let x = cx.b.begin_for("x", 0, full, mr as i64, LoopKind::Serial);
            let jb = cx.b.let_("jb", grow.clone() + x.clone() * g.sw as i64);
            let jo = cx.b.let_("jo", orow.clone() + x);
            self.micro_channels(cx, blk, &jb, &jo, mr, None)?;
            cx.b.end_for();
        }
        if full < g.ow {
            // The rest of the row: a block of exactly that many positions
            // (no sums computed for nothing, nothing read past the row).
            let jb = cx.b.let_("jb", grow + (full * g.sw) as i64);
            let jo = cx.b.let_("jo", orow + full as i64);
            self.micro_channels(cx, blk, &jb, &jo, g.ow - full, None)?;
        }
        cx.b.end_for();
        Ok(())
    }

    /// Positions `jo..jo+mr` of the tile (`jb..` in `B`'s columns; `valid`
    /// of them in a partial block) × the channels of `blk`: accumulators of
    /// channels, transposed in registers, stored a channel (a vector of
    /// positions) at a time. With blocks of `K`, the sums start from and
    /// (but in the last block) go back to the sums scratch.
    fn micro_channels(
        &self,
        cx: &mut NodeCx,
        blk: &ChannelBlock,
        jb: &Expr,
        jo: &Expr,
        mr: usize,
        valid: Option<Expr>,
    ) -> Result<(), Unsupported> {
        let p = self.plan;
        let (l, nb) = (p.lanes, p.nb);
        let nv = blk.channels.div_ceil(l as usize);
        let vty = Ty::vector(self.dt, l);
        let mut acc = Vec::new();
        for r in 0..mr {
            for c in 0..nv {
                acc.push(cx.b.decl(&format!("c{r}{c}"), Expr::constant(0.0, vty)));
            }
        }
        // Sum `(r, c)` of the block in the sums scratch.
        let kept = |r: usize, c: usize| {
            let (buf, base) = self.sums.clone().expect("sums scratch with blocks of K");
            let at = base + (jo.clone() + r as i64) * nb as i64 + (c * l as usize) as i64;
            (buf, at)
        };
        let wp = match &blk.kb {
            Some(kb) => {
                cx.b.begin_if(kb.clone().ge(Expr::idx(1)));
                for r in 0..mr {
                    for c in 0..nv {
                        let (buf, at) = kept(r, c);
                        cx.b.assign(acc[r * nv + c], Expr::load_vec(buf, at, l, 1, None));
                    }
                }
                cx.b.end_if();
                cx.b.decl("wp", blk.wblk.clone() + kb.clone() * (p.kc * nb) as i64)
            }
            None => cx.b.decl("wp", blk.wblk.clone()),
        };
        // A partial block reads past its last position (and never stores
        // those sums): a packed panel is zero there, a padded input holds
        // rows for it, and the input itself is only read in whole blocks.
        // Positions `sw` apart in `B` (the padded input, strided).
        let bstep = match self.grid {
            Some((g, None)) => g.sw as i64,
            _ => 1,
        };
        self.k_loop(cx, jb, blk.kb.as_ref(), wp, nb, &mut |cx, brow| {
            let wv: Vec<Expr> = (0..nv)
                .map(|c| {
                    let v = Expr::load_vec(
                        self.wpack,
                        Expr::Var(wp) + (c * l as usize) as i64,
                        l,
                        1,
                        None,
                    );
                    cx.b.let_(&format!("w{c}"), v)
                })
                .collect();
            for r in 0..mr {
                let a = cx.b.let_(
                    &format!("x{r}"),
                    Expr::load(self.b.buf, brow.clone() + r as i64 * bstep).splat(l),
                );
                for c in 0..nv {
                    let v = acc[r * nv + c];
                    cx.b.assign(v, Expr::mul_add(a.clone(), wv[c].clone(), Expr::Var(v)));
                }
            }
        });
        if let Some(kb) = &blk.kb {
            // Not the last block: the sums wait in scratch.
            let last = Expr::idx(p.kblocks as i64 - 1);
            cx.b.begin_if(kb.clone().lt(last.clone()));
            for r in 0..mr {
                for c in 0..nv {
                    let (buf, at) = kept(r, c);
                    cx.b.store_vec(buf, at, Expr::Var(acc[r * nv + c]), 1, None);
                }
            }
            cx.b.end_if();
            cx.b.begin_if(kb.clone().ge(last));
        }
        self.finish_channels(cx, blk, &acc, jb, jo, mr, valid)?;
        if blk.kb.is_some() {
            cx.b.end_if();
        }
        Ok(())
    }

    /// The sums `acc` of [`Task::micro_channels`] transposed in registers
    /// (position r's channels, vector c, are row r of an 8 × `l` block;
    /// channel q of it comes out as a vector of the block's positions),
    /// then with the bias and the epilogue stored to the output.
    #[allow(clippy::too_many_arguments)]
    fn finish_channels(
        &self,
        cx: &mut NodeCx,
        blk: &ChannelBlock,
        acc: &[saturn_ir::kernel::VarId],
        jb: &Expr,
        jo: &Expr,
        mr: usize,
        valid: Option<Expr>,
    ) -> Result<(), Unsupported> {
        let p = self.plan;
        let l = p.lanes;
        let (m, channels) = (&blk.m, blk.channels);
        let nv = channels.div_ceil(l as usize);
        let s = self.s;
        let view = [s.n, s.m, s.out_plane];
        for c in 0..nv {
            // Rows past the block repeat its last one (their lanes are
            // never stored). Zeros would make some shuffles zero
            // extensions, which LLVM 22 fails to select on AVX-512 in
            // some contexts ("Cannot select: zero_extend_vector_inreg").
            let rows: Vec<Expr> = (0..TRANSPOSE_ROWS)
                .map(|r| Expr::Var(acc[r.min(mr - 1) * nv + c]))
                .collect();
            let cols = transpose_rows(cx, rows, l as usize);
            let per = l as usize / TRANSPOSE_ROWS;
            // Whole vectors of 8 lanes, the first `mr` (or `valid`) stored:
            // one masked store, where 7 lanes would be stored in pieces.
            let width = TRANSPOSE_ROWS as u16;
            let valid = match valid.clone() {
                None if mr < TRANSPOSE_ROWS => Some(Expr::idx(mr as i64)),
                v => v,
            };
            for q in 0..(l as usize).min(channels - c * l as usize) {
                let t = &cols[q / per];
                let first = (q % per * TRANSPOSE_ROWS) as u16;
                let mut v = Expr::shuffle(t.clone(), t.clone(), (first..first + width).collect());
                let mm = m.clone() + (c * l as usize + q) as i64;
                if let Some((g, Some(ygrid))) = self.grid {
                    // Raw sums to the output grid; bias and epilogue come later.
                    let at = (self.n.clone() * s.m as i64 + mm) * g.lg as i64
                        + self.l0.clone()
                        + jb.clone();
                    cx.b.store_vec(ygrid, at, v, 1, valid.clone());
                    continue;
                }
                if let Some(b) = self.bias {
                    v = Expr::bin(BinOp::Add, v, Expr::load(b, mm.clone()).splat(width));
                }
                let idx = [self.n.clone(), mm, self.l0.clone() + jo.clone()];
                cx.store_out_view(&view, &idx, v, valid.clone())?;
            }
        }
        Ok(())
    }
}

/// Rows of the register transpose of channels-in-lanes blocks: the
/// positions of a block (at most this many), padded by repeating its last
/// row.
const TRANSPOSE_ROWS: usize = 8;

/// Transposes `TRANSPOSE_ROWS` rows of `l` lanes (a multiple of the row
/// count) in three rounds of two-vector shuffles, each interleaving pairs
/// of vectors in blocks of 1, 2, then 4 lanes. Returns `TRANSPOSE_ROWS`
/// vectors: vector `k` holds lanes `k·l/8 ..` of every row, lane `j` of
/// the rows as lanes `8·j ..` of the vector.
fn transpose_rows(cx: &mut NodeCx, rows: Vec<Expr>, l: usize) -> Vec<Expr> {
    debug_assert!(rows.len() == TRANSPOSE_ROWS && l.is_multiple_of(TRANSPOSE_ROWS));
    // (first row, first lane, vector): the vector holds `width` lanes of
    // the rows `row..row + bs`, a lane's rows side by side.
    let mut items: Vec<(usize, usize, Expr)> = rows
        .into_iter()
        .enumerate()
        .map(|(r, e)| (r, 0, e))
        .collect();
    let (mut bs, mut width) = (1, l);
    while bs < TRANSPOSE_ROWS {
        items.sort_by_key(|&(r, q, _)| (q, r));
        let mut next = Vec::with_capacity(items.len());
        for pair in items.chunks(2) {
            let [(r, q, a), (_, _, b)] = pair else {
                unreachable!("an even number of vectors");
            };
            let half = |js: std::ops::Range<usize>| -> Vec<u16> {
                js.flat_map(|j| (j * bs..(j + 1) * bs).chain(l + j * bs..l + (j + 1) * bs))
                    .map(|i| i as u16)
                    .collect()
            };
            let lo = Expr::shuffle(a.clone(), b.clone(), half(0..width / 2));
            let hi = Expr::shuffle(a.clone(), b.clone(), half(width / 2..width));
            next.push((*r, *q, cx.b.let_("tlo", lo)));
            next.push((*r, *q + width / 2, cx.b.let_("thi", hi)));
        }
        items = next;
        bs *= 2;
        width /= 2;
    }
    items.sort_by_key(|&(_, q, _)| q);
    items.into_iter().map(|(_, _, e)| e).collect()
}
