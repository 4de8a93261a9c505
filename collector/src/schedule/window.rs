//! Maintenance windows: days of the week and a local start and end time, in the schedule's time
//! zone. A window whose end is not after its start crosses midnight and belongs to the day it
//! starts on (`fri 22:00–02:00` ends on Saturday).
//!
//! Daylight-saving changes never let a run fall outside the wall-clock window: a start time that
//! occurs twice (autumn) opens at its later occurrence and an end time that occurs twice closes
//! at its earlier one; a time the clocks skip (spring) is taken as the moment they jump.

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Which part of a window a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Days,
    Start,
    End,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Days => "days",
            Part::Start => "start",
            Part::End => "end",
        }
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    pub start: NaiveTime,
    pub end: NaiveTime,
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let t = text.trim();
    NaiveTime::parse_from_str(t, "%H:%M").or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S")).ok()
}

impl Window {
    /// `days` as names (`mon`, `Tuesday`, …) or `["*"]` for every day; times as `HH:MM`.
    pub fn parse(days: &[String], start: &str, end: &str) -> Result<Window, (Part, String)> {
        let mut set = [false; 7];
        for d in days {
            let d = d.trim().to_ascii_lowercase();
            if d == "*" || d == "daily" {
                set = [true; 7];
                continue;
            }
            let i = DAY_NAMES
                .iter()
                .position(|n| *n == d)
                .or_else(|| DAY_FULL.iter().position(|n| *n == d))
                .ok_or_else(|| {
                    (Part::Days, format!("{d:?} is not a day; use mon … sun, or \"*\" for every day"))
                })?;
            set[i] = true;
        }
        if !set.iter().any(|d| *d) {
            return Err((Part::Days, "empty window: no days given".into()));
        }
        let start_t = parse_time(start)
            .ok_or_else(|| (Part::Start, format!("{start:?} is not a time of day HH:MM")))?;
        let end_t =
            parse_time(end).ok_or_else(|| (Part::End, format!("{end:?} is not a time of day HH:MM")))?;
        if start_t == end_t {
            return Err((Part::End, format!("empty window: it starts and ends at {end}")));
        }
        Ok(Window { days: set, start: start_t, end: end_t })
    }

    /// How long the window is on a day without a clock change.
    pub fn length(&self) -> std::time::Duration {
        let secs = (self.end - self.start).num_seconds().rem_euclid(86_400);
        std::time::Duration::from_secs(secs as u64)
    }

    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// The window that opens on local date `day`, as UTC instants, if `day` is one of its days.
    pub fn on(&self, day: NaiveDate, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.days[day.weekday().num_days_from_monday() as usize] {
            return None;
        }
        let end_day = if self.crosses_midnight() { day.succ_opt()? } else { day };
        let open = resolve(tz, day.and_time(self.start), true);
        let close = resolve(tz, end_day.and_time(self.end), false);
        (open < close).then_some((open, close))
    }

    /// The window occurrence containing `t`: `[open, close)`.
    pub fn containing(&self, t: DateTime<Utc>, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let today = t.with_timezone(&tz).date_naive();
        [today.pred_opt(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.on(d, tz))
            .find(|(open, close)| *open <= t && t < *close)
    }

    /// The first occurrence that has not closed by `t` (it may already be open).
    pub fn next_from(&self, t: DateTime<Utc>, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let today = t.with_timezone(&tz).date_naive();
        (-1..=8)
            .filter_map(|k| today.checked_add_signed(ChronoDuration::days(k)))
            .filter_map(|d| self.on(d, tz))
            .find(|(_, close)| *close > t)
    }

    /// `mon–fri 01:00–05:00`, for people.
    pub fn describe(&self) -> String {
        let days: Vec<&str> =
            DAY_NAMES.iter().zip(self.days).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        let days = if days.len() == 7 { "every day".to_string() } else { days.join(",") };
        format!(
            "{days} {}–{}{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M"),
            if self.crosses_midnight() { " (next day)" } else { "" }
        )
    }
}

const DAY_FULL: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// A local wall-clock time as an instant. `later` picks the second of two occurrences (an
/// opening time in the autumn change), else the first; a skipped time is the jump itself.
pub fn resolve(tz: Tz, local: chrono::NaiveDateTime, later: bool) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => if later { b } else { a }.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first valid local minute after it is the transition instant.
            let mut probe = local;
            for _ in 0..(4 * 60) {
                probe += ChronoDuration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    let t = t.with_timezone(&Utc);
                    // Back to the exact jump: the minute's start may still be after it.
                    return t - ChronoDuration::seconds(probe.and_utc().timestamp() % 60);
                }
            }
            tz.from_utc_datetime(&local).with_timezone(&Utc)
        }
    }
}
