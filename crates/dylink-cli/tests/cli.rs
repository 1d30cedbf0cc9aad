//! The `dylink` command as a user runs it: the examples on each engine, `ldd` and `plan`
//! against golden files (`DYLINK_BLESS=1` rewrites them), and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The tests' compile cache: under the target directory, not the user's home.
fn test_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dylink-cli-cache")
}

fn dylink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dylink"))
        .args(args)
        .current_dir(repo())
        .env_remove("DYLINK_DEBUG")
        .env("DYLINK_CACHE_DIR", test_cache())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(&repo().to_string_lossy().into_owned(), "<repo>")
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("DYLINK_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        expected,
        actual,
        "{} differs (DYLINK_BLESS=1 rewrites it)",
        path.display()
    );
}

const HELLO: [&str; 5] = [
    "--preload",
    "libgreet.so",
    "-L",
    "examples/hello",
    "examples/hello/main.wasm",
];

/// `dylink run --engine ENGINE ARGS…`, which must succeed; its standard output.
fn run_ok(engine: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "--engine", engine];
    all.extend(args);
    let out = dylink(&all);
    assert!(
        out.status.success(),
        "{engine} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn engines() -> Vec<&'static str> {
    if cfg!(feature = "wasmer") {
        vec!["wasmtime", "wasmer"]
    } else {
        vec!["wasmtime"]
    }
}

#[test]
fn hello_runs_and_passes_the_exit_code_on() {
    for engine in engines() {
        let mut args = vec!["run", "--engine", engine];
        args.extend(HELLO);
        args.extend(["one", "two"]);
        let out = dylink(&args);
        assert_eq!(
            text(&out.stdout),
            "Hello from libgreet.so!\n",
            "{engine}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{engine}: the program's exit code"
        );
    }
}

#[test]
fn a_threaded_program_runs_its_threads_with_wasi_of_their_own() {
    for engine in engines() {
        let out = dylink(&[
            "run",
            "--engine",
            engine,
            "-L",
            "examples/threads",
            "examples/threads/main.wasm",
        ]);
        let stdout = text(&out.stdout);
        let mut lines: Vec<&str> = stdout.lines().collect();
        // The threads print in the order they run; the main thread prints last.
        assert_eq!(
            lines.pop(),
            Some("squares from 4 threads: 1 4 9 16"),
            "{engine}: {stdout}{}",
            text(&out.stderr)
        );
        lines.sort();
        assert_eq!(
            lines,
            ["thread 1: 1", "thread 2: 4", "thread 3: 9", "thread 4: 16"],
            "{engine}: each thread wrote through its own WASI context"
        );
        assert!(out.status.success(), "{engine}: {}", text(&out.stderr));
    }
}

/// A real library: zstd 1.5.7 as a side module of a program carrying wasi-libc. What it
/// compresses, the reference implementation (natively) decompresses, and the other way
/// round, at a level that uses its optimal parser: megabytes through the program's heap,
/// which must not grow over the library's data (the main's allocator is started before the
/// library is placed, `Op::StartAllocator`; without it this traps).
#[test]
fn the_zstd_library_compresses_and_decompresses_as_the_reference_does() {
    let dir = tempfile::tempdir().unwrap();
    // Two megabytes that compress, but not to nothing: text-like runs and noise.
    let mut data = Vec::with_capacity(2 << 20);
    let mut x: u32 = 0x9e37_79b9;
    while data.len() < 2 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(4) {
            data.extend_from_slice(b"the quick brown fox jumps over the lazy dog; ");
        } else {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    let d = dir.path();
    std::fs::write(d.join("in.bin"), &data).unwrap();
    std::fs::write(
        d.join("native.zst"),
        zstd::stream::encode_all(&data[..], 3).unwrap(),
    )
    .unwrap();
    let mount = format!("{}::/work", d.display());
    for engine in engines() {
        let prefix = [
            "--preload",
            "libzstd.so",
            "-L",
            "examples/zstd",
            "--dir",
            &mount,
            "examples/zstd/main.wasm",
        ];
        let run = |args: &[&str]| run_ok(engine, &[&prefix[..], args].concat());
        let said = run(&["compress", "19", "/work/in.bin", "/work/out.zst"]);
        let packed = std::fs::read(d.join("out.zst")).unwrap();
        assert_eq!(
            said,
            format!(
                "compressed {} bytes to {} at level 19\n",
                data.len(),
                packed.len()
            )
        );
        assert!(packed.len() < data.len() * 4 / 5, "{engine}: {said}");
        assert!(
            zstd::stream::decode_all(&packed[..]).unwrap() == data,
            "{engine}: the reference reads back what the library wrote"
        );
        let said = run(&["decompress", "/work/native.zst", "/work/back.bin"]);
        assert!(said.starts_with("decompressed "), "{engine}: {said}");
        assert!(
            std::fs::read(d.join("back.bin")).unwrap() == data,
            "{engine}: the library reads back what the reference wrote"
        );
        std::fs::remove_file(d.join("back.bin")).unwrap();
        std::fs::remove_file(d.join("out.zst")).unwrap();
    }
}

/// The same library loaded at run time: `dlopen`, `dlsym` of its functions, a megabyte
/// through them, `dlclose`, three times over; each load gets the library as built (the
/// region the last one left is zeroed before reuse), so every round compresses alike.
#[test]
fn the_zstd_library_loads_and_unloads_at_run_time() {
    for engine in engines() {
        let out = dylink(&[
            "run",
            "--engine",
            engine,
            "-L",
            "examples/zstd",
            "examples/zstd/cycle.wasm",
            "3",
        ]);
        assert!(out.status.success(), "{engine}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{engine}: {stdout}");
        for (i, line) in lines.iter().enumerate() {
            let same = lines[0].replacen("round 1:", &format!("round {}:", i + 1), 1);
            assert_eq!(*line, same, "{engine}: {stdout}");
        }
        assert!(
            lines[0].starts_with("round 1: zstd 1.5.7, 1048576 bytes to ")
                && lines[0].ends_with(", read back"),
            "{engine}: {stdout}"
        );
    }
}

/// SQLite 3.46 as a side module: SQL through the library, with a function and a collation
/// of the program's own that the library calls back through function pointers, then a
/// database file written by one run and read back by the next.
#[test]
fn the_sqlite_library_runs_sql_with_the_programs_callbacks_and_keeps_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mount = format!("{}::/data", dir.path().display());
    for engine in engines() {
        let prefix = [
            "--preload",
            "libsqlite3.so",
            "-L",
            "examples/sqlite",
            "--dir",
            &mount,
            "examples/sqlite/sqlite.wasm",
        ];
        let run = |args: &[&str]| run_ok(engine, &[&prefix[..], args].concat());
        let out = run(&[
            ":memory:",
            "create table t(a integer, b text)",
            "insert into t values (1, 'one'), (2, 'Two'), (3, 'three')",
            "select a, twice(a), b from t order by b collate program_nocase",
            "select sum(twice(a)), group_concat(b, '+'), json_object('n', count(*)) from t",
        ]);
        assert_eq!(
            out,
            "a|twice(a)|b\n1|2|one\n3|6|three\n2|4|Two\n\
             sum(twice(a))|group_concat(b, '+')|json_object('n', count(*))\n\
             12|one+Two+three|{\"n\":3}\nsqlite 3.46.0\n",
            "{engine}"
        );
        let db = dir.path().join("test.db");
        let _ = std::fs::remove_file(&db);
        run(&[
            "/data/test.db",
            "create table t(a integer primary key, b text)",
            "with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000) \
             insert into t select x, 'row ' || x from c",
        ]);
        let file = std::fs::read(&db).unwrap();
        assert!(file.starts_with(b"SQLite format 3\0"), "{engine}");
        assert!(file.len() > 300_000, "{engine}: {} bytes", file.len());
        let out = run(&[
            "/data/test.db",
            "select count(*), sum(twice(a)), max(b) from t",
        ]);
        assert_eq!(
            out, "count(*)|sum(twice(a))|max(b)\n20000|400020000|row 9999\nsqlite 3.46.0\n",
            "{engine}"
        );
    }
}

/// An extension loaded at run time that needs two libraries: `.load libzsql.so zsql_init`
/// dlopens a library whose NEEDED are the `libsqlite3.so` the program already has and a
/// `libzstd.so` that comes with it; SQLite then calls its SQL functions, which call zstd,
/// and an error they raise comes back through SQLite.
#[test]
fn the_sqlite_program_loads_an_extension_that_needs_zstd_at_run_time() {
    for engine in engines() {
        let out = dylink(&[
            "run",
            "--engine",
            engine,
            "--debug",
            "libs",
            "--preload",
            "libsqlite3.so",
            "-L",
            "examples/sqlite",
            "-L",
            "examples/zstd",
            "examples/sqlite/sqlite.wasm",
            ":memory:",
            ".load libzsql.so zsql_init",
            "create table b(x)",
            "insert into b values (zstd_compress(zeroblob(100000) || x'0102', 19))",
            "select length(x) < 1000, length(zstd_decompress(x)), hex(substr(zstd_decompress(x), 100000)) from b",
            "select zstd_decompress(x'00')",
        ]);
        assert_eq!(
            text(&out.stdout),
            "length(x) < 1000|length(zstd_decompress(x))|hex(substr(zstd_decompress(x), 100000))\n\
             1|100002|000102\n",
            "{engine}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.ends_with("zstd_decompress: not one zstd frame with its size\n"),
            "{engine}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{engine}");
        // Each library loaded once: libzsql.so and libzstd.so at the dlopen.
        for lib in ["libsqlite3.so", "libzsql.so", "libzstd.so"] {
            let found = stderr.matches(&format!("{lib} => ")).count();
            assert_eq!(found, 1, "{engine}: {lib} {stderr}");
        }
    }
}

#[test]
fn plugin_host_dlopens_every_library_in_a_directory() {
    for engine in engines() {
        let out = dylink(&[
            "run",
            "--engine",
            engine,
            "-L",
            "examples/plugins/plugins",
            "--dir",
            "examples/plugins/plugins::/plugins",
            "examples/plugins/host.wasm",
            "/plugins/",
        ]);
        assert_eq!(
            text(&out.stdout),
            "libdouble.so: double says 14\nlibsquare.so: square says 49\n2 plugin(s), 0 failed\n",
            "{engine}: {}",
            text(&out.stderr)
        );
        assert!(out.status.success());
    }
}

#[test]
fn without_wasmer_built_in_the_error_says_how_to_get_it() {
    if cfg!(feature = "wasmer") {
        return;
    }
    let mut args = vec!["run", "--engine", "wasmer"];
    args.extend(HELLO);
    let out = dylink(&args);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--features wasmer"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ldd_lists_where_each_library_comes_from() {
    let out = dylink(&[
        "ldd",
        "examples/hello/main.wasm",
        "--preload",
        "libgreet.so",
        "-L",
        "examples/hello",
        "--symbols",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    golden("ldd-hello.txt", &text(&out.stdout));
    // A missing library: a `not found` line and a failing exit code.
    let out = dylink(&[
        "ldd",
        "examples/hello/main.wasm",
        "--preload",
        "libnope.so",
        "-L",
        "examples/hello",
    ]);
    assert!(!out.status.success());
    assert_eq!(text(&out.stdout), "\tlibnope.so => not found\n");
    // Every library found, but a symbol missing: it would not link (bind-now).
    let out = dylink(&[
        "ldd",
        "--bind",
        "now",
        "examples/hello/main.wasm",
        "-L",
        "examples/hello",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout)
            .contains("error: <repo>/examples/hello/main.wasm needs function `greeting`"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn plan_prints_the_layout_and_ops() {
    let out = dylink(&[
        "plan",
        "examples/hello/main.wasm",
        "--preload",
        "libgreet.so",
        "-L",
        "examples/hello",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    golden("plan-hello.txt", &text(&out.stdout));
    let out = dylink(&[
        "plan",
        "--json",
        "examples/hello/main.wasm",
        "--preload",
        "libgreet.so",
        "-L",
        "examples/hello",
    ]);
    let json = text(&out.stdout);
    assert!(
        json.contains("\"memory_base\": 131072") && json.contains("\"ops\""),
        "{json}"
    );
}

/// A non-PIE main that defines `malloc` without exporting it (and `free`) runs, and the
/// user is told once, on standard error, why its allocator may hand out the libraries'
/// memory and how to link it; the examples, which export both, get no warning.
#[test]
fn a_main_whose_allocator_cannot_be_started_runs_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.wasm");
    let wasm = wat::parse_str(
        r#"(module
             (memory (export "memory") 2)
             (table (export "__indirect_function_table") 1 funcref)
             (global (export "__stack_pointer") (mut i32) (i32.const 65536))
             (func $malloc (param i32) (result i32) i32.const 0)
             (func (export "_start")))"#,
    )
    .unwrap();
    std::fs::write(&main, wasm).unwrap();
    for engine in engines() {
        let out = dylink(&["run", "--engine", engine, main.to_str().unwrap()]);
        assert!(out.status.success(), "{engine}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{engine}: {err}");
        assert!(
            err.starts_with("dylink: warning: ")
                && err.contains("defines `malloc` but does not export it")
                && err.contains("--export=malloc --export=free"),
            "{engine}: {err}"
        );
        let mut args = vec!["run", "--engine", engine];
        args.extend(HELLO);
        let out = dylink(&args);
        assert_eq!(text(&out.stderr), "", "{engine}");
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failing_exit() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "examples/hello/main.c"],
            "is not a WebAssembly module",
        ),
        (
            &["run", "no/such/program.wasm"],
            "cannot read no/such/program.wasm",
        ),
        (
            &[
                "run",
                "--preload",
                "libnope.so",
                "-L",
                "examples/hello",
                "examples/hello/main.wasm",
            ],
            "library `libnope.so` not found; tried <repo>/examples/hello/libnope.so",
        ),
        (
            &["run", "-L", "no/such/dir", "examples/hello/main.wasm"],
            "library directory no/such/dir does not exist",
        ),
        (
            &["run", "--bind", "now", "examples/hello/main.wasm"],
            "needs function `greeting`",
        ),
    ];
    for (args, words) in cases {
        let out = dylink(args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.starts_with("dylink: error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(err.contains(words), "{args:?}: {err}");
    }
    let out = dylink(&["run", "--engine", "foo", "x.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid value 'foo'"));
    // A library that is not a dynamic library.
    let out = dylink(&[
        "ldd",
        "examples/hello/main.wasm",
        "--preload",
        "host.wasm",
        "-L",
        "examples/plugins",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("not a dynamic library"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn debug_traces_libraries_bindings_and_ops() {
    let out = Command::new(env!("CARGO_BIN_EXE_dylink"))
        .args(["--debug", "libs,bindings,ops", "run"])
        .args(HELLO)
        .current_dir(repo())
        .env("DYLINK_CACHE_DIR", test_cache())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("libgreet.so => <repo>/examples/hello/libgreet.so"),
        "{err}"
    );
    assert!(err.contains("env.greeting ->"), "{err}");
    assert!(err.contains("instantiate m1"), "{err}");
}

/// `run --debug cache`: (modules read from the compile cache, compiled and
/// stored), from its one line about it.
fn cache_counts(args: &[&str]) -> (u64, u64) {
    let mut all = vec!["--debug", "cache", "run"];
    all.extend(args);
    let out = dylink(&all);
    let err = text(&out.stderr);
    assert_eq!(
        text(&out.stdout),
        "Hello from libgreet.so!\n",
        "{args:?}: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("modules read from the compile cache"))
        .unwrap_or_else(|| panic!("{args:?}: no cache line in {err}"));
    // "{hits} modules read from the compile cache in {dir}, {stored} compiled and stored"
    let number_before = |words: &str| -> u64 {
        let before = &line[..line.find(words).unwrap()];
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        before[before.len() - digits..]
            .parse()
            .unwrap_or_else(|_| panic!("{line}"))
    };
    (
        number_before(" modules read"),
        number_before(" compiled and stored"),
    )
}

#[test]
fn compiled_code_is_kept_between_runs_and_a_damaged_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let mut args = vec!["--cache-dir", cache_arg];
    args.extend(HELLO);
    let (hits, stored) = cache_counts(&args);
    assert_eq!(hits, 0, "a new cache has nothing to read");
    assert!(
        stored >= 2,
        "the program and its library are stored: {stored}"
    );
    assert_eq!(
        cache_counts(&args),
        (stored, 0),
        "the second run compiles nothing"
    );
    // Truncate every entry: each reads back as nothing usable, so it is compiled again.
    let entries: Vec<PathBuf> = walk(&cache)
        .into_iter()
        .filter(|p| {
            // modules/<compiler and version>/<key>, beside <key>.stats
            p.extension().is_none()
                && p.parent()
                    .and_then(Path::parent)
                    .is_some_and(|d| d.ends_with("modules"))
        })
        .collect();
    assert_eq!(entries.len() as u64, stored, "{entries:?}");
    for e in &entries {
        let bytes = std::fs::read(e).unwrap();
        std::fs::write(e, &bytes[..bytes.len() / 2]).unwrap();
    }
    assert_eq!(
        cache_counts(&args),
        (0, stored),
        "damaged entries are compiled again"
    );
    assert_eq!(cache_counts(&args), (stored, 0), "and rewritten");

    // --no-cache wins over DYLINK_CACHE_DIR and writes nothing.
    let unused = dir.path().join("unused");
    let mut no_cache = vec!["run", "--no-cache"];
    no_cache.extend(HELLO);
    let out = Command::new(env!("CARGO_BIN_EXE_dylink"))
        .args(&no_cache)
        .current_dir(repo())
        .env_remove("DYLINK_DEBUG")
        .env("DYLINK_CACHE_DIR", &unused)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "Hello from libgreet.so!\n");
    assert!(!unused.exists(), "--no-cache created {}", unused.display());

    // A directory that cannot be made is an error naming it and the way out.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let in_file = file.join("cache");
    let mut bad = vec!["run", "--cache-dir", in_file.to_str().unwrap()];
    bad.extend(HELLO);
    let out = dylink(&bad);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.starts_with("dylink: error: cannot keep compiled code in ")
            && err.contains("--no-cache")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[cfg(feature = "wasmer")]
#[test]
fn wasmer_keeps_compiled_code_between_runs_too() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut args = vec!["--engine", "wasmer", "--cache-dir", cache.to_str().unwrap()];
    args.extend(HELLO);
    // The main module is compiled once for WASI to read its imports and reaches the linker
    // from the cache: at most that one is read on a first run.
    let (hits, stored) = cache_counts(&args);
    assert!(
        hits <= 1 && stored >= 2,
        "first run: {hits} read, {stored} stored"
    );
    let (hits, stored_again) = cache_counts(&args);
    assert!(
        stored_again == 0 && hits >= stored,
        "second run: {hits} read, {stored_again} stored"
    );
    // wasmer/<engine id>/<sha-256>.bin: truncated, each is compiled and stored again.
    let entries: Vec<PathBuf> = walk(&cache.join("wasmer"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    assert_eq!(entries.len() as u64, stored, "{entries:?}");
    for e in &entries {
        let bytes = std::fs::read(e).unwrap();
        std::fs::write(e, &bytes[..bytes.len() / 2]).unwrap();
    }
    let (_, restored) = cache_counts(&args);
    assert!(
        restored >= 2,
        "damaged entries are compiled again: {restored}"
    );
    assert_eq!(cache_counts(&args).1, 0, "and rewritten");
    // A directory that cannot be made is an error naming it and the way out.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let in_file = file.join("cache");
    let mut bad = vec![
        "run",
        "--engine",
        "wasmer",
        "--cache-dir",
        in_file.to_str().unwrap(),
    ];
    bad.extend(HELLO);
    let out = dylink(&bad);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.starts_with("dylink: error: cannot keep compiled code in "),
        "{err}"
    );
}
