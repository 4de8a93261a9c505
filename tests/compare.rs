//! `fathom-analyzer compare` and `rank` as a user runs them: on fixture datasets written through
//! the contract's writer (the seed's scenarios, exact ratios) and on a synthetic fleet, whose
//! hardware classes `rank` must put in the generator's order.

use std::collections::BTreeMap;
use std::path::Path;

use fathom_datasets::catalogue::{Category, METRICS};
use fathom_datasets::{Dataset, HostFacts, Measurement, RunRecord, RunStatus};
use fathom_e2e::{bin, json, ok, run, stderr};

struct Host {
    name: &'static str,
    role: &'static str,
    cores: i32,
    mem_gib: i64,
    /// Category ratios (cpu, memory, storage, network) against the catalogue's reference.
    ratios: [f64; 4],
    /// Extra series: (probe, metric, params, value).
    extra: Vec<(&'static str, &'static str, &'static str, f64)>,
}

/// Five nightly runs of every key metric, each category scaled by its ratio in the metric's
/// own direction, with ±0.4 % of spread around an exact median.
fn write_fixture(dir: &Path, hosts: &[Host]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dataset = Dataset::create(dir.to_str().unwrap()).unwrap();
    for h in hosts {
        for night in 0..5u32 {
            let started: chrono::DateTime<chrono::Utc> =
                format!("2026-05-0{}T02:00:00Z", night + 1).parse().unwrap();
            let record = RunRecord {
                run_id: RunRecord::new_id(),
                host: h.name.into(),
                role: h.role.into(),
                labels: [("site".to_string(), "lab".to_string())].into(),
                tags: BTreeMap::new(),
                suite: "standard".into(),
                schedule: None,
                started_at: started,
                finished_at: started + chrono::Duration::minutes(6),
                status: RunStatus::Ok,
                status_reason: None,
                collector_version: "0.1.0".into(),
                schema_version: RunRecord::schema_version(),
                facts: HostFacts {
                    cpu_model: format!("Fixture CPU {}", h.cores),
                    cpu_cores: h.cores,
                    cpu_threads: h.cores * 2,
                    cpu_flags: vec!["aes".into(), "avx2".into()],
                    mem_bytes: h.mem_gib << 30,
                    os: "Debian 12".into(),
                    kernel: "6.1.0".into(),
                    virtualization: "kvm".into(),
                },
            };
            let wobble = 1.0 + 0.002 * (night as f64 - 2.0);
            let mut rows = Vec::new();
            let mut push = |probe: &str, metric: &str, params: &str, value: f64| {
                let spec = fathom_datasets::catalogue::metric(probe, metric).unwrap();
                rows.push(Measurement {
                    probe: probe.into(),
                    category: spec.category().as_str().into(),
                    metric: metric.into(),
                    unit: spec.unit.into(),
                    higher_is_better: spec.higher_is_better,
                    params: params.into(),
                    value: value * wobble,
                    mean: Some(value * wobble),
                    stddev: Some(value * 0.005),
                    cv: Some(0.005),
                    min: Some(value * wobble * 0.99),
                    max: Some(value * wobble * 1.01),
                    n: 5,
                    disturbed: false,
                    foreign_cpu: Some(0.0),
                });
            };
            let scored = [Category::Cpu, Category::Memory, Category::Storage, Category::Network];
            for spec in METRICS.iter().filter(|m| m.key) {
                let Some(i) = scored.iter().position(|c| *c == spec.category()) else { continue };
                let r = h.ratios[i];
                if r == 0.0 {
                    continue; // a category this host never measured
                }
                let value = if spec.higher_is_better { spec.reference * r } else { spec.reference / r };
                // As the collector records them: each host measures against its own peer and
                // in its own directory, and records the ISA and I/O engine it found. None of
                // that is a difference in the workload.
                let source = h.role == "source";
                let params = if spec.probe.starts_with("network.") {
                    format!("peer=peer-{}.internal,streams=4", h.name)
                } else if spec.probe.starts_with("storage.") {
                    let (dir, direct, engine) =
                        if source { ("/srv", "on", "io_uring") } else { ("/data", "off", "threads") };
                    format!(
                        "block=4KiB,dir={dir},direct={direct},engine={engine},jobs=1,queue_depth=32,size=1GiB"
                    )
                } else if spec.probe == "cpu.flops" {
                    format!("isa={},threads=all", if source { "avx512" } else { "avx2" })
                } else {
                    "threads=all".to_string()
                };
                push(spec.probe, spec.metric, &params, value);
            }
            for (probe, metric, params, value) in &h.extra {
                push(probe, metric, params, *value);
            }
            rt.block_on(fathom_datasets::write::write_run(&dataset, &record, &rows, &[])).unwrap();
        }
    }
}

#[test]
fn last_k_and_a_missing_category_change_what_is_compared_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    scenario_three(&dir);
    // A second target whose network probes never ran: scored on three categories.
    write_fixture(
        &dir,
        &[Host {
            name: "cloud-tgt-02",
            role: "target",
            cores: 8,
            mem_gib: 64,
            ratios: [1.0, 1.0, 1.0, 0.0],
            extra: vec![],
        }],
    );
    let out = json(&ok(&mut analyzer(
        &dir,
        &["compare", "--json", "--source", "role=source", "--target", "host=cloud-tgt-02"],
    )));
    let c = &out["comparison"];
    assert_eq!(c["missing_categories"], serde_json::json!(["network"]));
    assert_eq!(c["weights_renormalized"], true);
    assert!(c["network_ratio"].is_null());
    assert!((c["weights"]["storage"].as_f64().unwrap() - 0.4 / 0.9).abs() < 1e-9, "{}", c["weights"]);
    let nc: Vec<&str> =
        c["not_comparable"].as_array().unwrap().iter().map(|n| n["reason"].as_str().unwrap()).collect();
    assert!(nc.contains(&"measured on the source only"), "{nc:?}");
    let text =
        ok(&mut analyzer(&dir, &["compare", "--source", "role=source", "--target", "host=cloud-tgt-02"]));
    assert!(text.contains("weights renormalised over the categories measured: network missing"), "{text}");
    // In the ranking the host missing a category comes after the fully measured one, though its
    // score is higher.
    let rank = json(&ok(&mut analyzer(
        &dir,
        &["rank", "--json", "--source", "role=source", "--targets", "role=target"],
    )));
    let order: Vec<&str> =
        rank["targets"].as_array().unwrap().iter().map(|t| t["host"].as_str().unwrap()).collect();
    assert_eq!(order, ["cloud-tgt-01", "cloud-tgt-02"]);
    // --last 1 uses the newest run only, and the notes say the spread was not assessed.
    let one = json(&ok(&mut analyzer(
        &dir,
        &["compare", "--json", "--last", "1", "--source", "role=source", "--target", "host=cloud-tgt-01"],
    )));
    assert_eq!(one["target"]["runs_used"], 1);
    let m = &one["comparison"]["metrics"][0];
    assert_eq!(m["target"]["runs"], 1);
    assert!(m["notes"].to_string().contains("1 run (--last 1), run-to-run spread not assessed"), "{m}");
}

fn scenario_three(dir: &Path) {
    write_fixture(
        dir,
        &[
            Host {
                name: "vmware-src-01",
                role: "source",
                cores: 8,
                mem_gib: 64,
                ratios: [1.0; 4],
                extra: vec![("storage.rand4k", "read_lat_p50", "queue_depth=32", 70_000.0)],
            },
            // 0.3 × 0.40 + 0.2 × 0.80 + 0.4 × 0.30 + 0.1 × 0.50 = 0.45
            Host {
                name: "cloud-tgt-01",
                role: "target",
                cores: 4,
                mem_gib: 64,
                ratios: [0.40, 0.80, 0.30, 0.50],
                extra: vec![("storage.rand4k", "read_lat_p50", "queue_depth=1", 40_000.0)],
            },
        ],
    );
}

fn analyzer(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = bin("fathom-analyzer");
    cmd.args(args).arg("--dataset").arg(dir);
    cmd
}

#[test]
fn an_inadequate_target_gets_the_seeds_score_ratings_warnings_and_upgrades() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    scenario_three(&dir);
    let out = json(&ok(&mut analyzer(
        &dir,
        &["compare", "--source", "role=source", "--target", "host=cloud-*", "--format", "json"],
    )));
    assert_eq!(out["schema"], "fathom.compare/1");
    let c = &out["comparison"];
    let close = |v: &serde_json::Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-6;
    assert!(close(&c["overall_score"], 0.45), "{}", c["overall_score"]);
    for (key, x) in
        [("cpu_ratio", 0.40), ("memory_ratio", 0.80), ("storage_ratio", 0.30), ("network_ratio", 0.50)]
    {
        assert!(close(&c[key], x), "{key} = {}", c[key]);
    }
    assert_eq!(c["recommendation"], "Poor");
    let ratings: BTreeMap<&str, &str> = c["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["category"].as_str().unwrap(), k["rating"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ratings,
        [("cpu", "poor"), ("memory", "good"), ("network", "poor"), ("storage", "critical")].into()
    );
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let warnings = strings(&c["warnings"]);
    assert!(warnings.iter().any(|w| w.starts_with("Storage IOPS 70% lower than source")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.starts_with("Target may not handle production load")), "{warnings:?}");
    let upgrades = strings(&c["required_upgrades"]);
    assert!(upgrades.contains(&"CPU: Minimum 8 cores (currently 4 cores)".to_string()), "{upgrades:?}");
    // Both read NVMe-class IOPS (420,000 and 126,000), so the upgrade names the figure to reach.
    assert!(
        upgrades
            .contains(&"Storage: at least 420,000 random 4 KiB read IOPS (currently 126,000)".to_string()),
        "{upgrades:?}"
    );
    assert!(
        strings(&c["critical_warnings"])
            .contains(&"Target NOT recommended for production failover".to_string())
    );
    // The seed's side blocks, from the measured figures and the facts.
    assert_eq!(out["source"]["cpu"]["cores"], 8);
    assert_eq!(out["target"]["cpu"]["cores"], 4);
    assert!(
        out["source"]["storage"]["iops"].as_f64().unwrap()
            > out["target"]["storage"]["iops"].as_f64().unwrap()
    );
    assert_eq!(out["target"]["hosts"][0]["host"], "cloud-tgt-01");
    assert_eq!(out["target"]["runs_used"], 5);
    // Like with like: the peers differ and are still compared, the queue depths differ and are not.
    let metrics = c["metrics"].as_array().unwrap();
    assert!(metrics.iter().any(|m| m["probe"] == "network.tcp" && m["params"] == "streams=4"));
    let iops = metrics.iter().find(|m| m["probe"] == "storage.rand4k" && m["metric"] == "read_iops").unwrap();
    assert_eq!(iops["params"], "block=4KiB,jobs=1,queue_depth=32,size=1GiB");
    let notes = iops["notes"].to_string();
    assert!(
        notes.contains("source ran with direct=on,engine=io_uring, target with direct=off,engine=threads"),
        "{notes}"
    );
    let flops = metrics.iter().find(|m| m["metric"] == "gflops_f64_mt").unwrap();
    assert!(flops["notes"].to_string().contains("isa=avx512"), "{flops}");
    assert_eq!(c["categories"].as_array().unwrap().len(), 4, "every category compared");
    let nc = c["not_comparable"].as_array().unwrap();
    assert_eq!(nc.len(), 1, "{nc:?}");
    assert_eq!(nc[0]["metric"], "read_lat_p50");
    assert_eq!(nc[0]["reason"], "measured with different parameters");
    let interval = c["overall_interval"].as_array().unwrap();
    assert!(interval[0].as_f64().unwrap() < 0.45 && 0.45 < interval[1].as_f64().unwrap());

    let text = ok(&mut analyzer(&dir, &["compare", "--source", "role=source", "--target", "role=target"]));
    assert!(text.contains("Overall Score: 45% ❌"), "{text}");
    assert!(text.contains("❌ CPU: 40% - Insufficient for production workload"), "{text}");
    assert!(text.contains("✅ Memory: 80% - Adequate"), "{text}");
    assert!(text.contains("Required Upgrades:\n- CPU: Minimum 8 cores (currently 4 cores)"), "{text}");
    let md = ok(&mut analyzer(
        &dir,
        &["compare", "--source", "role=source", "--target", "role=target", "--format", "markdown"],
    ));
    assert!(md.contains("**Overall Score: 45% ❌**"), "{md}");
    assert!(md.contains("| category | probe | metric |"), "{md}");

    // Weights move the score: all on memory gives memory's ratio.
    let memory_only = json(&ok(&mut analyzer(
        &dir,
        &[
            "compare",
            "--json",
            "--source",
            "role=source",
            "--target",
            "role=target",
            "--weights",
            "cpu=0,storage=0,network=0,memory=1",
        ],
    )));
    assert!(close(&memory_only["comparison"]["overall_score"], 0.80));
}

#[test]
fn selectors_and_weights_that_cannot_work_are_refused_with_what_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    scenario_three(&dir);
    let fails = |args: &[&str], expected: &str| {
        let out = run(&mut analyzer(&dir, args));
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in:\n{err}");
    };
    fails(
        &["compare", "--source", "host=db-09", "--target", "role=target"],
        "--source host=db-09: no runs match in the chosen dates (10 runs of 2 hosts there: cloud-tgt-01, vmware-src-01; roles: source, target; labels: site)",
    );
    fails(
        &["compare", "--source", "role=source", "--target", "site=ams1"],
        "--target site=ams1: no runs match",
    );
    fails(
        &["compare", "--source", "site=lab", "--target", "role=target"],
        "select the same runs (hosts cloud-tgt-01)",
    );
    fails(&["compare", "--source", "db-01", "--target", "role=target"], "\"db-01\" is not KEY=VALUE");
    fails(
        &["compare", "--source", "role=source", "--target", "role=target", "--weights", "disk=1"],
        "unknown category \"disk\"",
    );
    fails(
        &["compare", "--source", "role=source", "--target", "role=target", "--last", "0"],
        "from 1 to 1000",
    );
    fails(
        &["compare", "--source", "role=source", "--target", "role=target", "--since", "2027-01-01"],
        "holds no runs for the chosen dates",
    );
    fails(
        &["rank", "--source", "role=source", "--targets", "role=source"],
        "every matching host is also a source host",
    );
}

#[test]
fn rank_orders_a_synthetic_fleets_hardware_classes_as_the_generator_defined_them() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    ok(bin("fathom-datasets")
        .args(["synth", "--hosts", "24", "--days", "40", "--seed", "11", "--end", "2026-04-30", "--out"])
        .arg(&fleet));
    let truth = json(&std::fs::read_to_string(fleet.join("ground_truth.json")).unwrap());
    let classes: Vec<&str> =
        truth["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let out = json(&ok(&mut analyzer(
        &fleet,
        &[
            "rank",
            "--json",
            "--since",
            "2026-04-20",
            "--source",
            "role=source,hw_class=cascadelake-kvm",
            "--targets",
            "role=target",
        ],
    )));
    let targets = out["targets"].as_array().unwrap();
    assert!(targets.len() >= 8, "{}", targets.len());
    let order: Vec<usize> = targets
        .iter()
        .map(|t| {
            let class = t["target"]["hosts"][0]["labels"]["hw_class"].as_str().unwrap();
            classes.iter().position(|c| *c == class).unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "classes out of order by rank: {order:?}");
    assert!(order.iter().collect::<std::collections::BTreeSet<_>>().len() >= 3, "{order:?}");
    // Ranks count up from 1, scores fall, and the same-class hosts sit near 100 %.
    for (i, t) in targets.iter().enumerate() {
        assert_eq!(t["rank"], i + 1);
    }
    let scores: Vec<f64> = targets.iter().map(|t| t["overall_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for (t, class) in targets.iter().zip(&order) {
        let score = t["overall_score"].as_f64().unwrap();
        if classes[*class] == "cascadelake-kvm" {
            assert!((0.85..1.15).contains(&score), "{}: {score}", t["host"]);
        }
    }
    let text = ok(&mut analyzer(
        &fleet,
        &["rank", "--source", "role=source,hw_class=cascadelake-kvm", "--targets", "role=target"],
    ));
    assert!(text.lines().nth(2).unwrap().starts_with("rank host"), "{text}");
}
