//! Reading Parquet files of the dataset back, for validation and tests.

use std::path::Path;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::ChunkReader;

use crate::schema::{Table, check_schema};

/// Decodes a whole Parquet file.
pub fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(64 * 1024).build()?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| ParquetError::General(e.to_string()))
}

/// Reads a file's footer and checks its schema against the contract's for `table`: cheap (only
/// the footer is read), and it catches truncated, foreign and misplaced files before an engine
/// trips over them half-way through a scan.
pub fn check_file<R: ChunkReader>(table: Table, reader: &R) -> Result<(), String> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(reader)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let file = meta.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map_err(|e| format!("unreadable schema: {e}"))?;
    check_schema(table, &schema)
}

/// [`check_file`] for a local file.
pub fn check_local_file(table: Table, path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    check_file(table, &file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{runs_batch, tests::run};
    use crate::schema::Table;
    use crate::write::encode_parquet;

    #[test]
    fn truncated_and_misplaced_files_fail_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_parquet(Table::Runs, &runs_batch(&[run("a", "2026-01-01T00:00:00Z")])).unwrap();
        let good = dir.path().join("good.parquet");
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&good, &bytes).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(check_local_file(Table::Runs, &good), Ok(()));
        assert!(check_local_file(Table::Runs, &bad).unwrap_err().contains("not a readable Parquet file"));
        assert!(check_file(Table::Runs, &bytes.slice(..100)).is_err());
        let misplaced = check_file(Table::Measurements, &bytes).unwrap_err();
        assert!(misplaced.contains("missing column"), "{misplaced}");
        assert!(read_parquet(bytes.slice(..bytes.len() - 3)).is_err());
    }
}
