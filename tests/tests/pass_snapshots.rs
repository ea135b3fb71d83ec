//! Pass snapshot tests: every `passes/*.tir` file names its pipeline and
//! target in a header (`# pipeline: eqsat`, `# target: x86-64-avx512`,
//! and `# ldexp: yes` where the code generator has a scale instruction);
//! the output graph, the rules that fired and the kernel choices with the
//! estimates behind them are snapshot with insta beside this file. A
//! pipeline ending in `lower` snapshots the Kernel IR the graph lowers to
//! instead (its schedule knobs included), after checking that every node
//! became a kernel and that each kernel verifies and prints back as parsed.
//!
//! Update after a deliberate change with `INSTA_UPDATE=always cargo test
//! -p saturn-tests --test pass_snapshots` (or `cargo insta review`), and
//! read the diff.

use std::fmt::Write;

use saturn_ir::target::Target;
use saturn_ir::text::{parse, print};
use saturn_passes::{Limits, PassContext, run_pipeline};

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix('#')?
                .trim()
                .strip_prefix(key)?
                .strip_prefix(':')
                .map(str::trim)
        })
}

#[test]
fn pass_snapshots() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/passes"),
        "*.tir",
        |path| {
            let text = std::fs::read_to_string(path).unwrap();
            let pipeline: Vec<&str> = header(&text, "pipeline")
                .unwrap_or_else(|| panic!("{}: no `# pipeline:` header", path.display()))
                .split(',')
                .map(str::trim)
                .collect();
            let mut target = header(&text, "target")
                .and_then(Target::named)
                .unwrap_or_else(|| panic!("{}: no known `# target:` header", path.display()));
            // `# ldexp: yes`: the code generator has a scale instruction.
            target.has_ldexp = header(&text, "ldexp") == Some("yes");
            let lower = pipeline.last() == Some(&"lower");
            let pipeline: Vec<&str> = pipeline.into_iter().filter(|p| *p != "lower").collect();
            let g = parse(&text).unwrap_or_else(|e| panic!("{}:{e}", path.display()));
            saturn_ir::verify::verify(&g).unwrap();
            let cx = PassContext {
                target,
                limits: Limits::default(),
            };
            let mut notes = String::new();
            let out = run_pipeline(g, &pipeline, &cx, &mut |pass, _, report| {
                if let Some(r) = report {
                    let _ = writeln!(notes, "# {pass}: rules fired:");
                    for (name, n) in r.fired.iter().filter(|(_, n)| **n > 0) {
                        let _ = writeln!(notes, "#   {name}");
                        let _ = n;
                    }
                    for d in &r.decisions {
                        let _ = writeln!(notes, "# {pass}: choice for {}:", d.ty);
                        for (i, (op, e)) in d.alternatives.iter().enumerate() {
                            let mark = if i == 0 { "*" } else { " " };
                            let _ = writeln!(notes, "#   {mark} {op}: {} ({})", e.cost, e.bound);
                        }
                    }
                    assert_eq!(
                        r.type_conflicts,
                        0,
                        "{}: a rule merged values of different types",
                        path.display()
                    );
                }
            })
            .unwrap();
            saturn_ir::verify::verify(&out).unwrap();
            if lower {
                insta::assert_snapshot!(format!("{notes}{}", kernels(&out, &cx.target)));
            } else {
                insta::assert_snapshot!(format!("{notes}{}", print(&out)));
            }
        }
    );
}

/// The graph's kernels as text, in execution order.
fn kernels(g: &saturn_ir::Graph, target: &Target) -> String {
    use saturn_ir::kernel::text::{parse_kernel, print_kernel};
    let g = saturn_passes::lower::half::widen_half(g);
    let lowered = saturn_passes::lower::lower(&g, target, &Default::default());
    let fb = lowered.fallbacks(&g);
    assert!(fb.is_empty(), "nodes left to the interpreter: {fb:?}");
    let mut out = String::new();
    for k in &lowered.kernels {
        saturn_ir::kernel::verify::verify_kernel(k).unwrap_or_else(|e| panic!("{e}"));
        let text = print_kernel(k);
        let back = parse_kernel(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(print_kernel(&back), text);
        out.push_str(&text);
        out.push('\n');
    }
    out
}
