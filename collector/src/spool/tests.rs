use super::*;
use fathom_datasets::fixtures;
use fathom_datasets::store::DateRange;
use std::sync::atomic::AtomicBool;

fn encoded(host: &str) -> EncodedRun {
    let run = fixtures::run(host, "2026-03-02T01:00:00Z");
    EncodedRun::encode(&run, &[fixtures::measurement("encrypt_1t", 1000.0)], &[]).unwrap()
}

async fn runs_in(dataset: &str) -> usize {
    let ds = Dataset::open(dataset).unwrap();
    ds.list_files(Table::Runs, DateRange::default()).await.unwrap().len()
}

#[tokio::test]
async fn a_spooled_run_is_uploaded_once_and_leaves_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    let run = encoded("db-01");
    spool.add("memory://spool-once", &run).unwrap();
    assert_eq!(spool.entries().unwrap().len(), 1);
    let report = spool.flush(None).await.unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    assert!(!report.delivered[0].already_there);
    assert!(spool.entries().unwrap().is_empty());
    assert_eq!(runs_in("memory://spool-once").await, 1);

    // The same run spooled again (a crash after the upload, before the entry was removed)
    // finds its marker and writes nothing.
    spool.add("memory://spool-once", &run).unwrap();
    let report = spool.flush(None).await.unwrap();
    assert!(report.delivered[0].already_there, "{report:?}");
    assert_eq!(runs_in("memory://spool-once").await, 1);
}

#[tokio::test]
async fn an_entry_reads_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    let run = encoded("db-01");
    spool.add("s3://bench/fathom", &run).unwrap();
    let entry = &spool.entries().unwrap()[0];
    let back = Spool::read(entry).unwrap();
    assert_eq!(back.dataset, "s3://bench/fathom");
    assert_eq!(back.run, run);
}

#[tokio::test]
async fn corrupt_and_torn_entries_are_quarantined_and_the_others_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    let url = "memory://spool-corrupt";
    let runs: Vec<EncodedRun> = (0..3).map(|i| encoded(&format!("db-{i}"))).collect();
    let paths: Vec<PathBuf> = runs.iter().map(|r| spool.add(url, r).unwrap()).collect();
    // One flipped byte in the first entry's payload, the second cut short.
    let mut bytes = fs::read(&paths[0]).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x55;
    fs::write(&paths[0], bytes).unwrap();
    let bytes = fs::read(&paths[1]).unwrap();
    fs::write(&paths[1], &bytes[..bytes.len() / 2]).unwrap();

    let report = spool.flush(None).await.unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
    assert_eq!(report.delivered[0].run_id, runs[2].run_id);
    assert_eq!(report.quarantined.len(), 2);
    assert!(report.quarantined[0].1.contains("checksum mismatch"), "{:?}", report.quarantined);
    assert!(report.quarantined[1].1.contains("torn write"), "{:?}", report.quarantined);
    assert_eq!(runs_in(url).await, 1);
    let status = spool.status().unwrap();
    assert_eq!((status.waiting, status.quarantined), (0, 2));
    let reason =
        fs::read_to_string(dir.path().join(QUARANTINE).join(format!("{}.reason", runs[0].run_id))).unwrap();
    assert!(reason.contains("checksum"), "{reason}");
}

#[test]
fn a_half_spooled_run_of_a_writer_that_is_gone_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    // A writer that is gone (no process has pid 2^22 + 1 on Linux, whose pid_max is at most
    // 2^22) and one that is still writing: this test's own process.
    let leftover = dir.path().join(TMP).join(format!("0190.{}.partial", (1 << 22) + 1));
    let in_progress = dir.path().join(TMP).join(format!("0191.{}.partial", std::process::id()));
    fs::write(&leftover, b"FATHOM-SPOOL/1\n{\"run_").unwrap();
    fs::write(&in_progress, b"FATHOM-SPOOL/1\n{\"run_").unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    assert!(!leftover.exists());
    assert!(in_progress.exists(), "another writer's staging file was removed");
    assert!(spool.entries().unwrap().is_empty());
}

#[tokio::test]
async fn a_full_spool_keeps_the_oldest_runs_and_logs_the_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = encoded("db-01");
    let one_entry = {
        let probe = Spool::open(&dir.path().join("probe"), DEFAULT_LIMIT).unwrap();
        fs::metadata(probe.add("memory://x", &first).unwrap()).unwrap().len()
    };
    let spool = Spool::open(&dir.path().join("spool"), one_entry + one_entry / 2).unwrap();
    spool.add("memory://spool-full", &first).unwrap();
    let second = encoded("db-02");
    let err = spool.add("memory://spool-full", &second).unwrap_err();
    assert!(matches!(err, SpoolError::Full { count: 1, .. }), "{err}");
    assert!(err.to_string().contains(&second.run_id), "{err}");
    let entries = spool.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].run_id, first.run_id);
    assert_eq!(spool.status().unwrap().refused_while_full, 1);
}

#[tokio::test]
async fn an_unreachable_dataset_holds_back_its_own_later_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    // A dataset folder that cannot be created: under a regular file.
    let blocker = dir.path().join("not-a-folder");
    fs::write(&blocker, b"x").unwrap();
    let broken = blocker.join("dataset").display().to_string();
    let good = "memory://spool-partial";
    let order = [(broken.as_str(), "a"), (good, "b"), (broken.as_str(), "c"), (good, "d")];
    let mut ids = Vec::new();
    for (url, host) in order {
        let run = encoded(host);
        ids.push(run.run_id.clone());
        spool.add(url, &run).unwrap();
    }
    let report = spool.flush(None).await.unwrap();
    let delivered: Vec<&str> = report.delivered.iter().map(|d| d.run_id.as_str()).collect();
    assert_eq!(delivered, [ids[1].as_str(), ids[3].as_str()], "{report:?}");
    assert_eq!(report.waiting, 2);
    assert_eq!(report.errors.len(), 1, "one error per dataset and flush: {report:?}");
    let waiting: Vec<String> = spool.entries().unwrap().into_iter().map(|e| e.run_id).collect();
    assert_eq!(waiting, [ids[0].clone(), ids[2].clone()]);
    let status = spool.status().unwrap();
    assert_eq!(status.datasets.len(), 1);
    assert_eq!(status.datasets[0].runs, 2);
}

#[test]
fn backoff_doubles_up_to_the_cap_with_a_little_jitter() {
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(60);
    for (k, expected) in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0), (40, 60.0)] {
        let wait = backoff(k, base, cap).as_secs_f64();
        assert!((expected..=expected * 1.1).contains(&wait), "k={k}: {wait}");
    }
}

#[tokio::test]
async fn one_uploader_at_a_time_and_none_while_a_suite_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_LIMIT).unwrap();
    spool.add("memory://spool-lock", &encoded("db-01")).unwrap();
    // While a suite runs, a flush leaves everything for later.
    let busy = AtomicBool::new(true);
    let report = spool.flush(Some(&busy)).await.unwrap();
    assert!(report.paused && report.delivered.is_empty() && report.waiting == 1, "{report:?}");

    // Another process holds the upload lock: the flush waits for it.
    let held = spool.lock().await.unwrap();
    let other = spool.clone();
    let flush = tokio::spawn(async move { other.flush(None).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!flush.is_finished(), "a flush ran while another held the lock");
    assert_eq!(spool.entries().unwrap().len(), 1);
    drop(held);
    let report = tokio::time::timeout(Duration::from_secs(5), flush).await.unwrap().unwrap();
    assert_eq!(report.delivered.len(), 1, "{report:?}");
}
