//! Library search, glibc's way, confined to the embedder's roots.
//!
//! Paths here are *virtual*: absolute, `/`-separated, normalised lexically. The embedder's
//! [`ModuleSource`](crate::ModuleSource) maps them to bytes (a confined host directory, or a map
//! in memory). A name that would lead outside the configured roots is refused here, before any
//! byte is read; a source that follows symlinks must refuse escapes on its own side.

use crate::error::Error;
use crate::prelude::*;

/// Where and how libraries are searched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchConfig {
    /// `LD_LIBRARY_PATH`-style directories, searched first.
    pub library_path: Vec<String>,
    /// Directories searched last (`/lib`, `/usr/lib`, `/usr/local/lib` by default).
    pub default_dirs: Vec<String>,
    /// Only paths inside one of these directories are ever read. `/` allows every path the
    /// source knows.
    pub roots: Vec<String>,
    /// Directory that relative names containing `/` are resolved against.
    pub cwd: String,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            library_path: Vec::new(),
            default_dirs: vec!["/lib".into(), "/usr/lib".into(), "/usr/local/lib".into()],
            roots: vec!["/".into()],
            cwd: "/".into(),
        }
    }
}

/// Normalise a path lexically: make it absolute against `cwd`, drop `.` and empty components,
/// resolve `..`. `None` when `..` would climb above `/`.
pub fn normalize(cwd: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let full = if path.starts_with('/') {
        [path, ""]
    } else {
        [cwd, path]
    };
    for piece in full {
        for c in piece.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                c => parts.push(c),
            }
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Whether `path` is already normalised: absolute, and no empty, `.` or `..` component.
fn is_normal(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/') && path[1..].split('/').all(|c| !matches!(c, "" | "." | "..")))
}

/// `normalize(cwd, "{dir}/{name}")` for a file name (no `/`, not `.` or `..`), without
/// taking the path apart when `dir` is normalised already (as search directories are).
fn join(cwd: &str, dir: &str, name: &str) -> Option<String> {
    if !is_normal(dir) {
        return normalize(cwd, &format!("{dir}/{name}"));
    }
    let mut out = String::with_capacity(dir.len() + 1 + name.len());
    if dir != "/" {
        out.push_str(dir);
    }
    out.push('/');
    out.push_str(name);
    Some(out)
}

/// The directory part of a normalised path.
pub fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether normalised `path` lies inside normalised directory `root`.
pub fn is_within(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// Expand `$ORIGIN` and `${ORIGIN}` in a RUNTIME_PATH entry.
pub fn expand_origin(entry: &str, origin: &str) -> String {
    entry
        .replace("${ORIGIN}", origin)
        .replace("$ORIGIN", origin)
}

/// The module asking for a library: its path and RUNTIME_PATH.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    /// Its normalised path.
    pub path: &'a str,
    /// Its RUNTIME_PATH entries, unexpanded.
    pub runtime_path: &'a [String],
}

impl SearchConfig {
    fn inside_roots(&self, path: &str) -> bool {
        self.roots.iter().any(|r| is_within(path, r))
    }

    /// Every path to try for `name`, in order. A name containing `/` is a path (one
    /// candidate); otherwise the library path, then the requester's RUNTIME_PATH, then the
    /// default directories. Candidates outside the roots are dropped; a path name outside
    /// them is an error.
    pub fn candidates(
        &self,
        name: &str,
        requester: Option<Requester<'_>>,
    ) -> Result<Vec<String>, Error> {
        if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
            return Err(Error::OutsideRoots {
                name: name.into(),
                path: name.into(),
            });
        }
        if name.contains('/') {
            let path = normalize(&self.cwd, name).ok_or_else(|| Error::OutsideRoots {
                name: name.into(),
                path: name.into(),
            })?;
            if !self.inside_roots(&path) {
                return Err(Error::OutsideRoots {
                    name: name.into(),
                    path,
                });
            }
            return Ok(vec![path]);
        }
        let mut out: Vec<String> = Vec::new();
        let mut push = |dir: &str| {
            if let Some(p) = join(&self.cwd, dir, name)
                && self.inside_roots(&p)
                && !out.contains(&p)
            {
                out.push(p);
            }
        };
        for dir in &self.library_path {
            push(dir);
        }
        if let Some(r) = requester {
            let origin = dirname(r.path);
            for entry in r.runtime_path {
                for dir in expand_origin(entry, origin).split(':') {
                    if !dir.is_empty() {
                        push(dir);
                    }
                }
            }
        }
        for dir in &self.default_dirs {
            push(dir);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize("/", "a/b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize("/x", "./lib.so").as_deref(), Some("/x/lib.so"));
        assert_eq!(normalize("/", "/a//b/./").as_deref(), Some("/a/b"));
        assert_eq!(normalize("/", "../etc"), None);
        assert_eq!(normalize("/a", "../../etc"), None);
        assert_eq!(dirname("/a/b/c.so"), "/a/b");
        assert_eq!(dirname("/c.so"), "/");
    }

    /// Joining a search directory and a file name reads as normalising the two.
    #[test]
    fn join_is_normalize() {
        let dirs = [
            "/", "/lib", "/usr/lib", "lib", "./lib", "/lib/", "//lib", "/a/./b", "/a/../b",
            "/a/b/..", "..", "/..", "", "/a//b", "/.x/y.", "/..a/b..",
        ];
        for dir in dirs {
            for name in ["libc.so", "a", ".hidden", "..so"] {
                let slow = normalize("/cwd", &format!("{dir}/{name}"));
                assert_eq!(join("/cwd", dir, name), slow, "{dir:?} + {name:?}");
            }
        }
        assert!(is_normal("/") && is_normal("/lib") && is_normal("/a/.b"));
        assert!(!is_normal("lib") && !is_normal("/lib/") && !is_normal("/a/../b"));
    }

    #[test]
    fn roots_confine() {
        assert!(is_within("/lib/a.so", "/lib"));
        assert!(!is_within("/library/a.so", "/lib"));
        assert!(is_within("/anything", "/"));
        let cfg = SearchConfig {
            library_path: vec!["/app/lib".into(), "/elsewhere".into()],
            default_dirs: vec!["/usr/lib".into()],
            roots: vec!["/app".into(), "/usr/lib".into()],
            cwd: "/app".into(),
        };
        assert_eq!(
            cfg.candidates("libz.so", None).unwrap(),
            vec!["/app/lib/libz.so", "/usr/lib/libz.so"]
        );
        assert!(matches!(
            cfg.candidates("../etc/passwd", None),
            Err(Error::OutsideRoots { .. })
        ));
        assert!(matches!(
            cfg.candidates("/etc/passwd", None),
            Err(Error::OutsideRoots { .. })
        ));
        assert!(matches!(
            cfg.candidates("lib/../../x.so", None),
            Err(Error::OutsideRoots { .. })
        ));
        assert_eq!(
            cfg.candidates("lib/./x.so", None).unwrap(),
            vec!["/app/lib/x.so"]
        );
        assert!(cfg.candidates("..", None).is_err());
    }

    #[test]
    fn runtime_path_expands_origin() {
        let cfg = SearchConfig::default();
        let rp = vec!["$ORIGIN/deps:${ORIGIN}/../shared".to_string()];
        let r = Requester {
            path: "/opt/app/libmain.so",
            runtime_path: &rp,
        };
        assert_eq!(
            cfg.candidates("libx.so", Some(r)).unwrap(),
            vec![
                "/opt/app/deps/libx.so",
                "/opt/shared/libx.so",
                "/lib/libx.so",
                "/usr/lib/libx.so",
                "/usr/local/lib/libx.so"
            ]
        );
    }
}
