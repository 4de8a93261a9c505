//! Loading the dataset into Polars lazy frames.
//!
//! File listing and partition pruning (`--since`/`--until`) go through `fathom-datasets`, the
//! one place that knows the layout and the object store. A local dataset is then scanned by
//! Polars straight from disk; a remote one (`s3://`, `memory://`) is fetched as bytes through
//! the same object store and scanned from memory, so the analyzer needs no cloud feature of
//! its own. Every file's footer and schema are checked first: a truncated, foreign or misplaced file is skipped with
//! a warning naming it, instead of failing the whole night; when a query still fails (a corrupt
//! page behind a valid footer), [`Loader::recheck`] decodes every file, drops the bad ones and
//! the query runs again.

use std::collections::BTreeMap;

use fathom_datasets::read::{check_file, check_local_file, read_parquet};
use fathom_datasets::schema::{Table, col};
use fathom_datasets::store::{DataFile, Dataset, DateRange};
use futures::{StreamExt, TryStreamExt};
use polars::prelude::*;
use polars_buffer::Buffer;

/// A file left out of the analysis, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] fathom_datasets::StoreError),
    #[error("scanning {table}: {cause}")]
    Scan { table: Table, cause: PolarsError },
}

/// Where an accepted file's bytes are: on local disk, or already fetched.
#[derive(Clone)]
enum Source {
    Local(std::path::PathBuf),
    Fetched(bytes::Bytes),
}

/// A file whose footer is readable, named for messages.
#[derive(Clone)]
struct Accepted {
    path: String,
    source: Source,
}

/// An opened dataset, the files accepted per table, and the files skipped while loading it.
pub struct Loader {
    pub dataset: Dataset,
    pub range: DateRange,
    pub skipped: Vec<SkippedFile>,
    accepted: BTreeMap<Table, Vec<Accepted>>,
}

impl Loader {
    pub fn new(dataset: Dataset, range: DateRange) -> Loader {
        Loader { dataset, range, skipped: Vec::new(), accepted: BTreeMap::new() }
    }

    /// A lazy scan of one table over the partitions in range, or `None` when no readable file
    /// is there. Files are listed and their footers checked once per loader.
    pub async fn scan(&mut self, table: Table) -> Result<Option<LazyFrame>, LoadError> {
        if !self.accepted.contains_key(&table) {
            let files = self.dataset.list_files(table, self.range).await?;
            let accepted = match self.dataset.local_root() {
                Some(_) => self.check_local(table, &files),
                None => self.fetch_remote(table, &files).await?,
            };
            self.accepted.insert(table, accepted);
        }
        let accepted = &self.accepted[&table];
        if accepted.is_empty() {
            return Ok(None);
        }
        let sources = match self.dataset.local_root() {
            Some(_) => ScanSources::Paths(Buffer::from_iter(
                accepted.iter().map(|a| PlRefPath::new(a.path.as_str())),
            )),
            None => ScanSources::Buffers(
                accepted
                    .iter()
                    .map(|a| match &a.source {
                        Source::Fetched(bytes) => Buffer::from_owner(bytes.clone()),
                        Source::Local(_) => unreachable!("remote datasets hold fetched bytes"),
                    })
                    .collect::<Vec<_>>()
                    .into(),
            ),
        };
        let args = ScanArgsParquet {
            hive_options: HiveOptions { enabled: Some(false), ..Default::default() },
            glob: false,
            ..Default::default()
        };
        LazyFrame::scan_parquet_sources(sources, args)
            .map(Some)
            .map_err(|cause| LoadError::Scan { table, cause })
    }

    fn check_local(&mut self, table: Table, files: &[DataFile]) -> Vec<Accepted> {
        let mut accepted = Vec::with_capacity(files.len());
        for file in files {
            let path = self.dataset.local_path(&file.location).expect("local dataset");
            let name = path.display().to_string();
            match check_local_file(table, &path) {
                Ok(()) => accepted.push(Accepted { path: name, source: Source::Local(path) }),
                Err(reason) => self.skip(name, reason),
            }
        }
        accepted
    }

    async fn fetch_remote(&mut self, table: Table, files: &[DataFile]) -> Result<Vec<Accepted>, LoadError> {
        let dataset = &self.dataset;
        let fetched: Vec<(String, bytes::Bytes)> = futures::stream::iter(files)
            .map(|f| async move {
                let bytes = dataset.get(&f.location).await?;
                Ok::<_, LoadError>((dataset.display(&f.location), bytes))
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut accepted = Vec::with_capacity(fetched.len());
        for (path, bytes) in fetched {
            match check_file(table, &bytes) {
                Ok(()) => accepted.push(Accepted { path, source: Source::Fetched(bytes) }),
                Err(reason) => self.skip(path, reason),
            }
        }
        Ok(accepted)
    }

    fn skip(&mut self, path: String, reason: String) {
        tracing::warn!("skipping {path}: {reason}");
        self.skipped.push(SkippedFile { path, reason });
    }

    /// Decodes every accepted file in full and drops those that fail, for when a query failed
    /// on damage a footer check cannot see (a corrupt page). Returns how many were dropped.
    pub fn recheck(&mut self) -> usize {
        let mut bad = Vec::new();
        for files in self.accepted.values_mut() {
            files.retain(|file| {
                let bytes = match &file.source {
                    Source::Local(path) => {
                        std::fs::read(path).map(bytes::Bytes::from).map_err(|e| e.to_string())
                    }
                    Source::Fetched(bytes) => Ok(bytes.clone()),
                };
                let decoded = bytes.and_then(|b| {
                    read_parquet(b).map(|_| ()).map_err(|e| format!("not a readable Parquet file: {e}"))
                });
                match decoded {
                    Ok(()) => true,
                    Err(reason) => {
                        bad.push((file.path.clone(), reason));
                        false
                    }
                }
            });
        }
        let dropped = bad.len();
        for (path, reason) in bad {
            self.skip(path, reason);
        }
        dropped
    }

    /// Measurements of committed runs only: rows whose run has no `runs` row (an upload cut
    /// off half-way) are invisible, as the contract says.
    pub async fn committed_measurements(&mut self) -> Result<Option<LazyFrame>, LoadError> {
        let Some(measurements) = self.scan(Table::Measurements).await? else { return Ok(None) };
        let Some(runs) = self.scan(Table::Runs).await? else { return Ok(None) };
        let committed = runs.select([col(col::RUN_ID)]).unique(None, UniqueKeepStrategy::Any);
        Ok(Some(measurements.semi_join(committed, col(col::RUN_ID), col(col::RUN_ID))))
    }
}
