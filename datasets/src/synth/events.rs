//! Injected events and their ground truth: steps, drifts, upgrade roll-outs and outlier hosts.
//!
//! Every event changes one host × metric level multiplicatively and is recorded with its true
//! magnitude (`after / before − 1` of the metric's own value), so the analyzer's change points,
//! deltas and fleet outliers can be scored against it.

use chrono::{Days, NaiveDate};
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

use super::fleet::{Effect, Host, probe_params};
use super::{Stream, rng_for};
use crate::catalogue::{METRICS, MetricSpec, PROBES};

/// Nights at the start without steps, drifts or upgrades, so detectors have a baseline.
pub(super) const WARMUP: u32 = 20;
const STEPS_PER_HOST: f64 = 0.4;
const DRIFTS_PER_HOST: f64 = 0.1;
const OUTLIER_SHARE: f64 = 0.02;

/// `ground_truth.json`: the options and every injected event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub seed: u64,
    pub hosts: usize,
    pub days: u32,
    pub end: NaiveDate,
    /// Hardware class names, best first.
    pub classes: Vec<String>,
    pub events: Vec<InjectedEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Step,
    Drift,
    Upgrade,
    OutlierHost,
}

/// One true change of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedEvent {
    pub kind: EventKind,
    pub host: String,
    pub probe: String,
    pub metric: String,
    pub params: String,
    /// The first night affected.
    pub date: NaiveDate,
    /// `after / before − 1` of the metric's own value (+0.3 on a latency: 30 % slower).
    pub magnitude: f64,
    /// Drifts: the night the full magnitude is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// Upgrades: the tag on the host's first run after it, e.g. `upgrade=kernel-6.8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A fleet roll-out: a tag, who gets it, when, and what it truly changes.
struct Rollout {
    /// The value of the `upgrade` tag.
    name: &'static str,
    kernel: Option<&'static str>,
    classes: &'static [usize],
    /// Host-name prefixes that get it; empty: all.
    prefixes: &'static [&'static str],
    share: f64,
    /// Where in the period the week of the roll-out starts.
    at: f64,
    effects: &'static [(&'static str, &'static str, f64)],
}

/// The roll-outs, one of them without any effect so "no change" verdicts can be scored.
const ROLLOUTS: &[Rollout] = &[
    Rollout {
        name: "openssl-3.0.15",
        kernel: None,
        classes: &[0, 1, 2, 3],
        prefixes: &[],
        share: 0.5,
        at: 0.2,
        effects: &[
            ("cpu.aes_gcm", "encrypt_1t", 0.0),
            ("cpu.aes_gcm", "decrypt_1t", 0.0),
            ("cpu.aes_gcm", "encrypt_mt", 0.0),
            ("cpu.aes_gcm", "decrypt_mt", 0.0),
            ("service.http", "requests_per_s", 0.0),
        ],
    },
    Rollout {
        name: "nvme-firmware-2.1",
        kernel: None,
        classes: &[0, 1],
        prefixes: &["db", "store"],
        share: 1.0,
        at: 0.35,
        effects: &[
            ("storage.rand4k", "read_lat_p99", -0.12),
            ("storage.rand4k", "read_lat_p999", -0.2),
            ("storage.rand4k", "write_iops", 0.08),
            ("storage.mixed", "write_lat_p99", -0.1),
        ],
    },
    Rollout {
        name: "kernel-6.8",
        kernel: Some("6.8.0-48-generic"),
        classes: &[1, 2],
        prefixes: &[],
        share: 0.6,
        at: 0.55,
        effects: &[
            ("network.tcp", "send_parallel", 0.06),
            ("network.tcp", "recv_parallel", 0.06),
            ("network.tcp", "send_single", 0.05),
            ("network.tcp", "recv_single", 0.05),
            ("storage.fsync", "fsync_rate", 0.1),
            ("storage.fsync", "lat_p50", -0.0909),
            ("storage.fsync", "lat_p99", -0.08),
            // Transparent huge pages on by default: streaming memory a little faster.
            ("memory.bandwidth", "copy", 0.05),
            ("memory.bandwidth", "triad", 0.06),
        ],
    },
    Rollout {
        name: "microcode-20241112",
        kernel: None,
        classes: &[1],
        prefixes: &[],
        share: 1.0,
        at: 0.75,
        effects: &[
            ("service.command", "wall_p50", 0.04),
            ("service.command", "wall_mean", 0.04),
            ("memory.latency", "latency", 0.03),
            ("cpu.scaling", "throughput_mt", -0.025),
        ],
    },
];

/// Outlier kinds: (probe, metric or all eventful metrics of the probe, performance factor).
type Outlier = &'static [(&'static str, Option<&'static str>, f64)];
const OUTLIERS: &[Outlier] = &[
    &[
        ("storage.seq", None, 0.65),
        ("storage.rand4k", None, 0.65),
        ("storage.mixed", None, 0.65),
        ("storage.fsync", None, 0.65),
    ],
    &[("memory.bandwidth", None, 0.72), ("memory.latency", Some("latency"), 1.0 / 1.4)],
    &[("network.tcp", None, 0.6), ("network.latency", None, 1.0 / 1.3)],
    &[
        ("cpu.flops", None, 0.8),
        ("cpu.aes_gcm", None, 0.8),
        ("cpu.compress", None, 0.8),
        ("cpu.scaling", None, 0.8),
    ],
];

/// Metrics that wear or leak slowly, drifting in their bad direction (mostly).
const DRIFTY: &[(&str, &str)] = &[
    ("storage.rand4k", "write_lat_p99"),
    ("storage.rand4k", "read_lat_p99"),
    ("storage.rand4k", "write_iops"),
    ("storage.fsync", "fsync_rate"),
    ("storage.fsync", "lat_p99"),
    ("storage.seq", "write_bw"),
    ("storage.mixed", "write_lat_p99"),
    ("process.sample", "rss_bytes"),
    ("process.sample", "cpu_pct"),
    ("service.http", "lat_p99"),
    ("service.http", "requests_per_s"),
    ("service.command", "wall_p50"),
    ("network.latency", "rtt_p99"),
];

/// Metrics steps may hit: not corpus-bound ratios, not near-zero loss and error rates, not
/// fractions capped at 1.
fn eventful(spec: &MetricSpec) -> bool {
    spec.typical_cv > 0.0 && spec.typical_cv < 0.5 && spec.unit != "fraction"
}

fn index_of(probe: &str, metric: &str) -> Option<usize> {
    METRICS.iter().position(|m| m.probe == probe && m.metric == metric)
}

/// The signed change of a metric's value when performance changes by factor `p` (0.7: 30 %
/// worse), rounded so the recorded magnitude is exactly the applied one.
fn magnitude(spec: &MetricSpec, p: f64) -> f64 {
    let m = if spec.higher_is_better { p - 1.0 } else { 1.0 / p - 1.0 };
    round4(m)
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

struct Injector<'a> {
    hosts: &'a mut [Host],
    first: NaiveDate,
    days: u32,
    events: Vec<InjectedEvent>,
}

impl Injector<'_> {
    fn add(&mut self, kind: EventKind, host: usize, metric: usize, effect: Effect, tag: Option<String>) {
        let h = &mut self.hosts[host];
        if effect.magnitude != 0.0 {
            h.effects[metric].push(effect);
        }
        let spec = &METRICS[metric];
        let first = self.first;
        let date = |night: u32| first + Days::new(u64::from(night));
        self.events.push(InjectedEvent {
            kind,
            host: h.name.clone(),
            probe: spec.probe.into(),
            metric: spec.metric.into(),
            params: probe_params(spec.probe, h.site_name()),
            date: date(effect.start),
            magnitude: effect.magnitude,
            end_date: (kind == EventKind::Drift).then(|| date(effect.full)),
            tag,
        });
    }

    fn outliers(&mut self, rng: &mut StdRng) {
        let n = self.hosts.len();
        let count = if n >= 20 { ((n as f64 * OUTLIER_SHARE).round() as usize).max(1) } else { 0 };
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        for &host in &order[..count] {
            let kind = OUTLIERS.choose(rng).expect("not empty");
            for &(probe, metric, p) in kind.iter() {
                let hit = METRICS
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.probe == probe && eventful(s) && metric.is_none_or(|m| m == s.metric));
                for (i, spec) in hit.collect::<Vec<_>>() {
                    let effect = Effect { start: 0, full: 0, magnitude: magnitude(spec, p) };
                    self.add(EventKind::OutlierHost, host, i, effect, None);
                }
            }
        }
    }

    fn upgrades(&mut self, rng: &mut StdRng) {
        if self.days < WARMUP + 10 {
            return;
        }
        for rollout in ROLLOUTS {
            let week = ((rollout.at * f64::from(self.days)).round() as u32).clamp(WARMUP, self.days - 10);
            for host in 0..self.hosts.len() {
                let h = &self.hosts[host];
                let eligible = rollout.classes.contains(&h.class)
                    && (rollout.prefixes.is_empty() || rollout.prefixes.contains(&h.prefix));
                if !eligible || !rng.random_bool(rollout.share) {
                    continue;
                }
                let planned = week + rng.random_range(0..7);
                // The first run at or after the planned night carries the tag; the effect
                // starts with it. One upgrade tag per run: a clash moves to the next run.
                let tagged = (planned..self.days).find(|&n| h.ran(n) && !h.tags.contains_key(&n));
                let night = tagged.unwrap_or(planned);
                let h = &mut self.hosts[host];
                if tagged.is_some() {
                    h.tags.insert(night, rollout.name.to_string());
                }
                if let Some(kernel) = rollout.kernel {
                    h.kernel_upgrade = Some((night, kernel));
                }
                let tag = format!("upgrade={}", rollout.name);
                for &(probe, metric, m) in rollout.effects {
                    if let Some(i) = index_of(probe, metric) {
                        let effect = Effect { start: night, full: night, magnitude: round4(m) };
                        self.add(EventKind::Upgrade, host, i, effect, Some(tag.clone()));
                    }
                }
            }
        }
    }

    /// Sizes from near the noise (3–5 %) through the 5–8 % that detectors find hardest at 2 %
    /// noise to large (30–50 %), both directions; about a third hit a whole probe (a slower disk
    /// is slower on IOPS and latency alike).
    fn steps(&mut self, rng: &mut StdRng) {
        if self.days < WARMUP + 4 {
            return;
        }
        let count = ((self.hosts.len() as f64 * STEPS_PER_HOST).round() as usize).max(1);
        let eventful_probes: Vec<&str> = PROBES
            .iter()
            .map(|p| p.id)
            .filter(|id| METRICS.iter().filter(|s| s.probe == *id && eventful(s)).count() >= 2)
            .collect();
        for _ in 0..count {
            let host = rng.random_range(0..self.hosts.len());
            let night = rng.random_range(WARMUP.max(self.days / 10)..=self.days - 3);
            let size = match rng.random_range(0..10) {
                0..=1 => rng.random_range(0.03..0.05),
                2..=3 => rng.random_range(0.05..0.08),
                4..=6 => rng.random_range(0.08..0.2),
                _ => rng.random_range(0.3..0.5),
            };
            let better = rng.random_bool(0.4);
            let p = if better { 1.0 + size } else { 1.0 - size };
            let targets: Vec<usize> = if rng.random_bool(0.35) {
                let probe = *eventful_probes.choose(rng).expect("catalogue has eventful probes");
                (0..METRICS.len()).filter(|&i| METRICS[i].probe == probe && eventful(&METRICS[i])).collect()
            } else {
                let candidates: Vec<usize> = (0..METRICS.len()).filter(|&i| eventful(&METRICS[i])).collect();
                vec![*candidates.choose(rng).expect("catalogue has eventful metrics")]
            };
            for i in targets {
                let effect = Effect { start: night, full: night, magnitude: magnitude(&METRICS[i], p) };
                self.add(EventKind::Step, host, i, effect, None);
            }
        }
    }

    /// Slow linear changes over 30–120 nights to ±8–25 %, mostly for the worse.
    fn drifts(&mut self, rng: &mut StdRng) {
        if self.days < WARMUP + 32 {
            return;
        }
        let count = ((self.hosts.len() as f64 * DRIFTS_PER_HOST).round() as usize).max(1);
        for _ in 0..count {
            let host = rng.random_range(0..self.hosts.len());
            let &(probe, metric) = DRIFTY.choose(rng).expect("not empty");
            let length = rng.random_range(30..=120).min(self.days - 1 - WARMUP);
            let start = rng.random_range(WARMUP..=self.days - 1 - length);
            let size = rng.random_range(0.08..0.25);
            let p = if rng.random_bool(0.8) { 1.0 - size } else { 1.0 + size };
            if let Some(i) = index_of(probe, metric) {
                let effect = Effect { start, full: start + length - 1, magnitude: magnitude(&METRICS[i], p) };
                self.add(EventKind::Drift, host, i, effect, None);
            }
        }
    }
}

/// Plans every event, applies it to the hosts, and returns the ground truth events, sorted.
pub(super) fn inject(seed: u64, first: NaiveDate, days: u32, hosts: &mut [Host]) -> Vec<InjectedEvent> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let mut inj = Injector { hosts, first, days, events: Vec::new() };
    inj.outliers(&mut rng_for(seed, Stream::Events, 0, 0));
    inj.upgrades(&mut rng_for(seed, Stream::Events, 1, 0));
    inj.steps(&mut rng_for(seed, Stream::Events, 2, 0));
    inj.drifts(&mut rng_for(seed, Stream::Events, 3, 0));
    let mut events = inj.events;
    events.sort_by(|a, b| {
        (a.kind, a.date, &a.host, &a.probe, &a.metric).cmp(&(b.kind, b.date, &b.host, &b.probe, &b.metric))
    });
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_metric_is_in_the_catalogue() {
        let named = ROLLOUTS
            .iter()
            .flat_map(|r| r.effects.iter().map(|&(p, m, _)| (p, m)))
            .chain(DRIFTY.iter().copied());
        for (p, m) in named {
            let i = index_of(p, m).unwrap_or_else(|| panic!("{p}.{m} is not in the catalogue"));
            assert!(eventful(&METRICS[i]), "{p}.{m}");
        }
        for kind in OUTLIERS {
            for (p, m, _) in kind.iter() {
                assert!(METRICS.iter().any(|s| s.probe == *p && m.is_none_or(|m| m == s.metric)), "{p}");
            }
        }
        assert!(ROLLOUTS.iter().any(|r| r.effects.iter().all(|e| e.2 == 0.0)));
    }

    #[test]
    fn effects_and_magnitudes_agree() {
        let lat = METRICS.iter().find(|m| !m.higher_is_better && eventful(m)).unwrap();
        assert_eq!(magnitude(lat, 0.5), 1.0);
        let e = Effect { start: 10, full: 19, magnitude: 0.2 };
        let f = |n| {
            let mut h = super::super::fleet::hosts(1, 1, 1).pop().unwrap();
            h.effects[0] = vec![e];
            h.level(0, n) / h.levels[0]
        };
        assert_eq!(f(9), 1.0);
        assert!((f(10) - 1.02).abs() < 1e-12);
        assert!((f(19) - 1.2).abs() < 1e-12);
        assert!((f(400) - 1.2).abs() < 1e-12);
    }
}
