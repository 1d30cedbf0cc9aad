//! Links `dylink-core` into a `#![no_std]` static library with its own panic handler and
//! allocator. If anything in the core's dependency tree pulls in `std`, this crate stops
//! building with a duplicate `panic_impl` lang item. Build it alone (see `.ci/run`): built
//! together with an engine, feature unification would enable `wasmparser/std` and hide a leak.
#![no_std]
#![allow(unsafe_code)] // a global allocator is unsafe by definition

use core::alloc::{GlobalAlloc, Layout};

struct NoAlloc;

// SAFETY: always reports allocation failure, which `GlobalAlloc` permits.
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Exercises the core so the linker keeps it: parses a module and reports whether it is a
/// dynamic library.
#[unsafe(no_mangle)]
pub extern "C" fn dylink_canary_is_dylib(ptr: *const u8, len: usize) -> bool {
    // SAFETY: the caller passes a readable byte range.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    dylink_core::ModuleInfo::parse(bytes).is_ok_and(|m| m.dylink.is_some())
}
