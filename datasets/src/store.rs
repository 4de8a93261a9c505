//! Dataset URLs and the object store behind them.
//!
//! A dataset is a root URL; the three tables are folders under it. Local paths and `file://`
//! go to the local file system, `memory://NAME` to a process-wide in-memory store (tests,
//! embedding), `s3://BUCKET/PREFIX` to S3 or any S3-compatible server configured through the
//! usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, credentials, region).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::compact::manifest;
use crate::schema::{DELIVERED_DIR, PARTITION_COLUMN, Table};

/// The environment variable that overrides the default dataset URL.
pub const DATASET_ENV: &str = "FATHOM_DATASET";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported dataset URL scheme `{scheme}` in `{url}`: use a local path, file://, memory:// or s3://"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("invalid dataset URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("dataset `{0}` does not exist")]
    Missing(String),
    #[error("cannot create the dataset folder {path}: {cause}")]
    CreateDir { path: String, cause: std::io::Error },
    #[error("{op} {location}: {cause}")]
    Object { op: &'static str, location: String, cause: object_store::Error },
    #[error(
        "compaction manifest {location} is unreadable ({reason}): readers cannot tell which files it replaced; inspect it, and remove it once the day's files are right"
    )]
    Manifest { location: String, reason: String },
}

/// The default dataset: `$FATHOM_DATASET`, else `$XDG_DATA_HOME/fathom/dataset`, else
/// `~/.local/share/fathom/dataset`. Outside any source tree, so it never ends up in git.
pub fn default_url() -> String {
    if let Ok(url) = std::env::var(DATASET_ENV)
        && !url.is_empty()
    {
        return url;
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("fathom/dataset").display().to_string()
}

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> = LazyLock::new(Default::default);

/// A Parquet file of one table, found by listing the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub table: Table,
    /// The `date=` partition, or `None` when the folder name is not a valid partition.
    pub date: Option<NaiveDate>,
    pub location: Path,
    pub size: u64,
}

/// An inclusive range of partition dates; `None` on either side is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
}

impl DateRange {
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.since.is_none_or(|s| date >= s) && self.until.is_none_or(|u| date <= u)
    }
}

/// An opened dataset: the store, the root inside it, and how to name things for people.
#[derive(Clone)]
pub struct Dataset {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset").field("url", &self.url).finish()
    }
}

enum Location {
    Local(PathBuf),
    Memory { name: String, prefix: String },
    S3 { url: url::Url },
}

fn parse(url: &str) -> Result<Location, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    if url.trim().is_empty() {
        return Err(invalid("empty"));
    }
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(Location::Local(PathBuf::from(url)));
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match scheme {
        "file" => parsed
            .to_file_path()
            .map(Location::Local)
            .map_err(|_| invalid("a file:// URL needs an absolute path, e.g. file:///var/lib/fathom")),
        "memory" => Ok(Location::Memory {
            name: parsed.host_str().unwrap_or_default().to_string(),
            prefix: parsed.path().trim_matches('/').to_string(),
        }),
        "s3" => {
            if parsed.host_str().unwrap_or_default().is_empty() {
                return Err(invalid("an s3:// URL needs a bucket, e.g. s3://bench/fathom"));
            }
            Ok(Location::S3 { url: parsed })
        }
        other => Err(StoreError::UnsupportedScheme { url: url.to_string(), scheme: other.to_string() }),
    }
}

/// Retries within one request stay short (3 retries, none started after 20 s): an upload that
/// cannot get through leaves the run in the collector's spool, whose own backoff goes on for as
/// long as the outage lasts. object_store's default retries one request for three minutes.
fn retry_config() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(20), ..RetryConfig::default() }
}

/// Absolute and without `..`, so messages and DuckDB globs name the real folder.
fn absolute(path: &FsPath) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Dataset {
    /// Opens a dataset for reading and writing; a local folder is created when missing.
    pub fn create(url: &str) -> Result<Dataset, StoreError> {
        Self::open_inner(url, true)
    }

    /// Opens an existing dataset; a missing local folder is an error, not an empty dataset.
    pub fn open(url: &str) -> Result<Dataset, StoreError> {
        Self::open_inner(url, false)
    }

    fn open_inner(url: &str, create: bool) -> Result<Dataset, StoreError> {
        match parse(url)? {
            Location::Local(path) => {
                let path = absolute(&path);
                if create {
                    std::fs::create_dir_all(&path)
                        .map_err(|cause| StoreError::CreateDir { path: path.display().to_string(), cause })?;
                } else if !path.is_dir() {
                    return Err(StoreError::Missing(path.display().to_string()));
                }
                let store = LocalFileSystem::new_with_prefix(&path).map_err(|cause| StoreError::Object {
                    op: "open",
                    location: path.display().to_string(),
                    cause,
                })?;
                Ok(Dataset {
                    store: Arc::new(store),
                    root: Path::default(),
                    url: path.display().to_string(),
                    local_root: Some(path),
                })
            }
            Location::Memory { name, prefix } => {
                let mut stores = MEMORY_STORES.lock().expect("memory store registry poisoned");
                let store = stores.entry(name).or_insert_with(|| Arc::new(InMemory::new()));
                Ok(Dataset {
                    store: store.clone(),
                    root: Path::from(prefix),
                    url: url.to_string(),
                    local_root: None,
                })
            }
            Location::S3 { url: parsed } => {
                let mut builder =
                    AmazonS3Builder::from_env().with_url(parsed.as_str()).with_retry(retry_config());
                if std::env::var_os("AWS_CONNECT_TIMEOUT").is_none() {
                    builder = builder
                        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5 seconds");
                }
                let store = builder.build().map_err(|cause| StoreError::Object {
                    op: "open",
                    location: url.to_string(),
                    cause,
                })?;
                Ok(Dataset {
                    store: Arc::new(store),
                    root: Path::from(parsed.path().trim_matches('/')),
                    url: url.trim_end_matches('/').to_string(),
                    local_root: None,
                })
            }
        }
    }

    /// The URL or folder the dataset was opened from, as people should see it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder of a local dataset, for engines that scan files directly.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The full name of an object for messages: a local path or a URL.
    pub fn display(&self, location: &Path) -> String {
        let rel = self.relative(location);
        match &self.local_root {
            Some(root) => root.join(rel).display().to_string(),
            None => format!("{}/{}", self.url.trim_end_matches('/'), rel),
        }
    }

    /// The local path of an object, for local datasets.
    pub fn local_path(&self, location: &Path) -> Option<PathBuf> {
        self.local_root.as_ref().map(|root| root.join(self.relative(location)))
    }

    /// An object's path relative to the dataset root, `/`-separated.
    pub fn relative(&self, location: &Path) -> String {
        let full = location.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(root).unwrap_or(full).trim_start_matches('/').to_string()
    }

    /// `ROOT/TABLE/date=YYYY-MM-DD/NAME`.
    pub fn data_path(&self, table: Table, date: NaiveDate, name: &str) -> Path {
        self.child(&format!("{}/{}={}/{}", table.dir(), PARTITION_COLUMN, date, name))
    }

    pub fn delivered_marker(&self, run_id: &str) -> Path {
        self.child(&format!("{DELIVERED_DIR}/{run_id}"))
    }

    /// A path under the dataset root, from a `/`-separated relative path.
    pub fn child(&self, relative: &str) -> Path {
        let mut parts: Vec<String> = self.root.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(relative.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        Path::from_iter(parts)
    }

    /// Stores a complete object in one put: the object is visible whole or not at all (local
    /// files are written to a staging name and renamed; S3 puts are atomic).
    pub async fn put(&self, location: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(location, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|cause| StoreError::Object { op: "write", location: self.display(location), cause })
    }

    pub async fn get(&self, location: &Path) -> Result<Bytes, StoreError> {
        let err = |cause| StoreError::Object { op: "read", location: self.display(location), cause };
        self.store.get(location).await.map_err(err)?.bytes().await.map_err(err)
    }

    pub async fn exists(&self, location: &Path) -> Result<bool, StoreError> {
        match self.store.head(location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(cause) => Err(StoreError::Object { op: "check", location: self.display(location), cause }),
        }
    }

    /// Stores an object only if nothing is stored there yet; `false` when something is.
    pub async fn put_if_absent(&self, location: &Path, bytes: Bytes) -> Result<bool, StoreError> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(location, PutPayload::from_bytes(bytes), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(cause) => Err(StoreError::Object { op: "create", location: self.display(location), cause }),
        }
    }

    /// Deletes an object; one that is already gone is no error (deletes are retried after crashes).
    pub async fn delete(&self, location: &Path) -> Result<(), StoreError> {
        match self.store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(cause) => Err(StoreError::Object { op: "delete", location: self.display(location), cause }),
        }
    }

    /// Deletes many objects (in bulk requests where the store has them, as S3 does).
    pub async fn delete_all(&self, locations: &[Path]) -> Result<(), StoreError> {
        let paths: Vec<object_store::Result<Path>> = locations.iter().cloned().map(Ok).collect();
        let mut results = self.store.delete_stream(futures::stream::iter(paths).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                // The cause names the object.
                Err(cause) => {
                    return Err(StoreError::Object { op: "delete in", location: self.url.clone(), cause });
                }
            }
        }
        Ok(())
    }

    /// Every object under a `/`-separated relative prefix; a missing prefix is empty.
    pub async fn list_objects(&self, relative: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = self.child(relative);
        match self.store.list(Some(&prefix)).try_collect().await {
            Ok(metas) => Ok(metas),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(cause) => Err(StoreError::Object { op: "list", location: self.display(&prefix), cause }),
        }
    }

    /// Every Parquet file of `table` whose partition falls in `range`, sorted by path, as
    /// readers must see them: while a compaction is switching a day over (or after one was cut
    /// off), its manifest says which of the files present hold the same rows, and only one side
    /// is listed, so each row is listed once. Files in folders that are not valid partitions are
    /// returned with `date: None` when `range` is open on both sides, so validation can report
    /// them.
    pub async fn list_files(&self, table: Table, range: DateRange) -> Result<Vec<DataFile>, StoreError> {
        // The compaction folder is listed before and after the table: when it changed in
        // between (a manifest came or went, or the generation object was rewritten because a
        // compaction started switching a day), the table listing may mix both sides of a
        // switch, so it is taken again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = manifest::state(self).await?;
            let manifests = manifest::read_all(self, &before).await?;
            let files = self.list_files_raw(table, range).await?;
            let after = manifest::state(self).await?;
            if before == after || attempt == manifest::LIST_ATTEMPTS {
                if before != after {
                    tracing::warn!(
                        "{}: compaction kept changing the dataset while {table} was listed; listing as of the last attempt",
                        self.url
                    );
                }
                return manifest::hide_replaced(self, table, files, &manifests).await;
            }
        }
    }

    /// Every Parquet file of `table` in `range` as stored, including both sides of a
    /// compaction in progress: for compaction itself, which settles those first.
    pub async fn list_files_raw(&self, table: Table, range: DateRange) -> Result<Vec<DataFile>, StoreError> {
        let metas = self.list_objects(table.dir()).await?;
        let mut files: Vec<DataFile> = metas
            .into_iter()
            .filter(|m| m.location.extension() == Some("parquet"))
            .filter_map(|m| {
                let date = partition_date(&m.location);
                let keep = match date {
                    Some(d) => range.contains(d),
                    None => range == DateRange::default(),
                };
                keep.then_some(DataFile { table, date, location: m.location, size: m.size })
            })
            .collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }
}

/// The date of the `date=YYYY-MM-DD` folder an object sits in.
pub fn partition_date(location: &Path) -> Option<NaiveDate> {
    let parts: Vec<_> = location.parts().collect();
    let folder = parts.iter().rev().nth(1)?;
    let value = folder.as_ref().strip_prefix(PARTITION_COLUMN)?.strip_prefix('=')?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_is_a_clear_error() {
        let err = Dataset::open("ftp://example/x").unwrap_err().to_string();
        assert!(err.contains("unsupported dataset URL scheme `ftp`"), "{err}");
        assert!(err.contains("s3://"), "{err}");
    }

    #[test]
    fn s3_needs_a_bucket() {
        let err = Dataset::open("s3:///nobucket").unwrap_err().to_string();
        assert!(err.contains("needs a bucket"), "{err}");
    }

    #[test]
    fn missing_local_dataset_is_an_error_but_create_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ds");
        let url = format!("file://{}", path.display());
        assert!(matches!(Dataset::open(&url), Err(StoreError::Missing(_))));
        let ds = Dataset::create(&url).unwrap();
        assert!(path.is_dir());
        assert_eq!(ds.local_root(), Some(path.as_path()));
    }

    #[test]
    fn paths_and_partitions() {
        let ds = Dataset::create("memory://paths/root/sub").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let p = ds.data_path(Table::Runs, date, "abc.parquet");
        assert_eq!(p.as_ref(), "root/sub/runs/date=2026-03-01/abc.parquet");
        assert_eq!(partition_date(&p), Some(date));
        assert_eq!(partition_date(&Path::from("runs/date=2026-13-01/x.parquet")), None);
        assert_eq!(ds.display(&p), "memory://paths/root/sub/runs/date=2026-03-01/abc.parquet");
    }

    #[tokio::test]
    async fn list_filters_by_range_and_extension() {
        let ds = Dataset::create("memory://listing").unwrap();
        for day in 1..=5 {
            let date = NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
            ds.put(&ds.data_path(Table::Runs, date, "a.parquet"), Bytes::from_static(b"x")).await.unwrap();
        }
        ds.put(&ds.child("runs/date=2026-03-02/notes.txt"), Bytes::from_static(b"x")).await.unwrap();
        ds.put(&ds.child("runs/garbage/b.parquet"), Bytes::from_static(b"x")).await.unwrap();
        let all = ds.list_files(Table::Runs, DateRange::default()).await.unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all.iter().filter(|f| f.date.is_none()).count(), 1);
        let range = DateRange {
            since: NaiveDate::from_ymd_opt(2026, 3, 2),
            until: NaiveDate::from_ymd_opt(2026, 3, 4),
        };
        let some = ds.list_files(Table::Runs, range).await.unwrap();
        assert_eq!(some.len(), 3);
        assert!(ds.list_files(Table::Samples, range).await.unwrap().is_empty());
    }
}
