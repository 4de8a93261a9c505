//! The `runs` table as plain rows: what selectors match on, and the host facts comparisons
//! quote. One row per suite run, so even a year of a large fleet is a few million small rows;
//! the heavy tables stay in Polars.

use std::collections::BTreeMap;

use fathom_datasets::schema::col;
use polars::prelude::*;
use serde::Serialize;

/// What the analyzer needs of one `runs` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub host: String,
    pub role: String,
    pub suite: String,
    /// The schedule that started it; empty for a run started by hand.
    pub schedule: String,
    pub labels: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Microseconds since the epoch, UTC.
    pub started_at: i64,
    pub status: String,
    pub facts: Facts,
}

impl RunInfo {
    /// Whether the run produced measurements worth comparing (`ok` or `partial`).
    pub fn measured(&self) -> bool {
        matches!(self.status.as_str(), "ok" | "partial")
    }

    pub fn started_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp_micros(self.started_at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

/// The host facts a run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Facts {
    pub cpu_model: String,
    pub cpu_cores: i32,
    pub cpu_threads: i32,
    pub mem_bytes: i64,
    pub os: String,
    pub kernel: String,
    pub virtualization: String,
}

/// A `map<string,string>` cell, which Polars reads as a list of `{key, value}` structs.
fn string_map(cell: Option<Series>) -> PolarsResult<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    let Some(entries) = cell else { return Ok(map) };
    if entries.is_empty() {
        return Ok(map);
    }
    let entries = entries.struct_()?;
    let fields = entries.fields_as_series();
    let (keys, values) = match fields.as_slice() {
        [k, v] => (k.str()?.clone(), v.str()?.clone()),
        _ => polars_bail!(ComputeError: "a map column should hold key/value structs"),
    };
    for i in 0..keys.len() {
        if let Some(k) = keys.get(i) {
            map.insert(k.to_string(), values.get(i).unwrap_or_default().to_string());
        }
    }
    Ok(map)
}

/// Reads every row of a `runs` scan.
pub fn read_runs(runs: LazyFrame) -> PolarsResult<Vec<RunInfo>> {
    let df = runs
        .select([
            col(col::RUN_ID),
            col(col::HOST),
            col(col::ROLE),
            col(col::SUITE),
            col(col::SCHEDULE),
            col(col::LABELS),
            col(col::TAGS),
            col(col::STARTED_AT).cast(DataType::Datetime(TimeUnit::Microseconds, None)).to_physical(),
            col(col::STATUS),
            col(col::CPU_MODEL),
            col(col::CPU_CORES),
            col(col::CPU_THREADS),
            col(col::MEM_BYTES),
            col(col::OS),
            col(col::KERNEL),
            col(col::VIRTUALIZATION),
        ])
        .collect()?;
    let s = |name: &str| df.column(name).and_then(|c| c.str().cloned());
    let (run_id, host, role, suite, status) =
        (s(col::RUN_ID)?, s(col::HOST)?, s(col::ROLE)?, s(col::SUITE)?, s(col::STATUS)?);
    let schedule = s(col::SCHEDULE)?;
    let (cpu_model, os, kernel, virt) =
        (s(col::CPU_MODEL)?, s(col::OS)?, s(col::KERNEL)?, s(col::VIRTUALIZATION)?);
    let labels = df.column(col::LABELS)?.list()?.clone();
    let tags = df.column(col::TAGS)?.list()?.clone();
    let started = df.column(col::STARTED_AT)?.i64()?.clone();
    let cores = df.column(col::CPU_CORES)?.cast(&DataType::Int32)?.i32()?.clone();
    let threads = df.column(col::CPU_THREADS)?.cast(&DataType::Int32)?.i32()?.clone();
    let mem = df.column(col::MEM_BYTES)?.cast(&DataType::Int64)?.i64()?.clone();
    let text = |c: &StringChunked, i: usize| c.get(i).unwrap_or_default().to_string();
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let (l, t) = (labels.get_as_series(i), tags.get_as_series(i));
        out.push(RunInfo {
            run_id: text(&run_id, i),
            host: text(&host, i),
            role: text(&role, i),
            suite: text(&suite, i),
            schedule: text(&schedule, i),
            labels: string_map(l)?,
            tags: string_map(t)?,
            started_at: started.get(i).unwrap_or(0),
            status: text(&status, i),
            facts: Facts {
                cpu_model: text(&cpu_model, i),
                cpu_cores: cores.get(i).unwrap_or(0),
                cpu_threads: threads.get(i).unwrap_or(0),
                mem_bytes: mem.get(i).unwrap_or(0),
                os: text(&os, i),
                kernel: text(&kernel, i),
                virtualization: text(&virt, i),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn run_info(host: &str, role: &str) -> RunInfo {
        RunInfo {
            run_id: format!("{host}-run"),
            host: host.into(),
            role: role.into(),
            suite: "quick".into(),
            schedule: String::new(),
            labels: BTreeMap::new(),
            tags: BTreeMap::new(),
            started_at: 0,
            status: "ok".into(),
            facts: Facts { cpu_cores: 8, cpu_threads: 16, mem_bytes: 32 << 30, ..Facts::default() },
        }
    }

    fn record(host: &str, started: &str) -> fathom_datasets::RunRecord {
        let started_at: chrono::DateTime<chrono::Utc> = started.parse().unwrap();
        fathom_datasets::RunRecord {
            run_id: fathom_datasets::RunRecord::new_id(),
            host: host.into(),
            role: "target".into(),
            labels: BTreeMap::new(),
            tags: BTreeMap::new(),
            suite: "quick".into(),
            schedule: None,
            started_at,
            finished_at: started_at + chrono::Duration::seconds(42),
            status: fathom_datasets::RunStatus::Ok,
            status_reason: None,
            collector_version: "0.1.0".into(),
            schema_version: fathom_datasets::RunRecord::schema_version(),
            facts: fathom_datasets::HostFacts {
                cpu_model: "Test CPU".into(),
                cpu_cores: 4,
                cpu_threads: 8,
                cpu_flags: vec!["aes".into()],
                mem_bytes: 16 << 30,
                os: "Debian 12".into(),
                kernel: "6.1.0".into(),
                virtualization: "kvm".into(),
            },
        }
    }

    #[test]
    fn runs_written_by_the_contract_read_back_with_their_maps() {
        let mut run = record("db-01", "2026-03-01T02:00:00Z");
        run.labels.insert("site".into(), "fra1".into());
        run.tags.insert("upgrade".into(), "kernel-6.8".into());
        let plain = record("web-01", "2026-03-02T02:00:00Z");
        let batch = fathom_datasets::records::runs_batch(&[run.clone(), plain]);
        let bytes = fathom_datasets::write::encode_parquet(fathom_datasets::Table::Runs, &batch).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.parquet");
        std::fs::write(&path, bytes).unwrap();
        let lf = LazyFrame::scan_parquet(PlRefPath::new(path.to_str().unwrap()), Default::default()).unwrap();
        let rows = read_runs(lf).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].host, "db-01");
        assert_eq!(rows[0].labels.get("site").map(String::as_str), Some("fra1"));
        assert_eq!(rows[0].tags.get("upgrade").map(String::as_str), Some("kernel-6.8"));
        assert_eq!(rows[0].facts.cpu_cores, 4);
        assert_eq!(rows[0].facts.mem_bytes, 16 << 30);
        assert_eq!(rows[0].started_rfc3339(), "2026-03-01T02:00:00Z");
        assert!(rows[1].labels.is_empty() && rows[1].tags.is_empty());
    }
}
