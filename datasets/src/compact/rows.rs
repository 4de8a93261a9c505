//! Row-level work of compaction: the order-independent content hash that proves no row changed,
//! and the sort.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{ArrowError, DataType, SortOptions, TimeUnit};
use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN, digest};

use crate::schema::{Table, col};

/// The row count and content hash of a multiset of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDigest {
    pub rows: u64,
    pub hash: [u8; SHA256_OUTPUT_LEN],
}

impl RowDigest {
    pub fn hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

/// SHA-256 of each row's canonical bytes, the digests sorted, then SHA-256 of that list: equal
/// exactly when both sides hold the same rows the same number of times, in any order and any
/// split into batches or files. Doubles are hashed by their bits, so even `-0.0` against `0.0`
/// or a different NaN counts as a change.
pub fn row_digest(batches: &[RecordBatch]) -> Result<RowDigest, ArrowError> {
    let mut digests: Vec<[u8; SHA256_OUTPUT_LEN]> = Vec::new();
    let mut buf = Vec::with_capacity(512);
    for batch in batches {
        digests.reserve(batch.num_rows());
        for row in 0..batch.num_rows() {
            buf.clear();
            for column in batch.columns() {
                encode(column.as_ref(), row, &mut buf)?;
            }
            let d = digest(&SHA256, &buf);
            digests.push(d.as_ref().try_into().expect("SHA-256 is 32 bytes"));
        }
    }
    digests.sort_unstable();
    let mut all = Context::new(&SHA256);
    for d in &digests {
        all.update(d);
    }
    let hash = all.finish().as_ref().try_into().expect("SHA-256 is 32 bytes");
    Ok(RowDigest { rows: digests.len() as u64, hash })
}

fn length(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

/// One value, unambiguously: a null flag, then the value (lengths before variable parts).
fn encode(array: &dyn Array, i: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    if array.is_null(i) {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match array.data_type() {
        DataType::Utf8 => {
            let v = array.as_string::<i32>().value(i).as_bytes();
            length(out, v.len());
            out.extend_from_slice(v);
        }
        DataType::Boolean => out.push(u8::from(array.as_boolean().value(i))),
        DataType::Int32 => out.extend_from_slice(&array.as_primitive::<Int32Type>().value(i).to_le_bytes()),
        DataType::Int64 => out.extend_from_slice(&array.as_primitive::<Int64Type>().value(i).to_le_bytes()),
        DataType::Float64 => {
            out.extend_from_slice(&array.as_primitive::<Float64Type>().value(i).to_bits().to_le_bytes())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            out.extend_from_slice(&array.as_primitive::<TimestampMicrosecondType>().value(i).to_le_bytes())
        }
        DataType::List(_) => {
            let values = array.as_list::<i32>().value(i);
            length(out, values.len());
            for j in 0..values.len() {
                encode(values.as_ref(), j, out)?;
            }
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(i);
            length(out, entries.len());
            for j in 0..entries.len() {
                for column in entries.columns() {
                    encode(column.as_ref(), j, out)?;
                }
            }
        }
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "hashing a {other} column (not in the contract)"
            )));
        }
    }
    Ok(())
}

/// The order of a compacted file: by series, so scans of a few hosts or metrics read few row
/// groups. The trailing keys only make ties deterministic.
pub fn sort_keys(table: Table) -> &'static [&'static str] {
    match table {
        Table::Runs => &[col::HOST, col::STARTED_AT, col::RUN_ID],
        Table::Measurements => {
            &[col::HOST, col::PROBE, col::METRIC, col::PARAMS, col::STARTED_AT, col::RUN_ID]
        }
        Table::Samples => &[col::RUN_ID, col::PROBE, col::METRIC, col::PARAMS, col::SEQ],
    }
}

/// `batch` sorted by `keys` (ascending, stable: equal keys keep their order).
pub fn sort(batch: &RecordBatch, keys: &[&str]) -> Result<RecordBatch, ArrowError> {
    let comparators = keys
        .iter()
        .map(|key| {
            let column = batch
                .column_by_name(key)
                .ok_or_else(|| ArrowError::SchemaError(format!("no column `{key}` to sort by")))?;
            arrow_cmp::make_comparator(column.as_ref(), column.as_ref(), SortOptions::default())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = u32::try_from(batch.num_rows())
        .map_err(|_| ArrowError::ComputeError("more than 2^32 rows in one day".into()))?;
    let mut indices: Vec<u32> = (0..rows).collect();
    indices.sort_by(|&a, &b| {
        comparators.iter().map(|c| c(a as usize, b as usize)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    });
    arrow_select::take::take_record_batch(batch, &UInt32Array::from(indices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{measurement, run};
    use crate::records::{MeasurementsBuilder, runs_batch};

    fn measurements(values: &[(&str, f64)]) -> RecordBatch {
        let r = run("db-01", "2026-03-01T01:00:00Z");
        let mut b = MeasurementsBuilder::default();
        for (metric, v) in values {
            b.append(&r, &measurement(metric, *v));
        }
        b.finish()
    }

    #[test]
    fn the_digest_ignores_order_and_batches_but_sees_every_change() {
        let all = measurements(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        let base = row_digest(std::slice::from_ref(&all)).unwrap();
        assert_eq!(base.rows, 3);

        let reversed =
            arrow_select::take::take_record_batch(&all, &UInt32Array::from(vec![2, 1, 0])).unwrap();
        assert_eq!(row_digest(&[reversed]).unwrap(), base);
        assert_eq!(row_digest(&[all.slice(0, 1), all.slice(1, 2)]).unwrap(), base);

        let changed = |values: &[(&str, f64)]| row_digest(&[measurements(values)]).unwrap();
        assert_ne!(changed(&[("a", 1.0), ("b", 2.0), ("c", 3.5)]).hash, base.hash);
        assert_ne!(changed(&[("a", 1.0), ("b", 2.0), ("d", 3.0)]).hash, base.hash);
        // A duplicated row with one dropped keeps the count, not the hash.
        assert_ne!(changed(&[("a", 1.0), ("a", 1.0), ("c", 3.0)]).hash, base.hash);
        assert_ne!(changed(&[("a", 0.0)]).hash, changed(&[("a", -0.0)]).hash);

        // Maps and lists count too: a label's value, a CPU flag.
        let r = run("db-01", "2026-03-01T01:00:00Z");
        let mut other = r.clone();
        other.labels.insert("site".into(), "ams1".into());
        let one = row_digest(&[runs_batch(std::slice::from_ref(&r))]).unwrap();
        assert_ne!(row_digest(&[runs_batch(&[other])]).unwrap().hash, one.hash);
        let mut flags = r.clone();
        flags.facts.cpu_flags.push("sse4_2".into());
        assert_ne!(row_digest(&[runs_batch(&[flags])]).unwrap().hash, one.hash);
        let mut reason = r.clone();
        reason.status_reason = Some(String::new());
        assert_ne!(row_digest(&[runs_batch(&[reason])]).unwrap().hash, one.hash, "null is not empty");
    }

    #[test]
    fn sorting_is_by_the_keys_and_stable() {
        let b = measurements(&[("c", 1.0), ("a", 2.0), ("b", 3.0), ("a", 4.0)]);
        let sorted = sort(&b, &[col::METRIC]).unwrap();
        let metric = sorted.column_by_name(col::METRIC).unwrap().as_string::<i32>();
        let value = sorted.column_by_name(col::VALUE).unwrap().as_primitive::<Float64Type>();
        assert_eq!(metric.iter().flatten().collect::<Vec<_>>(), ["a", "a", "b", "c"]);
        assert_eq!(value.values().to_vec(), [2.0, 4.0, 3.0, 1.0]);
    }
}
