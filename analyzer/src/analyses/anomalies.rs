//! `anomalies`, part one: the change points of every host × metric series, as degradations or
//! improvements by the metric's direction. The detector is [`super::changepoint`]; disturbed runs
//! are read as missing nights, so a night another process spoiled is never a change.

use chrono::NaiveDate;
use serde::Serialize;

use super::changepoint::{ChangePoint, Options, detect};
use crate::series::{NightlySeries, SeriesKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Degradation,
    Improvement,
}

impl Direction {
    pub fn of(magnitude: f64, higher_is_better: bool) -> Direction {
        if (magnitude > 0.0) == higher_is_better { Direction::Improvement } else { Direction::Degradation }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Degradation => "degradation",
            Direction::Improvement => "improvement",
        }
    }
}

/// One level shift of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    #[serde(flatten)]
    pub key: SeriesKey,
    pub higher_is_better: bool,
    pub direction: Direction,
    /// The night of the first run at the new level (UTC).
    pub date: NaiveDate,
    /// When that run started, microseconds since the epoch.
    #[serde(skip)]
    pub at: i64,
    /// Median level before and after, in the metric's unit.
    pub before: f64,
    pub after: f64,
    /// after / before − 1.
    pub magnitude: f64,
    pub confidence: f64,
    /// The new level still holds: no later change point in the series.
    pub ongoing: bool,
    /// Runs at the new level so far (disturbed ones included).
    pub runs_since: usize,
}

/// The change points of one series, oldest first.
pub fn anomalies_of(series: &NightlySeries, opts: &Options) -> Vec<Anomaly> {
    anomalies_from(series, &detect(&series.clean_values(), opts))
}

/// The anomalies of change points the caller detected in `series`.
pub fn anomalies_from(series: &NightlySeries, found: &[ChangePoint]) -> Vec<Anomaly> {
    let last = found.len().saturating_sub(1);
    found
        .iter()
        .enumerate()
        .map(|(k, c)| Anomaly {
            key: series.key.clone(),
            higher_is_better: series.higher_is_better,
            direction: Direction::of(c.magnitude, series.higher_is_better),
            date: series.night(c.index),
            at: series.at[c.index],
            before: c.before,
            after: c.after,
            magnitude: c.magnitude,
            confidence: c.confidence,
            ongoing: k == last,
            runs_since: series.len() - c.index,
        })
        .collect()
}

/// Every series' change points, in series order; the same input gives the same list.
pub fn change_points(series: &[NightlySeries], opts: &Options) -> Vec<Anomaly> {
    series.iter().flat_map(|s| anomalies_of(s, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn noisy(n: usize, level: impl Fn(usize) -> f64) -> Vec<f64> {
        // A fixed wobble of ±1 %: deterministic, and enough for the noise scale.
        (0..n).map(|i| level(i) * (1.0 + 0.01 * [0.3, -0.8, 1.0, -0.2, 0.6, -1.0, 0.1][i % 7])).collect()
    }

    #[test]
    fn a_step_down_in_a_throughput_is_an_ongoing_degradation() {
        let s = series(&noisy(60, |i| if i < 40 { 1000.0 } else { 800.0 }), &[]);
        let found = anomalies_of(&s, &Options::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!(a.direction, Direction::Degradation);
        assert_eq!(a.date, NaiveDate::from_ymd_opt(2026, 2, 10).unwrap());
        assert!((a.magnitude + 0.2).abs() < 0.01, "{}", a.magnitude);
        assert!(a.ongoing);
        assert_eq!(a.runs_since, 20);
        // The same step in a latency is an improvement.
        let mut latency = s.clone();
        latency.higher_is_better = false;
        assert_eq!(anomalies_of(&latency, &Options::default())[0].direction, Direction::Improvement);
    }

    #[test]
    fn a_regression_fixed_later_is_two_changes_and_only_the_fix_is_ongoing() {
        let s = series(&noisy(90, |i| if (30..60).contains(&i) { 700.0 } else { 1000.0 }), &[]);
        let found = anomalies_of(&s, &Options::default());
        let summary: Vec<(Direction, bool)> = found.iter().map(|a| (a.direction, a.ongoing)).collect();
        assert_eq!(summary, [(Direction::Degradation, false), (Direction::Improvement, true)]);
    }

    #[test]
    fn disturbed_runs_are_not_changes() {
        // Three bad nights in a row, all flagged disturbed: no change point.
        let mut values = noisy(60, |_| 1000.0);
        for v in &mut values[30..33] {
            *v *= 0.7;
        }
        assert!(anomalies_of(&series(&values, &[30, 31, 32]), &Options::default()).is_empty());
        // Unflagged, the same three nights are a short excursion the detector may report.
        assert!(!anomalies_of(&series(&values, &[]), &Options::default()).is_empty());
    }
}
