//! Text tables of the fleet analyses (trends, anomalies, stability, forecasts, deltas): the
//! findings first, one line each; the JSON output has every series.

use fathom_datasets::human::format_value;

use crate::analyses::anomalies::Anomaly;
use crate::analyses::forecast::{Forecast, Outlook};
use crate::analyses::outliers::Outlier;
use crate::analyses::stability::{Grade, Stability};
use crate::analyses::trends::Trend;

/// Columns padded to their widest cell; a column whose header starts with '>' is right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let right: Vec<bool> = headers.iter().map(|h| h.starts_with('>')).collect();
    let names: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = names.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&names);
    for row in rows {
        out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

pub fn percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn opt_percent(x: Option<f64>) -> String {
    x.map(percent).unwrap_or_else(|| "-".into())
}

/// Notable trends: a significant slope, or a latest run 3 noise units or more off its baseline.
pub fn trends(rows: &[&Trend], total: usize) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            vec![
                t.key.host.clone(),
                t.key.metric_label(),
                format_value(t.latest),
                t.baseline.map(format_value).unwrap_or_else(|| "-".into()),
                opt_percent(t.deviation),
                t.deviation_sigmas.map(|s| format!("{s:+.1}")).unwrap_or_else(|| "-".into()),
                match (t.slope_per_30d, t.slope_low, t.slope_high) {
                    (Some(s), Some(l), Some(h)) => format!("{} [{}, {}]", percent(s), percent(l), percent(h)),
                    _ => "-".into(),
                },
                if t.worsening {
                    "worsening".into()
                } else if t.significant {
                    "improving".into()
                } else {
                    String::new()
                },
                t.key.unit.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["host", "metric", ">latest", ">baseline", ">deviation", ">σ", ">slope/30d [95%]", "trend", "unit"],
        &cells,
    );
    out.push_str(&format!(
        "{} of {total} series shown: a significant slope, or the latest run ≥ 3σ from its baseline (--all for every series)\n",
        rows.len()
    ));
    out
}

pub fn anomalies(changes: &[&Anomaly], outliers: &[Outlier]) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        out.push_str("no change points\n");
    } else {
        let cells: Vec<Vec<String>> = changes
            .iter()
            .map(|a| {
                vec![
                    a.date.to_string(),
                    a.key.host.clone(),
                    a.key.metric_label(),
                    a.direction.as_str().into(),
                    percent(a.magnitude),
                    format!("{} → {}", format_value(a.before), format_value(a.after)),
                    format!("{:.4}", a.confidence),
                    if a.ongoing { "yes".into() } else { "no".into() },
                    a.key.unit.clone(),
                ]
            })
            .collect();
        out.push_str("change points\n");
        out.push_str(&table(
            &["date", "host", "metric", "kind", ">change", "level", ">confidence", "ongoing", "unit"],
            &cells,
        ));
    }
    out.push('\n');
    if outliers.is_empty() {
        out.push_str("no fleet outliers\n");
    } else {
        let cells: Vec<Vec<String>> = outliers
            .iter()
            .map(|o| {
                vec![
                    o.host.clone(),
                    o.class.clone(),
                    o.probe.clone(),
                    percent(o.gap),
                    format!("{:+.1}", o.score),
                    o.peers.to_string(),
                    format!(
                        "{} ({} vs {})",
                        o.worst_metric,
                        format_value(o.worst_value),
                        format_value(o.peer_median)
                    ),
                ]
            })
            .collect();
        out.push_str("fleet outliers (against the median of the hosts of the same class)\n");
        out.push_str(&table(
            &["host", "class", "probe", ">gap", ">z", ">peers", "furthest metric (host vs peers)"],
            &cells,
        ));
    }
    out
}

pub fn stability(rows: &[Stability]) -> String {
    let mut sorted: Vec<&Stability> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        b.grade.cmp(&a.grade).then(b.robust_cv.unwrap_or(0.0).total_cmp(&a.robust_cv.unwrap_or(0.0)))
    });
    let cells: Vec<Vec<String>> = sorted
        .iter()
        .map(|s| {
            vec![
                s.key.host.clone(),
                s.key.metric_label(),
                s.grade.as_str().into(),
                s.robust_cv.map(|c| format!("{:.2}%", c * 100.0)).unwrap_or_else(|| "-".into()),
                format!("{:.0}%", s.disturbed_share * 100.0),
                s.runs.to_string(),
            ]
        })
        .collect();
    let mut out = table(&["host", "metric", "grade", ">robust CV", ">disturbed", ">runs"], &cells);
    let count = |g: Grade| rows.iter().filter(|s| s.grade == g).count();
    out.push_str(&format!(
        "{} series: {} steady (CV ≤ 2 %), {} fair (≤ 5 %), {} noisy, {} unknown (fewer than 5 quiet runs)\n",
        rows.len(),
        count(Grade::Steady),
        count(Grade::Fair),
        count(Grade::Noisy),
        count(Grade::Unknown)
    ));
    out
}

pub fn forecasts(rows: &[Forecast]) -> String {
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            vec![
                f.key.host.clone(),
                f.key.metric_label(),
                format!("{} {}", f.bound, format_value(f.limit)),
                f.level.map(format_value).unwrap_or_else(|| "-".into()),
                opt_percent(f.slope_per_30d),
                match f.outlook {
                    Outlook::Breached => "breached".into(),
                    Outlook::Crosses => date(f.date),
                    Outlook::NotExpected => "not expected".into(),
                    Outlook::Unknown => "unknown (too few runs)".into(),
                },
                match f.outlook {
                    Outlook::Crosses => format!(
                        "{} … {}",
                        date(f.earliest),
                        f.latest.map(|d| d.to_string()).unwrap_or_else(|| "possibly never".into())
                    ),
                    _ => String::new(),
                },
                f.key.unit.clone(),
            ]
        })
        .collect();
    table(&["host", "metric", "limit", ">level", ">slope/30d", "crosses", "95% interval", "unit"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let t =
            table(&["name", ">n"], &[vec!["a".into(), "1".into()], vec!["long name".into(), "100".into()]]);
        assert_eq!(t, "name         n\na            1\nlong name  100\n");
    }
}
