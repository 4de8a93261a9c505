use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};

use super::*;
use crate::records::tests::{measurement, run};
use crate::records::{Measurement, MeasurementsBuilder, RunRecord, Sample, SamplesBuilder, runs_batch};
use crate::schema::col;
use crate::write::{RunWrite, write_run, write_table_file};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn sample(metric: &str, seq: i32) -> Sample {
    Sample {
        probe: "cpu.aes_gcm".into(),
        metric: metric.into(),
        params: "buffer=16KiB".into(),
        seq,
        t_offset_s: f64::from(seq) * 0.5,
        value: 1000.0 + f64::from(seq),
        in_window: seq > 0,
    }
}

/// One run's rows: three measurements over two probes, three samples.
fn rows_of_run(i: usize) -> (Vec<Measurement>, Vec<Sample>) {
    let v = i as f64;
    let mut bandwidth = measurement("read", 20_000.0 + v);
    bandwidth.probe = "memory.bandwidth".into();
    bandwidth.category = "memory".into();
    bandwidth.unit = "GB/s".into();
    bandwidth.params = String::new();
    let ms = vec![measurement("encrypt_1t", 1000.0 + v), bandwidth, measurement("decrypt_1t", 1100.0 + v)];
    let samples = vec![sample("encrypt_1t", 2), sample("encrypt_1t", 0), sample("encrypt_1t", 1)];
    (ms, samples)
}

/// A run of `host` on day `d`, started `i` minutes after midnight.
fn run_on(d: u32, host: &str, i: usize) -> RunRecord {
    run(host, &format!("2026-03-{d:02}T{:02}:{:02}:00Z", i / 60 % 24, i % 60))
}

/// `per_day` delivered runs on each day, the hosts out of order, as many collectors upload.
async fn write_fleet(ds: &Dataset, days: &[u32], per_day: usize) -> Vec<RunRecord> {
    let mut runs = Vec::new();
    for &d in days {
        for i in 0..per_day {
            let r = run_on(d, &format!("db-{:02}", (i * 7 + 3) % 10), i);
            let (ms, samples) = rows_of_run(i);
            assert!(matches!(write_run(ds, &r, &ms, &samples).await.unwrap(), RunWrite::Written { .. }));
            runs.push(r);
        }
    }
    runs
}

/// Every row readers see, rendered column by column and sorted: a multiset comparison that
/// does not go through the compaction's own hash.
async fn visible_rows(ds: &Dataset, table: Table) -> Vec<String> {
    let mut rows = Vec::new();
    for f in ds.list_files(table, DateRange::default()).await.unwrap() {
        for b in read_parquet(ds.get(&f.location).await.unwrap()).unwrap() {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b.columns().iter().map(|c| format!("{:?}", c.slice(i, 1))).collect();
                rows.push(format!("{}|{}", f.date.unwrap(), cells.join("|")));
            }
        }
    }
    rows.sort();
    rows
}

async fn all_visible_rows(ds: &Dataset) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for table in Table::ALL {
        all.push(visible_rows(ds, table).await);
    }
    all
}

/// File names as stored, per table, for one day.
async fn stored_names(ds: &Dataset, table: Table, d: u32) -> Vec<String> {
    let range = DateRange { since: Some(day(d)), until: Some(day(d)) };
    let files = ds.list_files_raw(table, range).await.unwrap();
    files.iter().map(|f| f.location.filename().unwrap().to_string()).collect()
}

async fn visible_names(ds: &Dataset, table: Table, d: u32) -> Vec<String> {
    let range = DateRange { since: Some(day(d)), until: Some(day(d)) };
    let files = ds.list_files(table, range).await.unwrap();
    files.iter().map(|f| f.location.filename().unwrap().to_string()).collect()
}

/// One day's files as stored, grouped by table, as `run` hands them to `plan_day`.
/// The plan a compaction of day 1 would carry out, for tests that stop it half-way.
async fn plan_of_day_1(ds: &Dataset) -> DayPlan {
    plan_day(ds, day(1), day_files(ds, 1).await, MAX_ROWS_PER_FILE, &mut Vec::new()).await.unwrap().unwrap()
}

async fn day_files(ds: &Dataset, d: u32) -> BTreeMap<Table, Vec<DataFile>> {
    let range = DateRange { since: Some(day(d)), until: Some(day(d)) };
    let mut tables = BTreeMap::new();
    for table in Table::ALL {
        tables.insert(table, ds.list_files_raw(table, range).await.unwrap());
    }
    tables
}

fn string_column<'a>(b: &'a RecordBatch, name: &str) -> Vec<&'a str> {
    b.column_by_name(name).unwrap().as_string::<i32>().iter().map(Option::unwrap).collect()
}

async fn decode(ds: &Dataset, table: Table, d: u32) -> Vec<RecordBatch> {
    let range = DateRange { since: Some(day(d)), until: Some(day(d)) };
    let mut batches = Vec::new();
    for f in ds.list_files(table, range).await.unwrap() {
        batches.extend(read_parquet(ds.get(&f.location).await.unwrap()).unwrap());
    }
    batches
}

#[tokio::test]
async fn two_days_of_runs_become_one_file_per_table_per_day() {
    let ds = Dataset::create("memory://compact-two-days").unwrap();
    let runs = write_fleet(&ds, &[1, 2], 12).await;
    let before = all_visible_rows(&ds).await;
    assert_eq!(stored_names(&ds, Table::Measurements, 1).await.len(), 12);

    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    assert_eq!(report.days(), 2);
    assert_eq!(report.merged.len(), 6, "{:#?}", report.merged);
    assert!(report.left.is_empty() && report.recovered.is_empty(), "{report:#?}");
    for m in &report.merged {
        assert_eq!((m.inputs.len(), m.outputs.len()), (12, 1), "{m:?}");
        assert_eq!(m.input, m.output);
        let expected = match m.table {
            Table::Runs => 12,
            Table::Measurements | Table::Samples => 36,
        };
        assert_eq!(m.output.rows, expected);
    }
    for table in Table::ALL {
        for d in [1, 2] {
            let names = stored_names(&ds, table, d).await;
            assert_eq!(names.len(), 1, "{table} {d}: {names:?}");
            assert!(
                names[0].starts_with("compacted-") && output_of(&Path::from(names[0].as_str())).is_some()
            );
        }
    }
    assert_eq!(all_visible_rows(&ds).await, before, "rows changed");
    for r in &runs {
        assert!(ds.exists(&ds.delivered_marker(&r.run_id)).await.unwrap(), "marker of {} removed", r.run_id);
    }
    // Nothing of the switch is left but the generation object; the lock is released.
    let left: Vec<_> = ds.list_objects(COMPACTION_DIR).await.unwrap();
    let names: Vec<_> = left.iter().map(|m| m.location.filename().unwrap().to_string()).collect();
    assert_eq!(names, [GENERATION]);

    let validated = crate::validate::validate(&ds).await.unwrap();
    assert!(validated.is_ok(), "{:?}", validated.problems);
    assert_eq!(validated.rows, [24, 72, 72]);
    assert_eq!(validated.files, 6);
}

#[tokio::test]
async fn outputs_are_sorted_by_series() {
    let ds = Dataset::create("memory://compact-sorted").unwrap();
    write_fleet(&ds, &[1], 20).await;
    let unsorted = decode(&ds, Table::Runs, 1).await;
    let hosts: Vec<&str> = unsorted.iter().flat_map(|b| string_column(b, col::HOST)).collect();
    assert!(!hosts.is_sorted(), "the input must not already be in order: {hosts:?}");

    compact(&ds, &CompactOptions::default()).await.unwrap();

    let runs = decode(&ds, Table::Runs, 1).await;
    let b = &runs[0];
    let started = b.column_by_name(col::STARTED_AT).unwrap().as_primitive::<TimestampMicrosecondType>();
    let keys: Vec<_> = string_column(b, col::HOST).into_iter().zip(started.values().iter()).collect();
    assert!(keys.is_sorted(), "{keys:?}");

    let ms = decode(&ds, Table::Measurements, 1).await;
    assert_eq!(ms.len(), 1);
    let b = &ms[0];
    let started = b.column_by_name(col::STARTED_AT).unwrap().as_primitive::<TimestampMicrosecondType>();
    let keys: Vec<_> = (0..b.num_rows())
        .map(|i| {
            let s = |name| string_column(b, name)[i];
            (s(col::HOST), s(col::PROBE), s(col::METRIC), s(col::PARAMS), started.value(i))
        })
        .collect();
    assert!(keys.is_sorted(), "{keys:#?}");
    // Each host's rows together, probe by probe (two runs of db-00, three metrics each).
    let first: Vec<_> = keys.iter().take(6).map(|k| (k.0, k.1)).collect();
    let cpu = ("db-00", "cpu.aes_gcm");
    let memory = ("db-00", "memory.bandwidth");
    assert_eq!(first, [cpu, cpu, cpu, cpu, memory, memory]);

    let samples = decode(&ds, Table::Samples, 1).await;
    let b = &samples[0];
    let seq = b.column_by_name(col::SEQ).unwrap().as_primitive::<Int32Type>();
    let keys: Vec<_> = (0..b.num_rows())
        .map(|i| (string_column(b, col::RUN_ID)[i], string_column(b, col::METRIC)[i], seq.value(i)))
        .collect();
    assert!(keys.is_sorted(), "{keys:#?}");
}

#[tokio::test]
async fn an_undelivered_upload_is_left_in_place_and_still_listed() {
    let ds = Dataset::create("memory://compact-undelivered").unwrap();
    write_fleet(&ds, &[1], 5).await;
    // An upload in flight: its measurements and runs row are stored, its marker not yet.
    let late = run_on(1, "db-99", 500);
    let (ms, _) = rows_of_run(0);
    let mut b = MeasurementsBuilder::default();
    ms.iter().for_each(|m| b.append(&late, m));
    let name = format!("{}.parquet", late.run_id);
    write_table_file(&ds, Table::Measurements, day(1), &name, &b.finish()).await.unwrap();
    write_table_file(&ds, Table::Runs, day(1), &name, &runs_batch(std::slice::from_ref(&late)))
        .await
        .unwrap();
    let before = all_visible_rows(&ds).await;

    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    let left: Vec<_> = report.left.iter().filter(|l| l.reason == LeftReason::Undelivered).collect();
    assert_eq!(left.len(), 2, "{:#?}", report.left);
    assert!(left.iter().all(|l| l.path.ends_with(&name)));
    for table in [Table::Runs, Table::Measurements] {
        let m = report.merged.iter().find(|m| m.table == table).unwrap();
        assert_eq!(m.inputs.len(), 5);
        let names = visible_names(&ds, table, 1).await;
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&name), "{names:?}");
    }
    assert_eq!(all_visible_rows(&ds).await, before);

    // Once delivered, the next run merges it.
    ds.put(&ds.delivered_marker(&late.run_id), Bytes::from("2026-03-01")).await.unwrap();
    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    assert!(report.left.is_empty(), "{:#?}", report.left);
    assert_eq!(report.merged.len(), 2);
    for table in Table::ALL {
        assert_eq!(stored_names(&ds, table, 1).await.len(), 1, "{table}");
    }
    assert_eq!(all_visible_rows(&ds).await, before);
}

#[tokio::test]
async fn unreadable_and_older_layout_files_are_left_in_place_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Dataset::create(dir.path().to_str().unwrap()).unwrap();
    write_fleet(&ds, &[1], 4).await;
    let folder = |table: Table| dir.path().join(format!("{}/date=2026-03-01", table.dir()));
    std::fs::write(folder(Table::Runs).join("broken.parquet"), b"PAR1 not really").unwrap();
    let some = std::fs::read_dir(folder(Table::Measurements)).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&some).unwrap();
    std::fs::write(folder(Table::Measurements).join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    // A samples file from before `in_window` existed.
    let old_schema = Arc::new(arrow_schema::Schema::new(
        Table::Samples
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name() != col::IN_WINDOW)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let mut s = SamplesBuilder::default();
    s.append(&RunRecord::new_id(), &sample("encrypt_1t", 0));
    let full = s.finish();
    let old = RecordBatch::try_new(old_schema.clone(), full.columns()[..7].to_vec()).unwrap();
    let mut buffer = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buffer, old_schema, None).unwrap();
    writer.write(&old).unwrap();
    writer.close().unwrap();
    std::fs::write(folder(Table::Samples).join("old.parquet"), buffer).unwrap();

    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    let reason = |file: &str| {
        report.left.iter().find(|l| l.path.ends_with(file)).map(|l| l.reason.clone()).unwrap_or_else(|| {
            panic!("{file} not reported: {:#?}", report.left);
        })
    };
    assert!(
        matches!(reason("broken.parquet"), LeftReason::Unreadable(r) if r.contains("not a readable Parquet"))
    );
    assert!(matches!(reason("cut.parquet"), LeftReason::Unreadable(_)));
    assert!(matches!(reason("old.parquet"), LeftReason::OtherLayout(r) if r.contains("in_window")));
    assert_eq!(report.left.len(), 3);
    for (table, file) in [
        (Table::Runs, "broken.parquet"),
        (Table::Measurements, "cut.parquet"),
        (Table::Samples, "old.parquet"),
    ] {
        assert!(folder(table).join(file).exists(), "{file} was deleted");
        let names = stored_names(&ds, table, 1).await;
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(report.merged.iter().any(|m| m.table == table && m.inputs.len() == 4));
    }
    // No staging files or empty leftovers on disk.
    let manifests = std::fs::read_dir(dir.path().join(COMPACTION_DIR)).unwrap().count();
    assert_eq!(manifests, 1, "only the generation object stays");
}

#[tokio::test]
async fn compaction_is_idempotent_also_when_split() {
    for (name, max_rows, parts) in [("compact-idem", MAX_ROWS_PER_FILE, 1), ("compact-idem-split", 10, 4)] {
        let ds = Dataset::create(&format!("memory://{name}")).unwrap();
        write_fleet(&ds, &[1, 2], 12).await;
        let before = all_visible_rows(&ds).await;
        let opts = CompactOptions { max_rows_per_file: max_rows, ..Default::default() };
        let first = compact(&ds, &opts).await.unwrap();
        let m = first.merged.iter().find(|m| m.table == Table::Measurements).unwrap();
        assert_eq!(m.outputs.len(), parts, "36 rows, at most {max_rows} a file");
        let stored = async || {
            let mut all = Vec::new();
            for table in Table::ALL {
                for d in [1, 2] {
                    all.push(stored_names(&ds, table, d).await);
                }
            }
            all
        };
        let after_first = stored().await;
        if parts > 1 {
            // The parts are in order one after the other.
            let hosts: Vec<String> = decode(&ds, Table::Measurements, 1)
                .await
                .iter()
                .flat_map(|b| string_column(b, col::HOST).into_iter().map(str::to_string).collect::<Vec<_>>())
                .collect();
            assert!(hosts.is_sorted(), "{hosts:?}");
        }
        let second = compact(&ds, &opts).await.unwrap();
        assert_eq!(second, Report::default(), "{name}");
        assert_eq!(stored().await, after_first);
        assert_eq!(all_visible_rows(&ds).await, before);
    }
}

#[tokio::test]
async fn a_crash_after_the_outputs_shows_each_row_once_and_is_finished_next_time() {
    let ds = Dataset::create("memory://compact-crash-outputs").unwrap();
    write_fleet(&ds, &[1], 6).await;
    let before = all_visible_rows(&ds).await;
    let plan = plan_of_day_1(&ds).await;
    write_manifest(&ds, &plan).await.unwrap();
    put_outputs(&ds, &plan).await.unwrap();
    // Cut off here: both sides are stored, readers see one.
    assert_eq!(stored_names(&ds, Table::Measurements, 1).await.len(), 7);
    assert_eq!(visible_names(&ds, Table::Measurements, 1).await.len(), 1);
    assert_eq!(all_visible_rows(&ds).await, before);
    // Or half-way through the deletes.
    let inputs = plan.manifest.inputs(&ds);
    ds.delete_all(&inputs[..inputs.len() / 2]).await.unwrap();
    assert_eq!(all_visible_rows(&ds).await, before);
    let validated = crate::validate::validate(&ds).await.unwrap();
    assert_eq!(validated.rows, [6, 18, 18]);

    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    let expected = Recovered { id: plan.manifest.id.clone(), date: day(1), action: Recovery::Finished };
    assert_eq!(report.recovered, [expected]);
    assert!(report.merged.is_empty(), "{:#?}", report.merged);
    for table in Table::ALL {
        let names = stored_names(&ds, table, 1).await;
        assert_eq!(names, [format!("compacted-{}.parquet", plan.manifest.id)]);
    }
    assert!(!ds.exists(&Manifest::location(&ds, &plan.manifest.id)).await.unwrap());
    assert_eq!(all_visible_rows(&ds).await, before);
}

#[tokio::test]
async fn a_crash_after_the_manifest_shows_the_inputs_and_is_rolled_back_next_time() {
    let ds = Dataset::create("memory://compact-crash-manifest").unwrap();
    write_fleet(&ds, &[1], 6).await;
    let before = all_visible_rows(&ds).await;
    let plan = plan_of_day_1(&ds).await;
    write_manifest(&ds, &plan).await.unwrap();
    assert_eq!(all_visible_rows(&ds).await, before);
    // One output of three stored before the crash: hidden, since the set is not complete.
    let (location, bytes) = &plan.outputs[1];
    ds.put(location, bytes.clone()).await.unwrap();
    let table = plan.manifest.tables[1].table;
    assert_eq!(stored_names(&ds, table, 1).await.len(), 7);
    let visible = visible_names(&ds, table, 1).await;
    assert_eq!(visible.len(), 6);
    assert!(visible.iter().all(|n| !n.starts_with("compacted-")), "{visible:?}");
    assert_eq!(all_visible_rows(&ds).await, before);

    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    let expected = Recovered { id: plan.manifest.id.clone(), date: day(1), action: Recovery::RolledBack };
    assert_eq!(report.recovered, [expected]);
    assert!(!ds.exists(location).await.unwrap(), "the partial output was deleted");
    // And compacted afresh.
    assert_eq!(report.merged.len(), 3);
    for table in Table::ALL {
        let names = stored_names(&ds, table, 1).await;
        assert_eq!(names.len(), 1);
        assert!(!names[0].contains(&plan.manifest.id), "{names:?}");
    }
    assert_eq!(all_visible_rows(&ds).await, before);
}

#[tokio::test]
async fn a_rollback_with_inputs_gone_is_refused() {
    let ds = Dataset::create("memory://compact-damaged").unwrap();
    write_fleet(&ds, &[1], 3).await;
    let plan = plan_of_day_1(&ds).await;
    write_manifest(&ds, &plan).await.unwrap();
    ds.delete(&plan.manifest.inputs(&ds)[0]).await.unwrap();
    let err = compact(&ds, &CompactOptions::default()).await.unwrap_err();
    assert!(matches!(err, CompactError::Damaged { missing_outputs: 3, missing_inputs: 1, .. }), "{err}");
    // The lock is released even so.
    assert!(!ds.exists(&lock::location(&ds)).await.unwrap());
}

#[tokio::test]
async fn a_retry_of_a_compacted_run_writes_nothing() {
    let ds = Dataset::create("memory://compact-retry").unwrap();
    let a = run_on(1, "db-01", 1);
    let b = run_on(1, "db-02", 2);
    let (ms, samples) = rows_of_run(1);
    write_run(&ds, &a, &ms, &samples).await.unwrap();
    write_run(&ds, &b, &ms, &samples).await.unwrap();
    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    assert_eq!(report.merged.len(), 3);
    let before = all_visible_rows(&ds).await;
    assert_eq!(before[0].len(), 2);

    assert_eq!(write_run(&ds, &a, &ms, &samples).await.unwrap(), RunWrite::AlreadyDelivered);
    assert_eq!(all_visible_rows(&ds).await, before);
    for table in Table::ALL {
        assert_eq!(stored_names(&ds, table, 1).await.len(), 1);
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_only_the_given_day_is_compacted() {
    let ds = Dataset::create("memory://compact-dry").unwrap();
    write_fleet(&ds, &[1, 2], 4).await;
    let objects = async || {
        let mut all: Vec<_> = ds.list_objects("").await.unwrap().into_iter().map(|m| m.location).collect();
        all.sort();
        all
    };
    let before = objects().await;
    let report = compact(&ds, &CompactOptions { dry_run: true, ..Default::default() }).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.merged.len(), 6);
    assert!(report.merged.iter().all(|m| m.input == m.output));
    assert_eq!(objects().await, before);

    let report = compact(&ds, &CompactOptions { date: Some(day(2)), ..Default::default() }).await.unwrap();
    assert!(report.merged.iter().all(|m| m.date == day(2)));
    assert_eq!(report.merged.len(), 3);
    assert_eq!(stored_names(&ds, Table::Runs, 1).await.len(), 4);
    assert_eq!(stored_names(&ds, Table::Runs, 2).await.len(), 1);
}

#[test]
fn the_row_check_refuses_different_rows() {
    let r = run("db-01", "2026-03-01T01:00:00Z");
    let one = rows::row_digest(&[runs_batch(std::slice::from_ref(&r))]).unwrap();
    let mut other = r.clone();
    other.finished_at += chrono::Duration::microseconds(1);
    let two = rows::row_digest(&[runs_batch(&[other])]).unwrap();
    assert!(check_rows(day(1), Table::Runs, &one, &one).is_ok());
    let err = check_rows(day(1), Table::Runs, &one, &two).unwrap_err().to_string();
    assert!(err.contains("differ") && err.contains(&one.short()) && err.contains(&two.short()), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
}

#[test]
fn file_names_tell_uploads_from_outputs() {
    let id = "019cf7a2-1d2e-7c3b-9a4f-0123456789ab";
    assert_eq!(upload_run_id(&Path::from(format!("runs/date=2026-03-01/{id}.parquet"))), Some(id));
    assert_eq!(upload_run_id(&Path::from("runs/date=2026-03-01/synth-0.parquet")), None);
    let out = Path::from(format!("runs/date=2026-03-01/compacted-{id}.parquet"));
    let part = Path::from(format!("runs/date=2026-03-01/compacted-{id}-3.parquet"));
    assert_eq!((output_of(&out), output_of(&part)), (Some(id), Some(id)));
    assert_eq!(upload_run_id(&out), None);
    assert_eq!(output_of(&Path::from("runs/date=2026-03-01/compacted-x.parquet")), None);
    assert!(!worth_merging([&part, &out].into_iter()), "parts of one compaction");
    let synth = Path::from("runs/date=2026-03-01/synth-0.parquet");
    assert!(worth_merging([&out, &synth].into_iter()));
    assert!(!worth_merging([&synth].into_iter()));
}

#[tokio::test]
async fn an_unreadable_manifest_stops_readers() {
    let ds = Dataset::create("memory://compact-bad-manifest").unwrap();
    write_fleet(&ds, &[1], 1).await;
    ds.put(&ds.child("_compaction/0000.json"), Bytes::from_static(b"{ not json")).await.unwrap();
    let err = ds.list_files(Table::Runs, DateRange::default()).await.unwrap_err().to_string();
    assert!(err.contains("compaction manifest") && err.contains("0000.json"), "{err}");
}

/// Rows per run id over what readers see, in one table.
async fn rows_per_run(ds: &Dataset, table: Table) -> Option<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for f in ds.list_files(table, DateRange::default()).await.unwrap() {
        // Deleted since the listing (the compaction switched the day): list again.
        let bytes = ds.get(&f.location).await.ok()?;
        for b in read_parquet(bytes).unwrap() {
            for id in string_column(&b, col::RUN_ID) {
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    Some(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_each_row_once_while_compaction_runs() {
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().unwrap();
    let ds = Dataset::create(dir.path().to_str().unwrap()).unwrap();
    let runs = write_fleet(&ds, &[1, 2, 3], 30).await;
    let stop = Arc::new(AtomicBool::new(false));
    // The step of the switch the dataset is in, and the last step a reader checked all three
    // tables in from start to end.
    let step = Arc::new(AtomicUsize::new(0));
    let checked_in = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let (ds, stop, step, checked_in) = (ds.clone(), stop.clone(), step.clone(), checked_in.clone());
        let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
        tokio::spawn(async move {
            let mut checks = 0;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let started_in = step.load(Ordering::SeqCst);
                let mut complete = true;
                for (table, per_run) in [(Table::Runs, 1), (Table::Measurements, 3), (Table::Samples, 3)] {
                    let Some(counts) = rows_per_run(&ds, table).await else {
                        complete = false;
                        continue;
                    };
                    assert_eq!(counts.len(), ids.len(), "{table}: runs missing or extra");
                    for id in &ids {
                        assert_eq!(counts.get(id), Some(&per_run), "{table}: rows of run {id}");
                    }
                    checks += 1;
                }
                if complete && step.load(Ordering::SeqCst) == started_in {
                    checked_in.store(started_in, Ordering::SeqCst);
                }
                if done {
                    return checks;
                }
            }
        })
    };
    // Day 1 step by step; after each, wait until the reader has listed and read in that state.
    let reached = async |n: usize| {
        step.store(n, Ordering::SeqCst);
        while checked_in.load(Ordering::SeqCst) != n {
            // A reader that failed its check has ended: stop waiting for it.
            assert!(!reader.is_finished(), "the reader failed in step {n}");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    let plan = plan_of_day_1(&ds).await;
    write_manifest(&ds, &plan).await.unwrap();
    reached(1).await;
    for (i, (location, bytes)) in plan.outputs.iter().enumerate() {
        ds.put(location, bytes.clone()).await.unwrap();
        reached(2 + i).await;
    }
    let inputs = plan.manifest.inputs(&ds);
    ds.delete_all(&inputs[..inputs.len() / 2]).await.unwrap();
    reached(5).await;
    ds.delete_all(&inputs[inputs.len() / 2..]).await.unwrap();
    reached(6).await;
    remove_manifest(&ds, &plan.manifest).await.unwrap();
    reached(7).await;
    // The other days as `compact` does them, the reader going on meanwhile.
    let report = compact(&ds, &CompactOptions::default()).await.unwrap();
    assert_eq!(report.merged.len(), 6);
    stop.store(true, Ordering::SeqCst);
    let checks = reader.await.unwrap();
    assert!(checks >= 7 * 3, "{checks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_keep_uploading_while_compaction_runs() {
    let ds = Dataset::create("memory://compact-concurrent-writers").unwrap();
    let mut written: Vec<String> = write_fleet(&ds, &[1], 20).await.into_iter().map(|r| r.run_id).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ds, stop) = (ds.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut i = 1000;
            while !stop.load(Ordering::SeqCst) || ids.len() < 20 {
                let r = run_on(1 + (i % 2) as u32, &format!("late-{:02}", i % 7), i % 1440);
                let (ms, samples) = rows_of_run(i);
                assert!(matches!(write_run(&ds, &r, &ms, &samples).await.unwrap(), RunWrite::Written { .. }));
                ids.push(r.run_id);
                i += 1;
                tokio::task::yield_now().await;
            }
            ids
        })
    };
    let mut merged = 0;
    for _ in 0..3 {
        merged += compact(&ds, &CompactOptions::default()).await.unwrap().merged.len();
    }
    assert!(merged > 0);
    stop.store(true, Ordering::SeqCst);
    written.extend(writer.await.unwrap());

    let check = async |when: &str| {
        for (table, per_run) in [(Table::Runs, 1), (Table::Measurements, 3), (Table::Samples, 3)] {
            let counts = rows_per_run(&ds, table).await.unwrap();
            assert_eq!(counts.len(), written.len(), "{when}: {table}");
            for id in &written {
                assert_eq!(counts.get(id), Some(&per_run), "{when}: {table} rows of {id}");
            }
        }
    };
    check("after the concurrent compactions").await;
    compact(&ds, &CompactOptions::default()).await.unwrap();
    check("after a last compaction").await;
    for table in Table::ALL {
        for d in [1, 2] {
            assert_eq!(stored_names(&ds, table, d).await.len(), 1, "{table} {d}");
        }
    }
}
