//! `evaluate`: the change point detector scored against a labelled history, so users can trust
//! or tune it on their own fleet.
//!
//! - **Labels**: known changes (host, `probe.metric`, optionally params, the date of the first
//!   night at the new level, optionally the magnitude), from a CSV with a header or a JSON array;
//!   a synthetic fleet's `ground_truth.json` works as is (its steps and upgrades with an effect
//!   are the changes, its drifts are neutral zones: a change point inside one is neither right
//!   nor wrong).
//! - **Looking back**: the detector runs once over the whole history; a reported change within
//!   `tolerance` nights (3) of a label of the same series finds it (each report finds at most one
//!   label, nearest first). Precision is over every report in the dataset (the labels are taken
//!   as complete), recall over the labels of series in the dataset.
//! - **Night by night**: for each label, the detector runs on the last 365 runs up to each night
//!   from the label's date on, as the nightly job would; the delay is the nights until the change is
//!   first reported (within the tolerance), up to `MAX_DELAY`.
//! - **False alarms**: reports matching no label and outside every neutral zone, per 1,000
//!   series-years (a series' years are its span in nights / 365).
//! - **Headline** (and [`Evaluation::scoped`]): the same scores over the changes a goal is
//!   about, steps of at least 5 % on series at CV ≤ 2 %. A wrong report belongs to the change it
//!   is nearest to, within [`ATTRIBUTION_NIGHTS`]: a 2.5 % step placed 6 nights off is a miss and
//!   a wrong report of the small steps, not of the large ones. A wrong report near no change is
//!   a false alarm and counts against every scope its series' noise is in.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::changepoint::{Options, detect, noise_cv};
use crate::nightly::HISTORY_RUNS;
use crate::series::NightlySeries;

pub const TOLERANCE_NIGHTS: i64 = 3;
/// Nights after a label the night-by-night run waits for it.
pub const MAX_DELAY: usize = 30;
/// A wrong report within this many nights of a label is that change, placed too far off.
pub const ATTRIBUTION_NIGHTS: i64 = 30;
/// The headline's scope: steps of at least this |magnitude| …
pub const HEADLINE_MIN_STEP: f64 = 0.05;
/// … on series at most this noisy (robust CV).
pub const HEADLINE_MAX_CV: f64 = 0.02;
/// Step-size buckets of the report (upper bounds of |magnitude|).
const BUCKETS: [(f64, &str); 5] =
    [(0.05, "<5%"), (0.075, "5%"), (0.15, "10%"), (0.3, "20%"), (f64::INFINITY, ">30%")];
/// Noise buckets (upper bounds of the series' robust CV).
const NOISE: [(f64, &str); 4] = [(0.01, "cv≤1%"), (0.02, "cv≤2%"), (0.05, "cv≤5%"), (f64::INFINITY, "cv>5%")];

/// A known change, or (with `end`) a neutral zone such as a slow drift.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub host: String,
    pub probe: String,
    pub metric: String,
    pub params: Option<String>,
    pub date: NaiveDate,
    pub end: Option<NaiveDate>,
    pub magnitude: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Deserialize)]
struct JsonLabel {
    host: String,
    #[serde(default)]
    probe: Option<String>,
    metric: String,
    #[serde(default)]
    params: Option<String>,
    date: NaiveDate,
    #[serde(default)]
    end_date: Option<NaiveDate>,
    #[serde(default)]
    magnitude: Option<f64>,
    #[serde(default)]
    kind: Option<String>,
}

/// `probe.metric` split at the last dot of the probe (`storage.rand4k.read_iops`).
fn split_metric(probe: Option<String>, metric: &str) -> Option<(String, String)> {
    match probe {
        Some(p) => Some((p, metric.to_string())),
        None => {
            let (p, m) = metric.rsplit_once('.')?;
            (!p.is_empty() && !m.is_empty()).then(|| (p.to_string(), m.to_string()))
        }
    }
}

impl JsonLabel {
    /// `None`: not a change to score (an outlier host, an upgrade without an effect).
    fn into_label(self, origin: &str, at: usize) -> Result<Option<Label>, LabelError> {
        let kind = self.kind.as_deref().unwrap_or("step");
        let (probe, metric) = split_metric(self.probe, &self.metric).ok_or_else(|| LabelError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "label {at}: metric {:?} is not PROBE.METRIC (or give probe separately)",
                self.metric
            ),
        })?;
        let end = match kind {
            "drift" => Some(self.end_date.unwrap_or(self.date)),
            "outlier_host" => return Ok(None),
            _ if self.magnitude == Some(0.0) => return Ok(None),
            _ => None,
        };
        Ok(Some(Label {
            host: self.host,
            probe,
            metric,
            params: self.params,
            date: self.date,
            end,
            magnitude: self.magnitude,
        }))
    }
}

/// Labels from a CSV (header `host,metric,date` and optionally `params`, `magnitude`; a cell
/// with commas in double quotes), a JSON array of such objects, or a `ground_truth.json`.
pub fn parse_labels(text: &str, origin: &str) -> Result<Vec<Label>, LabelError> {
    let err = |message: String| LabelError::Invalid { origin: origin.to_string(), message };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let items = match value {
            serde_json::Value::Object(mut o) => o.remove("events").ok_or_else(|| {
                err("a JSON object must hold an \"events\" array (ground_truth.json)".into())
            })?,
            v => v,
        };
        let items: Vec<serde_json::Value> =
            serde_json::from_value(items).map_err(|e| err(format!("not an array of labels: {e}")))?;
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let label: JsonLabel =
                serde_json::from_value(item).map_err(|e| err(format!("label {}: {e}", i + 1)))?;
            out.extend(label.into_label(origin, i + 1)?);
        }
        return Ok(out);
    }
    // Quoted cells as CSV has them: params hold commas ("size=1GiB,qd=32").
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let columns: Vec<String> =
        reader.headers().map_err(|e| err(format!("line 1: {e}")))?.iter().map(str::to_string).collect();
    let find = |name: &str| columns.iter().position(|c| c == name);
    let (Some(h), Some(m), Some(d)) = (find("host"), find("metric"), find("date")) else {
        return Err(err(format!(
            "line 1: the header must name host, metric and date (found {:?})",
            columns.join(",")
        )));
    };
    let (p, g) = (find("params"), find("magnitude"));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| err(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let line_err = |what: String| err(format!("line {line}: {what}"));
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |i: usize| record.get(i).unwrap_or("");
        let (probe, metric) = split_metric(None, cell(m))
            .ok_or_else(|| line_err(format!("metric {:?} is not PROBE.METRIC", cell(m))))?;
        let date = NaiveDate::parse_from_str(cell(d), "%Y-%m-%d")
            .map_err(|_| line_err(format!("date {:?} is not YYYY-MM-DD", cell(d))))?;
        let magnitude = match g.map(cell).filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(s.parse::<f64>().map_err(|_| line_err(format!("magnitude {s:?} is not a number")))?)
            }
            None => None,
        };
        if cell(h).is_empty() {
            return Err(line_err("host is empty".into()));
        }
        let params = p.map(cell).filter(|s| !s.is_empty()).map(str::to_string);
        out.push(Label { host: cell(h).to_string(), probe, metric, params, date, end: None, magnitude });
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    pub labels: usize,
    pub found: usize,
    pub recall: Option<f64>,
    /// Nights from the change to its first report, night by night; median and 90th percentile
    /// over the labels found within `MAX_DELAY`.
    pub median_delay: Option<f64>,
    pub p90_delay: Option<f64>,
    pub found_night_by_night: usize,
}

/// How many of the reports on series of one noise level were right.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Precision {
    pub true_reports: usize,
    pub false_reports: usize,
    /// Of the false reports: those nearest a label within [`ATTRIBUTION_NIGHTS`] (a change
    /// placed too far off, or reported twice), and those near none (false alarms).
    pub misplaced_reports: usize,
    pub false_alarms: usize,
    pub precision: Option<f64>,
}

/// The scores over the labels of at least `min_step` on series at CV ≤ `max_cv`, and over the
/// reports that belong to them (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scoped {
    pub min_step: f64,
    pub max_cv: f64,
    pub labels: usize,
    pub found: usize,
    pub recall: Option<f64>,
    pub true_reports: usize,
    /// Wrong reports nearest to a label of the scope: the change, placed too far off.
    pub misplaced_reports: usize,
    /// Wrong reports on series of the scope's noise near no label at all.
    pub false_alarms: usize,
    pub precision: Option<f64>,
    pub median_delay: Option<f64>,
    pub p90_delay: Option<f64>,
    pub found_night_by_night: usize,
    /// The delays behind the two figures, so scopes of several evaluations can be pooled.
    #[serde(skip)]
    pub delays: Vec<f64>,
}

/// What became of one report.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Found this label.
    Right(usize),
    /// Nearest to this label, but too far off to find it.
    Misplaced(usize),
    /// Near no label.
    FalseAlarm,
    /// In a neutral zone.
    Neutral,
}

#[derive(Debug, Clone, PartialEq)]
struct Report {
    cv: Option<f64>,
    fate: Fate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub series: usize,
    pub series_years: f64,
    pub tolerance_nights: i64,
    pub reported: usize,
    pub true_reports: usize,
    pub neutral_reports: usize,
    pub false_reports: usize,
    pub precision: Option<f64>,
    pub false_per_1000_series_years: Option<f64>,
    #[serde(flatten)]
    pub overall: Score,
    /// By |magnitude| where the labels give one.
    pub by_size: BTreeMap<&'static str, Score>,
    /// By the series' noise (its robust CV, the detector's own estimate).
    pub by_noise: BTreeMap<&'static str, Score>,
    /// Precision over the reports on series of each noise level (neutral ones left out): how
    /// far an alarm on a steady series can be trusted.
    pub precision_by_noise: BTreeMap<&'static str, Precision>,
    /// By size and noise: "10% cv≤2%".
    pub by_size_and_noise: BTreeMap<String, Score>,
    /// Reports on series without any label or neutral zone: what an operator would get as
    /// pure false alarms.
    pub quiet_series: usize,
    pub quiet_series_years: f64,
    pub quiet_reports: usize,
    pub quiet_per_1000_series_years: Option<f64>,
    /// Labels whose series is not in the dataset (another window, a typo).
    pub labels_without_series: usize,
    /// [`Evaluation::scoped`], by default at [`HEADLINE_MIN_STEP`] and [`HEADLINE_MAX_CV`]
    /// (`evaluate --headline-step/--headline-cv` set another scope).
    pub headline: Scoped,
    #[serde(skip)]
    outcomes: Vec<LabelOutcome>,
    #[serde(skip)]
    reports: Vec<Report>,
}

impl Evaluation {
    /// Recall, precision and delays over the labels of at least `min_step` (|magnitude|; labels
    /// without one are left out, and so are the wrong reports nearest to them) on series at
    /// CV ≤ `max_cv`, and over the reports that belong to them: the ones that found them and
    /// the wrong ones nearest to them (placed too far off, or a second report of a change
    /// already found), plus the false alarms on series at CV ≤ `max_cv`. A label without
    /// params names several series: it is in the scope by its quietest, found when any of them
    /// reports it, and every report of it counts, as in the overall scores.
    pub fn scoped(&self, min_step: f64, max_cv: f64) -> Scoped {
        let quiet = |cv: Option<f64>| cv.is_some_and(|c| c <= max_cv);
        let inside = |o: &LabelOutcome| {
            o.point && o.series > 0 && o.magnitude.is_some_and(|m| m.abs() >= min_step) && quiet(o.cv)
        };
        let mine: Vec<bool> = self.outcomes.iter().map(inside).collect();
        let count = |f: &dyn Fn(&Report) -> bool| self.reports.iter().filter(|r| f(r)).count();
        let true_reports = count(&|r| matches!(r.fate, Fate::Right(l) if mine[l]));
        let misplaced_reports = count(&|r| matches!(r.fate, Fate::Misplaced(l) if mine[l]));
        let false_alarms = count(&|r| quiet(r.cv) && r.fate == Fate::FalseAlarm);
        let labels = mine.iter().filter(|&&m| m).count();
        let found = self.outcomes.iter().zip(&mine).filter(|(o, m)| **m && o.found).count();
        let mut delays: Vec<f64> = self
            .outcomes
            .iter()
            .zip(&mine)
            .filter(|(_, m)| **m)
            .filter_map(|(o, _)| o.delay)
            .map(|d| d as f64)
            .collect();
        delays.sort_by(f64::total_cmp);
        Scoped {
            min_step,
            max_cv,
            labels,
            found,
            recall: share(found, labels),
            true_reports,
            misplaced_reports,
            false_alarms,
            precision: share(true_reports, true_reports + misplaced_reports + false_alarms),
            median_delay: quantile(&delays, 0.5),
            p90_delay: quantile(&delays, 0.9),
            found_night_by_night: delays.len(),
            delays,
        }
    }
}

/// Where a bucket name (`"5%"`, `"cv≤2%"` or a cell, `"5% cv≤2%"`) sorts: by step size, then
/// by noise, smallest and quietest first (the maps' own order is the names' text order).
pub fn bucket_order(name: &str) -> (usize, usize) {
    let rank = |names: &mut dyn Iterator<Item = &'static str>| {
        let names: Vec<&str> = names.collect();
        let at = name.split(' ').find_map(|part| names.iter().position(|n| *n == part));
        at.unwrap_or(names.len())
    };
    (rank(&mut BUCKETS.iter().map(|(_, n)| *n)), rank(&mut NOISE.iter().map(|(_, n)| *n)))
}

fn bucket(magnitude: f64) -> &'static str {
    BUCKETS.iter().find(|(b, _)| magnitude.abs() < *b).map_or(">30%", |(_, n)| n)
}

fn noise_bucket(cv: Option<f64>) -> &'static str {
    let cv = cv.unwrap_or(f64::INFINITY);
    NOISE.iter().find(|(b, _)| cv <= *b).map_or("cv>5%", |(_, n)| n)
}

/// `part / whole`; `None` of nothing.
fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The `q` quantile of sorted values (the nearest rank); `None` of none.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// Nights until a change near `date` is first reported when the detector runs each night over
/// the nightly job's window (the last [`HISTORY_RUNS`] runs).
fn delay(series: &NightlySeries, clean: &[f64], date: NaiveDate, opts: &Options) -> Option<usize> {
    let first = (0..series.len()).find(|&i| series.night(i) >= date)?;
    for t in first..series.len().min(first + MAX_DELAY + 1) {
        let start = (t + 1).saturating_sub(HISTORY_RUNS);
        let near = detect(&clean[start..=t], opts)
            .iter()
            .any(|c| (series.night(start + c.index) - date).num_days().abs() <= TOLERANCE_NIGHTS);
        if near {
            return Some((series.night(t) - date).num_days().max(0) as usize);
        }
    }
    None
}

/// What the series a label names made of it. A label without params names every series of
/// its metric: it is one change, found when any of them reports it.
#[derive(Debug, Clone, Default, PartialEq)]
struct LabelOutcome {
    /// A change at a night, not a neutral zone.
    point: bool,
    magnitude: Option<f64>,
    series: usize,
    found: bool,
    delay: Option<usize>,
    /// The quietest of its series' noise: a miss counts where the change was easiest to see.
    cv: Option<f64>,
}

pub fn evaluate(series: &[NightlySeries], labels: &[Label], opts: &Options) -> Evaluation {
    let mut by_series: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_series.entry((&l.host, &l.probe, &l.metric)).or_default().push(i);
    }
    let mut eval = Evaluation {
        series: series.len(),
        series_years: 0.0,
        tolerance_nights: TOLERANCE_NIGHTS,
        reported: 0,
        true_reports: 0,
        neutral_reports: 0,
        false_reports: 0,
        precision: None,
        false_per_1000_series_years: None,
        overall: Score::default(),
        by_size: BTreeMap::new(),
        by_noise: BTreeMap::new(),
        precision_by_noise: BTreeMap::new(),
        by_size_and_noise: BTreeMap::new(),
        quiet_series: 0,
        quiet_series_years: 0.0,
        quiet_reports: 0,
        quiet_per_1000_series_years: None,
        labels_without_series: 0,
        // Filled in last, from the outcomes and reports.
        headline: Scoped::default(),
        outcomes: Vec::new(),
        reports: Vec::new(),
    };
    let mut outcomes: Vec<LabelOutcome> = labels
        .iter()
        .map(|l| LabelOutcome { point: l.end.is_none(), magnitude: l.magnitude, ..LabelOutcome::default() })
        .collect();
    for s in series {
        let years = match (s.at.first(), s.at.last()) {
            (Some(&a), Some(&b)) => ((b - a) as f64 / 86_400e6 + 1.0) / 365.0,
            _ => 0.0,
        };
        eval.series_years += years;
        let k = &s.key;
        let mine: Vec<usize> = by_series
            .get(&(k.host.as_str(), k.probe.as_str(), k.metric.as_str()))
            .map(|ls| {
                ls.iter()
                    .copied()
                    .filter(|&l| labels[l].params.as_deref().is_none_or(|p| p == k.params))
                    .collect()
            })
            .unwrap_or_default();
        let clean = s.clean_values();
        let cv = noise_cv(&clean);
        let reports: Vec<NaiveDate> = detect(&clean, opts).iter().map(|c| s.night(c.index)).collect();
        eval.reported += reports.len();
        if mine.is_empty() {
            eval.quiet_series += 1;
            eval.quiet_series_years += years;
            eval.quiet_reports += reports.len();
        }
        let mut used: Vec<Option<usize>> = vec![None; reports.len()];
        let days = |a: NaiveDate, b: NaiveDate| (a - b).num_days();
        for &li in mine.iter().filter(|&&l| labels[l].end.is_none()) {
            let l = &labels[li];
            let nearest = (0..reports.len())
                .filter(|&i| used[i].is_none() && days(reports[i], l.date).abs() <= TOLERANCE_NIGHTS)
                .min_by_key(|&i| days(reports[i], l.date).abs());
            if let Some(i) = nearest {
                used[i] = Some(li);
            }
            let o = &mut outcomes[li];
            o.series += 1;
            o.found |= nearest.is_some();
            o.cv = match (o.cv, cv) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(d) = delay(s, &clean, l.date, opts) {
                o.delay = Some(o.delay.map_or(d, |e| e.min(d)));
            }
        }
        let by_noise = eval.precision_by_noise.entry(noise_bucket(cv)).or_default();
        for (i, r) in reports.iter().enumerate() {
            let fate = if let Some(li) = used[i] {
                eval.true_reports += 1;
                by_noise.true_reports += 1;
                Fate::Right(li)
            } else if mine.iter().map(|&l| &labels[l]).any(|l| {
                l.end.is_some_and(|end| {
                    days(*r, l.date) >= -TOLERANCE_NIGHTS && days(*r, end) <= TOLERANCE_NIGHTS
                })
            }) {
                eval.neutral_reports += 1;
                Fate::Neutral
            } else {
                eval.false_reports += 1;
                by_noise.false_reports += 1;
                let fate = mine
                    .iter()
                    .copied()
                    .filter(|&l| {
                        labels[l].end.is_none() && days(*r, labels[l].date).abs() <= ATTRIBUTION_NIGHTS
                    })
                    .min_by_key(|&l| days(*r, labels[l].date).abs())
                    .map_or(Fate::FalseAlarm, Fate::Misplaced);
                if fate == Fate::FalseAlarm {
                    by_noise.false_alarms += 1;
                } else {
                    by_noise.misplaced_reports += 1;
                }
                fate
            };
            eval.reports.push(Report { cv, fate });
        }
    }
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (l, o) in labels.iter().zip(&outcomes).filter(|(l, _)| l.end.is_none()) {
        if o.series == 0 {
            eval.labels_without_series += 1;
            continue;
        }
        let noise = noise_bucket(o.cv);
        let size = l.magnitude.map(bucket);
        let cell = size.map(|b| format!("{b} {noise}"));
        let scores = [
            Some(&mut eval.overall),
            size.map(|b| eval.by_size.entry(b).or_default()),
            Some(eval.by_noise.entry(noise).or_default()),
            cell.clone().map(|c| eval.by_size_and_noise.entry(c).or_default()),
        ];
        for score in scores.into_iter().flatten() {
            score.labels += 1;
            score.found += usize::from(o.found);
        }
        if let Some(d) = o.delay {
            let keys = [Some("all".to_string()), size.map(str::to_string), Some(noise.to_string()), cell];
            for key in keys.into_iter().flatten() {
                delays.entry(key).or_default().push(d as f64);
            }
        }
    }
    eval.precision = share(eval.true_reports, eval.true_reports + eval.false_reports);
    for p in eval.precision_by_noise.values_mut() {
        p.precision = share(p.true_reports, p.true_reports + p.false_reports);
    }
    eval.false_per_1000_series_years =
        (eval.series_years > 0.0).then(|| 1000.0 * eval.false_reports as f64 / eval.series_years);
    let finish = |score: &mut Score, d: Option<&mut Vec<f64>>| {
        score.recall = share(score.found, score.labels);
        if let Some(d) = d {
            d.sort_by(f64::total_cmp);
            score.found_night_by_night = d.len();
            score.median_delay = quantile(d, 0.5);
            score.p90_delay = quantile(d, 0.9);
        }
    };
    finish(&mut eval.overall, delays.get_mut("all"));
    for (name, score) in eval.by_size.iter_mut().chain(eval.by_noise.iter_mut()) {
        finish(score, delays.get_mut(*name));
    }
    for (name, score) in eval.by_size_and_noise.iter_mut() {
        finish(score, delays.get_mut(name));
    }
    eval.quiet_per_1000_series_years =
        (eval.quiet_series_years > 0.0).then(|| 1000.0 * eval.quiet_reports as f64 / eval.quiet_series_years);
    eval.outcomes = outcomes;
    eval.headline = eval.scoped(HEADLINE_MIN_STEP, HEADLINE_MAX_CV);
    eval
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(u64::from(d))
    }

    /// 80 nights at about 1 % noise with a 20 % step down at night 40.
    fn stepped_series() -> NightlySeries {
        let values: Vec<f64> = (0..80)
            .map(|i| {
                1000.0
                    * if i < 40 { 1.0 } else { 0.8 }
                    * (1.0 + 0.01 * [0.3, -0.8, 1.0, -0.2, 0.6, -1.0, 0.1][i % 7])
            })
            .collect();
        series(&values, &[])
    }

    /// A change of that series' metric on night `d`.
    fn label(d: u32, magnitude: f64) -> Label {
        Label {
            host: "db-01".into(),
            probe: "storage.rand4k".into(),
            metric: "read_iops".into(),
            params: None,
            date: day(d),
            end: None,
            magnitude: Some(magnitude),
        }
    }

    #[test]
    fn labels_parse_from_csv_json_and_ground_truth() {
        let csv = "host,metric,date,magnitude\ndb-01,storage.rand4k.read_iops,2026-02-10,-0.2\n";
        let l = parse_labels(csv, "l.csv").unwrap();
        assert_eq!(
            (l[0].probe.as_str(), l[0].metric.as_str(), l[0].magnitude),
            ("storage.rand4k", "read_iops", Some(-0.2))
        );
        let e = parse_labels("host,metric,date\ndb-01,storage.rand4k.read_iops,10/02/2026\n", "l.csv")
            .unwrap_err();
        assert!(e.to_string().contains("l.csv: line 2: date"), "{e}");
        assert!(parse_labels("host,date\n", "l.csv").unwrap_err().to_string().contains("line 1"));
        let truth = r#"{"events": [
            {"kind": "step", "host": "a", "probe": "cpu.flops", "metric": "peak_f64_1t", "params": "x=1", "date": "2026-02-01", "magnitude": 0.1},
            {"kind": "upgrade", "host": "a", "probe": "cpu.flops", "metric": "peak_f64_1t", "params": "x=1", "date": "2026-03-01", "magnitude": 0.0},
            {"kind": "drift", "host": "a", "probe": "cpu.flops", "metric": "peak_f64_1t", "params": "x=1", "date": "2026-04-01", "end_date": "2026-05-01", "magnitude": -0.1},
            {"kind": "outlier_host", "host": "b", "probe": "cpu.flops", "metric": "peak_f64_1t", "params": "x=1", "date": "2026-01-01", "magnitude": -0.2}
        ]}"#;
        let l = parse_labels(truth, "ground_truth.json").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].end, Some(NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()));
        let e = parse_labels(r#"[{"host": "a", "metric": "flops", "date": "2026-01-01"}]"#, "l.json")
            .unwrap_err();
        assert!(e.to_string().contains("label 1"), "{e}");
    }

    #[test]
    fn found_missed_false_and_delays_are_counted() {
        // A 20 % step at night 40, and a false label at night 20.
        let s = stepped_series();
        let e = evaluate(std::slice::from_ref(&s), &[label(41, -0.2)], &Options::default());
        assert_eq!((e.reported, e.true_reports, e.false_reports), (1, 1, 0));
        assert_eq!((e.overall.labels, e.overall.found, e.precision), (1, 1, Some(1.0)));
        let d = e.overall.median_delay.unwrap();
        assert!((0.0..=4.0).contains(&d), "{d}");
        assert_eq!(e.by_size["20%"].found, 1);
        let by_noise: Vec<&Precision> = e.precision_by_noise.values().collect();
        let right = Precision { true_reports: 1, precision: Some(1.0), ..Precision::default() };
        assert_eq!(by_noise, [&right]);
        // Labelled elsewhere: the label is missed and the report is false.
        let e = evaluate(std::slice::from_ref(&s), &[label(20, -0.05)], &Options::default());
        assert_eq!((e.overall.found, e.false_reports, e.precision), (0, 1, Some(0.0)));
        // 20 nights off: nearest that label, within 30 nights.
        assert!(e.precision_by_noise.values().all(|p| {
            (p.false_reports, p.misplaced_reports, p.false_alarms, p.precision) == (1, 1, 0, Some(0.0))
        }));
        assert!(e.false_per_1000_series_years.unwrap() > 1000.0);
        // Inside a neutral zone the report counts neither way.
        let zone = Label { end: Some(day(45)), ..label(35, -0.2) };
        let e = evaluate(std::slice::from_ref(&s), &[zone], &Options::default());
        assert_eq!((e.neutral_reports, e.false_reports, e.precision), (1, 0, None));
        // A label on a series the dataset does not have.
        let other = Label { host: "db-99".into(), ..label(41, -0.2) };
        assert_eq!(
            evaluate(std::slice::from_ref(&s), &[other], &Options::default()).labels_without_series,
            1
        );
        // A label without params names every series of its metric: one change, found once,
        // and the step in each series is a true report.
        let mut t = s.clone();
        t.key.params = "qd=32".into();
        let e = evaluate(&[s, t], &[label(41, -0.2)], &Options::default());
        assert_eq!((e.overall.labels, e.overall.found, e.labels_without_series), (1, 1, 0));
        assert_eq!((e.true_reports, e.false_reports), (2, 0));
    }

    #[test]
    fn a_wrong_report_belongs_to_the_change_it_is_nearest() {
        let s = stepped_series();
        let run = |labels: &[Label]| evaluate(std::slice::from_ref(&s), labels, &Options::default());
        let h = run(&[label(41, -0.2)]).headline;
        assert_eq!((h.labels, h.found, h.true_reports, h.precision), (1, 1, 1, Some(1.0)));
        assert!((0.0..=4.0).contains(&h.median_delay.unwrap()));
        // A small change 10 nights off: the report is its, placed too far off, and outside the
        // headline's scope; a wider scope sees it.
        let e = run(&[label(30, -0.03)]);
        assert_eq!((e.false_reports, e.precision), (1, Some(0.0)));
        let h = &e.headline;
        assert_eq!(
            (h.labels, h.true_reports, h.misplaced_reports, h.false_alarms, h.precision),
            (0, 0, 0, 0, None)
        );
        let wide = e.scoped(0.01, 1.0);
        assert_eq!((wide.labels, wide.misplaced_reports, wide.precision), (1, 1, Some(0.0)));
        // A large change 10 nights off: misplaced, in the scope.
        let h = run(&[label(30, -0.2)]).headline;
        assert_eq!((h.labels, h.found, h.misplaced_reports, h.false_alarms), (1, 0, 1, 0));
        // 35 nights from the only label: a false alarm, which every scope of its noise counts.
        let e = run(&[label(5, -0.03)]);
        assert_eq!((e.headline.labels, e.headline.false_alarms, e.headline.precision), (0, 1, Some(0.0)));
        assert_eq!(e.scoped(0.05, 0.001).false_alarms, 0, "a scope of quieter series");
    }

    #[test]
    fn a_label_of_several_series_is_scoped_by_its_quietest() {
        // The same 20 % step on a quiet series and on one at about 4 % noise; a label without
        // params names both.
        let quiet = stepped_series();
        let mut noisy = stepped_series();
        noisy.key.params = "qd=32".into();
        for (i, v) in noisy.values.iter_mut().enumerate() {
            *v *= 1.0 + 0.04 * [0.9, -1.1, 0.4, -0.6, 1.2, -0.3, 0.7, -1.0, 0.2][i % 9];
        }
        assert!(
            noise_cv(&noisy.clean_values()).unwrap() > 0.02
                && noise_cv(&quiet.clean_values()).unwrap() < 0.02
        );
        let e = evaluate(&[quiet, noisy], &[label(41, -0.2)], &Options::default());
        assert_eq!((e.overall.labels, e.overall.found), (1, 1));
        let reports = e.true_reports;
        assert_eq!(reports, 2, "both series report the step: {e:?}");
        let h = e.scoped(0.05, 0.02);
        assert_eq!((h.labels, h.found, h.true_reports), (1, 1, reports), "{h:?}");
        // A scope quieter than either series holds neither the label nor its reports.
        let none = e.scoped(0.05, 0.001);
        assert_eq!((none.labels, none.true_reports, none.precision), (0, 0, None));
    }

    #[test]
    fn buckets_sort_by_size_then_noise() {
        let mut names = vec!["5% cv>5%", "<5% cv≤2%", "10% cv≤1%", ">30% cv≤1%", "5% cv≤1%", "20% cv≤5%"];
        names.sort_by_key(|n| bucket_order(n));
        assert_eq!(names, ["<5% cv≤2%", "5% cv≤1%", "5% cv>5%", "10% cv≤1%", "20% cv≤5%", ">30% cv≤1%"]);
        assert!(bucket_order("5%") < bucket_order("10%"));
        assert!(bucket_order("cv≤1%") < bucket_order("cv≤2%"));
    }

    #[test]
    fn csv_cells_with_commas_are_quoted() {
        let csv = "# known changes\nhost,metric,params,date\n\n\"db-01\",storage.rand4k.read_iops,\"size=1GiB,qd=32\",2026-02-10\n";
        let l = parse_labels(csv, "l.csv").unwrap();
        assert_eq!(
            (l.len(), l[0].params.as_deref(), l[0].host.as_str()),
            (1, Some("size=1GiB,qd=32"), "db-01")
        );
        let e =
            parse_labels("host,metric,date\n\n\na,b.c,2026-01-01\na,bc,2026-01-01\n", "l.csv").unwrap_err();
        assert!(e.to_string().contains("line 5: metric"), "{e}");
    }
}
