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
use fathom_datasets::store::{Dataset, default_url};
use fathom_datasets::write::write_run;
use fathom_datasets::{RunRecord, RunStatus};

use crate::params::{check_all, parse_overrides};
use crate::probe::{CancelToken, Probe};
use crate::runner::{RunSpec, Silent, run_probes};
use crate::schedule::agenda::{Agenda, Decision, Load, NotRun};
use crate::schedule::{self, Schedule, Work};
use crate::suite::Suite;
use crate::{host, probes};

pub struct DaemonOptions {
    pub schedules: PathBuf,
    pub host: String,
    /// Where the daemon remembers the last instant it planned up to.
    pub state_file: PathBuf,
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

fn dataset_of(s: &Schedule) -> Result<Dataset> {
    let url = s.dataset.clone().unwrap_or_else(default_url);
    Ok(Dataset::create(&url)?)
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
pub fn run(
    opts: &DaemonOptions,
    stop: &CancelToken,
    reload: &AtomicBool,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let schedules = load_schedules(&opts.schedules)?;
    let now = Utc::now();
    let since = read_state(&opts.state_file).filter(|t| *t <= now).unwrap_or(now);
    println!(
        "daemon: {} schedules from {}, planning from {since}",
        schedules.len(),
        opts.schedules.display()
    );
    let mut agenda = Agenda::new(schedules, since);
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = LoadSampler::start(sampler_stop.clone());
    let result = (|| -> Result<()> {
        while !stop.is_cancelled() {
            if reload.swap(false, Ordering::SeqCst) {
                match load_schedules(&opts.schedules) {
                    Ok(s) => {
                        println!("daemon: reloaded {} schedules", s.len());
                        agenda = Agenda::new(s, Utc::now());
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
            write_state(&opts.state_file, now)?;
            for d in decisions {
                match d {
                    Decision::Record { schedule, fire, status, reason } => {
                        let s = &agenda.schedules[schedule];
                        let record = not_run_record(s, &opts.host, fire.at, status, &reason);
                        println!("daemon: {} at {}: {} ({reason})", s.name, fire.at, record.status.as_str());
                        let dataset = dataset_of(s)?;
                        runtime.block_on(write_run(&dataset, &record, &[], &[]))?;
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
                        };
                        let result = run_probes(&spec, &probes, host::facts(), stop, &Silent)?;
                        let dataset = dataset_of(&s)?;
                        runtime.block_on(write_run(
                            &dataset,
                            &result.run,
                            &result.measurements,
                            &result.samples,
                        ))?;
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
                        write_state(&opts.state_file, Utc::now())?;
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
