//! `fathom-collector daemon`: runs the schedules' suites on this host, inside their windows,
//! one at a time, and records every fire time that did not run with its reason.
//!
//! All decisions come from [`crate::schedule::agenda`]; this module feeds it the wall clock and
//! the host's load, carries out its decisions (runs the probes with the deadline, writes the
//! run or the not-run record) and keeps the instant it last looked in a state file, so fire
//! times missed while the daemon was down are run once if their window is still open, else
//! recorded as missed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use fathom_datasets::store::default_url;
use fathom_datasets::write::EncodedRun;
use fathom_datasets::{Measurement, RunRecord, RunStatus, Sample};

use crate::params::{check_all, parse_overrides};
use crate::probe::{CancelToken, Probe};
use crate::runner::{RunSpec, Silent, run_probes};
use crate::schedule::agenda::{Agenda, Decision, Load, NotRun};
use crate::schedule::{self, Schedule, Work};
use crate::spool::{Spool, backoff};
use crate::suite::Suite;
use crate::{host, probes};

pub struct DaemonOptions {
    pub schedules: PathBuf,
    pub host: String,
    /// Where the daemon remembers the last instant it planned up to.
    pub state_file: PathBuf,
    /// Where runs wait for their upload, and the most it may hold.
    pub spool: PathBuf,
    pub spool_limit: u64,
}

/// The probes a schedule runs and the suite whose effort they use.
pub fn work_of(s: &Schedule) -> (Vec<Box<dyn Probe>>, Suite) {
    match &s.work {
        Work::Suite(name) => {
            let suite = <Suite as clap::ValueEnum>::from_str(name, true).unwrap_or(Suite::Standard);
            (suite.probes(), suite)
        }
        Work::Probes(ids) => (ids.iter().filter_map(|id| probes::find(id)).collect(), Suite::Standard),
    }
}

/// Loads schedules and checks their parameters as `run --param` would.
pub fn load_schedules(path: &Path) -> Result<Vec<Schedule>> {
    let probe_ids: Vec<&str> = probes::all().iter().map(|p| p.id()).collect();
    let suites: Vec<&str> = <Suite as clap::ValueEnum>::value_variants().iter().map(|s| s.name()).collect();
    let schedules = schedule::load(path, &probe_ids, &suites)?;
    for s in &schedules {
        let (probes, suite) = work_of(s);
        let items: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parse_overrides(&items)
            .and_then(|o| check_all(&probes, suite.effort(), &o))
            .with_context(|| format!("{}: schedule {:?} params", s.origin, s.name))?;
    }
    Ok(schedules)
}

/// CPU busy share over a trailing interval, from `/proc/stat` sampled every two seconds.
#[derive(Clone, Default)]
pub struct LoadSampler(Arc<Mutex<VecDeque<(Instant, u64, u64)>>>);

fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

impl LoadSampler {
    pub fn start(stop: Arc<AtomicBool>) -> LoadSampler {
        let sampler = LoadSampler::default();
        let samples = sampler.0.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some((busy, total)) = cpu_ticks() {
                    let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_back((Instant::now(), busy, total));
                    while s.len() > 1800 {
                        s.pop_front();
                    }
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        });
        sampler
    }

    /// The host's load over the last `over` (or as much of it as has been sampled).
    pub fn load(&self, over: Duration) -> Load {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = (Instant::now(), cpu_ticks());
        let cpu_busy = match (s.iter().find(|(t, ..)| now.0.duration_since(*t) <= over).or(s.front()), now.1)
        {
            (Some(&(_, b0, t0)), Some((b1, t1))) if t1 > t0 => {
                (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        Load { cpu_busy, load_average }
    }
}

/// A state file that cannot be written costs catch-up after a restart, not tonight's runs.
fn keep_state(path: &Path, at: DateTime<Utc>) {
    if let Err(e) = write_state(path, at) {
        eprintln!("daemon: warning: {e:#}; fire times missed before a restart may not be caught up");
    }
}

fn read_state(path: &Path) -> Option<DateTime<Utc>> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Written to a temporary file and renamed, so a crash leaves the old state or the new one.
fn write_state(path: &Path, at: DateTime<Utc>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, at.to_rfc3339()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// The dataset URL a schedule writes to, as the spool records it: a local path made absolute
/// (a `spool flush` may run from another folder), nothing created or contacted here, so a
/// store that is down or a full disk never stops the daemon; the upload reports those.
fn dataset_of(s: &Schedule) -> String {
    let url = s.dataset.clone().unwrap_or_else(default_url);
    if url.contains("://") {
        return url;
    }
    std::path::absolute(&url).map(|p| p.display().to_string()).unwrap_or(url)
}

/// Spools a run for its upload. A full spool or a disk error loses this one run, with an
/// error in the log, but never stops the daemon: the next night may find room again.
fn spool_run(
    spool: &Spool,
    url: &str,
    run: &RunRecord,
    measurements: &[Measurement],
    samples: &[Sample],
    wake: &std::sync::mpsc::Sender<()>,
) {
    let kept = EncodedRun::encode(run, measurements, samples)
        .map_err(anyhow::Error::from)
        .and_then(|encoded| Ok(spool.add(url, &encoded)?));
    match kept {
        Ok(_) => {
            let _ = wake.send(());
        }
        Err(e) => eprintln!("daemon: error: run {} not kept: {e:#}", run.run_id),
    }
}

/// Uploads the spool in the background: at once when a run is spooled, again with
/// exponential backoff (2 s doubling to 5 min) while a dataset cannot be reached, and every
/// ten minutes anyway; never while a suite runs (`busy`), since its I/O and CPU would be the
/// collector's own and escape the foreign-load check. It ends when the daemon drops the sender.
fn start_uploader(
    spool: Spool,
    busy: Arc<AtomicBool>,
    wake: std::sync::mpsc::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(std::thread::spawn(move || {
        let mut failures = 0u32;
        loop {
            let wait = match runtime.block_on(spool.flush(Some(&busy))) {
                Ok(report) if report.paused && report.errors.is_empty() => {
                    print_deliveries(&report);
                    Duration::from_secs(1)
                }
                Ok(report) => {
                    print_deliveries(&report);
                    if report.errors.is_empty() {
                        failures = 0;
                        Duration::from_secs(600)
                    } else {
                        failures += 1;
                        let wait = backoff(failures - 1, Duration::from_secs(2), Duration::from_secs(300));
                        for (dataset, error) in &report.errors {
                            eprintln!(
                                "upload: {dataset} unreachable ({error}); {} runs wait in the spool, next try in {:.0} s",
                                report.waiting,
                                wait.as_secs_f64()
                            );
                        }
                        wait
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("upload: error: {e}");
                    backoff(failures - 1, Duration::from_secs(2), Duration::from_secs(300))
                }
            };
            // A newly spooled run is uploaded at once, unless the store is failing: then it
            // waits for the backoff's end with the others.
            let until = Instant::now() + wait;
            loop {
                match wake.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(()) if failures == 0 => break,
                    Ok(()) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }))
}

fn print_deliveries(report: &crate::spool::FlushReport) {
    for d in &report.delivered {
        let what = if d.already_there { "was already in" } else { "delivered to" };
        println!("upload: run {} {what} {}", d.run_id, d.dataset);
    }
    for (run_id, reason) in &report.quarantined {
        eprintln!("upload: warning: run {run_id} quarantined: {reason}");
    }
}

/// The run going on, kept beside the spool while it runs: a daemon killed mid-run (or a host
/// that lost power) finds it at its next start and records the run as `failed`, so the night
/// is accounted for even though what it measured is gone.
const JOURNAL: &str = "running.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    dataset: String,
    run: RunRecord,
}

/// Synced, then renamed and the folder synced, so a power cut leaves the old journal or the
/// new one, never an empty file.
fn write_journal(spool: &Spool, journal: &Journal) -> Result<()> {
    use std::io::Write as _;
    let path = spool.dir().join(JOURNAL);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec(journal)?)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
    std::fs::File::open(spool.dir()).and_then(|d| d.sync_all()).context("syncing the spool folder")
}

fn clear_journal(spool: &Spool) {
    let _ = std::fs::remove_file(spool.dir().join(JOURNAL));
}

/// Spools the `failed` record of a run a crash interrupted, if there was one.
fn recover_interrupted(spool: &Spool, wake: &std::sync::mpsc::Sender<()>) {
    let path = spool.dir().join(JOURNAL);
    let Ok(text) = std::fs::read(&path) else { return };
    match serde_json::from_slice::<Journal>(&text) {
        // The run was spooled before the stop (the kill came between that and clearing the
        // journal): its real record is there, and nothing is to be added.
        Ok(Journal { run, .. }) if spool.holds(&run.run_id) => {}
        Ok(Journal { dataset, mut run }) => {
            run.status = RunStatus::Failed;
            run.status_reason = Some(
                "the collector stopped during the run (killed, crashed or the host went down); nothing it measured was kept"
                    .into(),
            );
            run.finished_at = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(DateTime::<Utc>::from)
                .unwrap_or(run.started_at)
                .max(run.started_at);
            println!("daemon: run {} was interrupted by a stop; recording it as failed", run.run_id);
            spool_run(spool, &dataset, &run, &[], &[], wake);
        }
        Err(e) => eprintln!("daemon: warning: ignoring an unreadable {}: {e}", path.display()),
    }
    clear_journal(spool);
}

/// A `runs` row for a fire time that did not run.
fn not_run_record(s: &Schedule, host: &str, fire: DateTime<Utc>, status: NotRun, reason: &str) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        run_id: RunRecord::new_id(),
        host: host.to_string(),
        role: s.role.clone(),
        labels: s.labels.clone(),
        tags: s.tags.clone(),
        suite: match &s.work {
            Work::Suite(n) => n.clone(),
            Work::Probes(_) => "custom".into(),
        },
        schedule: Some(s.name.clone()),
        started_at: fire,
        finished_at: now,
        status: match status {
            NotRun::Skipped => RunStatus::Skipped,
            NotRun::Deferred => RunStatus::Deferred,
            NotRun::Missed => RunStatus::Missed,
        },
        status_reason: Some(reason.to_string()),
        collector_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: RunRecord::schema_version(),
        facts: host::facts(),
    }
}

/// Runs until `stop`; `reload` (SIGHUP) reloads the schedule files between decisions.
pub fn run(opts: &DaemonOptions, stop: &CancelToken, reload: &AtomicBool) -> Result<()> {
    let schedules = load_schedules(&opts.schedules)?;
    let now = Utc::now();
    let since = read_state(&opts.state_file).filter(|t| *t <= now).unwrap_or(now);
    println!(
        "daemon: {} schedules from {}, planning from {since}",
        schedules.len(),
        opts.schedules.display()
    );
    let mut agenda = Agenda::new(schedules, since);
    let spool = Spool::open(&opts.spool, opts.spool_limit)?;
    let waiting = spool.entries()?.len();
    if waiting > 0 {
        println!("daemon: {waiting} runs wait in the spool {}: uploading them first", opts.spool.display());
    }
    let (wake, woken) = std::sync::mpsc::channel();
    recover_interrupted(&spool, &wake);
    let busy = Arc::new(AtomicBool::new(false));
    let uploader = start_uploader(spool.clone(), busy.clone(), woken).context("starting the uploader")?;
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = LoadSampler::start(sampler_stop.clone());
    let result = (|| -> Result<()> {
        while !stop.is_cancelled() {
            if uploader.is_finished() {
                anyhow::bail!("the uploader stopped unexpectedly; runs stay in the spool for the next start");
            }
            if reload.swap(false, Ordering::SeqCst) {
                match load_schedules(&opts.schedules) {
                    Ok(s) => {
                        println!("daemon: reloaded {} schedules", s.len());
                        for (old, fire) in agenda.reload(s) {
                            let reason =
                                "its schedule was removed or renamed by a reload before it could start";
                            let record = not_run_record(&old, &opts.host, fire.at, NotRun::Skipped, reason);
                            println!(
                                "daemon: {} at {}: skipped ({reason}), run {}",
                                old.name, fire.at, record.run_id
                            );
                            spool_run(&spool, &dataset_of(&old), &record, &[], &[], &wake);
                        }
                    }
                    Err(e) => eprintln!("daemon: reload refused, keeping the old schedules: {e:#}"),
                }
            }
            let now = Utc::now();
            let over = agenda
                .schedules
                .iter()
                .filter_map(|s| s.guard.as_ref().map(|g| g.over))
                .max()
                .unwrap_or(Duration::from_secs(60));
            let decisions = agenda.step(now, &opts.host, sampler.load(over));
            keep_state(&opts.state_file, now);
            for d in decisions {
                match d {
                    Decision::Record { schedule, fire, status, reason } => {
                        let s = &agenda.schedules[schedule];
                        let record = not_run_record(s, &opts.host, fire.at, status, &reason);
                        println!(
                            "daemon: {} at {}: {} ({reason}), run {}",
                            s.name,
                            fire.at,
                            record.status.as_str(),
                            record.run_id
                        );
                        spool_run(&spool, &dataset_of(s), &record, &[], &[], &wake);
                    }
                    Decision::Start { schedule, fire, deadline } => {
                        let s = agenda.schedules[schedule].clone();
                        let left = (deadline - Utc::now()).to_std().unwrap_or_default();
                        println!("daemon: {} at {}: starting, at most {} s", s.name, fire.at, left.as_secs());
                        let (probes, suite) = work_of(&s);
                        let items: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        let spec = RunSpec {
                            host: opts.host.clone(),
                            role: s.role.clone(),
                            labels: s.labels.clone(),
                            tags: s.tags.clone(),
                            suite: match &s.work {
                                Work::Suite(n) => n.clone(),
                                Work::Probes(_) => "custom".into(),
                            },
                            schedule: Some(s.name.clone()),
                            effort: suite.effort(),
                            overrides: parse_overrides(&items)?,
                            deadline: Some(Instant::now() + left),
                            run_id: Some(RunRecord::new_id()),
                        };
                        let url = dataset_of(&s);
                        let mut journal = not_run_record(&s, &opts.host, Utc::now(), NotRun::Skipped, "");
                        journal.run_id = spec.run_id.clone().expect("set above");
                        journal.status = RunStatus::Failed;
                        if let Err(e) =
                            write_journal(&spool, &Journal { dataset: url.clone(), run: journal.clone() })
                        {
                            eprintln!("daemon: warning: {e:#}; a kill during this run would go unrecorded");
                        }
                        busy.store(true, Ordering::SeqCst);
                        let outcome = run_probes(&spec, &probes, host::facts(), stop, &Silent);
                        busy.store(false, Ordering::SeqCst);
                        let result = match outcome {
                            Ok(result) => result,
                            Err(e) => {
                                journal.status_reason = Some(format!("the run could not start: {e:#}"));
                                journal.finished_at = Utc::now();
                                crate::runner::RunResult {
                                    run: journal,
                                    measurements: Vec::new(),
                                    samples: Vec::new(),
                                    notes: Vec::new(),
                                    failures: Vec::new(),
                                    skipped: Vec::new(),
                                }
                            }
                        };
                        spool_run(&spool, &url, &result.run, &result.measurements, &result.samples, &wake);
                        clear_journal(&spool);
                        println!(
                            "daemon: {}: run {} {}{}",
                            s.name,
                            result.run.run_id,
                            result.run.status.as_str(),
                            result
                                .run
                                .status_reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                        agenda.finished(Utc::now());
                        keep_state(&opts.state_file, Utc::now());
                    }
                }
            }
            // Sleep until the agenda's next change, waking every 200 ms for signals.
            let wake =
                agenda.next_wake(Utc::now()).unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(10));
            while !stop.is_cancelled() && !reload.load(Ordering::SeqCst) && Utc::now() < wake {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        println!("daemon: stopped");
        Ok(())
    })();
    sampler_stop.store(true, Ordering::SeqCst);
    // The uploader gets a last few seconds to finish; whatever it has not delivered stays in
    // the spool for the next start (an upload cut off here is retried whole, without harm).
    drop(wake);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !uploader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    result
}

/// The default state file: `$XDG_STATE_HOME/fathom/daemon-state`, else `~/.local/state/…`.
pub fn default_state_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("fathom").join("daemon-state")
}
