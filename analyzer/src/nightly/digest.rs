//! The morning digest: what needs attention, grouped so that one host's bad night is one
//! incident, not a dozen alerts. Written last, as `analysis/digest/date=NIGHT/digest.json`: its
//! presence says the night's tables and state are complete.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::analyses::anomalies::{Anomaly, Direction};
use crate::analyses::forecast::{Forecast, Outlook};
use crate::analyses::outliers::{Outlier, Side};
use crate::analyses::stability::{Grade, Stability};
use crate::analyses::trends::Trend;
use crate::load::SkippedFile;

pub const DIGEST_SCHEMA: &str = "fathom.digest/1";
/// Worsening trends listed by name (the rest are counted).
const TOP_TRENDS: usize = 20;
/// Forecast crossings within this many days are listed.
const FORECAST_DAYS: u64 = 90;
/// A host without a run on the night or the night before is silent (a collector down, a
/// schedule dropped), until it has been silent for [`super::STALE_NIGHTS`]: then it is retired.
pub const SILENT_AFTER_NIGHTS: i64 = 2;

/// A host that stopped reporting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilentHost {
    pub host: String,
    pub class: String,
    /// The night of its latest run.
    pub last_run: NaiveDate,
    pub nights_silent: i64,
}

/// One metric's change in an incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentChange {
    pub metric: String,
    pub unit: String,
    pub direction: Direction,
    pub before: f64,
    pub after: f64,
    pub magnitude: f64,
    pub confidence: f64,
}

/// The changes one host showed from one night on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub host: String,
    pub class: Option<String>,
    pub date: NaiveDate,
    /// degradation, improvement, or mixed.
    pub kind: &'static str,
    pub probes: Vec<String>,
    /// The largest |magnitude| among its degradations (or improvements when there are none).
    pub worst_magnitude: f64,
    pub changes: Vec<IncidentChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendBrief {
    pub host: String,
    pub metric: String,
    pub unit: String,
    pub slope_per_30d: Option<f64>,
    pub slope_low: Option<f64>,
    pub slope_high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub schema: &'static str,
    pub night: NaiveDate,
    /// full (every partition read) or incremental (the kept state and the new partitions).
    pub mode: &'static str,
    pub dataset: String,
    pub series: usize,
    pub hosts: usize,
    /// Partitions read this time.
    pub partitions_read: usize,
    /// Change points from this many nights back are incidents.
    pub recent_nights: u32,
    pub incidents: Vec<Incident>,
    pub degradations: usize,
    pub improvements: usize,
    pub fleet_outliers: Vec<Outlier>,
    pub worsening_trends: usize,
    pub top_worsening_trends: Vec<TrendBrief>,
    pub forecasts: Vec<Forecast>,
    pub noisy_series: usize,
    /// Hosts silent for 2 to 30 nights, longest first; after that they are retired (their
    /// series leave the analyses) and only counted.
    pub silent_hosts: Vec<SilentHost>,
    pub retired_hosts: usize,
    pub skipped_files: Vec<SkippedFile>,
}

/// Ongoing change points from the last `recent` nights, one incident per host and night:
/// degradations first, then by the largest change.
pub fn incidents(
    changes: &[Anomaly],
    classes: &BTreeMap<String, String>,
    night: NaiveDate,
    recent: u32,
) -> Vec<Incident> {
    let first = night.checked_sub_days(Days::new(u64::from(recent.saturating_sub(1)))).unwrap_or(night);
    let mut groups: BTreeMap<(&str, NaiveDate), Vec<&Anomaly>> = BTreeMap::new();
    for a in changes.iter().filter(|a| a.ongoing && a.date >= first && a.date <= night) {
        groups.entry((&a.key.host, a.date)).or_default().push(a);
    }
    let mut out: Vec<Incident> = groups
        .into_iter()
        .map(|((host, date), members)| {
            let worse = members.iter().filter(|a| a.direction == Direction::Degradation).count();
            let kind = match (worse, members.len() - worse) {
                (0, _) => "improvement",
                (_, 0) => "degradation",
                _ => "mixed",
            };
            let counted = |a: &&&Anomaly| worse == 0 || a.direction == Direction::Degradation;
            let worst = members.iter().filter(counted).map(|a| a.magnitude.abs()).fold(0.0, f64::max);
            let mut probes: Vec<String> = members.iter().map(|a| a.key.probe.clone()).collect();
            probes.sort();
            probes.dedup();
            Incident {
                host: host.to_string(),
                class: classes.get(host).cloned(),
                date,
                kind,
                probes,
                worst_magnitude: worst,
                changes: members
                    .iter()
                    .map(|a| IncidentChange {
                        metric: a.key.metric_label(),
                        unit: a.key.unit.clone(),
                        direction: a.direction,
                        before: a.before,
                        after: a.after,
                        magnitude: a.magnitude,
                        confidence: a.confidence,
                    })
                    .collect(),
            }
        })
        .collect();
    let rank = |i: &Incident| match i.kind {
        "degradation" => 0,
        "mixed" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then(b.worst_magnitude.total_cmp(&a.worst_magnitude)).then(a.host.cmp(&b.host))
    });
    out
}

pub struct Findings<'a> {
    pub changes: &'a [Anomaly],
    pub trends: &'a [Trend],
    pub stability: &'a [Stability],
    pub outliers: &'a [Outlier],
    pub forecasts: &'a [Forecast],
    pub classes: &'a BTreeMap<String, String>,
    /// Each host's latest run.
    pub hosts: &'a super::state::HostMap,
}

fn silent_hosts(hosts: &super::state::HostMap, night: NaiveDate) -> (Vec<SilentHost>, usize) {
    let mut silent = Vec::new();
    let mut retired = 0;
    for (host, h) in hosts {
        let last_run = crate::series::night_of(h.started_at);
        let nights_silent = (night - last_run).num_days();
        if nights_silent > super::STALE_NIGHTS {
            retired += 1;
        } else if nights_silent >= SILENT_AFTER_NIGHTS {
            silent.push(SilentHost { host: host.clone(), class: h.class.clone(), last_run, nights_silent });
        }
    }
    silent.sort_by(|a, b| b.nights_silent.cmp(&a.nights_silent).then(a.host.cmp(&b.host)));
    (silent, retired)
}

#[allow(clippy::too_many_arguments)]
pub fn digest(
    f: &Findings,
    night: NaiveDate,
    mode: &'static str,
    dataset: String,
    partitions_read: usize,
    recent: u32,
    skipped_files: Vec<SkippedFile>,
) -> Digest {
    let incidents = incidents(f.changes, f.classes, night, recent);
    let count = |kind: &str| incidents.iter().filter(|i| i.kind == kind).count();
    let mut worsening: Vec<&Trend> = f.trends.iter().filter(|t| t.worsening).collect();
    worsening.sort_by(|a, b| {
        let steep = |t: &Trend| t.slope_per_30d.unwrap_or(0.0).abs();
        steep(b).total_cmp(&steep(a)).then(a.key.cmp(&b.key))
    });
    let horizon = night.checked_add_days(Days::new(FORECAST_DAYS)).unwrap_or(night);
    let hosts: std::collections::BTreeSet<&str> = f.stability.iter().map(|s| s.key.host.as_str()).collect();
    let (silent, retired_hosts) = silent_hosts(f.hosts, night);
    Digest {
        schema: DIGEST_SCHEMA,
        night,
        mode,
        dataset,
        series: f.stability.len(),
        hosts: hosts.len(),
        partitions_read,
        recent_nights: recent,
        degradations: count("degradation") + count("mixed"),
        improvements: count("improvement"),
        incidents,
        fleet_outliers: f.outliers.iter().filter(|o| o.side == Side::Worse).cloned().collect(),
        worsening_trends: worsening.len(),
        top_worsening_trends: worsening
            .iter()
            .take(TOP_TRENDS)
            .map(|t| TrendBrief {
                host: t.key.host.clone(),
                metric: t.key.metric_label(),
                unit: t.key.unit.clone(),
                slope_per_30d: t.slope_per_30d,
                slope_low: t.slope_low,
                slope_high: t.slope_high,
            })
            .collect(),
        forecasts: f
            .forecasts
            .iter()
            .filter(|x| {
                x.outlook == Outlook::Breached
                    || (x.outlook == Outlook::Crosses && x.date.is_some_and(|d| d <= horizon))
            })
            .cloned()
            .collect(),
        noisy_series: f.stability.iter().filter(|s| s.grade == Grade::Noisy).count(),
        silent_hosts: silent,
        retired_hosts,
        skipped_files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::SeriesKey;

    fn change(host: &str, metric: &str, date: u32, magnitude: f64, ongoing: bool) -> Anomaly {
        Anomaly {
            key: SeriesKey {
                host: host.into(),
                probe: "storage.rand4k".into(),
                metric: metric.into(),
                params: String::new(),
                unit: "IOPS".into(),
            },
            higher_is_better: true,
            direction: Direction::of(magnitude, true),
            date: NaiveDate::from_ymd_opt(2026, 3, date).unwrap(),
            at: 0,
            before: 100.0,
            after: 100.0 * (1.0 + magnitude),
            magnitude,
            confidence: 0.9999,
            ongoing,
            runs_since: 1,
        }
    }

    #[test]
    fn one_host_one_night_is_one_incident() {
        let changes = [
            change("db-01", "read_iops", 10, -0.3, true),
            change("db-01", "write_iops", 10, -0.25, true),
            change("db-01", "read_lat_p99", 10, -0.2, true),
            change("db-02", "read_iops", 9, 0.1, true),
            // Too old, and no longer holding: not incidents.
            change("db-03", "read_iops", 1, -0.5, true),
            change("db-04", "read_iops", 10, -0.5, false),
        ];
        let night = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        let found = incidents(&changes, &BTreeMap::new(), night, 7);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].host.as_str(), found[0].kind, found[0].changes.len()),
            ("db-01", "degradation", 3)
        );
        assert!((found[0].worst_magnitude - 0.3).abs() < 1e-12);
        assert_eq!(found[0].probes, ["storage.rand4k"]);
        assert_eq!((found[1].host.as_str(), found[1].kind), ("db-02", "improvement"));
        assert!(incidents(&changes, &BTreeMap::new(), night, 1).iter().all(|i| i.date == night));
    }
}
