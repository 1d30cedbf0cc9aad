//! Golden plan tests: each `golden/*.txt` holds WAT modules and the expected plan and layout
//! text. Run with `DYLINK_BLESS=1` to rewrite the expectations after a deliberate change.
//!
//! File format: a `;;` comment header, then sections introduced by `;;; file PATH` (WAT of
//! the module at PATH; `/app/main.wasm` is the main module), optionally `;;; config KEY=VALUE…`
//! (`bind=now`, `preload=NAME`, `host=wasi`), and last `;;; expect` followed by the expected text.

use std::fmt::Write as _;
use std::path::Path;

use dylink_core::*;

fn run_case(
    text: &str,
    cache: Option<&ModuleCache>,
    reuse_plans: bool,
    workers: Option<Workers>,
) -> String {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut config = Config {
        module_cache: cache.cloned(),
        reuse_startup_plans: reuse_plans,
        workers,
        ..Config::default()
    };
    let mut current: Option<(String, String)> = None;
    let mut wasi_host = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(";;; ") {
            if let Some(f) = current.take() {
                files.push(f);
            }
            if let Some(p) = rest.strip_prefix("file ") {
                current = Some((p.trim().to_string(), String::new()));
            } else if let Some(c) = rest.strip_prefix("config ") {
                for kv in c.split_whitespace() {
                    match kv.split_once('=') {
                        Some(("bind", "now")) => config.bind = BindMode::Now,
                        Some(("preload", p)) => config.preload.push(p.into()),
                        Some(("host", "wasi")) => wasi_host = true,
                        _ => panic!("unknown config `{kv}`"),
                    }
                }
            } else if rest.starts_with("expect") {
                break;
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut src = MemorySource::new();
    let mut main = None;
    for (path, body) in &files {
        let bytes: std::sync::Arc<[u8]> = wat::parse_str(body)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .into();
        if path == "/app/main.wasm" {
            main = Some(bytes);
        } else {
            src.insert(path, bytes);
        }
    }
    let main = main.expect("a /app/main.wasm section");
    let mut out = String::new();
    match ldd(&config, "/app/main.wasm", &main, &src) {
        Ok(r) => write!(out, "{r}").unwrap(),
        Err(e) => writeln!(out, "ldd error: {e}").unwrap(),
    }
    let mut linker = Linker::new(config);
    let host: &dyn HostNames = if wasi_host { &WasiHost } else { &NoHost };
    match linker.plan_startup("/app/main.wasm", main, &src, host) {
        Ok(plan) => {
            write!(out, "{plan}").unwrap();
            linker.commit(plan).unwrap();
            write!(out, "{linker}").unwrap();
        }
        Err(e) => writeln!(out, "error: {e}").unwrap(),
    }
    out
}

/// Reads every level's modules on real threads, however few.
struct Eager(dylink_fs::Threads);

impl Parallel for Eager {
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        self.0.run(n, job)
    }
    fn worth(&self, _: usize, _: usize) -> bool {
        true
    }
}

/// A host that defines every `wasi_snapshot_preview1` import, as a WASI embedding does.
struct WasiHost;

impl HostNames for WasiHost {
    fn defines(&self, module: &str, _: &str) -> bool {
        module == "wasi_snapshot_preview1"
    }
}

#[test]
fn golden_plans() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("DYLINK_BLESS").is_some();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
    {
        count += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let actual = run_case(&text, None, false, None);
        // Modules read on threads: the same text.
        let workers = Workers::new(Eager(dylink_fs::Threads::new(2.try_into().unwrap())));
        let threaded = run_case(&text, None, false, Some(workers));
        assert_eq!(
            threaded,
            actual,
            "{}: reading on workers differs",
            path.display()
        );
        // Through a module cache, first filled, then answering every read, then handing out
        // the stored startup plan: the same text.
        let cache = ModuleCache::new(1 << 24);
        for (pass, reuse) in [
            ("filling", false),
            ("hit", false),
            ("filling", true),
            ("plan", true),
        ] {
            let cached = run_case(&text, Some(&cache), reuse, None);
            assert_eq!(
                cached,
                actual,
                "{}: planning through a module cache ({pass}) differs",
                path.display()
            );
        }
        let planned = !actual.contains("\nerror: ");
        assert!(cache.hits() > 0 || cache.is_empty(), "{}", path.display());
        assert_eq!(cache.startup_hits(), planned as u64, "{}", path.display());
        let (head, expected) = match text.find(";;; expect\n") {
            Some(i) => (&text[..i], &text[i + ";;; expect\n".len()..]),
            None => (text.as_str(), ""),
        };
        if bless {
            std::fs::write(&path, format!("{head};;; expect\n{actual}")).unwrap();
        } else if expected != actual {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(count > 0, "no golden files found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (DYLINK_BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
