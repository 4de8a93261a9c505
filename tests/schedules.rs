//! `fathom-collector schedules check` as an operator runs it: the shipped examples pass, and a
//! bad file is refused with its file, line and field.

use fathom_e2e::{bin, ok, repo_root, run, stderr};

#[test]
fn the_shipped_examples_check_and_show_fire_times_inside_their_windows() {
    let out = ok(bin("fathom-collector")
        .args(["schedules", "check", "--from", "2026-12-01T00:00:00Z", "--count", "3"])
        .arg(repo_root().join("schedules")));
    assert!(out.contains("4 schedules ok"), "{out}");
    // Tuesday 1 December 2026, 01:30 in Berlin.
    assert!(
        out.contains("Tue 2026-12-01 01:30:00 CET  (2026-12-01T00:30:00Z; window closes 05:00 CET)"),
        "{out}"
    );
    // The weekly deep suite: Saturdays only, a window across midnight.
    assert!(
        out.contains("Sat 2026-12-05 23:00:00 EST  (2026-12-06T04:00:00Z; window closes 06:00 EST)"),
        "{out}"
    );
    assert!(out.contains("window sat 22:00–06:00 (next day)"), "{out}");
}

#[test]
fn a_bad_schedule_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = run(bin("fathom-collector").args(["schedules", "check"]).arg(&file));
        assert!(!out.status.success(), "accepted:\n{text}");
        stderr(&out)
    };
    let good = "[[schedule]]\nname = \"n\"\ncron = \"0 30 1 * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\nwindow = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n";
    let err = check(&good.replace("0 30 1 * * *", "30 1 * * *"));
    assert!(err.contains(&format!("{}:3:8: schedule \"n\" cron:", file.display())), "{err}");
    let err = check(&good.replace("UTC", "Mars/Olympus"));
    assert!(err.contains(":4:") && err.contains("unknown time zone \"Mars/Olympus\""), "{err}");
    let err = check(&good.replace("suite = \"quick\"", "suite = \"quick\"\nretries = 3"));
    assert!(err.contains(":6:1: schedule file: unknown field `retries`"), "{err}");
    let err = check(&good.replace("end = \"05:00\"", "end = \"01:00\""));
    assert!(err.contains("window.end: empty window"), "{err}");
    let err = check(&format!("{good}params = {{ \"storage.rand4k.queue_depth\" = \"0\" }}\n"));
    assert!(err.contains("schedule \"n\" params:") && err.contains("queue_depth"), "{err}");
    // A cron that never fires inside the window is an error too.
    let err = check(&good.replace("0 30 1 * * *", "0 0 12 * * *"));
    assert!(err.contains("no fire time of `0 0 12 * * *` falls inside the window"), "{err}");
    // The good one passes.
    std::fs::write(&file, good).unwrap();
    assert!(ok(bin("fathom-collector").args(["schedules", "check"]).arg(&file)).contains("1 schedule ok"));
}
