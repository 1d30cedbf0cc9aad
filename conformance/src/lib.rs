//! One conformance suite for every dylink adapter.
//!
//! This crate knows no engine. An adapter implements [`Adapter`] (load a program) and
//! [`Program`] (call, read memory, dl operations, captured output); its test binary calls
//! [`run_main`], which runs every case of `conformance/cases` as a trial named
//! `{engine}/{case}`, compares with the expectations written next to each case, honours the
//! per-engine expected failures in `conformance/expected-failures.txt` (an unexpected pass
//! fails), and writes `target/conformance/<engine>.json`.
//!
//! # A case
//!
//! A directory with C sources (built into `out/` by `conformance/build.sh`, committed), WAT
//! files (assembled at run time, for what C cannot express), and `case.txt`:
//!
//! ```text
//! # one line that says what the case proves
//! build: lib libb.so b.c                    (read by build.sh only)
//! build: pie main.wasm main.c -- out/libb.so
//! file: lib/liba.so a.wat                   (assemble a.wat to /lib/liba.so)
//! copy: lib/libb.so out/libb.so             (put a built file at a path)
//! main: /app/main.wasm                      (defaults to /app/main.wasm)
//! libpath: /lib                             (LD_LIBRARY_PATH; repeatable)
//! roots: /app /lib                          (library roots; default /)
//! bind: now                                 (default lazy)
//! preload: libx.so
//! symlink: lib/evil.so ../../outside.so     (made in the work dir before loading)
//! load-error: words that must appear        (the load must fail; then no steps)
//! call run 1 2 => 42                        (call an export of the main module)
//! call run => trap words that must appear
//! output => text with \n escapes            (all guest output so far)
//! warning => words                          (some linker warning mentions them)
//! layout: per-thread                        (threads exit at their own pace: the layout is
//!                                            left out of the cross-engine transcript)
//! dlopen libx.so GLOBAL|NOW => $h
//! dlopen libx.so NOW => error words
//! dlsym $h name => $p  |  => error words  |  => =$p (equals an earlier value)
//! dlclose $h => 0
//! callptr $p 5 => 6                          (call through a function pointer)
//! read32 $p => 7                             (a data pointer)
//! no-host-calls call run => 3                (the call makes no call into dylink's host)
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How to load a case's program.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Host directory mounted as the virtual `/`.
    pub root: PathBuf,
    /// Virtual path of the main module.
    pub main: String,
    /// `LD_LIBRARY_PATH`-style directories (virtual).
    pub library_path: Vec<String>,
    /// Library roots (virtual).
    pub roots: Vec<String>,
    /// Bind every function at load time.
    pub bind_now: bool,
    /// Libraries loaded with the main module (`LD_PRELOAD`).
    pub preload: Vec<String>,
}

/// A loaded program, as the suite drives it. Integer arguments and results are passed as
/// `i64` whatever their wasm width.
pub trait Program {
    /// Call an export of the main module.
    fn call(&mut self, func: &str, args: &[i64]) -> Result<Option<i64>, String>;
    /// Call the function a function pointer designates.
    fn call_ptr(&mut self, ptr: u64, args: &[i64]) -> Result<Option<i64>, String>;
    /// Read 4 bytes of linear memory.
    fn read_u32(&mut self, addr: u64) -> Result<u32, String>;
    /// `dlopen` from the host; the handle's value.
    fn dlopen(&mut self, name: &str, flags: i32) -> Result<u64, String>;
    /// `dlsym` from the host.
    fn dlsym(&mut self, handle: u64, name: &str) -> Result<u64, String>;
    /// `dlclose` from the host.
    fn dlclose(&mut self, handle: u64) -> Result<(), String>;
    /// Everything the guest printed through `test.log_str` / `test.log_int`.
    fn output(&mut self) -> String;
    /// Calls into the adapter's own host functions so far (dlfcn, trap stubs).
    fn host_calls(&mut self) -> u64;
    /// The linker's warnings so far (duplicate definitions, weak symbols left undefined, …).
    fn warnings(&mut self) -> Vec<String>;
    /// The linker's layout (memory regions, table slots), as `dylink_core::Linker` displays
    /// it: identical on every engine for the same program and operations.
    fn layout(&mut self) -> String;
}

/// An engine adapter under test.
pub trait Adapter {
    /// Short engine name: trial names are `{engine}/{case}`.
    fn engine(&self) -> &'static str;
    /// Load a program. Guest output goes through host functions `test.log_str(ptr)` and
    /// `test.log_int(i32)`, which the adapter defines as host imports.
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn Program>, String>;
}

/// `dlopen` flag names the case files use, with wasi-libc's values.
pub fn flag(name: &str) -> Option<i32> {
    Some(match name {
        "LAZY" => 1,
        "NOW" => 2,
        "NOLOAD" => 4,
        "LOCAL" => 8,
        "GLOBAL" => 256,
        "NODELETE" => 4096,
        _ => return None,
    })
}

/// The suite's root (`conformance/`).
pub fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Outcome of one trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// As expected.
    Pass,
    /// Not as expected.
    Fail(String),
    /// Failed, and listed as an expected failure for this engine with this reason.
    ExpectedFail(String),
}

/// One case of the catalog.
#[derive(Clone, Debug)]
pub struct Case {
    /// Directory name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The `case.txt` lines that matter at run time.
    pub lines: Vec<String>,
    /// The first comment line.
    pub title: String,
}

/// Every case, sorted by name.
pub fn catalog() -> Vec<Case> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(suite_dir().join("cases")) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let Ok(text) = std::fs::read_to_string(dir.join("case.txt")) else {
            continue;
        };
        let title = text
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or("")
            .to_string();
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("build:"))
            .map(String::from)
            .collect();
        out.push(Case {
            name: e.file_name().to_string_lossy().into(),
            dir,
            lines,
            title,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Expected failures for an engine: case name → reason.
pub fn expected_failures(engine: &str) -> HashMap<String, String> {
    let text =
        std::fs::read_to_string(suite_dir().join("expected-failures.txt")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.splitn(3, char::is_whitespace);
            let (e, c, r) = (it.next()?, it.next()?, it.next().unwrap_or("").trim());
            (e == engine || e == "*").then(|| (c.to_string(), r.to_string()))
        })
        .collect()
}

fn words_present(text: &str, words: &str) -> Result<(), String> {
    let missing: Vec<&str> = words
        .split_whitespace()
        .filter(|w| !text.contains(w))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("message `{text}` does not mention {missing:?}"))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Prepare a case's work directory (copies, assembled WAT, symlinks) and its load spec.
fn prepare(case: &Case, engine: &str) -> Result<LoadSpec, String> {
    let work = suite_dir()
        .join("../target/conformance/work")
        .join(engine)
        .join(&case.name);
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let mut spec = LoadSpec {
        root: root.clone(),
        main: "/app/main.wasm".into(),
        library_path: Vec::new(),
        roots: vec!["/".into()],
        bind_now: false,
        preload: Vec::new(),
    };
    let place = |rel: &str, bytes: &[u8]| -> Result<(), String> {
        let dst = root.join(rel.trim_start_matches('/'));
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        std::fs::write(&dst, bytes).map_err(|e| format!("{}: {e}", dst.display()))
    };
    for line in &case.lines {
        let (key, rest) = line
            .split_once(':')
            .map(|(k, r)| (k.trim(), r.trim()))
            .unwrap_or((line.as_str(), ""));
        match key {
            "file" => {
                let (dst, src) = rest.split_once(' ').ok_or("file: DST SRC.wat")?;
                let text = std::fs::read_to_string(case.dir.join(src.trim()))
                    .map_err(|e| format!("{src}: {e}"))?;
                let bytes = wat::parse_str(&text).map_err(|e| format!("{src}: {e}"))?;
                place(dst, &bytes)?;
            }
            "copy" => {
                let (dst, src) = rest.split_once(' ').ok_or("copy: DST SRC")?;
                let bytes = std::fs::read(case.dir.join(src.trim()))
                    .map_err(|e| format!("{src}: {e} (run conformance/build.sh)"))?;
                place(dst, &bytes)?;
            }
            "symlink" => {
                let (dst, target) = rest.split_once(' ').ok_or("symlink: DST TARGET")?;
                let dst = root.join(dst.trim_start_matches('/'));
                if let Some(p) = dst.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                }
                #[cfg(unix)]
                std::os::unix::fs::symlink(target.trim(), &dst).map_err(|e| e.to_string())?;
            }
            "outside" => {
                // A file next to the work root, outside it, for escape attempts to aim at.
                let (name, src) = rest.split_once(' ').ok_or("outside: NAME SRC")?;
                let bytes = std::fs::read(case.dir.join(src.trim())).map_err(|e| e.to_string())?;
                std::fs::write(work.join(name.trim()), bytes).map_err(|e| e.to_string())?;
            }
            "main" => spec.main = rest.into(),
            "libpath" => spec.library_path.push(rest.into()),
            "roots" => spec.roots = rest.split_whitespace().map(String::from).collect(),
            "bind" => spec.bind_now = rest == "now",
            "preload" => spec.preload.push(rest.into()),
            _ => {}
        }
    }
    Ok(spec)
}

/// Run one case against an adapter. On success, the transcript: every step with what it
/// observed (values, or that it failed as expected), then the guest output and the linker's
/// layout. Two engines must produce the same transcript for the same case.
pub fn run_case(adapter: &dyn Adapter, case: &Case) -> Result<Vec<String>, String> {
    let spec = prepare(case, adapter.engine())?;
    let load_error = case
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("load-error:").map(str::trim));
    let mut program = match (adapter.load(&spec), load_error) {
        (Ok(_), Some(words)) => {
            return Err(format!(
                "the load succeeded; expected an error mentioning `{words}`"
            ));
        }
        (Err(e), Some(words)) => {
            return words_present(&e, words).map(|()| vec![format!("load-error: {words}")]);
        }
        (Err(e), None) => return Err(format!("load failed: {e}")),
        (Ok(p), None) => p,
    };
    let mut vars: HashMap<String, u64> = HashMap::new();
    let mut transcript: Vec<String> = Vec::new();
    for line in &case.lines {
        let (cmd, expect) = match line.split_once("=>") {
            Some((c, e)) => (c.trim(), Some(e.trim())),
            None => (line.as_str(), None),
        };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let Some(&verb) = words.first() else { continue };
        let value = |s: &str, vars: &HashMap<String, u64>| -> Result<i64, String> {
            match s.strip_prefix('$') {
                Some(v) => vars
                    .get(v)
                    .map(|x| *x as i64)
                    .ok_or_else(|| format!("unknown variable ${v}")),
                None => s.parse::<i64>().map_err(|_| format!("not a number: {s}")),
            }
        };
        let step = |r: Result<Option<i64>, String>,
                    expect: Option<&str>,
                    vars: &mut HashMap<String, u64>,
                    transcript: &mut Vec<String>|
         -> Result<(), String> {
            let expect = expect.unwrap_or("");
            transcript.push(match &r {
                Ok(v) => format!("{line} -> {v:?}"),
                Err(_) => format!("{line} -> failed"),
            });
            match (r, expect) {
                (Err(e), x) if x.starts_with("trap") || x.starts_with("error") => {
                    words_present(&e, x.split_once(' ').map_or("", |p| p.1))
                }
                (Err(e), x) => Err(format!("`{line}` failed: {e} (expected {x:?})")),
                (Ok(v), x) if x.starts_with("trap") || x.starts_with("error") => {
                    Err(format!("`{line}` returned {v:?}; expected {x}"))
                }
                (Ok(v), x) if x.starts_with("=$") => {
                    let want = vars
                        .get(&x[2..])
                        .copied()
                        .ok_or_else(|| format!("unknown variable {}", &x[1..]))?;
                    if v.map(|n| n as u64) == Some(want) {
                        Ok(())
                    } else {
                        Err(format!(
                            "`{line}` returned {v:?}; expected {want} (the value of {})",
                            &x[1..]
                        ))
                    }
                }
                (Ok(v), x) if x.starts_with('$') => {
                    vars.insert(x[1..].to_string(), v.unwrap_or(0) as u64);
                    Ok(())
                }
                (Ok(_), "") => Ok(()),
                (Ok(v), "nonzero") => match v {
                    Some(n) if n != 0 => Ok(()),
                    _ => Err(format!("`{line}` returned {v:?}; expected non-zero")),
                },
                (Ok(v), x) => {
                    let want: i64 = x.parse().map_err(|_| format!("bad expectation `{x}`"))?;
                    if v == Some(want) {
                        Ok(())
                    } else {
                        Err(format!("`{line}` returned {v:?}; expected {want}"))
                    }
                }
            }
        };
        match verb {
            "call" | "no-host-calls" => {
                let (func, args) = if verb == "call" {
                    (words[1], &words[2..])
                } else {
                    (words[2], &words[3..])
                };
                let args: Vec<i64> = args
                    .iter()
                    .map(|a| value(a, &vars))
                    .collect::<Result<_, _>>()?;
                let before = program.host_calls();
                let r = program.call(func, &args);
                if verb == "no-host-calls" {
                    let made = program.host_calls() - before;
                    if made != 0 {
                        return Err(format!(
                            "`{line}` made {made} host call(s); lazily bound calls must stay in wasm once resolved"
                        ));
                    }
                }
                step(r, expect, &mut vars, &mut transcript)?;
            }
            "callptr" => {
                let p = value(words[1], &vars)? as u64;
                let args: Vec<i64> = words[2..]
                    .iter()
                    .map(|a| value(a, &vars))
                    .collect::<Result<_, _>>()?;
                step(
                    program.call_ptr(p, &args),
                    expect,
                    &mut vars,
                    &mut transcript,
                )?;
            }
            "read32" => {
                let p = value(words[1], &vars)? as u64;
                step(
                    program.read_u32(p).map(|v| Some(v as i32 as i64)),
                    expect,
                    &mut vars,
                    &mut transcript,
                )?;
            }
            "dlopen" => {
                let flags = words.get(2).map_or(Ok(2), |f| {
                    f.split('|')
                        .map(|n| flag(n).ok_or_else(|| format!("unknown flag {n}")))
                        .sum::<Result<i32, String>>()
                })?;
                step(
                    program.dlopen(words[1], flags).map(|h| Some(h as i64)),
                    expect,
                    &mut vars,
                    &mut transcript,
                )?;
            }
            "dlsym" => {
                let h = match words[1] {
                    "DEFAULT" => 0,
                    h => value(h, &vars)?,
                };
                step(
                    program.dlsym(h as u64, words[2]).map(|v| Some(v as i64)),
                    expect,
                    &mut vars,
                    &mut transcript,
                )?;
            }
            "dlclose" => {
                let h = value(words[1], &vars)? as u64;
                step(
                    program.dlclose(h).map(|()| Some(0)),
                    expect,
                    &mut vars,
                    &mut transcript,
                )?;
            }
            "warning" => {
                let words = expect.unwrap_or("");
                let warnings = program.warnings();
                if !warnings.iter().any(|w| words_present(w, words).is_ok()) {
                    return Err(format!(
                        "no warning mentions `{words}`; warnings: {warnings:?}"
                    ));
                }
            }
            "output" => {
                let want = unescape(expect.unwrap_or("").trim_matches('"'));
                let got = program.output();
                if got != want {
                    return Err(format!("output is {got:?}; expected {want:?}"));
                }
            }
            _ => {}
        }
    }
    transcript.push(format!("output: {:?}", program.output()));
    // Threads release their TLS blocks as they exit, whenever that is: their cases declare
    // `layout: per-thread`, and their transcripts leave the layout out.
    if !case.lines.iter().any(|l| l == "layout: per-thread") {
        transcript.push(format!("layout:\n{}", program.layout()));
    }
    Ok(transcript)
}

/// Run the whole catalog against `adapter` as a test binary would: prints one line per trial
/// in libtest's format, writes `target/conformance/<engine>.json`, and returns the process exit
/// code (0 when every trial passed or failed as expected).
pub fn run_main(adapter: &dyn Adapter) -> i32 {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let engine = adapter.engine();
    let xfail = expected_failures(engine);
    let cases = catalog();
    let mut results: Vec<(String, Status)> = Vec::new();
    println!("\nrunning {} tests", cases.len());
    for case in &cases {
        let trial = format!("{engine}/{}", case.name);
        if filter.as_deref().is_some_and(|f| !trial.contains(f)) {
            continue;
        }
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(adapter, case)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(format!("panicked: {}", msg.unwrap_or_default()))
                });
        let status = match (outcome, xfail.get(&case.name)) {
            (Ok(_), None) => Status::Pass,
            (Ok(_), Some(reason)) => Status::Fail(format!(
                "passed, but is listed as an expected failure ({reason}); remove it from expected-failures.txt"
            )),
            (Err(e), Some(reason)) => Status::ExpectedFail(format!("{reason} — {e}")),
            (Err(e), None) => Status::Fail(e),
        };
        match &status {
            Status::Pass => println!("test {trial} ... ok"),
            Status::ExpectedFail(r) => println!("test {trial} ... ok (expected failure: {r})"),
            Status::Fail(e) => println!("test {trial} ... FAILED\n    {e}"),
        }
        results.push((case.name.clone(), status));
    }
    write_report(engine, &cases, &results);
    let failed = results
        .iter()
        .filter(|(_, s)| matches!(s, Status::Fail(_)))
        .count();
    let passed = results.len() - failed;
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {} filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" },
        cases.len() - results.len()
    );
    i32::from(failed > 0)
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_report(engine: &str, cases: &[Case], results: &[(String, Status)]) {
    let dir = suite_dir().join("../target/conformance");
    let _ = std::fs::create_dir_all(&dir);
    let mut out = String::from("[\n");
    for (i, (name, status)) in results.iter().enumerate() {
        let title = cases
            .iter()
            .find(|c| &c.name == name)
            .map_or("", |c| c.title.as_str());
        let (s, detail) = match status {
            Status::Pass => ("pass", ""),
            Status::Fail(d) => ("fail", d.as_str()),
            Status::ExpectedFail(d) => ("expected-fail", d.as_str()),
        };
        writeln!(
            out,
            "  {{\"case\": {}, \"title\": {}, \"status\": \"{s}\", \"detail\": {}}}{}",
            json_str(name),
            json_str(title),
            json_str(detail),
            if i + 1 < results.len() { "," } else { "" }
        )
        .unwrap();
    }
    out.push_str("]\n");
    let _ = std::fs::write(dir.join(format!("{engine}.json")), out);
}

/// The case × engine table, in Markdown, from every `target/conformance/*.json`.
pub fn markdown_report() -> String {
    let dir = suite_dir().join("../target/conformance");
    // Per engine: its (status, detail) by case.
    type Rows = HashMap<String, (String, String)>;
    let mut engines: Vec<(String, Rows)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            let engine = f.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let mut rows = HashMap::new();
            for line in text.lines().filter(|l| l.contains("\"case\"")) {
                let field = |k: &str| -> String {
                    let at = line.find(&format!("\"{k}\": \"")).map(|i| i + k.len() + 5);
                    at.and_then(|i| {
                        line[i..]
                            .find("\", \"")
                            .or_else(|| line[i..].find("\"}"))
                            .map(|j| line[i..i + j].to_string())
                    })
                    .unwrap_or_default()
                };
                rows.insert(field("case"), (field("status"), field("title")));
            }
            engines.push((engine, rows));
        }
    }
    let mut names: Vec<String> = catalog().into_iter().map(|c| c.name).collect();
    names.sort();
    let mut out = String::from("| case |");
    for (e, _) in &engines {
        write!(out, " {e} |").unwrap();
    }
    out.push_str(" what it proves |\n|---|");
    for _ in &engines {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    for n in &names {
        write!(out, "| {n} |").unwrap();
        let mut title = String::new();
        for (_, rows) in &engines {
            match rows.get(n) {
                Some((s, t)) => {
                    write!(out, " {s} |").unwrap();
                    title = t.clone();
                }
                None => out.push_str(" not run |"),
            }
        }
        writeln!(out, " {title} |").unwrap();
    }
    out
}
