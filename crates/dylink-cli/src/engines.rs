//! Running a program on each engine, with that engine's WASI preview1 implementation.

use std::path::PathBuf;

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
    let engine = Engine::new(&cfg).map_err(|e| wt("configuring wasmtime", e))?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().args(&job.argv).envs(&job.env);
    for (host, guest) in &job.dirs {
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| wt(&format!("cannot give the program {}", host.display()), e))?;
    }
    let mut store = Store::new(&engine, wasi.build_p1());
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)
        .map_err(|e| wt("adding WASI", e))?;
    let mut options = Options::new(job.source);
    options.config = job.config;
    let program = Program::load(&mut store, &linker, options, &job.path, &job.bytes)?;
    let Some(start) = program.main_func(&mut store, "_start") else {
        anyhow::bail!("{} exports no `_start`: it is not a WASI command", job.path);
    };
    match start.call(&mut store, &[], &mut []) {
        Ok(()) => Ok(0),
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

#[cfg(feature = "wasmer")]
pub fn run_wasmer(job: Job) -> Result<i32> {
    use dylink_wasmer::{Options, Program};
    use wasmer::Store;
    use wasmer_wasix::{WasiEnv, WasiError};

    let mut store = Store::default();
    let mut builder = WasiEnv::builder(job.argv.first().cloned().unwrap_or_default())
        .args(job.argv.iter().skip(1))
        .envs(job.env.iter().cloned());
    for (host, guest) in &job.dirs {
        builder = builder.map_dir(guest, host)?;
    }
    let mut env = builder.finalize(&mut store)?;
    let imports = env.import_object_for_all_wasi_versions_preview1(&mut store)?;
    let options = {
        let mut o = Options::new(job.source);
        o.config = job.config;
        o
    };
    let program = Program::load(&mut store, &imports, options, &job.path, &job.bytes)?;
    env.initialize_with_memory(
        &mut store,
        program.main_instance(),
        Some(program.memory().0),
        false,
    )?;
    let start = program.main_func(&mut store, "_start").ok_or_else(|| {
        anyhow::anyhow!("{} exports no `_start`: it is not a WASI command", job.path)
    })?;
    let result = start.call(&mut store, &[]);
    env.on_exit(&mut store, None);
    match result {
        Ok(_) => Ok(0),
        Err(e) => match e.downcast::<WasiError>() {
            Ok(WasiError::Exit(code)) => Ok(code.raw()),
            Ok(other) => Err(anyhow::anyhow!("{}: {other}", job.path)),
            Err(e) => Err(anyhow::anyhow!("{} trapped: {}", job.path, e.message())),
        },
    }
}

#[cfg(not(feature = "wasmer"))]
pub fn run_wasmer(_: Job) -> Result<i32> {
    anyhow::bail!(
        "this dylink was built without wasmer; build it with `cargo build -p dylink-cli --features wasmer`"
    )
}
