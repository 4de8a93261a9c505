//! The metric catalogue: every probe's metrics with unit, direction, role in the category score
//! and typical noise. Probes, the synthetic fleet, the comparison and the schema docs read it,
//! so a metric is named once.

/// The categories a probe belongs to; the prefix of its id (`storage.rand4k` → storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Cpu,
    Memory,
    Storage,
    Network,
    Service,
    Process,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Cpu,
        Category::Memory,
        Category::Storage,
        Category::Network,
        Category::Service,
        Category::Process,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Cpu => "cpu",
            Category::Memory => "memory",
            Category::Storage => "storage",
            Category::Network => "network",
            Category::Service => "service",
            Category::Process => "process",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The category of a probe id such as `cpu.aes_gcm`.
    pub fn of_probe(probe_id: &str) -> Option<Category> {
        probe_id.split_once('.').and_then(|(c, _)| Category::parse(c))
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric of one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    pub probe: &'static str,
    pub metric: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Counts towards its category's score in comparisons.
    pub key: bool,
    /// Run-to-run coefficient of variation a well-run probe shows on a quiet host.
    pub typical_cv: f64,
    /// A plausible value on a mid-range 2024 server (16 cores, NVMe, 10 GbE); the synthetic
    /// fleet scales it per hardware class.
    pub reference: f64,
    pub description: &'static str,
}

impl MetricSpec {
    pub fn category(&self) -> Category {
        Category::of_probe(self.probe).expect("catalogue probe ids have a known category")
    }
}

/// One probe of the design, with a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    pub id: &'static str,
    pub description: &'static str,
}

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec { id: "cpu.flops", description: "GFLOP/s in f32 and f64 on one thread and on all threads" },
    ProbeSpec {
        id: "cpu.aes_gcm",
        description: "AES-256-GCM encrypt/decrypt MB/s on 16 KiB buffers, one thread and all threads",
    },
    ProbeSpec {
        id: "cpu.compress",
        description: "zstd levels 1 and 3 (and lz4) compress/decompress MB/s and ratio on a mixed corpus",
    },
    ProbeSpec {
        id: "cpu.scaling",
        description: "the same work at 1 … N threads: throughput and parallel efficiency",
    },
    ProbeSpec {
        id: "memory.bandwidth",
        description: "read, write, copy and triad GB/s on all threads, far beyond the last-level cache",
    },
    ProbeSpec { id: "memory.latency", description: "random pointer-chasing latency from L1 to main memory" },
    ProbeSpec {
        id: "storage.seq",
        description: "sequential read and write MB/s with 1 MiB blocks, direct I/O",
    },
    ProbeSpec {
        id: "storage.rand4k",
        description: "4 KiB random read and write IOPS at queue depth, latency percentiles",
    },
    ProbeSpec {
        id: "storage.mixed",
        description: "70/30 random 4 KiB read/write IOPS and latency percentiles",
    },
    ProbeSpec {
        id: "storage.fsync",
        description: "4 KiB write + fsync: fsyncs per second and latency percentiles",
    },
    ProbeSpec {
        id: "network.tcp",
        description: "TCP throughput to a peer, one and several streams, both directions",
    },
    ProbeSpec { id: "network.latency", description: "TCP round-trip time percentiles to a peer" },
    ProbeSpec { id: "network.udp", description: "UDP loss and jitter to a peer at a target rate" },
    ProbeSpec {
        id: "service.http",
        description: "HTTP load: requests/s, latency percentiles and error rate at a concurrency",
    },
    ProbeSpec { id: "service.command", description: "wall time of a command over N iterations, percentiles" },
    ProbeSpec {
        id: "service.recovery",
        description: "time from a disruptive command until a health check passes again",
    },
    ProbeSpec {
        id: "process.sample",
        description: "CPU %, RSS and VMS of a process sampled over a scenario",
    },
];

macro_rules! m {
    ($probe:literal, $metric:literal, $unit:literal, $hib:literal, $key:literal, $cv:literal, $ref:literal, $desc:literal) => {
        MetricSpec {
            probe: $probe,
            metric: $metric,
            unit: $unit,
            higher_is_better: $hib,
            key: $key,
            typical_cv: $cv,
            reference: $ref,
            description: $desc,
        }
    };
}

/// Every metric of every probe. Columns: probe, metric, unit, higher is better, key metric,
/// typical CV, reference value, description.
#[rustfmt::skip]
pub const METRICS: &[MetricSpec] = &[
    m!("cpu.flops", "gflops_f64_1t", "GFLOP/s", true, false, 0.01, 55.0, "f64 FMA throughput, one thread"),
    m!("cpu.flops", "gflops_f64_mt", "GFLOP/s", true, true, 0.01, 800.0, "f64 FMA throughput, all threads"),
    m!("cpu.flops", "gflops_f32_1t", "GFLOP/s", true, false, 0.01, 110.0, "f32 FMA throughput, one thread"),
    m!("cpu.flops", "gflops_f32_mt", "GFLOP/s", true, false, 0.01, 1600.0, "f32 FMA throughput, all threads"),
    m!("cpu.flops", "clock_ghz", "GHz", true, false, 0.01, 3.7, "core clock under load, measured with a dependent-add chain, one thread"),
    m!("cpu.flops", "peak_f64_1t", "GFLOP/s", true, false, 0.01, 59.0, "theoretical f64 peak of one core: measured clock × FLOPs per cycle of the ISA"),
    m!("cpu.flops", "peak_f64_mt", "GFLOP/s", true, false, 0.01, 900.0, "theoretical f64 peak of the cores used: cores × clock × FLOPs per cycle"),
    m!("cpu.flops", "peak_f32_1t", "GFLOP/s", true, false, 0.01, 118.0, "theoretical f32 peak of one core"),
    m!("cpu.flops", "peak_f32_mt", "GFLOP/s", true, false, 0.01, 1800.0, "theoretical f32 peak of the cores used"),
    m!("cpu.aes_gcm", "encrypt_1t", "MB/s", true, false, 0.01, 4500.0, "AES-256-GCM encryption, one thread, 16 KiB buffers"),
    m!("cpu.aes_gcm", "decrypt_1t", "MB/s", true, false, 0.01, 4600.0, "AES-256-GCM decryption, one thread, 16 KiB buffers"),
    m!("cpu.aes_gcm", "encrypt_mt", "MB/s", true, true, 0.015, 60000.0, "AES-256-GCM encryption, all threads"),
    m!("cpu.aes_gcm", "decrypt_mt", "MB/s", true, false, 0.015, 61000.0, "AES-256-GCM decryption, all threads"),
    m!("cpu.compress", "zstd1_compress", "MB/s", true, false, 0.01, 520.0, "zstd level 1 compression, one thread"),
    m!("cpu.compress", "zstd1_decompress", "MB/s", true, false, 0.01, 1500.0, "zstd level 1 decompression, one thread"),
    m!("cpu.compress", "zstd1_ratio", "ratio", true, false, 0.0, 4.2, "zstd level 1 compression ratio (input / output)"),
    m!("cpu.compress", "zstd3_compress", "MB/s", true, true, 0.01, 350.0, "zstd level 3 compression, one thread"),
    m!("cpu.compress", "zstd3_decompress", "MB/s", true, false, 0.01, 1400.0, "zstd level 3 decompression, one thread"),
    m!("cpu.compress", "zstd3_ratio", "ratio", true, false, 0.0, 4.6, "zstd level 3 compression ratio (input / output)"),
    m!("cpu.compress", "lz4_compress", "MB/s", true, false, 0.01, 700.0, "lz4 compression, one thread"),
    m!("cpu.compress", "lz4_decompress", "MB/s", true, false, 0.01, 3800.0, "lz4 decompression, one thread"),
    m!("cpu.compress", "lz4_ratio", "ratio", true, false, 0.0, 2.9, "lz4 compression ratio (input / output)"),
    m!("cpu.scaling", "throughput_1t", "ops/s", true, false, 0.01, 1.0e6, "fixed work units per second, one thread"),
    m!("cpu.scaling", "throughput_mt", "ops/s", true, true, 0.015, 1.4e7, "fixed work units per second, all threads"),
    m!("cpu.scaling", "efficiency_mt", "fraction", true, false, 0.015, 0.85, "all-thread speed-up divided by the thread count"),
    m!("cpu.scaling", "throughput_nt", "ops/s", true, false, 0.015, 5.0e6, "fixed work units per second at the thread count in `params` (1, 2, 4 … N)"),
    m!("cpu.scaling", "efficiency_nt", "fraction", true, false, 0.015, 0.85, "speed-up at the thread count in `params` divided by that count"),
    m!("memory.bandwidth", "read", "GB/s", true, false, 0.02, 95.0, "read bandwidth, all threads (STREAM byte counting)"),
    m!("memory.bandwidth", "write", "GB/s", true, false, 0.02, 60.0, "write bandwidth, all threads"),
    m!("memory.bandwidth", "copy", "GB/s", true, true, 0.02, 70.0, "copy bandwidth, all threads (2 bytes moved per byte copied)"),
    m!("memory.bandwidth", "triad", "GB/s", true, true, 0.02, 75.0, "triad a = b + s·c bandwidth, all threads"),
    m!("memory.latency", "latency", "ns", false, true, 0.02, 95.0, "random access latency at the largest working set (main memory)"),
    m!("memory.latency", "latency_l1", "ns", false, false, 0.01, 1.2, "random access latency within L1"),
    m!("memory.latency", "latency_l2", "ns", false, false, 0.01, 4.0, "random access latency within L2"),
    m!("memory.latency", "latency_llc", "ns", false, false, 0.02, 18.0, "random access latency within the last-level cache"),
    m!("memory.latency", "latency_ws", "ns", false, false, 0.02, 30.0, "random access latency at the working set in `params` (the sweep from L1 to main memory)"),
    m!("storage.seq", "read_bw", "MB/s", true, true, 0.04, 3200.0, "sequential read, 1 MiB blocks"),
    m!("storage.seq", "write_bw", "MB/s", true, true, 0.05, 2400.0, "sequential write, 1 MiB blocks"),
    m!("storage.rand4k", "read_iops", "IOPS", true, true, 0.05, 420000.0, "4 KiB random read at queue depth"),
    m!("storage.rand4k", "write_iops", "IOPS", true, true, 0.06, 250000.0, "4 KiB random write at queue depth"),
    m!("storage.rand4k", "read_lat_p50", "ns", false, false, 0.05, 70000.0, "4 KiB random read completion latency, median"),
    m!("storage.rand4k", "read_lat_p95", "ns", false, false, 0.07, 130000.0, "4 KiB random read completion latency, 95th percentile"),
    m!("storage.rand4k", "read_lat_p99", "ns", false, true, 0.08, 210000.0, "4 KiB random read completion latency, 99th percentile"),
    m!("storage.rand4k", "read_lat_p999", "ns", false, false, 0.10, 450000.0, "4 KiB random read completion latency, 99.9th percentile"),
    m!("storage.rand4k", "write_lat_p50", "ns", false, false, 0.05, 110000.0, "4 KiB random write completion latency, median"),
    m!("storage.rand4k", "write_lat_p95", "ns", false, false, 0.07, 190000.0, "4 KiB random write completion latency, 95th percentile"),
    m!("storage.rand4k", "write_lat_p99", "ns", false, false, 0.08, 320000.0, "4 KiB random write completion latency, 99th percentile"),
    m!("storage.rand4k", "write_lat_p999", "ns", false, false, 0.10, 800000.0, "4 KiB random write completion latency, 99.9th percentile"),
    m!("storage.mixed", "read_iops", "IOPS", true, false, 0.06, 260000.0, "70/30 mix: random 4 KiB read IOPS"),
    m!("storage.mixed", "write_iops", "IOPS", true, false, 0.06, 110000.0, "70/30 mix: random 4 KiB write IOPS"),
    m!("storage.mixed", "read_lat_p50", "ns", false, false, 0.06, 90000.0, "70/30 mix: read latency, median"),
    m!("storage.mixed", "read_lat_p99", "ns", false, false, 0.09, 300000.0, "70/30 mix: read latency, 99th percentile"),
    m!("storage.mixed", "write_lat_p50", "ns", false, false, 0.06, 120000.0, "70/30 mix: write latency, median"),
    m!("storage.mixed", "write_lat_p99", "ns", false, false, 0.09, 420000.0, "70/30 mix: write latency, 99th percentile"),
    m!("storage.fsync", "fsync_rate", "ops/s", true, true, 0.06, 9000.0, "4 KiB write + fsync operations per second"),
    m!("storage.fsync", "lat_p50", "ns", false, false, 0.06, 105000.0, "fsync latency after each 4 KiB write, median"),
    m!("storage.fsync", "lat_p95", "ns", false, false, 0.08, 160000.0, "fsync latency after each 4 KiB write, 95th percentile"),
    m!("storage.fsync", "lat_p99", "ns", false, false, 0.10, 260000.0, "fsync latency after each 4 KiB write, 99th percentile"),
    m!("network.tcp", "send_single", "Gbit/s", true, false, 0.04, 9.2, "TCP throughput to the peer, one stream"),
    m!("network.tcp", "send_parallel", "Gbit/s", true, true, 0.03, 9.4, "TCP throughput to the peer, parallel streams"),
    m!("network.tcp", "recv_single", "Gbit/s", true, false, 0.04, 9.1, "TCP throughput from the peer, one stream"),
    m!("network.tcp", "recv_parallel", "Gbit/s", true, true, 0.03, 9.4, "TCP throughput from the peer, parallel streams"),
    m!("network.latency", "rtt_p50", "us", false, true, 0.05, 48.0, "TCP round-trip time, median"),
    m!("network.latency", "rtt_p95", "us", false, false, 0.08, 75.0, "TCP round-trip time, 95th percentile"),
    m!("network.latency", "rtt_p99", "us", false, false, 0.10, 120.0, "TCP round-trip time, 99th percentile"),
    m!("network.udp", "loss", "%", false, false, 0.50, 0.02, "UDP datagrams lost at the target rate, percent"),
    m!("network.udp", "jitter", "ms", false, false, 0.10, 0.015, "UDP interarrival jitter (RFC 3550), as iperf3 reports it"),
    m!("service.http", "requests_per_s", "req/s", true, true, 0.05, 24000.0, "HTTP requests per second at the configured concurrency"),
    m!("service.http", "lat_p50", "ms", false, false, 0.05, 1.2, "HTTP latency, median"),
    m!("service.http", "lat_p95", "ms", false, false, 0.08, 3.1, "HTTP latency, 95th percentile"),
    m!("service.http", "lat_p99", "ms", false, true, 0.10, 6.5, "HTTP latency, 99th percentile"),
    m!("service.http", "error_rate", "fraction", false, false, 0.50, 0.0005, "share of requests that failed"),
    m!("service.command", "wall_p50", "ms", false, true, 0.03, 180.0, "command wall time, median"),
    m!("service.command", "wall_p95", "ms", false, false, 0.05, 210.0, "command wall time, 95th percentile"),
    m!("service.command", "wall_mean", "ms", false, false, 0.03, 185.0, "command wall time, mean"),
    m!("service.recovery", "recovery_time", "s", false, true, 0.08, 12.0, "seconds from the disruption until the health check passes"),
    m!("process.sample", "cpu_pct", "%", false, true, 0.05, 35.0, "process CPU, percent of one core, mean over the scenario"),
    m!("process.sample", "rss_bytes", "bytes", false, true, 0.03, 5.2e8, "process resident set size, peak"),
    m!("process.sample", "vms_bytes", "bytes", false, false, 0.02, 2.1e9, "process virtual memory size, peak"),
];

/// The catalogue entry of `probe`/`metric`, if the metric is known.
pub fn metric(probe: &str, metric: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.probe == probe && m.metric == metric)
}

/// The metrics of one probe, in catalogue order.
pub fn metrics_of(probe: &str) -> impl Iterator<Item = &'static MetricSpec> + '_ {
    METRICS.iter().filter(move |m| m.probe == probe)
}

pub fn probe(id: &str) -> Option<&'static ProbeSpec> {
    PROBES.iter().find(|p| p.id == id)
}

/// The catalogue as a Markdown table (`fathom-datasets schema --metrics`), the source of the
/// table in `datasets/README.md`.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| probe | metric | unit | better | key | typical CV | what it is |\n|---|---|---|---|---|---|---|\n",
    );
    for m in METRICS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {:.1} % | {} |\n",
            m.probe,
            m.metric,
            m.unit,
            if m.higher_is_better { "higher" } else { "lower" },
            if m.key { "yes" } else { "" },
            m.typical_cv * 100.0,
            m.description
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_metric_belongs_to_a_listed_probe_and_is_unique() {
        let mut seen = HashSet::new();
        for m in METRICS {
            assert!(probe(m.probe).is_some(), "{} is not a listed probe", m.probe);
            assert!(seen.insert((m.probe, m.metric)), "{}.{} twice", m.probe, m.metric);
            assert!(m.reference > 0.0 && m.typical_cv >= 0.0);
        }
    }

    #[test]
    fn every_probe_has_metrics_and_system_categories_have_key_metrics() {
        for p in PROBES {
            assert!(metrics_of(p.id).next().is_some(), "{} has no metrics", p.id);
        }
        for c in [Category::Cpu, Category::Memory, Category::Storage, Category::Network] {
            assert!(METRICS.iter().any(|m| m.key && m.category() == c), "{c} has no key metric");
        }
    }

    #[test]
    fn latency_metrics_are_lower_is_better() {
        for m in METRICS.iter().filter(|m| m.metric.contains("lat") || m.metric.starts_with("rtt")) {
            assert!(!m.higher_is_better, "{}.{}", m.probe, m.metric);
        }
    }

    #[test]
    fn the_analyst_readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "datasets/README.md is out of date: paste `fathom-datasets schema --metrics` into it"
        );
    }

    #[test]
    fn category_of_probe() {
        assert_eq!(Category::of_probe("storage.rand4k"), Some(Category::Storage));
        assert_eq!(Category::of_probe("gpu.x"), None);
        assert_eq!(Category::of_probe("nodot"), None);
    }
}
