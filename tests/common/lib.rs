//! Helpers for the end-to-end tests: find (and build, once) the real binaries, run them, and
//! read what they print.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod s3;

/// The workspace root. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test too; that is
/// preferred to the compile-time value, which names whichever checkout last built the test
/// (a shared target folder serves several clones, and cargo does not rebuild for a move).
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The folder the test binary's profile writes executables to (`target/debug`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// The newest modification time of the sources a binary is built from: its crate and the
/// dataset contract.
fn newest_source(binary: &str) -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(modified);
            }
        }
    }
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let own = binary.strip_prefix("fathom-").expect("a fathom binary");
    for krate in ["datasets", own] {
        walk(&repo_root().join(krate).join("src"), &mut newest);
    }
    newest
}

/// The sources cargo compiled a binary from, from the dep-info file it writes beside it
/// (`NAME.d`): exactly the files that went in, so a unit-test file edited alone (compiled only
/// into the test harness) does not make the binary stale. Paths with spaces are escaped (`\ `).
fn compiled_sources(binary: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => paths.extend((!current.is_empty()).then(|| PathBuf::from(std::mem::take(&mut current)))),
            _ => current.push(c),
        }
    }
    paths.extend((!current.is_empty()).then(|| PathBuf::from(current)));
    Some(paths)
}

/// Why a binary cannot be tested as this checkout's, if it cannot: built from another checkout
/// (a target folder shared by several clones), or older than a source it was compiled from.
/// Without a dep-info file, every file of its crate's and the contract's sources counts.
fn stale(binary: &Path, name: &str, built: std::time::SystemTime) -> Option<String> {
    let Some(sources) = compiled_sources(binary) else {
        return (built < newest_source(name)).then(|| "it is older than the sources".to_string());
    };
    let root = std::fs::canonicalize(repo_root()).unwrap_or_else(|_| repo_root());
    for source in sources {
        let Ok(path) = std::fs::canonicalize(&source) else {
            return Some(format!("{} it was built from is gone", source.display()));
        };
        if !path.starts_with(&root) {
            return Some(format!("it was built from another checkout ({})", source.display()));
        }
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if modified > built {
            return Some(format!("it is older than {}", source.display()));
        }
    }
    None
}

/// A command for one of the project's binaries. They are built by `scripts/test` (or
/// `cargo build --bins`) beforehand: cargo holds its lock while tests run, so a test cannot
/// build them itself. A binary older than the sources is refused rather than tested.
pub fn bin(name: &str) -> Command {
    let path = bin_dir().join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!("{} is missing: run scripts/test, or cargo build --bins before cargo test", path.display())
    });
    if let Some(why) = stale(&path, name, built) {
        panic!("{}: {why}: run scripts/test, or cargo build --bins before cargo test", path.display());
    }
    let mut cmd = Command::new(path);
    cmd.env_remove("FATHOM_DATASET").env("NO_COLOR", "1");
    cmd
}

/// Runs the command and returns its output, whatever the exit status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawning the binary")
}

/// Runs the command, asserting success, and returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("dir entry").path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

/// A quick collector run: every CPU and memory probe with small budgets and working sets, so a
/// test stays fast and still runs each probe end to end.
pub fn quick_run_args(dataset: &Path, host: &str) -> Vec<String> {
    [
        "run",
        "--suite",
        "quick",
        "--dataset",
        dataset.to_str().unwrap(),
        "--host",
        host,
        "--role",
        "target",
        "--label",
        "site=lab",
        "--tag",
        "purpose=e2e",
        "--param",
        "cpu.aes_gcm.budget=800ms",
        "--param",
        "cpu.aes_gcm.threads=2",
        "--param",
        "cpu.compress.budget=800ms",
        "--param",
        "cpu.compress.corpus_size=512KiB",
        "--param",
        "cpu.flops.budget=500ms",
        "--param",
        "cpu.scaling.budget=500ms",
        "--param",
        "memory.bandwidth.budget=600ms",
        "--param",
        "memory.bandwidth.size=32MiB",
        "--param",
        "memory.latency.budget=600ms",
        "--param",
        "memory.latency.max_size=32MiB",
        "--param",
        "storage.seq.size=16MiB",
        "--param",
        "storage.seq.budget=1s",
        "--param",
        "storage.rand4k.size=16MiB",
        "--param",
        "storage.rand4k.budget=1s",
        "--param",
        "storage.mixed.size=16MiB",
        "--param",
        "storage.mixed.budget=1s",
        "--param",
        "storage.fsync.size=4MiB",
        "--param",
        "storage.fsync.budget=1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A Python interpreter with duckdb, polars and pyarrow: `$FATHOM_PYTHON`, else the virtual
/// environment `scripts/test` makes.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FATHOM_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let venv = cache.join("fathom/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with duckdb/polars at {}: run scripts/test (it installs them) or set FATHOM_PYTHON",
        venv.display()
    );
    venv
}
