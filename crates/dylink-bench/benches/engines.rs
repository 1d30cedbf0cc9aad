//! Dynamic linking against the physical limit, on both engines, side by side:
//! `cargo bench -p dylink-bench --bench engines` (`DYLINK_BENCH_QUICK=1` for one short
//! iteration). Writes `target/bench/results.json`; `cargo run -p dylink-bench --bin
//! bench-table` turns it into the table in BENCHMARKS.md.
//!
//! Everything is precompiled before timing (dylink's compile cache is warmed by a first
//! load; the hand-wired baselines reuse compiled modules), so compile time is not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use dylink_bench::{Call, DATA, EXPORTS, FUNC_IMPORTS, GOT_FUNC, GOT_MEM, median, program};
use dylink_core::{Config, Handle, Linker, MemorySource, NoHost, rtld};
use serde_json::{Map, Value, json};

/// Counts live heap bytes while [`COUNTING`] is on, for the core's memory per symbol.
/// Timed rows run with it off: its atomic updates on every allocation cost a few percent
/// of a plan.
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Settings {
    iters: usize,
    /// Fresh loads of each call program for the call rows ([`PLACEMENTS`] in a full run).
    placements: usize,
    calls: i32,
    micro: usize,
}

fn time<F: FnMut()>(iters: usize, mut f: F) -> f64 {
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    median(v)
}

/// Startup libraries of the larger program the `dlclose` cost is also read in: the cost of
/// a `dlopen` + `dlclose` of one library should not grow with what else is loaded.
const DL_BIG_LIBS: usize = 400;

/// Medians of `cycles` runs of `cycle` (a `dlopen` + `dlclose` of one fresh library, each
/// timed), µs: (dlopen, dlclose).
fn open_close_us(cycles: usize, mut cycle: impl FnMut() -> (Duration, Duration)) -> (f64, f64) {
    let (mut open, mut close) = (Vec::with_capacity(cycles), Vec::with_capacity(cycles));
    for _ in 0..cycles {
        let (o, c) = cycle();
        open.push(o.as_secs_f64());
        close.push(c.as_secs_f64());
    }
    (median(open) * 1e6, median(close) * 1e6)
}

/// Nanoseconds per call of `op`: the median of [`BATCHES`] batches of `micro / BATCHES`
/// calls.
fn per_call_ns(micro: usize, mut op: impl FnMut()) -> f64 {
    let batch = micro / BATCHES;
    time(BATCHES, || {
        for _ in 0..batch {
            op();
        }
    }) * 1e9
        / batch as f64
}

/// Medians of `a` and `b` run alternately, so both see the same machine load (this machine
/// is shared: a load that comes and goes would otherwise land on one side of a ratio).
fn paired<A: FnMut(), B: FnMut()>(iters: usize, mut a: A, mut b: B) -> (f64, f64) {
    let (mut va, mut vb) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for _ in 0..iters {
        let t = Instant::now();
        a();
        va.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        b();
        vb.push(t.elapsed().as_secs_f64());
    }
    (median(va), median(vb))
}

/// How many times the call programs are loaded afresh for the call rows (a full run), so
/// that no one load's placement of code and data decides the rows.
const PLACEMENTS: usize = 7;

/// Batches the `dlsym_ns` and `dlopen_loaded_ns` loops are timed in (their rows are the
/// median batch, so one busy moment of this shared machine does not make the row).
const BATCHES: usize = 5;

/// A program loaded for the call rows: `run(n)` runs `n` calls of its loop.
type CallRun = Box<dyn FnMut(i32)>;

/// The call rows over `placements` fresh loads of each of the direct, lazy and pointer
/// programs (`load` loads one and returns its loop). Every load is kept until the end, so
/// each lands somewhere new; within a load the three run alternately, `iters` runs of
/// `calls` calls each, so a spell of load on this shared machine lands on all three.
///
/// On this machine an indirect call (a lazily bound one, or a C function pointer's) flips
/// between two costs while the program runs: about 2.0 ns, what a direct call costs, and
/// about 3.2 ns for seconds at a time, in one load with nothing reallocated, while the
/// direct loop stays at 2.2 (`lazy_pointer_ratio` stays near 1 throughout: it is the
/// machine, not the binding), so within a load the fastest run of each side is compared
/// (noise only ever adds time: the minimum estimates what the call itself costs). Where a
/// load's code lands moves each program's cost too, by up to a sixth either way (one
/// load's direct loop ran 1.46 ns against its 1.71 median), so `lazy_call_ratio` is the
/// median over loads of each load's ratio of fastest runs: each side's fastest run over
/// all loads (`lazy_call_ratio_fastest`) pits the luckiest placement of one program
/// against the luckiest of the other, and read 1.00–1.17× over four runs of one build.
/// The `_median` rows say what a run typically cost in the hour of the bench.
fn call_rows(
    placements: usize,
    iters: usize,
    calls: i32,
    mut load: impl FnMut(Call) -> CallRun,
    out: &mut Map<String, Value>,
) {
    let mut kept = Vec::with_capacity(placements);
    // Every run's time per call, and each load's medians.
    let mut all = [(); 3].map(|_| Vec::with_capacity(placements * iters));
    let mut per_load = [(); 3].map(|_| Vec::with_capacity(placements));
    let (mut to_direct, mut to_pointer) = (Vec::new(), Vec::new());
    let mut fastest_to_direct = Vec::with_capacity(placements);
    let lowest = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    for _ in 0..placements {
        let mut runs = [Call::Direct, Call::Lazy, Call::Pointer].map(&mut load);
        for run in runs.iter_mut() {
            run(1);
        }
        let mut times = [(); 3].map(|_| Vec::with_capacity(iters));
        for _ in 0..iters {
            for (run, t) in runs.iter_mut().zip(times.iter_mut()) {
                let start = Instant::now();
                run(calls);
                t.push(start.elapsed().as_secs_f64() / calls as f64);
            }
        }
        for (a, t) in all.iter_mut().zip(&times) {
            a.extend_from_slice(t);
        }
        fastest_to_direct.push(lowest(&times[1]) / lowest(&times[0]));
        let [d, l, p] = times.map(median);
        to_direct.push(l / d);
        to_pointer.push(l / p);
        for (v, m) in per_load.iter_mut().zip([d, l, p]) {
            v.push(m);
        }
        kept.push(runs);
    }
    let highest = |v: &[f64]| v.iter().copied().fold(0f64, f64::max);
    let [best_d, best_l, best_p] = all.each_ref().map(|v| lowest(v));
    let (lo, hi) = (lowest(&to_direct), highest(&to_direct));
    let [d, l, p] = per_load.map(median);
    out.insert("lazy_call_ratio".into(), json!(median(fastest_to_direct)));
    out.insert("lazy_call_ratio_fastest".into(), json!(best_l / best_d));
    out.insert("call_direct_best_ns".into(), json!(best_d * 1e9));
    out.insert("call_lazy_best_ns".into(), json!(best_l * 1e9));
    out.insert("call_pointer_best_ns".into(), json!(best_p * 1e9));
    out.insert("lazy_call_ratio_median".into(), json!(median(to_direct)));
    out.insert("lazy_call_ratio_median_min".into(), json!(lo));
    out.insert("lazy_call_ratio_median_max".into(), json!(hi));
    out.insert("lazy_pointer_ratio".into(), json!(median(to_pointer)));
    out.insert("call_direct_ns".into(), json!(d * 1e9));
    out.insert("call_lazy_ns".into(), json!(l * 1e9));
    out.insert("call_pointer_ns".into(), json!(p * 1e9));
}

/// `link_overhead_100` and its two times, from seconds per link; then the same with the
/// startup planned afresh every time (`Config::reuse_startup_plans` off) against its own
/// paired hand wiring.
fn link_rows(dylink: f64, by_hand: f64, afresh: (f64, f64), out: &mut Map<String, Value>) {
    out.insert("link_ms_100".into(), json!(dylink * 1e3));
    out.insert("link_by_hand_ms_100".into(), json!(by_hand * 1e3));
    out.insert("link_overhead_100".into(), json!(dylink / by_hand));
    out.insert("link_afresh_ms_100".into(), json!(afresh.0 * 1e3));
    out.insert(
        "link_afresh_overhead_100".into(),
        json!(afresh.0 / afresh.1),
    );
}

/// `safe_point_call_ratio` and its calls, from seconds per call.
fn safe_point_rows(plain: f64, checked: f64, lazy: f64, out: &mut Map<String, Value>) {
    out.insert("call_pointer_plain_ns".into(), json!(plain * 1e9));
    out.insert("call_pointer_shared_ns".into(), json!(checked * 1e9));
    out.insert("safe_point_call_ratio".into(), json!(checked / plain));
    out.insert("call_lazy_shared_ns".into(), json!(lazy * 1e9));
}

/// Options that plan every startup afresh (no stored startup plan).
fn afresh<O: HasConfig>(mut options: O) -> O {
    options.config().reuse_startup_plans = false;
    options
}

/// The two adapters' `Options`, for [`afresh`].
trait HasConfig {
    fn config(&mut self) -> &mut Config;
}

impl HasConfig for dylink_wasmtime::Options {
    fn config(&mut self) -> &mut Config {
        &mut self.config
    }
}

impl HasConfig for dylink_wasmer::Options {
    fn config(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// Where side module `i` of a hand-wired program puts its data.
fn hand_base(i: usize) -> u64 {
    1024 + (i * DATA) as u64
}

fn got_offset(name: &str) -> u64 {
    name.rsplit('_')
        .next()
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0)
        * 16
}

mod wt {
    use super::{
        CallRun, DL_BIG_LIBS, GOT_FUNC, Handle, MemorySource, Settings, call_rows, got_offset,
        hand_base, link_rows, median, open_close_us, paired, per_call_ns, rtld, safe_point_rows,
        time,
    };
    use dylink_bench::{
        Call, call_program, call_program_in, fresh_library, program, threaded_program,
    };
    use dylink_wasmtime::{Options, Program};
    use serde_json::{Map, Value as Json, json};
    use std::time::Instant;
    use wasmtime::*;

    pub fn engine() -> Engine {
        Engine::default()
    }

    fn load(engine: &Engine, main: &[u8], src: &MemorySource) -> (Store<()>, Program<()>) {
        load_with(engine, main, Options::new(src.clone()))
    }

    fn load_with(engine: &Engine, main: &[u8], options: Options) -> (Store<()>, Program<()>) {
        let mut store = Store::new(engine, ());
        let linker = Linker::new(engine);
        let program =
            Program::load(&mut store, &linker, options, "/app/main.wasm", main).expect("loads");
        (store, program)
    }

    /// The same program, every import wired by hand through wasmtime's API.
    fn hand(engine: &Engine, main: &Module, libs: &[Module]) {
        let mut store = Store::new(engine, ());
        let pages = (hand_base(libs.len()) / 65536 + 2) as u32;
        let memory = Memory::new(&mut store, MemoryType::new(pages, None)).unwrap();
        hand_in(&mut store, memory.into(), main, libs, true);
    }

    /// Instantiate `libs` and `main` in `store` over `memory`, wiring every import by hand;
    /// with `init`, run each library's relocations and constructors.
    fn hand_in(store: &mut Store<()>, memory: Extern, main: &Module, libs: &[Module], init: bool) {
        let mut store = store;
        let table = Table::new(
            &mut store,
            TableType::new(RefType::FUNCREF, (libs.len() * GOT_FUNC + 1) as u32, None),
            Ref::Func(None),
        )
        .unwrap();
        let sp = Global::new(
            &mut store,
            GlobalType::new(ValType::I32, Mutability::Var),
            Val::I32(65536),
        )
        .unwrap();
        let mut insts: Vec<Instance> = Vec::new();
        let mut slot = 1u64;
        for (i, m) in libs.iter().enumerate() {
            let mut externs: Vec<Extern> = Vec::new();
            for imp in m.imports() {
                let e: Extern = match (imp.module(), imp.name()) {
                    ("env", "memory") => memory.clone(),
                    ("env", "__indirect_function_table") => table.into(),
                    ("env", "__memory_base") => Global::new(
                        &mut store,
                        GlobalType::new(ValType::I32, Mutability::Const),
                        Val::I32(hand_base(i) as i32),
                    )
                    .unwrap()
                    .into(),
                    ("env", "__table_base") => Global::new(
                        &mut store,
                        GlobalType::new(ValType::I32, Mutability::Const),
                        Val::I32(0),
                    )
                    .unwrap()
                    .into(),
                    ("env", "__stack_pointer") => sp.into(),
                    ("env", f) => insts[i - 1].get_export(&mut store, f).unwrap(),
                    ("GOT.mem", d) => Global::new(
                        &mut store,
                        GlobalType::new(ValType::I32, Mutability::Var),
                        Val::I32((hand_base(i - 1) + got_offset(d)) as i32),
                    )
                    .unwrap()
                    .into(),
                    ("GOT.func", f) => {
                        let func = insts[i - 1].get_func(&mut store, f).unwrap();
                        table.set(&mut store, slot, Ref::Func(Some(func))).unwrap();
                        slot += 1;
                        Global::new(
                            &mut store,
                            GlobalType::new(ValType::I32, Mutability::Var),
                            Val::I32((slot - 1) as i32),
                        )
                        .unwrap()
                        .into()
                    }
                    other => panic!("unexpected import {other:?}"),
                };
                externs.push(e);
            }
            let inst = Instance::new(&mut store, m, &externs).unwrap();
            for f in ["__wasm_apply_data_relocs", "__wasm_call_ctors"]
                .iter()
                .filter(|_| init)
            {
                inst.get_typed_func::<(), ()>(&mut store, f)
                    .unwrap()
                    .call(&mut store, ())
                    .unwrap();
            }
            insts.push(inst);
        }
        Instance::new(&mut store, main, &[memory, table.into()]).unwrap();
    }

    /// thread_spawn_ratio: a new instance group over 50 loaded side modules vs the same
    /// modules instantiated by hand in a new store (shared memory attached, a new table, no
    /// relocations or constructors: what a thread needs); and one dlopen replicated to 8 live
    /// groups (the dlopen plus each group's catch-up).
    pub fn threads(s: &Settings, out: &mut Map<String, Json>) {
        let mut config = Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = Engine::new(&config).unwrap();
        safe_point_calls(&engine, s, out);
        let (main, src, libs) = threaded_program(50);
        let (mut store, program) = load(&engine, &main, &src);
        let shared = match program.memory() {
            dylink_wasmtime::Mem::Shared(m) => m,
            dylink_wasmtime::Mem::Plain(_) => unreachable!("the program is threaded"),
        };
        let main_m = Module::new(&engine, &main[..]).unwrap();
        let lib_m: Vec<Module> = libs
            .iter()
            .map(|b| Module::new(&engine, b).unwrap())
            .collect();
        let (group, by_hand) = paired(
            s.iters.max(3),
            || {
                let mut store = Store::new(&engine, ());
                program.new_group(&mut store).unwrap().exit_group().unwrap();
            },
            || {
                let mut store = Store::new(&engine, ());
                hand_in(&mut store, shared.clone().into(), &main_m, &lib_m, false);
            },
        );
        out.insert("thread_group_us_50".into(), json!(group * 1e6));
        out.insert("thread_by_hand_us_50".into(), json!(by_hand * 1e6));
        out.insert("thread_spawn_ratio".into(), json!(group / by_hand));
        let mut groups: Vec<_> = (0..8)
            .map(|_| {
                let mut store = Store::new(&engine, ());
                let g = program.new_group(&mut store).unwrap();
                (store, g)
            })
            .collect();
        let mut samples = Vec::new();
        for _ in 0..s.iters.max(3) {
            let t = Instant::now();
            let h = program
                .dlopen(&mut store, Some("libextra.so"), rtld::NOW)
                .unwrap();
            for (st, g) in groups.iter_mut() {
                g.catch_up(&mut *st).unwrap();
            }
            samples.push(t.elapsed().as_secs_f64());
            program.dlclose(&mut store, h).unwrap();
            for (st, g) in groups.iter_mut() {
                g.catch_up(&mut *st).unwrap();
            }
        }
        out.insert(
            "dlopen_replicated_8_us".into(),
            json!(median(samples) * 1e6),
        );
        for (_, g) in groups {
            g.exit_group().unwrap();
        }
    }

    /// Seconds per call of `spin`'s loop in `call_program_in(call, shared)`; asserts that
    /// the loop never enters the host once warm (the safe-point checks pass in wasm).
    fn per_call(engine: &Engine, s: &Settings, call: Call, shared: bool) -> f64 {
        let (m, src) = call_program_in(call, shared);
        let (mut store, program) = load(engine, &m, &src);
        let run = program
            .main_func(&mut store, "run")
            .unwrap()
            .typed::<i32, i32>(&store)
            .unwrap();
        run.call(&mut store, 1).unwrap();
        let before = program.host_calls();
        let t = time(s.iters.max(3), || {
            run.call(&mut store, s.calls).unwrap();
        }) / s.calls as f64;
        assert_eq!(
            program.host_calls(),
            before,
            "a warm call loop stays in wasm"
        );
        t
    }

    /// What the safe points before indirect calls cost a threaded program: a call through a
    /// function pointer with a shared memory (checked) and without (not rewritten), and a
    /// lazily bound call with a shared memory (redirected through its slot, no check).
    fn safe_point_calls(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let plain = per_call(engine, s, Call::Pointer, false);
        let checked = per_call(engine, s, Call::Pointer, true);
        let lazy = per_call(engine, s, Call::Lazy, true);
        safe_point_rows(plain, checked, lazy, out);
    }

    /// `lazy_call_ratio`, the call costs and their spread over loads ([`call_rows`]).
    pub fn calls(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        // A resolved lazy call stays in wasm.
        let (m, src) = call_program(true);
        let (mut store, program) = load(engine, &m, &src);
        let run = program.main_func(&mut store, "run").unwrap();
        let run = run.typed::<i32, i32>(&store).unwrap();
        run.call(&mut store, 1).unwrap();
        let before = program.host_calls();
        run.call(&mut store, 1000).unwrap();
        assert_eq!(
            program.host_calls(),
            before,
            "a resolved lazy call never enters the host"
        );
        let load_run = |call| -> CallRun {
            let (m, src) = call_program_in(call, false);
            let (mut store, program) = load(engine, &m, &src);
            let run = program.main_func(&mut store, "run").unwrap();
            let run = run.typed::<i32, i32>(&store).unwrap();
            // The program lives as long as its store: every load is kept.
            Box::new(move |n| {
                run.call(&mut store, n).unwrap();
                let _ = &program;
            })
        };
        call_rows(s.placements, s.iters.clamp(3, 5), s.calls, load_run, out);
    }

    /// link_overhead_100: main + 100 libraries through dylink vs wired by hand, timed
    /// alternately.
    pub fn link(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let (main, src, libs) = program(100);
        load(engine, &main, &src); // warm the compile cache
        let main_m = Module::new(engine, &main[..]).unwrap();
        let lib_m: Vec<Module> = libs
            .iter()
            .map(|b| Module::new(engine, b).unwrap())
            .collect();
        // One source shared by every load, as an embedder holds it.
        let src = std::sync::Arc::new(src);
        let (dylink, by_hand) = paired(
            s.iters,
            || {
                load_with(engine, &main, Options::new(src.clone()));
            },
            || hand(engine, &main_m, &lib_m),
        );
        let afresh = paired(
            s.iters,
            || {
                load_with(engine, &main, super::afresh(Options::new(src.clone())));
            },
            || hand(engine, &main_m, &lib_m),
        );
        link_rows(dylink, by_hand, afresh, out);
    }

    pub fn run(s: &Settings) -> Map<String, Json> {
        let engine = engine();
        let mut out = Map::new();
        link(&engine, s, &mut out);
        // lazy_call_ratio
        calls(&engine, s, &mut out);
        dl(&engine, s, &mut out);
        out
    }

    /// dlsym_ns, dlopen_loaded_ns, dlopen_new_us, dlclose_us (also with [`DL_BIG_LIBS`]
    /// libraries loaded) and instantiating by hand.
    pub fn dl(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let (main, mut src, _) = program(10);
        src.insert("/lib/libfresh.so", fresh_library());
        let (mut store, program) = load(engine, &main, &src);
        program
            .dlsym(&mut store, Handle::Default, "f5_3", None)
            .unwrap();
        let dlsym = per_call_ns(s.micro, || {
            program
                .dlsym(&mut store, Handle::Default, "f5_3", None)
                .unwrap();
        });
        out.insert("dlsym_ns".into(), json!(dlsym));
        let dlopen = per_call_ns(s.micro, || {
            program
                .dlopen(&mut store, Some("lib3.so"), rtld::NOW)
                .unwrap();
        });
        out.insert("dlopen_loaded_ns".into(), json!(dlopen));
        let cycle = |store: &mut Store<()>, program: &Program<()>| {
            let t = Instant::now();
            let h = program
                .dlopen(&mut *store, Some("libfresh.so"), rtld::NOW)
                .unwrap();
            let opened = Instant::now();
            program.dlclose(store, h).unwrap();
            (opened - t, opened.elapsed())
        };
        let (dl, close) = open_close_us(s.iters.max(3), || cycle(&mut store, &program));
        {
            let (main, mut src, _) = dylink_bench::program(DL_BIG_LIBS);
            src.insert("/lib/libfresh.so", fresh_library());
            let (mut store, program) = load(engine, &main, &src);
            let (dl, close) = open_close_us(s.iters.max(3), || cycle(&mut store, &program));
            out.insert("dlopen_new_us_400".into(), json!(dl));
            out.insert("dlclose_us_400".into(), json!(close));
        }
        let fresh = Module::new(engine, fresh_library()).unwrap();
        let memory = match program.memory() {
            dylink_wasmtime::Mem::Plain(m) => m,
            dylink_wasmtime::Mem::Shared(_) => unreachable!("the program is not threaded"),
        };
        let by_hand = time(s.iters.max(3), || {
            let mb = Global::new(
                &mut store,
                GlobalType::new(ValType::I32, Mutability::Const),
                Val::I32(4096),
            )
            .unwrap();
            let inst = Instance::new(&mut store, &fresh, &[memory.into(), mb.into()]).unwrap();
            inst.get_typed_func::<(), ()>(&mut store, "__wasm_call_ctors")
                .unwrap()
                .call(&mut store, ())
                .unwrap();
        });
        out.insert("dlopen_new_us".into(), json!(dl));
        out.insert("dlclose_us".into(), json!(close));
        out.insert("instantiate_by_hand_us".into(), json!(by_hand * 1e6));
    }
}

mod wm {
    use super::{
        CallRun, DL_BIG_LIBS, GOT_FUNC, Handle, MemorySource, Settings, call_rows, got_offset,
        hand_base, link_rows, median, open_close_us, paired, per_call_ns, rtld, safe_point_rows,
        time,
    };
    use dylink_bench::{
        Call, call_program, call_program_in, fresh_library, program, threaded_program,
    };
    use dylink_wasmer::{Options, Program};
    use serde_json::{Map, Value as Json, json};
    use std::time::Instant;
    use wasmer::*;

    fn load(main: &[u8], src: &MemorySource, store: &mut Store) -> Program {
        load_with(main, Options::new(src.clone()), store)
    }

    fn load_with(main: &[u8], options: Options, store: &mut Store) -> Program {
        Program::load(store, &Imports::new(), options, "/app/main.wasm", main).expect("loads")
    }

    fn hand(store: &mut Store, main: &Module, libs: &[Module]) {
        let pages = (hand_base(libs.len()) / 65536 + 2) as u32;
        let memory = Memory::new(store, MemoryType::new(pages, None, false)).unwrap();
        hand_in(store, memory, main, libs, true);
    }

    /// Instantiate `libs` and `main` in `store` over `memory`, wiring every import by hand;
    /// with `init`, run each library's relocations and constructors.
    fn hand_in(store: &mut Store, memory: Memory, main: &Module, libs: &[Module], init: bool) {
        let table = Table::new(
            store,
            TableType::new(Type::FuncRef, (libs.len() * GOT_FUNC + 1) as u32, None),
            Value::FuncRef(None),
        )
        .unwrap();
        let sp = Global::new_mut(store, Value::I32(65536));
        let mut insts: Vec<Instance> = Vec::new();
        let mut slot = 1u32;
        for (i, m) in libs.iter().enumerate() {
            let mut externs: Vec<Extern> = Vec::new();
            for imp in m.imports() {
                let e: Extern = match (imp.module(), imp.name()) {
                    ("env", "memory") => memory.clone().into(),
                    ("env", "__indirect_function_table") => table.clone().into(),
                    ("env", "__memory_base") => {
                        Global::new(store, Value::I32(hand_base(i) as i32)).into()
                    }
                    ("env", "__table_base") => Global::new(store, Value::I32(0)).into(),
                    ("env", "__stack_pointer") => sp.clone().into(),
                    ("env", f) => insts[i - 1].exports.get_extern(f).unwrap().clone(),
                    ("GOT.mem", d) => Global::new_mut(
                        store,
                        Value::I32((hand_base(i - 1) + got_offset(d)) as i32),
                    )
                    .into(),
                    ("GOT.func", f) => {
                        let func = insts[i - 1].exports.get_function(f).unwrap().clone();
                        table.set(store, slot, Value::FuncRef(Some(func))).unwrap();
                        slot += 1;
                        Global::new_mut(store, Value::I32((slot - 1) as i32)).into()
                    }
                    other => panic!("unexpected import {other:?}"),
                };
                externs.push(e);
            }
            let inst = Instance::new_by_index(store, m, &externs).unwrap();
            for f in ["__wasm_apply_data_relocs", "__wasm_call_ctors"]
                .iter()
                .filter(|_| init)
            {
                inst.exports
                    .get_function(f)
                    .unwrap()
                    .call(store, &[])
                    .unwrap();
            }
            insts.push(inst);
        }
        Instance::new_by_index(store, main, &[memory.into(), table.into()]).unwrap();
    }

    /// thread_spawn_ratio and the replicated dlopen, as for wasmtime.
    pub fn threads(s: &Settings, out: &mut Map<String, Json>) {
        let mut store = Store::default();
        let engine = store.engine().clone();
        safe_point_calls(&engine, s, out);
        let (main, src, libs) = threaded_program(50);
        let program = load(&main, &src, &mut store);
        let shared = program
            .memory()
            .0
            .as_shared(&store)
            .expect("the program is threaded");
        let main_m = Module::new(&store, &main[..]).unwrap();
        let lib_m: Vec<Module> = libs
            .iter()
            .map(|b| Module::new(&store, b).unwrap())
            .collect();
        let (group, by_hand) = paired(
            s.iters.max(3),
            || {
                let mut store = Store::new(engine.clone());
                program.new_group(&mut store).unwrap().exit_group().unwrap();
            },
            || {
                let mut store = Store::new(engine.clone());
                let memory = shared.clone().attach(&mut store);
                hand_in(&mut store, memory, &main_m, &lib_m, false);
            },
        );
        out.insert("thread_group_us_50".into(), json!(group * 1e6));
        out.insert("thread_by_hand_us_50".into(), json!(by_hand * 1e6));
        out.insert("thread_spawn_ratio".into(), json!(group / by_hand));
        let mut groups: Vec<_> = (0..8)
            .map(|_| {
                let mut store = Store::new(engine.clone());
                let g = program.new_group(&mut store).unwrap();
                (store, g)
            })
            .collect();
        let mut samples = Vec::new();
        for _ in 0..s.iters.max(3) {
            let t = Instant::now();
            let h = program
                .dlopen(&mut store, Some("libextra.so"), rtld::NOW)
                .unwrap();
            for (st, g) in groups.iter_mut() {
                g.catch_up(st).unwrap();
            }
            samples.push(t.elapsed().as_secs_f64());
            program.dlclose(&mut store, h).unwrap();
            for (st, g) in groups.iter_mut() {
                g.catch_up(st).unwrap();
            }
        }
        out.insert(
            "dlopen_replicated_8_us".into(),
            json!(median(samples) * 1e6),
        );
        for (_, g) in groups {
            g.exit_group().unwrap();
        }
    }

    /// As for wasmtime.
    fn per_call(engine: &wasmer::Engine, s: &Settings, call: Call, shared: bool) -> f64 {
        let (m, src) = call_program_in(call, shared);
        let mut store = Store::new(engine.clone());
        let program = load(&m, &src, &mut store);
        let run = program.main_func(&mut store, "run").unwrap();
        run.call(&mut store, &[Value::I32(1)]).unwrap();
        let before = program.host_calls();
        let t = time(s.iters.max(3), || {
            run.call(&mut store, &[Value::I32(s.calls)]).unwrap();
        }) / s.calls as f64;
        assert_eq!(
            program.host_calls(),
            before,
            "a warm call loop stays in wasm"
        );
        t
    }

    /// As for wasmtime.
    fn safe_point_calls(engine: &wasmer::Engine, s: &Settings, out: &mut Map<String, Json>) {
        let plain = per_call(engine, s, Call::Pointer, false);
        let checked = per_call(engine, s, Call::Pointer, true);
        let lazy = per_call(engine, s, Call::Lazy, true);
        safe_point_rows(plain, checked, lazy, out);
    }

    /// As for wasmtime.
    pub fn calls(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let (m, src) = call_program(true);
        let mut store = Store::new(engine.clone());
        let program = load(&m, &src, &mut store);
        let run = program.main_func(&mut store, "run").unwrap();
        run.call(&mut store, &[Value::I32(1)]).unwrap();
        let before = program.host_calls();
        run.call(&mut store, &[Value::I32(1000)]).unwrap();
        assert_eq!(
            program.host_calls(),
            before,
            "a resolved lazy call never enters the host"
        );
        let load_run = |call| -> CallRun {
            let (m, src) = call_program_in(call, false);
            let mut store = Store::new(engine.clone());
            let program = load(&m, &src, &mut store);
            let run = program.main_func(&mut store, "run").unwrap();
            // The program lives as long as its store: every load is kept.
            Box::new(move |n| {
                run.call(&mut store, &[Value::I32(n)]).unwrap();
                let _ = &program;
            })
        };
        call_rows(s.placements, s.iters.clamp(3, 5), s.calls, load_run, out);
    }

    /// link_overhead_100: main + 100 libraries through dylink vs wired by hand, timed
    /// alternately.
    pub fn link(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let (main, src, libs) = program(100);
        load(&main, &src, &mut Store::new(engine.clone())); // warm the compile cache
        let main_m = Module::new(engine, &main[..]).unwrap();
        let lib_m: Vec<Module> = libs
            .iter()
            .map(|b| Module::new(engine, b).unwrap())
            .collect();
        // One source shared by every load, as an embedder holds it.
        let src = std::sync::Arc::new(src);
        let (dylink, by_hand) = paired(
            s.iters,
            || {
                load_with(
                    &main,
                    Options::new(src.clone()),
                    &mut Store::new(engine.clone()),
                );
            },
            || hand(&mut Store::new(engine.clone()), &main_m, &lib_m),
        );
        let afresh = paired(
            s.iters,
            || {
                let options = super::afresh(Options::new(src.clone()));
                load_with(&main, options, &mut Store::new(engine.clone()));
            },
            || hand(&mut Store::new(engine.clone()), &main_m, &lib_m),
        );
        link_rows(dylink, by_hand, afresh, out);
    }

    pub fn run(s: &Settings) -> Map<String, Json> {
        let mut out = Map::new();
        // One engine for every store, as an embedder would have (a `Store::default()` makes
        // a new engine each time, and compiled modules belong to their engine).
        let store0 = Store::default();
        let engine = store0.engine().clone();
        link(&engine, s, &mut out);
        calls(&engine, s, &mut out);
        dl(&engine, s, &mut out);
        out
    }

    /// dlsym_ns, dlopen_loaded_ns, dlopen_new_us, dlclose_us (also with [`DL_BIG_LIBS`]
    /// libraries loaded) and instantiating by hand.
    pub fn dl(engine: &Engine, s: &Settings, out: &mut Map<String, Json>) {
        let (main, mut src, _) = program(10);
        src.insert("/lib/libfresh.so", fresh_library());
        let mut store = Store::new(engine.clone());
        let program = load(&main, &src, &mut store);
        program
            .dlsym(&mut store, Handle::Default, "f5_3", None)
            .unwrap();
        let dlsym = per_call_ns(s.micro, || {
            program
                .dlsym(&mut store, Handle::Default, "f5_3", None)
                .unwrap();
        });
        out.insert("dlsym_ns".into(), json!(dlsym));
        let dlopen = per_call_ns(s.micro, || {
            program
                .dlopen(&mut store, Some("lib3.so"), rtld::NOW)
                .unwrap();
        });
        out.insert("dlopen_loaded_ns".into(), json!(dlopen));
        let cycle = |store: &mut Store, program: &Program| {
            let t = Instant::now();
            let h = program
                .dlopen(&mut *store, Some("libfresh.so"), rtld::NOW)
                .unwrap();
            let opened = Instant::now();
            program.dlclose(store, h).unwrap();
            (opened - t, opened.elapsed())
        };
        let (dl, close) = open_close_us(s.iters.max(3), || cycle(&mut store, &program));
        {
            let (main, mut src, _) = dylink_bench::program(DL_BIG_LIBS);
            src.insert("/lib/libfresh.so", fresh_library());
            let mut store = Store::new(engine.clone());
            let program = load(&main, &src, &mut store);
            let (dl, close) = open_close_us(s.iters.max(3), || cycle(&mut store, &program));
            out.insert("dlopen_new_us_400".into(), json!(dl));
            out.insert("dlclose_us_400".into(), json!(close));
        }
        let fresh = Module::new(&store, fresh_library()).unwrap();
        let memory = program.memory().0;
        let by_hand = time(s.iters.max(3), || {
            let mb = Global::new(&mut store, Value::I32(4096));
            let inst =
                Instance::new_by_index(&mut store, &fresh, &[memory.clone().into(), mb.into()])
                    .unwrap();
            inst.exports
                .get_function("__wasm_call_ctors")
                .unwrap()
                .call(&mut store, &[])
                .unwrap();
        });
        out.insert("dlopen_new_us".into(), json!(dl));
        out.insert("dlclose_us".into(), json!(close));
        out.insert("instantiate_by_hand_us".into(), json!(by_hand * 1e6));
    }
}

fn core(s: &Settings) -> Map<String, Value> {
    let mut out = Map::new();
    for n in if s.iters > 1 {
        vec![10, 100, 1000]
    } else {
        vec![10]
    } {
        let (main, src, _) = program(n);
        // As the adapters configure it (modules read on the machine's threads), then with
        // every module read on the planning thread.
        let workers = Some(dylink_fs::Threads::available().workers());
        for (key, workers) in [("", workers), ("_one_thread", None)] {
            let config = Config {
                workers,
                ..Config::default()
            };
            let ms = time(s.iters.min(7), || {
                let linker = Linker::new(config.clone());
                let plan = linker
                    .plan_startup("/app/main.wasm", main.clone(), &src, &NoHost)
                    .unwrap();
                linker.abort(std::hint::black_box(plan));
            }) * 1e3;
            out.insert(format!("plan_ms_{n}{key}"), json!(ms));
        }
    }
    // The core's state per loaded symbol, after committing a 100-module startup.
    let (main, src, _) = program(100);
    let before = LIVE.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut linker = Linker::new(Config::default());
    let plan = linker
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    linker.commit(plan).unwrap();
    COUNTING.store(false, Ordering::Relaxed);
    let bytes = (LIVE.load(Ordering::Relaxed) - before).max(0);
    let symbols = 100 * (2 * EXPORTS + FUNC_IMPORTS + GOT_MEM + GOT_FUNC);
    out.insert(
        "core_bytes_per_symbol".into(),
        json!(bytes as f64 / symbols as f64),
    );
    drop(linker);
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var_os("DYLINK_BENCH_QUICK").is_some()
        || std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            iters: 1,
            placements: 1,
            calls: 1000,
            micro: 100,
        }
    } else {
        Settings {
            iters: 15,
            placements: PLACEMENTS,
            calls: 20_000_000,
            micro: 200_000,
        }
    };
    // More (or fewer) timed runs per metric, e.g. to profile one metric longer.
    let s = match std::env::var("DYLINK_BENCH_ITERS").map(|v| v.parse::<usize>()) {
        Ok(Ok(iters)) if iters > 0 => Settings { iters, ..s },
        _ => s,
    };
    // DYLINK_BENCH_ONLY runs one group of rows on both engines and prints them
    // (results.json keeps the last full run).
    if let Ok(only) = std::env::var("DYLINK_BENCH_ONLY") {
        let (mut wasmtime, mut wasmer) = (Map::new(), Map::new());
        let wasmer_engine = || wasmer::Store::default().engine().clone();
        match only.as_str() {
            "calls" => {
                wt::calls(&wt::engine(), &s, &mut wasmtime);
                wm::calls(&wasmer_engine(), &s, &mut wasmer);
            }
            "link" => {
                wt::link(&wt::engine(), &s, &mut wasmtime);
                wm::link(&wasmer_engine(), &s, &mut wasmer);
            }
            "dl" => {
                wt::dl(&wt::engine(), &s, &mut wasmtime);
                wm::dl(&wasmer_engine(), &s, &mut wasmer);
            }
            "threads" => {
                wt::threads(&s, &mut wasmtime);
                wm::threads(&s, &mut wasmer);
            }
            "core" => {
                println!("{}", json!({"core": core(&s)}));
                return;
            }
            other => {
                eprintln!("DYLINK_BENCH_ONLY={other}: expected calls, link, dl, threads or core");
                std::process::exit(2);
            }
        }
        println!("{}", json!({"wasmtime": wasmtime, "wasmer": wasmer}));
        return;
    }
    let mut wasmtime = wt::run(&s);
    wt::threads(&s, &mut wasmtime);
    let mut wasmer = wm::run(&s);
    wm::threads(&s, &mut wasmer);
    let results = json!({
        "command": "cargo bench -p dylink-bench --bench engines",
        "quick": quick,
        "core": core(&s),
        "wasmtime": wasmtime,
        "wasmer": wasmer,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let text = serde_json::to_string_pretty(&results).unwrap();
    std::fs::write(dir.join("results.json"), &text).unwrap();
    println!("{text}");
}
