//! The daemon's decisions, as a pure state machine over an injected clock: which fire time
//! starts a suite, which waits, which is deferred, skipped or missed, and until when a run may
//! go on. The daemon feeds it the time, the host's load and "the run finished"; it answers with
//! decisions. One suite at a time per host: nothing here ever starts a run while one is going.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use super::plan::{self, Fire};
use super::{GuardAction, Schedule};

/// The host's recent load, as the guard reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Share of the machine's CPU busy over the guard's interval (0–1).
    pub cpu_busy: f64,
    pub load_average: f64,
}

/// What happened to a fire time that did not run, for the `runs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    Skipped,
    Deferred,
    Missed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the schedule's work now; stop between probes at `deadline`, and give no probe a
    /// budget that reaches past it.
    Start { schedule: usize, fire: Fire, deadline: DateTime<Utc> },
    /// Record the fire time in `runs` with this status and reason.
    Record { schedule: usize, fire: Fire, status: NotRun, reason: String },
}

#[derive(Debug, Clone)]
struct Pending {
    schedule: usize,
    fire: Fire,
    /// The fire time plus this fire's jitter.
    start_at: DateTime<Utc>,
    /// The guard deferred it at least once.
    deferred: bool,
}

/// The most `missed` records one step writes per schedule (a host off for a month under a
/// per-minute cron would otherwise write forty thousand).
pub const MAX_MISSED_RECORDS: usize = 1000;

/// The agenda of one host.
pub struct Agenda {
    pub schedules: Vec<Schedule>,
    /// Per schedule, the fire times already taken up to here.
    seen: Vec<DateTime<Utc>>,
    queue: VecDeque<Pending>,
    running: Option<(usize, DateTime<Utc>)>,
    /// The last run that ended: which schedule, from when to when (for the reason a queued
    /// fire time never started).
    last_run: Option<(usize, DateTime<Utc>, DateTime<Utc>)>,
}

/// A deterministic jitter in `[0, jitter)`, from the schedule's name and the fire time, so
/// hosts with different names spread out and a test sees the same plan every time.
pub fn jitter_of(s: &Schedule, host: &str, fire: DateTime<Utc>) -> Duration {
    let secs = s.jitter.as_secs();
    if secs == 0 {
        return Duration::zero();
    }
    // FNV-1a over host, schedule and fire time.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.bytes().chain(s.name.bytes()).chain(fire.timestamp().to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::seconds((h % secs) as i64)
}

impl Agenda {
    /// An agenda that takes fire times after `since` (the last instant the daemon saw).
    pub fn new(schedules: Vec<Schedule>, since: DateTime<Utc>) -> Agenda {
        let seen = vec![since; schedules.len()];
        Agenda { schedules, seen, queue: VecDeque::new(), running: None, last_run: None }
    }

    /// New schedules (SIGHUP) in place of the old, without forgetting where planning stands:
    /// a schedule kept by name keeps how far it was taken and its queued fire (a start
    /// deferred by the guard still waits), and a new one takes fire times from the last step
    /// on, so none that passed while the files were being edited is lost.
    /// Returns the queued fires of schedules the reload removed (or renamed), with their old
    /// schedule, for the caller to record: they will never start.
    pub fn reload(&mut self, schedules: Vec<Schedule>) -> Vec<(Schedule, Fire)> {
        let last_step = self.seen.iter().copied().max();
        let index_of = |name: &str| schedules.iter().position(|s| s.name == name);
        let seen = schedules
            .iter()
            .map(|s| {
                let old = self.schedules.iter().position(|o| o.name == s.name);
                old.map(|i| self.seen[i]).or(last_step).unwrap_or_else(Utc::now)
            })
            .collect();
        let mut dropped = Vec::new();
        let mut queue = VecDeque::new();
        for mut p in std::mem::take(&mut self.queue) {
            let old = &self.schedules[p.schedule];
            match index_of(&old.name) {
                Some(i) => {
                    p.schedule = i;
                    queue.push_back(p);
                }
                None => dropped.push((old.clone(), p.fire)),
            }
        }
        let remap = |r: usize| index_of(&self.schedules[r].name);
        let running = self.running.and_then(|(r, at)| Some((remap(r)?, at)));
        let last_run = self.last_run.and_then(|(r, from, to)| Some((remap(r)?, from, to)));
        *self = Agenda { schedules, seen, queue, running, last_run };
        dropped
    }

    /// Whether a run is going, and since when.
    pub fn running(&self) -> Option<(usize, DateTime<Utc>)> {
        self.running
    }

    /// The run that was started has ended at `at` (completed, partial or failed: the runner
    /// records it).
    pub fn finished(&mut self, at: DateTime<Utc>) {
        if let Some((schedule, started)) = self.running.take() {
            self.last_run = Some((schedule, started, at));
        }
    }

    /// The next instant something may change without a `finished` call: a fire time, a
    /// deferred start's retry, a window's close.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let fires = self
            .schedules
            .iter()
            .enumerate()
            .filter_map(|(i, s)| plan::fires(s, self.seen[i].max(now), 1).first().map(|f| f.at));
        let queued =
            self.queue.iter().flat_map(|p| [p.start_at.max(now + Duration::seconds(1)), p.fire.window_close]);
        fires.chain(queued).filter(|t| *t > now).min()
    }

    /// Everything that is due at `now`, given the host's load.
    pub fn step(&mut self, now: DateTime<Utc>, host: &str, load: Load) -> Vec<Decision> {
        let mut out = Vec::new();
        // New fire times up to now join the queue; a schedule with a fire still queued does
        // not queue a second one.
        for (i, s) in self.schedules.iter().enumerate() {
            let mut due = plan::fires_between(s, self.seen[i], now);
            self.seen[i] = self.seen[i].max(now);
            // Fire times whose window closed before this step were passed while nobody looked
            // (the daemon was down, or the host asleep): missed, one record each, bounded.
            let closed = due.iter().take_while(|f| f.window_close <= now).count();
            let missed: Vec<Fire> = due.drain(..closed).collect();
            if missed.len() > MAX_MISSED_RECORDS {
                tracing::warn!(
                    "schedule {:?}: {} fire times passed while the daemon was not running; recording the last {MAX_MISSED_RECORDS}",
                    s.name,
                    missed.len()
                );
            }
            let skip = missed.len().saturating_sub(MAX_MISSED_RECORDS);
            for fire in missed.into_iter().skip(skip) {
                // A daemon busy with a suite does not step: a fire time during that run was
                // skipped because of it, not missed.
                let busy = self.last_run.filter(|(_, from, to)| *from <= fire.at && fire.at <= *to);
                let (status, reason) = match busy {
                    Some((r, ..)) => (
                        NotRun::Skipped,
                        format!("schedule {:?} was running until its window closed", self.schedules[r].name),
                    ),
                    None => {
                        (NotRun::Missed, "the daemon was not running while its window was open".to_string())
                    }
                };
                out.push(Decision::Record { schedule: i, fire, status, reason });
            }
            for fire in due {
                if self.queue.iter().any(|p| p.schedule == i) || self.running.is_some_and(|(r, _)| r == i) {
                    out.push(Decision::Record {
                        schedule: i,
                        fire,
                        status: NotRun::Skipped,
                        reason: format!(
                            "the previous run of schedule {:?} had not started or finished yet",
                            s.name
                        ),
                    });
                    continue;
                }
                let start_at = fire.at + jitter_of(s, host, fire.at);
                self.queue.push_back(Pending { schedule: i, fire, start_at, deferred: false });
            }
        }
        // Queued fires whose window has closed will never run.
        let mut keep = VecDeque::new();
        while let Some(p) = self.queue.pop_front() {
            if p.fire.window_close <= now || p.start_at >= p.fire.window_close {
                let (status, reason) = if p.deferred {
                    (
                        NotRun::Deferred,
                        "the production-load guard held it until the window closed".to_string(),
                    )
                } else if let Some(r) = self.running.map(|(r, _)| r).or_else(|| {
                    self.last_run
                        .filter(|(_, from, to)| *from <= p.fire.window_close && p.fire.window_close <= *to)
                        .map(|(r, ..)| r)
                }) {
                    (
                        NotRun::Skipped,
                        format!(
                            "schedule {:?} was still running when the window closed",
                            self.schedules[r].name
                        ),
                    )
                } else {
                    (NotRun::Missed, "the window closed before it could start".to_string())
                };
                out.push(Decision::Record { schedule: p.schedule, fire: p.fire, status, reason });
            } else {
                keep.push_back(p);
            }
        }
        self.queue = keep;
        // Start a due one, if nothing is running: the one whose window closes first, so a short
        // window is not starved by a long one (earliest deadline first; ties: the oldest).
        if self.running.is_some() {
            return out;
        }
        let Some(pos) = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, p)| p.start_at <= now)
            .min_by_key(|(i, p)| (p.fire.window_close, *i))
            .map(|(i, _)| i)
        else {
            return out;
        };
        let p = &self.queue[pos];
        let s = &self.schedules[p.schedule];
        if let Some(g) = &s.guard {
            let busy = g.cpu_busy_above.is_some_and(|c| load.cpu_busy > c);
            let loaded = g.load_average_above.is_some_and(|l| load.load_average > l);
            if busy || loaded {
                let why = if busy {
                    format!(
                        "CPU {:.0}% busy, above the guard's {:.0}%",
                        load.cpu_busy * 100.0,
                        g.cpu_busy_above.unwrap_or(0.0) * 100.0
                    )
                } else {
                    format!(
                        "load average {:.2}, above the guard's {}",
                        load.load_average,
                        g.load_average_above.unwrap_or(0.0)
                    )
                };
                match g.action {
                    GuardAction::Skip => {
                        let p = self.queue.remove(pos).expect("position is in the queue");
                        out.push(Decision::Record {
                            schedule: p.schedule,
                            fire: p.fire,
                            status: NotRun::Skipped,
                            reason: format!("production load: {why}"),
                        });
                    }
                    GuardAction::Defer => {
                        let retry = now + Duration::from_std(g.over).unwrap_or(Duration::minutes(1));
                        let p = &mut self.queue[pos];
                        p.deferred = true;
                        p.start_at = retry;
                    }
                }
                return out;
            }
        }
        let p = self.queue.remove(pos).expect("position is in the queue");
        let deadline = p.fire.deadline(&self.schedules[p.schedule], now);
        self.running = Some((p.schedule, now));
        out.push(Decision::Start { schedule: p.schedule, fire: p.fire, deadline });
        out
    }
}
