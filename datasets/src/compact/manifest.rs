//! The compaction manifest: written before a day's merged files and removed after the files they
//! replace, so at every instant a reader can tell which of the files present hold each row.
//!
//! Rule for readers, per table: when every output of a manifest exists (and this table's are in
//! the listing), its replaced inputs are hidden; otherwise its outputs are hidden. Outputs are
//! all written before any input is deleted, so either side alone holds every row.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::schema::{COMPACTION_DIR, Table};
use crate::store::{DataFile, Dataset, StoreError};

/// How often `list_files` lists again while a compaction keeps changing `_compaction/`.
pub(crate) const LIST_ATTEMPTS: usize = 5;

/// `_compaction/generation`: rewritten (with the compaction id) after each manifest is stored
/// and before its outputs are, so a reader whose listing straddled a whole compaction sees the
/// change even though that manifest came and went in between.
pub(crate) const GENERATION: &str = "generation";

/// `_compaction/lock`: one compaction at a time (a second one would roll back the first's
/// outputs as a crashed compaction's).
pub(crate) const LOCK: &str = "lock";

/// One day's switch from many files to few, for all the tables compacted that day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// UUIDv7; it names the manifest and the outputs (`compacted-ID.parquet`).
    pub id: String,
    pub date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub tables: Vec<TableEntry>,
}

/// What one table of the day becomes. Paths are relative to the dataset root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    pub table: Table,
    pub outputs: Vec<String>,
    pub inputs: Vec<String>,
    pub rows: u64,
    /// SHA-256 over the sorted per-row digests (hex), the same for inputs and outputs.
    pub hash: String,
}

impl Manifest {
    pub fn location(dataset: &Dataset, id: &str) -> Path {
        dataset.child(&format!("{COMPACTION_DIR}/{id}.json"))
    }

    pub fn entry(&self, table: Table) -> Option<&TableEntry> {
        self.tables.iter().find(|e| e.table == table)
    }

    pub fn outputs(&self, dataset: &Dataset) -> Vec<Path> {
        self.tables.iter().flat_map(|e| e.outputs.iter().map(|o| dataset.child(o))).collect()
    }

    pub fn inputs(&self, dataset: &Dataset) -> Vec<Path> {
        self.tables.iter().flat_map(|e| e.inputs.iter().map(|i| dataset.child(i))).collect()
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).expect("a manifest always serialises"))
    }

    /// Whether every output of every table is stored.
    pub async fn complete(&self, dataset: &Dataset) -> Result<bool, StoreError> {
        for output in self.outputs(dataset) {
            if !dataset.exists(&output).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The objects of `_compaction/` that readers depend on (the lock is left out: taking it
/// changes nothing they see), to tell whether a compaction moved during a listing.
pub(crate) async fn state(dataset: &Dataset) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut metas = dataset.list_objects(COMPACTION_DIR).await?;
    metas.retain(|m| m.location.filename() != Some(LOCK));
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas)
}

/// The manifests among `state`; one deleted since (its compaction finished) is left out.
pub(crate) async fn read_all(dataset: &Dataset, state: &[ObjectMeta]) -> Result<Vec<Manifest>, StoreError> {
    let mut manifests = Vec::new();
    for meta in state.iter().filter(|m| m.location.extension() == Some("json")) {
        let bytes = match dataset.get(&meta.location).await {
            Ok(bytes) => bytes,
            Err(StoreError::Object { cause: object_store::Error::NotFound { .. }, .. }) => continue,
            Err(e) => return Err(e),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::Manifest {
            location: dataset.display(&meta.location),
            reason: e.to_string(),
        })?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Every manifest stored now.
pub(crate) async fn list(dataset: &Dataset) -> Result<Vec<Manifest>, StoreError> {
    read_all(dataset, &state(dataset).await?).await
}

/// `files` (one table's listing) without the side of each manifest that readers must not see.
pub(crate) async fn hide_replaced(
    dataset: &Dataset,
    table: Table,
    mut files: Vec<DataFile>,
    manifests: &[Manifest],
) -> Result<Vec<DataFile>, StoreError> {
    if manifests.is_empty() {
        return Ok(files);
    }
    let listed: HashSet<Path> = files.iter().map(|f| f.location.clone()).collect();
    let mut hidden = HashSet::new();
    for manifest in manifests {
        let Some(entry) = manifest.entry(table) else { continue };
        let outputs: Vec<Path> = entry.outputs.iter().map(|o| dataset.child(o)).collect();
        // This table's outputs are judged by the listing itself, so a file stored after it was
        // taken cannot hide inputs the listing still needs.
        let complete = outputs.iter().all(|o| listed.contains(o)) && manifest.complete(dataset).await?;
        if complete {
            hidden.extend(entry.inputs.iter().map(|i| dataset.child(i)));
        } else {
            hidden.extend(outputs);
        }
    }
    files.retain(|f| !hidden.contains(&f.location));
    Ok(files)
}
