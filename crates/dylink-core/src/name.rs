//! [`Name`]: a shared, immutable string that may be a slice of a larger shared buffer.
//!
//! Reading a module copies every import and export name of a section into one buffer and
//! hands out slices of it, so a module of a few hundred symbols costs one allocation for its
//! names instead of one per name, and the names sit together in memory.
//!
//! A name is 16 bytes: a thin pointer to the shared buffer (an `Arc<String>`, whose length
//! sits beside its reference count) and the range. An `Arc<str>` is a fat pointer and made
//! every name 24 bytes; a program of 1,000 libraries holds some 400,000 names (imports,
//! exports, the symbol table), and the extra 8 bytes each were 3 MB written while planning.
//! The indirection costs little: a module's names share one buffer whose header stays in
//! cache while its names are read.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

use alloc::string::String;
use alloc::sync::Arc;

/// A shared, immutable name (symbol, import field, export): cloning it costs a reference
/// count, so plans and the symbol table can hold names without copying them. It compares,
/// hashes and orders as the `str` it derefs to.
#[derive(Clone)]
pub struct Name {
    buf: Arc<String>,
    start: u32,
    end: u32,
}

impl Name {
    /// The name `buf[range]`, sharing `buf`. `None` when the range is out of bounds or not on
    /// character boundaries.
    pub fn slice(buf: &Arc<String>, range: core::ops::Range<usize>) -> Option<Self> {
        buf.get(range.clone())?;
        Some(Name {
            buf: buf.clone(),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    /// The shared buffer and the name's range in it (a table holding many names of one
    /// buffer can hold the buffer once: see [`crate::symbols`]).
    #[inline]
    pub(crate) fn parts(&self) -> (&Arc<String>, u32, u32) {
        (&self.buf, self.start, self.end)
    }

    /// The name as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        // `slice` and the `From` impls only build in-bounds, boundary-aligned ranges.
        self.buf
            .get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
}

impl Deref for Name {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that maps keyed by `Name` can be searched with a `&str`.
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Name {
    fn from(buf: String) -> Self {
        let buf = Arc::new(buf);
        let end = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // A string of 4 GiB or more keeps its first 4 GiB (on a character boundary).
        let mut end_usize = end as usize;
        while !buf.is_char_boundary(end_usize) {
            end_usize -= 1;
        }
        Name {
            buf,
            start: 0,
            end: end_usize as u32,
        }
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        String::from(s).into()
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl From<&Name> for String {
    fn from(n: &Name) -> Self {
        n.as_str().into()
    }
}

impl Default for Name {
    fn default() -> Self {
        "".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use hashbrown::HashMap;

    #[test]
    fn slices_compare_and_hash_as_their_text() {
        let buf = Arc::new(String::from("envmemoryfoo"));
        let env = Name::slice(&buf, 0..3).unwrap();
        let foo = Name::slice(&buf, 9..12).unwrap();
        assert_eq!(&*env, "env");
        assert_eq!(foo, Name::from("foo"));
        assert!(env < foo);
        let mut m: HashMap<Name, u32> = HashMap::new();
        m.insert(foo.clone(), 1);
        assert_eq!(m.get("foo"), Some(&1));
        assert_eq!(foo.to_string(), "foo");
        assert!(Name::slice(&buf, 10..20).is_none());
        let multi = Arc::new(String::from("aé"));
        assert!(Name::slice(&multi, 0..2).is_none());
    }
}
