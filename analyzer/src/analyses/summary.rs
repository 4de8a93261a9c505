//! `summary`: per host × probe × metric × params, the latest value, the median of the runs
//! before it, and the change of the latest against that median.
//!
//! The baseline is the median of the (up to) seven runs *before* the latest, so a bad night
//! does not dilute its own baseline; `baseline_runs` says how many there were.

use fathom_datasets::schema::col;
use polars::prelude::*;
use serde::Serialize;

/// How many earlier runs make the baseline.
pub const BASELINE_RUNS: u32 = 7;

/// A series, and its unit: a collector that changed a metric's unit (storage latencies went
/// from µs to ns) starts a new series rather than comparing across the change.
const KEYS: [&str; 5] = [col::HOST, col::PROBE, col::METRIC, col::PARAMS, col::UNIT];

/// One series' line of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub host: String,
    pub probe: String,
    pub metric: String,
    pub params: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// When the latest run started (RFC 3339, UTC).
    pub latest_at: String,
    pub latest: f64,
    pub latest_cv: Option<f64>,
    /// Median of up to seven runs before the latest; `None` for a series with one run.
    pub baseline_median: Option<f64>,
    pub baseline_runs: u32,
    /// `latest / baseline_median − 1`.
    pub change: Option<f64>,
}

impl SummaryRow {
    /// Whether the change is an improvement, given the metric's direction.
    pub fn improved(&self) -> Option<bool> {
        self.change.map(|c| if self.higher_is_better { c > 0.0 } else { c < 0.0 })
    }
}

/// The series keys and what describes a series (its unit and direction).
fn series_columns() -> impl Iterator<Item = Expr> {
    KEYS.iter().map(|k| col(*k)).chain([col(col::HIGHER_IS_BETTER)])
}

/// The summary as a lazy query over committed measurements.
pub fn summary_frame(measurements: LazyFrame) -> PolarsResult<LazyFrame> {
    let keys: Vec<Expr> = KEYS.iter().map(|k| col(*k)).collect();
    let mut sort_by: Vec<PlSmallStr> = KEYS.iter().map(|k| PlSmallStr::from(*k)).collect();
    // The run id breaks ties between runs that started in the same microsecond.
    sort_by.extend([col::STARTED_AT.into(), col::RUN_ID.into()]);
    let ordered = measurements
        .select(
            series_columns()
                .chain([col(col::RUN_ID), col(col::STARTED_AT), col(col::VALUE), col(col::CV)])
                .collect::<Vec<_>>(),
        )
        .sort(sort_by, SortMultipleOptions::default())
        .with_columns([
            // Signed, so `runs - 7` cannot wrap for short series.
            col(col::VALUE).cum_count(false).over(&keys)?.cast(DataType::Int64).alias("position"),
            col(col::VALUE).count().over(&keys)?.cast(DataType::Int64).alias("runs"),
        ]);
    let latest = ordered.clone().filter(col("position").eq(col("runs"))).select(
        series_columns()
            .chain([
                col(col::STARTED_AT).alias("latest_at"),
                col(col::VALUE).alias("latest"),
                col(col::CV).alias("latest_cv"),
            ])
            .collect::<Vec<_>>(),
    );
    let baseline = ordered
        .filter(
            col("position")
                .lt(col("runs"))
                .and(col("position").gt_eq(col("runs") - lit(BASELINE_RUNS as i64))),
        )
        .group_by(&keys)
        .agg([
            col(col::VALUE).median().alias("baseline_median"),
            col(col::VALUE).count().alias("baseline_runs"),
        ]);
    Ok(latest
        .join(baseline, &keys, &keys, JoinArgs::new(JoinType::Left))
        .with_columns([
            (col("latest") / col("baseline_median") - lit(1.0)).alias("change"),
            col("baseline_runs").fill_null(lit(0)).cast(DataType::UInt32),
        ])
        .sort(KEYS.map(PlSmallStr::from).to_vec(), SortMultipleOptions::default()))
}

/// Runs the query and turns the frame into rows.
pub fn summarize(measurements: LazyFrame) -> PolarsResult<Vec<SummaryRow>> {
    let df = summary_frame(measurements)?.collect()?;
    let s = |name: &str| df.column(name).and_then(|c| c.str().cloned());
    let f = |name: &str| df.column(name).and_then(|c| c.cast(&DataType::Float64)?.f64().cloned());
    let (host, probe, metric, params, unit) =
        (s(col::HOST)?, s(col::PROBE)?, s(col::METRIC)?, s(col::PARAMS)?, s(col::UNIT)?);
    let hib = df.column(col::HIGHER_IS_BETTER)?.bool()?.clone();
    let latest_at = df
        .column("latest_at")?
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
        .datetime()?
        .physical()
        .clone();
    let (latest, latest_cv, baseline, change) =
        (f("latest")?, f("latest_cv")?, f("baseline_median")?, f("change")?);
    let runs = df.column("baseline_runs")?.u32()?.clone();
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let at = latest_at
            .get(i)
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        rows.push(SummaryRow {
            host: host.get(i).unwrap_or_default().to_string(),
            probe: probe.get(i).unwrap_or_default().to_string(),
            metric: metric.get(i).unwrap_or_default().to_string(),
            params: params.get(i).unwrap_or_default().to_string(),
            unit: unit.get(i).unwrap_or_default().to_string(),
            higher_is_better: hib.get(i).unwrap_or(true),
            latest_at: at,
            latest: latest.get(i).unwrap_or(f64::NAN),
            latest_cv: latest_cv.get(i),
            baseline_median: baseline.get(i),
            baseline_runs: runs.get(i).unwrap_or(0),
            change: change.get(i),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rows: &[(&str, &str, i64, f64)]) -> LazyFrame {
        let n = rows.len();
        df!(
            col::RUN_ID => (0..n).map(|i| format!("run-{i}")).collect::<Vec<_>>(),
            col::HOST => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            col::PROBE => vec!["cpu.aes_gcm"; n],
            col::METRIC => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            col::PARAMS => vec!["buffer=16KiB"; n],
            col::UNIT => vec!["MB/s"; n],
            col::HIGHER_IS_BETTER => vec![true; n],
            col::STARTED_AT => rows.iter().map(|r| r.2 * 86_400_000_000).collect::<Vec<_>>(),
            col::VALUE => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            col::CV => vec![0.01; n],
        )
        .unwrap()
        .lazy()
        .with_column(
            col(col::STARTED_AT).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))),
        )
    }

    #[test]
    fn latest_against_the_median_of_the_seven_runs_before() {
        // Ten nights, out of order on purpose; the first two fall outside the baseline window.
        let mut rows: Vec<(&str, &str, i64, f64)> = vec![("a", "encrypt_1t", 9, 80.0)];
        for (day, v) in [
            (0, 1000.0),
            (1, 1000.0),
            (2, 100.0),
            (3, 101.0),
            (4, 99.0),
            (5, 100.0),
            (6, 102.0),
            (7, 98.0),
            (8, 100.0),
        ] {
            rows.push(("a", "encrypt_1t", day, v));
        }
        rows.push(("b", "encrypt_1t", 3, 50.0));
        let out = summarize(frame(&rows)).unwrap();
        assert_eq!(out.len(), 2);
        let a = &out[0];
        assert_eq!((a.host.as_str(), a.latest, a.baseline_runs), ("a", 80.0, 7));
        assert_eq!(a.baseline_median, Some(100.0));
        assert!((a.change.unwrap() + 0.2).abs() < 1e-12);
        assert_eq!(a.improved(), Some(false));
        assert!(a.latest_at.starts_with("1970-01-10T"), "{}", a.latest_at);
        let b = &out[1];
        assert_eq!((b.latest, b.baseline_runs, b.baseline_median, b.change), (50.0, 0, None, None));
    }

    #[test]
    fn a_unit_change_starts_a_new_series() {
        // Nights 0–2 in µs, 3–4 in ns: two series, neither compared across the change.
        let rows: Vec<(&str, &str, i64, f64)> =
            (0..5).map(|d| ("a", "encrypt_1t", d, if d < 3 { 300.0 } else { 300_000.0 })).collect();
        let lf = frame(&rows).with_columns([when(col(col::VALUE).gt(lit(1000.0)))
            .then(lit("ns"))
            .otherwise(lit("us"))
            .alias(col::UNIT)]);
        let out = summarize(lf).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        let ns = out.iter().find(|r| r.unit == "ns").unwrap();
        assert_eq!((ns.latest, ns.baseline_runs, ns.change), (300_000.0, 1, Some(0.0)));
    }

    #[test]
    fn series_are_split_by_metric() {
        let rows = [("a", "encrypt_1t", 0, 1.0), ("a", "decrypt_1t", 0, 2.0), ("a", "decrypt_1t", 1, 4.0)];
        let out = summarize(frame(&rows)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].metric.as_str(), out[0].change), ("decrypt_1t", Some(1.0)));
        assert_eq!(out[1].metric, "encrypt_1t");
    }
}
