//! The first nightly run end to end: collect into a fresh dataset, validate it, summarize it.

use fathom_e2e::{bin, files_under, json, ok, quick_run_args, run, stderr};

#[test]
fn a_real_measurement_flows_through_parquet_into_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");

    let first = json(&ok(bin("fathom-collector").args(quick_run_args(&dataset, "e2e-host")).arg("--json")));
    let out = run(bin("fathom-collector").args(quick_run_args(&dataset, "e2e-host")).arg("--json"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no progress bar or noise when stderr is not a terminal");
    let second = json(&String::from_utf8(out.stdout).unwrap());

    // The JSON a script relies on.
    for key in [
        "run_id",
        "host",
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "cpu_flags",
        "mem_bytes",
        "status",
        "measurements",
    ] {
        assert!(second.get(key).is_some(), "missing {key} in {second}");
    }
    assert_eq!(second["host"], "e2e-host");
    assert_eq!(second["status"], "ok");
    assert_eq!(second["labels"]["site"], "lab");
    let ms = second["measurements"].as_array().unwrap();
    let find = |run: &serde_json::Value, probe: &str, metric: &str| -> serde_json::Value {
        run["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["probe"] == probe && m["metric"] == metric)
            .unwrap_or_else(|| panic!("no {probe} {metric}"))
            .clone()
    };
    for metric in ["encrypt_1t", "decrypt_1t", "encrypt_mt", "decrypt_mt"] {
        let m = find(&second, "cpu.aes_gcm", metric);
        assert_eq!(m["unit"], "MB/s");
        assert!(m["value"].as_f64().unwrap() > 10.0, "{m}");
        assert!(m["n"].as_i64().unwrap() >= 1);
        assert_eq!(m["params"], "buffer=16KiB,threads=2");
        for key in
            ["cv", "mean", "stddev", "min", "max", "category", "higher_is_better", "disturbed", "foreign_cpu"]
        {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
    }
    let ratio = find(&second, "cpu.compress", "zstd3_ratio")["value"].as_f64().unwrap();
    assert!(ratio > 1.5, "zstd ratio {ratio}");
    assert!(ms.iter().any(|m| m["metric"] == "zstd1_compress"));

    // Files: one per table per run, named by the run id; a delivered marker each.
    let files = files_under(&dataset);
    let run_id = second["run_id"].as_str().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(format!("{run_id}.parquet")) && f.to_string_lossy().contains("/runs/date="))
    );
    assert!(files.iter().any(|f| f.ends_with(format!("_delivered/{run_id}"))));

    let report = ok(bin("fathom-datasets").arg("validate").arg(&dataset));
    assert!(report.contains("0 bad"), "{report}");
    assert!(report.contains("2 runs"), "{report}");

    let summary = json(&ok(bin("fathom-analyzer").args(["summary", "--json", "--dataset"]).arg(&dataset)));
    let series = summary["series"].as_array().unwrap();
    assert_eq!(series.len(), ms.len(), "one series per metric of the run");
    let row = series
        .iter()
        .find(|r| r["probe"] == "cpu.aes_gcm" && r["metric"] == "encrypt_1t")
        .expect("aes series");
    let latest = find(&second, "cpu.aes_gcm", "encrypt_1t")["value"].as_f64().unwrap();
    let before = find(&first, "cpu.aes_gcm", "encrypt_1t")["value"].as_f64().unwrap();
    assert_eq!(row["host"], "e2e-host");
    assert_eq!(row["latest"].as_f64().unwrap(), latest);
    assert_eq!(row["baseline_runs"], 1);
    assert_eq!(row["baseline_median"].as_f64().unwrap(), before);
    let change = row["change"].as_f64().unwrap();
    assert!((change - (latest / before - 1.0)).abs() < 1e-9);

    let text = ok(bin("fathom-analyzer").args(["summary", "--dataset"]).arg(&dataset));
    assert!(text.contains("e2e-host") && text.contains("encrypt_1t"), "{text}");
}

#[test]
fn probes_are_listed_with_descriptions() {
    let out = ok(bin("fathom-collector").arg("probes"));
    for id in ["cpu.aes_gcm", "cpu.compress"] {
        let line = out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} in {out}"));
        assert!(line.len() > id.len() + 10, "{line}");
    }
    let long = ok(bin("fathom-collector").args(["probes", "--long"]));
    assert!(long.contains("buffer") && long.contains("16KiB") && long.contains("budget"), "{long}");
}

#[test]
fn the_schema_command_names_every_table() {
    let out = ok(bin("fathom-datasets").arg("schema"));
    for needle in [
        "runs/date=",
        "measurements/date=",
        "samples/date=",
        "higher_is_better",
        "timestamp[us, UTC]",
        "map<string,string>",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
}
