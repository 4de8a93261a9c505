//! Loading the dataset into Polars lazy frames.
//!
//! File listing and partition pruning (`--since`/`--until`) go through `fathom-datasets`, the
//! one place that knows the layout and the object store. A local dataset is then scanned by
//! Polars straight from disk; a remote one (`s3://`, `memory://`) is fetched as bytes through
//! the same object store and scanned from memory, so the analyzer needs no cloud feature of
//! its own. Every file's footer is checked first: a truncated or foreign file is skipped with
//! a warning naming it, instead of failing the whole night.

use fathom_datasets::read::{check_footer, check_footer_bytes};
use fathom_datasets::schema::{col, Table};
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
    #[error("scanning {table}: {source}")]
    Scan { table: Table, source: PolarsError },
}

/// An opened dataset plus the files skipped while loading it.
pub struct Loader {
    pub dataset: Dataset,
    pub range: DateRange,
    pub skipped: Vec<SkippedFile>,
}

impl Loader {
    pub fn new(dataset: Dataset, range: DateRange) -> Loader {
        Loader { dataset, range, skipped: Vec::new() }
    }

    /// A lazy scan of one table over the partitions in range, or `None` when no readable file
    /// is there.
    pub async fn scan(&mut self, table: Table) -> Result<Option<LazyFrame>, LoadError> {
        let files = self.dataset.list_files(table, self.range).await?;
        let sources = match self.dataset.local_root() {
            Some(_) => self.local_sources(&files),
            None => self.remote_sources(&files).await?,
        };
        if sources.is_empty() {
            return Ok(None);
        }
        let args = ScanArgsParquet {
            hive_options: HiveOptions { enabled: Some(false), ..Default::default() },
            glob: false,
            ..Default::default()
        };
        LazyFrame::scan_parquet_sources(sources, args)
            .map(Some)
            .map_err(|source| LoadError::Scan { table, source })
    }

    fn local_sources(&mut self, files: &[DataFile]) -> ScanSources {
        let mut paths = Vec::with_capacity(files.len());
        for file in files {
            let path = self.dataset.local_path(&file.location).expect("local dataset");
            match check_footer(&path) {
                Ok(()) => paths.push(PlRefPath::new(path.display().to_string())),
                Err(reason) => self.skip(path.display().to_string(), reason),
            }
        }
        ScanSources::Paths(Buffer::from_iter(paths))
    }

    async fn remote_sources(&mut self, files: &[DataFile]) -> Result<ScanSources, LoadError> {
        let dataset = &self.dataset;
        let fetched: Vec<(String, bytes::Bytes)> = futures::stream::iter(files)
            .map(|f| async move {
                let bytes = dataset.get(&f.location).await?;
                Ok::<_, LoadError>((dataset.display(&f.location), bytes))
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut buffers = Vec::with_capacity(fetched.len());
        for (path, bytes) in fetched {
            match check_footer_bytes(&bytes) {
                Ok(()) => buffers.push(Buffer::from_owner(bytes)),
                Err(reason) => self.skip(path, reason),
            }
        }
        Ok(ScanSources::Buffers(buffers.into()))
    }

    fn skip(&mut self, path: String, reason: String) {
        tracing::warn!("skipping {path}: not a readable Parquet file ({reason})");
        self.skipped.push(SkippedFile { path, reason: format!("not a readable Parquet file: {reason}") });
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
