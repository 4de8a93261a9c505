//! Nightly series: every committed measurement of one host × probe × metric × params × unit, in
//! time order, as plain vectors the detectors run over.
//!
//! The grouping runs in Polars (one list per series), so only the series keys become Rust
//! strings, not every row's. A disturbed run (another process took the CPU while it ran) stays
//! in the series but is flagged: the analyses read it as a missing night.

use chrono::{DateTime, NaiveDate};
use fathom_datasets::schema::col;
use polars::prelude::*;
use serde::Serialize;

/// What names a series. A unit change (µs to ns) starts a new series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SeriesKey {
    pub host: String,
    pub probe: String,
    pub metric: String,
    pub params: String,
    pub unit: String,
}

impl SeriesKey {
    /// `probe.metric` with its params, as reports name a metric.
    pub fn metric_label(&self) -> String {
        metric_label(&self.probe, &self.metric, &self.params)
    }
}

/// `probe.metric`, with ` [params]` when there are any.
pub fn metric_label(probe: &str, metric: &str, params: &str) -> String {
    if params.is_empty() { format!("{probe}.{metric}") } else { format!("{probe}.{metric} [{params}]") }
}

/// The UTC date of a time in microseconds since the epoch.
pub fn night_of(micros: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(micros).map(|t| t.date_naive()).unwrap_or_default()
}

/// Midnight UTC of `day`, in microseconds since the epoch.
pub fn midnight_micros(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros()
}

/// A Polars `Date` (days since the epoch) as a date.
pub fn date_of_days(days: i32) -> NaiveDate {
    DateTime::UNIX_EPOCH.date_naive() + chrono::TimeDelta::days(i64::from(days))
}

/// One series: a value per run, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NightlySeries {
    pub key: SeriesKey,
    pub higher_is_better: bool,
    /// When each run started, microseconds since the epoch (UTC).
    pub at: Vec<i64>,
    pub values: Vec<f64>,
    pub disturbed: Vec<bool>,
}

impl NightlySeries {
    /// The values with disturbed runs as NaN: what the detectors see.
    pub fn clean_values(&self) -> Vec<f64> {
        self.values.iter().zip(&self.disturbed).map(|(&v, &d)| if d { f64::NAN } else { v }).collect()
    }

    /// The UTC date of run `i`.
    pub fn night(&self, i: usize) -> NaiveDate {
        night_of(self.at[i])
    }

    /// Days since the first run, as the x of a fit.
    pub fn days(&self) -> Vec<f64> {
        let first = self.at.first().copied().unwrap_or(0);
        self.at.iter().map(|&t| (t - first) as f64 / 86_400e6).collect()
    }

    /// Adds the runs of `newer` that start after this series' last run (a run already here is
    /// not added twice), then keeps only the last `keep`.
    pub fn extend_with(&mut self, newer: NightlySeries, keep: usize) {
        let last = self.at.last().copied().unwrap_or(i64::MIN);
        for i in 0..newer.len() {
            if newer.at[i] > last {
                self.at.push(newer.at[i]);
                self.values.push(newer.values[i]);
                self.disturbed.push(newer.disturbed[i]);
            }
        }
        self.higher_is_better = newer.higher_is_better;
        self.keep_last(keep);
    }

    /// Drops the runs that started at or after `at` (microseconds), for partitions read again.
    pub fn truncate_from(&mut self, at: i64) {
        let keep = self.at.partition_point(|&t| t < at);
        self.at.truncate(keep);
        self.values.truncate(keep);
        self.disturbed.truncate(keep);
    }

    /// Drops the runs that started before `at` (microseconds): out of the window by age.
    pub fn drop_before(&mut self, at: i64) {
        let drop = self.at.partition_point(|&t| t < at);
        self.at.drain(..drop);
        self.values.drain(..drop);
        self.disturbed.drain(..drop);
    }

    /// Drops all but the last `keep` runs.
    pub fn keep_last(&mut self, keep: usize) {
        let drop = self.len().saturating_sub(keep);
        if drop > 0 {
            self.at.drain(..drop);
            self.values.drain(..drop);
            self.disturbed.drain(..drop);
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

const KEYS: [&str; 5] = [col::HOST, col::PROBE, col::METRIC, col::PARAMS, col::UNIT];

/// Every series of the committed measurements, sorted by key; runs in each by start time (the
/// run id breaks ties, so the order never depends on file listing).
pub fn load_series(measurements: LazyFrame) -> PolarsResult<Vec<NightlySeries>> {
    let keys: Vec<Expr> = KEYS.iter().map(|k| col(*k)).collect();
    let by_time = || SortMultipleOptions::default();
    let order = [col(col::STARTED_AT), col(col::RUN_ID)];
    let df = measurements
        .select(
            keys.iter()
                .cloned()
                .chain([
                    col(col::HIGHER_IS_BETTER),
                    col(col::RUN_ID),
                    col(col::STARTED_AT).cast(DataType::Datetime(TimeUnit::Microseconds, None)).to_physical(),
                    col(col::VALUE).cast(DataType::Float64),
                    col(col::DISTURBED).fill_null(lit(false)),
                ])
                .collect::<Vec<_>>(),
        )
        .filter(col(col::VALUE).is_not_null())
        .group_by(keys)
        .agg([
            // The latest run's word on the direction, as a later night's would be.
            col(col::HIGHER_IS_BETTER).sort_by(order.clone(), by_time()).last(),
            col(col::STARTED_AT).sort_by(order.clone(), by_time()).alias("at"),
            col(col::VALUE).sort_by(order.clone(), by_time()).alias("values"),
            col(col::DISTURBED).sort_by(order, by_time()).alias("disturbed"),
        ])
        .sort(KEYS.map(PlSmallStr::from).to_vec(), SortMultipleOptions::default())
        .collect()?;
    let s = |name: &str| df.column(name).and_then(|c| c.str().cloned());
    let (host, probe, metric, params, unit) =
        (s(col::HOST)?, s(col::PROBE)?, s(col::METRIC)?, s(col::PARAMS)?, s(col::UNIT)?);
    let hib = df.column(col::HIGHER_IS_BETTER)?.bool()?.clone();
    let (at, values, disturbed) = (
        df.column("at")?.list()?.clone(),
        df.column("values")?.list()?.clone(),
        df.column("disturbed")?.list()?.clone(),
    );
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let text = |ca: &StringChunked| ca.get(i).unwrap_or_default().to_string();
        let (Some(t), Some(v), Some(d)) =
            (at.get_as_series(i), values.get_as_series(i), disturbed.get_as_series(i))
        else {
            continue;
        };
        let (t, v, d) = (t.i64()?, v.f64()?, d.bool()?);
        let t: Vec<i64> = (0..t.len()).map(|j| t.get(j).unwrap_or(0)).collect();
        let v: Vec<f64> = (0..v.len()).map(|j| v.get(j).unwrap_or(f64::NAN)).collect();
        let d: Vec<bool> = (0..d.len()).map(|j| d.get(j).unwrap_or(false)).collect();
        out.push(NightlySeries {
            key: SeriesKey {
                host: text(&host),
                probe: text(&probe),
                metric: text(&metric),
                params: text(&params),
                unit: text(&unit),
            },
            higher_is_better: hib.get(i).unwrap_or(true),
            at: t,
            values: v,
            disturbed: d,
        });
    }
    Ok(out)
}

/// Median of the finite values; `None` when there are none.
pub fn finite_median(values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    fathom_datasets::stats::median(&finite)
}

/// The last `k` finite values, oldest first.
pub fn last_finite(values: &[f64], k: usize) -> Vec<f64> {
    let mut out: Vec<f64> = values.iter().rev().copied().filter(|v| v.is_finite()).take(k).collect();
    out.reverse();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A series of one run a night from 2026-01-01, higher is better; `disturbed` lists indices.
    pub(crate) fn series(values: &[f64], disturbed: &[usize]) -> NightlySeries {
        let first = 1_767_225_600_000_000_i64 + 2 * 3_600_000_000;
        NightlySeries {
            key: SeriesKey {
                host: "db-01".into(),
                probe: "storage.rand4k".into(),
                metric: "read_iops".into(),
                params: String::new(),
                unit: "IOPS".into(),
            },
            higher_is_better: true,
            at: (0..values.len() as i64).map(|i| first + i * 86_400_000_000).collect(),
            values: values.to_vec(),
            disturbed: (0..values.len()).map(|i| disturbed.contains(&i)).collect(),
        }
    }

    /// Rows (host, metric, day, value, disturbed), in the order given.
    pub(crate) fn frame(rows: &[(&str, &str, i64, f64, bool)]) -> LazyFrame {
        let n = rows.len();
        df!(
            col::RUN_ID => (0..n).map(|i| format!("run-{i:04}")).collect::<Vec<_>>(),
            col::HOST => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            col::PROBE => vec!["storage.rand4k"; n],
            col::METRIC => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            col::PARAMS => vec!["size=1GiB"; n],
            col::UNIT => vec!["IOPS"; n],
            col::HIGHER_IS_BETTER => vec![true; n],
            col::STARTED_AT => rows.iter().map(|r| r.2 * 86_400_000_000).collect::<Vec<_>>(),
            col::VALUE => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            col::DISTURBED => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
        .with_column(
            col(col::STARTED_AT).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))),
        )
    }

    #[test]
    fn series_are_grouped_sorted_and_keep_disturbed_runs_flagged() {
        let rows = [
            ("b", "read_iops", 1, 20.0, false),
            ("a", "read_iops", 2, 3.0, true),
            ("a", "read_iops", 0, 1.0, false),
            ("a", "write_iops", 0, 9.0, false),
            ("a", "read_iops", 1, 2.0, false),
        ];
        let out = load_series(frame(&rows)).unwrap();
        let names: Vec<(&str, &str)> =
            out.iter().map(|s| (s.key.host.as_str(), s.key.metric.as_str())).collect();
        assert_eq!(names, [("a", "read_iops"), ("a", "write_iops"), ("b", "read_iops")]);
        let a = &out[0];
        assert_eq!(a.values, [1.0, 2.0, 3.0]);
        assert_eq!(a.disturbed, [false, false, true]);
        assert_eq!(a.days(), [0.0, 1.0, 2.0]);
        assert_eq!(a.night(2), NaiveDate::from_ymd_opt(1970, 1, 3).unwrap());
        let clean = a.clean_values();
        assert_eq!(&clean[..2], &[1.0, 2.0]);
        assert!(clean[2].is_nan());
        assert_eq!(a.key.metric_label(), "storage.rand4k.read_iops [size=1GiB]");
    }

    #[test]
    fn the_direction_is_the_latest_runs() {
        // Rows out of time order; the latest run (day 2) says lower is better.
        let rows = [
            ("a", "read_iops", 0, 1.0, false),
            ("a", "read_iops", 2, 3.0, false),
            ("a", "read_iops", 1, 2.0, false),
        ];
        let frame = frame(&rows).with_column(
            when(col(col::VALUE).eq(lit(3.0)))
                .then(lit(false))
                .otherwise(lit(true))
                .alias(col::HIGHER_IS_BETTER),
        );
        assert!(!load_series(frame).unwrap()[0].higher_is_better);
    }

    #[test]
    fn extending_adds_only_newer_runs_and_keeps_the_last_ones() {
        let mut a = series(&[1.0, 2.0, 3.0], &[]);
        let mut b = series(&[9.0, 9.0, 9.0, 4.0, 5.0], &[4]);
        // b's first three runs are at the same times as a's.
        b.higher_is_better = false;
        a.extend_with(b, 4);
        assert_eq!(a.values, [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(a.disturbed, [false, false, false, true]);
        assert!(!a.higher_is_better);
        assert!(a.at.windows(2).all(|w| w[0] < w[1]));
        let cut = a.at[2];
        a.truncate_from(cut);
        assert_eq!(
            (a.values.as_slice(), a.disturbed.as_slice()),
            ([2.0, 3.0].as_slice(), [false, false].as_slice())
        );
        let mut b = a.clone();
        let second = b.at[1];
        b.drop_before(second);
        assert_eq!(b.values, [3.0]);
        a.truncate_from(i64::MIN);
        assert!(a.is_empty() && a.at.is_empty() && a.disturbed.is_empty());
    }

    #[test]
    fn finite_helpers_skip_missing_nights() {
        assert_eq!(finite_median(&[f64::NAN, 3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(finite_median(&[f64::NAN]), None);
        assert_eq!(last_finite(&[1.0, f64::NAN, 2.0, 3.0], 2), [2.0, 3.0]);
    }
}
