//! Helpers for the end-to-end tests: find (and build, once) the real binaries, run them, and
//! read what they print.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

static BUILD: Once = Once::new();

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The folder the test binary's profile writes executables to (`target/debug`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A command for one of the project's binaries, built first (once per test process) so the
/// tests never run a stale binary. `scripts/test` builds them beforehand and sets
/// `FATHOM_E2E_PREBUILT=1`, which skips that step.
pub fn bin(name: &str) -> Command {
    BUILD.call_once(|| {
        if std::env::var_os("FATHOM_E2E_PREBUILT").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "fathom-datasets",
                "-p",
                "fathom-collector",
                "-p",
                "fathom-analyzer",
            ])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
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

/// A quick collector run: both real CPU probes with small budgets, so a test stays fast.
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
