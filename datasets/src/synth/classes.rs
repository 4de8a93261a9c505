//! The hardware classes of the synthetic fleet, best first, and how a class scales the
//! catalogue's reference values.
//!
//! Every class gap is wider than the largest per-host spread (see `HOST_SPREAD`), so at the
//! baseline every host of class k beats every host of class k+1 on every non-ratio metric.

use crate::catalogue::{Category, MetricSpec};
use crate::records::HostFacts;

/// One kind of machine in the fleet: what the collector sees, and how fast it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardwareClass {
    /// The `hw_class` label.
    pub name: &'static str,
    /// The `platform` label.
    pub platform: &'static str,
    pub cpu_model: &'static str,
    pub cpu_cores: i32,
    pub cpu_threads: i32,
    pub cpu_flags: &'static [&'static str],
    pub mem_bytes: i64,
    pub os: &'static str,
    pub kernel: &'static str,
    pub virtualization: &'static str,
    /// Host-name prefixes: what hosts of this class are used for.
    pub roles: &'static [&'static str],
    /// Share of the fleet.
    pub share: f64,
    /// Per-core CPU speed relative to the catalogue reference (one-thread metrics).
    pub cpu: f64,
    /// All-thread CPU throughput: core count as well as per-core speed.
    pub cpu_parallel: f64,
    pub memory: f64,
    pub storage: f64,
    pub network: f64,
    pub service: f64,
    pub process: f64,
}

/// The classes from best to worst; every multiplier falls strictly from one to the next.
pub const HARDWARE_CLASSES: &[HardwareClass] = &[
    HardwareClass {
        name: "genoa-metal",
        platform: "metal",
        cpu_model: "AMD EPYC 9454P 48-Core Processor",
        cpu_cores: 48,
        cpu_threads: 96,
        cpu_flags: &[
            "aes",
            "avx",
            "avx2",
            "avx512bw",
            "avx512f",
            "avx512vl",
            "fma",
            "sha_ni",
            "vaes",
            "vpclmulqdq",
        ],
        mem_bytes: 384 << 30,
        os: "Ubuntu 24.04.1 LTS",
        kernel: "6.8.0-48-generic",
        virtualization: "none",
        roles: &["db", "store", "batch"],
        share: 0.2,
        cpu: 1.30,
        cpu_parallel: 3.2,
        memory: 1.5,
        storage: 1.7,
        network: 2.4,
        service: 1.5,
        process: 1.3,
    },
    HardwareClass {
        name: "icelake-metal",
        platform: "metal",
        cpu_model: "Intel(R) Xeon(R) Gold 6326 CPU @ 2.90GHz",
        cpu_cores: 32,
        cpu_threads: 64,
        cpu_flags: &[
            "aes",
            "avx",
            "avx2",
            "avx512bw",
            "avx512f",
            "avx512vl",
            "fma",
            "sha_ni",
            "vaes",
            "vpclmulqdq",
        ],
        mem_bytes: 256 << 30,
        os: "Ubuntu 22.04.5 LTS",
        kernel: "5.15.0-125-generic",
        virtualization: "none",
        roles: &["db", "cache", "api"],
        share: 0.3,
        cpu: 1.10,
        cpu_parallel: 1.9,
        memory: 1.2,
        storage: 1.25,
        network: 1.0,
        service: 1.2,
        process: 1.12,
    },
    HardwareClass {
        name: "cascadelake-kvm",
        platform: "kvm",
        cpu_model: "Intel Xeon Processor (Cascadelake)",
        cpu_cores: 8,
        cpu_threads: 16,
        cpu_flags: &["aes", "avx", "avx2", "avx512bw", "avx512f", "avx512vl", "fma"],
        mem_bytes: 64 << 30,
        os: "Ubuntu 22.04.5 LTS",
        kernel: "5.15.0-125-generic",
        virtualization: "kvm",
        roles: &["web", "api", "cache"],
        share: 0.3,
        cpu: 0.92,
        cpu_parallel: 0.7,
        memory: 0.92,
        storage: 0.75,
        network: 0.8,
        service: 0.95,
        process: 0.96,
    },
    HardwareClass {
        name: "broadwell-vmware",
        platform: "vmware",
        cpu_model: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
        cpu_cores: 8,
        cpu_threads: 8,
        cpu_flags: &["aes", "avx", "avx2", "fma"],
        mem_bytes: 32 << 30,
        os: "Debian GNU/Linux 11 (bullseye)",
        kernel: "5.10.0-32-amd64",
        virtualization: "vmware",
        roles: &["web", "batch", "ci"],
        share: 0.2,
        cpu: 0.72,
        cpu_parallel: 0.38,
        memory: 0.65,
        storage: 0.4,
        network: 0.45,
        service: 0.65,
        process: 0.8,
    },
];

/// What a metric scales with. Each axis also has its own per-host factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Axis {
    Cpu,
    CpuParallel,
    Memory,
    Storage,
    Network,
    Service,
    Process,
}

impl Axis {
    pub(super) const COUNT: usize = 7;

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Per-host factors: lognormal with these sigmas, truncated at `TRUNCATE` sigmas; one per host
/// and axis (a slow disk is slow on every storage metric) and a smaller one per host and metric.
pub(super) const HOST_SPREAD: f64 = 0.02;
pub(super) const METRIC_SPREAD: f64 = 0.008;
pub(super) const TRUNCATE: f64 = 2.5;

/// The axis and elasticity of a metric, `None` for ratio metrics, which depend only on the
/// corpus. Elasticity < 1 where hardware matters less (cache latency, process memory).
pub(super) fn scaling(spec: &MetricSpec) -> Option<(Axis, f64)> {
    if spec.typical_cv == 0.0 {
        return None;
    }
    Some(match spec.category() {
        Category::Cpu if spec.metric.starts_with("efficiency") => (Axis::Cpu, 0.3),
        Category::Cpu if spec.metric.ends_with("_mt") => (Axis::CpuParallel, 1.0),
        Category::Cpu => (Axis::Cpu, 1.0),
        Category::Memory if spec.probe == "memory.latency" && spec.metric != "latency" => (Axis::Memory, 0.5),
        Category::Memory => (Axis::Memory, 1.0),
        Category::Storage => (Axis::Storage, 1.0),
        Category::Network if spec.probe == "network.latency" => (Axis::Network, 0.5),
        Category::Network => (Axis::Network, 1.0),
        Category::Service if spec.metric == "recovery_time" => (Axis::Service, 0.5),
        Category::Service => (Axis::Service, 1.0),
        Category::Process if spec.metric.ends_with("_bytes") => (Axis::Process, 0.25),
        Category::Process => (Axis::Process, 1.0),
    })
}

impl HardwareClass {
    pub(super) fn multiplier(&self, axis: Axis) -> f64 {
        match axis {
            Axis::Cpu => self.cpu,
            Axis::CpuParallel => self.cpu_parallel,
            Axis::Memory => self.memory,
            Axis::Storage => self.storage,
            Axis::Network => self.network,
            Axis::Service => self.service,
            Axis::Process => self.process,
        }
    }

    /// The host facts every host of the class reports (before any kernel upgrade).
    pub fn facts(&self) -> HostFacts {
        HostFacts {
            cpu_model: self.cpu_model.into(),
            cpu_cores: self.cpu_cores,
            cpu_threads: self.cpu_threads,
            cpu_flags: self.cpu_flags.iter().map(|f| f.to_string()).collect(),
            mem_bytes: self.mem_bytes,
            os: self.os.into(),
            kernel: self.kernel.into(),
            virtualization: self.virtualization.into(),
        }
    }

    /// The quiet level of `spec` on a host of this class whose speed on the metric's axis is
    /// `host_factor` times the class's: multiplied for higher-is-better, divided otherwise.
    pub(super) fn level(&self, spec: &MetricSpec, host_factor: f64) -> f64 {
        let Some((axis, elasticity)) = scaling(spec) else {
            return spec.reference;
        };
        let speed = (self.multiplier(axis) * host_factor).powf(elasticity);
        if spec.higher_is_better { spec.reference * speed } else { spec.reference / speed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::METRICS;

    /// Strict order holds even between the luckiest host of class k+1 and the unluckiest of k.
    #[test]
    fn classes_are_strictly_ordered_beyond_the_host_spread() {
        let worst = (TRUNCATE * (HOST_SPREAD + METRIC_SPREAD)).exp();
        for pair in HARDWARE_CLASSES.windows(2) {
            for spec in METRICS.iter().filter(|m| scaling(m).is_some()) {
                let (better, worse) = (pair[0].level(spec, 1.0 / worst), pair[1].level(spec, worst));
                let ok = if spec.higher_is_better { better > worse } else { better < worse };
                assert!(ok, "{} vs {}: {}.{}", pair[0].name, pair[1].name, spec.probe, spec.metric);
            }
        }
    }

    #[test]
    fn ratio_metrics_and_fractions_stay_plausible() {
        for class in HARDWARE_CLASSES {
            for spec in METRICS {
                let v = class.level(spec, 1.0);
                assert!(v > 0.0 && v.is_finite());
                if spec.unit == "fraction" {
                    assert!(v < 0.97, "{}.{} = {v} on {}", spec.probe, spec.metric, class.name);
                }
                if spec.unit == "ratio" {
                    assert_eq!(v, spec.reference);
                }
            }
        }
    }
}
