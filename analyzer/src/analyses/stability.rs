//! `stability`: how far each host × metric can be trusted. The noise is the robust CV the change
//! point detector sets its thresholds with ([`noise_cv`]: the MAD of night-to-night differences,
//! which neither a level shift nor a disturbed night moves), over the recent runs, and the share
//! of those runs a foreign process disturbed.

use serde::Serialize;

use super::changepoint::noise_cv;
use crate::series::{NightlySeries, SeriesKey};

/// Recent runs the noise is estimated over: long enough for a stable MAD, short enough to
/// follow a host that became noisy.
pub const STABILITY_RUNS: usize = 30;

/// How much a series' figures can be trusted, from its robust CV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// CV ≤ 2 %: a 5 % change is found within a few nights.
    Steady,
    /// CV ≤ 5 %: changes of 10 % and more are found.
    Fair,
    /// CV > 5 %, or more than a quarter of the recent runs disturbed.
    Noisy,
    /// Too few undisturbed runs to tell (fewer than 5).
    Unknown,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Steady => "steady",
            Grade::Fair => "fair",
            Grade::Noisy => "noisy",
            Grade::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stability {
    #[serde(flatten)]
    pub key: SeriesKey,
    pub higher_is_better: bool,
    /// Runs looked at (the last `STABILITY_RUNS`), disturbed ones included.
    pub runs: usize,
    pub disturbed_share: f64,
    /// σ̂ / |median| of the undisturbed recent runs.
    pub robust_cv: Option<f64>,
    pub grade: Grade,
}

/// The noise of the last [`STABILITY_RUNS`] runs (disturbed ones are missing nights), when at
/// least 5 of them are undisturbed: what `stability` grades and `trends` scales deviations by.
pub fn recent_noise_cv(clean: &[f64]) -> Option<f64> {
    let recent = &clean[clean.len().saturating_sub(STABILITY_RUNS)..];
    let quiet = recent.iter().filter(|v| v.is_finite()).count();
    if quiet >= 5 { noise_cv(recent) } else { None }
}

pub fn stability_of(series: &NightlySeries) -> Stability {
    let start = series.len().saturating_sub(STABILITY_RUNS);
    let runs = series.len() - start;
    let disturbed = series.disturbed[start..].iter().filter(|&&d| d).count();
    let robust_cv = recent_noise_cv(&series.clean_values());
    let disturbed_share = if runs == 0 { 0.0 } else { disturbed as f64 / runs as f64 };
    let grade = match robust_cv {
        // A host busy through most of its recent runs is noisy, whatever the few quiet ones say.
        _ if runs >= 5 && disturbed_share > 0.25 => Grade::Noisy,
        None => Grade::Unknown,
        Some(cv) if cv <= 0.02 => Grade::Steady,
        Some(cv) if cv <= 0.05 => Grade::Fair,
        Some(_) => Grade::Noisy,
    };
    Stability {
        key: series.key.clone(),
        higher_is_better: series.higher_is_better,
        runs,
        disturbed_share,
        robust_cv,
        grade,
    }
}

pub fn stability(series: &[NightlySeries]) -> Vec<Stability> {
    series.iter().map(stability_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    #[test]
    fn grades_follow_the_noise_and_the_disturbed_share() {
        let wobble = |amp: f64| {
            (0..40).map(|i| 100.0 * (1.0 + amp * [1.0, -1.0, 0.5, -0.5][i % 4])).collect::<Vec<_>>()
        };
        let steady = stability_of(&series(&wobble(0.005), &[]));
        assert_eq!((steady.runs, steady.grade), (30, Grade::Steady), "{steady:?}");
        let cv = steady.robust_cv.unwrap();
        assert!((0.002..0.02).contains(&cv), "{cv}");
        assert_eq!(stability_of(&series(&wobble(0.03), &[])).grade, Grade::Fair);
        assert_eq!(stability_of(&series(&wobble(0.1), &[])).grade, Grade::Noisy);
        // A third of the recent runs disturbed: noisy, whatever the quiet runs say.
        let disturbed: Vec<usize> = (10..40).step_by(3).collect();
        let s = stability_of(&series(&wobble(0.005), &disturbed));
        assert_eq!(s.grade, Grade::Noisy);
        assert!((s.disturbed_share - 10.0 / 30.0).abs() < 1e-12);
        // A level shift does not count as noise.
        let mut shifted = wobble(0.005);
        shifted[25..].iter_mut().for_each(|v| *v *= 1.3);
        assert_eq!(stability_of(&series(&shifted, &[])).grade, Grade::Steady);
        assert_eq!(stability_of(&series(&[1.0, 2.0, 3.0], &[])).grade, Grade::Unknown);
        // Every recent run disturbed: no noise figure, but a noisy host, not an unknown one.
        let all: Vec<usize> = (0..40).collect();
        let s = stability_of(&series(&wobble(0.005), &all));
        assert_eq!((s.robust_cv, s.grade), (None, Grade::Noisy));
    }
}
