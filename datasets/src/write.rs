//! Writing Parquet into the dataset: encode a whole file in memory, then one atomic put.
//!
//! A run is committed by its `runs` row, written last: samples first, then measurements, then
//! the run, then the `_delivered/RUN_ID` marker. A writer cut off at any point leaves nothing a
//! reader counts, and a retry of a delivered run writes nothing.

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::records::{Measurement, MeasurementsBuilder, RunRecord, Sample, SamplesBuilder, runs_batch};
use crate::schema::Table;
use crate::store::{Dataset, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("encoding Parquet for {table}: {cause}")]
    Encode { table: Table, cause: parquet::errors::ParquetError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// zstd level 3: within a few percent of level 9's size at a fraction of the time. Doubles
/// (measured values, mostly noise in their low bits) are stored BYTE_STREAM_SPLIT without a
/// dictionary, which zstd compresses about a fifth better; every engine we target reads it.
fn writer_properties(table: Table) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("fathom-datasets {}", env!("CARGO_PKG_VERSION")));
    for field in table.schema().fields() {
        if field.data_type() == &DataType::Float64 {
            let path = ColumnPath::from(field.name().as_str());
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    builder.build()
}

/// Encodes one table's batch as a complete Parquet file.
pub fn encode_parquet(table: Table, batch: &RecordBatch) -> Result<Bytes, WriteError> {
    let encode = |cause| WriteError::Encode { table, cause };
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut writer =
        ArrowWriter::try_new(&mut buffer, table.schema(), Some(writer_properties(table))).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.close().map_err(encode)?;
    Ok(Bytes::from(buffer))
}

/// Writes one file of `table` into the `date` partition, atomically.
pub async fn write_table_file(
    dataset: &Dataset,
    table: Table,
    date: NaiveDate,
    name: &str,
    batch: &RecordBatch,
) -> Result<u64, WriteError> {
    let bytes = encode_parquet(table, batch)?;
    let size = bytes.len() as u64;
    dataset.put(&dataset.data_path(table, date, name), bytes).await?;
    Ok(size)
}

/// What `write_run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunWrite {
    Written {
        bytes: u64,
    },
    /// The run's delivered marker already exists: nothing was written.
    AlreadyDelivered,
}

/// A run encoded as the Parquet files it will be stored as, in commit order (samples,
/// measurements, then the `runs` row last): what the collector's spool keeps on disk and
/// uploads byte for byte, so a retry puts exactly the bytes of the first try.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRun {
    pub run_id: String,
    pub date: NaiveDate,
    pub files: Vec<(Table, Bytes)>,
}

impl EncodedRun {
    pub fn encode(
        run: &RunRecord,
        measurements: &[Measurement],
        samples: &[Sample],
    ) -> Result<EncodedRun, WriteError> {
        let mut files = Vec::with_capacity(3);
        if !samples.is_empty() {
            let mut b = SamplesBuilder::default();
            samples.iter().for_each(|s| b.append(&run.run_id, s));
            files.push((Table::Samples, encode_parquet(Table::Samples, &b.finish())?));
        }
        if !measurements.is_empty() {
            let mut b = MeasurementsBuilder::default();
            measurements.iter().for_each(|m| b.append(run, m));
            files.push((Table::Measurements, encode_parquet(Table::Measurements, &b.finish())?));
        }
        files.push((Table::Runs, encode_parquet(Table::Runs, &runs_batch(std::slice::from_ref(run)))?));
        Ok(EncodedRun { run_id: run.run_id.clone(), date: run.date(), files })
    }

    /// The bytes of all its files together.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// Stores an encoded run, committing it last, unless its delivered marker says it is there.
/// Every object is named by the run id, so a retry after a cut-off upload overwrites the same
/// objects with the same bytes and never adds a row.
pub async fn put_run(dataset: &Dataset, run: &EncodedRun) -> Result<RunWrite, WriteError> {
    let marker = dataset.delivered_marker(&run.run_id);
    if dataset.exists(&marker).await? {
        return Ok(RunWrite::AlreadyDelivered);
    }
    let name = format!("{}.parquet", run.run_id);
    for (table, bytes) in &run.files {
        dataset.put(&dataset.data_path(*table, run.date, &name), bytes.clone()).await?;
    }
    dataset.put(&marker, Bytes::from(run.date.to_string())).await?;
    Ok(RunWrite::Written { bytes: run.bytes() })
}

/// Writes one run with its measurements and samples, committing it last ([`put_run`] checks
/// the delivered marker, once).
pub async fn write_run(
    dataset: &Dataset,
    run: &RunRecord,
    measurements: &[Measurement],
    samples: &[Sample],
) -> Result<RunWrite, WriteError> {
    put_run(dataset, &EncodedRun::encode(run, measurements, samples)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::read_parquet;
    use crate::records::tests::{measurement, run};
    use crate::store::DateRange;

    #[tokio::test]
    async fn a_run_round_trips_and_is_written_once() {
        let ds = Dataset::create("memory://write-run").unwrap();
        let r = run("db-01", "2026-02-03T01:00:00Z");
        let ms = vec![measurement("encrypt_1t", 1.0), measurement("decrypt_1t", 2.0)];
        let first = write_run(&ds, &r, &ms, &[]).await.unwrap();
        assert!(matches!(first, RunWrite::Written { bytes } if bytes > 0));
        assert_eq!(write_run(&ds, &r, &ms, &[]).await.unwrap(), RunWrite::AlreadyDelivered);

        let files = ds.list_files(Table::Measurements, DateRange::default()).await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].date.unwrap().to_string(), "2026-02-03");
        let batches = read_parquet(ds.get(&files[0].location).await.unwrap()).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert!(ds.list_files(Table::Samples, DateRange::default()).await.unwrap().is_empty());
    }

    #[test]
    fn files_are_zstd_compressed() {
        let r = run("db-01", "2026-02-03T01:00:00Z");
        let bytes = encode_parquet(Table::Runs, &runs_batch(&[r])).unwrap();
        let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).unwrap();
        let col = meta.row_group(0).column(0);
        assert!(matches!(col.compression(), Compression::ZSTD(_)));

        let mut b = MeasurementsBuilder::default();
        b.append(&run("db-01", "2026-02-03T01:00:00Z"), &measurement("encrypt_1t", 1.0));
        let bytes = encode_parquet(Table::Measurements, &b.finish()).unwrap();
        let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).unwrap();
        let rg = meta.row_group(0);
        let value = rg.columns().iter().find(|c| c.column_path().string() == "value").unwrap();
        assert!(
            value.encodings().any(|e| e == Encoding::BYTE_STREAM_SPLIT),
            "{:?}",
            value.encodings().collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn local_writes_leave_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Dataset::create(dir.path().to_str().unwrap()).unwrap();
        let r = run("db-01", "2026-02-03T01:00:00Z");
        write_run(&ds, &r, &[measurement("encrypt_1t", 1.0)], &[]).await.unwrap();
        let mut names = Vec::new();
        for entry in walk(dir.path()) {
            names.push(entry.strip_prefix(dir.path()).unwrap().display().to_string());
        }
        names.sort();
        let id = &r.run_id;
        assert_eq!(
            names,
            vec![
                format!("_delivered/{id}"),
                format!("measurements/date=2026-02-03/{id}.parquet"),
                format!("runs/date=2026-02-03/{id}.parquet"),
            ]
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
        }
        out
    }
}
