//! `dylink`: run, inspect and explain dynamically linked WASI programs, ld.so style.
//!
//! - `dylink run [--engine wasmtime|wasmer] [-L DIR]… PROGRAM.wasm [ARGS]…` runs a WASI
//!   preview1 program with its NEEDED libraries and whatever it dlopens.
//! - `dylink ldd PROGRAM.wasm [-L DIR]…` prints what would be loaded from where.
//! - `dylink plan PROGRAM.wasm` prints the layout and the plan, `--json` for tools.
//!
//! Library roots are exactly the directories the user names (`-L`, `LD_LIBRARY_PATH`): nothing
//! else on the host is readable by the program's `dlopen`.

mod engines;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dylink_core::{BindMode, Config, HostNames, Linker, Op, Outcome};
use dylink_fs::DirSource;

#[derive(Parser, Debug)]
#[command(
    name = "dylink",
    version,
    about = "A dynamic linker for WebAssembly dylink.0 programs"
)]
struct Cli {
    /// Trace what the linker does, like LD_DEBUG: `libs` (where each library came from),
    /// `bindings` (what each import bound to), `ops` (each step applied), `cache` (compiled
    /// code read from and stored in the disk cache). Also read from the DYLINK_DEBUG
    /// environment variable.
    #[arg(long, global = true, value_delimiter = ',', env = "DYLINK_DEBUG")]
    debug: Vec<DebugTopic>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DebugTopic {
    Libs,
    Bindings,
    Ops,
    Cache,
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum EngineName {
    Wasmtime,
    Wasmer,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Bind {
    Lazy,
    Now,
}

/// Where libraries come from and how they bind; shared by every subcommand.
#[derive(clap::Args, Debug, Clone)]
struct LinkArgs {
    /// A directory to search for libraries (repeatable, searched in order). Only these
    /// directories (and those in LD_LIBRARY_PATH) are readable by the program's dlopen.
    #[arg(short = 'L', long = "library-path", value_name = "DIR")]
    library_path: Vec<PathBuf>,
    /// A library to load right after the program, before its NEEDED (like LD_PRELOAD);
    /// a non-PIE main names its libraries this way.
    #[arg(long, value_name = "LIB")]
    preload: Vec<String>,
    /// When imports bind: lazily (a missing function traps when called) or now (every
    /// function must be defined at load time, like LD_BIND_NOW).
    #[arg(long, value_enum, default_value = "lazy")]
    bind: Bind,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a WASI preview1 program with its libraries; the exit code is the program's.
    Run {
        /// The engine to run on.
        #[arg(long, value_enum, default_value = "wasmtime")]
        engine: EngineName,
        #[command(flatten)]
        link: LinkArgs,
        /// Give the program a host directory, as HOST or HOST::GUEST (repeatable).
        #[arg(long, value_name = "HOST[::GUEST]")]
        dir: Vec<String>,
        /// Set an environment variable for the program (repeatable). LD_LIBRARY_PATH here is
        /// honoured like glibc's.
        #[arg(long, value_name = "K=V")]
        env: Vec<String>,
        /// Also honour the host's LD_LIBRARY_PATH.
        #[arg(long)]
        host_library_path: bool,
        /// Where the engine keeps the code it compiled, so the next run of the same program
        /// and libraries compiles nothing (default: $XDG_CACHE_HOME/dylink, else
        /// ~/.cache/dylink).
        #[arg(long, value_name = "DIR", env = "DYLINK_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Compile everything afresh and keep nothing on disk (wins over --cache-dir).
        #[arg(long)]
        no_cache: bool,
        /// The program.
        program: PathBuf,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the libraries a program would load and where each is found, without running
    /// anything. Exits non-zero when the program would not link.
    Ldd {
        /// The program.
        program: PathBuf,
        #[command(flatten)]
        link: LinkArgs,
        /// Also list undefined, weak and duplicate symbols and each module's footprint.
        #[arg(long)]
        symbols: bool,
    },
    /// Print the memory and table layout and the linker's plan for a program.
    Plan {
        /// The program.
        program: PathBuf,
        #[command(flatten)]
        link: LinkArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.debug);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: what failed and what to do; the chain of causes joined.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("dylink: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(topics: &[DebugTopic]) {
    if topics.is_empty() {
        return;
    }
    let all = topics.contains(&DebugTopic::All);
    let mut filter = String::from("warn");
    for (topic, target) in [
        (DebugTopic::Libs, "dylink::libs"),
        (DebugTopic::Bindings, "dylink::bindings"),
        (DebugTopic::Ops, "dylink::ops"),
        (DebugTopic::Cache, "dylink::cache"),
    ] {
        if all || topics.contains(&topic) {
            filter.push_str(&format!(",{target}=trace"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}

/// The program's bytes and its virtual path (its canonical host path).
fn read_program(program: &Path) -> Result<(String, Vec<u8>)> {
    let bytes =
        std::fs::read(program).with_context(|| format!("cannot read {}", program.display()))?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!(
            "{} is not a WebAssembly module (no \\0asm header)",
            program.display()
        );
    }
    let path = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    Ok((path.to_string_lossy().into_owned(), bytes))
}

/// Mount every named directory at its own canonical path, so paths in messages and in
/// `ldd` are the host's; search them in order; confine every name to them.
fn link_config(
    link: &LinkArgs,
    extra_dirs: &[String],
    program_path: &str,
) -> Result<(Config, DirSource)> {
    let mut config = Config {
        module_cache: Some(dylink_core::ModuleCache::process().clone()),
        workers: Some(dylink_fs::Threads::available().workers()),
        ..Config::default()
    };
    let mut source = DirSource::new();
    let mut dirs: Vec<String> = Vec::new();
    for d in link
        .library_path
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .chain(extra_dirs.iter().cloned())
    {
        let canon = std::fs::canonicalize(&d)
            .with_context(|| format!("library directory {d} does not exist"))?;
        let canon = canon.to_string_lossy().into_owned();
        if !dirs.contains(&canon) {
            source
                .mount(&canon, &canon)
                .with_context(|| format!("cannot open library directory {canon}"))?;
            dirs.push(canon);
        }
    }
    config.search.library_path = dirs.clone();
    config.search.roots = if dirs.is_empty() {
        vec!["/nonexistent-root".into()]
    } else {
        dirs
    };
    config.search.cwd = dylink_core::path::dirname(program_path).to_string();
    config.preload = link.preload.clone();
    config.bind = match link.bind {
        Bind::Lazy => BindMode::Lazy,
        Bind::Now => BindMode::Now,
    };
    Ok((config, source))
}

/// Where `run` keeps compiled code: the named directory, else the user's cache directory
/// (`$XDG_CACHE_HOME/dylink`, else `$HOME/.cache/dylink`); none with `--no-cache`.
fn compile_cache(named: Option<PathBuf>, off: bool) -> engines::CompileCache {
    if off {
        return engines::CompileCache::Off;
    }
    if let Some(dir) = named {
        return engines::CompileCache::Named(dir);
    }
    let home = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    match home("XDG_CACHE_HOME").or_else(|| home("HOME").map(|h| h.join(".cache"))) {
        Some(base) => engines::CompileCache::Default(base.join("dylink")),
        None => engines::CompileCache::Off,
    }
}

/// What a WASI preview1 host defines, for planning without an engine.
struct WasiNames;

impl HostNames for WasiNames {
    fn defines(&self, module: &str, _name: &str) -> bool {
        module == "wasi_snapshot_preview1"
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            engine,
            link,
            dir,
            env,
            host_library_path,
            cache_dir,
            no_cache,
            program,
            args,
        } => {
            let (path, bytes) = read_program(&program)?;
            // LD_LIBRARY_PATH, from --env or (when asked) the host, names more directories.
            let mut ld_path: Vec<String> = Vec::new();
            for kv in &env {
                if let Some(v) = kv.strip_prefix("LD_LIBRARY_PATH=") {
                    ld_path.extend(v.split(':').filter(|s| !s.is_empty()).map(String::from));
                }
            }
            if host_library_path && let Ok(v) = std::env::var("LD_LIBRARY_PATH") {
                ld_path.extend(v.split(':').filter(|s| !s.is_empty()).map(String::from));
            }
            let (config, source) = link_config(&link, &ld_path, &path)?;
            let mut env_pairs = Vec::new();
            for kv in &env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv}: expected K=V"))?;
                env_pairs.push((k.to_string(), v.to_string()));
            }
            let mut dirs = Vec::new();
            for d in &dir {
                let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
                dirs.push((PathBuf::from(host), guest.to_string()));
            }
            let mut argv = vec![
                program
                    .file_name()
                    .map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned()),
            ];
            argv.extend(args);
            let job = engines::Job {
                config,
                source,
                path,
                bytes,
                argv,
                env: env_pairs,
                dirs,
                cache: compile_cache(cache_dir, no_cache),
            };
            let code = match engine {
                EngineName::Wasmtime => engines::run_wasmtime(job)?,
                EngineName::Wasmer => engines::run_wasmer(job)?,
            };
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Command::Ldd {
            program,
            link,
            symbols,
        } => {
            let (path, bytes) = read_program(&program)?;
            let (config, source) = link_config(&link, &[], &path)?;
            let report = dylink_core::ldd(&config, &path, &bytes, &source)?;
            let mut ok = report.complete();
            for e in &report.entries {
                let indent = "\t".repeat(e.depth);
                match (&e.path, &e.error) {
                    (_, Some(dylink_core::Error::NotFound { .. })) => {
                        println!("{indent}{} => not found", e.name)
                    }
                    (_, Some(err)) => println!("{indent}{} => error: {err}", e.name),
                    (Some(p), None) => println!("{indent}{} => {p}", e.name),
                    (None, None) => println!("{indent}{} => ?", e.name),
                }
            }
            // Whether it would link is always checked (the exit code says); the symbol
            // findings and footprint are printed with --symbols, errors always.
            if ok {
                let linker = Linker::new(config);
                match linker.plan_startup(&path, bytes.into(), &source, &WasiNames) {
                    Ok(plan) if symbols => {
                        for d in &plan.diagnostics {
                            println!("note: {d}");
                        }
                        let mut linker = linker;
                        linker.commit(plan)?;
                        println!("footprint:");
                        for m in linker.modules() {
                            // A non-PIE main keeps its own memory and table, at fixed
                            // addresses; libraries come above them.
                            match (&m.info.defined_memory, &m.info.defined_table) {
                                (Some(mem), Some(table)) if m.is_main => println!(
                                    "\t{}: its own memory ({} pages at start) and table ({} slots)",
                                    m.path, mem.min_pages, table.min
                                ),
                                _ => println!(
                                    "\t{}: {} bytes of data at {:#x}, {} table slots at {}",
                                    m.path,
                                    m.memory_size,
                                    m.memory_base,
                                    m.table_size,
                                    m.table_base
                                ),
                            }
                        }
                    }
                    Ok(plan) => linker.abort(plan),
                    Err(dylink_core::Error::Link { diagnostics }) => {
                        ok = false;
                        for d in diagnostics.iter().filter(|d| symbols || d.is_error()) {
                            println!("{}: {d}", if d.is_error() { "error" } else { "note" });
                        }
                    }
                    Err(e) => {
                        ok = false;
                        println!("error: {e}");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plan {
            program,
            link,
            json,
        } => {
            let (path, bytes) = read_program(&program)?;
            let (config, source) = link_config(&link, &[], &path)?;
            let mut linker = Linker::new(config);
            let plan = linker.plan_startup(&path, bytes.into(), &source, &WasiNames)?;
            let ops: Vec<String> = plan.ops.iter().map(Op::to_string).collect();
            let notes: Vec<String> = plan.diagnostics.iter().map(|d| d.to_string()).collect();
            let plan_text = plan.to_string();
            let Outcome::Loaded(_) = linker.commit(plan)? else {
                bail!("the startup plan loaded nothing")
            };
            if json {
                let modules: Vec<serde_json::Value> = linker
                    .modules()
                    .map(|m| {
                        serde_json::json!({
                            "id": m.id.0, "name": m.name, "path": m.path,
                            "memory_base": m.memory_base, "memory_size": m.memory_size,
                            "table_base": m.table_base, "table_size": m.table_size,
                            "global": m.global_seq.is_some(), "needed": m.needed.iter().map(|n| n.0).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let layout = linker.main_layout().map(|l| serde_json::json!({"stack_low": l.stack_low, "stack_high": l.stack_high, "heap_base": l.heap_base, "heap_end": l.heap_end}));
                let out = serde_json::json!({
                    "program": path, "memory_bytes": linker.memory_bytes(), "table_slots": linker.table_size(),
                    "layout": layout, "modules": modules, "ops": ops, "notes": notes,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{linker}");
                print!("{plan_text}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
