//! Reading Parquet files of the dataset back, for validation and tests.

use std::path::Path;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;

/// Decodes a whole Parquet file.
pub fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(64 * 1024).build()?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| ParquetError::General(e.to_string()))
}

/// Checks that in-memory bytes end with a readable Parquet footer.
pub fn check_footer_bytes(bytes: &Bytes) -> Result<(), String> {
    ParquetMetaDataReader::new().parse_and_finish(bytes).map(|_| ()).map_err(|e| e.to_string())
}

/// Reads only the footer of a local Parquet file: cheap, and catches truncated or foreign files
/// before an engine trips over them half-way through a scan.
pub fn check_footer(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    ParquetMetaDataReader::new().parse_and_finish(&file).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{runs_batch, tests::run};
    use crate::schema::Table;
    use crate::write::encode_parquet;

    #[test]
    fn truncated_files_fail_the_footer_check() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_parquet(Table::Runs, &runs_batch(&[run("a", "2026-01-01T00:00:00Z")])).unwrap();
        let good = dir.path().join("good.parquet");
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&good, &bytes).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        assert!(check_footer(&good).is_ok());
        assert!(check_footer(&bad).is_err());
        assert!(check_footer_bytes(&bytes).is_ok());
        assert!(check_footer_bytes(&bytes.slice(..100)).is_err());
        assert!(read_parquet(bytes.slice(..bytes.len() - 3)).is_err());
    }
}
