//! `rank`: every target host compared with the same source, best first (the seed's target
//! selection). Each host is a side of its own: its last K runs, as in `compare`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compare::{CompareReport, HostRuns, SeriesStat, Side, Weights};

/// One target host's place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub rank: usize,
    pub host: String,
    pub report: CompareReport,
}

/// Ranks `targets` (per-host stats from `side_stats(.., per_host = true)`) against `source`:
/// hosts measured in every weighted category before the others, then by overall score,
/// highest first; hosts without a score last; ties by host name.
pub fn rank(
    source: &Side,
    target_selector: &str,
    hosts: Vec<HostRuns>,
    stats: Vec<SeriesStat>,
    weights: &Weights,
    last: usize,
) -> Vec<Ranked> {
    let mut by_host: BTreeMap<String, Vec<SeriesStat>> = BTreeMap::new();
    for s in stats {
        by_host.entry(s.host.clone().unwrap_or_default()).or_default().push(s);
    }
    let mut ranked: Vec<Ranked> = hosts
        .into_iter()
        .map(|h| {
            let stats = by_host.remove(&h.host).unwrap_or_default();
            let host = h.host.clone();
            let target = Side { selector: format!("{target_selector} (host={host})"), hosts: vec![h], stats };
            Ranked {
                rank: 0,
                host,
                report: CompareReport::new(source.clone(), target, weights.clone(), last),
            }
        })
        .collect();
    // Hosts scored on every weighted category first: a host whose storage probe failed would
    // otherwise be ranked on a smaller, easier basis than the others.
    let incomplete = |r: &Ranked| r.report.comparison.missing_categories.iter().any(|m| weights.of(m) > 0.0);
    ranked.sort_by(|a, b| {
        let (x, y) = (a.report.comparison.overall_score, b.report.comparison.overall_score);
        incomplete(a)
            .cmp(&incomplete(b))
            .then_with(|| match (x, y) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.host.cmp(&b.host))
    });
    for (i, r) in ranked.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    ranked
}
