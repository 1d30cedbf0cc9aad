//! The linear memory, plain or shared, and the few byte accesses the linker itself makes
//! (reading a `dlopen` name, writing `dlerror` text and `Dl_info`, zeroing a reused region).

use wasmtime::{AsContext, AsContextMut, Extern, Memory, SharedMemory};

/// The program's linear memory.
#[derive(Clone, Debug)]
pub enum Mem {
    /// Unshared: owned by one store.
    Plain(Memory),
    /// Shared between the stores of every instance group.
    Shared(SharedMemory),
}

impl Mem {
    /// As an import.
    pub fn to_extern(&self) -> Extern {
        match self {
            Mem::Plain(m) => (*m).into(),
            Mem::Shared(m) => m.clone().into(),
        }
    }

    /// Size in bytes.
    pub fn size_bytes(&self, store: impl AsContext) -> u64 {
        match self {
            Mem::Plain(m) => m.data_size(&store) as u64,
            Mem::Shared(m) => m.data_size() as u64,
        }
    }

    /// Size in pages.
    pub fn pages(&self, store: impl AsContext) -> u64 {
        match self {
            Mem::Plain(m) => m.size(&store),
            Mem::Shared(m) => m.size(),
        }
    }

    /// Grow by `delta` pages.
    pub fn grow(&self, store: impl AsContextMut, delta: u64) -> wasmtime::Result<u64> {
        match self {
            Mem::Plain(m) => m.grow(store, delta),
            Mem::Shared(m) => m.grow(delta),
        }
    }

    /// Copy bytes out.
    pub fn read(&self, store: impl AsContext, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let start = usize::try_from(addr).map_err(|_| "address out of range")?;
        match self {
            Mem::Plain(m) => m
                .read(&store, start, buf)
                .map_err(|_| out_of_bounds(addr, buf.len())),
            Mem::Shared(m) => {
                shared::read(m, start, buf).ok_or_else(|| out_of_bounds(addr, buf.len()))
            }
        }
    }

    /// Copy bytes in.
    pub fn write(&self, store: impl AsContextMut, addr: u64, bytes: &[u8]) -> Result<(), String> {
        let start = usize::try_from(addr).map_err(|_| "address out of range")?;
        match self {
            Mem::Plain(m) => m
                .write(store, start, bytes)
                .map_err(|_| out_of_bounds(addr, bytes.len())),
            Mem::Shared(m) => {
                shared::write(m, start, bytes).ok_or_else(|| out_of_bounds(addr, bytes.len()))
            }
        }
    }

    /// Zero `len` bytes.
    pub fn zero(&self, mut store: impl AsContextMut, addr: u64, len: u64) -> Result<(), String> {
        dylink_core::guest::zero(addr, len, |at, bytes| self.write(&mut store, at, bytes))
    }

    /// A NUL-terminated string at `addr` (at most `max` bytes).
    pub fn read_cstr(
        &self,
        store: impl AsContext,
        addr: u64,
        max: usize,
    ) -> Result<String, String> {
        let size = self.size_bytes(&store);
        dylink_core::guest::read_cstr(addr, size, max, |at, buf| self.read(&store, at, buf))
    }
}

/// Atomic access to the commit counter, the `i32` word of a shared memory that the safe
/// points before indirect calls read ([`dylink_core::safepoints`]).
pub(crate) fn counter_add(m: &SharedMemory, addr: u64) -> Option<u32> {
    shared::atomic_u32(m, usize::try_from(addr).ok()?, |a| {
        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    })
}

/// See [`counter_add`].
pub(crate) fn counter_load(m: &SharedMemory, addr: u64) -> Option<u32> {
    shared::atomic_u32(m, usize::try_from(addr).ok()?, |a| {
        a.load(std::sync::atomic::Ordering::SeqCst)
    })
}

fn out_of_bounds(addr: u64, len: usize) -> String {
    format!("{len} bytes at {addr:#x} are outside linear memory")
}

/// Byte copies in and out of a shared memory, and atomic access to one aligned word. wasmtime exposes shared memory as a slice of
/// `UnsafeCell<u8>`, because other threads may touch it concurrently.
#[allow(unsafe_code)]
mod shared {
    use wasmtime::SharedMemory;

    pub fn read(m: &SharedMemory, start: usize, buf: &mut [u8]) -> Option<()> {
        let data = m.data();
        let cells = data.get(start..start.checked_add(buf.len())?)?;
        for (b, c) in buf.iter_mut().zip(cells) {
            // SAFETY: the cell is inside the memory, which lives as long as `m`; a racing
            // guest write can only make the byte read stale, as for any shared-memory reader.
            *b = unsafe { c.get().read_volatile() };
        }
        Some(())
    }

    pub fn atomic_u32<R>(
        m: &SharedMemory,
        start: usize,
        f: impl FnOnce(&std::sync::atomic::AtomicU32) -> R,
    ) -> Option<R> {
        let data = m.data();
        let cells = data.get(start..start.checked_add(4)?)?;
        let ptr = cells.as_ptr() as *mut u32;
        if !ptr.is_aligned() {
            return None;
        }
        // SAFETY: four in-bounds bytes of the memory, aligned for a `u32`, which live as
        // long as `m`; guest code touches them only with wasm atomics, which are the same
        // hardware atomics as `AtomicU32`'s.
        Some(f(unsafe { std::sync::atomic::AtomicU32::from_ptr(ptr) }))
    }

    pub fn write(m: &SharedMemory, start: usize, bytes: &[u8]) -> Option<()> {
        let data = m.data();
        let cells = data.get(start..start.checked_add(bytes.len())?)?;
        for (b, c) in bytes.iter().zip(cells) {
            // SAFETY: as above; the linker only writes regions it owns (its dlerror buffer,
            // a `Dl_info` the caller passed, a region being handed to a new module).
            unsafe { c.get().write_volatile(*b) };
        }
        Some(())
    }
}
