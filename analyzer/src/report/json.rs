//! JSON for programs: the shape of the seed's `GET /api/v1/benchmark/{id}` response (`source`,
//! `target`, `comparison` with `overall_score`, the four category ratios, `recommendation`,
//! `warnings`), extended with per-category, per-metric and advice detail. Documented in
//! `docs/COMPARE.md`; `schema` names the version of this shape.

use serde_json::{Value, json};

use crate::analyses::compare::{CompareReport, Side};
use crate::analyses::rank::Ranked;

pub const COMPARE_SCHEMA: &str = "fathom.compare/1";
pub const RANK_SCHEMA: &str = "fathom.rank/1";

/// A side with the seed's headline figures: `flops` in GFLOP/s (f64, all threads),
/// `bandwidth_gbps` in GB/s (memory triad) and Gbit/s (TCP, parallel streams, to the peer),
/// `iops` (4 KiB random read), `throughput_mbps` in MB/s (sequential read).
pub fn side(s: &Side) -> Value {
    json!({
        "selector": s.selector,
        "hosts": s.hosts,
        "runs_used": s.runs_used(),
        "cpu": {
            "flops": s.value("cpu.flops", "gflops_f64_mt"),
            "cores": s.hosts.iter().map(|h| h.facts.cpu_cores).max(),
        },
        "memory": { "bandwidth_gbps": s.value("memory.bandwidth", "triad") },
        "storage": {
            "iops": s.value("storage.rand4k", "read_iops"),
            "throughput_mbps": s.value("storage.seq", "read_bw"),
        },
        "network": { "bandwidth_gbps": s.value("network.tcp", "send_parallel") },
    })
}

pub fn comparison(r: &CompareReport) -> Value {
    let c = &r.comparison;
    let ratio = |cat: &str| c.category(cat).map(|k| k.ratio);
    json!({
        "overall_score": c.overall_score,
        "cpu_ratio": ratio("cpu"),
        "memory_ratio": ratio("memory"),
        "storage_ratio": ratio("storage"),
        "network_ratio": ratio("network"),
        "recommendation": c.rating.map(|x| x.title()),
        "warnings": r.advice.warnings,
        "rating": c.rating,
        "overall_interval": c.overall_interval,
        "weights": c.categories.iter().map(|k| (k.category.clone(), json!(k.weight))).collect::<serde_json::Map<_, _>>(),
        "weights_requested": r.weights,
        "weights_renormalized": c.weights_renormalized,
        "missing_categories": c.missing_categories,
        "categories": c.categories,
        "recommendations": r.advice.recommendations,
        "suggestions": r.advice.suggestions,
        "critical_warnings": r.advice.critical_warnings,
        "required_upgrades": r.advice.required_upgrades,
        "metrics": c.metrics,
        "not_comparable": c.not_comparable,
        "runs_per_host": r.last,
    })
}

pub fn compare(r: &CompareReport) -> Value {
    json!({
        "schema": COMPARE_SCHEMA,
        "source": side(&r.source),
        "target": side(&r.target),
        "comparison": comparison(r),
    })
}

pub fn rank(source: &Side, targets: &[Ranked]) -> Value {
    json!({
        "schema": RANK_SCHEMA,
        "source": side(source),
        "targets": targets.iter().map(|t| json!({
            "rank": t.rank,
            "host": t.host,
            "overall_score": t.report.comparison.overall_score,
            "recommendation": t.report.comparison.rating.map(|x| x.title()),
            "target": side(&t.report.target),
            "comparison": comparison(&t.report),
        })).collect::<Vec<_>>(),
    })
}
