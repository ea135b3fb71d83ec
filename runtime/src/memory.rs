//! Memory planning: every computed buffer gets an offset in one arena.
//!
//! A buffer lives from the step that first touches it to the step that
//! last reads it (outputs and inputs to the end of the run). Buffers are
//! placed largest first at the lowest offset where no buffer with an
//! overlapping lifetime sits (greedy by size, as in TFLite's arena
//! planner), aligned to 64 bytes. A view ([`SlotKind::View`]) is not
//! placed: it sits inside its base, which lives as long as any view of it.

use crate::{Plan, PlanStep, SlotKind};

pub const ALIGN: usize = 64;

/// Offsets of the planned slots and the arena size.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// Arena offset per slot; `None` for constants.
    pub offsets: Vec<Option<usize>>,
    /// Bytes of the arena (the planned peak).
    pub arena: usize,
    /// Sum of all planned buffers, as if each had its own memory.
    pub unplanned: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Plans the arena of `plan`.
pub fn plan(p: &Plan) -> MemoryPlan {
    let n = p.slots.len();
    let last = p.steps.len();
    // [first, last] step of each slot.
    let mut life: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut touch = |s: usize, t: usize| {
        life[s] = Some(match life[s] {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        })
    };
    for (t, step) in p.steps.iter().enumerate() {
        match step {
            PlanStep::Kernel { args, .. } => args.iter().for_each(|&s| touch(s, t)),
            PlanStep::Fallback {
                inputs, outputs, ..
            } => {
                inputs.iter().flatten().for_each(|&s| touch(s, t));
                outputs.iter().for_each(|&s| touch(s, t));
            }
        }
    }
    for &s in &p.inputs {
        let end = life[s].map_or(0, |l| l.1);
        life[s] = Some((0, end));
    }
    for &s in &p.outputs {
        let start = life[s].map_or(last, |l| l.0);
        life[s] = Some((start, last));
    }
    // Each view's root (the placed slot it is inside) and offset in it.
    let root = |mut s: usize| {
        let mut off = 0;
        for _ in 0..n {
            match p.slots[s].kind {
                SlotKind::View { base, offset } => {
                    off += offset;
                    s = base;
                }
                _ => break,
            }
        }
        (s, off)
    };
    for s in 0..n {
        let (r, _) = root(s);
        if r != s
            && let Some((a, b)) = life[s]
        {
            life[r] = Some(life[r].map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    let mut order: Vec<usize> = (0..n)
        .filter(|&s| !matches!(p.slots[s].kind, SlotKind::Const(_) | SlotKind::View { .. }))
        .collect();
    order.sort_by_key(|&s| (std::cmp::Reverse(p.slots[s].bytes()), s));
    let mut offsets = vec![None; n];
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (off, size, first, last)
    let mut arena = 0;
    let mut unplanned = 0;
    for s in order {
        let size = align(p.slots[s].bytes().max(1));
        unplanned += size;
        let (a, b) = life[s].unwrap_or((0, last));
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, pa, pb)| pa <= b && a <= pb)
            .map(|&(o, sz, _, _)| (o, o + sz))
            .collect();
        conflicts.sort();
        let mut off = 0;
        for (lo, hi) in conflicts {
            if off + size <= lo {
                break;
            }
            off = off.max(hi);
        }
        placed.push((off, size, a, b));
        offsets[s] = Some(off);
        arena = arena.max(off + size);
    }
    for s in 0..n {
        let (r, off) = root(s);
        if r != s {
            offsets[s] = offsets[r].map(|o| o + off);
        }
    }
    MemoryPlan {
        offsets,
        arena,
        unplanned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plan, Slot};
    use saturn_ir::DType;

    fn slot(n: usize) -> Slot {
        Slot {
            name: String::new(),
            dtype: DType::F32,
            shape: vec![n],
            kind: SlotKind::Temp,
        }
    }

    /// A chain a → b → c → d: buffers two steps apart share memory, and
    /// no two buffers live at once overlap.
    #[test]
    fn chain_reuses_memory_without_overlap() {
        let mut p = Plan::default();
        for _ in 0..4 {
            p.slots.push(slot(1024));
        }
        p.slots[0].kind = SlotKind::Input(0);
        p.inputs = vec![0];
        p.outputs = vec![3];
        for i in 0..3 {
            p.steps.push(PlanStep::Kernel {
                kernel: 0,
                args: vec![i, i + 1],
            });
        }
        let m = plan(&p);
        assert_eq!(m.unplanned, 4 * 4096);
        assert!(m.arena < m.unplanned, "{m:?}");
        // Slots 1 and 3 do not live at once and may share; 0 lives to the
        // end (an input) and 3 too (an output): they must not overlap.
        let o: Vec<usize> = m.offsets.iter().map(|o| o.unwrap()).collect();
        let overlaps = |x: usize, y: usize| o[x] < o[y] + 4096 && o[y] < o[x] + 4096;
        assert!(!overlaps(0, 3) && !overlaps(1, 2) && !overlaps(2, 3) && !overlaps(0, 1));
    }

    /// a → b, a → c, [b; c] = d written in place, d → e: b and c sit in
    /// d, which lives from b's step on, so a and d do not overlap and b's
    /// memory is not reused by anything living while d does.
    #[test]
    fn views_sit_inside_their_base() {
        let mut p = Plan::default();
        for n in [1024, 256, 768, 1024, 1024] {
            p.slots.push(slot(n));
        }
        p.slots[0].kind = SlotKind::Input(0);
        p.slots[1].kind = SlotKind::View { base: 3, offset: 0 };
        p.slots[2].kind = SlotKind::View {
            base: 3,
            offset: 1024,
        };
        p.inputs = vec![0];
        p.outputs = vec![4];
        for args in [vec![0, 1], vec![0, 2], vec![3, 4]] {
            p.steps.push(PlanStep::Kernel { kernel: 0, args });
        }
        let m = plan(&p);
        let o: Vec<usize> = m.offsets.iter().map(|o| o.unwrap()).collect();
        assert_eq!((o[1], o[2]), (o[3], o[3] + 1024), "{m:?}");
        assert_eq!(m.unplanned, 3 * 4096, "views are not placed");
        let overlaps = |x: usize, y: usize| o[x] < o[y] + 4096 && o[y] < o[x] + 4096;
        // d lives from step 0 (b's) to 2; a to step 1; e from 2 to the end.
        assert!(!overlaps(0, 3) && !overlaps(3, 4), "{m:?}");
    }
}
