//! Example records for tests and benchmarks, here and in the other crates (the collector's
//! spool tests, the end-to-end tests): one definition of a plausible run and measurement
//! instead of a copy in every test file.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::records::{HostFacts, Measurement, RunRecord, RunStatus};
use crate::schema::SCHEMA_VERSION;

/// A completed `quick` run of a 4-core `target` host in site `fra1`, started at `started`
/// (RFC 3339), with a new run id.
pub fn run(host: &str, started: &str) -> RunRecord {
    let started_at: DateTime<Utc> = started.parse().unwrap();
    RunRecord {
        run_id: RunRecord::new_id(),
        host: host.into(),
        role: "target".into(),
        labels: [("site".to_string(), "fra1".to_string())].into(),
        tags: BTreeMap::new(),
        suite: "quick".into(),
        schedule: None,
        started_at,
        finished_at: started_at + chrono::Duration::seconds(42),
        status: RunStatus::Ok,
        status_reason: None,
        collector_version: "0.1.0".into(),
        schema_version: SCHEMA_VERSION,
        facts: HostFacts {
            cpu_model: "Test CPU".into(),
            cpu_cores: 4,
            cpu_threads: 8,
            cpu_flags: vec!["aes".into(), "avx2".into()],
            mem_bytes: 16 << 30,
            os: "Debian 12".into(),
            kernel: "6.1.0".into(),
            virtualization: "kvm".into(),
        },
    }
}

/// A `cpu.aes_gcm` measurement of `metric` in MB/s (`buffer=16KiB`), from three steady
/// repetitions.
pub fn measurement(metric: &str, value: f64) -> Measurement {
    Measurement {
        probe: "cpu.aes_gcm".into(),
        category: "cpu".into(),
        metric: metric.into(),
        unit: "MB/s".into(),
        higher_is_better: true,
        params: "buffer=16KiB".into(),
        value,
        mean: Some(value),
        stddev: Some(0.0),
        cv: Some(0.0),
        min: Some(value),
        max: Some(value),
        n: 3,
        disturbed: false,
        foreign_cpu: Some(0.01),
    }
}
