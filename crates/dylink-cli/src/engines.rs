//! Running a program on each engine, with that engine's WASI preview1 implementation.

use std::path::PathBuf;
#[cfg(feature = "wasmer")]
use std::sync::Arc;
#[cfg(feature = "wasmer")]
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use dylink_core::Config;
use dylink_fs::DirSource;

/// Everything a run needs, engine aside.
pub struct Job {
    pub config: Config,
    pub source: DirSource,
    /// The program's virtual path (its canonical host path).
    pub path: String,
    pub bytes: Vec<u8>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Host directory and the guest path it appears at.
    pub dirs: Vec<(PathBuf, String)>,
    /// Where compiled code is kept between runs (wasmtime).
    pub cache: CompileCache,
}

/// Where compiled code is kept between runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileCache {
    /// Nowhere: everything is compiled afresh.
    Off,
    /// The directory the user named: failing to use it is an error.
    Named(PathBuf),
    /// The user's cache directory: if it cannot be used, the program runs without it.
    Default(PathBuf),
}

impl CompileCache {
    /// What `make` makes of the chosen directory (made absolute); `None` when there is
    /// none, or when the default one cannot be used. A named one that cannot be used is an
    /// error naming it and the way out.
    #[cfg_attr(not(any(feature = "wasmtime", feature = "wasmer")), allow(dead_code))]
    fn open<T, E: std::fmt::Display>(
        &self,
        make: impl FnOnce(PathBuf) -> std::result::Result<T, E>,
    ) -> Result<Option<T>> {
        let (dir, named) = match self {
            CompileCache::Off => return Ok(None),
            CompileCache::Named(dir) => (dir, true),
            CompileCache::Default(dir) => (dir, false),
        };
        let made = match std::path::absolute(dir) {
            Ok(absolute) => make(absolute).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        match made {
            Ok(cache) => Ok(Some(cache)),
            Err(e) if named => Err(anyhow::anyhow!(
                "cannot keep compiled code in {}: {e} (name a writable directory with --cache-dir, or pass --no-cache)",
                dir.display()
            )),
            Err(e) => {
                tracing::debug!(target: "dylink::cache", "running without a compile cache: {}: {e}", dir.display());
                Ok(None)
            }
        }
    }
}

/// The linker's findings about how a module was built that break the program while it runs
/// (`Diagnostic::is_build_warning`), on standard error: a user did not ask, but the program
/// may fail later for them. Symbols left for lazy binding and weak ones left undefined are
/// not printed, as a C program's dynamic linker does not print them.
fn tell_build_warnings(diagnostics: Vec<dylink_core::Diagnostic>) {
    for d in diagnostics.iter().filter(|d| d.is_build_warning()) {
        eprintln!("dylink: warning: {d}");
    }
}

/// wasmtime's on-disk cache of compiled code in the chosen directory. Keys are the module's
/// bytes and the engine's settings and version, so a changed library or a new dylink
/// compiles again; an entry that does not read back (truncated, say) is compiled again and
/// rewritten. Code is loaded from there as the user's own files are: it is trusted.
#[cfg(feature = "wasmtime")]
fn wasmtime_cache(choice: &CompileCache) -> Result<Option<wasmtime::Cache>> {
    choice.open(|dir| {
        let mut config = wasmtime::CacheConfig::new();
        config.with_directory(dir);
        wasmtime::Cache::new(config)
    })
}

/// The function that runs the program: a command's `_start`, or a reactor's `__main_void`
/// (called after `_initialize`, which the linker runs at load; then its `exit`, if exported,
/// with the result), and how many results it has.
pub fn entry_point(has: impl FnMut(&str) -> bool, path: &str) -> Result<(&'static str, usize)> {
    let mut has = has;
    if has("_start") {
        Ok(("_start", 0))
    } else if has("__main_void") {
        Ok(("__main_void", 1))
    } else {
        anyhow::bail!(
            "{path} exports neither `_start` (a WASI command) nor `__main_void` (a reactor built with -Wl,--export=__main_void)"
        )
    }
}

#[cfg(feature = "wasmtime")]
pub fn run_wasmtime(job: Job) -> Result<i32> {
    use dylink_wasmtime::{Options, Program};
    use wasmtime::{Config as EngineConfig, Engine, Linker, Store};
    use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder, p1::WasiP1Ctx};

    // wasmtime's error type is its own; carry its message into anyhow's.
    let wt = |context: &str, e: wasmtime::Error| anyhow::anyhow!("{context}: {e:#}");
    let mut cfg = EngineConfig::new();
    cfg.wasm_threads(true)
        .shared_memory(true)
        .wasm_exceptions(true)
        .wasm_memory64(true);
    let cache = wasmtime_cache(&job.cache)?;
    cfg.cache(cache.clone());
    let engine = Engine::new(&cfg).map_err(|e| wt("configuring wasmtime", e))?;
    // Each thread's store gets a WASI context of its own, made the same way: the same
    // arguments, environment, stdio and directories (an fd opened on one thread is not
    // visible on another).
    let (argv, envs, dirs) = (job.argv.clone(), job.env.clone(), job.dirs.clone());
    let make_wasi = move || -> wasmtime::Result<WasiP1Ctx> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio().args(&argv).envs(&envs);
        for (host, guest) in &dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| e.context(format!("cannot give the program {}", host.display())))?;
        }
        Ok(wasi.build_p1())
    };
    let mut store = Store::new(&engine, make_wasi().map_err(|e| wt("setting up WASI", e))?);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)
        .map_err(|e| wt("adding WASI", e))?;
    let mut options = Options::new(job.source);
    options.config = job.config;
    let program = Program::load(&mut store, &linker, options, &job.path, &job.bytes)?;
    tell_build_warnings(program.diagnostics());
    if let Some(cache) = &cache {
        tracing::debug!(
            target: "dylink::cache",
            "{} modules read from the compile cache in {}, {} compiled and stored",
            cache.cache_hits(),
            cache.directory().display(),
            cache.cache_misses()
        );
    }
    // wasi-threads: each thread runs in a store of its own. A thread that exits the
    // program (proc_exit) or traps ends the whole process, as in wasmtime's own CLI.
    program.enable_threads(move || {
        // The main thread's context was made the same way, so this cannot fail unless a
        // directory vanished meanwhile; the thread then runs without it.
        make_wasi().unwrap_or_else(|e| {
            tracing::error!("a thread's WASI: {e:#}");
            WasiCtxBuilder::new().inherit_stdio().build_p1()
        })
    });
    let path = job.path.clone();
    program.on_thread_exit(move |tid, ran| {
        let Err(e) = ran else { return };
        let code = match e.downcast_ref::<I32Exit>() {
            Some(exit) => exit.0,
            None => {
                eprintln!("dylink: {path}: thread {tid} trapped: {}", e.root_cause());
                1
            }
        };
        std::process::exit(code);
    });
    let (entry, returns) = entry_point(
        |name| program.main_func(&mut store, name).is_some(),
        &job.path,
    )?;
    let func = program
        .main_func(&mut store, entry)
        .expect("entry_point checked it");
    let mut results = vec![wasmtime::Val::I32(0); returns];
    let mut ran = func.call(&mut store, &[], &mut results);
    if ran.is_ok() && returns == 1 {
        // A reactor's main returned: exit with its result, as a command's _start would.
        if let Some(exit) = program.main_func(&mut store, "exit") {
            ran = exit.call(&mut store, &[results[0]], &mut []);
        }
    }
    match ran {
        Ok(()) => Ok(results.first().and_then(|v| v.i32()).unwrap_or(0)),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(anyhow::anyhow!("{} trapped: {}", job.path, e.root_cause())),
        },
    }
}

#[cfg(not(feature = "wasmtime"))]
pub fn run_wasmtime(_: Job) -> Result<i32> {
    anyhow::bail!("this dylink was built without wasmtime; build it with `--features wasmtime`")
}

/// wasmer-wasix's on-disk module cache in `<chosen directory>/wasmer`, as the compile step
/// of `dylink_wasmer::Options::compile_with`: a module read back is used as compiled; one
/// that is not there (or does not read back) is compiled and stored. Keyed by the module's
/// SHA-256 and the engine's settings and version.
#[cfg(feature = "wasmer")]
fn wasmer_cache(choice: &CompileCache) -> Result<Option<WasmerCache>> {
    use wasmer_wasix::runtime::module_cache::{FileSystemCache, ModuleCache};
    use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
    let Some(dir) = choice.open(|dir| {
        let dir = dir.join("wasmer");
        std::fs::create_dir_all(&dir).map(|()| dir)
    })?
    else {
        return Ok(None);
    };
    // wasmer-wasix's cache never removes anything; wasmtime's keeps itself near 512 MiB.
    trim_cache(&dir, WASMER_CACHE_LIMIT, WASMER_CACHE_LIMIT / 4 * 3);
    // The cache does its file work as tasks on a runtime that runs them by itself.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tasks = Arc::new(TokioTaskManager::new(runtime));
    let cache = FileSystemCache::new(&dir, tasks.clone());
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let counted = counts.clone();
    let with: dylink_wasmer::CompileWith = Arc::new(move |engine, bytes| {
        let key = wasmer_types::ModuleHash::sha256(bytes);
        let tasks = tasks.runtime_handle();
        // Asked first: loading a module that is not there logs a warning.
        if tasks.block_on(cache.contains(key, engine)).unwrap_or(false)
            && let Ok(module) = tasks.block_on(cache.load(key, engine))
        {
            counted[0].fetch_add(1, Ordering::Relaxed);
            return Ok(module);
        }
        let module = wasmer::Module::new(engine, bytes).map_err(|e| e.to_string())?;
        if tasks.block_on(cache.save(key, engine, &module)).is_ok() {
            counted[1].fetch_add(1, Ordering::Relaxed);
        }
        Ok(module)
    });
    Ok(Some(WasmerCache { with, counts, dir }))
}

/// Bytes of compiled code kept in the wasmer cache directory before the oldest is removed.
#[cfg(feature = "wasmer")]
const WASMER_CACHE_LIMIT: u64 = 1 << 30;

/// When the files under `dir` hold more than `limit` bytes, remove those written longest
/// ago until they hold at most `to`. A file that cannot be read or removed is skipped:
/// trimming is housekeeping, never a reason to fail a run. wasmer-wasix writes each entry
/// to a temporary file and renames it into place, so a run reading an entry while another
/// removes it sees the whole file or none (and compiles it again).
#[cfg_attr(not(feature = "wasmer"), allow(dead_code))]
fn trim_cache(dir: &std::path::Path, limit: u64, to: u64) {
    fn files(dir: &std::path::Path, out: &mut Vec<(std::time::SystemTime, u64, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                files(&entry.path(), out);
            } else if meta.is_file() {
                let when = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((when, meta.len(), entry.path()));
            }
        }
    }
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut total: u64 = all.iter().map(|(_, len, _)| len).sum();
    if total <= limit {
        return;
    }
    all.sort();
    for (_, len, path) in all {
        if total <= to {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            tracing::debug!(target: "dylink::cache", "removed {} ({len} bytes) to keep the cache under {limit} bytes", path.display());
        }
    }
}

/// wasmer's compile step through the on-disk cache, and what it did, for `--debug cache`.
#[cfg(feature = "wasmer")]
struct WasmerCache {
    with: dylink_wasmer::CompileWith,
    /// Modules read back, modules compiled and stored.
    counts: Arc<[AtomicU64; 2]>,
    dir: PathBuf,
}

#[cfg(feature = "wasmer")]
pub fn run_wasmer(job: Job) -> Result<i32> {
    use dylink_wasmer::{Options, Program};
    use wasmer::Store;
    use wasmer_wasix::{WasiEnv, WasiError};

    // wasmer-wasix does its I/O on a tokio runtime, entered for the whole run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let cache = wasmer_cache(&job.cache)?;
    let mut store = Store::default();
    // Each thread's store gets a WASI environment of its own, made the same way: the same
    // arguments, environment, stdio and directories.
    let (argv, envs, dirs) = (job.argv.clone(), job.env.clone(), job.dirs.clone());
    let handle = runtime.handle().clone();
    let make_wasi = move |store: &mut Store| -> Result<wasmer_wasix::WasiFunctionEnv> {
        let mut builder = WasiEnv::builder(argv.first().cloned().unwrap_or_default())
            .args(argv.iter().skip(1))
            .envs(envs.iter().cloned());
        builder.set_engine(store.engine().clone());
        if !dirs.is_empty() {
            // The host's file system, from which --dir maps directories.
            let host_fs = wasmer_wasix::virtual_fs::host_fs::FileSystem::new(handle.clone(), "/")?;
            builder
                .set_fs(Box::new(host_fs)
                    as Box<dyn wasmer_wasix::virtual_fs::FileSystem + Send + Sync>);
        }
        for (host, guest) in &dirs {
            let host = std::fs::canonicalize(host)
                .map_err(|e| anyhow::anyhow!("cannot give the program {}: {e}", host.display()))?;
            builder = builder.map_dir(guest, host)?;
        }
        Ok(builder.finalize(store)?)
    };
    let env = make_wasi(&mut store)?;
    // The main module compiled for WASI to see which version it imports: through the
    // cache too, so a program started again compiles nothing.
    let main = match &cache {
        Some(c) => (c.with)(store.engine(), &job.bytes).map_err(anyhow::Error::msg)?,
        None => wasmer::Module::new(&store, &job.bytes)?,
    };
    let imports = env.import_object_for_all_wasi_versions(&mut store, &main)?;
    let mut options = Options::new(job.source);
    options.config = job.config;
    options.compile_with = cache.as_ref().map(|c| c.with.clone());
    // WASI must know the memory before any constructor runs: wasmer-wasix finds it among
    // the main module's exports.
    let mut wasi = env.clone();
    options.before_init = Some(Box::new(move |store, program| {
        wasi.initialize(store, program.main_instance())
            .map_err(|e| format!("WASI on wasmer needs the main module to export its memory: {e}"))
    }));
    let program = Program::load(&mut store, &imports, options, &job.path, &job.bytes)?;
    tell_build_warnings(program.diagnostics());
    if let Some(c) = &cache {
        tracing::debug!(
            target: "dylink::cache",
            "{} modules read from the compile cache in {}, {} compiled and stored",
            c.counts[0].load(Ordering::Relaxed),
            c.dir.display(),
            c.counts[1].load(Ordering::Relaxed)
        );
    }
    // wasi-threads: each thread runs in a store of its own with WASI made for it. A thread
    // that exits the program (proc_exit) or traps ends the whole process.
    let (handle, main_module) = (runtime.handle().clone(), main.clone());
    program.enable_threads_with(move |store| {
        let _entered = handle.enter();
        let env = make_wasi(store).map_err(|e| format!("{e:#}"))?;
        let imports = env
            .import_object_for_all_wasi_versions(store, &main_module)
            .map_err(|e| e.to_string())?;
        let mut wasi = env.clone();
        Ok(dylink_wasmer::ThreadHost {
            imports,
            before_start: Some(Box::new(move |store, group| {
                wasi.initialize(store, group.main_instance())
                    .map_err(|e| e.to_string())
            })),
        })
    });
    let path = job.path.clone();
    program.on_thread_exit(move |tid, ran| {
        let Err(e) = ran else { return };
        let code = match e.downcast::<WasiError>() {
            Ok(WasiError::Exit(code)) => code.raw(),
            Ok(other) => {
                eprintln!("dylink: {path}: thread {tid}: {other}");
                1
            }
            Err(e) => {
                eprintln!("dylink: {path}: thread {tid} trapped: {}", e.message());
                1
            }
        };
        std::process::exit(code);
    });
    let (entry, _) = entry_point(
        |name| program.main_func(&mut store, name).is_some(),
        &job.path,
    )?;
    let func = program
        .main_func(&mut store, entry)
        .expect("entry_point checked it");
    let mut result = func.call(&mut store, &[]);
    if let Ok(values) = &result {
        // A reactor's main returned: exit with its result, as a command's _start would.
        if let (Some(code), Some(exit)) = (
            values.first().cloned(),
            program.main_func(&mut store, "exit"),
        ) {
            result = exit.call(&mut store, &[code]);
        }
    }
    let code = match result {
        Ok(values) => Ok(values.first().and_then(|v| v.i32()).unwrap_or(0)),
        Err(e) => match e.downcast::<WasiError>() {
            Ok(WasiError::Exit(code)) => Ok(code.raw()),
            Ok(other) => Err(anyhow::anyhow!("{}: {other}", job.path)),
            Err(e) => Err(anyhow::anyhow!("{} trapped: {}", job.path, e.message())),
        },
    };
    env.on_exit(&mut store, None);
    code
}

#[cfg(not(feature = "wasmer"))]
pub fn run_wasmer(_: Job) -> Result<i32> {
    anyhow::bail!(
        "this dylink was built without wasmer; build it with `cargo build -p dylink-cli --features wasmer`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_over_its_limit_loses_its_oldest_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("engine-v1");
        std::fs::create_dir(&sub).unwrap();
        let start = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..10u64 {
            let path = sub.join(format!("{i}.bin"));
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(start + std::time::Duration::from_secs(i))
                .unwrap();
        }
        // Under the limit: nothing goes.
        trim_cache(dir.path(), 1000, 500);
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 10);
        // Over it: the oldest go until 500 bytes are left.
        trim_cache(dir.path(), 999, 500);
        let mut left: Vec<String> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["5.bin", "6.bin", "7.bin", "8.bin", "9.bin"]);
        // A directory that is not there is no error.
        trim_cache(&dir.path().join("absent"), 0, 0);
    }
}
