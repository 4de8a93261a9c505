//! `fathom-datasets validate`: every file checked against the contract, each bad one named.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDate};

use crate::catalogue::Category;
use crate::read::{check_file, read_parquet};
use crate::records::RunStatus;
use crate::schema::{SCHEMA_VERSION, Table, col};
use crate::store::{DataFile, Dataset, DateRange, StoreError};

/// One bad file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub rows: [u64; 3],
    pub problems: Vec<Problem>,
    /// Measurement rows whose run has no `runs` row: invisible to readers (an upload cut off
    /// half-way, or one still in progress), so not an error.
    pub uncommitted_runs: usize,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub async fn validate(dataset: &Dataset) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut committed = HashSet::new();
    let mut measured = HashSet::new();
    for (i, table) in Table::ALL.into_iter().enumerate() {
        for file in dataset.list_files(table, DateRange::default()).await? {
            report.files += 1;
            let path = dataset.display(&file.location);
            let bytes = match dataset.get(&file.location).await {
                Ok(b) => b,
                Err(e) => {
                    report.problems.push(Problem { path, reason: e.to_string() });
                    continue;
                }
            };
            match check_data_file(&file, bytes) {
                Ok(batches) => {
                    report.rows[i] += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                    let ids = match table {
                        Table::Runs => Some(&mut committed),
                        Table::Measurements => Some(&mut measured),
                        Table::Samples => None,
                    };
                    if let Some(ids) = ids {
                        for b in &batches {
                            let c = b.column_by_name(col::RUN_ID).expect("checked").as_string::<i32>();
                            ids.extend(c.iter().flatten().map(str::to_string));
                        }
                    }
                }
                Err(reason) => report.problems.push(Problem { path, reason }),
            }
        }
    }
    report.uncommitted_runs = measured.difference(&committed).count();
    Ok(report)
}

fn check_data_file(file: &DataFile, bytes: bytes::Bytes) -> Result<Vec<RecordBatch>, String> {
    let date = file.date.ok_or_else(|| "not inside a date=YYYY-MM-DD partition folder".to_string())?;
    // The schema comes from the footer, so an empty file with the wrong columns is caught too.
    check_file(file.table, &bytes)?;
    let batches = read_parquet(bytes).map_err(|e| format!("not a readable Parquet file: {e}"))?;
    for b in &batches {
        check_nulls(file.table, b)?;
        check_rows(file.table, date, b)?;
    }
    Ok(batches)
}

fn check_nulls(table: Table, b: &RecordBatch) -> Result<(), String> {
    for field in table.schema().fields().iter().filter(|f| !f.is_nullable()) {
        let nulls = b.column_by_name(field.name()).expect("schema checked").null_count();
        if nulls > 0 {
            return Err(format!("column `{}` has {nulls} nulls but may not be null", field.name()));
        }
    }
    Ok(())
}

fn check_rows(table: Table, date: NaiveDate, b: &RecordBatch) -> Result<(), String> {
    let column = |name: &str| b.column_by_name(name).expect("schema checked");
    let row_err = |row: usize, what: String| Err(format!("row {row}: {what}"));
    if matches!(table, Table::Runs | Table::Measurements) {
        let started = column(col::STARTED_AT).as_primitive::<TimestampMicrosecondType>();
        for (row, t) in started.iter().enumerate() {
            let day = t.and_then(DateTime::from_timestamp_micros).map(|t| t.date_naive());
            if day != Some(date) {
                return row_err(row, format!("started_at {t:?} is not in partition date={date}"));
            }
        }
    }
    match table {
        Table::Runs => {
            let status = column(col::STATUS).as_string::<i32>();
            for (row, s) in status.iter().enumerate() {
                if !RunStatus::ALL.iter().any(|k| Some(k.as_str()) == s) {
                    return row_err(row, format!("unknown status {s:?}"));
                }
            }
            let version = column(col::SCHEMA_VERSION).as_primitive::<Int32Type>();
            if let Some((row, v)) = version.iter().enumerate().find(|(_, v)| *v > Some(SCHEMA_VERSION)) {
                return row_err(
                    row,
                    format!("schema_version {v:?} is newer than this reader ({SCHEMA_VERSION})"),
                );
            }
        }
        Table::Measurements => {
            let probe = column(col::PROBE).as_string::<i32>();
            let category = column(col::CATEGORY).as_string::<i32>();
            for row in 0..b.num_rows() {
                let (p, c) = (probe.value(row), category.value(row));
                if Category::of_probe(p).map(|k| k.as_str()) != Some(c) {
                    return row_err(row, format!("probe `{p}` does not belong to category `{c}`"));
                }
            }
            finite(column(col::VALUE), col::VALUE)?;
            let cv = column(col::CV).as_primitive::<Float64Type>();
            if let Some((row, v)) =
                cv.iter().enumerate().find(|(_, v)| v.is_some_and(|v| v.is_nan() || v < 0.0))
            {
                return row_err(row, format!("cv {v:?} is negative or not a number"));
            }
            let n = column(col::N).as_primitive::<Int32Type>();
            if let Some((row, v)) = n.iter().enumerate().find(|(_, v)| *v < Some(1)) {
                return row_err(row, format!("n {v:?} is below 1"));
            }
        }
        Table::Samples => finite(column(col::VALUE), col::VALUE)?,
    }
    Ok(())
}

fn finite(array: &dyn Array, name: &str) -> Result<(), String> {
    let values = array.as_primitive::<Float64Type>();
    match values.iter().enumerate().find(|(_, v)| !v.is_some_and(f64::is_finite)) {
        Some((row, v)) => Err(format!("row {row}: {name} {v:?} is not a finite number")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{measurement, run};
    use crate::write::{encode_parquet, write_run};
    use bytes::Bytes;

    #[tokio::test]
    async fn a_good_dataset_passes_and_bad_files_are_named() {
        let ds = Dataset::create("memory://validate").unwrap();
        let r = run("db-01", "2026-02-03T01:00:00Z");
        write_run(&ds, &r, &[measurement("encrypt_1t", 1.0)], &[]).await.unwrap();
        let report = validate(&ds).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.rows, [1, 1, 0]);

        // Truncated file.
        let date = NaiveDate::from_ymd_opt(2026, 2, 3).unwrap();
        ds.put(&ds.data_path(Table::Runs, date, "cut.parquet"), Bytes::from_static(b"PAR1 not really"))
            .await
            .unwrap();
        // A runs file in the wrong partition.
        let other = NaiveDate::from_ymd_opt(2026, 2, 4).unwrap();
        let bytes =
            encode_parquet(Table::Runs, &crate::records::runs_batch(std::slice::from_ref(&r))).unwrap();
        ds.put(&ds.data_path(Table::Runs, other, "moved.parquet"), bytes.clone()).await.unwrap();
        // A runs file stored as a measurements file.
        ds.put(&ds.data_path(Table::Measurements, date, "wrong.parquet"), bytes).await.unwrap();
        // An orphan measurement (uncommitted run) is not a problem.
        let orphan = run("db-02", "2026-02-03T02:00:00Z");
        let mut b = crate::records::MeasurementsBuilder::default();
        b.append(&orphan, &measurement("encrypt_1t", 2.0));
        let m = encode_parquet(Table::Measurements, &b.finish()).unwrap();
        ds.put(&ds.data_path(Table::Measurements, date, "orphan.parquet"), m).await.unwrap();

        let report = validate(&ds).await.unwrap();
        let reasons: Vec<_> = report.problems.iter().map(|p| format!("{}: {}", p.path, p.reason)).collect();
        assert_eq!(report.problems.len(), 3, "{reasons:#?}");
        assert!(
            reasons.iter().any(|r| r.contains("wrong.parquet") && r.contains("missing column")),
            "{reasons:#?}"
        );
        assert!(reasons.iter().any(|r| r.contains("cut.parquet") && r.contains("not a readable Parquet")));
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("moved.parquet") && r.contains("not in partition date=2026-02-04"))
        );
        assert_eq!(report.uncommitted_runs, 1);
    }
}
