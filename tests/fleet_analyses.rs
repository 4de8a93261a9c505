//! The fleet analyses on a synthetic fleet, run as an operator would: the injected steps,
//! outlier hosts and roll-outs are found, nothing much else is, and bad input is refused
//! with a message that says what to fix.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use fathom_e2e::{bin, json, ok, run, stderr};
use serde_json::Value;

/// One fleet for every test here: 60 hosts, 150 nights (generated in about a second).
fn fleet() -> &'static PathBuf {
    static FLEET: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FLEET
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("fleet");
            ok(bin("fathom-datasets")
                .args([
                    "synth",
                    "--hosts",
                    "60",
                    "--days",
                    "150",
                    "--seed",
                    "11",
                    "--end",
                    "2026-10-31",
                    "--out",
                ])
                .arg(&out));
            (dir, out)
        })
        .1
}

fn analyze(args: &[&str]) -> Value {
    json(&ok(bin("fathom-analyzer").args(args).arg("--json").arg("--dataset").arg(fleet())))
}

fn truth() -> Vec<Value> {
    let text = std::fs::read_to_string(fleet().join("ground_truth.json")).unwrap();
    json(&text)["events"].as_array().unwrap().clone()
}

#[test]
fn the_detector_finds_the_injected_changes_and_raises_no_false_alarms_on_quiet_series() {
    let labels = fleet().join("ground_truth.json");
    let out = analyze(&["evaluate", "--labels", labels.to_str().unwrap()]);
    let e = &out["evaluation"];
    assert!(e["labels"].as_u64().unwrap() >= 100, "{e}");
    // Large steps are found whatever the noise, near their night, within a few nights.
    for size in ["20%", ">30%"] {
        let s = &e["by_size"][size];
        assert!(s["recall"].as_f64().unwrap() >= 0.85, "{size}: {s}");
    }
    assert!(e["by_size"][">30%"]["median_delay"].as_f64().unwrap() <= 5.0, "{e}");
    assert!(e["precision"].as_f64().unwrap() >= 0.8, "{e}");
    // The headline's scope is the user's: steps of 15 % or more at CV ≤ 5 % are exactly the
    // "20%" and ">30%" cells at the three noise levels up to 5 %.
    let wide = analyze(&[
        "evaluate",
        "--labels",
        labels.to_str().unwrap(),
        "--headline-step",
        "0.15",
        "--headline-cv",
        "0.05",
    ]);
    let h = &wide["evaluation"]["headline"];
    let cells = &wide["evaluation"]["by_size_and_noise"];
    let (mut cell_labels, mut cell_found) = (0, 0);
    for size in ["20%", ">30%"] {
        for noise in ["cv≤1%", "cv≤2%", "cv≤5%"] {
            if let Some(c) = cells.get(format!("{size} {noise}")) {
                cell_labels += c["labels"].as_u64().unwrap();
                cell_found += c["found"].as_u64().unwrap();
            }
        }
    }
    assert!(cell_labels > 0 && h["min_step"] == 0.15 && h["max_cv"] == 0.05, "{h}");
    assert_eq!(
        (h["labels"].as_u64().unwrap(), h["found"].as_u64().unwrap()),
        (cell_labels, cell_found),
        "{h}"
    );
    assert_ne!(h["labels"], e["headline"]["labels"], "the default scope is another");
    // Series without any event: at most one report in over a thousand series-years.
    assert!(e["quiet_series_years"].as_f64().unwrap() > 1000.0, "{e}");
    assert!(e["quiet_reports"].as_u64().unwrap() <= 1, "{e}");
}

#[test]
fn anomalies_report_dated_changes_and_the_outlier_host() {
    let out = analyze(&["anomalies"]);
    let changes = out["change_points"].as_array().unwrap();
    assert!(!changes.is_empty());
    // The biggest injected step is there, on its night (±3), with its direction.
    let steps: Vec<Value> = truth().into_iter().filter(|e| e["kind"] == "step").collect();
    let big = steps
        .iter()
        .max_by(|a, b| {
            a["magnitude"].as_f64().unwrap().abs().total_cmp(&b["magnitude"].as_f64().unwrap().abs())
        })
        .unwrap();
    let date = |v: &Value| chrono::NaiveDate::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d").unwrap();
    let hit = changes.iter().find(|c| {
        c["host"] == big["host"]
            && c["metric"] == big["metric"]
            && c["params"] == big["params"]
            && (date(&c["date"]) - date(&big["date"])).num_days().abs() <= 3
    });
    let hit = hit.unwrap_or_else(|| panic!("{big} not found"));
    assert!(
        (hit["magnitude"].as_f64().unwrap() - big["magnitude"].as_f64().unwrap()).abs() < 0.05,
        "{hit} vs {big}"
    );
    for c in changes {
        let kind = c["direction"].as_str().unwrap();
        let better = (c["magnitude"].as_f64().unwrap() > 0.0) == c["higher_is_better"].as_bool().unwrap();
        assert_eq!(kind, if better { "improvement" } else { "degradation" }, "{c}");
    }
    // Every injected outlier (host, probe) is flagged worse, and every other row is a host that
    // really got worse there: a step or drift of 5 % or more for the worse on the probe (on the
    // very metric, for a row of one metric alone), which rightly makes it unlike its peers.
    let pair =
        |v: &Value| (v["host"].as_str().unwrap().to_string(), v["probe"].as_str().unwrap().to_string());
    let injected: BTreeSet<(String, String)> =
        truth().iter().filter(|e| e["kind"] == "outlier_host").map(pair).collect();
    assert!(!injected.is_empty());
    let worse: Vec<&Value> =
        out["fleet_outliers"].as_array().unwrap().iter().filter(|o| o["side"] == "worse").collect();
    let flagged: BTreeSet<(String, String)> = worse.iter().map(|o| pair(o)).collect();
    assert!(injected.is_subset(&flagged), "injected {injected:?}, flagged {flagged:?}");
    let label = |e: &Value| {
        let params = e["params"].as_str().unwrap_or("");
        let m = format!("{}.{}", e["probe"].as_str().unwrap(), e["metric"].as_str().unwrap());
        if params.is_empty() { m } else { format!("{m} [{params}]") }
    };
    let higher_is_better = |e: &Value| {
        fathom_datasets::catalogue::METRICS
            .iter()
            .find(|m| m.probe == e["probe"] && m.metric == e["metric"])
            .is_none_or(|m| m.higher_is_better)
    };
    let made_worse: Vec<Value> = truth()
        .into_iter()
        .filter(|e| {
            let m = e["magnitude"].as_f64().unwrap();
            e["kind"] == "outlier_host"
                || ((e["kind"] == "step" || e["kind"] == "drift")
                    && m.abs() >= 0.05
                    && (m > 0.0) != higher_is_better(e))
        })
        .collect();
    for o in &worse {
        let explained = made_worse.iter().any(|e| {
            pair(e) == pair(o) && (o["basis"] == "probe" || label(e) == o["worst_metric"].as_str().unwrap())
        });
        assert!(explained, "{o} is flagged without a change for the worse behind it");
    }
    // The same dataset gives the same findings.
    assert_eq!(analyze(&["anomalies"]), out);
}

#[test]
fn deltas_tell_a_roll_out_that_helped_from_one_that_did_nothing() {
    let kernel = analyze(&["delta", "--event", "tag.upgrade=kernel-6.8", "--metrics", "storage.fsync.*"]);
    let fleet = kernel["fleet"].as_array().unwrap();
    let rate = fleet.iter().find(|r| r["metric"] == "fsync_rate").expect("fsync_rate rolled up");
    // +10 % injected on every upgraded host.
    assert_eq!(rate["verdict"], "improved", "{rate}");
    assert!((rate["median_change"].as_f64().unwrap() - 0.10).abs() < 0.03, "{rate}");
    let hosts = kernel["hosts"].as_array().unwrap();
    assert!(hosts.iter().all(|h| h["event_date"].is_string() && h["before_nights"].as_u64().unwrap() >= 3));

    // The OpenSSL update changes nothing: no fleet verdict says otherwise.
    let openssl = analyze(&["delta", "--event", "tag.upgrade=openssl-3.0.15", "--metrics", "cpu.aes_gcm.*"]);
    let fleet = openssl["fleet"].as_array().unwrap();
    assert!(!fleet.is_empty());
    for r in fleet {
        assert!(["no_change", "inconclusive"].contains(&r["verdict"].as_str().unwrap()), "{r}");
    }
    let hosts = openssl["hosts"].as_array().unwrap();
    let calm = hosts.iter().filter(|h| h["verdict"] == "no_change" || h["verdict"] == "inconclusive").count();
    assert!(calm as f64 >= 0.9 * hosts.len() as f64, "{calm} of {}", hosts.len());
}

#[test]
fn trends_stability_and_forecasts_cover_every_series() {
    let stability = analyze(&["stability", "--hosts", "db-*"]);
    let rows = stability["stability"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["host"].as_str().unwrap().starts_with("db-")));
    // Compression ratios depend on the corpus only: no noise at all.
    let ratio = rows.iter().find(|r| r["metric"] == "zstd3_ratio").unwrap();
    assert_eq!(ratio["grade"], "steady", "{ratio}");

    let trends = analyze(&["trends", "--metrics", "storage.rand4k.*"]);
    let rows = trends["trends"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["probe"] == "storage.rand4k"));
    assert!(rows.iter().any(|r| r["slope_per_30d"].is_f64()));

    let f = analyze(&[
        "forecast",
        "--limit",
        "storage.rand4k.read_lat_p99<1",
        "--limit",
        "storage.rand4k.read_iops>1",
    ]);
    let rows = f["forecasts"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["metric"] == "read_lat_p99" && r["outlook"] == "breached"));
    assert!(rows.iter().filter(|r| r["metric"] == "read_iops").all(|r| r["outlook"] != "breached"));
}

#[test]
fn bad_input_is_refused_with_a_message_that_says_what_to_fix() {
    let fails = |args: &[&str], want: &str| {
        let out = run(bin("fathom-analyzer").args(args).arg("--dataset").arg(fleet()));
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fails(&["delta"], "--event");
    fails(&["delta", "--event", "last tuesday"], "2026-06-01");
    fails(&["forecast"], "--limit");
    fails(&["forecast", "--limit", "storage.rand4k.read_lat_p99=5"], "PROBE.METRIC<VALUE");
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "host,metric,date\ndb-01,storage.rand4k.read_iops,yesterday\n").unwrap();
    fails(&["evaluate", "--labels", labels.to_str().unwrap()], "labels.csv: line 2: date");
    fails(
        &["evaluate", "--labels", labels.to_str().unwrap(), "--headline-cv", "2"],
        "not a share between 0 and 1",
    );
}
