//! Planning as plain functions of time: which fire times count (those inside a window), how
//! long a run may take, and what to do about fire times missed while the daemon was down.
//! `tokio-cron-scheduler` only wakes the daemon; every decision is made here, so tests drive
//! weeks of schedules, time zones and clock changes with an injected clock.

use chrono::{DateTime, Timelike, Utc};

use super::Schedule;

/// How far ahead `fires` looks before it gives up: a window and a cron that never meet are
/// an error in `schedules check`, not an endless search.
pub const HORIZON_DAYS: i64 = 400;

/// A fire time inside a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    pub at: DateTime<Utc>,
    /// When the window it fell in closes: nothing of the run may go on past it.
    pub window_close: DateTime<Utc>,
}

impl Fire {
    /// The latest a run started at `start` may end: the window's close, or sooner by the
    /// schedule's `max_runtime`.
    pub fn deadline(&self, schedule: &Schedule, start: DateTime<Utc>) -> DateTime<Utc> {
        match schedule.max_runtime.and_then(|d| chrono::Duration::from_std(d).ok()) {
            Some(max) => (start + max).min(self.window_close),
            None => self.window_close,
        }
    }
}

/// The cron's fire times after `after` (exclusive), in the schedule's time zone.
fn cron_times(s: &Schedule, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    // Whole seconds: croner keeps the sub-second part of the instant it starts from.
    let after = after.with_nanosecond(0).unwrap_or(after);
    let horizon = after + chrono::Duration::days(HORIZON_DAYS);
    s.cron
        .iter_after(after.with_timezone(&s.timezone))
        .map(|t| t.with_timezone(&Utc))
        .take_while(move |t| *t <= horizon)
}

/// The next `count` fire times after `after` that fall inside the window; fewer when the
/// horizon ends first (none: cron and window never meet).
pub fn fires(s: &Schedule, after: DateTime<Utc>, count: usize) -> Vec<Fire> {
    cron_times(s, after)
        .filter_map(|at| {
            s.window.containing(at, s.timezone).map(|(_, close)| Fire { at, window_close: close })
        })
        .take(count)
        .collect()
}

/// The fire times inside windows in `(after, until]`.
pub fn fires_between(s: &Schedule, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Fire> {
    cron_times(s, after)
        .take_while(|t| *t <= until)
        .filter_map(|at| {
            s.window.containing(at, s.timezone).map(|(_, close)| Fire { at, window_close: close })
        })
        .collect()
}

/// What the daemon does, at start-up, about fire times between `last_seen` (when it last ran,
/// exclusive) and `now` (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// The latest missed fire whose window is still open: run it once, now (as systemd's
    /// `Persistent=` does).
    pub run_now: Option<Fire>,
    /// The other missed fire times inside windows, to be recorded as `missed`.
    pub missed: Vec<Fire>,
}

pub fn catch_up(s: &Schedule, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> CatchUp {
    // Bounded: a host off for a year records at most a year of misses.
    let mut missed: Vec<Fire> = cron_times(s, last_seen)
        .take_while(|t| *t <= now)
        .filter_map(|at| {
            s.window.containing(at, s.timezone).map(|(_, close)| Fire { at, window_close: close })
        })
        .collect();
    let run_now = match missed.last() {
        Some(f) if f.window_close > now => missed.pop(),
        _ => None,
    };
    CatchUp { run_now, missed }
}
