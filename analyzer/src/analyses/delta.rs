//! `delta`: before vs after an event (an upgrade), per host × metric and rolled up per metric
//! over the fleet. The statistics are in [`super::delta_stats`]; this module picks the nights.
//!
//! - **The event** is one time for every host (`--event 2026-06-01`), or per host the first run
//!   a selector matches (`--event tag.upgrade=kernel-6.8`: the run the upgrade tagged); or two
//!   selectors name the runs of each side (`--before`, `--after`).
//! - **Nights**: the last `nights` undisturbed runs before the event and the first `nights` at
//!   or after it (7 each by default), so a long window does not mix in unrelated changes.
//! - **Noise**: the series' robust CV over up to 180 undisturbed runs before the event (the
//!   detectors' estimate), when there are at least 14; it sets how wide an interval these
//!   nights can be expected to give, so "no change" is only said when a `min_effect` change
//!   would have shown. The estimate (the MAD of first differences, which steps and drifts do
//!   not move) is about 37 % efficient: over 60 runs it is off by about 15 % (one standard
//!   error, 1 / √(2 · 0.37 · n), a little more since neighbouring differences share a night),
//!   enough to call a 6 % change at 3 % noise "no change" now and then; over 180, about 9 %.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use super::changepoint::noise_cv;
use super::delta_stats::{Delta, DeltaOptions, FleetDelta, Verdict, delta_with_noise, rollup};
use crate::series::{NightlySeries, SeriesKey, last_finite};

/// Runs before the event the noise is estimated over (see the module documentation), and the
/// fewest that make an estimate.
const NOISE_RUNS: usize = 180;
const MIN_NOISE_RUNS: usize = 14;

/// Where each host's before and after sides are.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// Per host, the event's time (µs since the epoch): before is earlier, after at or later.
    At(BTreeMap<String, i64>),
    /// Per host, the start times of the runs of each side.
    Runs { before: BTreeMap<String, BTreeSet<i64>>, after: BTreeMap<String, BTreeSet<i64>> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostDelta {
    #[serde(flatten)]
    pub key: SeriesKey,
    pub higher_is_better: bool,
    /// The night of the first run after the event.
    pub event_date: Option<NaiveDate>,
    pub before_nights: usize,
    pub after_nights: usize,
    pub before_median: Option<f64>,
    pub after_median: Option<f64>,
    /// after / before − 1 (Hodges–Lehmann), with its interval.
    pub change: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Verdict,
    /// Inconclusive only: nights per side that would settle it.
    pub nights_needed: Option<usize>,
    pub noise_cv: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRollup {
    pub probe: String,
    pub metric: String,
    pub params: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// Median over hosts of their change, with a sign-test interval, and the verdicts counted.
    #[serde(flatten)]
    pub fleet: FleetDelta,
}

/// The indices of each side's runs in one series (disturbed runs left out), and the index of
/// the first run after the event.
fn sides(series: &NightlySeries, split: &Split, nights: usize) -> Option<(Vec<usize>, Vec<usize>, usize)> {
    let host = &series.key.host;
    let quiet = |i: &usize| !series.disturbed[*i] && series.values[*i].is_finite();
    let (before, after): (Vec<usize>, Vec<usize>) = match split {
        Split::At(times) => {
            let t = *times.get(host)?;
            let first_after = series.at.partition_point(|&a| a < t);
            (
                (0..first_after).rev().filter(quiet).take(nights).collect(),
                (first_after..series.len()).filter(quiet).take(nights).collect(),
            )
        }
        Split::Runs { before, after } => {
            let (b, a) = (before.get(host)?, after.get(host)?);
            let after_idx: Vec<usize> = (0..series.len()).filter(|i| a.contains(&series.at[*i])).collect();
            let first_after = *after_idx.first()?;
            (
                (0..first_after)
                    .rev()
                    .filter(|i| b.contains(&series.at[*i]))
                    .filter(quiet)
                    .take(nights)
                    .collect(),
                after_idx.into_iter().filter(quiet).take(nights).collect(),
            )
        }
    };
    let first_after = *after.first()?;
    (!before.is_empty()).then_some((before, after, first_after))
}

pub fn host_delta(
    series: &NightlySeries,
    split: &Split,
    nights: usize,
    opts: &DeltaOptions,
) -> Option<HostDelta> {
    let (before, after, first_after) = sides(series, split, nights)?;
    let pick = |idx: &[usize]| idx.iter().map(|&i| series.values[i]).collect::<Vec<f64>>();
    let history = last_finite(&series.clean_values()[..first_after], NOISE_RUNS);
    let noise = if history.len() >= MIN_NOISE_RUNS { noise_cv(&history) } else { None };
    let d: Delta = delta_with_noise(&pick(&before), &pick(&after), series.higher_is_better, noise, opts);
    Some(HostDelta {
        key: series.key.clone(),
        higher_is_better: series.higher_is_better,
        event_date: Some(series.night(first_after)),
        before_nights: d.before_nights,
        after_nights: d.after_nights,
        before_median: d.before_median,
        after_median: d.after_median,
        change: d.change,
        ci_low: d.ci_low,
        ci_high: d.ci_high,
        verdict: d.verdict,
        nights_needed: d.nights_needed,
        noise_cv: noise,
    })
}

/// Every series' delta, and the roll-up per metric (sorted by probe, metric, params, unit).
pub fn deltas(
    series: &[NightlySeries],
    split: &Split,
    nights: usize,
    opts: &DeltaOptions,
) -> (Vec<HostDelta>, Vec<MetricRollup>) {
    let hosts: Vec<HostDelta> = series.iter().filter_map(|s| host_delta(s, split, nights, opts)).collect();
    let mut groups: BTreeMap<(&str, &str, &str, &str), Vec<&HostDelta>> = BTreeMap::new();
    for h in &hosts {
        let k = &h.key;
        groups.entry((&k.probe, &k.metric, &k.params, &k.unit)).or_default().push(h);
    }
    let rollups = groups
        .into_iter()
        .map(|((probe, metric, params, unit), members)| {
            let hib = members[0].higher_is_better;
            let changes: Vec<(f64, Verdict)> =
                members.iter().map(|h| (h.change.unwrap_or(f64::NAN), h.verdict)).collect();
            MetricRollup {
                probe: probe.into(),
                metric: metric.into(),
                params: params.into(),
                unit: unit.into(),
                higher_is_better: hib,
                fleet: rollup(&changes, hib, opts),
            }
        })
        .collect();
    (hosts, rollups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn wobble(i: usize) -> f64 {
        1.0 + 0.01 * [0.3, -0.8, 1.0, -0.2, 0.6, -1.0, 0.1][i % 7]
    }

    #[test]
    fn an_upgrade_that_helps_is_improved_and_one_that_does_nothing_is_no_change() {
        let better = series(
            &(0..40).map(|i| 100.0 * if i < 30 { 1.0 } else { 1.1 } * wobble(i)).collect::<Vec<_>>(),
            &[],
        );
        let t = better.at[30];
        let split = Split::At(BTreeMap::from([("db-01".to_string(), t)]));
        let d = host_delta(&better, &split, 7, &DeltaOptions::default()).unwrap();
        assert_eq!((d.verdict, d.before_nights, d.after_nights), (Verdict::Improved, 7, 7), "{d:?}");
        assert_eq!(d.event_date, Some(better.night(30)));
        assert!((d.change.unwrap() - 0.1).abs() < 0.01);
        assert!(d.noise_cv.unwrap() < 0.02);
        let flat = series(&(0..40).map(|i| 100.0 * wobble(i)).collect::<Vec<_>>(), &[33]);
        let d = host_delta(&flat, &split, 7, &DeltaOptions::default()).unwrap();
        assert_eq!(d.verdict, Verdict::NoChange, "{d:?}");
        // The disturbed night is left out and the side takes the next one instead.
        assert_eq!(d.after_nights, 7);
        // A host without the event is not in the delta.
        assert!(host_delta(&flat, &Split::At(BTreeMap::new()), 7, &DeltaOptions::default()).is_none());
    }

    #[test]
    fn selectors_pick_the_runs_of_each_side_and_the_fleet_rolls_up() {
        let mut fleet = Vec::new();
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        for h in 0..8 {
            let mut s = series(
                &(0..30).map(|i| 100.0 * if i < 20 { 1.0 } else { 0.8 } * wobble(i + h)).collect::<Vec<_>>(),
                &[],
            );
            s.key.host = format!("web-{h}");
            // Runs 0–9 are another experiment: not on either side.
            before.insert(s.key.host.clone(), s.at[10..20].iter().copied().collect());
            after.insert(s.key.host.clone(), s.at[20..].iter().copied().collect());
            fleet.push(s);
        }
        let (hosts, rollups) = deltas(&fleet, &Split::Runs { before, after }, 7, &DeltaOptions::default());
        assert_eq!(hosts.len(), 8);
        // The noise comes from every run before the event, on a side or not.
        assert!(hosts.iter().all(|h| h.verdict == Verdict::Regressed && h.noise_cv.is_some()), "{hosts:?}");
        assert_eq!(rollups.len(), 1);
        let r = &rollups[0];
        assert_eq!((r.fleet.hosts, r.fleet.regressed, r.fleet.verdict), (8, 8, Verdict::Regressed));
        assert!((r.fleet.median_change.unwrap() + 0.2).abs() < 0.01);
    }
}
