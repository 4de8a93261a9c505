//! `fathom-datasets compact` as an operator runs it: many small uploads over two days, compacted
//! by the binary, then validated with the same rows.

use std::path::Path;
use std::process::{Command, Output};

use fathom_datasets::fixtures;
use fathom_datasets::write::{RunWrite, write_run};
use fathom_datasets::{Dataset, Measurement, Sample};

const RUNS_PER_DAY: usize = 25;

fn fathom_datasets(args: &[&str], dataset: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fathom-datasets")).args(args).arg(dataset).output().unwrap();
    assert!(
        out.status.success(),
        "fathom-datasets {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The fixture measurement, of another probe and unit where asked.
fn measurement(probe: &str, metric: &str, unit: &str, value: f64) -> Measurement {
    Measurement {
        probe: probe.into(),
        category: probe.split('.').next().unwrap().into(),
        unit: unit.into(),
        params: String::new(),
        ..fixtures::measurement(metric, value)
    }
}

/// 50 runs of 10 hosts over two days, uploaded one file per table per run.
async fn write_uploads(dataset: &Dataset) {
    for (d, day) in ["2026-03-01", "2026-03-02"].into_iter().enumerate() {
        for i in 0..RUNS_PER_DAY {
            let started = format!("{day}T{:02}:{:02}:00Z", 1 + i / 60, i % 60);
            let run = fixtures::run(&format!("web-{:02}", (i * 3 + d) % 10), &started);
            let v = (i + 1) as f64;
            let ms = vec![
                measurement("memory.bandwidth", "read", "GB/s", 20.0 + v),
                measurement("cpu.aes_gcm", "encrypt_1t", "MB/s", 1000.0 + v),
                measurement("cpu.aes_gcm", "decrypt_1t", "MB/s", 1100.0 + v),
            ];
            let samples: Vec<Sample> = (0..4)
                .map(|seq| Sample {
                    probe: "cpu.aes_gcm".into(),
                    metric: "encrypt_1t".into(),
                    params: String::new(),
                    seq,
                    t_offset_s: f64::from(seq) * 0.25,
                    value: 1000.0 + v + f64::from(seq),
                    in_window: true,
                })
                .collect();
            let written = write_run(dataset, &run, &ms, &samples).await.unwrap();
            assert!(matches!(written, RunWrite::Written { .. }));
        }
    }
}

/// `validate`'s summary from `rows:` on (the file count changes, the rows must not).
fn validated_rows(dataset: &Path) -> String {
    let text = stdout(&fathom_datasets(&["validate"], dataset));
    let line = text.lines().find(|l| l.contains("rows:")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(", 0 bad;"), "{text}");
    line[line.find("rows:").unwrap()..].to_string()
}

fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn compact_merges_each_day_and_validate_sees_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let dataset = Dataset::create(root.to_str().unwrap()).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(write_uploads(&dataset));
    let before = validated_rows(&root);
    assert_eq!(before, "rows: 50 runs, 150 measurements, 200 samples");

    let dry = stdout(&fathom_datasets(&["compact", "--dry-run"], &root));
    assert!(
        dry.contains("would compact 2 days, 150 files → 6") && dry.contains("dry run: nothing written"),
        "{dry}"
    );
    assert_eq!(files_in(&root.join("runs/date=2026-03-01")).len(), RUNS_PER_DAY, "a dry run writes nothing");

    let out = stdout(&fathom_datasets(&["compact"], &root));
    for day in ["2026-03-01", "2026-03-02"] {
        for (table, rows) in [("runs", 25), ("measurements", 75), ("samples", 100)] {
            let prefix = format!("{day} {table}: {RUNS_PER_DAY} files → 1, {rows} rows, hash ");
            let line = out
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no `{prefix}`:\n{out}"));
            let (input, output) = line[prefix.len()..].split_once(" = ").unwrap();
            assert_eq!(input.len(), 12, "{line}");
            assert_eq!(input, output, "{line}");
            let names = files_in(&root.join(format!("{table}/date={day}")));
            assert_eq!(names.len(), 1, "{table} {day}: {names:?}");
            assert!(names[0].starts_with("compacted-") && names[0].ends_with(".parquet"), "{names:?}");
        }
    }
    assert!(out.contains("compacted 2 days, 150 files → 6, 400 rows, every row checked"), "{out}");
    assert_eq!(files_in(&root.join("_delivered")).len(), 50, "delivered markers stay");
    assert_eq!(files_in(&root.join("_compaction")), ["generation"]);

    assert_eq!(validated_rows(&root), before);
    let again = stdout(&fathom_datasets(&["compact"], &root));
    assert!(again.trim_end().ends_with("nothing to compact"), "{again}");
}

#[test]
fn compact_refuses_a_missing_dataset_and_memory_urls() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out =
        Command::new(env!("CARGO_BIN_EXE_fathom-datasets")).arg("compact").arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out =
        Command::new(env!("CARGO_BIN_EXE_fathom-datasets")).args(["compact", "memory://x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one process"));
}
