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
        let zeros = [0u8; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write(store, addr + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// A NUL-terminated string at `addr` (at most `max` bytes).
    pub fn read_cstr(
        &self,
        store: &impl AsStoreRef,
        addr: u64,
        max: usize,
    ) -> Result<String, String> {
        let size = self.size_bytes(store);
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        while out.len() < max {
            let at = addr + out.len() as u64;
            if at >= size {
                return Err(format!(
                    "string at {addr:#x} runs past the end of linear memory"
                ));
            }
            let n = ((size - at) as usize).min(chunk.len());
            self.read(store, at, &mut chunk[..n])?;
            match chunk[..n].iter().position(|b| *b == 0) {
                Some(end) => {
                    out.extend_from_slice(&chunk[..end]);
                    return String::from_utf8(out).map_err(|_| "string is not UTF-8".into());
                }
                None => out.extend_from_slice(&chunk[..n]),
            }
        }
        Err(format!("string at {addr:#x} is longer than {max} bytes"))
    }
}
