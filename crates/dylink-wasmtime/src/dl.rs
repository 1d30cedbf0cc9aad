//! The guest's `dlopen`, `dlsym`, `dlclose`, `dlerror` and `dladdr` (wasi-libc prototypes and
//! flag values). Errors never trap: they reach the guest through `dlerror`.

use std::sync::atomic::Ordering;

use dylink_core::{DlFunc, Handle, ModuleId};
use wasmtime::{AsContextMut, Caller, Func, Val};

use crate::{Program, lock, val_bits};

/// The host function implementing `func` for imports of module `caller`.
pub(crate) fn host_func<T: Send + 'static>(
    program: &Program<T>,
    store: impl AsContextMut<Data = T>,
    func: DlFunc,
    caller: ModuleId,
    memory64: bool,
) -> Func {
    let ty = crate::apply::func_type(&program.shared.engine, &func.signature(memory64));
    let program = program.clone();
    Func::new(
        store,
        ty,
        move |mut cx: Caller<'_, T>, params: &[Val], results: &mut [Val]| {
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            let arg = |i: usize| params.get(i).map_or(0, val_bits);
            let ptr = |v: u64| {
                if memory64 {
                    Val::I64(v as i64)
                } else {
                    Val::I32(v as u32 as i32)
                }
            };
            results[0] = match func {
                DlFunc::Open => ptr(dlopen(
                    &program,
                    &mut cx,
                    caller,
                    arg(0),
                    arg(1) as u32 as i32,
                )),
                DlFunc::Sym => ptr(dlsym(&program, &mut cx, caller, arg(0), arg(1), memory64)),
                DlFunc::Close => Val::I32(dlclose(&program, &mut cx, arg(0), memory64)),
                DlFunc::Error => ptr(dlerror(&program, &mut cx)),
                DlFunc::Addr => Val::I32(dladdr(&program, &mut cx, arg(0), arg(1), memory64)),
            };
            Ok(())
        },
    )
}

fn set_error<T: 'static>(program: &Program<T>, message: String) {
    lock(&program.group).dl_error = Some(message);
}

/// Refuse re-entry: guest code run while a dl operation applies its changes (under the
/// linker lock) that calls back into the dl API. Constructors and destructors run outside
/// that step, so only module code such as `__wasm_init_tls` could.
fn busy<T: 'static>(program: &Program<T>, what: &str) -> bool {
    if lock(&program.group).busy {
        set_error(
            program,
            format!(
                "{what} called while another dl operation applies its changes; call it after that operation returns"
            ),
        );
        true
    } else {
        false
    }
}

fn dlopen<T: Send + 'static>(
    program: &Program<T>,
    cx: &mut Caller<'_, T>,
    caller: ModuleId,
    name_ptr: u64,
    flags: i32,
) -> u64 {
    if busy(program, "dlopen") {
        return 0;
    }
    let name = if name_ptr == 0 {
        None
    } else {
        match program.memory().read_cstr(&mut *cx, name_ptr, 4096) {
            Ok(s) => Some(s),
            Err(e) => {
                set_error(program, format!("dlopen: bad file name: {e}"));
                return 0;
            }
        }
    };
    let result = program.dlopen_as(&mut *cx, name.as_deref(), flags, Some(caller));
    match result {
        Ok(m) => Handle::value(m),
        Err(e) => {
            set_error(
                program,
                format!("dlopen {}: {e}", name.as_deref().unwrap_or("(program)")),
            );
            0
        }
    }
}

fn dlsym<T: Send + 'static>(
    program: &Program<T>,
    cx: &mut Caller<'_, T>,
    caller: ModuleId,
    handle: u64,
    name_ptr: u64,
    memory64: bool,
) -> u64 {
    if busy(program, "dlsym") {
        return 0;
    }
    let name = match program.memory().read_cstr(&mut *cx, name_ptr, 4096) {
        Ok(s) => s,
        Err(e) => {
            set_error(program, format!("dlsym: bad symbol name: {e}"));
            return 0;
        }
    };
    match program.dlsym(
        &mut *cx,
        Handle::from_value(handle, memory64),
        &name,
        Some(caller),
    ) {
        Ok(v) => v.as_u64(),
        Err(e) => {
            set_error(program, format!("dlsym: {e}"));
            0
        }
    }
}

fn dlclose<T: Send + 'static>(
    program: &Program<T>,
    cx: &mut Caller<'_, T>,
    handle: u64,
    memory64: bool,
) -> i32 {
    if busy(program, "dlclose") {
        return -1;
    }
    let Handle::Module(m) = Handle::from_value(handle, memory64) else {
        set_error(program, format!("dlclose: invalid handle {handle:#x}"));
        return -1;
    };
    match program.dlclose(&mut *cx, m) {
        Ok(()) => 0,
        Err(e) => {
            set_error(program, format!("dlclose: {e}"));
            -1
        }
    }
}

fn dlerror<T: Send + 'static>(program: &Program<T>, cx: &mut Caller<'_, T>) -> u64 {
    let Some(message) = lock(&program.group).dl_error.take() else {
        return 0;
    };
    let group = program.id;
    let Some((addr, len)) = lock(&program.shared.core).dlerror_buffer(group) else {
        return 0;
    };
    let bytes = dylink_core::guest::dlerror_text(&message, len);
    match program.memory().write(&mut *cx, addr.0, &bytes) {
        Ok(()) => addr.0,
        Err(_) => 0,
    }
}

fn dladdr<T: Send + 'static>(
    program: &Program<T>,
    cx: &mut Caller<'_, T>,
    value: u64,
    info_ptr: u64,
    memory64: bool,
) -> i32 {
    let Some(info) = program.dladdr(value) else {
        return 0;
    };
    let group = program.id;
    let Some((names, len)) = lock(&program.shared.core).dladdr_buffer(group) else {
        return 0;
    };
    // dli_fname and dli_sname point into the group's dladdr text buffer: valid until the
    // next dladdr call in this thread.
    let Some((text, out)) = dylink_core::guest::dladdr_bytes(&info, names, len, memory64) else {
        return 0;
    };
    let mem = program.memory();
    if mem.write(&mut *cx, names.0, &text).is_err() || mem.write(&mut *cx, info_ptr, &out).is_err()
    {
        return 0;
    }
    1
}
