//! `anomalies`, part two: fleet outliers, hosts whose recent performance is far from their peers
//! of the same hardware class.
//!
//! # Method
//!
//! 1. A host's **recent level** on a series is the median of its last `RECENT_RUNS` undisturbed
//!    runs (at least 5).
//! 2. **Peers** are the hosts of the same hardware class (the `hw_class` label, else the host
//!    facts: CPU model, cores, memory, virtualization) with the same probe, metric, params and
//!    unit; a group needs `MIN_PEERS` hosts.
//! 3. Per metric, a **robust z-score** of each host's log level against its peers: (x − median) /
//!    (1.4826 · MAD), the MAD floored at `MIN_SPREAD` (identical VMs must not be outliers for a
//!    1 % difference), signed so that negative is worse whatever the metric's direction.
//! 4. Per host and probe, the **median z over the probe's metrics**: a slow disk is slow on IOPS
//!    and latency alike, a single wild metric is not a slow host. A host is an outlier on a probe
//!    when that median is beyond ±`Z_LIMIT` and its median gap to the peers is at least
//!    `MIN_GAP`; the report names the probe, the gap and the metric furthest out.
//! 5. **One metric alone** is enough when it is far out: |z| ≥ `METRIC_Z_LIMIT` (8) and a gap of
//!    at least `METRIC_MIN_GAP` (15 %). A probe's metrics can measure different parts of the
//!    machine (main memory and three cache levels), and a host with 40 % slower main memory is
//!    slow though its caches match. Such a row has basis `metric` and its own z and gap; the
//!    metric named is the furthest out among those that qualify, so a tight metric slightly
//!    off (a large z, a small gap) does not hide one far off.
//!
//! Scores rather than clusters: with tens of hosts per class and a known grouping, a robust score
//! per metric says which figure is off and by how much, where a clustering (k-means, DBSCAN over
//! the z vectors) would flag the same hosts without saying why.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runs::RunInfo;
use crate::series::{NightlySeries, finite_median, last_finite};

pub const RECENT_RUNS: usize = 14;
pub const MIN_PEERS: usize = 5;
/// Floor of the peers' spread (log units, about 1 %).
pub const MIN_SPREAD: f64 = 0.01;
pub const Z_LIMIT: f64 = 4.0;
pub const MIN_GAP: f64 = 0.05;
/// One metric alone makes an outlier this far out: a host whose main-memory latency is 40 %
/// worse is slow even though its caches, the probe's other metrics, are like its peers'.
pub const METRIC_Z_LIMIT: f64 = 8.0;
pub const METRIC_MIN_GAP: f64 = 0.15;

/// What put a host on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The probe's metrics as a whole (their median).
    Probe,
    /// One metric far out on its own.
    Metric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Worse,
    Better,
}

/// One host far from its peers on one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlier {
    pub host: String,
    pub class: String,
    pub probe: String,
    pub side: Side,
    /// Hosts in the class with this probe (the host included), the fewest over its metrics.
    pub peers: usize,
    /// Median over the probe's metrics of the robust z (negative: worse).
    pub score: f64,
    /// Median relative performance gap to the peers' median (−0.3: 30 % worse), by direction.
    pub gap: f64,
    /// The metric furthest out, with its own value and the peers' median.
    pub worst_metric: String,
    pub worst_value: f64,
    pub peer_median: f64,
    /// The worst metric's own robust z and gap.
    pub worst_score: f64,
    pub worst_gap: f64,
    pub metrics: usize,
    pub basis: Basis,
}

impl Outlier {
    /// The robust z and the gap that put the host on the list: the probe's medians, or the one
    /// metric's own.
    pub fn flagged(&self) -> (f64, f64) {
        match self.basis {
            Basis::Probe => (self.score, self.gap),
            Basis::Metric => (self.worst_score, self.worst_gap),
        }
    }

    /// The probe, marked when one metric alone put the host on the list.
    pub fn what(&self) -> String {
        match self.basis {
            Basis::Probe => self.probe.clone(),
            Basis::Metric => format!("{} (one metric)", self.probe),
        }
    }
}

/// Each host's hardware class, from its latest run: the `hw_class` label where the collector
/// was given one, else the facts that make machines alike (CPU model, cores, memory rounded to
/// GiB, virtualization).
pub fn host_classes(runs: &[RunInfo]) -> BTreeMap<String, String> {
    let mut latest: BTreeMap<&str, &RunInfo> = BTreeMap::new();
    for r in runs {
        let e = latest.entry(&r.host).or_insert(r);
        if (r.started_at, &r.run_id) > (e.started_at, &e.run_id) {
            *e = r;
        }
    }
    latest.into_iter().map(|(host, r)| (host.to_string(), class_of(r))).collect()
}

/// The hardware class one run gives its host (see [`host_classes`]).
pub fn class_of(r: &RunInfo) -> String {
    match r.labels.get("hw_class").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None => {
            let f = &r.facts;
            let virt = if f.virtualization.is_empty() { "metal" } else { &f.virtualization };
            format!(
                "{} / {} cores / {} GiB / {virt}",
                f.cpu_model,
                f.cpu_cores,
                (f.mem_bytes + (1 << 29)) >> 30
            )
        }
    }
}

struct Level<'a> {
    series: &'a NightlySeries,
    log_level: f64,
}

/// Fleet outliers, sorted by class, host and probe.
pub fn fleet_outliers(series: &[NightlySeries], class_of: &BTreeMap<String, String>) -> Vec<Outlier> {
    // (class, probe, metric, params, unit) → the hosts' levels.
    let mut groups: BTreeMap<(&str, &str, &str, &str, &str), Vec<Level>> = BTreeMap::new();
    for s in series {
        let Some(class) = class_of.get(&s.key.host) else { continue };
        let recent = last_finite(&s.clean_values(), RECENT_RUNS);
        if recent.len() < 5 {
            continue;
        }
        let Some(level) = finite_median(&recent).filter(|l| *l > 0.0) else { continue };
        let k = &s.key;
        groups
            .entry((class, &k.probe, &k.metric, &k.params, &k.unit))
            .or_default()
            .push(Level { series: s, log_level: level.ln() });
    }
    // (class, host, probe) → per metric (z, gap, series, peers, peer median).
    type Scored<'a> = Vec<(f64, f64, &'a NightlySeries, usize, f64)>;
    let mut by_host: BTreeMap<(&str, &str, &str), Scored> = BTreeMap::new();
    for ((class, probe, ..), levels) in &groups {
        if levels.len() < MIN_PEERS {
            continue;
        }
        let logs: Vec<f64> = levels.iter().map(|l| l.log_level).collect();
        let center = finite_median(&logs).unwrap_or(0.0);
        let deviations: Vec<f64> = logs.iter().map(|x| (x - center).abs()).collect();
        let spread = (1.4826 * finite_median(&deviations).unwrap_or(0.0)).max(MIN_SPREAD);
        for l in levels {
            let sign = if l.series.higher_is_better { 1.0 } else { -1.0 };
            let diff = sign * (l.log_level - center);
            by_host.entry((class, &l.series.key.host, probe)).or_default().push((
                diff / spread,
                diff.exp() - 1.0,
                l.series,
                levels.len(),
                center.exp(),
            ));
        }
    }
    let mut out = Vec::new();
    for ((class, host, probe), scored) in by_host {
        let score = finite_median(&scored.iter().map(|s| s.0).collect::<Vec<_>>()).unwrap_or(0.0);
        let gap = finite_median(&scored.iter().map(|s| s.1).collect::<Vec<_>>()).unwrap_or(0.0);
        let probe_wide = score.abs() >= Z_LIMIT && gap.abs() >= MIN_GAP;
        // The metric furthest out: on the probe's side when the probe as a whole is out, else
        // among the metrics far enough out on their own (a 12 % gap on a tight metric can
        // have the larger z and still not qualify, while a 20 % one does).
        let candidates = scored
            .iter()
            .filter(|s| probe_wide || (s.0.abs() >= METRIC_Z_LIMIT && s.1.abs() >= METRIC_MIN_GAP));
        // One row a host and probe: on its own, a metric far worse goes before one far better.
        let far = |x: f64| if probe_wide { (true, x * score.signum()) } else { (x < 0.0, x.abs()) };
        let Some(worst) = candidates.max_by(|a, b| {
            let ((wa, xa), (wb, xb)) = (far(a.0), far(b.0));
            wa.cmp(&wb).then(xa.total_cmp(&xb))
        }) else {
            continue;
        };
        let basis = if probe_wide { Basis::Probe } else { Basis::Metric };
        let direction = if probe_wide { score } else { worst.0 };
        let recent = last_finite(&worst.2.clean_values(), RECENT_RUNS);
        out.push(Outlier {
            host: host.to_string(),
            class: class.to_string(),
            probe: probe.to_string(),
            side: if direction < 0.0 { Side::Worse } else { Side::Better },
            peers: scored.iter().map(|s| s.3).min().unwrap_or(0),
            score,
            gap,
            worst_metric: worst.2.key.metric_label(),
            worst_value: finite_median(&recent).unwrap_or(f64::NAN),
            peer_median: worst.4,
            worst_score: worst.0,
            worst_gap: worst.1,
            metrics: scored.len(),
            basis,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn host_series(host: &str, metric: &str, level: f64, higher_is_better: bool) -> NightlySeries {
        let mut s =
            series(&(0..20).map(|i| level * (1.0 + 0.005 * ((i % 3) as f64 - 1.0))).collect::<Vec<_>>(), &[]);
        s.key.host = host.into();
        s.key.metric = metric.into();
        s.higher_is_better = higher_is_better;
        s
    }

    #[test]
    fn a_slow_disk_is_an_outlier_among_its_peers_and_not_in_another_class() {
        let mut series = Vec::new();
        let mut class_of = BTreeMap::new();
        for h in 0..12 {
            let host = format!("db-{h:02}");
            // Peers spread ±2 %; db-07's disk is 35 % slower on IOPS and latency alike.
            let f = 1.0 + 0.02 * ((h % 5) as f64 - 2.0) / 2.0;
            let slow = if h == 7 { 0.65 } else { 1.0 };
            series.push(host_series(&host, "read_iops", 50_000.0 * f * slow, true));
            series.push(host_series(&host, "read_lat_p99", 200.0 / (f * slow), false));
            class_of.insert(host, "genoa".to_string());
        }
        // A host of a slower class is compared with nobody (fewer than MIN_PEERS there).
        series.push(host_series("old-01", "read_iops", 10_000.0, true));
        class_of.insert("old-01".into(), "skylake".into());
        let found = fleet_outliers(&series, &class_of);
        assert_eq!(found.len(), 1, "{found:?}");
        let o = &found[0];
        assert_eq!(
            (o.host.as_str(), o.side, o.metrics, o.peers, o.basis),
            ("db-07", Side::Worse, 2, 12, Basis::Probe)
        );
        assert!((o.gap + 0.35).abs() < 0.03, "{}", o.gap);
        assert!(o.score < -Z_LIMIT);
        // Without a class the host is not scored at all.
        class_of.remove("db-07");
        assert!(fleet_outliers(&series, &class_of).is_empty());
    }

    #[test]
    fn one_metric_far_out_is_an_outlier_on_its_own() {
        // Five cache and memory latencies per host; mem-04's main memory is 40 % slower and
        // its caches are like everyone's, so the probe's median z is 0.
        let metrics = ["latency", "latency_l1", "latency_l2", "latency_llc", "latency_ws"];
        let build = |slow: f64| {
            let mut series = Vec::new();
            let mut class_of = BTreeMap::new();
            for h in 0..12 {
                let host = format!("mem-{h:02}");
                let f = 1.0 + 0.02 * ((h % 5) as f64 - 2.0) / 2.0;
                for (i, m) in metrics.iter().enumerate() {
                    let worse = if h == 4 && i == 0 { slow } else { 1.0 };
                    series.push(host_series(&host, m, 90.0 / f * worse, false));
                }
                class_of.insert(host, "icelake".to_string());
            }
            fleet_outliers(&series, &class_of)
        };
        let found = build(1.4);
        assert_eq!(found.len(), 1, "{found:?}");
        let o = &found[0];
        assert_eq!((o.host.as_str(), o.side, o.basis, o.metrics), ("mem-04", Side::Worse, Basis::Metric, 5));
        assert!(o.score.abs() < Z_LIMIT, "the probe as a whole is not out: {}", o.score);
        let (z, gap) = o.flagged();
        assert!(z <= -METRIC_Z_LIMIT && (gap + 0.4 / 1.4).abs() < 0.03, "{z} {gap}");
        assert!(o.worst_metric.contains("latency") && o.what().ends_with("(one metric)"));
        // 10 % slower on one metric out of five is not enough on its own.
        assert!(build(1.1).is_empty());
    }

    #[test]
    fn a_tight_metric_near_the_limit_does_not_mask_one_far_out() {
        // mem-04: L1 latency 12 % up on identical peers (z ≈ −11, but a gap of 11 %, short of
        // 15 %), main-memory latency 50 % up on peers spread ±4 % (z ≈ −10, a gap of 36 %).
        let mut series = Vec::new();
        let mut class_of = BTreeMap::new();
        for h in 0..12 {
            let host = format!("mem-{h:02}");
            let spread = 1.0 + 0.04 * ((h % 5) as f64 - 2.0) / 2.0;
            let (l1, main) = if h == 4 { (1.12, 1.5) } else { (1.0, 1.0) };
            series.push(host_series(&host, "latency_l1", 1.2 * l1, false));
            series.push(host_series(&host, "latency", 90.0 * spread * main, false));
            for m in ["latency_l2", "latency_llc", "latency_ws"] {
                series.push(host_series(&host, m, 10.0, false));
            }
            class_of.insert(host, "icelake".to_string());
        }
        let found = fleet_outliers(&series, &class_of);
        assert_eq!(found.len(), 1, "{found:?}");
        let o = &found[0];
        assert_eq!((o.host.as_str(), o.basis), ("mem-04", Basis::Metric));
        assert!(o.worst_metric.ends_with(".latency"), "{}", o.worst_metric);
        assert!(o.worst_score <= -METRIC_Z_LIMIT && o.worst_gap <= -METRIC_MIN_GAP, "{o:?}");
    }

    #[test]
    fn identical_peers_do_not_make_a_small_difference_an_outlier() {
        let mut series = Vec::new();
        let mut class_of = BTreeMap::new();
        for h in 0..8 {
            let host = format!("vm-{h}");
            let level = if h == 3 { 1030.0 } else { 1000.0 };
            series.push(host_series(&host, "read_iops", level, true));
            class_of.insert(host, "vm".to_string());
        }
        assert!(fleet_outliers(&series, &class_of).is_empty());
    }
}
