//! The dataset on a real S3-compatible server (s3s-fs on loopback, see scripts/s3-server):
//! runs written to `s3://` by the collector are read back by the analyzer and by pyarrow, and
//! the delivery survives what nights bring: a store that goes away mid-upload, a collector
//! killed mid-upload, wrong credentials, a corrupted spool entry. Every completed run is
//! delivered exactly once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fathom_collector::spool::{DEFAULT_LIMIT, Spool};
use fathom_datasets::RunRecord;
use fathom_datasets::fixtures::{self, measurement};
use fathom_datasets::write::EncodedRun;
use fathom_e2e::s3::{S3Server, SECRET_ACCESS_KEY};
use fathom_e2e::{bin, json, ok, python, run, stderr, stdout};

fn with_env(mut cmd: Command, s3: &S3Server) -> Command {
    cmd.envs(s3.env());
    cmd
}

/// What pyarrow sees of a dataset on the server: rows and distinct run ids per table, the
/// statuses of the runs. Files are listed first and handed over (s3s-fs answers a HEAD of a
/// folder with 500, which pyarrow's own discovery does).
fn pyarrow_view(s3: &S3Server, url: &str) -> serde_json::Value {
    let root = url.trim_start_matches("s3://").trim_end_matches('/');
    let script = format!(
        r#"
import json, pyarrow.dataset as ds, pyarrow.fs as pafs, pyarrow.compute as pc
fs = pafs.S3FileSystem(endpoint_override="{endpoint}", scheme="http", access_key="{key}",
                       secret_key="{secret}", region="us-east-1")
out = {{}}
for table in ["runs", "measurements", "samples"]:
    base = "{root}/" + table
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        infos = []
    files = [i.path for i in infos if i.is_file and i.path.endswith(".parquet")]
    if not files:
        out[table] = {{"rows": 0, "run_ids": 0}}
        continue
    t = ds.dataset(files, filesystem=fs, format="parquet",
                   partitioning=ds.partitioning(flavor="hive"), partition_base_dir=base).to_table()
    out[table] = {{"rows": t.num_rows, "run_ids": len(pc.unique(t["run_id"]))}}
    if table == "runs":
        out["run_id_list"] = sorted(t["run_id"].to_pylist())
        out["statuses"] = sorted(t["status"].to_pylist())
        out["dates"] = sorted(set(str(d) for d in t["date"].to_pylist()))
print(json.dumps(out))
"#,
        endpoint = s3.endpoint().trim_start_matches("http://"),
        key = fathom_e2e::s3::ACCESS_KEY_ID,
        secret = SECRET_ACCESS_KEY,
    );
    let out = run(Command::new(python()).args(["-c", &script]));
    assert!(out.status.success(), "pyarrow failed: {}", stderr(&out));
    json(&stdout(&out))
}

fn quick_aes_run(url: &str, spool: &Path, host: &str) -> Vec<String> {
    [
        "run",
        "--probes",
        "cpu.aes_gcm",
        "--dataset",
        url,
        "--host",
        host,
        "--param",
        "cpu.aes_gcm.budget=300ms",
        "--json",
        "--spool",
        spool.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_run_written_to_s3_reads_back_in_the_analyzer_and_in_pyarrow() {
    let s3 = S3Server::start("bench");
    let url = s3.url("fathom");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let printed =
        json(&ok(with_env(bin("fathom-collector"), &s3).args(quick_aes_run(&url, &spool, "s3-host"))));
    let measured = printed["measurements"].as_array().unwrap().len();
    assert!(measured >= 2, "{printed}");

    let validated = ok(with_env(bin("fathom-datasets"), &s3).args(["validate", &url]));
    assert!(validated.contains("0 bad") && validated.contains("1 runs"), "{validated}");
    let summary =
        json(&ok(with_env(bin("fathom-analyzer"), &s3).args(["summary", "--json", "--dataset", &url])));
    let series = summary["series"].as_array().unwrap();
    assert_eq!(series.len(), measured, "{summary}");
    assert!(series.iter().all(|s| s["host"] == "s3-host"), "{summary}");

    let view = pyarrow_view(&s3, &url);
    assert_eq!(view["runs"]["rows"], 1, "{view}");
    assert_eq!(view["run_id_list"][0], printed["run_id"], "{view}");
    assert_eq!(view["measurements"]["rows"], measured, "{view}");
    // The spool emptied itself once the upload went through.
    assert_eq!(waiting(&spool), 0);
}

#[test]
fn a_run_refused_by_the_store_stays_in_the_spool_and_no_secret_is_printed() {
    let s3 = S3Server::start("bench");
    let url = s3.url("fathom");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let wrong_secret = "not-the-secret-0123456789";
    let mut cmd = with_env(bin("fathom-collector"), &s3);
    cmd.env("AWS_SECRET_ACCESS_KEY", wrong_secret).args(quick_aes_run(&url, &spool, "s3-host"));
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not be uploaded") && err.contains("kept in the spool"), "{err}");
    for text in [&err, &stdout(&out)] {
        assert!(
            !text.contains(wrong_secret) && !text.contains(SECRET_ACCESS_KEY),
            "a secret was printed:\n{text}"
        );
    }
    // Neither does the operator's flush, nor the daemon's uploader (the same report).
    let mut flush = with_env(bin("fathom-collector"), &s3);
    flush.env("AWS_SECRET_ACCESS_KEY", wrong_secret).args(["spool", "flush", "--spool"]).arg(&spool);
    let out = run(&mut flush);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 still waiting"), "{}", stdout(&out));
    for text in [&stderr(&out), &stdout(&out)] {
        assert!(
            !text.contains(wrong_secret) && !text.contains(SECRET_ACCESS_KEY),
            "a secret was printed:\n{text}"
        );
    }
    let status =
        json(&ok(bin("fathom-collector").args(["spool", "status", "--json", "--spool"]).arg(&spool)));
    assert_eq!(status["waiting"], 1, "{status}");
    assert_eq!(status["datasets"][0]["url"], url.as_str(), "{status}");
    assert_eq!(pyarrow_view(&s3, &url)["runs"]["rows"], 0);

    // With the right credentials the operator's flush delivers it.
    let flushed = ok(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool));
    assert!(flushed.contains("1 delivered, 0 quarantined, 0 still waiting"), "{flushed}");
    let view = pyarrow_view(&s3, &url);
    assert_eq!(
        (view["runs"]["rows"].as_u64(), view["runs"]["run_ids"].as_u64()),
        (Some(1), Some(1)),
        "{view}"
    );
}

/// Run `i` of a 40-host fleet, over the last three days.
fn record(i: usize) -> RunRecord {
    let started = chrono::Utc::now() - chrono::Duration::days((i % 3) as i64);
    fixtures::run(&format!("fleet-{:03}", i % 40), &started.to_rfc3339())
}

fn flush(s3: &S3Server, spool: &Path) -> Child {
    with_env(bin("fathom-collector"), s3)
        .args(["spool", "flush", "--json", "--spool"])
        .arg(spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn waiting(spool: &Path) -> u64 {
    let status = json(&ok(bin("fathom-collector").args(["spool", "status", "--json", "--spool"]).arg(spool)));
    status["waiting"].as_u64().unwrap()
}

/// The fault test of the closing note: 240 completed runs in the spool; the uploader is killed
/// (SIGKILL) mid-upload, then the server is killed mid-upload, a spool entry is corrupted, and
/// both come back. Every run is in the dataset once; the corrupt entry is quarantined.
#[test]
fn uploads_cut_off_by_a_killed_collector_or_a_killed_server_deliver_every_run_exactly_once() {
    const RUNS: usize = 240;
    let mut s3 = S3Server::start("bench");
    let url = s3.url("fleet");
    let tmp = tempfile::tempdir().unwrap();
    let spool_dir = tmp.path().join("spool");
    let spool = Spool::open(&spool_dir, DEFAULT_LIMIT).unwrap();
    let mut completed = BTreeSet::new();
    for i in 0..RUNS {
        let r = record(i);
        let ms = [measurement("encrypt_1t", 1000.0 + i as f64), measurement("decrypt_1t", 900.0 + i as f64)];
        spool.add(&url, &EncodedRun::encode(&r, &ms, &[]).unwrap()).unwrap();
        completed.insert(r.run_id);
    }

    // 1. The collector is killed while it uploads.
    let mut uploader = flush(&s3, &spool_dir);
    let started = Instant::now();
    while waiting(&spool_dir) > (RUNS as u64) * 3 / 4 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    uploader.kill().unwrap();
    uploader.wait().unwrap();
    let after_kill = waiting(&spool_dir);
    assert!(after_kill > 0 && after_kill < RUNS as u64, "killed mid-upload: {after_kill} of {RUNS} waiting");

    // 2. The server is killed while the next upload goes on; the flush reports it and stops.
    let uploader = flush(&s3, &spool_dir);
    let started = Instant::now();
    while waiting(&spool_dir) + 20 > after_kill && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    s3.stop();
    let out = uploader.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "a flush that could not finish says so (EX_TEMPFAIL): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert!(!report["errors"].as_array().unwrap().is_empty(), "{report}");
    let after_outage = waiting(&spool_dir);
    assert!(after_outage > 0 && after_outage < after_kill, "{after_outage} waiting after the outage");

    // While the store is down, a flush fails fast and keeps everything.
    let out = run(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool_dir));
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(waiting(&spool_dir), after_outage);

    // 3. One waiting entry is damaged on disk.
    let entries = spool.entries().unwrap();
    let damaged = &entries[entries.len() / 2];
    let mut bytes = std::fs::read(&damaged.path).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&damaged.path, bytes).unwrap();
    completed.remove(&damaged.run_id);

    // 4. Both come back.
    s3.restart();
    let flushed =
        ok(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool_dir));
    assert!(flushed.contains(" 1 quarantined, 0 still waiting"), "{flushed}");
    assert!(
        flushed.contains(&format!("run {}: quarantined: checksum mismatch", damaged.run_id)),
        "{flushed}"
    );
    assert_eq!(waiting(&spool_dir), 0);

    let view = pyarrow_view(&s3, &url);
    let delivered: BTreeSet<String> =
        view["run_id_list"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let rows = view["runs"]["rows"].as_u64().unwrap() as usize;
    let duplicates = rows - delivered.len();
    let lost = completed.difference(&delivered).count();
    eprintln!(
        "fault test: runs completed {}, delivered {}, duplicates {duplicates}, lost {lost}, quarantined 1 \
         (collector killed with {after_kill} waiting, server killed with {after_outage} waiting)",
        completed.len(),
        delivered.len()
    );
    assert_eq!((duplicates, lost), (0, 0), "{view}");
    assert_eq!(delivered, completed);
    assert_eq!(view["measurements"]["rows"].as_u64(), Some(2 * completed.len() as u64), "{view}");
    let validated = ok(with_env(bin("fathom-datasets"), &s3).args(["validate", &url]));
    assert!(validated.contains(" 0 bad"), "{validated}");
}

/// `fathom-datasets compact` on the server: each day's uploads become one file per table, no
/// row changes, and a late retry of a compacted run (a collector that crashed before it could
/// clear its spool entry) still finds its delivered marker and writes nothing.
#[test]
fn compaction_on_s3_keeps_every_row_and_a_late_retry_writes_nothing() {
    let s3 = S3Server::start("bench");
    let url = s3.url("fleet");
    let tmp = tempfile::tempdir().unwrap();
    let spool_dir = tmp.path().join("spool");
    let spool = Spool::open(&spool_dir, DEFAULT_LIMIT).unwrap();
    let mut encoded = Vec::new();
    for i in 0..60 {
        let ms = [measurement("encrypt_1t", 1000.0 + i as f64), measurement("decrypt_1t", 900.0)];
        let run = EncodedRun::encode(&record(i), &ms, &[]).unwrap();
        spool.add(&url, &run).unwrap();
        encoded.push(run);
    }
    ok(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool_dir));
    let before = pyarrow_view(&s3, &url);
    assert_eq!(before["runs"]["rows"], 60, "{before}");

    let compacted = ok(with_env(bin("fathom-datasets"), &s3).args(["compact", &url]));
    assert!(compacted.contains("measurements:") && compacted.contains("→ 1"), "{compacted}");
    let after = pyarrow_view(&s3, &url);
    assert_eq!(after, before, "compaction changed what a reader sees");
    let runs_dir = s3.data_dir().join("bench/fleet/runs");
    for day in std::fs::read_dir(&runs_dir).unwrap().flatten() {
        let files: Vec<_> = std::fs::read_dir(day.path())
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".parquet"))
            .collect();
        assert_eq!(files.len(), 1, "{}: {files:?}", day.path().display());
    }

    spool.add(&url, &encoded[7]).unwrap();
    let flushed =
        ok(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool_dir));
    assert!(flushed.contains(&format!("run {} was already in", encoded[7].run_id)), "{flushed}");
    assert_eq!(pyarrow_view(&s3, &url), before);
    let summary =
        json(&ok(with_env(bin("fathom-analyzer"), &s3).args(["summary", "--json", "--dataset", &url])));
    assert!(!summary["series"].as_array().unwrap().is_empty(), "{summary}");
}

fn daemon(s3: &S3Server, dir: &Path, schedules: &Path) -> Child {
    with_env(bin("fathom-collector"), s3)
        .args(["daemon", "--host", "night-host", "--schedules"])
        .arg(schedules)
        .arg("--state-file")
        .arg(dir.join("state"))
        .arg("--spool")
        .arg(dir.join("spool"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Run ids the daemon's output says it completed or recorded. A run a stop cut short is
/// reported (`run X partial (interrupted)`) and delivered; a run a kill cut short is recorded on
/// the next start (`run X was interrupted by a stop`) and counted apart.
fn reported_runs(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("daemon: ") && !l.contains("was interrupted by a stop"))
        .filter_map(|l| {
            let tail =
                l.rsplit_once(", run ").map(|(_, t)| t).or_else(|| l.split_once(": run ").map(|(_, t)| t))?;
            tail.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

/// The daemon as it lives through a night: the store goes away for a while (runs pile up in
/// the spool and go out when it is back), then the daemon itself is killed and started again.
/// Every run it reported is in the dataset exactly once.
#[test]
fn the_daemon_rides_out_a_store_outage_and_its_own_kill_without_losing_or_doubling_a_run() {
    let mut s3 = S3Server::start("bench");
    let url = s3.url("nightly");
    let tmp = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let hhmm = |m: i64| (now + chrono::Duration::minutes(m)).format("%H:%M").to_string();
    let schedules = tmp.path().join("schedules.toml");
    std::fs::write(
        &schedules,
        format!(
            "[[schedule]]\nname = \"often\"\ncron = \"*/2 * * * * *\"\ntimezone = \"UTC\"\nprobes = [\"cpu.flops\"]\n\
             window = {{ days = [\"*\"], start = \"{}\", end = \"{}\" }}\ndataset = \"{url}\"\n\
             params = {{ \"cpu.flops.budget\" = \"200ms\" }}\n",
            hhmm(-60),
            hhmm(60)
        ),
    )
    .unwrap();
    let mut first = daemon(&s3, tmp.path(), &schedules);
    std::thread::sleep(Duration::from_secs(4));
    s3.stop();
    std::thread::sleep(Duration::from_secs(7));
    let spool = tmp.path().join("spool");
    let piled_up = waiting(&spool);
    s3.restart();
    std::thread::sleep(Duration::from_secs(9));
    first.kill().unwrap(); // SIGKILL, wherever it is.
    let killed = first.wait_with_output().unwrap();
    let out1 = String::from_utf8_lossy(&killed.stdout).into_owned();
    let err1 = String::from_utf8_lossy(&killed.stderr).into_owned();
    let second = daemon(&s3, tmp.path(), &schedules);
    std::thread::sleep(Duration::from_secs(5));
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    let done = second.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let out2 = String::from_utf8_lossy(&done.stdout).into_owned();
    // Whatever the last seconds left behind goes out with the operator's flush.
    ok(with_env(bin("fathom-collector"), &s3).args(["spool", "flush", "--spool"]).arg(&spool));

    let mut reported: Vec<String> = reported_runs(&out1);
    reported.extend(reported_runs(&out2));
    let interrupted = out2.lines().filter(|l| l.contains("was interrupted by a stop")).count();
    let view = pyarrow_view(&s3, &url);
    let delivered: BTreeSet<String> =
        view["run_id_list"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let rows = view["runs"]["rows"].as_u64().unwrap() as usize;
    let reported_set: BTreeSet<String> = reported.iter().cloned().collect();
    let lost = reported_set.difference(&delivered).count();
    eprintln!(
        "daemon fault test: runs reported {} (+{interrupted} interrupted, recorded as failed), delivered {}, \
         duplicates {}, lost {lost}; {piled_up} waited in the spool during the outage",
        reported_set.len(),
        delivered.len(),
        rows - delivered.len()
    );
    assert!(piled_up >= 2, "runs should pile up while the store is down: {piled_up}\n{out1}");
    assert!(reported_set.len() >= 8, "{out1}\n{out2}");
    assert_eq!(reported_set.len(), reported.len(), "a run id reported twice");
    assert_eq!(rows, delivered.len(), "duplicates: {view}");
    assert_eq!(lost, 0, "lost runs:\n{out1}\n{out2}\n{view}");
    assert_eq!(delivered.len(), reported_set.len() + interrupted, "{view}");
    assert!(err1.contains("unreachable") && err1.contains("wait in the spool"), "{err1}");
}
