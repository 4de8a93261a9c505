//! The storage probes as a user runs them: against a real temporary directory, refusing a file
//! that would fill the disk before anything runs, and leaving no test file behind, also after
//! Ctrl-C.

use std::path::Path;
use std::time::{Duration, Instant};

use fathom_e2e::{bin, json, run, stderr};

const PROBES: &str = "storage.seq,storage.rand4k,storage.mixed,storage.fsync";

fn small(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for probe in PROBES.split(',') {
        for (k, v) in
            [("dir", dir.to_str().unwrap()), ("size", "16MiB"), ("runtime", "300ms"), ("budget", "3s")]
        {
            args.push("--param".to_string());
            args.push(format!("{probe}.{k}={v}"));
        }
    }
    args
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn storage_probes_measure_a_real_directory_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("under-test");
    std::fs::create_dir(&target).unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", PROBES, "--json", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(small(&target)));
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(run["status"], "ok", "{run}");
    let figure = |probe: &str, metric: &str| -> f64 {
        let m = run["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["probe"] == probe && m["metric"] == metric)
            .unwrap_or_else(|| panic!("{probe} {metric} missing: {run}"));
        assert!(m["n"].as_i64().unwrap() >= 3, "{probe} {metric}: one repetition per time slice");
        m["value"].as_f64().unwrap()
    };
    // Plausible for any disk, page cache or tmpfs: more than a floppy, less than RAM.
    for (probe, metric) in [("storage.seq", "read_bw"), ("storage.seq", "write_bw")] {
        let mbps = figure(probe, metric);
        assert!((1.0..100_000.0).contains(&mbps), "{probe} {metric} {mbps} MB/s");
    }
    for metric in ["read_iops", "write_iops"] {
        let iops = figure("storage.rand4k", metric);
        assert!((50.0..10_000_000.0).contains(&iops), "{metric} {iops}");
    }
    let (p50, p95, p99, p999) = (
        figure("storage.rand4k", "read_lat_p50"),
        figure("storage.rand4k", "read_lat_p95"),
        figure("storage.rand4k", "read_lat_p99"),
        figure("storage.rand4k", "read_lat_p999"),
    );
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99 && p99 <= p999, "{p50} {p95} {p99} {p999}");
    // 70/30: the mix reads about twice as often as it writes.
    let share = figure("storage.mixed", "read_iops")
        / (figure("storage.mixed", "read_iops") + figure("storage.mixed", "write_iops"));
    assert!((0.6..0.8).contains(&share), "read share {share}");
    assert!(figure("storage.fsync", "fsync_rate") > 1.0);
    assert!(figure("storage.fsync", "lat_p50") <= figure("storage.fsync", "lat_p99"));
    let params = run["measurements"][0]["params"].as_str().unwrap();
    assert!(
        params.contains("direct=") && params.contains("engine=") && params.contains("block=1MiB"),
        "{params}"
    );
    assert!(entries(&target).is_empty(), "test files left behind: {:?}", entries(&target));
}

#[test]
fn a_file_that_would_fill_the_disk_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", "cpu.compress,storage.rand4k", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", &format!("storage.rand4k.dir={}", dir.path().display())])
        .args(["--param", "storage.rand4k.size=900TiB"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("storage.rand4k") && err.contains("dir"), "names probe and parameter: {err}");
    assert!(err.contains("refusing to write") && err.contains("must stay free"), "{err}");
    assert!(!dir.path().join("ds").exists(), "nothing ran, nothing was written: {:?}", entries(dir.path()));
    // The margin applies on top of the file: a small file is refused when the margin is huge.
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", "storage.fsync", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", &format!("storage.fsync.dir={}", dir.path().display())])
        .args(["--param", "storage.fsync.min_free=900TiB"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must stay free"), "{}", stderr(&out));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn an_interrupt_removes_the_test_file_and_keeps_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("under-test");
    std::fs::create_dir(&target).unwrap();
    let child = bin("fathom-collector")
        .args(["run", "--probes", "storage.rand4k", "--json", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", &format!("storage.rand4k.dir={}", target.display())])
        .args(["--param", "storage.rand4k.size=16MiB", "--param", "storage.rand4k.runtime=30s"])
        .args(["--param", "storage.rand4k.budget=90s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the test file exists and the workload is under way.
    let started = Instant::now();
    while entries(&target).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "no test file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(25), "the 30 s workload stopped at the interrupt");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(entries(&target).is_empty(), "the test file outlived the interrupt: {:?}", entries(&target));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert!(run["status_reason"].as_str().unwrap().contains("interrupted"), "{run}");
}

#[test]
fn tmpfs_is_measured_and_said_to_be_memory() {
    let shm = Path::new("/dev/shm");
    let is_tmpfs = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some("/dev/shm") && l.contains("tmpfs")))
        .unwrap_or(false);
    if !is_tmpfs {
        eprintln!("no tmpfs at /dev/shm here; skipped");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", "storage.rand4k", "--json", "--dataset"])
        .arg(tempfile::tempdir().unwrap().path().join("ds"))
        .args(["--param", &format!("storage.rand4k.dir={}", dir.path().display())])
        .args(["--param", "storage.rand4k.size=8MiB", "--param", "storage.rand4k.runtime=200ms"])
        .args(["--param", "storage.rand4k.min_free=0"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    let notes = run["notes"].to_string();
    assert!(notes.contains("tmpfs: memory, not a device"), "{notes}");
    assert!(entries(dir.path()).is_empty());
}
