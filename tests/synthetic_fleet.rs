//! The synthetic fleet: generated, accepted by `validate`, read by `summary`.

use fathom_e2e::{bin, json, ok};

#[test]
fn a_synthetic_fleet_validates_and_summarizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet");
    let report = ok(bin("fathom-datasets")
        .args(["synth", "--hosts", "12", "--days", "30", "--seed", "3", "--end", "2026-06-30", "--out"])
        .arg(&out));
    assert!(report.contains("12 hosts"), "{report}");

    let truth = json(&std::fs::read_to_string(out.join("ground_truth.json")).unwrap());
    let events = truth["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for e in events {
        for key in ["kind", "host", "probe", "metric", "date", "magnitude"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
        assert!(["step", "drift", "upgrade", "outlier_host"].contains(&e["kind"].as_str().unwrap()), "{e}");
    }

    let validated = ok(bin("fathom-datasets").arg("validate").arg(&out));
    assert!(validated.contains(" 0 bad"), "{validated}");

    let summary = json(&ok(bin("fathom-analyzer").args(["summary", "--json", "--dataset"]).arg(&out)));
    let series = summary["series"].as_array().unwrap();
    let hosts: std::collections::BTreeSet<_> = series.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 12);
    assert!(
        series.iter().all(|r| r["baseline_runs"].as_u64().unwrap() >= 5),
        "a month of nights gives a full baseline"
    );

    // Partition pruning: two days give at most one earlier run.
    let recent = json(&ok(bin("fathom-analyzer")
        .args(["summary", "--json", "--since", "2026-06-29", "--dataset"])
        .arg(&out)));
    let recent = recent["series"].as_array().unwrap();
    assert!(!recent.is_empty());
    for r in recent {
        assert!(r["latest_at"].as_str().unwrap() >= "2026-06-29", "{r}");
        assert!(r["baseline_runs"].as_u64().unwrap() <= 1, "{r}");
    }
}

#[test]
fn the_same_seed_gives_the_same_fleet() {
    let dir = tempfile::tempdir().unwrap();
    // Every file of the dataset, ground truth included, as bytes.
    let read = |name: &str, seed: &str| -> Vec<Vec<u8>> {
        let out = dir.path().join(name);
        ok(bin("fathom-datasets")
            .args(["synth", "--hosts", "5", "--days", "10", "--end", "2026-01-10", "--seed", seed, "--out"])
            .arg(&out));
        fathom_e2e::files_under(&out).iter().map(|f| std::fs::read(f).unwrap()).collect()
    };
    let a = read("a", "9");
    assert!(a.len() >= 15, "ten nights of runs and measurements");
    assert_eq!(a, read("b", "9"));
    assert_ne!(a, read("c", "10"));
}
