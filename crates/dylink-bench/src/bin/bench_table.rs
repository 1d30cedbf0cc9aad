//! Print BENCHMARKS.md's engine table from `target/bench/results.json`
//! (written by `cargo bench -p dylink-bench --bench engines`).

use serde_json::Value;

fn main() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!(
            "cannot read {}: {e}; run `cargo bench -p dylink-bench --bench engines` first",
            path.display()
        );
        std::process::exit(1);
    });
    let r: Value = serde_json::from_str(&text).expect("results.json is JSON");
    let rows: [(&str, &str, &str); 32] = [
        (
            "link_overhead_100",
            "link main + 100 libraries, dylink ÷ wired by hand",
            "≤ 1.15×",
        ),
        ("link_ms_100", "… dylink, ms", ""),
        ("link_by_hand_ms_100", "… wired by hand, ms", ""),
        (
            "link_afresh_overhead_100",
            "… planned afresh (no stored startup plan) ÷ wired by hand",
            "",
        ),
        ("link_afresh_ms_100", "… dylink planning afresh, ms", ""),
        (
            "lazy_call_ratio",
            "call through a resolved lazy binding ÷ direct (median over loads of each load's fastest runs)",
            "≤ 1.05×",
        ),
        (
            "lazy_call_ratio_fastest",
            "… each side's fastest run over all loads",
            "",
        ),
        ("call_direct_best_ns", "… direct call, fastest run, ns", ""),
        (
            "call_lazy_best_ns",
            "… lazy-bound call, fastest run, ns",
            "",
        ),
        (
            "call_pointer_best_ns",
            "… call through a function pointer, fastest run, ns",
            "",
        ),
        (
            "lazy_call_ratio_median",
            "… median over seven loads of each load's median ratio",
            "",
        ),
        (
            "lazy_call_ratio_median_min",
            "… lowest load (an indirect call's cost moves while the machine is busy)",
            "",
        ),
        ("lazy_call_ratio_median_max", "… highest load", ""),
        (
            "lazy_pointer_ratio",
            "lazy-bound call ÷ call through a function pointer (median over loads)",
            "",
        ),
        ("call_direct_ns", "… direct call, median, ns", ""),
        ("call_lazy_ns", "… lazy-bound call, median, ns", ""),
        (
            "call_pointer_ns",
            "… call through a function pointer, median, ns",
            "",
        ),
        ("dlsym_ns", "dlsym of a resolved symbol, ns", "≤ 100"),
        (
            "dlopen_loaded_ns",
            "dlopen of a loaded library, ns",
            "≤ 1,000",
        ),
        (
            "dlopen_new_us",
            "dlopen of a fresh 50-symbol library, µs",
            "",
        ),
        (
            "instantiate_by_hand_us",
            "… instantiating it by hand, µs",
            "",
        ),
        ("dlclose_us", "dlclose of that library, µs", ""),
        (
            "dlopen_new_us_400",
            "dlopen of it with 400 libraries loaded, µs",
            "",
        ),
        (
            "dlclose_us_400",
            "dlclose of it with 400 libraries loaded, µs",
            "",
        ),
        (
            "thread_spawn_ratio",
            "new thread's group over 50 libraries ÷ instantiating them by hand",
            "≤ 1.2×",
        ),
        ("thread_group_us_50", "… new group, µs", ""),
        ("thread_by_hand_us_50", "… by hand in a new store, µs", ""),
        (
            "dlopen_replicated_8_us",
            "dlopen + catch-up of 8 live groups, µs",
            "",
        ),
        (
            "safe_point_call_ratio",
            "call through a function pointer, threaded (checked) ÷ not",
            "",
        ),
        ("call_pointer_plain_ns", "… not threaded, ns", ""),
        (
            "call_pointer_shared_ns",
            "… threaded, with the safe-point check, ns",
            "",
        ),
        (
            "call_lazy_shared_ns",
            "lazy-bound call, threaded (one call_indirect of its slot), ns",
            "",
        ),
    ];
    println!("| metric | what | wasmtime | wasmer | target |");
    println!("|---|---|---|---|---|");
    for (key, what, target) in rows {
        let cell = |engine: &str| {
            r[engine][key]
                .as_f64()
                .map_or("—".to_string(), |v| format!("{v:.2}"))
        };
        println!(
            "| `{key}` | {what} | {} | {} | {target} |",
            cell("wasmtime"),
            cell("wasmer")
        );
    }
    println!();
    println!("| core metric | value | on one thread | target |");
    println!("|---|---|---|---|");
    let core = |key: &str| {
        r["core"][key]
            .as_f64()
            .map_or("—".to_string(), |v| format!("{v:.1}"))
    };
    for (key, target) in [
        ("plan_ms_10", ""),
        ("plan_ms_100", ""),
        ("plan_ms_1000", "< 50"),
        ("core_bytes_per_symbol", ""),
    ] {
        let one = if key.starts_with("plan_ms") {
            core(&format!("{key}_one_thread"))
        } else {
            String::new()
        };
        println!("| `{key}` | {} | {one} | {target} |", core(key));
    }
}
