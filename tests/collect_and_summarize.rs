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
        assert_eq!(m["params"], "buffer=16KiB,impl=openssl,threads=2");
        for key in
            ["cv", "mean", "stddev", "min", "max", "category", "higher_is_better", "disturbed", "foreign_cpu"]
        {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
    }
    // Every CPU and memory probe ran and gave figures a machine can have.
    let value = |probe: &str, metric: &str| find(&second, probe, metric)["value"].as_f64().unwrap();
    assert!(value("cpu.flops", "gflops_f64_1t") > 0.5);
    assert!(
        value("cpu.flops", "gflops_f32_1t") > value("cpu.flops", "gflops_f64_1t"),
        "f32 has twice the lanes"
    );
    assert!((0.3..8.0).contains(&value("cpu.flops", "clock_ghz")));
    assert!(value("cpu.flops", "peak_f64_1t") > 0.0);
    assert!(find(&second, "cpu.flops", "gflops_f64_1t")["params"].as_str().unwrap().starts_with("isa="));
    assert!(value("cpu.compress", "lz4_decompress") > value("cpu.compress", "lz4_compress"));
    assert!((0.2..1.5).contains(&value("cpu.scaling", "efficiency_mt")));
    let ladder: Vec<&str> =
        ms.iter().filter(|m| m["metric"] == "throughput_nt").map(|m| m["params"].as_str().unwrap()).collect();
    assert!(!ladder.is_empty() && ladder.iter().all(|p| p.contains("threads=")), "{ladder:?}");
    for metric in ["read", "write", "copy", "triad"] {
        assert!(value("memory.bandwidth", metric) > 0.1, "{metric}");
    }
    assert!(
        value("memory.latency", "latency") > value("memory.latency", "latency_l1"),
        "memory is slower than L1"
    );
    assert!(ms.iter().filter(|m| m["metric"] == "latency_ws").count() >= 5, "a sweep of working sets");

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

#[test]
fn sigterm_stops_between_repetitions_and_keeps_what_was_measured() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("ds");
    let child = bin("fathom-collector")
        .args(["run", "--probes", "cpu.aes_gcm,cpu.compress", "--json", "--dataset"])
        .arg(&dataset)
        .args(["--param", "cpu.aes_gcm.budget=4s", "--param", "cpu.aes_gcm.max_reps=1000"])
        .args(["--param", "cpu.aes_gcm.target_cv=0.000001", "--param", "cpu.aes_gcm.threads=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Each aes metric has a 1 s budget it cannot meet early (the CV target is unreachable):
    // after 2.5 s the first two metrics are done and the third is under way.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let killed =
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(run["status"], "partial", "{run}");
    assert!(run["status_reason"].as_str().unwrap().contains("interrupted"));
    let metrics: Vec<_> =
        run["measurements"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert!(metrics.contains(&"encrypt_1t") && metrics.contains(&"decrypt_1t"), "{metrics:?}");
    assert!(!metrics.iter().any(|m| m.starts_with("zstd")), "cpu.compress never started: {metrics:?}");
    let report = ok(bin("fathom-datasets").arg("validate").arg(&dataset));
    assert!(report.contains("1 runs"), "the partial run is committed: {report}");
}

#[test]
fn a_progress_bar_shows_on_a_terminal() {
    // `script` (util-linux) gives the collector a pseudo-terminal; stdout goes to a file.
    let dir = tempfile::tempdir().unwrap();
    let collector = bin("fathom-collector").get_program().to_string_lossy().into_owned();
    let command = format!(
        "{collector} run --probes cpu.aes_gcm,cpu.compress --dataset {} --param cpu.aes_gcm.budget=1s --param cpu.compress.budget=1s > {}",
        dir.path().join("ds").display(),
        dir.path().join("stdout.txt").display()
    );
    let out = run(std::process::Command::new("script").args(["-qec", &command, "/dev/null"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("cpu.aes_gcm (1/2)") && screen.contains("cpu.compress (2/2)"), "{screen}");
    assert!(screen.contains('█'), "a bar is drawn: {screen}");
    let table = std::fs::read_to_string(dir.path().join("stdout.txt")).unwrap();
    assert!(!table.contains('█'), "the bar stays off stdout");
}

#[test]
fn the_collector_does_not_link_polars() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = ok(std::process::Command::new(cargo).current_dir(fathom_e2e::repo_root()).args([
        "tree",
        "--offline",
        "-p",
        "fathom-collector",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]));
    assert!(tree.contains("fathom-datasets") && tree.contains("aes-gcm"), "{tree}");
    assert!(!tree.lines().any(|l| l.starts_with("polars")), "{tree}");
}
