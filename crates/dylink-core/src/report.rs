//! `ldd`-style reports, computed from module bytes alone.

use core::fmt;

use crate::config::{Config, ModuleSource};
use crate::error::Error;
use crate::module::ModuleInfo;
use crate::path::{Requester, normalize};
use crate::prelude::*;

/// One line of an `ldd` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LddEntry {
    /// Depth in the dependency tree (1 for the main module's NEEDED and the preloads).
    pub depth: usize,
    /// The name asked for.
    pub name: String,
    /// Where it was found, if it was.
    pub path: Option<String>,
    /// Whether it was already listed higher up (loaded once; not expanded again).
    pub repeated: bool,
    /// Why it could not be used, if it could not.
    pub error: Option<Error>,
    /// Bytes of data it reserves and table slots it needs.
    pub footprint: (u32, u32),
}

/// An `ldd` report: the dependency tree in load order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LddReport {
    /// The main module's path.
    pub main: String,
    /// Every NEEDED entry, depth first as `ldd -v` would show it.
    pub entries: Vec<LddEntry>,
}

impl LddReport {
    /// Whether every library was found and readable.
    pub fn complete(&self) -> bool {
        self.entries.iter().all(|e| e.error.is_none())
    }
}

/// Walk the main module's NEEDED tree (and the configured preloads) without loading
/// anything: which file each name resolves to, and what cannot be found or read. Never fails
/// on a missing library; each problem is recorded on its line.
pub fn ldd(
    config: &Config,
    main_path: &str,
    main_bytes: &[u8],
    source: &dyn ModuleSource,
) -> Result<LddReport, Error> {
    let main_path = normalize(&config.search.cwd, main_path).unwrap_or_else(|| main_path.into());
    let info = ModuleInfo::parse(main_bytes).map_err(|error| Error::Parse {
        path: main_path.clone(),
        error,
    })?;
    let mut report = LddReport {
        main: main_path.clone(),
        entries: Vec::new(),
    };
    let mut seen: HashMap<String, ()> = HashMap::new();
    seen.insert(main_path.clone(), ());
    // (depth, name, the requesting module's path and RUNTIME_PATH; none for a preload)
    type Asker = Option<(String, Vec<String>)>;
    let mut work: Vec<(usize, String, Asker)> = Vec::new();
    let runtime_path = info
        .dylink
        .as_ref()
        .map(|d| d.runtime_path.clone())
        .unwrap_or_default();
    for n in info.needed().iter().rev() {
        work.push((
            1,
            n.clone(),
            Some((main_path.clone(), runtime_path.clone())),
        ));
    }
    for p in config.preload.iter().rev() {
        work.push((1, p.clone(), None));
    }
    while let Some((depth, name, req)) = work.pop() {
        let requester = req.as_ref().map(|(p, rp)| Requester {
            path: p,
            runtime_path: rp,
        });
        let cands = match config.search.candidates(&name, requester) {
            Ok(c) => c,
            Err(e) => {
                report.entries.push(LddEntry {
                    depth,
                    name,
                    path: None,
                    repeated: false,
                    error: Some(e),
                    footprint: (0, 0),
                });
                continue;
            }
        };
        if let Some(p) = cands.iter().find(|p| seen.contains_key(*p)) {
            report.entries.push(LddEntry {
                depth,
                name,
                path: Some(p.clone()),
                repeated: true,
                error: None,
                footprint: (0, 0),
            });
            continue;
        }
        let mut found = None;
        let mut failure = None;
        for p in &cands {
            match source.read(p) {
                Ok(Some(bytes)) => {
                    found = Some((p.clone(), bytes));
                    break;
                }
                Ok(None) => {}
                Err(message) => {
                    failure = Some(Error::Source {
                        path: p.clone(),
                        message,
                    });
                    break;
                }
            }
        }
        let Some((path, bytes)) = found else {
            let error = failure.unwrap_or_else(|| Error::NotFound {
                name: name.clone(),
                needed_by: req.map(|(p, _)| p),
                tried: cands,
            });
            report.entries.push(LddEntry {
                depth,
                name,
                path: None,
                repeated: false,
                error: Some(error),
                footprint: (0, 0),
            });
            continue;
        };
        seen.insert(path.clone(), ());
        match ModuleInfo::parse(&bytes) {
            Ok(info) => match info.dylink.as_ref().filter(|_| info.is_side_module()) {
                Some(d) => {
                    report.entries.push(LddEntry {
                        depth,
                        name,
                        path: Some(path.clone()),
                        repeated: false,
                        error: None,
                        footprint: (d.memory_size, d.table_size),
                    });
                    for n in d.needed.iter().rev() {
                        work.push((
                            depth + 1,
                            n.clone(),
                            Some((path.clone(), d.runtime_path.clone())),
                        ));
                    }
                }
                None => report.entries.push(LddEntry {
                    depth,
                    name,
                    path: Some(path.clone()),
                    repeated: false,
                    error: Some(Error::NotDynamic { path }),
                    footprint: (0, 0),
                }),
            },
            Err(error) => report.entries.push(LddEntry {
                depth,
                name,
                path: Some(path.clone()),
                repeated: false,
                error: Some(Error::Parse { path, error }),
                footprint: (0, 0),
            }),
        }
    }
    Ok(report)
}

impl fmt::Display for LddReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:", self.main)?;
        for e in &self.entries {
            for _ in 0..e.depth {
                f.write_str("\t")?;
            }
            match (&e.path, &e.error) {
                (_, Some(Error::NotFound { .. })) => writeln!(f, "{} => not found", e.name)?,
                (_, Some(err)) => writeln!(f, "{} => error: {err}", e.name)?,
                (Some(p), None) if e.repeated => writeln!(f, "{} => {p} (already listed)", e.name)?,
                (Some(p), None) => writeln!(
                    f,
                    "{} => {p} (data {} bytes, table {} slots)",
                    e.name, e.footprint.0, e.footprint.1
                )?,
                (None, None) => writeln!(f, "{} => ?", e.name)?,
            }
        }
        Ok(())
    }
}
