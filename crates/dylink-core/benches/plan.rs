//! Planning cost without any engine: `cargo bench -p dylink-core --bench plan`.
//!
//! Synthetic programs of N side modules, each exporting 50 functions and 50 data symbols and
//! importing 50 functions and 50 data symbols (half through `GOT.func`) from its
//! neighbours, so every `GOT.*` entry is resolved. Each N runs twice: calling both ways
//! round a ring (half the imports from the next module, half from the previous one), a
//! cycle no instantiation order breaks, so about half the function imports get a trampoline
//! (the worst case), and importing everything from the previous one, as when dependencies
//! load first (one import closes the ring; the rest bind directly). Prints the median of
//! several runs per N, and the cost per symbol.

// The counting allocator below is the only unsafe code in the project: a bench-only measurement.
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use dylink_core::*;

/// Counts allocations and live bytes while [`COUNTING`] is on, so the bench can report them
/// per symbol. The timed runs have it off: its atomic updates on every allocation were
/// about 4% of a plan's time.
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
// Signed: blocks allocated before a counted run may be freed during it.
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);
fn grew(by: usize) {
    let now = LIVE.fetch_add(by as i64, Relaxed) + by as i64;
    PEAK.fetch_max(now, Relaxed);
}
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
            grew(l.size());
        }
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(l.size() as i64, Relaxed);
        }
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
            LIVE.fetch_sub(l.size() as i64, Relaxed);
            grew(n);
        }
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

const EXPORTS: usize = 50; // functions; as many data symbols again

/// Which neighbour a module imports from.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The next one for even-numbered symbols, the previous one for odd: calls go both ways
    /// round the ring, so whatever the order, about half the function imports are bound
    /// before their definer is instantiated, to trampolines (the worst case).
    DefinerLater,
    /// The previous one, as when a library's dependencies load first: imports bind directly.
    DefinerFirst,
}

fn side_module(i: usize, n: usize, order: Order) -> Arc<[u8]> {
    let (next, prev) = ((i + 1) % n, (i + n - 1) % n);
    let from = |k: usize| match order {
        Order::DefinerLater if k.is_multiple_of(2) => next,
        _ => prev,
    };
    let mut w = String::new();
    write!(
        w,
        "(module (@dylink.0 (mem-info (memory {} 2) (table {} 0)))",
        EXPORTS * 4,
        2
    )
    .unwrap();
    w.push_str(r#"(import "env" "memory" (memory 1)) (import "env" "__indirect_function_table" (table 0 funcref))"#);
    w.push_str(
        r#"(import "env" "__memory_base" (global i32)) (import "env" "__table_base" (global i32))"#,
    );
    w.push_str(r#"(import "env" "__stack_pointer" (global (mut i32)))"#);
    for k in 0..EXPORTS {
        write!(
            w,
            r#"(import "env" "f{j}_{k}" (func (param i32) (result i32)))"#,
            j = from(k)
        )
        .unwrap();
    }
    for k in 0..EXPORTS {
        if k % 2 == 0 {
            write!(
                w,
                r#"(import "GOT.mem" "d{j}_{k}" (global (mut i32)))"#,
                j = from(k)
            )
            .unwrap();
        } else {
            write!(
                w,
                r#"(import "GOT.func" "f{j}_{k}" (global (mut i32)))"#,
                j = from(k)
            )
            .unwrap();
        }
    }
    for k in 0..EXPORTS {
        write!(
            w,
            r#"(func (export "f{i}_{k}") (param i32) (result i32) local.get 0)"#
        )
        .unwrap();
        write!(
            w,
            r#"(global (export "d{i}_{k}") i32 (i32.const {}))"#,
            k * 4
        )
        .unwrap();
    }
    w.push_str(
        r#"(func (export "__wasm_apply_data_relocs")) (func (export "__wasm_call_ctors")))"#,
    );
    wat::parse_str(&w).unwrap().into()
}

fn program(n: usize, order: Order) -> (Arc<[u8]>, MemorySource) {
    let mut src = MemorySource::new();
    let mut needed = String::new();
    for i in 0..n {
        src.insert(&format!("/lib/lib{i}.so"), side_module(i, n, order));
        write!(needed, " \"lib{i}.so\"").unwrap();
    }
    let main = format!(
        r#"(module (@dylink.0 (mem-info (memory 16 2)) (needed {needed}))
           (import "env" "memory" (memory 1)) (import "env" "__indirect_function_table" (table 0 funcref))
           (import "env" "__memory_base" (global i32)) (func (export "_start")))"#
    );
    (wat::parse_str(&main).unwrap().into(), src)
}

/// The process's minor page faults so far (Linux; `None` elsewhere): a plan's fresh memory
/// is faulted in page by page, a large share of planning a thousand modules here.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 10 of `man 5 proc`, counted after the command name's closing parenthesis.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(7)?.parse().ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::var_os("PHASES").is_some() {
        phases();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("DYLINK_BENCH_QUICK").is_some();
    let only: Option<usize> = std::env::var("DYLINK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok());
    let sizes: Vec<usize> = match only {
        Some(n) => vec![n],
        None if quick => vec![10],
        None => vec![10, 100, 1000],
    };
    let runs = std::env::var("DYLINK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 7 });
    println!(
        "plan_ms: startup plan (parse + search + layout + resolve) of N side modules, {} symbols each",
        EXPORTS * 4
    );
    // DYLINK_BENCH_ORDER=later or =first runs one order only (for profiling).
    let orders: Vec<Order> = match std::env::var("DYLINK_BENCH_ORDER").as_deref() {
        Ok("later") => vec![Order::DefinerLater],
        Ok("first") => vec![Order::DefinerFirst],
        _ => vec![Order::DefinerLater, Order::DefinerFirst],
    };
    // Each case runs with modules read on the planning thread, then on the machine's threads
    // as the adapters configure (`Config::workers`); DYLINK_BENCH_WORKERS=0 or =1 runs one.
    let threads = dylink_fs::Threads::available();
    let workers: Vec<Option<Workers>> = match std::env::var("DYLINK_BENCH_WORKERS").as_deref() {
        Ok("0") => vec![None],
        Ok("1") => vec![Some(threads.workers())],
        _ => vec![None, Some(threads.workers())],
    };
    let cases = sizes.iter().flat_map(|&n| {
        let workers = &workers;
        orders
            .iter()
            .flat_map(move |&o| workers.iter().map(move |w| (n, o, w.clone())))
    });
    for (n, order, workers) in cases {
        let (main, src) = program(n, order);
        let config = Config {
            workers: workers.clone(),
            ..Config::default()
        };
        let mut times = Vec::new();
        let mut ops = 0;
        let allocs;
        let peak;
        let mut faults = Vec::new();
        for _ in 0..runs {
            let f0 = minor_faults();
            let t = Instant::now();
            let linker = Linker::new(config.clone());
            let plan = linker
                .plan_startup("/app/main.wasm", main.clone(), &src, &NoHost)
                .expect("synthetic program links");
            times.push(t.elapsed());
            if let (Some(a), Some(b)) = (f0, minor_faults()) {
                faults.push(b - a);
            }
            ops = plan.ops.len();
        }
        // One more run, counted and not timed: allocations and the peak of live bytes.
        {
            let a0 = ALLOCS.load(Relaxed);
            let live0 = LIVE.load(Relaxed);
            PEAK.store(live0, Relaxed);
            COUNTING.store(true, Relaxed);
            let linker = Linker::new(config.clone());
            let plan = linker
                .plan_startup("/app/main.wasm", main.clone(), &src, &NoHost)
                .expect("synthetic program links");
            COUNTING.store(false, Relaxed);
            allocs = ALLOCS.load(Relaxed) - a0;
            peak = (PEAK.load(Relaxed) - live0).max(0);
            drop((plan, linker));
        }
        // The first run's memory is fresh to the process; later runs may reuse what the
        // allocator kept (a program plans its startup once, so the first is what it pays).
        let first = times[0];
        let m = median(times);
        let symbols = n * EXPORTS * 4;
        let first_faults = faults.first().copied().unwrap_or(0);
        faults.sort();
        let faults = match faults.get(faults.len() / 2) {
            Some(f) => format!(
                ", {f} page faults (first run {:.1} ms, {first_faults} faults)",
                first.as_secs_f64() * 1e3
            ),
            None => String::new(),
        };
        println!(
            "  N={n:5}, {}, {}: {:8.3} ms median of {runs}{faults}, {ops} ops, {:.0} ns, {:.1} allocations and {:.0} bytes at peak per symbol",
            match order {
                Order::DefinerLater => "calls both ways (trampolines)",
                Order::DefinerFirst => "definers first (direct)     ",
            },
            match &workers {
                None => "1 thread ".to_string(),
                Some(_) => format!(
                    "{} threads",
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                ),
            },
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() * 1e9 / symbols as f64,
            allocs as f64 / symbols as f64,
            peak as f64 / symbols as f64
        );
    }
}

#[allow(dead_code)]
fn phases() {
    let (main, src) = program(1000, Order::DefinerLater);
    let bytes: Vec<_> = (0..1000)
        .map(|i| src.read(&format!("/lib/lib{i}.so")).unwrap().unwrap())
        .collect();
    for _ in 0..10 {
        let t = Instant::now();
        let mut n = 0;
        for b in &bytes {
            n += ModuleInfo::parse(b).unwrap().exports.len();
        }
        println!("parse only: {:?} ({n})", t.elapsed());
    }
    let live0 = LIVE.load(Relaxed);
    COUNTING.store(true, Relaxed);
    let infos: Vec<_> = bytes
        .iter()
        .map(|b| ModuleInfo::parse(b).unwrap())
        .collect();
    COUNTING.store(false, Relaxed);
    println!(
        "ModuleInfo: {} bytes per module ({} imports, {} exports)",
        (LIVE.load(Relaxed) - live0) / infos.len() as i64,
        infos[0].imports.len(),
        infos[0].exports.len()
    );
    let _ = main;
}
