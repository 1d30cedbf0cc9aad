//! The guest-visible byte layouts of the dlfcn ABI, so every adapter writes the same bytes.

use crate::index::Addr;
use crate::linker::AddrInfo;
use crate::prelude::*;

/// The NUL-terminated text `dlerror` returns: `message` cut to fit `capacity` bytes (never
/// in the middle of a UTF-8 sequence).
pub fn dlerror_text(message: &str, capacity: u64) -> Vec<u8> {
    let mut end = message.len().min(capacity.saturating_sub(1) as usize);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(end + 1);
    out.extend_from_slice(&message.as_bytes()[..end]);
    out.push(0);
    out
}

/// What `dladdr` writes: the names (`dli_fname`, `dli_sname`, NUL-terminated) for the group's
/// dladdr buffer at `names`, and the `Dl_info` struct (four pointers, wasi-libc layout) for
/// the caller's pointer. `None` when the names do not fit in `capacity` bytes.
pub fn dladdr_bytes(
    info: &AddrInfo,
    names: Addr,
    capacity: u64,
    memory64: bool,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut text = Vec::new();
    text.extend_from_slice(info.path.as_bytes());
    text.push(0);
    let sname = info.symbol.as_ref().map(|s| {
        let at = names.0 + text.len() as u64;
        text.extend_from_slice(s.as_bytes());
        text.push(0);
        at
    });
    if text.len() as u64 > capacity {
        return None;
    }
    let fields = [
        names.0,
        info.base,
        sname.unwrap_or(0),
        if sname.is_some() {
            info.symbol_value
        } else {
            0
        },
    ];
    let mut record = Vec::with_capacity(32);
    for f in fields {
        if memory64 {
            record.extend_from_slice(&f.to_le_bytes());
        } else {
            record.extend_from_slice(&(f as u32).to_le_bytes());
        }
    }
    Some((text, record))
}

/// Read the NUL-terminated string at `addr` (at most `max` bytes) from a memory of `size`
/// bytes, through `read(at, buf)`: how an adapter reads a `dlopen` or `dlsym` name.
pub fn read_cstr(
    addr: u64,
    size: u64,
    max: usize,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), String>,
) -> Result<String, String> {
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
        read(at, &mut chunk[..n])?;
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

/// Zero `len` bytes at `addr` through `write(at, bytes)`, a page at a time.
pub fn zero(
    addr: u64,
    len: u64,
    mut write: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let zeros = [0u8; 4096];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        write(addr + done, &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cstr_stops_at_nul_and_at_the_end_of_memory() {
        let mem = b"abc\0def";
        let read = |at: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&mem[at as usize..at as usize + buf.len()]);
            Ok(())
        };
        assert_eq!(super::read_cstr(0, 7, 100, read).unwrap(), "abc");
        assert!(
            super::read_cstr(4, 7, 100, read)
                .unwrap_err()
                .contains("past the end")
        );
        assert!(
            super::read_cstr(4, 7, 2, read)
                .unwrap_err()
                .contains("longer than 2")
        );
    }

    use super::*;

    #[test]
    fn dlerror_text_is_cut_on_a_char_boundary() {
        assert_eq!(dlerror_text("abc", 10), b"abc\0");
        assert_eq!(dlerror_text("abcdef", 4), b"abc\0");
        assert_eq!(dlerror_text("é", 2), b"\0");
    }

    #[test]
    fn dladdr_layout_is_four_pointers() {
        let info = AddrInfo {
            module: crate::ModuleId(1),
            path: "/lib/a.so".into(),
            base: 0x100,
            symbol: Some("f".into()),
            symbol_value: 7,
        };
        let (text, rec) = dladdr_bytes(&info, Addr(0x50), 64, false).unwrap();
        assert_eq!(text, b"/lib/a.so\0f\0");
        assert_eq!(
            rec,
            [0x50u32, 0x100, 0x50 + 10, 7]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(dladdr_bytes(&info, Addr(0), 64, true).unwrap().1.len(), 32);
        assert!(dladdr_bytes(&info, Addr(0), 5, false).is_none());
    }
}
