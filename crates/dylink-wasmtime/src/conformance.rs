//! The conformance suite's adapter for wasmtime (feature `conformance`): how the suite loads,
//! calls and inspects a program. `cargo test -p dylink-wasmtime --test conformance` runs it.

use std::sync::{Arc, Mutex};

use crate::{DirSource, Options, Program};
use dylink_conformance::{Adapter, LoadSpec, Program as Suite};
use wasmtime::{Caller, Config, Engine, Linker, Store, Val};

/// The suite's wasmtime adapter.
#[derive(Debug)]
pub struct Wasmtime {
    engine: Engine,
}

impl Wasmtime {
    /// An engine with what the suite's programs use: threads, shared memory, exceptions,
    /// memory64.
    pub fn new() -> Self {
        let mut config = Config::new();
        config
            .wasm_threads(true)
            .shared_memory(true)
            .wasm_exceptions(true)
            .wasm_memory64(true);
        Self {
            engine: Engine::new(&config).expect("engine"),
        }
    }
}

impl Default for Wasmtime {
    fn default() -> Self {
        Self::new()
    }
}

struct Loaded {
    store: Store<()>,
    program: Program<()>,
    output: Arc<Mutex<String>>,
}

fn to_vals(ty: &wasmtime::FuncType, args: &[i64]) -> Vec<Val> {
    ty.params()
        .zip(args)
        .map(|(t, a)| match t {
            wasmtime::ValType::I64 => Val::I64(*a),
            _ => Val::I32(*a as i32),
        })
        .collect()
}

fn call(store: &mut Store<()>, f: wasmtime::Func, args: &[i64]) -> Result<Option<i64>, String> {
    let ty = f.ty(&*store);
    let params = to_vals(&ty, args);
    let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
    f.call(&mut *store, &params, &mut results)
        .map_err(|e| format!("{e:#}"))?;
    Ok(results.first().map(|v| match v {
        Val::I32(x) => *x as i64,
        Val::I64(x) => *x,
        _ => 0,
    }))
}

impl Suite for Loaded {
    fn call(&mut self, func: &str, args: &[i64]) -> Result<Option<i64>, String> {
        let f = self
            .program
            .main_func(&mut self.store, func)
            .ok_or_else(|| format!("main exports no function `{func}`"))?;
        call(&mut self.store, f, args)
    }
    fn call_ptr(&mut self, ptr: u64, args: &[i64]) -> Result<Option<i64>, String> {
        let f = self
            .program
            .func_at(&mut self.store, ptr)
            .ok_or_else(|| format!("slot {ptr} holds no function"))?;
        call(&mut self.store, f, args)
    }
    fn read_u32(&mut self, addr: u64) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.program.read_memory(&mut self.store, addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn dlopen(&mut self, name: &str, flags: i32) -> Result<u64, String> {
        self.program
            .dlopen(&mut self.store, Some(name), flags)
            .map(crate::core::Handle::value)
            .map_err(|e| e.to_string())
    }
    fn dlsym(&mut self, handle: u64, name: &str) -> Result<u64, String> {
        let h = crate::core::Handle::from_value(handle, false);
        self.program
            .dlsym(&mut self.store, h, name, None)
            .map(|v| v.as_u64())
            .map_err(|e| e.to_string())
    }
    fn dlclose(&mut self, handle: u64) -> Result<(), String> {
        match crate::core::Handle::from_value(handle, false) {
            crate::core::Handle::Module(m) => self
                .program
                .dlclose(&mut self.store, m)
                .map_err(|e| e.to_string()),
            h => Err(format!("not a module handle: {h:?}")),
        }
    }
    fn output(&mut self) -> String {
        self.output.lock().unwrap().clone()
    }
    fn host_calls(&mut self) -> u64 {
        self.program.host_calls()
    }
    fn warnings(&mut self) -> Vec<String> {
        self.program.warnings()
    }
    fn layout(&mut self) -> String {
        self.program.with_core(|c| c.to_string())
    }
}

impl Adapter for Wasmtime {
    fn engine(&self) -> &'static str {
        "wasmtime"
    }

    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn Suite>, String> {
        let mut store = Store::new(&self.engine, ());
        let mut linker = Linker::new(&self.engine);
        let output = Arc::new(Mutex::new(String::new()));
        let memory = crate::MemoryCell::default();
        let (out, mem) = (output.clone(), memory.clone());
        linker
            .func_wrap(
                "test",
                "log_str",
                move |caller: Caller<'_, ()>, ptr: i32| {
                    let s = match mem.get() {
                        Some(m) => m
                            .read_cstr(&caller, ptr as u32 as u64, 1 << 16)
                            .unwrap_or_else(|e| format!("<{e}>")),
                        None => "<no memory yet>".into(),
                    };
                    out.lock().unwrap().push_str(&s);
                },
            )
            .map_err(|e| e.to_string())?;
        let out = output.clone();
        linker
            .func_wrap("test", "log_int", move |v: i32| {
                out.lock().unwrap().push_str(&v.to_string());
            })
            .map_err(|e| e.to_string())?;
        let mut source = DirSource::new();
        source.mount("/", &spec.root).map_err(|e| e.to_string())?;
        let mut options = Options::new(source);
        options.memory = memory;
        options.config.search.library_path = spec.library_path.clone();
        options.config.search.roots = spec.roots.clone();
        options.config.search.cwd = "/app".into();
        options.config.preload = spec.preload.clone();
        if spec.bind_now {
            options.config.bind = crate::BindMode::Now;
        }
        let main = std::fs::read(spec.root.join(spec.main.trim_start_matches('/')))
            .map_err(|e| format!("{}: {e}", spec.main))?;
        let program = Program::load(&mut store, &linker, options, &spec.main, &main)
            .map_err(|e| e.to_string())?;
        program.enable_threads(|| ());
        Ok(Box::new(Loaded {
            store,
            program,
            output,
        }))
    }
}
