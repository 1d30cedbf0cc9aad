//! Module sources: confined host directories (cap-std) and re-exported in-memory bytes.

use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use dylink_core::ModuleSource;

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
