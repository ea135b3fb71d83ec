//! print → parse → print is the identity on every model of the ONNX test
//! data that imports, and the parsed graph verifies.

use std::sync::Mutex;

use saturn_ir::text::{parse, print};
use saturn_tests::conformance::all_cases;

#[test]
fn text_round_trip_of_every_imported_model() {
    let cases = all_cases();
    let imported = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
        {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let Ok(g) = saturn::model::load(&case.dir.join("model.onnx")) else {
                        continue;
                    };
                    *imported.lock().unwrap() += 1;
                    let text = print(&g);
                    let problem = match parse(&text) {
                        Err(e) => Some(format!("parse error {e}")),
                        Ok(back) => {
                            let again = print(&back);
                            if again != text {
                                let line =
                                    text.lines().zip(again.lines()).position(|(a, b)| a != b);
                                Some(format!(
                                    "prints differently (first difference at line {line:?})"
                                ))
                            } else {
                                saturn_ir::verify::verify(&back)
                                    .err()
                                    .map(|e| format!("does not verify: {e}"))
                            }
                        }
                    };
                    if let Some(p) = problem {
                        failures.lock().unwrap().push(format!("{}: {p}", case.id));
                    }
                }
            });
        }
    });
    let imported = imported.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    println!(
        "round trip: {} of {imported} imported models",
        imported - failures.len()
    );
    assert!(imported > 1000, "only {imported} models imported");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
