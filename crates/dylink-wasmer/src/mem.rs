//! The linear memory and the few byte accesses the linker itself makes (reading a `dlopen`
//! name, writing `dlerror` text and `Dl_info`, zeroing a reused region).

use std::sync::atomic::{AtomicU32, Ordering};

use wasmer::{AsStoreMut, AsStoreRef, Memory, Pages};

/// The program's linear memory (shared or not: wasmer gives both the same handle type).
#[derive(Clone, Debug)]
pub struct Mem(pub Memory);

impl Mem {
    /// Size in bytes.
    pub fn size_bytes(&self, store: &impl AsStoreRef) -> u64 {
        self.0.view(store).data_size()
    }

    /// Size in pages.
    pub fn pages(&self, store: &impl AsStoreRef) -> u64 {
        self.0.view(store).size().0 as u64
    }

    /// Grow by `delta` pages.
    pub fn grow(&self, store: &mut impl AsStoreMut, delta: u64) -> Result<(), String> {
        let delta = u32::try_from(delta).map_err(|_| "too many pages".to_string())?;
        self.0
            .grow(store, Pages(delta))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Copy bytes out.
    pub fn read(&self, store: &impl AsStoreRef, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0
            .view(store)
            .read(addr, buf)
            .map_err(|_| format!("{} bytes at {addr:#x} are outside linear memory", buf.len()))
    }

    /// Copy bytes in.
    pub fn write(&self, store: &impl AsStoreRef, addr: u64, bytes: &[u8]) -> Result<(), String> {
        self.0.view(store).write(addr, bytes).map_err(|_| {
            format!(
                "{} bytes at {addr:#x} are outside linear memory",
                bytes.len()
            )
        })
    }

    /// Zero `len` bytes.
    pub fn zero(&self, store: &impl AsStoreRef, addr: u64, len: u64) -> Result<(), String> {
        dylink_core::guest::zero(addr, len, |at, bytes| self.write(store, at, bytes))
    }

    /// Atomically add one to the commit counter, the `i32` word at `addr` that the safe
    /// points before indirect calls read ([`dylink_core::safepoints`]).
    pub fn counter_add(&self, store: &impl AsStoreRef, addr: u64) -> Option<u32> {
        self.atomic_u32(store, addr, |a| a.fetch_add(1, Ordering::SeqCst))
    }

    /// The commit counter's value (see [`Mem::counter_add`]).
    pub fn counter_load(&self, store: &impl AsStoreRef, addr: u64) -> Option<u32> {
        self.atomic_u32(store, addr, |a| a.load(Ordering::SeqCst))
    }

    #[allow(unsafe_code)]
    fn atomic_u32<R>(
        &self,
        store: &impl AsStoreRef,
        addr: u64,
        f: impl FnOnce(&AtomicU32) -> R,
    ) -> Option<R> {
        let view = self.0.view(store);
        let end = addr.checked_add(4)?;
        if end > view.data_size() || !addr.is_multiple_of(4) {
            return None;
        }
        // SAFETY: four in-bounds bytes of the memory, aligned for a `u32` (the base is page
        // aligned), valid while the memory lives (a shared memory never moves: it is
        // reserved at its maximum size); guest code touches them only with wasm atomics,
        // which are the same hardware atomics as `AtomicU32`'s.
        let ptr = unsafe { view.data_ptr().add(addr as usize) } as *mut u32;
        Some(f(unsafe { AtomicU32::from_ptr(ptr) }))
    }

    /// A NUL-terminated string at `addr` (at most `max` bytes).
    pub fn read_cstr(
        &self,
        store: &impl AsStoreRef,
        addr: u64,
        max: usize,
    ) -> Result<String, String> {
        let size = self.size_bytes(store);
        dylink_core::guest::read_cstr(addr, size, max, |at, buf| self.read(store, at, buf))
    }
}
