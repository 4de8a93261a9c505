//! The nightly findings as Parquet tables, one file per table per night under
//! `analysis/<table>/date=NIGHT/nightly.parquet` (schema in `datasets/README.md`), so analysts
//! query them like the measurements. No column is called `date`: that is the partition
//! column, which Hive-style readers (DuckDB, Spark) add themselves.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::analyses::anomalies::Anomaly;
use crate::analyses::forecast::{Forecast, Outlook};
use crate::analyses::outliers::{Basis, Outlier, Side};
use crate::analyses::stability::Stability;
use crate::analyses::trends::Trend;
use crate::series::SeriesKey;

/// The key columns of a per-series table, with the night in front.
fn keyed<'a, T>(
    night: NaiveDate,
    rows: &'a [T],
    key: impl Fn(&'a T) -> &'a SeriesKey,
) -> PolarsResult<DataFrame> {
    let text = |f: fn(&SeriesKey) -> &str| rows.iter().map(|r| f(key(r))).collect::<Vec<&str>>();
    df!(
        "night" => vec![night; rows.len()],
        "host" => text(|k| &k.host),
        "probe" => text(|k| &k.probe),
        "metric" => text(|k| &k.metric),
        "params" => text(|k| &k.params),
        "unit" => text(|k| &k.unit),
    )
}

fn with(mut df: DataFrame, columns: Vec<Column>) -> PolarsResult<DataFrame> {
    for c in columns {
        df.with_column(c)?;
    }
    Ok(df)
}

macro_rules! cols {
    ($rows:expr, $( $name:literal => |$r:ident| $e:expr ),+ $(,)?) => {
        vec![ $( Series::new($name.into(), $rows.iter().map(|$r| $e).collect::<Vec<_>>()).into_column() ),+ ]
    };
}

pub fn change_points(night: NaiveDate, rows: &[Anomaly]) -> PolarsResult<DataFrame> {
    with(
        keyed(night, rows, |r| &r.key)?,
        cols!(rows,
            "higher_is_better" => |r| r.higher_is_better,
            "direction" => |r| r.direction.as_str(),
            "change_date" => |r| r.date,
            "before" => |r| r.before,
            "after" => |r| r.after,
            "magnitude" => |r| r.magnitude,
            "confidence" => |r| r.confidence,
            "ongoing" => |r| r.ongoing,
            "runs_since" => |r| r.runs_since as i64,
        ),
    )
}

pub fn trends(night: NaiveDate, rows: &[Trend]) -> PolarsResult<DataFrame> {
    with(
        keyed(night, rows, |r| &r.key)?,
        cols!(rows,
            "higher_is_better" => |r| r.higher_is_better,
            "runs" => |r| r.runs as i64,
            "latest_date" => |r| r.latest_date,
            "latest" => |r| r.latest,
            "latest_disturbed" => |r| r.latest_disturbed,
            "baseline" => |r| r.baseline,
            "deviation" => |r| r.deviation,
            "deviation_sigmas" => |r| r.deviation_sigmas,
            "robust_cv" => |r| r.robust_cv,
            "fit_since" => |r| r.fit_since,
            "fit_runs" => |r| r.fit_runs as i64,
            "slope_per_30d" => |r| r.slope_per_30d,
            "slope_low" => |r| r.slope_low,
            "slope_high" => |r| r.slope_high,
            "significant" => |r| r.significant,
            "worsening" => |r| r.worsening,
        ),
    )
}

pub fn stability(night: NaiveDate, rows: &[Stability]) -> PolarsResult<DataFrame> {
    with(
        keyed(night, rows, |r| &r.key)?,
        cols!(rows,
            "higher_is_better" => |r| r.higher_is_better,
            "runs" => |r| r.runs as i64,
            "disturbed_share" => |r| r.disturbed_share,
            "robust_cv" => |r| r.robust_cv,
            "grade" => |r| r.grade.as_str(),
        ),
    )
}

pub fn outliers(night: NaiveDate, rows: &[Outlier]) -> PolarsResult<DataFrame> {
    let base = df!("night" => vec![night; rows.len()])?;
    with(
        base,
        cols!(rows,
            "host" => |r| r.host.as_str(),
            "class" => |r| r.class.as_str(),
            "probe" => |r| r.probe.as_str(),
            "side" => |r| if r.side == Side::Worse { "worse" } else { "better" },
            "peers" => |r| r.peers as i64,
            "score" => |r| r.score,
            "gap" => |r| r.gap,
            "worst_metric" => |r| r.worst_metric.as_str(),
            "worst_value" => |r| r.worst_value,
            "peer_median" => |r| r.peer_median,
            "worst_score" => |r| r.worst_score,
            "worst_gap" => |r| r.worst_gap,
            "metrics" => |r| r.metrics as i64,
            "basis" => |r| match r.basis { Basis::Probe => "probe", Basis::Metric => "metric" },
        ),
    )
}

pub fn forecasts(night: NaiveDate, rows: &[Forecast]) -> PolarsResult<DataFrame> {
    let outlook = |o: Outlook| match o {
        Outlook::Breached => "breached",
        Outlook::Crosses => "crosses",
        Outlook::NotExpected => "not_expected",
        Outlook::Unknown => "unknown",
    };
    with(
        keyed(night, rows, |r| &r.key)?,
        cols!(rows,
            "bound" => |r| r.bound,
            "limit" => |r| r.limit,
            "level" => |r| r.level,
            "last_date" => |r| r.last_date,
            "slope_per_30d" => |r| r.slope_per_30d,
            "outlook" => |r| outlook(r.outlook),
            "crossing_date" => |r| r.date,
            "earliest" => |r| r.earliest,
            "latest" => |r| r.latest,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The type names `datasets/README.md` uses.
    fn type_name(dtype: &DataType) -> &'static str {
        match dtype {
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Float64 => "double",
            DataType::Int64 => "int64",
            DataType::Date => "date",
            other => panic!("{other} has no name in the README"),
        }
    }

    #[test]
    fn the_analyst_readme_documents_every_column() {
        let readme = include_str!("../../../datasets/README.md");
        let night = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let tables = [
            ("change_points", change_points(night, &[]).unwrap()),
            ("trends", trends(night, &[]).unwrap()),
            ("stability", stability(night, &[]).unwrap()),
            ("outliers", outliers(night, &[]).unwrap()),
            ("forecasts", forecasts(night, &[]).unwrap()),
        ];
        for (name, df) in tables {
            assert!(readme.contains(&format!("### `analysis/{name}`")), "{name}");
            for c in df.columns() {
                let row = format!("| `{}` | {} |", c.name(), type_name(c.dtype()));
                assert!(readme.contains(&row), "datasets/README.md lacks `{row}` for analysis/{name}");
                assert_ne!(c.name().as_str(), "date", "{name}: `date` is the partition column");
            }
        }
    }
}
