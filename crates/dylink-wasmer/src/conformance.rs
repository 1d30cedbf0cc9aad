//! The conformance suite's adapter for wasmer (feature `conformance`): how the suite loads,
//! calls and inspects a program. `cargo test -p dylink-wasmer --test conformance` runs it.

use std::sync::{Arc, Mutex};

use crate::{DirSource, MemoryCell, Options, Program};
use dylink_conformance::{Adapter, LoadSpec, Program as Suite};
use wasmer::{Function, FunctionEnv, FunctionEnvMut, Imports, Store, Type, Value};

/// The suite's wasmer adapter.
#[derive(Debug, Default)]
pub struct Wasmer;

struct Loaded {
    store: Store,
    program: Program,
    output: Arc<Mutex<String>>,
}

fn call(store: &mut Store, f: &wasmer::Function, args: &[i64]) -> Result<Option<i64>, String> {
    let ty = f.ty(store);
    let params: Vec<Value> = ty
        .params()
        .iter()
        .zip(args)
        .map(|(t, a)| match t {
            Type::I64 => Value::I64(*a),
            _ => Value::I32(*a as i32),
        })
        .collect();
    let results = f.call(store, &params).map_err(|e| e.message())?;
    Ok(results.first().map(|v| match v {
        Value::I32(x) => *x as i64,
        Value::I64(x) => *x,
        _ => 0,
    }))
}

impl Suite for Loaded {
    fn call(&mut self, func: &str, args: &[i64]) -> Result<Option<i64>, String> {
        let f = self
            .program
            .main_func(&mut self.store, func)
            .ok_or_else(|| format!("main exports no function `{func}`"))?;
        call(&mut self.store, &f, args)
    }
    fn call_ptr(&mut self, ptr: u64, args: &[i64]) -> Result<Option<i64>, String> {
        let f = self
            .program
            .func_at(&mut self.store, ptr)
            .ok_or_else(|| format!("slot {ptr} holds no function"))?;
        call(&mut self.store, &f, args)
    }
    fn read_u32(&mut self, addr: u64) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.program.read_memory(&self.store, addr, &mut b)?;
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

struct Out {
    text: Arc<Mutex<String>>,
    memory: MemoryCell,
}

fn log_str(env: FunctionEnvMut<'_, Out>, ptr: i32) {
    let out = env.data();
    let s = match out.memory.get() {
        Some(m) => m
            .read_cstr(&env, ptr as u32 as u64, 1 << 16)
            .unwrap_or_else(|e| format!("<{e}>")),
        None => "<no memory yet>".into(),
    };
    out.text.lock().unwrap().push_str(&s);
}

fn log_int(env: FunctionEnvMut<'_, Out>, v: i32) {
    env.data().text.lock().unwrap().push_str(&v.to_string());
}

impl Adapter for Wasmer {
    fn engine(&self) -> &'static str {
        "wasmer"
    }

    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn Suite>, String> {
        let mut store = Store::default();
        let output = Arc::new(Mutex::new(String::new()));
        let memory = MemoryCell::default();
        let env = FunctionEnv::new(
            &mut store,
            Out {
                text: output.clone(),
                memory: memory.clone(),
            },
        );
        let mut imports = Imports::new();
        imports.define(
            "test",
            "log_str",
            Function::new_typed_with_env(&mut store, &env, log_str),
        );
        imports.define(
            "test",
            "log_int",
            Function::new_typed_with_env(&mut store, &env, log_int),
        );
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
        let program = Program::load(&mut store, &imports, options, &spec.main, &main)
            .map_err(|e| e.to_string())?;
        program.enable_threads();
        Ok(Box::new(Loaded {
            store,
            program,
            output,
        }))
    }
}
