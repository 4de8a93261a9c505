//! The recommendations engine: what a comparison means for the workloads, in the seed's three
//! shapes (target faster / adequate / inadequate). Every rule is a row of one of the tables
//! below; add a row to add a rule.

use serde::Serialize;

use super::compare::{Comparison, HostRuns, Rating};

/// What each rating of a category means, in the seed's words where it has them.
struct CategoryLine {
    category: &'static str,
    label: &'static str,
    /// Excellent, good, adequate, poor or critical.
    texts: [&'static str; 5],
}

const CATEGORY_LINES: &[CategoryLine] = &[
    CategoryLine {
        category: "cpu",
        label: "CPU",
        texts: [
            "Faster than the source",
            "Good for most workloads",
            "CPU-heavy work (restores, compression, encryption) will take longer",
            "Insufficient for production workload",
            "Insufficient for production workload",
        ],
    },
    CategoryLine {
        category: "memory",
        label: "Memory",
        texts: [
            "Faster than the source",
            "Adequate",
            "Consider increasing RAM allocation",
            "Memory-bound workloads (caches, in-memory databases) will suffer",
            "Memory-bound workloads (caches, in-memory databases) will suffer",
        ],
    },
    CategoryLine {
        category: "storage",
        label: "Storage",
        texts: [
            "Faster than the source",
            "Good for most workloads",
            "May impact database performance",
            "Will cause severe performance issues",
            "Will cause severe performance issues",
        ],
    },
    CategoryLine {
        category: "network",
        label: "Network",
        texts: [
            "Excellent connectivity",
            "Good connectivity",
            "Marginal bandwidth",
            "Insufficient bandwidth for replication and backups",
            "Insufficient bandwidth for replication and backups",
        ],
    },
];

/// Workloads at risk when a group of metrics falls below a threshold. The rule looks at the
/// geometric mean of the group's ratios that were compared; below `severe` it says `severe_risk`.
struct RiskRule {
    metrics: &'static [(&'static str, &'static str)],
    what: &'static str,
    below: f64,
    risk: &'static str,
    severe: f64,
    severe_risk: &'static str,
}

const RISK_RULES: &[RiskRule] = &[
    RiskRule {
        metrics: &[
            ("storage.rand4k", "read_iops"),
            ("storage.rand4k", "write_iops"),
            ("storage.mixed", "read_iops"),
            ("storage.mixed", "write_iops"),
        ],
        what: "Storage IOPS",
        below: 0.8,
        risk: "may impact database workloads",
        severe: 0.6,
        severe_risk: "databases and storage-intensive VMs will see severe slowdowns",
    },
    RiskRule {
        metrics: &[
            ("storage.rand4k", "read_lat_p99"),
            ("storage.mixed", "read_lat_p99"),
            ("storage.mixed", "write_lat_p99"),
        ],
        what: "Storage tail latency (p99)",
        below: 0.8,
        risk: "latency-sensitive services (OLTP, queues) may miss their SLOs",
        severe: 0.5,
        severe_risk: "latency-sensitive services (OLTP, queues) will miss their SLOs",
    },
    RiskRule {
        metrics: &[("storage.fsync", "fsync_rate")],
        what: "fsync rate",
        below: 0.8,
        risk: "transactional databases and journals (PostgreSQL, etcd, Kafka) will commit more slowly",
        severe: 0.5,
        severe_risk: "transactional databases and journals (PostgreSQL, etcd, Kafka) will be commit-bound",
    },
    RiskRule {
        metrics: &[("storage.seq", "read_bw"), ("storage.seq", "write_bw")],
        what: "Sequential storage throughput",
        below: 0.8,
        risk: "backups, restores and bulk loads will take longer",
        severe: 0.5,
        severe_risk: "backup and restore windows will be missed",
    },
    RiskRule {
        metrics: &[("cpu.flops", "gflops_f64_mt"), ("cpu.scaling", "throughput_mt")],
        what: "All-core CPU throughput",
        below: 0.8,
        risk: "batch jobs, restores and parallel compression will take longer",
        severe: 0.5,
        severe_risk: "batch jobs and restores will take twice as long or more",
    },
    RiskRule {
        metrics: &[
            ("cpu.flops", "gflops_f64_1t"),
            ("cpu.scaling", "throughput_1t"),
            ("cpu.compress", "zstd3_compress"),
        ],
        what: "Single-thread CPU speed",
        below: 0.8,
        risk: "single-threaded services and request latency will suffer",
        severe: 0.5,
        severe_risk: "single-threaded services will be CPU-bound",
    },
    RiskRule {
        metrics: &[("cpu.aes_gcm", "encrypt_mt"), ("cpu.aes_gcm", "decrypt_mt")],
        what: "AES-GCM throughput",
        below: 0.8,
        risk: "encrypted backups, TLS and disk encryption will cost more CPU",
        severe: 0.5,
        severe_risk: "encrypted backups and TLS termination will be CPU-bound",
    },
    RiskRule {
        metrics: &[("memory.bandwidth", "copy"), ("memory.bandwidth", "triad")],
        what: "Memory bandwidth",
        below: 0.8,
        risk: "analytics and in-memory data processing will be slower",
        severe: 0.5,
        severe_risk: "analytics and in-memory data processing will be memory-bound",
    },
    RiskRule {
        metrics: &[("memory.latency", "latency")],
        what: "Memory latency",
        below: 0.8,
        risk: "caches and in-memory databases (Redis, memcached) will serve more slowly",
        severe: 0.5,
        severe_risk: "caches and in-memory databases will serve far more slowly",
    },
    RiskRule {
        metrics: &[("network.tcp", "send_parallel"), ("network.tcp", "recv_parallel")],
        what: "Network throughput",
        below: 0.8,
        risk: "replication and backup transfers will take longer",
        severe: 0.5,
        severe_risk: "replication will fall behind",
    },
    RiskRule {
        metrics: &[("network.latency", "rtt_p50")],
        what: "Network round-trip time",
        below: 0.8,
        risk: "chatty services and synchronous replication will slow down",
        severe: 0.5,
        severe_risk: "synchronous replication will not keep up",
    },
];

/// Storage classes by 4 KiB random-read IOPS at queue depth, since the dataset has no disk model:
/// a SATA SSD tops out near 100,000, a spinning disk near a few hundred.
const DISK_CLASSES: &[(f64, &str)] = &[(100_000.0, "NVMe SSD"), (1_000.0, "SATA/SAS SSD"), (0.0, "HDD")];

fn disk_class(read_iops: f64) -> &'static str {
    DISK_CLASSES.iter().find(|(min, _)| read_iops >= *min).map(|c| c.1).unwrap_or("HDD")
}

/// One line with the seed's mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub mark: &'static str,
    pub text: String,
}

/// Everything the engine says about one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Advice {
    pub recommendations: Vec<Line>,
    pub warnings: Vec<String>,
    pub suggestions: Vec<String>,
    pub critical_warnings: Vec<String>,
    pub required_upgrades: Vec<String>,
}

/// A side's facts over its hosts: a single figure, or the range across hosts.
struct SideFacts {
    cores: (i32, i32),
    threads: (i32, i32),
    mem: (i64, i64),
    models: Vec<String>,
}

impl SideFacts {
    fn of(hosts: &[HostRuns]) -> SideFacts {
        let span = |f: &dyn Fn(&HostRuns) -> i64| {
            let v: Vec<i64> = hosts.iter().map(f).collect();
            (v.iter().copied().min().unwrap_or(0), v.iter().copied().max().unwrap_or(0))
        };
        let cores = span(&|h| h.facts.cpu_cores as i64);
        let threads = span(&|h| h.facts.cpu_threads as i64);
        let mut models: Vec<String> = hosts.iter().map(|h| h.facts.cpu_model.clone()).collect();
        models.sort();
        models.dedup();
        SideFacts {
            cores: (cores.0 as i32, cores.1 as i32),
            threads: (threads.0 as i32, threads.1 as i32),
            mem: span(&|h| h.facts.mem_bytes),
            models,
        }
    }

    fn cores_text(&self) -> String {
        let cores = range(self.cores.0 as f64, self.cores.1 as f64, |v| format!("{v:.0}"));
        let threads = range(self.threads.0 as f64, self.threads.1 as f64, |v| format!("{v:.0}"));
        format!("{cores} cores, {threads} threads")
    }

    fn mem_text(&self) -> String {
        range(self.mem.0 as f64, self.mem.1 as f64, gib)
    }

    fn model_text(&self) -> String {
        match self.models.as_slice() {
            [] => "an unknown CPU".into(),
            [one] => one.clone(),
            many => format!("{} CPU models", many.len()),
        }
    }
}

fn gib(bytes: f64) -> String {
    format!("{:.0} GiB", bytes / (1u64 << 30) as f64)
}

fn range(lo: f64, hi: f64, fmt: impl Fn(f64) -> String) -> String {
    if lo == hi { fmt(lo) } else { format!("{}–{}", fmt(lo), fmt(hi)) }
}

fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Applies every rule to a comparison of `target` with `source`.
pub fn advise(c: &Comparison, source: &[HostRuns], target: &[HostRuns]) -> Advice {
    let mut advice = Advice::default();
    let (sf, tf) = (SideFacts::of(source), SideFacts::of(target));
    let overall = c.overall_score;

    // The overall shape first. A strong category can lift the mean above 1 while another is
    // weak: "excellent candidate" needs every weighted category at 80 % or more, and a
    // critical category is critical whatever the mean.
    let weak: Vec<String> = c
        .categories
        .iter()
        .filter(|k| k.weight > 0.0 && k.rating < Rating::Good)
        .map(|k| format!("{} {}", k.category, pct(k.ratio)))
        .collect();
    let critical_category = c.categories.iter().any(|k| k.weight > 0.0 && k.rating == Rating::Critical);
    match overall.map(Rating::of) {
        Some(Rating::Excellent) if !weak.is_empty() => {
            advice.recommendations.push(Line {
                mark: "⚠️",
                text: format!(
                    "Target exceeds source performance overall, but not everywhere: {}",
                    weak.join(", ")
                ),
            });
        }
        Some(Rating::Excellent) => {
            for text in [
                "Target exceeds source performance",
                "Excellent candidate for failover",
                "Consider using this target for production migrations",
            ] {
                advice.recommendations.push(Line { mark: "✅", text: text.into() });
            }
        }
        Some(r) if r <= Rating::Poor || critical_category => {
            advice.critical_warnings.extend(
                [
                    "Target NOT recommended for production failover",
                    "Use only for DR testing or low-priority workloads",
                    "Consider upgrading target infrastructure",
                ]
                .map(String::from),
            );
        }
        _ => {}
    }
    if critical_category && advice.critical_warnings.is_empty() {
        advice.critical_warnings.push(format!(
            "Target NOT recommended for production failover: a weighted category is critical (below 40%): {}",
            weak.join(", ")
        ));
    }
    // Then one line per category.
    for line in CATEGORY_LINES {
        let Some(cat) = c.category(line.category) else { continue };
        let text = line.texts[4 - cat.rating as usize];
        advice
            .recommendations
            .push(Line { mark: cat.mark, text: format!("{}: {} - {text}", line.label, pct(cat.ratio)) });
    }
    for missing in &c.missing_categories {
        advice.recommendations.push(Line {
            mark: "⚠️",
            text: format!("{missing}: not measured alike on both sides, left out of the score"),
        });
    }

    // Workloads at risk.
    for rule in RISK_RULES {
        let found: Vec<_> = rule.metrics.iter().filter_map(|(p, m)| c.metric(p, m)).collect();
        if found.is_empty() {
            continue;
        }
        let ratio = (found.iter().map(|m| m.ratio.ln()).sum::<f64>() / found.len() as f64).exp();
        if ratio >= rule.below {
            continue;
        }
        let risk = if ratio < rule.severe { rule.severe_risk } else { rule.risk };
        let change = if found[0].higher_is_better {
            format!("{:.0}% lower", (1.0 - ratio) * 100.0)
        } else {
            format!("{:.0}% higher", (1.0 / ratio - 1.0) * 100.0)
        };
        advice.warnings.push(format!("{} {change} than source - {risk}", rule.what));
    }

    let rating = |cat: &str| c.category(cat).map(|s| s.rating);
    let below = |cat: &str, r: Rating| rating(cat).is_some_and(|x| x < r);

    // CPU.
    if below("cpu", Rating::Good) {
        // The target's smallest host against the source's largest.
        let fewer = tf.cores.0 < sf.cores.1;
        let ratio = c.category("cpu").map(|s| s.ratio).unwrap_or(0.0);
        if fewer {
            advice.suggestions.push(format!(
                "Give the target more cores: it has {}, the source {}",
                tf.cores_text(),
                sf.cores_text()
            ));
        } else {
            advice.suggestions.push(format!(
                "The target's cores are slower with as many of them ({} on the target, {} on the source): a newer CPU generation or a less contended host",
                tf.model_text(),
                sf.model_text()
            ));
        }
        if ratio < 0.6 {
            advice.required_upgrades.push(if fewer {
                format!(
                    "CPU: Minimum {} cores (currently {} cores)",
                    sf.cores.1,
                    range(tf.cores.0 as f64, tf.cores.1 as f64, |v| format!("{v:.0}"))
                )
            } else {
                format!(
                    "CPU: faster cores (the target's {} reaches {} of the source's {})",
                    tf.model_text(),
                    pct(ratio),
                    sf.model_text()
                )
            });
        }
    }
    // Memory.
    if below("memory", Rating::Good) {
        let ratio = c.category("memory").map(|s| s.ratio).unwrap_or(0.0);
        if tf.mem.0 < sf.mem.1 && tf.mem.0 > 0 {
            let more = sf.mem.1 as f64 / tf.mem.0 as f64 - 1.0;
            advice.suggestions.push(format!(
                "Increase memory allocation by {} ({} on the target, {} on the source)",
                pct(more),
                tf.mem_text(),
                sf.mem_text()
            ));
            if ratio < 0.6 {
                advice.required_upgrades.push(format!(
                    "Memory: Minimum {} (currently {})",
                    sf.mem_text(),
                    tf.mem_text()
                ));
            }
        } else {
            advice.suggestions.push(format!(
                "Memory is slower with as much RAM ({} on the target, {} on the source): check NUMA placement, populated memory channels or the hypervisor's memory overcommit",
                tf.mem_text(),
                sf.mem_text()
            ));
            if ratio < 0.6 {
                advice.required_upgrades.push(format!(
                    "Memory: faster memory (bandwidth and latency at {} of the source's)",
                    pct(ratio)
                ));
            }
        }
    }
    // Storage: the class follows from the measured random-read IOPS.
    if below("storage", Rating::Good) {
        let ratio = c.category("storage").map(|s| s.ratio).unwrap_or(0.0);
        // The class only from a deep queue: at queue depth 1 an NVMe disk reads like a SATA one.
        let deep = |params: &str| {
            params.split(',').any(|p| {
                p.strip_prefix("queue_depth=").and_then(|v| v.parse::<u32>().ok()).is_some_and(|q| q >= 16)
            })
        };
        let classes = c.metric("storage.rand4k", "read_iops").filter(|m| deep(&m.params)).map(|m| {
            (m.source.value, m.target.value, disk_class(m.source.value), disk_class(m.target.value))
        });
        match classes {
            Some((s, t, sc, tc)) if sc != tc => {
                advice.suggestions.push(format!(
                    "Upgrade target storage to {sc} (the source reads {} random 4 KiB IOPS, {sc} class; the target {}, {tc} class)",
                    thousands(s),
                    thousands(t)
                ));
                if ratio < 0.6 {
                    advice.required_upgrades.push(format!("Storage: {sc} required (currently {tc})"));
                }
            }
            Some((s, t, sc, _)) => {
                advice.suggestions.push(format!(
                    "Move the target to faster or less contended storage: both are {sc} class, yet the target reads {} random 4 KiB IOPS against the source's {}",
                    thousands(t),
                    thousands(s)
                ));
                if ratio < 0.6 {
                    advice.required_upgrades.push(format!(
                        "Storage: at least {} random 4 KiB read IOPS (currently {})",
                        thousands(s),
                        thousands(t)
                    ));
                }
            }
            None => {
                advice.suggestions.push("Upgrade target storage: it is slower than the source's".into());
                if ratio < 0.6 {
                    advice
                        .required_upgrades
                        .push(format!("Storage: at {} of the source's performance", pct(ratio)));
                }
            }
        }
        advice.suggestions.push("Storage-intensive VMs may see performance degradation".into());
    }
    // Network.
    if below("network", Rating::Good) {
        let ratio = c.category("network").map(|s| s.ratio).unwrap_or(0.0);
        match c.metric("network.tcp", "send_parallel") {
            Some(m) => {
                advice.suggestions.push(format!(
                    "Check the target's link speed, NIC offloads and path to its peer: {:.1} Gbit/s against the source's {:.1}",
                    m.target.value, m.source.value
                ));
                if ratio < 0.6 {
                    advice.required_upgrades.push(format!(
                        "Network: at least {:.1} Gbit/s to the peer (currently {:.1} Gbit/s)",
                        m.source.value, m.target.value
                    ));
                }
            }
            None => {
                advice
                    .suggestions
                    .push("Check the target's network path: it is slower than the source's".into());
                if ratio < 0.6 {
                    advice
                        .required_upgrades
                        .push(format!("Network: at {} of the source's performance", pct(ratio)));
                }
            }
        }
    }
    if overall.is_some_and(|o| o < 0.6) {
        advice.warnings.insert(0, "Target may not handle production load (score below 60%)".into());
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_classes_follow_random_read_iops() {
        assert_eq!(disk_class(420_000.0), "NVMe SSD");
        assert_eq!(disk_class(90_000.0), "SATA/SAS SSD");
        assert_eq!(disk_class(300.0), "HDD");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(420000.0), "420,000");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(pct(0.754), "75%");
        assert_eq!(range(4.0, 8.0, |v| format!("{v:.0}")), "4–8");
        assert_eq!(gib((32u64 << 30) as f64), "32 GiB");
    }

    #[test]
    fn every_category_line_has_a_scored_category() {
        for line in CATEGORY_LINES {
            assert!(
                super::super::compare::SCORED.iter().any(|c| c.as_str() == line.category),
                "{}",
                line.category
            );
        }
        for rule in RISK_RULES {
            for (p, m) in rule.metrics {
                assert!(
                    fathom_datasets::catalogue::metric(p, m).is_some(),
                    "{p} {m} is not in the catalogue"
                );
            }
            assert!(rule.severe < rule.below);
        }
    }
}
