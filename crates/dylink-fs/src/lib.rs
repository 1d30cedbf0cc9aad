//! Library files for dylink from confined host directories.
//!
//! [`DirSource`] implements [`dylink_core::ModuleSource`] over host directories opened with
//! cap-std: a path is resolved inside its directory by a capability-based view, so `..`,
//! absolute symlinks and symlinks that climb out are refused however they are spelled.
//!
//! [`Threads`] is the other half of what the `no_std` core leaves to its host: OS threads on
//! which it reads the modules of a large NEEDED tree at once ([`dylink_core::Config::workers`]).
#![deny(missing_docs)]

use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use dylink_core::ModuleSource;

mod threads;
pub use threads::Threads;

/// Host directories mounted at virtual paths. A name is read through the mount whose virtual
/// directory contains it; cap-std resolves it inside that directory only, so `..`, absolute
/// symlinks and symlinks that climb out are refused by the operating system view itself.
#[derive(Debug, Default)]
pub struct DirSource {
    mounts: Vec<(String, Dir)>,
}

impl DirSource {
    /// No mounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the host directory `host` readable as the virtual directory `at` (an absolute
    /// `/`-separated path, such as `/lib`). Add `at` to the linker's roots too.
    pub fn mount(&mut self, at: &str, host: impl AsRef<Path>) -> io::Result<&mut Self> {
        let dir = Dir::open_ambient_dir(host.as_ref(), ambient_authority())?;
        let at = dylink_core::path::normalize("/", at).unwrap_or_else(|| "/".into());
        self.mounts.push((at, dir));
        // Longest prefix first, so nested mounts win.
        self.mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(self)
    }

    /// The virtual directories mounted, for the linker's `roots`.
    pub fn roots(&self) -> Vec<String> {
        self.mounts.iter().map(|(p, _)| p.clone()).collect()
    }
}

impl ModuleSource for DirSource {
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
        for (at, dir) in &self.mounts {
            if !dylink_core::path::is_within(path, at) {
                continue;
            }
            let rel = path[at.len()..].trim_start_matches('/');
            if rel.is_empty() {
                return Ok(None);
            }
            return match dir.read(rel) {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
                Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(format!(
                    "refused: {e} (it leaves the mounted directory, or is not readable)"
                )),
                Err(e) => Err(e.to_string()),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_symlink_escapes() {
        let top = tempfile::tempdir().unwrap();
        let lib = top.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        std::fs::write(lib.join("liba.so"), b"bytes").unwrap();
        std::fs::write(top.path().join("secret.so"), b"secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("../secret.so", lib.join("evil.so")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(top.path().join("secret.so"), lib.join("abs.so")).unwrap();
        let mut src = DirSource::new();
        src.mount("/lib", &lib).unwrap();
        assert_eq!(src.roots(), vec!["/lib".to_string()]);
        assert_eq!(&*src.read("/lib/liba.so").unwrap().unwrap(), b"bytes");
        assert_eq!(src.read("/lib/none.so").unwrap(), None);
        assert_eq!(src.read("/elsewhere/liba.so").unwrap(), None);
        #[cfg(unix)]
        {
            assert!(
                src.read("/lib/evil.so").is_err(),
                "a relative symlink out of the mount is refused"
            );
            assert!(
                src.read("/lib/abs.so").is_err(),
                "an absolute symlink is refused"
            );
        }
    }
}
