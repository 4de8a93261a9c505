//! Bad input gets one clear line and a non-zero exit; nothing is lost.

use fathom_e2e::{bin, files_under, json, ok, quick_run_args, run, stderr, stdout};

fn fails_with(cmd: &mut std::process::Command, needle: &str) {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should fail");
    let err = stderr(&out);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn unknown_probe_id() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        bin("fathom-collector")
            .args(["run", "--probes", "cpu.aes_gcm,cpu.nope", "--dataset"])
            .arg(dir.path()),
        "unknown probe `cpu.nope`",
    );
    assert!(files_under(dir.path()).is_empty(), "nothing written");
}

#[test]
fn malformed_param() {
    let dir = tempfile::tempdir().unwrap();
    for (param, needle) in [
        ("cpu.aes_gcm.buffer", "malformed --param `cpu.aes_gcm.buffer`"),
        ("buffer=16KiB", "malformed --param"),
        ("cpu.aes_gcm.bufer=1", "has no parameter `bufer`"),
        ("cpu.aes_gcm.min_reps=zero", "not a count"),
    ] {
        fails_with(
            bin("fathom-collector").args(["run", "--param", param, "--dataset"]).arg(dir.path()),
            needle,
        );
    }
    fails_with(bin("fathom-collector").args(["run", "--label", "nosuchpair"]), "malformed --label");
}

#[test]
fn unknown_dataset_scheme() {
    let needle = "unsupported dataset URL scheme `ftp`";
    fails_with(bin("fathom-collector").args(["run", "--dataset", "ftp://host/x"]), needle);
    fails_with(bin("fathom-analyzer").args(["summary", "--dataset", "ftp://host/x"]), needle);
    fails_with(bin("fathom-datasets").args(["validate", "ftp://host/x"]), needle);
    fails_with(
        bin("fathom-analyzer").args(["summary", "--dataset", "/no/such/fathom/dataset"]),
        "does not exist",
    );
    let memory = "memory:// datasets live inside one process only";
    fails_with(bin("fathom-collector").args(["run", "--dataset", "memory://x"]), memory);
    fails_with(bin("fathom-analyzer").args(["summary", "--dataset", "memory://x"]), memory);
    fails_with(bin("fathom-datasets").args(["synth", "--out", "memory://x"]), memory);
}

/// Two hosts' runs, with host-a's measurements file damaged by `damage`; checks that validate
/// names it and that the summary skips it with one warning and still reports host-b.
fn damaged_file_is_reported_and_skipped(damage: fn(&mut Vec<u8>)) {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("ds");
    let a = json(&ok(bin("fathom-collector").args(quick_run_args(&dataset, "host-a")).arg("--json")));
    ok(bin("fathom-collector").args(quick_run_args(&dataset, "host-b")));
    let victim = files_under(&dataset)
        .into_iter()
        .find(|f| {
            f.to_string_lossy().contains("/measurements/")
                && f.ends_with(format!("{}.parquet", a["run_id"].as_str().unwrap()))
        })
        .expect("host-a's measurements file");
    let mut bytes = std::fs::read(&victim).unwrap();
    damage(&mut bytes);
    std::fs::write(&victim, &bytes).unwrap();
    let victim_name = victim.file_name().unwrap().to_string_lossy().to_string();

    let out = run(bin("fathom-datasets").arg("validate").arg(&dataset));
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(report.contains(&victim_name) && report.contains("1 bad"), "{report}");

    let out = run(bin("fathom-analyzer").args(["summary", "--json", "--dataset"]).arg(&dataset));
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(warning.contains("skipping") && warning.contains(&victim_name), "{warning}");
    assert_eq!(warning.trim().lines().count(), 1, "{warning}");
    let summary = json(&stdout(&out));
    let hosts: Vec<_> =
        summary["series"].as_array().unwrap().iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert!(hosts.contains(&"host-b") && !hosts.contains(&"host-a"), "{hosts:?}");
    assert!(summary["skipped_files"][0]["path"].as_str().unwrap().ends_with(&victim_name));
}

#[test]
fn a_truncated_parquet_file_is_reported_and_skipped() {
    damaged_file_is_reported_and_skipped(|bytes| bytes.truncate(bytes.len() / 2));
}

#[test]
fn a_corrupt_page_behind_a_valid_footer_is_reported_and_skipped() {
    // The footer (metadata, its 4-byte length and `PAR1`) stays intact; every page before it
    // is overwritten.
    damaged_file_is_reported_and_skipped(|bytes| {
        let len = bytes.len();
        let footer = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize + 8;
        bytes[4..len - footer].fill(0xAB);
    });
}

#[test]
fn bad_parameter_values_fail_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (param, needle) in [
        ("cpu.aes_gcm.buffer=lots", "--param cpu.aes_gcm.buffer: `lots` is not a size"),
        ("cpu.aes_gcm.buffer=0", "--param cpu.aes_gcm.buffer: `0` is not within 1 B to 64 MiB"),
        ("cpu.aes_gcm.threads=many", "--param cpu.aes_gcm.threads: `many` is not a thread count"),
        ("cpu.compress.corpus=/dev/zero", "is not a regular file"),
        ("cpu.compress.corpus=/no/such/corpus", "--param cpu.compress.corpus: cannot read /no/such/corpus"),
        ("cpu.flops.isa=avx1024", "--param cpu.flops.isa: `avx1024` is not one of"),
        (
            "cpu.aes_gcm.impl=boringssl",
            "--param cpu.aes_gcm.impl: `boringssl` is not `openssl`, `ring` or `rustcrypto`",
        ),
        ("cpu.scaling.max_threads=0", "--param cpu.scaling.max_threads:"),
        ("cpu.scaling.chunk=1KiB", "--param cpu.scaling.chunk: `1KiB` is not within 4 KiB to 16 MiB"),
        ("memory.bandwidth.size=lots", "--param memory.bandwidth.size:"),
        ("memory.latency.max_size=1", "--param memory.latency.max_size:"),
        ("cpu.compress.max_reps=0", "need 1 <= min_reps <= max_reps"),
        ("cpu.compress.target_cv=-1", "target_cv: must be a fraction"),
        ("cpu.aes_gcm.budget=99999999999999999999999", "longer than a day"),
    ] {
        fails_with(
            bin("fathom-collector").args(["run", "--param", param, "--dataset"]).arg(dir.path()),
            needle,
        );
    }
    assert!(files_under(dir.path()).is_empty(), "nothing ran, nothing written");
    fails_with(
        bin("fathom-collector")
            .args(["run", "--probes", "cpu.compress,cpu.compress", "--dataset"])
            .arg(dir.path()),
        "listed twice",
    );
    fails_with(
        bin("fathom-collector").args(["run", "--host", "", "--dataset"]).arg(dir.path()),
        "--host may not be empty",
    );
}

#[test]
fn a_file_of_another_table_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("ds");
    let a = json(&ok(bin("fathom-collector").args(quick_run_args(&dataset, "host-a")).arg("--json")));
    let run_id = a["run_id"].as_str().unwrap();
    let runs_file = files_under(&dataset)
        .into_iter()
        .find(|f| f.to_string_lossy().contains("/runs/") && f.ends_with(format!("{run_id}.parquet")))
        .unwrap();
    // A runs file dropped into measurements/: valid Parquet, wrong columns.
    let misplaced =
        runs_file.to_string_lossy().replace("/runs/", "/measurements/").replace(run_id, "misplaced");
    std::fs::copy(&runs_file, &misplaced).unwrap();

    let out = run(bin("fathom-analyzer").args(["summary", "--json", "--dataset"]).arg(&dataset));
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(warning.contains("misplaced.parquet") && warning.contains("missing column"), "{warning}");
    let summary = json(&stdout(&out));
    assert!(!summary["series"].as_array().unwrap().is_empty(), "host-a's real rows still count");

    let out = run(bin("fathom-datasets").arg("validate").arg(&dataset));
    assert!(!out.status.success());
    assert!(stdout(&out).contains("misplaced.parquet"), "{}", stdout(&out));
}

#[test]
fn validate_refuses_a_folder_that_is_no_dataset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    fails_with(bin("fathom-datasets").arg("validate").arg(dir.path()), "is it a Fathom dataset?");
}

#[test]
fn synth_refuses_to_mix_into_an_existing_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet");
    let synth = |extra: &[&str]| {
        let mut cmd = bin("fathom-datasets");
        cmd.args(["synth", "--hosts", "2", "--days", "2", "--end", "2026-01-02", "--out"])
            .arg(&out)
            .args(extra);
        cmd
    };
    ok(&mut synth(&[]));
    fails_with(&mut synth(&[]), "already holds a dataset");
    ok(&mut synth(&["--force"]));
}
