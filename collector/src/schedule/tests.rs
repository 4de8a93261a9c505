use chrono::{DateTime, TimeZone, Utc};

use super::plan::{catch_up, fires};
use super::*;

const PROBES: &[&str] = &["cpu.flops", "storage.rand4k", "network.tcp"];
const SUITES: &[&str] = &["quick", "standard", "deep"];

fn one(text: &str) -> Result<Schedule, ScheduleError> {
    parse("s.toml", text, PROBES, SUITES).map(|mut v| v.remove(0))
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const NIGHTLY: &str = r#"
[[schedule]]
name = "nightly"
cron = "0 30 1 * * *"
timezone = "Europe/Berlin"
suite = "standard"
jitter = "10m"
max_runtime = "45m"
role = "target"
dataset = "s3://bench/fathom"
params = { "storage.rand4k.dir" = "/srv/data" }
labels = { site = "fra1" }
window = { days = ["mon", "tue", "wed", "thu", "friday"], start = "01:00", end = "05:00" }
guard = { cpu_busy_above = 0.5, over = "2m", action = "skip" }
"#;

#[test]
fn a_complete_schedule_parses_with_every_field() {
    let s = one(NIGHTLY).unwrap();
    assert_eq!(s.name, "nightly");
    assert_eq!(s.origin, "s.toml:3");
    assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(s.work, Work::Suite("standard".into()));
    assert_eq!(s.jitter, Duration::from_secs(600));
    assert_eq!(s.max_runtime, Some(Duration::from_secs(2700)));
    assert_eq!(s.window.days, [true, true, true, true, true, false, false]);
    assert_eq!(s.window.length(), Duration::from_secs(4 * 3600));
    let g = s.guard.unwrap();
    assert_eq!(
        (g.cpu_busy_above, g.over, g.action),
        (Some(0.5), Duration::from_secs(120), GuardAction::Skip)
    );
    assert_eq!(s.params["storage.rand4k.dir"], "/srv/data");
    assert_eq!(s.labels["site"], "fra1");
    assert_eq!(s.dataset.as_deref(), Some("s3://bench/fathom"));
}

/// Each bad file names the line and the field, and says what is wrong.
#[test]
fn errors_name_the_file_line_and_field() {
    let bad = |from: &str, to: &str| one(&NIGHTLY.replace(from, to)).unwrap_err();
    let e = bad(
        r#"role = "target""#,
        r#"role = "target"
colour = "blue""#,
    );
    assert_eq!((e.file.as_str(), e.line), ("s.toml", 10), "{e}");
    assert!(e.message.contains("unknown field `colour`"), "{e}");

    let e = bad("0 30 1 * * *", "30 1 * * *");
    assert_eq!((e.line, e.field.as_str()), (4, "schedule \"nightly\" cron"), "{e}");
    assert!(e.message.contains("cron expression with seconds"), "{e}");
    let e = bad("0 30 1 * * *", "0 61 1 * * *");
    assert_eq!(e.line, 4, "{e}");

    let e = bad("Europe/Berlin", "Europe/Frankfurt");
    assert_eq!((e.line, e.field.as_str()), (5, "schedule \"nightly\" timezone"), "{e}");
    assert!(e.message.contains("unknown time zone \"Europe/Frankfurt\""), "{e}");

    let e = bad(r#"days = ["mon", "tue", "wed", "thu", "friday"]"#, "days = []");
    assert_eq!((e.line, e.field.as_str()), (13, "schedule \"nightly\" window.days"), "{e}");
    assert!(e.message.contains("empty window"), "{e}");
    let e = bad(r#"end = "05:00""#, r#"end = "01:00""#);
    assert_eq!(e.field, "schedule \"nightly\" window.end", "{e}");
    assert!(e.message.contains("empty window"), "{e}");
    let e = bad(r#""friday""#, r#""fryday""#);
    assert!(e.message.contains("\"fryday\" is not a day"), "{e}");
    let e = bad(r#"start = "01:00""#, r#"start = "1am""#);
    assert_eq!(e.field, "schedule \"nightly\" window.start", "{e}");

    let e = bad(
        r#"suite = "standard""#,
        r#"suite = "standard"
probes = ["cpu.flops"]"#,
    );
    assert!(e.message.contains("either suite or probes"), "{e}");
    let e = bad(r#"suite = "standard""#, r#"probes = ["cpu.flops", "gpu.tflops"]"#);
    assert!(e.message.contains("unknown probe \"gpu.tflops\""), "{e}");
    let e = bad(r#"suite = "standard""#, r#"suite = "huge""#);
    assert!(e.message.contains("unknown suite \"huge\""), "{e}");
    let e = bad(r#"suite = "standard""#, "");
    assert!(e.message.contains("missing: give a suite"), "{e}");

    let e = bad(r#"jitter = "10m""#, r#"jitter = "10 minutes""#);
    assert_eq!((e.line, e.field.as_str()), (7, "schedule \"nightly\" jitter"), "{e}");
    let e = bad(r#"jitter = "10m""#, r#"jitter = "5h""#);
    assert!(e.message.contains("as long as the window"), "{e}");
    let e = bad(r#"action = "skip""#, r#"action = "panic""#);
    assert_eq!(e.field, "schedule \"nightly\" guard.action", "{e}");
    let e = bad("cpu_busy_above = 0.5", "cpu_busy_above = 50");
    assert!(e.message.contains("between 0 and 1"), "{e}");

    let e = parse("empty.toml", "# nothing yet\n", PROBES, SUITES).unwrap_err();
    assert!(e.message.contains("no [[schedule]] tables"), "{e}");
    let e = parse("broken.toml", "[[schedule]\nname = 1\n", PROBES, SUITES).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("broken.toml", 1), "{e}");
    // The rendering is one line: file:line:column: field: message.
    let text = e.to_string();
    assert!(text.starts_with("broken.toml:1:") && !text.contains('\n'), "{text}");
}

#[test]
fn names_must_be_unique_across_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), NIGHTLY).unwrap();
    std::fs::write(dir.path().join("b.toml"), NIGHTLY).unwrap();
    let e = load(dir.path(), PROBES, SUITES).unwrap_err();
    assert!(e.file.ends_with("b.toml") && e.line == 3, "{e}");
    assert!(e.message.contains("already defined at") && e.message.contains("a.toml:3"), "{e}");
    std::fs::remove_file(dir.path().join("b.toml")).unwrap();
    assert_eq!(load(dir.path(), PROBES, SUITES).unwrap().len(), 1);
}

#[test]
fn durations_read_like_people_write_them() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
    assert!(parse_duration("10w").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("").is_err());
}

fn every(minutes: u32, tz: &str, days: &str, start: &str, end: &str) -> Schedule {
    one(&format!(
        "[[schedule]]\nname = \"t\"\ncron = \"0 */{minutes} * * * *\"\ntimezone = \"{tz}\"\nsuite = \"quick\"\n\
         window = {{ days = [{days}], start = \"{start}\", end = \"{end}\" }}\n"
    ))
    .unwrap()
}

#[test]
fn a_window_across_midnight_belongs_to_the_day_it_opens() {
    let s = every(30, "UTC", r#""fri""#, "22:00", "02:00");
    let w = &s.window;
    // 2026-12-04 is a Friday.
    assert!(w.containing(utc("2026-12-04T23:00:00Z"), s.timezone).is_some());
    assert!(w.containing(utc("2026-12-05T01:59:59Z"), s.timezone).is_some());
    assert!(w.containing(utc("2026-12-05T02:00:00Z"), s.timezone).is_none());
    assert!(w.containing(utc("2026-12-05T23:00:00Z"), s.timezone).is_none(), "Saturday is not a window day");
    assert!(
        w.containing(utc("2026-12-04T01:00:00Z"), s.timezone).is_none(),
        "Thursday's night is not either"
    );
    let f = fires(&s, utc("2026-12-01T00:00:00Z"), 100);
    assert_eq!(f.len(), 100);
    assert_eq!(f[0].at, utc("2026-12-04T22:00:00Z"));
    assert_eq!(f[7].at, utc("2026-12-05T01:30:00Z"));
    assert_eq!(f[8].at, utc("2026-12-11T22:00:00Z"), "the next Friday");
    assert!(f.iter().all(|x| x.at < x.window_close && w.containing(x.at, s.timezone).is_some()));
    assert_eq!(w.describe(), "fri 22:00–02:00 (next day)");
}

#[test]
fn the_spring_clock_change_shortens_a_window_it_crosses() {
    // Berlin, 2026-03-29: clocks jump from 02:00 to 03:00. The window 01:30–02:30 then closes
    // at the jump (01:00 UTC), after 30 minutes.
    let s = every(10, "Europe/Berlin", r#""*""#, "01:30", "02:30");
    let (open, close) = s.window.on("2026-03-29".parse().unwrap(), s.timezone).unwrap();
    assert_eq!((open, close), (utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:00:00Z")));
    let that_day: Vec<_> = fires(&s, utc("2026-03-28T23:00:00Z"), 20)
        .into_iter()
        .filter(|f| f.at < utc("2026-03-29T12:00:00Z"))
        .collect();
    assert_eq!(
        that_day.iter().map(|f| f.at).collect::<Vec<_>>(),
        vec![utc("2026-03-29T00:30:00Z"), utc("2026-03-29T00:40:00Z"), utc("2026-03-29T00:50:00Z")]
    );
    // The day before, a normal hour-long window (CET, UTC+1).
    let (open, close) = s.window.on("2026-03-28".parse().unwrap(), s.timezone).unwrap();
    assert_eq!((open, close), (utc("2026-03-28T00:30:00Z"), utc("2026-03-28T01:30:00Z")));
}

#[test]
fn the_autumn_clock_change_never_runs_outside_the_wall_clock_window() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00–03:00 happens twice. A window
    // opening at 02:00 opens at the second 02:00 (01:00 UTC) and closes at 03:00 CET.
    let s = every(10, "Europe/Berlin", r#""*""#, "02:00", "03:00");
    let (open, close) = s.window.on("2026-10-25".parse().unwrap(), s.timezone).unwrap();
    assert_eq!((open, close), (utc("2026-10-25T01:00:00Z"), utc("2026-10-25T02:00:00Z")));
    let that_day: Vec<_> = fires(&s, utc("2026-10-24T20:00:00Z"), 20)
        .into_iter()
        .filter(|f| f.at.date_naive() == "2026-10-25".parse().unwrap())
        .collect();
    assert_eq!(that_day.len(), 6, "{that_day:?}");
    assert!(that_day.iter().all(|f| f.at >= open && f.at < close));
}

#[test]
fn a_simulated_month_of_schedules_never_fires_outside_a_window_or_past_its_deadline() {
    let schedules = [
        every(15, "America/New_York", r#""mon","wed","fri""#, "23:00", "03:00"),
        every(20, "Asia/Kolkata", r#""*""#, "02:30", "04:00"),
        every(5, "Australia/Sydney", r#""sat","sun""#, "01:00", "06:00"),
        every(30, "Europe/London", r#""*""#, "00:30", "01:30"),
    ];
    let start = utc("2026-10-01T00:00:00Z");
    let end = utc("2026-11-05T00:00:00Z");
    let mut checked = 0;
    for s in &schedules {
        for f in fires(s, start, 100_000).into_iter().take_while(|f| f.at < end) {
            let (open, close) = s.window.containing(f.at, s.timezone).expect("inside a window");
            assert!(open <= f.at && f.at < close && f.window_close == close);
            // The local wall clock agrees: inside start..end of the local day.
            let local = f.at.with_timezone(&s.timezone).time();
            let w = s.window;
            let inside = if w.crosses_midnight() {
                local >= w.start || local < w.end
            } else {
                local >= w.start && local < w.end
            };
            assert!(inside, "{} local {local} outside {}", s.name, w.describe());
            assert!(f.deadline(s, f.at) <= close);
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn fire_times_missed_while_down_run_once_if_their_window_is_still_open() {
    let s = one(
        "[[schedule]]\nname = \"hourly\"\ncron = \"0 0 * * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n",
    )
    .unwrap();
    let down = utc("2026-12-07T00:00:00Z");
    let c = catch_up(&s, down, utc("2026-12-07T03:20:00Z"));
    assert_eq!(c.run_now.map(|f| f.at), Some(utc("2026-12-07T03:00:00Z")));
    assert_eq!(
        c.missed.iter().map(|f| f.at).collect::<Vec<_>>(),
        vec![utc("2026-12-07T01:00:00Z"), utc("2026-12-07T02:00:00Z")]
    );
    // Back after the window closed: nothing to run, four misses to record.
    let c = catch_up(&s, down, utc("2026-12-07T06:00:00Z"));
    assert_eq!((c.run_now, c.missed.len()), (None, 4));
    // Down for no fire time at all.
    let c = catch_up(&s, utc("2026-12-07T05:00:00Z"), utc("2026-12-07T06:00:00Z"));
    assert_eq!((c.run_now, c.missed.len()), (None, 0));
    let _ = Utc.timestamp_opt(0, 0);
}

#[test]
fn a_cron_that_never_meets_its_window_has_no_fire_times() {
    // 12:00 daily against a night window.
    let s = one(
        "[[schedule]]\nname = \"noon\"\ncron = \"0 0 12 * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n",
    )
    .unwrap();
    assert!(fires(&s, utc("2026-12-01T00:00:00Z"), 5).is_empty());
}

mod agenda_simulation {
    use super::*;
    use crate::schedule::agenda::{Agenda, Decision, Load, NotRun};
    use crate::schedule::plan::{self, Fire};
    use chrono::Duration as D;

    fn sched(name: &str, cron: &str, tz: &str, days: &str, start: &str, end: &str, extra: &str) -> Schedule {
        one(&format!(
            "[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\ntimezone = \"{tz}\"\nsuite = \"quick\"\n\
             window = {{ days = [{days}], start = \"{start}\", end = \"{end}\" }}\n{extra}"
        ))
        .unwrap()
    }

    /// A week (across Berlin's autumn clock change) of four schedules competing for one host,
    /// run by a simulated executor whose probes take fixed times and stop at the deadline.
    #[test]
    fn a_simulated_week_has_no_probe_second_outside_a_window_and_no_overlap() {
        let schedules = vec![
            sched(
                "nightly",
                "0 0 1 * * *",
                "UTC",
                r#""*""#,
                "01:00",
                "05:00",
                "jitter = \"20m\"\nmax_runtime = \"50m\"\n",
            ),
            sched("half-hourly", "0 */30 * * * *", "UTC", r#""*""#, "00:00", "06:00", ""),
            sched(
                "guarded",
                "0 15 2 * * *",
                "UTC",
                r#""*""#,
                "02:00",
                "03:00",
                "guard = { cpu_busy_above = 0.5, over = \"5m\", action = \"defer\" }\n",
            ),
            sched("berlin", "0 45 1 * * *", "Europe/Berlin", r#""sat","sun""#, "01:30", "03:30", ""),
        ];
        let start = utc("2026-10-21T00:00:00Z");
        let end = utc("2026-10-28T00:00:00Z");
        let mut agenda = Agenda::new(schedules.clone(), start);
        // Production is busy 02:00–03:30 UTC on Thursdays and Fridays.
        let load = |t: DateTime<Utc>| {
            let busy = matches!(t.format("%a").to_string().as_str(), "Thu" | "Fri")
                && t.format("%H%M").to_string().as_str() >= "0200"
                && t.format("%H%M").to_string().as_str() < "0330";
            Load { cpu_busy: if busy { 0.9 } else { 0.05 }, load_average: 0.2 }
        };
        let probe_len = D::minutes(7);
        let probes_per_run = 6; // a 42-minute suite
        let mut t = start;
        let mut runs: Vec<(usize, DateTime<Utc>, DateTime<Utc>, Fire)> = Vec::new();
        let mut records: Vec<(usize, NotRun, String)> = Vec::new();
        // The run going: schedule, fire, start, and when the executor will end it.
        let mut current: Option<(usize, Fire, DateTime<Utc>, DateTime<Utc>)> = None;
        let mut probe_seconds_outside = 0i64;
        let mut probe_seconds = 0i64;
        while t < end {
            // The daemon steps the agenda at every wake-up, also while a suite runs: a fire
            // time then must queue or be recorded, never start a second suite.
            for d in agenda.step(t, "host-a", load(t)) {
                match d {
                    Decision::Start { schedule, fire, deadline } => {
                        assert!(current.is_none(), "two suites at once at {t}");
                        assert!(deadline <= fire.window_close);
                        // The executor: probes one after the other, each budget capped by
                        // what is left before the deadline, stopping between probes.
                        let mut at = t;
                        for _ in 0..probes_per_run {
                            if at >= deadline {
                                break;
                            }
                            let len = probe_len.min(deadline - at);
                            let (open, close) = schedules[schedule]
                                .window
                                .containing(fire.at, schedules[schedule].timezone)
                                .unwrap();
                            let inside = ((at + len).min(close) - at.max(open)).num_seconds().max(0);
                            probe_seconds += len.num_seconds();
                            probe_seconds_outside += len.num_seconds() - inside.min(len.num_seconds());
                            at += len;
                        }
                        runs.push((schedule, t, at, fire));
                        current = Some((schedule, fire, t, at));
                    }
                    Decision::Record { schedule, status, reason, .. } => {
                        records.push((schedule, status, reason))
                    }
                }
            }
            let wake = agenda.next_wake(t).unwrap_or(end).min(end);
            match current {
                Some((.., ends)) if ends <= wake => {
                    t = ends;
                    agenda.finished(ends);
                    current = None;
                }
                _ => t = wake,
            }
        }
        assert_eq!(probe_seconds_outside, 0, "of {probe_seconds} probe-seconds");
        assert!(probe_seconds > 7 * 3600, "{probe_seconds}");
        // No two runs overlap.
        let mut sorted = runs.clone();
        sorted.sort_by_key(|r| r.1);
        for w in sorted.windows(2) {
            assert!(w[0].2 <= w[1].1, "{:?} overlaps {:?}", w[0], w[1]);
        }
        // Every run starts inside its window, at or after its fire time.
        for (i, s, _, fire) in &runs {
            assert!(*s >= fire.at && *s < fire.window_close, "{} {s}", schedules[*i].name);
        }
        let count = |name: &str| runs.iter().filter(|r| schedules[r.0].name == name).count();
        assert_eq!(count("nightly"), 7, "{runs:?}");
        assert_eq!(count("berlin"), 2, "Saturday and Sunday");
        // The guarded schedule ran on the five quiet days and was deferred on the busy two.
        let guarded = schedules.iter().position(|s| s.name == "guarded").unwrap();
        assert_eq!(
            count("guarded"),
            5,
            "{:?}",
            records.iter().filter(|r| r.0 == guarded).collect::<Vec<_>>()
        );
        let deferred: Vec<_> = records.iter().filter(|r| r.1 == NotRun::Deferred).collect();
        assert_eq!(deferred.len(), 2, "{records:?}");
        assert!(deferred.iter().all(|r| schedules[r.0].name == "guarded" && r.2.contains("guard")));
        // Half-hourly fires that met a running suite were recorded, never dropped in silence.
        let half = schedules.iter().position(|s| s.name == "half-hourly").unwrap();
        let fired = plan::fires_between(&schedules[half], start, end - D::seconds(1)).len();
        let accounted = count("half-hourly") + records.iter().filter(|r| r.0 == half).count();
        assert_eq!(accounted, fired, "every fire time either ran or was recorded");
        assert!(records.iter().any(|r| r.0 == half && r.1 == NotRun::Skipped));
    }

    #[test]
    fn the_skip_guard_records_the_night_with_the_reason() {
        let s = sched(
            "guarded",
            "0 0 2 * * *",
            "UTC",
            r#""*""#,
            "01:00",
            "05:00",
            "guard = { load_average_above = 2.0, action = \"skip\" }\n",
        );
        let mut agenda = Agenda::new(vec![s], utc("2026-12-01T00:00:00Z"));
        let busy = Load { cpu_busy: 0.1, load_average: 7.5 };
        let d = agenda.step(utc("2026-12-01T02:00:00Z"), "h", busy);
        match d.as_slice() {
            [Decision::Record { status: NotRun::Skipped, reason, .. }] => {
                assert!(reason.contains("load average 7.50, above the guard's 2"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(agenda.running().is_none());
    }
}

#[test]
fn an_agenda_started_after_downtime_records_the_closed_windows_and_runs_the_open_one_once() {
    use crate::schedule::agenda::{Agenda, Decision, Load, NotRun};
    let s = one(
        "[[schedule]]\nname = \"hourly\"\ncron = \"0 0 * * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n",
    )
    .unwrap();
    // Last looked on the 4th at 06:00; back on the 7th at 03:20: three nights of four fires
    // missed, and tonight's 01:00, 02:00, 03:00 in a window still open.
    let mut agenda = Agenda::new(vec![s], utc("2026-12-04T06:00:00Z"));
    let quiet = Load { cpu_busy: 0.0, load_average: 0.0 };
    let d = agenda.step(utc("2026-12-07T03:20:00Z"), "h", quiet);
    let missed = d.iter().filter(|x| matches!(x, Decision::Record { status: NotRun::Missed, reason, .. } if reason.contains("not running"))).count();
    assert_eq!(missed, 8, "{d:?}");
    let started: Vec<_> = d
        .iter()
        .filter_map(|x| match x {
            Decision::Start { fire, .. } => Some(fire.at),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![utc("2026-12-07T01:00:00Z")], "one run, now, for the open window");
    let skipped = d.iter().filter(|x| matches!(x, Decision::Record { status: NotRun::Skipped, .. })).count();
    assert_eq!(skipped, 2, "02:00 and 03:00 of tonight, behind the one that runs");
}

#[test]
fn fire_times_during_a_blocking_run_are_skipped_because_of_it() {
    use crate::schedule::agenda::{Agenda, Decision, Load, NotRun};
    let long =
        one("[[schedule]]\nname = \"long\"\ncron = \"0 0 1 * * *\"\ntimezone = \"UTC\"\nsuite = \"deep\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n")
        .unwrap();
    let short = one(
        "[[schedule]]\nname = \"short\"\ncron = \"0 30 1 * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"02:00\" }\n",
    )
    .unwrap();
    let quiet = Load { cpu_busy: 0.0, load_average: 0.0 };
    let mut agenda = Agenda::new(vec![long, short], utc("2026-12-07T00:00:00Z"));
    let d = agenda.step(utc("2026-12-07T01:00:00Z"), "h", quiet);
    assert!(matches!(d.as_slice(), [Decision::Start { schedule: 0, .. }]), "{d:?}");
    // The daemon runs the long suite without stepping; it ends at 03:00, after short's window.
    agenda.finished(utc("2026-12-07T03:00:00Z"));
    let d = agenda.step(utc("2026-12-07T03:00:00Z"), "h", quiet);
    match d.as_slice() {
        [Decision::Record { schedule: 1, status: NotRun::Skipped, reason, .. }] => {
            assert!(reason.contains("\"long\" was running"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reload_keeps_a_deferred_start_and_takes_a_new_schedules_fire_times_from_the_last_step() {
    use crate::schedule::agenda::{Agenda, Decision, Load};
    let guarded = || {
        one("[[schedule]]\nname = \"guarded\"\ncron = \"0 0 1 * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
             window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n\
             guard = { load_average_above = 2.0, action = \"defer\" }\n")
        .unwrap()
    };
    let added = one(
        "[[schedule]]\nname = \"added\"\ncron = \"0 10 1 * * *\"\ntimezone = \"UTC\"\nsuite = \"quick\"\n\
         window = { days = [\"*\"], start = \"01:00\", end = \"05:00\" }\n",
    )
    .unwrap();
    let busy = Load { cpu_busy: 0.9, load_average: 8.0 };
    let quiet = Load { cpu_busy: 0.0, load_average: 0.0 };
    let mut agenda = Agenda::new(vec![guarded()], utc("2026-12-07T00:00:00Z"));
    assert!(agenda.step(utc("2026-12-07T01:00:00Z"), "h", busy).is_empty(), "deferred, not recorded yet");
    // The files change at 01:20 (the new schedule's 01:10 passed meanwhile) and the load is gone.
    agenda.reload(vec![added, guarded()]);
    let d = agenda.step(utc("2026-12-07T01:20:00Z"), "h", quiet);
    let started: Vec<String> = d
        .iter()
        .filter_map(|x| match x {
            Decision::Start { schedule, fire, .. } => {
                Some(format!("{} {}", agenda.schedules[*schedule].name, fire.at))
            }
            _ => None,
        })
        .collect();
    assert_eq!(started, ["guarded 2026-12-07 01:00:00 UTC"], "the deferred start survives the reload: {d:?}");
    agenda.finished(utc("2026-12-07T01:30:00Z"));
    let d = agenda.step(utc("2026-12-07T01:30:00Z"), "h", quiet);
    assert!(
        d.iter().any(|x| matches!(x, Decision::Start { fire, .. } if fire.at == utc("2026-12-07T01:10:00Z"))),
        "the new schedule's 01:10, which passed during the reload, runs: {d:?}"
    );
}
