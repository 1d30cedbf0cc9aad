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

#[cfg(test)]
mod tests {
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
