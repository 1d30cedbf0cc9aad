//! Reading modules on workers (`Config::workers`) plans exactly what reading them one at a
//! time plans: the same plan, the same linker afterwards, the same first error.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use dylink_core::*;

/// How a test pool runs a batch.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Last job first, on the calling thread.
    Backwards,
    /// On real threads (`dylink-fs`'s `Threads`), four at most.
    Threads,
    /// Every other job only, as a faulty pool might: the walk reads the rest itself.
    Skipping,
}

/// A pool that finds every batch worth running, and counts the batches.
struct Pool {
    style: Style,
    batches: Arc<AtomicUsize>,
}

impl Parallel for Pool {
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        match self.style {
            Style::Backwards => (0..n).rev().for_each(job),
            Style::Threads => {
                let threads = dylink_fs::Threads::new(4.try_into().unwrap());
                threads.run(n, job)
            }
            Style::Skipping => (0..n).step_by(2).for_each(job),
        }
    }

    fn worth(&self, _: usize, _: usize) -> bool {
        true
    }
}

const STYLES: [Style; 3] = [Style::Backwards, Style::Threads, Style::Skipping];

/// A source that refuses some paths, as a confined directory refuses an escaping symlink.
struct Refusing {
    files: MemorySource,
    refused: Vec<&'static str>,
}

impl ModuleSource for Refusing {
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
        if self.refused.contains(&path) {
            return Err(format!("{path}: a symlink leaving the root"));
        }
        self.files.read(path)
    }
}

fn files(list: &[(&str, Arc<[u8]>)]) -> MemorySource {
    let mut s = MemorySource::new();
    for (p, b) in list {
        s.insert(p, b.clone());
    }
    s
}

/// Plan a startup and a `dlopen` after it; the whole story as text.
fn story(config: Config, main: &Arc<[u8]>, src: &dyn ModuleSource, open: Option<&str>) -> String {
    let mut linker = Linker::new(config);
    let plan = match linker.plan_startup("/app/main.wasm", main.clone(), src, &NoHost) {
        Ok(plan) => plan,
        Err(e) => return format!("startup error: {e}"),
    };
    let mut out = format!("{plan}");
    linker.commit(plan).unwrap();
    out += &format!("{linker}");
    if let Some(name) = open {
        let facts = Facts {
            memory_bytes: 1 << 24,
        };
        match linker.plan_dlopen(
            Some(name),
            rtld::NOW | rtld::GLOBAL,
            None,
            MAIN_GROUP,
            facts,
            src,
            &NoHost,
        ) {
            Ok(plan) => {
                out += &format!("{plan}");
                linker.commit(plan).unwrap();
                out += &format!("{linker}");
            }
            Err(e) => out += &format!("dlopen error: {e}"),
        }
    }
    out
}

/// The story told without workers, then with each pool: all the same, and each pool used.
fn same_with_workers(
    config: Config,
    main: Arc<[u8]>,
    src: &dyn ModuleSource,
    open: Option<&str>,
) -> String {
    let alone = story(config.clone(), &main, src, open);
    for style in STYLES {
        let batches = Arc::new(AtomicUsize::new(0));
        let pool = Pool {
            style,
            batches: batches.clone(),
        };
        let with = story(
            Config {
                workers: Some(Workers::new(pool)),
                ..config.clone()
            },
            &main,
            src,
            open,
        );
        assert_eq!(with, alone, "{style:?} workers plan differently");
        assert!(
            batches.load(Ordering::Relaxed) > 0,
            "{style:?}: the pool was never used"
        );
        // Through a module cache: read on the workers once, then found in the cache.
        let cache = ModuleCache::new(1 << 24);
        for pass in ["filling", "hit"] {
            let pool = Pool {
                style,
                batches: batches.clone(),
            };
            let config = Config {
                workers: Some(Workers::new(pool)),
                module_cache: Some(cache.clone()),
                reuse_startup_plans: false,
                ..config.clone()
            };
            let with = story(config, &main, src, open);
            assert_eq!(with, alone, "{style:?} workers, {pass} a module cache");
        }
        assert!(
            cache.hits() > 0,
            "{style:?}: nothing was found in the cache"
        );
    }
    alone
}

#[test]
fn trees_with_cycles_diamonds_and_names_spelled_twice_plan_alike() {
    let a = side(
        8,
        1,
        &["libc.so", "libb.so"],
        r#"(import "env" "fc" (func)) (func (export "fa")) (global (export "da") i32 (i32.const 4))"#,
    );
    // The library path's copy of libb shadows the default directory's.
    let b_opt = side(
        4,
        0,
        &["libc.so"],
        r#"(func (export "fb") (export "fb_opt"))"#,
    );
    let b_lib = side(4, 0, &[], r#"(func (export "fb") (export "fb_lib"))"#);
    let c = side(
        4,
        2,
        &["liba.so"],
        r#"(import "env" "fa" (func)) (import "GOT.mem" "da" (global (mut i32))) (func (export "fc"))"#,
    );
    let plugin = side(4, 1, &["libd.so", "liba.so"], r#"(func (export "fp"))"#);
    let d = side(4, 0, &["libb.so"], r#"(func (export "fd"))"#);
    let src = files(&[
        ("/lib/liba.so", a),
        ("/opt/libb.so", b_opt),
        ("/lib/libb.so", b_lib),
        ("/lib/libc.so", c),
        ("/lib/plugin.so", plugin),
        ("/usr/lib/libd.so", d),
    ]);
    let main = pie_main(
        16,
        &[
            "liba.so",
            "libb.so",
            "/lib/liba.so",
            "liba.so",
            "/lib/libb.so",
        ],
        "",
    );
    let mut config = Config::default();
    config.search.library_path = vec!["/opt".into()];
    let told = same_with_workers(config, main, &src, Some("plugin.so"));
    assert!(
        told.contains("/opt/libb.so") && told.contains("/lib/libb.so"),
        "{told}"
    );
    assert!(told.contains("/usr/lib/libd.so"), "{told}");
}

#[test]
fn the_first_error_in_walking_order_is_the_one_reported() {
    let ok = side(4, 0, &[], r#"(func (export "f"))"#);
    let bad: Arc<[u8]> = Arc::from(&b"\0asm\x01\0\0\0\x01\xff"[..]);
    let src = files(&[("/lib/libok.so", ok.clone()), ("/lib/libbad.so", bad)]);
    // A malformed module before a missing one, and the other way round.
    let told = same_with_workers(
        Config::default(),
        pie_main(0, &["libok.so", "libbad.so", "libnone.so"], ""),
        &src,
        None,
    );
    assert!(told.contains("libbad.so"), "{told}");
    let told = same_with_workers(
        Config::default(),
        pie_main(0, &["libok.so", "libnone.so", "libbad.so"], ""),
        &src,
        None,
    );
    assert!(
        told.contains("libnone.so") && !told.contains("libbad"),
        "{told}"
    );
    // A file the source refuses to read, before a malformed one.
    let refusing = Refusing {
        files: src.clone(),
        refused: vec!["/lib/libno.so"],
    };
    let told = same_with_workers(
        Config::default(),
        pie_main(0, &["libok.so", "libno.so", "libbad.so"], ""),
        &refusing,
        None,
    );
    assert!(told.contains("symlink leaving the root"), "{told}");
    // A dlopen whose tree holds the malformed module.
    let plugin = side(0, 0, &["libok.so", "libbad.so"], "");
    let src = files(&[
        ("/lib/libok.so", ok),
        ("/lib/libbad.so", Arc::from(&b"\0asm\x01\0\0\0\x01\xff"[..])),
        ("/lib/plugin.so", plugin),
    ]);
    let told = same_with_workers(
        Config::default(),
        pie_main(16, &[], ""),
        &src,
        Some("plugin.so"),
    );
    assert!(
        told.contains("dlopen error") && told.contains("libbad.so"),
        "{told}"
    );
}
