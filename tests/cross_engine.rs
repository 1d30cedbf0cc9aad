//! Every conformance program on wasmtime and on wasmer: the same results, the same guest
//! output, the same linker layout (memory bases, table slots, regions), step for step.
//! Cases that are an expected failure on either engine are compared only where both ran.

use dylink_conformance::{Adapter, catalog, expected_failures, run_case};

#[test]
fn wasmtime_and_wasmer_are_observably_identical() {
    let wasmtime = dylink_wasmtime::conformance::Wasmtime::new();
    let wasmer = dylink_wasmer::conformance::Wasmer;
    let engines: [&dyn Adapter; 2] = [&wasmtime, &wasmer];
    let skip: Vec<_> = engines
        .iter()
        .map(|e| expected_failures(e.engine()))
        .collect();
    let mut compared = 0;
    let mut differences = Vec::new();
    for case in catalog() {
        if skip.iter().any(|s| s.contains_key(&case.name)) {
            continue;
        }
        let a =
            run_case(engines[0], &case).unwrap_or_else(|e| panic!("wasmtime/{}: {e}", case.name));
        let b = run_case(engines[1], &case).unwrap_or_else(|e| panic!("wasmer/{}: {e}", case.name));
        if a != b {
            let first = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            differences.push(format!(
                "{}: first difference at step {first}:\n  wasmtime: {:?}\n  wasmer:   {:?}",
                case.name,
                a.get(first),
                b.get(first)
            ));
        }
        compared += 1;
    }
    assert!(compared >= 40, "only {compared} cases compared");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
