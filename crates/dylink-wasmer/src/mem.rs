//! The linear memory and the few byte accesses the linker itself makes (reading a `dlopen`
//! name, writing `dlerror` text and `Dl_info`, zeroing a reused region).

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
