//! `fathom-datasets compact`: each day's small files of each table merged into one (several
//! past `max_rows_per_file`), sorted by series, without changing any row.
//!
//! Safe while collectors upload and readers read: a per-run upload is merged only once its
//! `_delivered` marker exists (so it is complete, and a retry writes nothing); the rows are
//! counted and hashed before and after (the output as decoded back from its encoded bytes), and
//! a difference stops everything; the switch goes through a manifest (write it, put the
//! outputs, delete the inputs, delete it), which [`Dataset::list_files`] reads so each row is
//! listed once at every instant, and which the next run finishes or rolls back after a crash.

mod lock;
pub mod manifest;
pub mod rows;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::errors::ParquetError;

use crate::read::{check_file, read_parquet};
use crate::schema::{COMPACTION_DIR, Table};
use crate::store::{DataFile, Dataset, DateRange, StoreError};
use crate::write::{WriteError, encode_parquet};
use manifest::{GENERATION, Manifest, TableEntry};
use rows::RowDigest;

/// A day's table is split into several files only beyond this many rows (a year-long fleet of
/// 10,000 hosts writes about 600,000 measurement rows a night).
pub const MAX_ROWS_PER_FILE: usize = 8_000_000;

/// Outputs are `compacted-ID.parquet`, or `compacted-ID-K.parquet` when split.
const OUTPUT_PREFIX: &str = "compacted-";

/// Store requests in flight at once (marker checks, reads).
const PARALLEL: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactOptions {
    /// Only this day; `None`: every day.
    pub date: Option<NaiveDate>,
    /// Read, merge and check everything, write nothing.
    pub dry_run: bool,
    pub max_rows_per_file: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { date: None, dry_run: false, max_rows_per_file: MAX_ROWS_PER_FILE }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{date} {table}: {what}: {cause}")]
    Arrow { date: NaiveDate, table: Table, what: &'static str, cause: ArrowError },
    #[error("{date} {table}: reading the merged file back: {cause}")]
    Reread { date: NaiveDate, table: Table, cause: ParquetError },
    #[error(
        "{date} {table}: the merged rows differ from the inputs ({in_rows} rows, hash {in_hash} in; {out_rows} rows, hash {out_hash} out); nothing was written or deleted"
    )]
    RowCheck { date: NaiveDate, table: Table, in_rows: u64, in_hash: String, out_rows: u64, out_hash: String },
    #[error(
        "another compaction holds {lock} ({holder}); if that process is gone, delete {lock} and run again"
    )]
    Locked { lock: String, holder: String },
    #[error(
        "interrupted compaction {manifest} cannot be finished or rolled back: {missing_outputs} of its outputs and {missing_inputs} of its inputs are gone (removed by hand?); inspect the day and remove the manifest"
    )]
    Damaged { manifest: String, missing_outputs: usize, missing_inputs: usize },
}

/// One table of one day, merged (or, in a dry run, as it would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub date: NaiveDate,
    pub table: Table,
    /// Display paths.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub input: RowDigest,
    pub output: RowDigest,
}

/// Why a file was not merged. It stays where it is, and readers keep seeing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftReason {
    /// A per-run upload without its `_delivered` marker: possibly still being written.
    Undelivered,
    /// Fails the footer check or does not decode (`validate` reports it too).
    Unreadable(String),
    /// Readable, but not in the layout this version writes (e.g. from before an added column):
    /// merging it would mean inventing values.
    OtherLayout(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub path: String,
    pub reason: LeftReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// All outputs were stored: the inputs were deleted and the manifest removed.
    Finished,
    /// Not all outputs were stored: those that were, and the manifest, were deleted.
    RolledBack,
}

/// An interrupted compaction found at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub id: String,
    pub date: NaiveDate,
    pub action: Recovery,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub recovered: Vec<Recovered>,
    pub merged: Vec<Merged>,
    pub left: Vec<Left>,
}

impl Report {
    pub fn days(&self) -> usize {
        self.merged.iter().map(|m| m.date).collect::<HashSet<_>>().len()
    }
}

/// Compacts `dataset` (one day or all), under the compaction lock unless it is a dry run.
pub async fn compact(dataset: &Dataset, opts: &CompactOptions) -> Result<Report, CompactError> {
    if opts.dry_run {
        return run(dataset, opts).await;
    }
    let lock = lock::acquire(dataset).await?;
    let result = run(dataset, opts).await;
    let released = lock.release(dataset).await;
    let report = result?;
    released?;
    Ok(report)
}

async fn run(dataset: &Dataset, opts: &CompactOptions) -> Result<Report, CompactError> {
    let mut report = Report { dry_run: opts.dry_run, ..Default::default() };
    report.recovered = recover(dataset, opts.dry_run).await?;
    let range = DateRange { since: opts.date, until: opts.date };
    let mut days: BTreeMap<NaiveDate, BTreeMap<Table, Vec<DataFile>>> = BTreeMap::new();
    for table in Table::ALL {
        // After recovery no manifest is left (the lock keeps others out), so this is every
        // file; in a dry run it is what readers see.
        for file in dataset.list_files(table, range).await? {
            if let Some(date) = file.date {
                days.entry(date).or_default().entry(table).or_default().push(file);
            }
        }
    }
    for (date, tables) in days {
        let Some(plan) = plan_day(dataset, date, tables, opts.max_rows_per_file, &mut report.left).await?
        else {
            continue;
        };
        if !opts.dry_run {
            commit(dataset, &plan).await?;
        }
        report.merged.extend(plan.merged);
    }
    Ok(report)
}

/// Finishes (all outputs stored) or rolls back (not all) every compaction cut off before it
/// removed its manifest.
async fn recover(dataset: &Dataset, dry_run: bool) -> Result<Vec<Recovered>, CompactError> {
    let mut recovered = Vec::new();
    for m in manifest::list(dataset).await? {
        let outputs = m.outputs(dataset);
        let mut missing_outputs = 0;
        for output in &outputs {
            missing_outputs += usize::from(!dataset.exists(output).await?);
        }
        let action = if missing_outputs == 0 {
            if !dry_run {
                delete_inputs(dataset, &m).await?;
                remove_manifest(dataset, &m).await?;
            }
            Recovery::Finished
        } else {
            // Inputs are deleted only once every output is stored, so they must all be here.
            let mut missing_inputs = 0;
            for input in m.inputs(dataset) {
                missing_inputs += usize::from(!dataset.exists(&input).await?);
            }
            if missing_inputs > 0 {
                return Err(CompactError::Damaged {
                    manifest: dataset.display(&Manifest::location(dataset, &m.id)),
                    missing_outputs,
                    missing_inputs,
                });
            }
            if !dry_run {
                dataset.delete_all(&outputs).await?;
                remove_manifest(dataset, &m).await?;
            }
            Recovery::RolledBack
        };
        recovered.push(Recovered { id: m.id.clone(), date: m.date, action });
    }
    Ok(recovered)
}

/// A day merged in memory and checked, ready to be stored.
#[derive(Debug)]
pub(crate) struct DayPlan {
    pub manifest: Manifest,
    pub outputs: Vec<(Path, Bytes)>,
    pub merged: Vec<Merged>,
}

/// The run id of a per-run upload (`RUN_ID.parquet`, a UUID); `None` for any other name.
fn upload_run_id(location: &Path) -> Option<&str> {
    let stem = location.filename()?.strip_suffix(".parquet")?;
    uuid::Uuid::parse_str(stem).is_ok().then_some(stem)
}

/// The compaction that wrote a file (`compacted-ID.parquet`, `compacted-ID-K.parquet`).
fn output_of(location: &Path) -> Option<&str> {
    let rest = location.filename()?.strip_prefix(OUTPUT_PREFIX)?.strip_suffix(".parquet")?;
    let id = rest.get(..36)?;
    let suffix = &rest[36..];
    let part = suffix.is_empty() || suffix.strip_prefix('-').is_some_and(|k| k.parse::<usize>().is_ok());
    (part && uuid::Uuid::parse_str(id).is_ok()).then_some(id)
}

/// Two or more files, unless they are the parts of one earlier compaction (already merged and
/// sorted: merging them again would only rewrite them).
fn worth_merging<'a>(mut locations: impl Iterator<Item = &'a Path>) -> bool {
    let Some(first) = locations.next() else { return false };
    let Some(second) = locations.next() else { return false };
    let Some(id) = output_of(first) else { return true };
    !std::iter::once(second).chain(locations).all(|l| output_of(l) == Some(id))
}

/// The run ids among `files`' per-run uploads whose delivered marker exists.
async fn delivered_runs<'a>(
    dataset: &Dataset,
    files: impl Iterator<Item = &'a DataFile>,
) -> Result<HashSet<String>, StoreError> {
    let ids: HashSet<&str> = files.filter_map(|f| upload_run_id(&f.location)).collect();
    let checked: Vec<(String, bool)> = futures::stream::iter(ids)
        .map(|id| async move {
            let delivered = dataset.exists(&dataset.delivered_marker(id)).await?;
            Ok::<_, StoreError>((id.to_string(), delivered))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    Ok(checked.into_iter().filter(|(_, d)| *d).map(|(id, _)| id).collect())
}

/// Reads, checks, merges and verifies one day's tables; `None` when no table needs it.
pub(crate) async fn plan_day(
    dataset: &Dataset,
    date: NaiveDate,
    tables: BTreeMap<Table, Vec<DataFile>>,
    max_rows_per_file: usize,
    left: &mut Vec<Left>,
) -> Result<Option<DayPlan>, CompactError> {
    let delivered = delivered_runs(dataset, tables.values().flatten()).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut plan = DayPlan {
        manifest: Manifest { id: id.clone(), date, created_at: Utc::now(), tables: Vec::new() },
        outputs: Vec::new(),
        merged: Vec::new(),
    };
    for (table, files) in tables {
        let mut eligible = Vec::new();
        for file in files {
            match upload_run_id(&file.location) {
                Some(run_id) if !delivered.contains(run_id) => {
                    left.push(Left { path: dataset.display(&file.location), reason: LeftReason::Undelivered })
                }
                _ => eligible.push(file),
            }
        }
        if !worth_merging(eligible.iter().map(|f| &f.location)) {
            continue;
        }
        let inputs = read_inputs(dataset, table, eligible, left).await?;
        if !worth_merging(inputs.iter().map(|(f, _)| &f.location)) {
            continue;
        }
        let batches: Vec<RecordBatch> = inputs.iter().flat_map(|(_, b)| b.iter().cloned()).collect();
        let (files, input, output) = merge(date, table, &batches, &id, max_rows_per_file)?;
        let mut entry = TableEntry {
            table,
            outputs: Vec::new(),
            inputs: inputs.iter().map(|(f, _)| dataset.relative(&f.location)).collect(),
            rows: output.rows,
            hash: output.hex(),
        };
        let mut merged = Merged {
            date,
            table,
            inputs: inputs.iter().map(|(f, _)| dataset.display(&f.location)).collect(),
            outputs: Vec::new(),
            input,
            output,
        };
        for (name, bytes) in files {
            let location = dataset.data_path(table, date, &name);
            entry.outputs.push(dataset.relative(&location));
            merged.outputs.push(dataset.display(&location));
            plan.outputs.push((location, bytes));
        }
        plan.manifest.tables.push(entry);
        plan.merged.push(merged);
    }
    Ok((!plan.manifest.tables.is_empty()).then_some(plan))
}

/// The files that decode in this version's layout, with their rows; the others go to `left`.
async fn read_inputs(
    dataset: &Dataset,
    table: Table,
    files: Vec<DataFile>,
    left: &mut Vec<Left>,
) -> Result<Vec<(DataFile, Vec<RecordBatch>)>, CompactError> {
    let fetched: Vec<(DataFile, Result<Bytes, StoreError>)> = futures::stream::iter(files)
        .map(|file| async move {
            let bytes = dataset.get(&file.location).await;
            (file, bytes)
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut inputs = Vec::with_capacity(fetched.len());
    for (file, bytes) in fetched {
        let path = dataset.display(&file.location);
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(StoreError::Object { cause: object_store::Error::NotFound { .. }, .. }) => {
                left.push(Left { path, reason: LeftReason::Unreadable("vanished while being read".into()) });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let decoded = check_file(table, &bytes)
            .and_then(|()| read_parquet(bytes).map_err(|e| format!("not a readable Parquet file: {e}")));
        match decoded.map(|batches| conform(table, batches)) {
            Ok(Ok(batches)) => inputs.push((file, batches)),
            Ok(Err(reason)) => left.push(Left { path, reason: LeftReason::OtherLayout(reason) }),
            Err(reason) => left.push(Left { path, reason: LeftReason::Unreadable(reason) }),
        }
    }
    Ok(inputs)
}

/// The batches with the contract's schema, when their columns are exactly what this version
/// writes (names, order, types, nullability).
fn conform(table: Table, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, String> {
    let schema = table.schema();
    batches
        .into_iter()
        .map(|b| {
            let found = b.schema();
            let same = found.fields().len() == schema.fields().len()
                && found.fields().iter().zip(schema.fields()).all(|(f, e)| {
                    f.name() == e.name()
                        && f.data_type() == e.data_type()
                        && f.is_nullable() == e.is_nullable()
                });
            if !same {
                let missing: Vec<&str> = schema
                    .fields()
                    .iter()
                    .filter(|e| found.field_with_name(e.name()).is_err())
                    .map(|e| e.name().as_str())
                    .collect();
                return Err(if missing.is_empty() {
                    "its columns differ in order or type from what this version writes".to_string()
                } else {
                    format!("it lacks `{}` (written before the column was added)", missing.join("`, `"))
                });
            }
            RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| e.to_string())
        })
        .collect()
}

type Outputs = (Vec<(String, Bytes)>, RowDigest, RowDigest);

/// Concatenates, sorts and encodes one table's rows, then decodes the encoded files and checks
/// they hold exactly the input rows. Returns the output files (name, bytes) and both digests.
fn merge(
    date: NaiveDate,
    table: Table,
    batches: &[RecordBatch],
    id: &str,
    max_rows_per_file: usize,
) -> Result<Outputs, CompactError> {
    let arrow = |what| move |cause| CompactError::Arrow { date, table, what, cause };
    let input = rows::row_digest(batches).map_err(arrow("hashing the input rows"))?;
    let all =
        arrow_select::concat::concat_batches(&table.schema(), batches).map_err(arrow("concatenating"))?;
    let sorted = rows::sort(&all, rows::sort_keys(table)).map_err(arrow("sorting"))?;
    drop(all);
    let per_file = max_rows_per_file.max(1);
    let n = sorted.num_rows();
    let parts: Vec<RecordBatch> = if n <= per_file {
        vec![sorted]
    } else {
        (0..n).step_by(per_file).map(|start| sorted.slice(start, per_file.min(n - start))).collect()
    };
    let mut files = Vec::with_capacity(parts.len());
    let mut stored = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let name = match parts.len() {
            1 => format!("{OUTPUT_PREFIX}{id}.parquet"),
            _ => format!("{OUTPUT_PREFIX}{id}-{k}.parquet"),
        };
        let bytes = encode_parquet(table, part)?;
        stored.extend(read_parquet(bytes.clone()).map_err(|cause| CompactError::Reread {
            date,
            table,
            cause,
        })?);
        files.push((name, bytes));
    }
    let output = rows::row_digest(&stored).map_err(arrow("hashing the merged rows"))?;
    check_rows(date, table, &input, &output)?;
    Ok((files, input, output))
}

/// Refuses a merge whose rows are not exactly its inputs'.
fn check_rows(
    date: NaiveDate,
    table: Table,
    input: &RowDigest,
    output: &RowDigest,
) -> Result<(), CompactError> {
    if input == output {
        return Ok(());
    }
    Err(CompactError::RowCheck {
        date,
        table,
        in_rows: input.rows,
        in_hash: input.short(),
        out_rows: output.rows,
        out_hash: output.short(),
    })
}

/// (a) The manifest, then the generation object that tells readers a switch began.
pub(crate) async fn write_manifest(dataset: &Dataset, plan: &DayPlan) -> Result<(), StoreError> {
    let m = &plan.manifest;
    dataset.put(&Manifest::location(dataset, &m.id), m.to_bytes()).await?;
    let generation = dataset.child(&format!("{COMPACTION_DIR}/{GENERATION}"));
    dataset.put(&generation, Bytes::from(m.id.clone())).await
}

/// (b) Every output, one atomic put each.
pub(crate) async fn put_outputs(dataset: &Dataset, plan: &DayPlan) -> Result<(), StoreError> {
    for (location, bytes) in &plan.outputs {
        dataset.put(location, bytes.clone()).await?;
    }
    Ok(())
}

/// (c) The replaced inputs; `_delivered` markers stay.
pub(crate) async fn delete_inputs(dataset: &Dataset, m: &Manifest) -> Result<(), StoreError> {
    dataset.delete_all(&m.inputs(dataset)).await
}

/// (d) The manifest: the switch is over.
pub(crate) async fn remove_manifest(dataset: &Dataset, m: &Manifest) -> Result<(), StoreError> {
    dataset.delete(&Manifest::location(dataset, &m.id)).await
}

async fn commit(dataset: &Dataset, plan: &DayPlan) -> Result<(), StoreError> {
    write_manifest(dataset, plan).await?;
    put_outputs(dataset, plan).await?;
    delete_inputs(dataset, &plan.manifest).await?;
    remove_manifest(dataset, &plan.manifest).await
}
