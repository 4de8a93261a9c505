//! `fathom-analyzer changepoints` as an analyst runs it on a series of their own: a CSV with
//! times, a JSON array on stdin, and input it cannot read.

use std::io::Write;
use std::process::Stdio;

use fathom_e2e::{bin, json, ok, run, stderr};

/// A deterministic noisy series: `level` with about `cv` relative noise (a sum of uniforms),
/// stepping by `step` at `at`.
fn series(n: usize, at: usize, step: f64, cv: f64) -> Vec<f64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let noise: f64 = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
            let level = if i >= at { 1000.0 * (1.0 + step) } else { 1000.0 };
            level * (1.0 + cv * noise)
        })
        .collect()
}

#[test]
fn a_step_in_a_csv_with_times_is_found_at_its_index_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let values = series(120, 70, -0.08, 0.01);
    let mut csv = String::from("time,value\n");
    for (i, v) in values.iter().enumerate() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i as u64);
        // Night 30 is missing: it keeps its index.
        if i == 30 { csv.push_str(&format!("{day},\n")) } else { csv.push_str(&format!("{day},{v:.3}\n")) }
    }
    let path = dir.path().join("series.csv");
    std::fs::write(&path, csv).unwrap();
    let out = json(&ok(bin("fathom-analyzer").args(["changepoints", "--input"]).arg(&path)));
    assert_eq!(out["points"], 120, "{out}");
    assert_eq!(out["missing"], 1, "{out}");
    let cps = out["change_points"].as_array().unwrap();
    assert_eq!(cps.len(), 1, "{out}");
    let index = cps[0]["index"].as_u64().unwrap();
    assert!((69..=71).contains(&index), "{out}");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(index);
    assert_eq!(cps[0]["time"], day.to_string(), "{out}");
    let magnitude = cps[0]["magnitude"].as_f64().unwrap();
    assert!((-0.10..-0.06).contains(&magnitude), "{out}");
    let noise = out["noise_cv"].as_f64().unwrap();
    assert!((0.005..0.02).contains(&noise), "{out}");
}

#[test]
fn a_json_array_on_stdin_and_pure_noise_give_no_change_point() {
    let values = series(365, 365, 0.0, 0.02);
    let text = serde_json::to_string(&values).unwrap();
    let mut child = bin("fathom-analyzer")
        .args(["changepoints", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(out["input"], "stdin");
    assert_eq!(out["change_points"].as_array().unwrap().len(), 0, "{out}");
}

#[test]
fn unreadable_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "value\n1\n2\nabc\n").unwrap();
    let out = run(bin("fathom-analyzer").args(["changepoints", "--input"]).arg(&path));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.csv: line 4: `abc` is not a number"), "{}", stderr(&out));
    let out = run(bin("fathom-analyzer").args(["changepoints", "--input", "/nonexistent/series.csv"]));
    assert!(stderr(&out).contains("reading /nonexistent/series.csv"), "{}", stderr(&out));
}
