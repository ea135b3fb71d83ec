//! Running ONNX test cases and checking them against strict expectation
//! lists.
//!
//! An expectation file has one line per case, `suite/case pass` or
//! `suite/case fail  # why`. The check fails when a case listed as passing
//! fails, when a case listed as failing passes (move it to `pass`), and
//! when a case is missing from the list or listed but gone from the data.
//! `SATURN_BLESS=1` rewrites the file from the results instead.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use saturn_ir::{Graph, Tensor};

use crate::{ATOL, RTOL, SUITES, compare, onnx_tests_dir};

/// One test case folder.
#[derive(Clone, Debug)]
pub struct Case {
    /// `suite/name`.
    pub id: String,
    pub dir: PathBuf,
}

/// Every case of every suite, sorted by id.
pub fn all_cases() -> Vec<Case> {
    let root = onnx_tests_dir();
    let mut out = Vec::new();
    for suite in SUITES {
        let Ok(entries) = std::fs::read_dir(root.join(suite)) else {
            continue;
        };
        for e in entries.flatten() {
            let dir = e.path();
            if dir.join("model.onnx").is_file() {
                out.push(Case {
                    id: format!("{suite}/{}", e.file_name().to_string_lossy()),
                    dir,
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The numbered `test_data_set_*` folders of a case.
pub fn data_sets(dir: &Path) -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    sets
}

/// `prefix_0.pb`, `prefix_1.pb`, … in a data set folder.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

/// Turns an imported graph into the one to run (e.g. optimizes it).
pub type Prepare<'a> = dyn Fn(Graph) -> Result<Graph, String> + Sync + 'a;
/// Runs a graph on inputs.
pub type Runner<'a> = dyn Fn(&Graph, Vec<Tensor>) -> Result<Vec<Tensor>, String> + Sync + 'a;

/// Runs one case: imports the model with `prepare` (which may transform
/// it), runs every data set with `run` and compares. `Err` says why not.
pub fn run_case(case: &Case, prepare: &Prepare<'_>, run: &Runner<'_>) -> Result<(), String> {
    let g =
        saturn::model::load(&case.dir.join("model.onnx")).map_err(|e| format!("import: {e}"))?;
    let g = prepare(g)?;
    let sets = data_sets(&case.dir);
    if sets.is_empty() {
        return Err("no test data".into());
    }
    for set in sets {
        let read = |p: &PathBuf| {
            saturn::onnx::tensor::read_file(p).map_err(|e| format!("reading data: {e}"))
        };
        let inputs = numbered(&set, "input")
            .iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        let expected = numbered(&set, "output")
            .iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        let actual = run(&g, inputs)?;
        if actual.len() != expected.len() {
            return Err(format!(
                "{} outputs instead of {}",
                actual.len(),
                expected.len()
            ));
        }
        for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
            compare(e, a, RTOL, ATOL).map_err(|m| format!("output {i}: {m}"))?;
        }
    }
    Ok(())
}

/// Results of a suite run, by case id: `None` passed, `Some(reason)` failed.
pub type Results = BTreeMap<String, Option<String>>;

/// Runs every case on all cores.
pub fn run_all(cases: &[Case], prepare: &Prepare<'_>, run: &Runner<'_>) -> Results {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Results::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let r = catch_unwind(AssertUnwindSafe(|| run_case(case, prepare, run)))
                        .unwrap_or_else(|p| {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(format!("PANIC: {msg}"))
                        });
                    results.lock().unwrap().insert(case.id.clone(), r.err());
                }
            });
        }
    });
    results.into_inner().unwrap()
}

fn one_line(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// Compares results with the expectation file; rewrites it instead when
/// `SATURN_BLESS` is set and `may_bless` (the run that owns the file).
/// Returns the problems found.
pub fn check_expectations(path: &Path, results: &Results, may_bless: bool) -> Vec<String> {
    let passed = results.values().filter(|r| r.is_none()).count();
    let mut per_suite: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, r) in results {
        let suite = id.split('/').next().unwrap_or("");
        let e = per_suite.entry(suite).or_default();
        e.1 += 1;
        if r.is_none() {
            e.0 += 1;
        }
    }
    println!(
        "conformance ({}): {passed} of {} cases pass",
        path.display(),
        results.len()
    );
    for (suite, (p, n)) in &per_suite {
        println!("  {suite:20} {p:5} / {n}");
    }
    let panics: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.as_deref().is_some_and(|m| m.starts_with("PANIC")))
        .map(|(id, _)| id)
        .collect();

    if may_bless && std::env::var_os("SATURN_BLESS").is_some() {
        let mut text = String::from(
            "# Strict conformance expectations: one case per line, `pass` or `fail  # reason`.\n\
             # Regenerate with SATURN_BLESS=1 after checking that the changes are improvements.\n",
        );
        for (id, r) in results {
            match r {
                None => text.push_str(&format!("{id} pass\n")),
                Some(why) => text.push_str(&format!("{id} fail  # {}\n", one_line(why))),
            }
        }
        std::fs::write(path, text).expect("writing expectations");
        println!("wrote {}", path.display());
        return panics.iter().map(|id| format!("{id}: panicked")).collect();
    }

    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut expected: BTreeMap<String, bool> = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(id), Some(status)) = (parts.next(), parts.next()) else {
            continue;
        };
        expected.insert(id.to_string(), status == "pass");
    }
    let mut problems = Vec::new();
    for (id, r) in results {
        match (expected.get(id), r) {
            (Some(true), Some(why)) => {
                problems.push(format!("{id}: expected to pass, failed: {}", one_line(why)))
            }
            (Some(false), None) => {
                problems.push(format!("{id}: passes now; mark it `pass` in the list"))
            }
            (None, _) => problems.push(format!("{id}: not in the list")),
            _ => {}
        }
    }
    for id in expected.keys() {
        if !results.contains_key(id) {
            problems.push(format!("{id}: listed but not in the test data"));
        }
    }
    for id in panics {
        problems.push(format!("{id}: panicked"));
    }
    problems
}

/// Prints every result of a filtered run.
pub fn report_filtered(results: &Results) {
    for (id, r) in results {
        match r {
            None => println!("PASS {id}"),
            Some(why) => println!("FAIL {id}: {}", one_line(why)),
        }
    }
    let passed = results.values().filter(|r| r.is_none()).count();
    println!("{passed} of {} selected cases pass", results.len());
}

/// Runs the suites on the reference interpreter after `prepare`, and
/// checks the results against `expectations/<list>` (rewritten with
/// `SATURN_BLESS=1` when `may_bless`). With `SATURN_CASES=pattern`, runs
/// only the matching cases and prints each result instead.
pub fn check_suites(list: &str, prepare: &Prepare<'_>, may_bless: bool) {
    check_suites_with(
        list,
        prepare,
        &|g, inputs| saturn_ir::interp::run(g, inputs).map_err(|e| e.to_string()),
        may_bless,
    )
}

/// [`check_suites`] with another way to run a graph (a backend).
pub fn check_suites_with(list: &str, prepare: &Prepare<'_>, run: &Runner<'_>, may_bless: bool) {
    let cases = all_cases();
    assert!(
        cases.len() > 2000,
        "expected the full ONNX test data, found {} cases",
        cases.len()
    );
    let filter = std::env::var("SATURN_CASES").ok();
    let cases: Vec<_> = match &filter {
        Some(f) => cases
            .into_iter()
            .filter(|c| c.id.contains(f.as_str()))
            .collect(),
        None => cases,
    };
    let results = run_all(&cases, prepare, run);
    if filter.is_some() {
        report_filtered(&results);
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("expectations")
        .join(list);
    let problems = check_expectations(&path, &results, may_bless);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Runs `g` compiled for the CPU by `codegen` for `target`, specialised
/// (and optimized again) to the inputs' shapes when its own are symbolic.
/// A node left to the interpreter fallback fails the case with the op
/// named, so a list measures the code generator alone.
pub fn run_native(
    g: &Graph,
    inputs: Vec<Tensor>,
    target: &saturn_ir::target::Target,
    codegen: &dyn saturn_backends::native::Codegen,
) -> Result<Vec<Tensor>, String> {
    let static_shapes = g
        .inputs()
        .iter()
        .all(|v| g.ty(*v).shape.as_known().is_some());
    let g = if static_shapes {
        g.clone()
    } else {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let s =
            saturn_ir::builder::specialize(g, &shapes).map_err(|e| format!("specialize: {e}"))?;
        saturn_passes::eqsat::optimize(&s, target)
            .map(|(g, _)| g)
            .unwrap_or(s)
    };
    let c =
        saturn_backends::cpu::compile_with(&g, target, 1, codegen).map_err(|e| e.to_string())?;
    if let Some((n, op, why)) = c.lowered.fallbacks(&c.graph).first() {
        return Err(format!("fallback: `{n}` ({op}): {why}"));
    }
    c.session.run(&inputs).map_err(|e| e.to_string())
}
