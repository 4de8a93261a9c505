//! `trends`: per host × metric, a robust baseline, the slope per 30 days with its interval, and
//! the latest run's deviation from the baseline.
//!
//! - **Baseline**: the median of the (up to) 7 undisturbed runs before the latest, so a bad
//!   latest night does not dilute its own baseline.
//! - **Slope**: Theil–Sen on ln(value) against days, with Sen's interval (95 %), over the runs
//!   since the last change point (a step is not a trend) and at most the last `TREND_RUNS`;
//!   reported as a relative change per 30 days.
//! - **Deviation**: latest / baseline − 1, and the same in noise units (the robust CV the
//!   detectors use), so "3 % slower" on a 0.5 %-noise metric stands out from the same on a
//!   5 %-noise one.

use chrono::NaiveDate;
use serde::Serialize;

use super::changepoint::{Options, detect};
use super::trend_stats::{SlopeFit, per_30_days, theil_sen};
use crate::series::{NightlySeries, SeriesKey, finite_median, last_finite};

pub const BASELINE_RUNS: usize = 7;
/// The longest history a slope is fitted over: about a quarter.
pub const TREND_RUNS: usize = 90;
/// The fewest undisturbed runs a slope is fitted on.
pub const MIN_TREND_RUNS: usize = 10;
/// Two-sided 95 % normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    #[serde(flatten)]
    pub key: SeriesKey,
    pub higher_is_better: bool,
    pub runs: usize,
    pub latest_date: NaiveDate,
    pub latest: f64,
    /// A disturbed latest run's deviation says little about the host.
    pub latest_disturbed: bool,
    pub baseline: Option<f64>,
    pub deviation: Option<f64>,
    /// Deviation in units of the series' robust CV.
    pub deviation_sigmas: Option<f64>,
    pub robust_cv: Option<f64>,
    /// First night of the fitted window, and its undisturbed runs.
    pub fit_since: Option<NaiveDate>,
    pub fit_runs: usize,
    /// Relative change per 30 days, with its 95 % interval.
    pub slope_per_30d: Option<f64>,
    pub slope_low: Option<f64>,
    pub slope_high: Option<f64>,
    /// The interval excludes 0.
    pub significant: bool,
    /// A significant slope in the metric's bad direction.
    pub worsening: bool,
}

/// Where the current regime starts: after the last change point, within the last `TREND_RUNS`.
pub fn regime_start(clean: &[f64], opts: &Options) -> usize {
    regime_start_after(clean.len(), detect(clean, opts).last().map(|c| c.index))
}

/// [`regime_start`] given the last change point's index.
pub fn regime_start_after(len: usize, last_change: Option<usize>) -> usize {
    last_change.unwrap_or(0).max(len.saturating_sub(TREND_RUNS))
}

/// Theil–Sen on ln(value) of the runs from `start`, with the series' day numbers.
pub fn log_fit(
    series: &NightlySeries,
    clean: &[f64],
    start: usize,
) -> Option<(SlopeFit, Vec<f64>, Vec<f64>)> {
    let days = series.days();
    let (x, y): (Vec<f64>, Vec<f64>) = (start..clean.len())
        .filter(|&i| clean[i].is_finite() && clean[i] > 0.0)
        .map(|i| (days[i], clean[i].ln()))
        .unzip();
    if x.len() < MIN_TREND_RUNS {
        return None;
    }
    theil_sen(&x, &y, Z95).map(|fit| (fit, x, y))
}

pub fn trend_of(series: &NightlySeries, opts: &Options) -> Option<Trend> {
    let clean = series.clean_values();
    let start = regime_start(&clean, opts);
    trend_since(series, &clean, start)
}

/// The trend with its fit starting at run `start` (see [`regime_start`]), for callers that ran
/// the detector already.
pub fn trend_since(series: &NightlySeries, clean: &[f64], start: usize) -> Option<Trend> {
    let n = series.len();
    let last = n.checked_sub(1)?;
    let baseline = finite_median(&last_finite(&clean[..last], BASELINE_RUNS));
    let latest = series.values[last];
    let deviation = baseline.filter(|b| *b != 0.0).map(|b| latest / b - 1.0);
    let robust_cv = super::stability::recent_noise_cv(clean);
    let deviation_sigmas = deviation.zip(robust_cv.filter(|c| *c > 0.0)).map(|(d, c)| d / c);
    let fit = log_fit(series, clean, start);
    let (slope, low, high, significant, fit_runs) = match &fit {
        Some((f, x, _)) => (
            Some(per_30_days(f.slope)),
            Some(per_30_days(f.slope_low)),
            Some(per_30_days(f.slope_high)),
            f.significant(),
            x.len(),
        ),
        None => (None, None, None, false, 0),
    };
    let worsening =
        significant && slope.is_some_and(|s| if series.higher_is_better { s < 0.0 } else { s > 0.0 });
    Some(Trend {
        key: series.key.clone(),
        higher_is_better: series.higher_is_better,
        runs: n,
        latest_date: series.night(last),
        latest,
        latest_disturbed: series.disturbed[last],
        baseline,
        deviation,
        deviation_sigmas,
        robust_cv,
        fit_since: fit.as_ref().map(|_| series.night(start)),
        fit_runs,
        slope_per_30d: slope,
        slope_low: low,
        slope_high: high,
        significant,
        worsening,
    })
}

pub fn trends(series: &[NightlySeries], opts: &Options) -> Vec<Trend> {
    series.iter().filter_map(|s| trend_of(s, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn wobble(i: usize) -> f64 {
        1.0 + 0.005 * [0.3, -0.8, 1.0, -0.2, 0.6, -1.0, 0.1][i % 7]
    }

    #[test]
    fn a_slow_decline_is_a_worsening_slope_of_the_right_size() {
        // −6 % over 60 nights: −3 % per 30 days.
        let values: Vec<f64> = (0..60).map(|i| 1000.0 * (1.0 - 0.001 * i as f64) * wobble(i)).collect();
        let t = trend_of(&series(&values, &[]), &Options::default()).unwrap();
        let slope = t.slope_per_30d.unwrap();
        assert!((slope + 0.03).abs() < 0.004, "{slope}");
        assert!(t.slope_low.unwrap() <= slope && slope <= t.slope_high.unwrap());
        assert!(t.significant && t.worsening, "{t:?}");
        assert_eq!(t.fit_runs, 60);
    }

    #[test]
    fn a_step_is_not_a_trend_and_the_latest_deviation_is_in_noise_units() {
        let mut values: Vec<f64> =
            (0..60).map(|i| 1000.0 * if i < 30 { 1.0 } else { 0.8 } * wobble(i)).collect();
        values[59] = 800.0 * 0.9;
        let t = trend_of(&series(&values, &[]), &Options::default()).unwrap();
        assert_eq!(t.fit_since, Some(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()), "{t:?}");
        assert!(!t.significant, "{t:?}");
        let dev = t.deviation.unwrap();
        assert!((dev + 0.1).abs() < 0.01, "{dev}");
        assert!(t.deviation_sigmas.unwrap() < -5.0, "{t:?}");
    }

    #[test]
    fn short_and_flat_series() {
        let t = trend_of(&series(&[5.0, 5.0, 5.0], &[]), &Options::default()).unwrap();
        assert_eq!((t.slope_per_30d, t.fit_runs, t.baseline), (None, 0, Some(5.0)));
        assert_eq!(t.deviation, Some(0.0));
        assert!(trend_of(&series(&[], &[]), &Options::default()).is_none());
        let flat: Vec<f64> = (0..40).map(|i| 100.0 * wobble(i)).collect();
        let t = trend_of(&series(&flat, &[39]), &Options::default()).unwrap();
        assert!(!t.significant && t.latest_disturbed);
    }
}
