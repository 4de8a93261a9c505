//! `fathom-collector daemon` as an operator leaves it running: it runs schedules whose window
//! is open, never those whose window is closed, never two suites at once (a fire time that
//! meets a running suite is recorded as skipped), stops a run at its deadline between probes,
//! and stops cleanly on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fathom_e2e::{bin, json, ok, python};

/// `HH:MM` in UTC, `minutes` from now.
fn hhmm(minutes: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(minutes)).format("%H:%M").to_string()
}

fn schedule(name: &str, cron: &str, window: (i64, i64), probes: &str, extra: &str, dataset: &Path) -> String {
    format!(
        "[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nprobes = [{probes}]\n\
         window = {{ days = [\"*\"], start = \"{}\", end = \"{}\" }}\ndataset = \"{}\"\n{extra}\n",
        hhmm(window.0),
        hhmm(window.1),
        dataset.display()
    )
}

fn start(dir: &Path, text: &str) -> Child {
    let file = dir.join("schedules.toml");
    std::fs::write(&file, text).unwrap();
    let mut cmd: Command = bin("fathom-collector");
    cmd.args(["daemon", "--host", "daemon-host", "--schedules"])
        .arg(&file)
        .arg("--state-file")
        .arg(dir.join("state"))
        .arg("--spool")
        .arg(dir.join("spool"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawning the daemon")
}

fn stop(child: Child) -> String {
    // SIGTERM, as systemd stops it.
    unsafe_kill(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "daemon exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unsafe_kill(pid: u32) {
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
}

#[test]
fn open_windows_run_closed_ones_do_not_and_suites_never_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let budget = r#"params = { "cpu.flops.budget" = "300ms" }"#;
    // A slow suite (about 2.5 s) fired every 2 s: its next fire times meet it running.
    // A noise target no run meets keeps each probe going for its whole budget.
    let slow = r#"params = { "cpu.flops.budget" = "1s", "cpu.flops.target_cv" = "0.000001", "cpu.aes_gcm.budget" = "1s", "cpu.aes_gcm.target_cv" = "0.000001" }"#;
    let text = [
        schedule("open", "*/3 * * * * *", (-60, 60), r#""cpu.flops""#, budget, &ds),
        schedule("closed", "* * * * * *", (120, 180), r#""cpu.flops""#, budget, &ds),
        schedule("slow", "*/2 * * * * *", (-60, 60), r#""cpu.flops", "cpu.aes_gcm""#, slow, &ds),
    ]
    .join("\n");
    let child = start(tmp.path(), &text);
    std::thread::sleep(Duration::from_secs(12));
    let out = stop(child);
    assert!(out.contains("daemon: stopped"), "{out}");
    assert!(!out.contains("closed at"), "the closed window ran:\n{out}");
    let started = out.lines().filter(|l| l.contains(": starting")).count();
    let ok_runs = out.lines().filter(|l| l.contains(": run ") && l.ends_with(" ok")).count();
    assert!(out.contains("open at") && out.contains("slow at"), "{out}");
    assert!(started >= 3 && ok_runs + 1 >= started, "{out}");
    // Fire times that met a running suite are recorded, not run alongside it.
    assert!(out.contains(": skipped (the previous run of schedule"), "{out}");
    // Every line that starts a run follows the end of the one before: one suite at a time.
    let mut running = false;
    for l in out.lines() {
        if l.contains(": starting") {
            assert!(!running, "a suite started while another ran:\n{out}");
            running = true;
        } else if l.contains(": run ") {
            running = false;
        }
    }
    // Every run went through the spool and out of it: what was spooled is in the dataset.
    let finished: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(": run ").filter(|_| l.starts_with("daemon: ")).map(|(_, t)| t))
        .filter_map(|t| t.split_whitespace().next())
        .collect();
    assert!(!finished.is_empty(), "{out}");
    for id in &finished {
        assert!(
            out.contains(&format!("upload: run {id} delivered to ")),
            "run {id} was not delivered:\n{out}"
        );
    }
    let status = json(&ok(bin("fathom-collector")
        .args(["spool", "status", "--json", "--spool"])
        .arg(tmp.path().join("spool"))));
    assert_eq!(status["waiting"], 0, "{status}");
    let validated = ok(bin("fathom-datasets").arg("validate").arg(&ds));
    assert!(validated.contains(" 0 bad"), "{validated}");
    let summary = json(&ok(bin("fathom-analyzer").args(["summary", "--json", "--dataset"]).arg(&ds)));
    assert!(summary["series"].as_array().unwrap().iter().all(|s| s["host"] == "daemon-host"));
    assert!(!summary["series"].as_array().unwrap().is_empty());
}

#[test]
fn a_run_past_its_deadline_stops_between_probes_as_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let text = schedule(
        "capped",
        "*/5 * * * * *",
        (-60, 60),
        r#""cpu.flops", "cpu.aes_gcm", "cpu.compress""#,
        // A noise target no run meets: cpu.flops runs until the deadline cuts it off.
        "max_runtime = \"1s\"\nparams = { \"cpu.flops.budget\" = \"5s\", \"cpu.flops.target_cv\" = \"0.000001\", \"cpu.aes_gcm.budget\" = \"300ms\" }",
        &ds,
    );
    let child = start(tmp.path(), &text);
    std::thread::sleep(Duration::from_secs(8));
    let out = stop(child);
    let run = out.lines().find(|l| l.contains("capped: run ")).unwrap_or_else(|| panic!("no run:\n{out}"));
    assert!(run.contains(" partial (stopped at the run's deadline"), "{run}");
    assert!(run.contains("before cpu.aes_gcm (1 of 3 probes ran)"), "{run}");
}

#[test]
fn a_daemon_killed_mid_run_records_that_run_as_failed_at_its_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    // One long probe (a noise target it never meets keeps it going for its 20 s budget).
    let text = schedule(
        "long",
        "* * * * * *",
        (-60, 60),
        r#""cpu.flops""#,
        r#"params = { "cpu.flops.budget" = "20s", "cpu.flops.target_cv" = "0.000001" }"#,
        &ds,
    );
    let mut child = start(tmp.path(), &text);
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap(); // SIGKILL: no chance to clean up.
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("long at") && out.contains(": starting"), "{out}");

    // The next start finds the run it was in the middle of and records it.
    let quick = schedule("long", "0 0 0 1 1 *", (-60, 60), r#""cpu.flops""#, "", &ds);
    let child = start(tmp.path(), &quick);
    std::thread::sleep(Duration::from_secs(3));
    let out = stop(child);
    assert!(out.contains("was interrupted by a stop; recording it as failed"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("upload: run ") && l.contains(" delivered to ")), "{out}");
    let script = format!(
        "import duckdb, json\nrows = duckdb.sql(\"select status, status_reason from read_parquet('{}/runs/*/*.parquet')\").fetchall()\nprint(json.dumps(rows))",
        ds.display()
    );
    let listed = ok(Command::new(python()).args(["-c", &script]));
    let runs = json(&listed);
    let failed: Vec<&serde_json::Value> =
        runs.as_array().unwrap().iter().filter(|r| r[0] == "failed").collect();
    assert_eq!(failed.len(), 1, "{listed}");
    assert!(failed[0][1].as_str().unwrap().contains("collector stopped during the run"), "{listed}");
}
