//! `fathom-analyzer nightly` as an operator runs it: a full first night, then incremental
//! nights from the kept state, which must give what a full recompute gives; one host's bad
//! night is one incident in the digest.

use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use fathom_e2e::{bin, json, ok, run, stderr};
use serde_json::Value;

const END: &str = "2026-08-31";

fn synth(dir: &Path) -> PathBuf {
    let out = dir.join("fleet");
    ok(bin("fathom-datasets")
        .args(["synth", "--hosts", "40", "--days", "100", "--seed", "21", "--end", END, "--out"])
        .arg(&out));
    out
}

fn nightly(dataset: &Path, night: NaiveDate, extra: &[&str]) -> Value {
    let night = night.to_string();
    json(&ok(bin("fathom-analyzer")
        .args(["nightly", "--json", "--night", &night])
        .args(extra)
        .arg("--dataset")
        .arg(dataset)))
}

/// The largest step of the fleet that the last nights can still see, whole-probe steps first.
fn big_step(dataset: &Path) -> Value {
    let truth = json(&std::fs::read_to_string(dataset.join("ground_truth.json")).unwrap());
    let end = NaiveDate::parse_from_str(END, "%Y-%m-%d").unwrap();
    let date = |e: &Value| NaiveDate::parse_from_str(e["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    truth["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step" && date(e) <= end - Days::new(8) && date(e) >= end - Days::new(60))
        .max_by(|a, b| {
            a["magnitude"].as_f64().unwrap().abs().total_cmp(&b["magnitude"].as_f64().unwrap().abs())
        })
        .expect("a step in the last two months")
        .clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `date=` folders of the kept states (pruned ones leave no empty folder behind).
fn state_dates(dataset: &Path) -> Vec<String> {
    let with_files: Vec<String> = fathom_e2e::files_under(&dataset.join("analysis/state"))
        .iter()
        .map(|f| f.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut folders: Vec<String> = std::fs::read_dir(dataset.join("analysis/state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders, with_files, "empty state folders left behind");
    with_files
}

#[test]
fn incremental_nights_agree_with_a_full_recompute_and_group_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = synth(dir.path());
    // A pristine copy for the full recompute, before any analysis is written.
    let pristine = dir.path().join("pristine");
    copy_dir(&fleet, &pristine);
    let step = big_step(&fleet);
    let step_date = NaiveDate::parse_from_str(step["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let night = step_date + Days::new(5);

    // Two partitions whose runs arrive late (their measurements are there, uncommitted, until
    // the runs rows come): one the state's overlap covers, one three weeks back.
    let hidden = dir.path().join("late");
    let late = [night - Days::new(4), night - Days::new(20)];
    for (i, d) in late.iter().enumerate() {
        let from = fleet.join(format!("runs/date={d}"));
        std::fs::rename(&from, hidden.with_extension(i.to_string())).unwrap();
    }

    // The first night has no state: full. The next ones read the new partition and the last
    // three the state covered again (one of them, still without runs, is not there).
    let first = nightly(&fleet, night - Days::new(3), &[]);
    assert_eq!(first["mode"], "full");
    for back in (1..3).rev() {
        let d = nightly(&fleet, night - Days::new(back), &[]);
        assert_eq!(
            (d["mode"].as_str(), d["partitions_read"].as_u64()),
            (Some("incremental"), Some(3)),
            "{d}"
        );
    }
    // The late runs come; the night reads again from the oldest partition they changed.
    for (i, d) in late.iter().enumerate() {
        std::fs::rename(hidden.with_extension(i.to_string()), fleet.join(format!("runs/date={d}"))).unwrap();
    }
    let d = nightly(&fleet, night, &[]);
    assert_eq!((d["mode"].as_str(), d["partitions_read"].as_u64()), (Some("incremental"), Some(21)), "{d}");
    let incremental = json(
        &std::fs::read_to_string(fleet.join(format!("analysis/digest/date={night}/digest.json"))).unwrap(),
    );

    // A full recompute of the same night on the untouched copy, on one thread (other
    // scheduling than the incremental nights): the same findings, file for file.
    let full = json(&ok(bin("fathom-analyzer")
        .args(["nightly", "--json", "--full", "--night", &night.to_string(), "--dataset"])
        .arg(&pristine)
        .env("RAYON_NUM_THREADS", "1")
        .env("POLARS_MAX_THREADS", "1")));
    assert_eq!(full["mode"], "full");
    let strip = |mut v: Value| {
        for k in ["mode", "partitions_read", "dataset"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(strip(incremental.clone()), strip(full.clone()));
    for table in ["change_points", "trends", "stability", "outliers"] {
        let file = format!("analysis/{table}/date={night}/nightly.parquet");
        let (a, b) =
            (std::fs::read(fleet.join(&file)).unwrap(), std::fs::read(pristine.join(&file)).unwrap());
        assert!(a == b, "{table}: the incremental and the full night differ");
    }

    // With a limit, the nightly forecasts are the forecast command's, over the same runs.
    let limit = ["--limit", "storage.rand4k.read_lat_p99<1"];
    let limited = nightly(&fleet, night, &[&["--dry-run"][..], &limit].concat());
    let alone = json(&ok(bin("fathom-analyzer")
        .args(["forecast", "--json", "--until", &night.to_string()])
        .args(limit)
        .arg("--dataset")
        .arg(&fleet)));
    let breached = |rows: &Value| -> Vec<Value> {
        rows.as_array().unwrap().iter().filter(|r| r["outlook"] == "breached").cloned().collect()
    };
    let from_nightly = breached(&limited["forecasts"]);
    assert!(!from_nightly.is_empty(), "{limited}");
    assert_eq!(from_nightly, breached(&alone["forecasts"]));

    // The step is one incident of its host, with every metric it hit that the detector found.
    let incidents = incremental["incidents"].as_array().unwrap();
    let incident = incidents
        .iter()
        .find(|i| {
            i["host"] == step["host"] && {
                let d = NaiveDate::parse_from_str(i["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
                (d - step_date).num_days().abs() <= 3
            }
        })
        .unwrap_or_else(|| panic!("no incident for {step} in {incidents:?}"));
    let hosts_nights: std::collections::BTreeSet<(String, String)> =
        incidents.iter().map(|i| (i["host"].to_string(), i["date"].to_string())).collect();
    assert_eq!(hosts_nights.len(), incidents.len(), "one incident per host and night");
    let change = incident["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            let metric = format!("{}.{}", step["probe"].as_str().unwrap(), step["metric"].as_str().unwrap());
            c["metric"].as_str().unwrap().starts_with(&metric)
        })
        .unwrap_or_else(|| panic!("{step} not in {incident}"));
    let (seen, truth) = (change["magnitude"].as_f64().unwrap(), step["magnitude"].as_f64().unwrap());
    assert!(seen.signum() == truth.signum() && (seen - truth).abs() < 0.1, "{change} for {step}");
    assert!(incident["class"].is_string());

    // Only the newest state and the one before it are kept (a large fleet's is hundreds of MB).
    assert_eq!(state_dates(&fleet), [format!("date={}", night - Days::new(1)), format!("date={night}")]);

    // Redoing an older night, whose neighbours' states were pruned, starts in full and agrees.
    let redo = nightly(&fleet, night - Days::new(2), &[]);
    assert_eq!(redo["mode"], "full", "{redo}");

    // A dry run writes nothing; the dataset still validates with analysis/ beside it.
    let later = night + Days::new(1);
    nightly(&fleet, later, &["--dry-run"]);
    assert!(!fleet.join(format!("analysis/digest/date={later}")).exists());

    // A night that crashed after writing its state (no digest) is not started from, and its
    // state goes with the older ones, not the finished night before it.
    copy_dir(
        &fleet.join(format!("analysis/state/date={night}")),
        &fleet.join(format!("analysis/state/date={later}")),
    );
    let after = nightly(&fleet, later + Days::new(1), &[]);
    assert_eq!((after["mode"].as_str(), after["partitions_read"].as_u64()), (Some("incremental"), Some(5)));
    assert_eq!(state_dates(&fleet), [format!("date={night}"), format!("date={}", later + Days::new(1))]);

    // A damaged state is a warning, not a failed night: the night starts from the older state
    // kept, or in full when that one is gone too, with a full recompute's findings and the
    // digest naming what it could not read.
    let strip_skipped = |mut v: Value| {
        v.as_object_mut().unwrap().remove("skipped_files");
        strip(v)
    };
    let recover = |night: NaiveDate| {
        let out = run(bin("fathom-analyzer")
            .args(["nightly", "--json", "--dry-run", "--night", &night.to_string(), "--dataset"])
            .arg(&fleet));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("is unreadable"), "{}", stderr(&out));
        let digest = json(&String::from_utf8(out.stdout).unwrap());
        let full = nightly(&fleet, night, &["--full", "--dry-run"]);
        assert_eq!(strip_skipped(digest.clone()), strip_skipped(full));
        digest
    };
    let newest = fleet.join(format!("analysis/state/date={}/points.parquet", later + Days::new(1)));
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let next = later + Days::new(2);
    let d = recover(next);
    assert_eq!(d["mode"], "incremental", "from the older state: {d}");
    let named: Vec<&str> =
        d["skipped_files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(named, [format!("analysis/state/date={}/*.parquet", later + Days::new(1))], "{d}");
    std::fs::remove_file(fleet.join(format!("analysis/state/date={night}/hosts.parquet"))).unwrap();
    let d = recover(next);
    assert_eq!((d["mode"].as_str(), d["skipped_files"].as_array().unwrap().len()), (Some("full"), 2), "{d}");

    // After the fleet's last night every host goes silent; a month on, it is retired and its
    // series leave the analyses.
    let end = NaiveDate::parse_from_str(END, "%Y-%m-%d").unwrap();
    let hosts = incremental["hosts"].as_u64().unwrap();
    let quiet = nightly(&fleet, end + Days::new(5), &["--dry-run"]);
    let silent = quiet["silent_hosts"].as_array().unwrap();
    assert_eq!((silent.len() as u64, quiet["retired_hosts"].as_u64()), (hosts, Some(0)), "{quiet}");
    assert!(silent.iter().all(|h| h["nights_silent"].as_i64().unwrap() >= 5), "{silent:?}");
    assert!(quiet["series"].as_u64().unwrap() > 0, "{quiet}");
    let gone = nightly(&fleet, end + Days::new(40), &["--dry-run"]);
    assert_eq!((gone["series"].as_u64(), gone["retired_hosts"].as_u64()), (Some(0), Some(hosts)), "{gone}");
    let validated = ok(bin("fathom-datasets").arg("validate").arg(&fleet));
    assert!(validated.contains(" 0 bad"), "{validated}");
}

#[test]
fn nightly_refuses_an_empty_dataset_and_a_bad_limits_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(bin("fathom-analyzer").args(["nightly", "--dataset"]).arg(&empty));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("holds no runs"), "{}", stderr(&out));
    let limits = dir.path().join("limits.toml");
    std::fs::write(&limits, "[[limit]]\nmetric = \"storage.rand4k.read_lat_p99\"\nmax = 5\nmin = 1\n")
        .unwrap();
    let out =
        run(bin("fathom-analyzer").args(["nightly", "--limits"]).arg(&limits).arg("--dataset").arg(&empty));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exactly one of max or min"), "{}", stderr(&out));
}
