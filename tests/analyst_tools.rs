//! The dataset as an analyst meets it: the queries printed in datasets/README.md run unchanged
//! in DuckDB and Polars (Python, from PyPI), over Hive partitions, on a real collector run and a
//! synthetic fleet.

use fathom_e2e::{bin, json, ok, python, quick_run_args, repo_root, run, stderr, stdout};

/// The README's fenced blocks of one language.
fn blocks(readme: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim() == fence => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The README writes the default dataset folder; the test points it at its own.
const README_DATASET: &str = "~/.local/share/fathom/dataset";

fn dataset() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    ok(bin("fathom-datasets")
        .args(["synth", "--hosts", "6", "--days", "40", "--seed", "5", "--end", "2026-03-12", "--out"])
        .arg(&ds));
    ok(bin("fathom-collector").args(quick_run_args(&ds, "analyst-host")));
    // The analysis tables the README queries too, for the synthetic fleet's last night.
    ok(bin("fathom-analyzer").args(["nightly", "--night", "2026-03-12", "--dataset"]).arg(&ds));
    (dir, ds)
}

fn python_ok(script: &str) -> String {
    let out = run(std::process::Command::new(python()).args(["-c", script]));
    assert!(out.status.success(), "python failed:\n{script}\n{}", stderr(&out));
    stdout(&out)
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("datasets/README.md")).unwrap()
}

#[test]
fn readme_duckdb_queries_run_on_the_dataset() {
    let (_dir, ds) = dataset();
    let queries = blocks(&readme(), "sql");
    assert!(queries.len() >= 3, "the README should show DuckDB queries");
    let queries: Vec<String> =
        queries.iter().map(|q| q.replace(README_DATASET, ds.to_str().unwrap())).collect();
    let script = format!(
        "import duckdb, json\nout = []\nfor q in json.loads({:?}):\n    rows = duckdb.sql(q).fetchall()\n    out.append([len(rows), [str(v) for v in rows[0]] if rows else []])\nprint(json.dumps(out))",
        serde_json::to_string(&queries).unwrap()
    );
    let results = json(&python_ok(&script));
    for (q, r) in queries.iter().zip(results.as_array().unwrap()) {
        assert!(r[0].as_u64().unwrap() > 0, "no rows from:\n{q}");
    }
    // The real run is there too, next to the synthetic hosts.
    let q = format!(
        "select count(*) from read_parquet('{}/measurements/*/*.parquet', hive_partitioning = true) where host = 'analyst-host' and probe = 'cpu.aes_gcm'",
        ds.display()
    );
    let n = python_ok(&format!("import duckdb\nprint(duckdb.sql({q:?}).fetchone()[0])"));
    assert_eq!(n.trim(), "4", "the four cpu.aes_gcm metrics of the real run");
}

#[test]
fn readme_polars_snippets_run_on_the_dataset() {
    let (_dir, ds) = dataset();
    let snippets = blocks(&readme(), "python");
    assert!(!snippets.is_empty(), "the README should show Polars code");
    for code in snippets {
        let code = code.replace(README_DATASET, ds.to_str().unwrap());
        let out = python_ok(&code);
        assert!(out.lines().count() >= 2, "the snippet printed nothing useful:\n{code}\n{out}");
    }
}

#[test]
fn column_types_read_unchanged_in_pyarrow() {
    let (_dir, ds) = dataset();
    let script = format!(
        "import pyarrow.dataset as pads\nfor t in ['runs', 'measurements']:\n    d = pads.dataset({:?} + '/' + t, format='parquet', partitioning='hive')\n    for f in d.schema:\n        print(t, f.name, f.type)\n    print(t, 'rows', d.count_rows())",
        ds.display().to_string()
    );
    let out = python_ok(&script);
    assert!(out.contains("runs started_at timestamp[us, tz=UTC]"), "{out}");
    assert!(out.contains("measurements started_at timestamp[us, tz=UTC]"), "{out}");
    assert!(out.contains("runs labels map<string, string"), "{out}");
    assert!(out.contains("runs date "), "the date partition column comes from the folder: {out}");
    assert!(!out.contains(" uint"), "no unsigned columns: {out}");
}

/// Each figure is the median of the samples its row marks `in_window`, and there are `n` of
/// them: an analyst can recompute any figure from the raw repetitions. Latency percentiles
/// are the exception the README states: computed over every I/O, their samples per time slice.
#[test]
fn each_figure_is_the_median_of_the_samples_it_marks() {
    let (_dir, ds) = dataset();
    let q = format!(
        "select count(*), count(*) filter (where in_window = n and abs(value - median_in_window) <= 1e-9 * abs(value)) \
         from (select m.value, m.n, count(*) filter (where s.in_window) as in_window, \
                      median(s.value) filter (where s.in_window) as median_in_window \
               from read_parquet('{ds}/measurements/*/*.parquet', hive_partitioning = true) m \
               join read_parquet('{ds}/samples/*/*.parquet', hive_partitioning = true) s \
               using (run_id, probe, metric, params) \
               where m.host = 'analyst-host' and not regexp_matches(m.metric, '(lat|rtt)_p[0-9]+$') \
               group by m.run_id, m.probe, m.metric, m.params, m.value, m.n)",
        ds = ds.display()
    );
    let out = python_ok(&format!("import duckdb\nprint(*duckdb.sql({q:?}).fetchone())"));
    let counts: Vec<i64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert!(counts[0] >= 4, "the real run's measurements joined their samples: {out}");
    assert_eq!(counts[0], counts[1], "every figure matches its marked samples: {out}");
}
