//! Text tables of the fleet analyses (trends, anomalies, stability, forecasts, deltas): the
//! findings first, one line each; the JSON output has every series.

use fathom_datasets::human::format_value;

use crate::analyses::anomalies::Anomaly;
use crate::analyses::delta::{HostDelta, MetricRollup};
use crate::analyses::delta_stats::Verdict;
use crate::analyses::evaluate::{Evaluation, Score, bucket_order};
use crate::analyses::forecast::{Forecast, Outlook};
use crate::analyses::outliers::Outlier;
use crate::analyses::stability::{Grade, Stability};
use crate::analyses::trends::Trend;
use crate::nightly::digest::Digest;
use crate::series::metric_label;

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
                let (z, gap) = o.flagged();
                vec![
                    o.host.clone(),
                    o.class.clone(),
                    o.what(),
                    percent(gap),
                    format!("{z:+.1}"),
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

/// `delta`: the per-metric fleet verdicts, then the hosts that changed (every series with
/// `all`).
pub fn deltas(rollups: &[MetricRollup], hosts: &[HostDelta], all: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let pct = |x: Option<f64>| x.map(percent).unwrap_or_else(|| "-".into());
    let interval = |lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
        (Some(l), Some(h)) => format!("[{}, {}]", percent(l), percent(h)),
        _ => "-".into(),
    };
    let cells: Vec<Vec<String>> = rollups
        .iter()
        .map(|r| {
            vec![
                metric_label(&r.probe, &r.metric, &r.params),
                r.fleet.verdict.as_str().into(),
                pct(r.fleet.median_change),
                interval(r.fleet.ci_low, r.fleet.ci_high),
                r.fleet.hosts.to_string(),
                format!(
                    "{}/{}/{}/{}",
                    r.fleet.improved, r.fleet.regressed, r.fleet.no_change, r.fleet.inconclusive
                ),
            ]
        })
        .collect();
    let _ = writeln!(out, "fleet, per metric (median over hosts, sign-test interval):");
    out.push_str(&table(
        &["metric", "verdict", ">change", ">95% interval", ">hosts", "improved/regressed/same/unsure"],
        &cells,
    ));
    let notable: Vec<_> = hosts.iter().filter(|h| all || h.verdict != Verdict::NoChange).collect();
    if !notable.is_empty() {
        let cells: Vec<Vec<String>> = notable
            .iter()
            .map(|h| {
                vec![
                    h.key.host.clone(),
                    h.key.metric_label(),
                    h.verdict.as_str().into(),
                    pct(h.change),
                    interval(h.ci_low, h.ci_high),
                    format!(
                        "{} → {}",
                        h.before_median.map(format_value).unwrap_or_default(),
                        h.after_median.map(format_value).unwrap_or_default()
                    ),
                    format!("{}/{}", h.before_nights, h.after_nights),
                    h.nights_needed.map(|n| format!("{n} a side")).unwrap_or_default(),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "\nper host{}:",
            if all { "" } else { " (all but no change; --all for every series)" }
        );
        out.push_str(&table(
            &["host", "metric", "verdict", ">change", ">95% interval", "median", ">nights", "to settle"],
            &cells,
        ));
    }
    out
}

/// A share as a percentage with at most one decimal: 0.05 → "5", 0.015 → "1.5".
fn share_text(x: f64) -> String {
    let text = format!("{:.1}", 100.0 * x);
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// `evaluate`: precision, recall, delays and false alarms, then recall by size and noise.
pub fn evaluation(e: &Evaluation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ratio = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    let nights = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "{} series ({:.1} series-years), {} labelled changes ({} on series not in the dataset)",
        e.series, e.series_years, e.overall.labels, e.labels_without_series
    );
    let _ = writeln!(
        out,
        "looking back: precision {} ({} of {} reports right, {} in neutral zones), recall {} ({} found within {} nights)",
        ratio(e.precision),
        e.true_reports,
        e.true_reports + e.false_reports,
        e.neutral_reports,
        ratio(e.overall.recall),
        e.overall.found,
        e.tolerance_nights
    );
    let _ = writeln!(
        out,
        "night by night: median delay {} nights, 90th percentile {} ({} of {} found within 30 nights)",
        nights(e.overall.median_delay),
        nights(e.overall.p90_delay),
        e.overall.found_night_by_night,
        e.overall.labels
    );
    let rate = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "false alarms: {} per 1,000 series-years; on the {} series without any label, {} reports, {} per 1,000 series-years",
        rate(e.false_per_1000_series_years),
        e.quiet_series,
        e.quiet_reports,
        rate(e.quiet_per_1000_series_years)
    );
    let h = &e.headline;
    let _ = writeln!(
        out,
        "steps of {} % or more on series at CV ≤ {} %: recall {} ({} of {}), precision {} ({} right, {} nearest such a change but more than {} nights off or a second report of it, {} false alarms), median delay {} nights, 90th percentile {}",
        share_text(h.min_step),
        share_text(h.max_cv),
        ratio(h.recall),
        h.found,
        h.labels,
        ratio(h.precision),
        h.true_reports,
        h.misplaced_reports,
        e.tolerance_nights,
        h.false_alarms,
        nights(h.median_delay),
        nights(h.p90_delay)
    );
    if !e.by_size.is_empty() {
        let mut sizes: Vec<(String, &Score)> = e.by_size.iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut noises: Vec<(String, &Score)> = e.by_noise.iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut both: Vec<(String, &Score)> =
            e.by_size_and_noise.iter().map(|(k, v)| (k.clone(), v)).collect();
        for rows in [&mut sizes, &mut noises, &mut both] {
            rows.sort_by_key(|(k, _)| bucket_order(k));
        }
        let cells: Vec<Vec<String>> = sizes
            .into_iter()
            .chain(noises)
            .chain(both)
            .map(|(size, s)| {
                vec![
                    size.to_string(),
                    s.labels.to_string(),
                    ratio(s.recall),
                    nights(s.median_delay),
                    nights(s.p90_delay),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["size / noise", ">labels", ">recall", ">median delay", ">p90 delay"], &cells));
    }
    out
}

/// Rows of each list the text digest shows.
pub const TEXT_ROWS: usize = 30;

/// A night's digest as text: incidents, outliers, trends and forecasts, each list capped at
/// [`TEXT_ROWS`] (the JSON and the tables have every row).
pub fn digest(d: &Digest) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} incidents in the last {} nights ({} with degradations, {} improvements only)",
        d.incidents.len(),
        d.recent_nights,
        d.degradations,
        d.improvements
    );
    if !d.incidents.is_empty() {
        let cells: Vec<Vec<String>> = d
            .incidents
            .iter()
            .take(TEXT_ROWS)
            .map(|i| {
                let worst = i.changes.iter().max_by(|a, b| a.magnitude.abs().total_cmp(&b.magnitude.abs()));
                vec![
                    i.date.to_string(),
                    i.host.clone(),
                    i.kind.into(),
                    i.changes.len().to_string(),
                    i.probes.join(", "),
                    worst.map(|w| format!("{} {}", w.metric, percent(w.magnitude))).unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(&["since", "host", "kind", ">metrics", "probes", "largest change"], &cells));
        if d.incidents.len() > TEXT_ROWS {
            let _ = writeln!(
                out,
                "… and {} more (--json, or analysis/change_points)",
                d.incidents.len() - TEXT_ROWS
            );
        }
    }
    if !d.fleet_outliers.is_empty() {
        // The worst first; the rest are in the JSON and in analysis/outliers.
        let mut worst: Vec<_> = d.fleet_outliers.iter().collect();
        worst.sort_by(|a, b| a.flagged().0.total_cmp(&b.flagged().0));
        let hosts: std::collections::BTreeSet<&str> = worst.iter().map(|o| o.host.as_str()).collect();
        let _ = writeln!(
            out,
            "\n{} hosts far worse than their class on {} probes; the worst:",
            hosts.len(),
            worst.len()
        );
        let cells: Vec<Vec<String>> = worst
            .iter()
            .take(TEXT_ROWS)
            .map(|o| {
                vec![
                    o.host.clone(),
                    o.class.clone(),
                    o.what(),
                    percent(o.flagged().1),
                    o.worst_metric.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["host", "class", "probe", ">gap", "furthest metric"], &cells));
        if worst.len() > TEXT_ROWS {
            let _ = writeln!(out, "… and {} more (--json, or analysis/outliers)", worst.len() - TEXT_ROWS);
        }
    }
    let _ = writeln!(
        out,
        "\n{} series worsening (significant slope in the bad direction); {} noisy (CV > 5 %)",
        d.worsening_trends, d.noisy_series
    );
    for f in d.forecasts.iter().take(TEXT_ROWS) {
        let when = match f.date {
            Some(date) => format!("crosses {} {} around {date}", f.bound, format_value(f.limit)),
            None => format!("beyond its {} {}", f.bound, format_value(f.limit)),
        };
        let _ = writeln!(out, "forecast: {} {} {when}", f.key.host, f.key.metric_label());
    }
    if !d.silent_hosts.is_empty() {
        let names: Vec<String> = d
            .silent_hosts
            .iter()
            .take(TEXT_ROWS)
            .map(|h| format!("{} ({} nights, since {})", h.host, h.nights_silent, h.last_run))
            .collect();
        let more = d.silent_hosts.len().saturating_sub(TEXT_ROWS);
        let more = if more > 0 { format!(" … and {more} more") } else { String::new() };
        let _ = writeln!(out, "{} hosts silent: {}{more}", d.silent_hosts.len(), names.join(", "));
    }
    if d.retired_hosts > 0 {
        let _ = writeln!(
            out,
            "{} hosts silent for over {} nights are retired (left out of the analyses)",
            d.retired_hosts,
            crate::nightly::STALE_NIGHTS
        );
    }
    if d.forecasts.len() > TEXT_ROWS {
        let _ = writeln!(
            out,
            "… and {} more forecasts (--json, or analysis/forecasts)",
            d.forecasts.len() - TEXT_ROWS
        );
    }
    out
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
