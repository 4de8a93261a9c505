//! Rows of the three tables as Rust values, and their conversion to Arrow record batches.
//!
//! The serde field names are the column names, so `fathom-collector run --json` prints exactly
//! what lands in Parquet.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::schema::{SCHEMA_VERSION, Table};

/// How a run ended (`runs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Partial,
    Deferred,
    Skipped,
    Missed,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Ok,
        RunStatus::Partial,
        RunStatus::Deferred,
        RunStatus::Skipped,
        RunStatus::Missed,
        RunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Deferred => "deferred",
            RunStatus::Skipped => "skipped",
            RunStatus::Missed => "missed",
            RunStatus::Failed => "failed",
        }
    }
}

/// What a host is, as the collector saw it (the host-fact columns of `runs`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpu_model: String,
    pub cpu_cores: i32,
    pub cpu_threads: i32,
    pub cpu_flags: Vec<String>,
    pub mem_bytes: i64,
    pub os: String,
    pub kernel: String,
    pub virtualization: String,
}

/// One row of `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub host: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub suite: String,
    pub schedule: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    pub status_reason: Option<String>,
    pub collector_version: String,
    pub schema_version: i32,
    #[serde(flatten)]
    pub facts: HostFacts,
}

impl RunRecord {
    /// The partition a run and all its rows belong to: the UTC date it started.
    pub fn date(&self) -> NaiveDate {
        self.started_at.date_naive()
    }

    /// A new run id: UUIDv7, so ids sort by start time.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    pub fn schema_version() -> i32 {
        SCHEMA_VERSION
    }
}

/// One row of `measurements`, without the run's identifying columns (added on write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub probe: String,
    pub category: String,
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub params: String,
    pub value: f64,
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
    pub cv: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub n: i32,
    pub disturbed: bool,
    pub foreign_cpu: Option<f64>,
}

/// One row of `samples`: a raw repetition or one point of a time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub probe: String,
    pub metric: String,
    pub params: String,
    pub seq: i32,
    pub t_offset_s: f64,
    pub value: f64,
    /// Whether the measurement row describes this repetition (its steady window).
    pub in_window: bool,
}

fn string_map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
}

fn append_map(builder: &mut MapBuilder<StringBuilder, StringBuilder>, map: &BTreeMap<String, String>) {
    for (k, v) in map {
        builder.keys().append_value(k);
        builder.values().append_value(v);
    }
    builder.append(true).expect("keys and values are appended in pairs");
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(table.schema(), columns)
        .expect("builders match the table schema (checked by unit tests)")
}

/// `runs` rows as one record batch.
pub fn runs_batch(runs: &[RunRecord]) -> RecordBatch {
    let mut run_id = StringBuilder::new();
    let mut host = StringBuilder::new();
    let mut role = StringBuilder::new();
    let mut labels = string_map_builder();
    let mut tags = string_map_builder();
    let mut suite = StringBuilder::new();
    let mut schedule = StringBuilder::new();
    let mut started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut finished = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut status = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut version = StringBuilder::new();
    let mut schema_version = Int32Builder::new();
    let mut cpu_model = StringBuilder::new();
    let mut cpu_cores = Int32Builder::new();
    let mut cpu_threads = Int32Builder::new();
    let mut cpu_flags = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )));
    let mut mem_bytes = Int64Builder::new();
    let mut os = StringBuilder::new();
    let mut kernel = StringBuilder::new();
    let mut virt = StringBuilder::new();
    for r in runs {
        run_id.append_value(&r.run_id);
        host.append_value(&r.host);
        role.append_value(&r.role);
        append_map(&mut labels, &r.labels);
        append_map(&mut tags, &r.tags);
        suite.append_value(&r.suite);
        schedule.append_option(r.schedule.as_deref());
        started.append_value(r.started_at.timestamp_micros());
        finished.append_value(r.finished_at.timestamp_micros());
        status.append_value(r.status.as_str());
        reason.append_option(r.status_reason.as_deref());
        version.append_value(&r.collector_version);
        schema_version.append_value(r.schema_version);
        cpu_model.append_value(&r.facts.cpu_model);
        cpu_cores.append_value(r.facts.cpu_cores);
        cpu_threads.append_value(r.facts.cpu_threads);
        for flag in &r.facts.cpu_flags {
            cpu_flags.values().append_value(flag);
        }
        cpu_flags.append(true);
        mem_bytes.append_value(r.facts.mem_bytes);
        os.append_value(&r.facts.os);
        kernel.append_value(&r.facts.kernel);
        virt.append_value(&r.facts.virtualization);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(run_id.finish()),
        Arc::new(host.finish()),
        Arc::new(role.finish()),
        Arc::new(labels.finish()),
        Arc::new(tags.finish()),
        Arc::new(suite.finish()),
        Arc::new(schedule.finish()),
        Arc::new(started.finish()),
        Arc::new(finished.finish()),
        Arc::new(status.finish()),
        Arc::new(reason.finish()),
        Arc::new(version.finish()),
        Arc::new(schema_version.finish()),
        Arc::new(cpu_model.finish()),
        Arc::new(cpu_cores.finish()),
        Arc::new(cpu_threads.finish()),
        Arc::new(cpu_flags.finish()),
        Arc::new(mem_bytes.finish()),
        Arc::new(os.finish()),
        Arc::new(kernel.finish()),
        Arc::new(virt.finish()),
    ];
    batch(Table::Runs, columns)
}

/// Accumulates `measurements` rows of one or many runs.
#[derive(Default)]
pub struct MeasurementsBuilder {
    run_id: StringBuilder,
    host: StringBuilder,
    role: StringBuilder,
    suite: StringBuilder,
    started: TimestampMicrosecondBuilder,
    probe: StringBuilder,
    category: StringBuilder,
    metric: StringBuilder,
    unit: StringBuilder,
    hib: BooleanBuilder,
    params: StringBuilder,
    value: Float64Builder,
    mean: Float64Builder,
    stddev: Float64Builder,
    cv: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    n: Int32Builder,
    disturbed: BooleanBuilder,
    foreign_cpu: Float64Builder,
    rows: usize,
}

impl MeasurementsBuilder {
    pub fn append(&mut self, run: &RunRecord, m: &Measurement) {
        self.run_id.append_value(&run.run_id);
        self.host.append_value(&run.host);
        self.role.append_value(&run.role);
        self.suite.append_value(&run.suite);
        self.started.append_value(run.started_at.timestamp_micros());
        self.probe.append_value(&m.probe);
        self.category.append_value(&m.category);
        self.metric.append_value(&m.metric);
        self.unit.append_value(&m.unit);
        self.hib.append_value(m.higher_is_better);
        self.params.append_value(&m.params);
        self.value.append_value(m.value);
        self.mean.append_option(m.mean);
        self.stddev.append_option(m.stddev);
        self.cv.append_option(m.cv);
        self.min.append_option(m.min);
        self.max.append_option(m.max);
        self.n.append_value(m.n);
        self.disturbed.append_value(m.disturbed);
        self.foreign_cpu.append_option(m.foreign_cpu);
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.run_id.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.suite.finish()),
            Arc::new(self.started.finish().with_timezone("UTC")),
            Arc::new(self.probe.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.hib.finish()),
            Arc::new(self.params.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.mean.finish()),
            Arc::new(self.stddev.finish()),
            Arc::new(self.cv.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.n.finish()),
            Arc::new(self.disturbed.finish()),
            Arc::new(self.foreign_cpu.finish()),
        ];
        batch(Table::Measurements, columns)
    }
}

/// Accumulates `samples` rows of one or many runs.
#[derive(Default)]
pub struct SamplesBuilder {
    run_id: StringBuilder,
    probe: StringBuilder,
    metric: StringBuilder,
    params: StringBuilder,
    seq: Int32Builder,
    t_offset: Float64Builder,
    value: Float64Builder,
    in_window: BooleanBuilder,
    rows: usize,
}

impl SamplesBuilder {
    pub fn append(&mut self, run_id: &str, s: &Sample) {
        self.run_id.append_value(run_id);
        self.probe.append_value(&s.probe);
        self.metric.append_value(&s.metric);
        self.params.append_value(&s.params);
        self.seq.append_value(s.seq);
        self.t_offset.append_value(s.t_offset_s);
        self.value.append_value(s.value);
        self.in_window.append_value(s.in_window);
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.run_id.finish()),
            Arc::new(self.probe.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.params.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.t_offset.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.in_window.finish()),
        ];
        batch(Table::Samples, columns)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use crate::fixtures::{measurement, run};

    #[test]
    fn batches_match_their_schemas() {
        let r = run("db-01", "2026-01-02T03:04:05Z");
        let runs = runs_batch(std::slice::from_ref(&r));
        assert_eq!(runs.num_rows(), 1);
        let mut m = MeasurementsBuilder::default();
        m.append(&r, &measurement("encrypt_1t", 1000.0));
        m.append(&r, &measurement("decrypt_1t", 1100.0));
        assert_eq!(m.finish().num_rows(), 2);
        let mut s = SamplesBuilder::default();
        s.append(
            &r.run_id,
            &Sample {
                probe: "cpu.aes_gcm".into(),
                metric: "encrypt_1t".into(),
                params: String::new(),
                seq: 0,
                t_offset_s: 0.5,
                value: 999.0,
                in_window: true,
            },
        );
        assert_eq!(s.finish().num_rows(), 1);
    }

    #[test]
    fn run_json_uses_column_names() {
        let r = run("db-01", "2026-01-02T03:04:05Z");
        let v = serde_json::to_value(&r).unwrap();
        for name in ["run_id", "host", "cpu_model", "cpu_flags", "mem_bytes", "status"] {
            assert!(v.get(name).is_some(), "{name}");
        }
        assert_eq!(v["status"], "ok");
        assert_eq!(r.date().to_string(), "2026-01-02");
    }
}
