//! `compare` and `rank`: target ÷ source per metric, category ratios, the weighted score and
//! its rating, each with a confidence interval.
//!
//! - **A side** is the runs a selector matched. Per host and series, the last `K` runs are
//!   used (undisturbed ones when there are any), and a side's figure for a series is the median
//!   over them (pooled across hosts when a side has several).
//! - **A series** is compared only like with like: the same probe, metric and parameters.
//!   `peer` and `dir` are left out of that test (they name where a probe measured, not what it
//!   did: every site has its own peer); any other difference makes the metric "not comparable".
//! - **Ratio**: target ÷ source, inverted where lower is better, so > 1 always means the target
//!   is better.
//! - **Category**: the geometric mean of the ratios of the category's key metrics (the
//!   catalogue's `key` column), so a 2× and a 0.5× cancel out and no unit dominates.
//! - **Overall**: the weighted arithmetic mean of the category ratios (the seed's formula),
//!   weights renormalised over the categories present.
//! - **Interval** (95 %): each side's noise is the largest of its run-to-run robust CV (1.4826 ×
//!   MAD / median, with ≥ 3 runs), the median within-run CV and the catalogue's typical CV; the
//!   standard error of a median of K runs is √(π/2) × noise / √K; the two sides add in log space.

use std::collections::{BTreeMap, BTreeSet};

use fathom_datasets::catalogue::{self, Category};
use fathom_datasets::schema::col;
use polars::prelude::*;
use serde::Serialize;

use crate::runs::RunInfo;

/// Runs per host a comparison uses by default (`--last`).
pub const DEFAULT_LAST_RUNS: usize = 5;

/// Parameters that say where a probe measured, not what it measured.
pub const LOCATION_PARAMS: &[&str] = &["dir", "peer"];

/// Parameters the collector records as what it found on the host (the ISA the FLOPS kernel
/// ran, whether the filesystem took O_DIRECT, whether the kernel allowed io_uring): facts of
/// the host being compared, so they do not split a series; a difference becomes a note.
pub const CAPABILITY_PARAMS: &[&str] = &["direct", "engine", "isa"];

/// The categories the weighted score is made of.
pub const SCORED: [Category; 4] = [Category::Cpu, Category::Memory, Category::Storage, Category::Network];

/// Noise assumed for a metric the catalogue does not know.
const UNKNOWN_CV: f64 = 0.05;

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_964;

/// Category weights of the overall score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weights(pub BTreeMap<String, f64>);

impl Default for Weights {
    /// The seed's weights: storage matters most for backups, CPU for restores.
    fn default() -> Weights {
        Weights(
            [("cpu", 0.3), ("memory", 0.2), ("storage", 0.4), ("network", 0.1)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

impl Weights {
    /// `cpu=0.3,memory=0.2,storage=0.4,network=0.1`; categories left out keep their default.
    pub fn parse(text: &str) -> Result<Weights, String> {
        let mut weights = Weights::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--weights: {part:?} is not CATEGORY=WEIGHT (cpu=0.3,storage=0.4)"))?;
            let k = k.trim();
            if !weights.0.contains_key(k) {
                return Err(format!(
                    "--weights: unknown category {k:?}; the scored ones are cpu, memory, storage, network"
                ));
            }
            let w: f64 = v.trim().parse().map_err(|_| format!("--weights: {k}={v:?} is not a number"))?;
            if !w.is_finite() || w < 0.0 {
                return Err(format!("--weights: {k}={v} must be a number ≥ 0"));
            }
            weights.0.insert(k.to_string(), w);
        }
        if weights.0.values().sum::<f64>() <= 0.0 {
            return Err("--weights: at least one category needs a weight above 0".into());
        }
        Ok(weights)
    }

    pub fn of(&self, category: &str) -> f64 {
        self.0.get(category).copied().unwrap_or(0.0)
    }
}

/// The seed's rating thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Critical,
    Poor,
    Adequate,
    Good,
    Excellent,
}

impl Rating {
    pub fn of(ratio: f64) -> Rating {
        match ratio {
            r if r >= 1.0 => Rating::Excellent,
            r if r >= 0.8 => Rating::Good,
            r if r >= 0.6 => Rating::Adequate,
            r if r >= 0.4 => Rating::Poor,
            _ => Rating::Critical,
        }
    }

    /// Capitalised, as the seed's `recommendation` field.
    pub fn title(self) -> &'static str {
        match self {
            Rating::Excellent => "Excellent",
            Rating::Good => "Good",
            Rating::Adequate => "Adequate",
            Rating::Poor => "Poor",
            Rating::Critical => "Critical",
        }
    }

    /// The seed's marks: ✅ from 80 %, ⚠️ from 60 %, ❌ below.
    pub fn mark(self) -> &'static str {
        match self {
            Rating::Excellent | Rating::Good => "✅",
            Rating::Adequate => "⚠️",
            Rating::Poor | Rating::Critical => "❌",
        }
    }
}

/// How far a ratio can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// The 95 % interval is within ±5 % of the ratio.
    High,
    /// Within ±15 %.
    Medium,
    Low,
}

impl Confidence {
    fn of(se_log: f64) -> Confidence {
        let half = (Z95 * se_log).exp() - 1.0;
        if half <= 0.05 {
            Confidence::High
        } else if half <= 0.15 {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }
}

/// One side's figure for one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesStat {
    /// The host, when stats are per host (`rank`); `None` when pooled over a side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub probe: String,
    pub metric: String,
    /// Parameters without the location and capability ones (`peer`, `dir`, `isa`, …).
    pub params: String,
    /// The parameters as the latest run recorded them.
    pub measured_params: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub category: String,
    /// Median over the runs used.
    pub value: f64,
    pub runs: usize,
    pub hosts: usize,
    /// What the median is a median of: the hosts when pooled over several, else the runs.
    pub sample: usize,
    /// Robust CV of that sample: run to run (with ≥ 3 runs) or host to host.
    pub between_cv: Option<f64>,
    /// Median of the runs' own repetition CV.
    pub within_cv: Option<f64>,
    /// The noise the interval assumes (a fraction).
    pub noise: f64,
    pub disturbed_runs: usize,
}

impl SeriesStat {
    /// Standard error of the log of this side's median.
    fn se_log(&self) -> f64 {
        (std::f64::consts::PI / 2.0).sqrt() * self.noise / (self.sample.max(1) as f64).sqrt()
    }

    fn key(&self) -> (String, String, String) {
        (self.probe.clone(), self.metric.clone(), self.params.clone())
    }
}

fn param_key(part: &str) -> &str {
    part.split_once('=').map(|(k, _)| k).unwrap_or(part)
}

/// `params` without the location and capability parameters: what the probe was asked to do.
pub fn comparable_params(params: &str) -> String {
    params
        .split(',')
        .filter(|p| !p.is_empty())
        .filter(|p| !LOCATION_PARAMS.contains(&param_key(p)) && !CAPABILITY_PARAMS.contains(&param_key(p)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Only the capability parameters (`direct=on,engine=io_uring`), for the notes.
pub fn capability_params(params: &str) -> String {
    params.split(',').filter(|p| CAPABILITY_PARAMS.contains(&param_key(p))).collect::<Vec<_>>().join(",")
}

/// How many of a run stream's latest runs are searched for its last K undisturbed values, a
/// stream being one host's runs of one suite and schedule (an hourly network-only schedule
/// does not crowd out the nightly full suite): the scan then reads a bounded number of runs
/// per host however long the window.
pub const SEARCH_DEPTH: usize = 3;

/// The latest `depth` runs of each (host, suite, schedule).
fn latest_per_stream<'a>(runs: &[&'a RunInfo], depth: usize) -> Vec<&'a RunInfo> {
    let mut streams: BTreeMap<(&str, &str, &str), Vec<&'a RunInfo>> = BTreeMap::new();
    for r in runs {
        streams.entry((r.host.as_str(), r.suite.as_str(), r.schedule.as_str())).or_default().push(r);
    }
    streams
        .into_values()
        .flat_map(|mut v| {
            v.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
            v.truncate(depth);
            v
        })
        .collect()
}

/// Per series, a side's figure from `runs`:
/// - per host, the rows with the parameters of the host's latest run of the series (a host
///   that moved its test to another `dir` or `peer` is measured where it is now), undisturbed
///   ones first, its last `last` runs, and their median;
/// - with `per_host`, those; otherwise pooled over the side's hosts: the median of the host
///   medians, its noise from their spread, its sample size the number of hosts.
pub fn side_stats(
    measurements: LazyFrame,
    runs: &[&RunInfo],
    last: usize,
    per_host: bool,
) -> PolarsResult<Vec<SeriesStat>> {
    let searched = latest_per_stream(runs, SEARCH_DEPTH * last);
    let ids = df!(col::RUN_ID => searched.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>())?;
    // Nothing older than the oldest run searched: row-group statistics then skip older files.
    let oldest = searched.iter().map(|r| r.started_at).min().unwrap_or(0);
    let since = lit(Scalar::new_datetime(oldest, TimeUnit::Microseconds, Some(TimeZone::UTC)));
    let selected = measurements
        .filter(col(col::STARTED_AT).gt_eq(since))
        .semi_join(ids.lazy(), col(col::RUN_ID), col(col::RUN_ID))
        .select([
            col(col::HOST),
            col(col::PROBE),
            col(col::METRIC),
            col(col::PARAMS),
            col(col::UNIT),
            col(col::HIGHER_IS_BETTER),
            col(col::CATEGORY),
            col(col::STARTED_AT),
            col(col::RUN_ID),
            col(col::VALUE),
            col(col::CV),
            col(col::DISTURBED),
        ])
        .collect()?;
    if selected.height() == 0 {
        return Ok(Vec::new());
    }
    // The few distinct parameter strings, normalised here and joined back.
    let distinct = selected.column(col::PARAMS)?.str()?.unique()?;
    let raw: Vec<&str> = (0..distinct.len()).filter_map(|i| distinct.get(i)).collect();
    let normalised: Vec<String> = raw.iter().map(|p| comparable_params(p)).collect();
    let mapping = df!(col::PARAMS => raw, "cparams" => normalised)?;

    let host_keys = [col(col::HOST), col(col::PROBE), col(col::METRIC), col("cparams")];
    let per_host_frame = selected
        .lazy()
        .join(mapping.lazy(), [col(col::PARAMS)], [col(col::PARAMS)], JoinArgs::new(JoinType::Left))
        .sort(
            [col::HOST, col::PROBE, col::METRIC, "cparams", col::STARTED_AT, col::RUN_ID],
            SortMultipleOptions::default()
                .with_order_descending_multi([false, false, false, false, true, true]),
        )
        // The parameters of the host's latest run of the series.
        .with_columns([
            col(col::PARAMS).first().over(host_keys.clone())?.alias("latest_params"),
            col(col::UNIT).first().over(host_keys.clone())?.alias("latest_unit"),
        ])
        // ... and in the unit of that run (a collector upgrade may change a metric's unit).
        .filter(col(col::PARAMS).eq(col("latest_params")).and(col(col::UNIT).eq(col("latest_unit"))))
        // Undisturbed runs where the host has any for the series; its disturbed ones otherwise.
        .with_columns([col(col::DISTURBED)
            .cast(DataType::Int32)
            .min()
            .over(host_keys.clone())?
            .alias("all_disturbed")])
        .filter(col(col::DISTURBED).not().or(col("all_disturbed").eq(lit(1))))
        .with_columns([col(col::VALUE)
            .cum_count(false)
            .over(host_keys.clone())?
            .cast(DataType::Int64)
            .alias("recency")])
        .filter(col("recency").lt_eq(lit(last as i64)))
        .with_columns([(col(col::VALUE) - col(col::VALUE).median().over(host_keys.clone())?)
            .abs()
            .alias("deviation")])
        .group_by(host_keys)
        .agg([
            col(col::VALUE).median().alias("median"),
            col(col::VALUE).count().cast(DataType::Int64).alias("runs"),
            col("deviation").median().alias("mad"),
            col(col::CV).median().alias("within_cv"),
            col(col::DISTURBED).cast(DataType::Int64).sum().alias("disturbed_runs"),
            col(col::UNIT).first().alias(col::UNIT),
            col(col::HIGHER_IS_BETTER).first().alias(col::HIGHER_IS_BETTER),
            col(col::CATEGORY).first().alias(col::CATEGORY),
            col(col::PARAMS).first().alias(col::PARAMS),
        ])
        .with_columns([lit(1i64).alias("hosts"), lit(NULL).cast(DataType::Float64).alias("host_std")]);
    let frame = if per_host {
        per_host_frame
    } else {
        let keys = [col(col::PROBE), col(col::METRIC), col("cparams")];
        per_host_frame
            .with_columns([(col("median") - col("median").median().over(keys.clone())?)
                .abs()
                .alias("host_deviation")])
            .sort([col::HOST], SortMultipleOptions::default())
            .group_by(keys)
            .agg([
                col("median").median().alias("median"),
                col("runs").sum().alias("runs"),
                // One host: its runs' spread; several: the spread between hosts.
                when(col("median").count().gt(lit(1)))
                    .then(col("host_deviation").median())
                    .otherwise(col("mad").first())
                    .alias("mad"),
                col("median").std(1).alias("host_std"),
                col("within_cv").median().alias("within_cv"),
                col("disturbed_runs").sum().alias("disturbed_runs"),
                col("median").count().cast(DataType::Int64).alias("hosts"),
                col(col::UNIT).first().alias(col::UNIT),
                col(col::HIGHER_IS_BETTER).first().alias(col::HIGHER_IS_BETTER),
                col(col::CATEGORY).first().alias(col::CATEGORY),
                col(col::PARAMS).first().alias(col::PARAMS),
                col(col::HOST).first().alias(col::HOST),
            ])
    }
    .sort([col::PROBE, col::METRIC, "cparams", col::HOST], SortMultipleOptions::default())
    .collect()?;

    let s = |name: &str| frame.column(name).and_then(|c| c.str().cloned());
    let f = |name: &str| frame.column(name).and_then(|c| c.cast(&DataType::Float64)?.f64().cloned());
    let i = |name: &str| frame.column(name).and_then(|c| c.cast(&DataType::Int64)?.i64().cloned());
    let (probe, metric, params, raw_params, unit, category, host) = (
        s(col::PROBE)?,
        s(col::METRIC)?,
        s("cparams")?,
        s(col::PARAMS)?,
        s(col::UNIT)?,
        s(col::CATEGORY)?,
        s(col::HOST)?,
    );
    let (median, mad, within, host_std) = (f("median")?, f("mad")?, f("within_cv")?, f("host_std")?);
    let (runs, hosts, disturbed) = (i("runs")?, i("hosts")?, i("disturbed_runs")?);
    let hib = frame.column(col::HIGHER_IS_BETTER)?.bool()?.clone();
    let mut out = Vec::with_capacity(frame.height());
    for r in 0..frame.height() {
        let (p, m) = (probe.get(r).unwrap_or_default(), metric.get(r).unwrap_or_default());
        let value = median.get(r).unwrap_or(f64::NAN);
        let n = runs.get(r).unwrap_or(0).max(0) as usize;
        let h = hosts.get(r).unwrap_or(1).max(1) as usize;
        // The sample the median is of: hosts when pooled over several, else runs.
        let sample = if h > 1 { h } else { n };
        let between_cv = match (h, value != 0.0) {
            (_, false) => None,
            (1, true) if n >= 3 => mad.get(r).map(|mad| 1.4826 * mad / value.abs()),
            (2, true) => host_std.get(r).map(|sd| sd / value.abs()),
            (h, true) if h >= 3 => mad.get(r).map(|mad| 1.4826 * mad / value.abs()),
            _ => None,
        };
        let within_cv = within.get(r).filter(|c| c.is_finite());
        let floor = catalogue::metric(p, m).map(|s| s.typical_cv).unwrap_or(UNKNOWN_CV);
        let noise =
            [between_cv.unwrap_or(0.0), within_cv.unwrap_or(0.0), floor].into_iter().fold(0.0, f64::max);
        out.push(SeriesStat {
            host: per_host.then(|| host.get(r).unwrap_or_default().to_string()),
            probe: p.to_string(),
            metric: m.to_string(),
            params: params.get(r).unwrap_or_default().to_string(),
            measured_params: raw_params.get(r).unwrap_or_default().to_string(),
            unit: unit.get(r).unwrap_or_default().to_string(),
            higher_is_better: hib.get(r).unwrap_or(true),
            category: category.get(r).unwrap_or_default().to_string(),
            value,
            runs: n,
            hosts: h,
            sample,
            between_cv,
            within_cv,
            noise,
            disturbed_runs: disturbed.get(r).unwrap_or(0).max(0) as usize,
        });
    }
    Ok(out)
}

/// One side's figure as a comparison shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideValue {
    pub value: f64,
    pub runs: usize,
    pub hosts: usize,
    /// What the median is of: hosts when several, else runs.
    pub sample: usize,
    /// The parameters as the latest run recorded them (with `peer`, `dir`, `isa` …).
    pub measured_params: String,
    pub noise: f64,
    pub disturbed_runs: usize,
}

impl From<&SeriesStat> for SideValue {
    fn from(s: &SeriesStat) -> SideValue {
        SideValue {
            value: s.value,
            runs: s.runs,
            hosts: s.hosts,
            sample: s.sample,
            measured_params: s.measured_params.clone(),
            noise: s.noise,
            disturbed_runs: s.disturbed_runs,
        }
    }
}

/// One metric measured alike on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricComparison {
    pub probe: String,
    pub metric: String,
    pub params: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub category: String,
    /// Counts towards its category's ratio.
    pub key: bool,
    pub source: SideValue,
    pub target: SideValue,
    /// Target ÷ source, inverted where lower is better: > 1 means the target is better.
    pub ratio: f64,
    /// 95 % interval of the ratio.
    pub interval: [f64; 2],
    pub confidence: Confidence,
    /// Why the confidence is what it is (few runs, noise, disturbed runs).
    pub notes: Vec<String>,
    #[serde(skip)]
    se_log: f64,
}

/// A metric left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotComparable {
    pub probe: String,
    pub metric: String,
    pub reason: String,
    pub source_params: Vec<String>,
    pub target_params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryScore {
    pub category: String,
    pub ratio: f64,
    pub interval: [f64; 2],
    pub rating: Rating,
    pub mark: &'static str,
    /// Its weight in the overall score after renormalisation.
    pub weight: f64,
    /// The key metrics it is the geometric mean of, as `probe metric`.
    pub metrics: Vec<String>,
    /// How many key metrics the category has in the catalogue (`metrics` may be fewer).
    pub key_metrics_expected: usize,
}

/// The comparison of one target with one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Weighted mean of the category ratios; `None` when no scored category was comparable.
    pub overall_score: Option<f64>,
    pub overall_interval: Option<[f64; 2]>,
    pub rating: Option<Rating>,
    pub categories: Vec<CategoryScore>,
    /// Scored categories without any comparable key metric.
    pub missing_categories: Vec<String>,
    /// Whether weights were renormalised because of missing categories.
    pub weights_renormalized: bool,
    pub metrics: Vec<MetricComparison>,
    pub not_comparable: Vec<NotComparable>,
}

impl Comparison {
    pub fn category(&self, name: &str) -> Option<&CategoryScore> {
        self.categories.iter().find(|c| c.category == name)
    }

    pub fn metric(&self, probe: &str, metric: &str) -> Option<&MetricComparison> {
        self.metrics.iter().find(|m| m.probe == probe && m.metric == metric)
    }
}

fn or_none(params: &str) -> &str {
    if params.is_empty() { "defaults" } else { params }
}

fn interval(ratio: f64, se_log: f64) -> [f64; 2] {
    [ratio * (-Z95 * se_log).exp(), ratio * (Z95 * se_log).exp()]
}

fn confidence_notes(side: &str, s: &SeriesStat, last: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if s.runs < 3 && s.hosts == 1 {
        let why = if last < 3 { format!(" (--last {last})") } else { String::new() };
        notes.push(format!(
            "{side}: {} run{}{why}, run-to-run spread not assessed",
            s.runs,
            if s.runs == 1 { "" } else { "s" }
        ));
    }
    let typical = catalogue::metric(&s.probe, &s.metric).map(|m| m.typical_cv).unwrap_or(UNKNOWN_CV);
    if s.noise > (2.0 * typical).max(0.03) {
        notes.push(format!("{side}: noisy (CV {:.1} %)", s.noise * 100.0));
    }
    if s.disturbed_runs > 0 {
        notes.push(format!("{side}: {} of {} runs disturbed by other processes", s.disturbed_runs, s.runs));
    }
    notes
}

/// Compares two sides' series. `last` is the K the sides were computed with (for the notes).
pub fn compare(source: &[SeriesStat], target: &[SeriesStat], weights: &Weights, last: usize) -> Comparison {
    let by_key = |stats: &[SeriesStat]| -> BTreeMap<(String, String, String), SeriesStat> {
        stats.iter().map(|s| (s.key(), s.clone())).collect()
    };
    let (src, tgt) = (by_key(source), by_key(target));
    let mut metrics = Vec::new();
    let mut not_comparable = Vec::new();
    let mut unmatched: BTreeMap<(String, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (key, s) in &src {
        let Some(t) = tgt.get(key) else {
            unmatched.entry((key.0.clone(), key.1.clone())).or_default().0.push(key.2.clone());
            continue;
        };
        if s.unit != t.unit {
            not_comparable.push(NotComparable {
                probe: s.probe.clone(),
                metric: s.metric.clone(),
                reason: format!(
                    "recorded in different units: {} on the source, {} on the target",
                    s.unit, t.unit
                ),
                source_params: vec![s.params.clone()],
                target_params: vec![t.params.clone()],
            });
            continue;
        }
        let spec = catalogue::metric(&s.probe, &s.metric);
        let raw = if s.higher_is_better { t.value / s.value } else { s.value / t.value };
        if !(raw.is_finite() && raw > 0.0) {
            not_comparable.push(NotComparable {
                probe: s.probe.clone(),
                metric: s.metric.clone(),
                reason: format!("no ratio: {} on the source, {} on the target", s.value, t.value),
                source_params: vec![s.params.clone()],
                target_params: vec![t.params.clone()],
            });
            continue;
        }
        let se_log = (s.se_log().powi(2) + t.se_log().powi(2)).sqrt();
        let mut notes = confidence_notes("source", s, last);
        notes.extend(confidence_notes("target", t, last));
        let (sc, tc) = (capability_params(&s.measured_params), capability_params(&t.measured_params));
        if sc != tc {
            notes.push(format!("source ran with {}, target with {}", or_none(&sc), or_none(&tc)));
        }
        metrics.push(MetricComparison {
            probe: s.probe.clone(),
            metric: s.metric.clone(),
            params: s.params.clone(),
            unit: s.unit.clone(),
            higher_is_better: s.higher_is_better,
            category: spec.map(|m| m.category().as_str().to_string()).unwrap_or_else(|| s.category.clone()),
            key: spec.is_some_and(|m| m.key),
            source: s.into(),
            target: t.into(),
            ratio: raw,
            interval: interval(raw, se_log),
            confidence: Confidence::of(se_log),
            notes,
            se_log,
        });
    }
    for key in tgt.keys().filter(|k| !src.contains_key(*k)) {
        unmatched.entry((key.0.clone(), key.1.clone())).or_default().1.push(key.2.clone());
    }
    for ((probe, metric), (source_params, target_params)) in unmatched {
        let reason = match (source_params.is_empty(), target_params.is_empty()) {
            (false, false) => "measured with different parameters".to_string(),
            (false, true) => "measured on the source only".to_string(),
            _ => "measured on the target only".to_string(),
        };
        not_comparable.push(NotComparable { probe, metric, reason, source_params, target_params });
    }

    let mut categories = Vec::new();
    let mut missing = Vec::new();
    for category in SCORED {
        let name = category.as_str();
        let keys: Vec<&MetricComparison> = metrics.iter().filter(|m| m.key && m.category == name).collect();
        if keys.is_empty() {
            missing.push(name.to_string());
            continue;
        }
        let n = keys.len() as f64;
        let log_mean = keys.iter().map(|m| m.ratio.ln()).sum::<f64>() / n;
        // The metrics of one host move together (a noisy neighbour slows all of them), so
        // their errors are taken as fully correlated: no narrowing from averaging.
        let se_log = keys.iter().map(|m| m.se_log).sum::<f64>() / n;
        let expected = catalogue::METRICS.iter().filter(|m| m.key && m.category() == category).count();
        let ratio = log_mean.exp();
        categories.push((
            CategoryScore {
                category: name.to_string(),
                ratio,
                interval: interval(ratio, se_log),
                rating: Rating::of(ratio),
                mark: Rating::of(ratio).mark(),
                weight: weights.of(name),
                metrics: keys.iter().map(|m| format!("{} {}", m.probe, m.metric)).collect(),
                key_metrics_expected: expected,
            },
            se_log,
        ));
    }
    let total: f64 = categories.iter().map(|(c, _)| c.weight).sum();
    let weighted = categories.iter().filter(|(c, _)| c.weight > 0.0).count();
    let (overall_score, overall_interval) = if total > 0.0 && weighted > 0 {
        let score = categories.iter().map(|(c, _)| c.weight * c.ratio).sum::<f64>() / total;
        // Delta method, d(score)/d(log r_c) = w_c r_c / Σw, categories fully correlated (one
        // host's noise reaches all of them).
        let se = categories.iter().map(|(c, se)| c.weight * c.ratio * se).sum::<f64>() / total;
        (Some(score), Some([(score - Z95 * se).max(0.0), score + Z95 * se]))
    } else {
        (None, None)
    };
    let weights_renormalized = missing.iter().any(|m| weights.of(m) > 0.0);
    let categories: Vec<CategoryScore> = categories
        .into_iter()
        .map(|(mut c, _)| {
            c.weight = if total > 0.0 { c.weight / total } else { 0.0 };
            c
        })
        .collect();
    Comparison {
        overall_score,
        overall_interval,
        rating: overall_score.map(Rating::of),
        categories,
        missing_categories: missing,
        weights_renormalized,
        metrics,
        not_comparable,
    }
}

/// The hosts a set of runs covers, with each host's latest facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRuns {
    pub host: String,
    /// Runs of this host in the window (measured ones).
    pub runs: usize,
    pub latest_run: String,
    /// The latest run's labels (site, platform, hardware class …).
    pub labels: BTreeMap<String, String>,
    pub facts: crate::runs::Facts,
}

pub fn hosts_of(runs: &[&RunInfo]) -> Vec<HostRuns> {
    let mut by_host: BTreeMap<&str, Vec<&RunInfo>> = BTreeMap::new();
    for r in runs {
        by_host.entry(r.host.as_str()).or_default().push(r);
    }
    by_host
        .into_iter()
        .map(|(host, runs)| {
            let latest =
                runs.iter().max_by_key(|r| (r.started_at, r.run_id.as_str())).expect("a host has runs");
            HostRuns {
                host: host.to_string(),
                runs: runs.len(),
                latest_run: latest.started_rfc3339(),
                labels: latest.labels.clone(),
                facts: latest.facts.clone(),
            }
        })
        .collect()
}

/// One side of a comparison: what selected it, its hosts, its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub selector: String,
    pub hosts: Vec<HostRuns>,
    pub stats: Vec<SeriesStat>,
}

impl Side {
    pub fn value(&self, probe: &str, metric: &str) -> Option<f64> {
        self.stats.iter().find(|s| s.probe == probe && s.metric == metric).map(|s| s.value)
    }

    /// The most runs any series used.
    pub fn runs_used(&self) -> usize {
        self.stats.iter().map(|s| s.runs).max().unwrap_or(0)
    }

    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.host.as_str()).collect()
    }
}

/// A comparison with everything its reports show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareReport {
    pub source: Side,
    pub target: Side,
    pub weights: Weights,
    pub last: usize,
    pub comparison: Comparison,
    pub advice: super::recommend::Advice,
}

impl CompareReport {
    pub fn new(source: Side, target: Side, weights: Weights, last: usize) -> CompareReport {
        let comparison = compare(&source.stats, &target.stats, &weights, last);
        let advice = super::recommend::advise(&comparison, &source.hosts, &target.hosts);
        CompareReport { source, target, weights, last, comparison, advice }
    }
}

/// Runs that both sides selected, by host, for the error that keeps sides apart.
pub fn overlap(source: &[&RunInfo], target: &[&RunInfo]) -> Vec<String> {
    let ids: BTreeSet<&str> = source.iter().map(|r| r.run_id.as_str()).collect();
    target
        .iter()
        .filter(|r| ids.contains(r.run_id.as_str()))
        .map(|r| r.host.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests;
