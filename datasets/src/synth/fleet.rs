//! The hosts of the synthetic fleet: names, roles, sites, classes, per-host speed, probe
//! parameters, and which nights each host ran, failed or was off.

use std::collections::BTreeMap;

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_distr::StandardNormal;

use super::classes::{Axis, HARDWARE_CLASSES, HOST_SPREAD, METRIC_SPREAD, TRUNCATE, scaling};
use super::{Stream, rng_for};
use crate::catalogue::{METRICS, PROBES};
use crate::params::canonical;
use crate::records::HostFacts;

/// Sites with their share of the fleet.
pub(super) const SITES: &[(&str, f64)] = &[("fra1", 0.40), ("iad1", 0.35), ("sin1", 0.25)];

/// Share of hosts that are `source` (the reference systems comparisons divide by).
const SOURCE_SHARE: f64 = 0.1;
/// Nights a host is randomly off (cron missed, host rebooting, maintenance).
const OFF_RATE: f64 = 0.03;
/// Chance per night that a multi-night outage (2–6 nights) starts.
const OUTAGE_RATE: f64 = 1.0 / 300.0;
const FAILED_RATE: f64 = 0.005;
const PARTIAL_RATE: f64 = 0.01;

const FAILURES: &[&str] = &[
    "probe storage.rand4k: No space left on device (os error 28)",
    "probe storage.seq: Input/output error (os error 5)",
    "collector terminated by signal 9 (out of memory)",
    "probe cpu.compress: zstd level 3: Allocation error : not enough memory",
];

/// Probes that drop out together, and why.
const PARTIALS: &[(&[&str], &str)] = &[
    (
        &["network.tcp", "network.latency", "network.udp"],
        "peer unreachable: Connection refused (os error 111)",
    ),
    (&["network.udp"], "peer does not answer UDP: timed out after 10 s"),
    (
        &["service.http", "service.recovery"],
        "health check http://localhost:8080/health failed: 503 Service Unavailable",
    ),
    (&["storage.mixed", "storage.fsync"], "time budget exhausted: the maintenance window ends at 03:00"),
];

/// What happened on one night of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Night {
    Off,
    Ok,
    /// Bit i of `skipped` set: `PROBES[i]` did not run.
    Partial {
        skipped: u32,
        reason: String,
    },
    Failed {
        reason: String,
    },
}

/// A change of a metric's level from night `start`, reaching `1 + magnitude` at night `full`
/// (a step has `full == start`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Effect {
    pub start: u32,
    pub full: u32,
    pub magnitude: f64,
}

impl Effect {
    fn factor(&self, night: u32) -> f64 {
        if night < self.start {
            1.0
        } else if night >= self.full {
            1.0 + self.magnitude
        } else {
            let done = f64::from(night - self.start + 1) / f64::from(self.full - self.start + 1);
            1.0 + self.magnitude * done
        }
    }
}

pub(super) struct Host {
    pub name: String,
    pub class: usize,
    pub site: usize,
    /// What the host is used for: the first part of its name (`db`, `web`, …).
    pub prefix: &'static str,
    /// `runs.role`: `source` or `target`.
    pub role: &'static str,
    /// Quiet level of every catalogue metric (by `METRICS` index) before any event.
    pub levels: Vec<f64>,
    pub nights: Vec<Night>,
    /// Injected events, by `METRICS` index; they combine multiplicatively.
    pub effects: Vec<Vec<Effect>>,
    /// `upgrade` tag values by the night of the first run after the upgrade.
    pub tags: BTreeMap<u32, String>,
    /// The night from which the host reports another kernel, and that kernel.
    pub kernel_upgrade: Option<(u32, &'static str)>,
}

impl Host {
    /// The true level of metric `index` on `night`, events included.
    pub fn level(&self, index: usize, night: u32) -> f64 {
        self.effects[index].iter().fold(self.levels[index], |l, e| l * e.factor(night))
    }

    pub fn site_name(&self) -> &'static str {
        SITES[self.site].0
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let class = &HARDWARE_CLASSES[self.class];
        [("site", self.site_name()), ("platform", class.platform), ("hw_class", class.name)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn facts(&self, night: u32) -> HostFacts {
        let mut facts = HARDWARE_CLASSES[self.class].facts();
        if let Some((from, kernel)) = self.kernel_upgrade
            && night >= from
        {
            facts.kernel = kernel.to_string();
        }
        facts
    }

    /// Nights this host has a run, failed or not.
    pub fn ran(&self, night: u32) -> bool {
        self.nights.get(night as usize).is_some_and(|n| *n != Night::Off)
    }
}

/// The fixed parameters of each probe as the nightly schedule runs it; only the network peer
/// differs, by site.
pub(super) fn probe_params(probe: &str, site: &str) -> String {
    let peer = format!("peer-{site}.bench.internal");
    let p: Vec<(&str, &str)> = match probe {
        "cpu.flops" => vec![("isa", "avx2"), ("threads", "all")],
        "cpu.aes_gcm" => vec![("buffer", "16KiB"), ("impl", "openssl"), ("threads", "all")],
        "cpu.compress" => vec![("corpus", "builtin"), ("corpus_size", "4MiB")],
        "cpu.scaling" => vec![("chunk", "64KiB"), ("max_threads", "all")],
        "memory.bandwidth" => vec![("nt_stores", "auto"), ("size", "auto"), ("threads", "all")],
        "memory.latency" => vec![("huge_pages", "auto"), ("max_size", "auto")],
        "storage.seq" => vec![("block_size", "1MiB"), ("direct", "true"), ("size", "4GiB")],
        "storage.rand4k" => {
            vec![("block_size", "4KiB"), ("direct", "true"), ("jobs", "1"), ("queue_depth", "32")]
        }
        "storage.mixed" => {
            vec![("block_size", "4KiB"), ("direct", "true"), ("queue_depth", "32"), ("rwmixread", "70")]
        }
        "storage.fsync" => vec![("block_size", "4KiB"), ("size", "256MiB")],
        "network.tcp" => vec![("duration_s", "10"), ("peer", peer.as_str()), ("streams", "4")],
        "network.latency" => vec![("count", "1000"), ("peer", peer.as_str())],
        "network.udp" => vec![("bitrate", "1G"), ("duration_s", "10"), ("peer", peer.as_str())],
        "service.http" => {
            vec![("concurrency", "32"), ("duration_s", "20"), ("url", "http://localhost:8080/health")]
        }
        "service.command" => vec![("command", "/usr/bin/python3 -c pass"), ("iterations", "50")],
        "service.recovery" => {
            vec![("command", "systemctl restart app"), ("health", "http://localhost:8080/health")]
        }
        "process.sample" => vec![("interval_s", "1"), ("process", "app"), ("scenario", "http-load")],
        _ => vec![],
    };
    canonical(p)
}

/// Seconds one probe takes in the standard suite; together about six minutes.
pub(super) fn probe_seconds(probe: &str) -> f64 {
    match probe {
        "cpu.flops" => 12.0,
        "cpu.aes_gcm" => 10.0,
        "cpu.compress" => 24.0,
        "cpu.scaling" => 18.0,
        "memory.bandwidth" => 16.0,
        "memory.latency" => 22.0,
        "storage.seq" => 40.0,
        "storage.rand4k" => 45.0,
        "storage.mixed" => 40.0,
        "storage.fsync" => 20.0,
        "network.tcp" => 25.0,
        "network.latency" => 10.0,
        "network.udp" => 12.0,
        "service.http" => 30.0,
        "service.command" => 14.0,
        "service.recovery" => 20.0,
        _ => 20.0,
    }
}

/// A standard normal draw cut at ±`TRUNCATE`, so no host leaves its class's band.
fn truncated_normal(rng: &mut StdRng) -> f64 {
    loop {
        let z: f64 = rng.sample(StandardNormal);
        if z.abs() <= TRUNCATE {
            return z;
        }
    }
}

/// How many hosts each class gets: by share, largest remainder, at least one each when the
/// fleet is big enough.
fn class_counts(hosts: usize) -> Vec<usize> {
    let exact: Vec<f64> = HARDWARE_CLASSES.iter().map(|c| c.share * hosts as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = hosts - counts.iter().sum::<usize>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    if hosts >= counts.len() {
        while let Some(empty) = counts.iter().position(|&c| c == 0) {
            let richest = (0..counts.len()).max_by_key(|&i| counts[i]).expect("classes exist");
            counts[richest] -= 1;
            counts[empty] += 1;
        }
    }
    counts
}

fn pick_site(rng: &mut StdRng) -> usize {
    let mut x: f64 = rng.random();
    for (i, (_, share)) in SITES.iter().enumerate() {
        if x < *share {
            return i;
        }
        x -= share;
    }
    SITES.len() - 1
}

/// The hosts, sorted by name, with their quiet levels and nights (no events yet).
pub(super) fn hosts(seed: u64, count: usize, days: u32) -> Vec<Host> {
    let mut rng = rng_for(seed, Stream::Fleet, 0, 0);
    let mut classes: Vec<usize> = class_counts(count)
        .into_iter()
        .enumerate()
        .flat_map(|(class, n)| std::iter::repeat_n(class, n))
        .collect();
    classes.shuffle(&mut rng);
    let sources = if count >= 2 { ((count as f64 * SOURCE_SHARE).round() as usize).max(1) } else { 0 };
    let mut numbers: BTreeMap<(&str, usize), u32> = BTreeMap::new();
    let mut hosts: Vec<Host> = Vec::with_capacity(count);
    for (i, class) in classes.into_iter().enumerate() {
        let hw = &HARDWARE_CLASSES[class];
        let prefix = *hw.roles.choose(&mut rng).expect("every class has roles");
        let site = pick_site(&mut rng);
        let number = numbers.entry((prefix, site)).or_insert(0);
        *number += rng.random_range(1..=3);
        let axis: Vec<f64> =
            (0..Axis::COUNT).map(|_| (HOST_SPREAD * truncated_normal(&mut rng)).exp()).collect();
        let levels = METRICS
            .iter()
            .map(|spec| {
                let own = (METRIC_SPREAD * truncated_normal(&mut rng)).exp();
                let factor = scaling(spec).map_or(1.0, |(a, _)| axis[a.index()] * own);
                hw.level(spec, factor)
            })
            .collect();
        hosts.push(Host {
            name: format!("{prefix}-{}-{number:03}", SITES[site].0),
            class,
            site,
            prefix,
            role: if i < sources { "source" } else { "target" },
            levels,
            nights: Vec::new(),
            effects: vec![Vec::new(); METRICS.len()],
            tags: BTreeMap::new(),
            kernel_upgrade: None,
        });
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, host) in hosts.iter_mut().enumerate() {
        host.nights = nights(&mut rng_for(seed, Stream::Nights, i as u64, 0), days);
    }
    hosts
}

/// One host's nights: random misses, multi-night outages, a few failed and partial runs.
fn nights(rng: &mut StdRng, days: u32) -> Vec<Night> {
    let mut out = Vec::with_capacity(days as usize);
    let mut off_until = 0;
    for night in 0..days {
        let plan = if night < off_until {
            Night::Off
        } else if rng.random_bool(OUTAGE_RATE) {
            off_until = night + rng.random_range(2..=6);
            Night::Off
        } else if rng.random_bool(OFF_RATE) {
            Night::Off
        } else if rng.random_bool(FAILED_RATE) {
            Night::Failed { reason: FAILURES.choose(rng).expect("not empty").to_string() }
        } else if rng.random_bool(PARTIAL_RATE) {
            let (probes, why) = PARTIALS.choose(rng).expect("not empty");
            let skipped = PROBES
                .iter()
                .enumerate()
                .filter(|(_, p)| probes.contains(&p.id))
                .fold(0u32, |mask, (i, _)| mask | 1 << i);
            Night::Partial { skipped, reason: format!("skipped {}: {why}", probes.join(", ")) }
        } else {
            Night::Ok
        };
        out.push(plan);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_counts_cover_the_fleet_and_every_class() {
        assert_eq!(class_counts(12), vec![2, 4, 4, 2]);
        for n in 0..50 {
            let c = class_counts(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            if n >= 4 {
                assert!(c.iter().all(|&k| k > 0), "{n}: {c:?}");
            }
        }
    }

    #[test]
    fn names_are_unique_and_roles_mixed() {
        let hosts = hosts(7, 300, 10);
        let mut names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), 300);
        assert_eq!(hosts.iter().filter(|h| h.role == "source").count(), 30);
        assert!(PROBES.len() <= 32, "skipped probes are a u32 mask");
    }

    #[test]
    fn every_probe_has_params() {
        for p in PROBES {
            assert!(!probe_params(p.id, "fra1").is_empty(), "{}", p.id);
        }
        assert!(probe_params("network.tcp", "sin1").contains("peer=peer-sin1."));
    }
}
