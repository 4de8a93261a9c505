//! The state the nightly job keeps between nights, under `analysis/state/date=NIGHT/`: every
//! series' window of history (`series.parquet` with the keys, `points.parquet` with one row per
//! run, sorted by series and time), each host's class from its latest run (`hosts.parquet`),
//! and the runs each partition held when the state was taken (`partitions.parquet`, how the
//! next night tells that runs arrived late). A night then reads this and the new partitions
//! only, not the year behind it. The points, tens of millions of rows, go through arrow-rs a
//! batch at a time, between the series and the file's bytes, never as a whole frame.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt32Type};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use polars::prelude::*;

use crate::series::{NightlySeries, SeriesKey, date_of_days};

/// A host's latest run, and the hardware class it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub class: String,
    pub started_at: i64,
    pub run_id: String,
}

pub type SeriesMap = BTreeMap<SeriesKey, NightlySeries>;
pub type HostMap = BTreeMap<String, HostState>;
/// Distinct runs per partition date.
pub type RunCounts = BTreeMap<NaiveDate, u64>;

/// The files of a state, in the order [`encode_state`] returns them.
pub const STATE_FILES: [&str; 4] =
    ["series.parquet", "points.parquet", "hosts.parquet", "partitions.parquet"];

/// What a night keeps for the next one.
#[derive(Debug, Default)]
pub struct State {
    pub series: SeriesMap,
    pub hosts: HostMap,
    pub partitions: RunCounts,
}

pub fn encode(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).with_compression(ParquetCompression::Zstd(None)).finish(df)?;
    Ok(buf)
}

pub fn decode(bytes: &[u8]) -> PolarsResult<DataFrame> {
    ParquetReader::new(Cursor::new(bytes)).finish()
}

/// The [`STATE_FILES`] as bytes.
pub fn encode_state<'a>(
    keys: impl Iterator<Item = &'a NightlySeries>,
    hosts: &HostMap,
    partitions: &RunCounts,
) -> PolarsResult<[Vec<u8>; 4]> {
    let keys: Vec<&NightlySeries> = keys.collect();
    let text = |f: fn(&SeriesKey) -> &str| keys.iter().map(|s| f(&s.key)).collect::<Vec<&str>>();
    let mut series_df = df!(
        "series_id" => (0..keys.len() as u32).collect::<Vec<u32>>(),
        "host" => text(|k| &k.host),
        "probe" => text(|k| &k.probe),
        "metric" => text(|k| &k.metric),
        "params" => text(|k| &k.params),
        "unit" => text(|k| &k.unit),
        "higher_is_better" => keys.iter().map(|s| s.higher_is_better).collect::<Vec<bool>>(),
    )?;
    let points = encode_points(&keys, POINT_BATCH)
        .map_err(|e| polars_err!(ComputeError: "encoding the state's points: {e}"))?;
    let mut hosts_df = df!(
        "host" => hosts.keys().map(String::as_str).collect::<Vec<_>>(),
        "class" => hosts.values().map(|h| h.class.as_str()).collect::<Vec<_>>(),
        "started_at" => hosts.values().map(|h| h.started_at).collect::<Vec<_>>(),
        "run_id" => hosts.values().map(|h| h.run_id.as_str()).collect::<Vec<_>>(),
    )?;
    let mut partitions_df = df!(
        "date" => partitions.keys().copied().collect::<Vec<NaiveDate>>(),
        "runs" => partitions.values().copied().collect::<Vec<u64>>(),
    )?;
    Ok([encode(&mut series_df)?, points, encode(&mut hosts_df)?, encode(&mut partitions_df)?])
}

/// Rows per batch of `points.parquet`, read or written: the file holds tens of millions of
/// runs, and a batch at a time keeps them out of memory twice (as columns and as series).
const POINT_BATCH: usize = 1 << 20;

fn points_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("started_at", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("disturbed", DataType::Boolean, false),
    ]))
}

/// `points.parquet`, written a batch at a time straight from the series.
fn encode_points(keys: &[&NightlySeries], batch: usize) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let schema = points_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(batch))
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    let mut id: Vec<u32> = Vec::with_capacity(batch);
    let mut at: Vec<i64> = Vec::with_capacity(batch);
    let mut value: Vec<f64> = Vec::with_capacity(batch);
    let mut disturbed: Vec<bool> = Vec::with_capacity(batch);
    let mut flush =
        |id: &mut Vec<u32>, at: &mut Vec<i64>, value: &mut Vec<f64>, disturbed: &mut Vec<bool>| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from(std::mem::take(id))),
                Arc::new(Int64Array::from(std::mem::take(at))),
                Arc::new(Float64Array::from(std::mem::take(value))),
                Arc::new(BooleanArray::from(std::mem::take(disturbed))),
            ];
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)
        };
    for (i, s) in keys.iter().enumerate() {
        let mut from = 0;
        while from < s.len() {
            let to = s.len().min(from + batch - id.len());
            id.extend(std::iter::repeat_n(i as u32, to - from));
            at.extend_from_slice(&s.at[from..to]);
            value.extend_from_slice(&s.values[from..to]);
            disturbed.extend_from_slice(&s.disturbed[from..to]);
            from = to;
            if id.len() == batch {
                flush(&mut id, &mut at, &mut value, &mut disturbed)?;
            }
        }
    }
    if !id.is_empty() {
        flush(&mut id, &mut at, &mut value, &mut disturbed)?;
    }
    writer.close()?;
    Ok(out)
}

/// Appends the runs of `points.parquet` to their series, a batch at a time.
fn decode_points(bytes: Bytes, by_id: &mut [NightlySeries], batch: usize) -> PolarsResult<()> {
    let err = |e: &dyn std::fmt::Display| polars_err!(ComputeError: "reading the state's points: {e}");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| err(&e))?
        .with_batch_size(batch)
        .build()
        .map_err(|e| err(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| err(&format!("no column {name}")));
        let (id, at, value, disturbed) =
            (column("series_id")?, column("started_at")?, column("value")?, column("disturbed")?);
        polars_ensure!(
            [id, at, value, disturbed].iter().all(|c| c.null_count() == 0),
            ComputeError: "state points have nulls"
        );
        let id = id.as_primitive_opt::<UInt32Type>().ok_or_else(|| err(&"series_id is not u32"))?.values();
        let at = at.as_primitive_opt::<Int64Type>().ok_or_else(|| err(&"started_at is not i64"))?.values();
        let value = value.as_primitive_opt::<Float64Type>().ok_or_else(|| err(&"value is not f64"))?.values();
        let disturbed =
            disturbed.as_boolean_opt().ok_or_else(|| err(&"disturbed is not a boolean"))?.values();
        let mut start = 0;
        while start < id.len() {
            let k = id[start];
            let end = start + id[start..].iter().take_while(|&&x| x == k).count();
            let Some(s) = by_id.get_mut(k as usize) else {
                polars_bail!(ComputeError: "a state point names a series that is not there");
            };
            s.at.extend_from_slice(&at[start..end]);
            s.values.extend_from_slice(&value[start..end]);
            s.disturbed.extend((start..end).map(|i| disturbed.value(i)));
            start = end;
        }
    }
    Ok(())
}

fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    let ca = df.column(name)?.str()?.clone();
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or_default().to_string()).collect())
}

/// Reads the [`STATE_FILES`] back.
pub fn decode_state([series, points, hosts, partitions]: [&Bytes; 4]) -> PolarsResult<State> {
    let points = points.clone();
    let df = decode(series)?;
    let ids = df.column("series_id")?.u32()?.clone();
    let (host, probe, metric, params, unit) = (
        strings(&df, "host")?,
        strings(&df, "probe")?,
        strings(&df, "metric")?,
        strings(&df, "params")?,
        strings(&df, "unit")?,
    );
    let hib = df.column("higher_is_better")?.bool()?.clone();
    let mut by_id: Vec<NightlySeries> = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        polars_ensure!(ids.get(i) == Some(i as u32), ComputeError: "state series ids are not 0, 1, 2 …");
        by_id.push(NightlySeries {
            key: SeriesKey {
                host: host[i].clone(),
                probe: probe[i].clone(),
                metric: metric[i].clone(),
                params: params[i].clone(),
                unit: unit[i].clone(),
            },
            higher_is_better: hib.get(i).unwrap_or(true),
            at: Vec::new(),
            values: Vec::new(),
            disturbed: Vec::new(),
        });
    }
    decode_points(points, &mut by_id, POINT_BATCH)?;
    let h = decode(hosts)?;
    let (names, classes, runs) = (strings(&h, "host")?, strings(&h, "class")?, strings(&h, "run_id")?);
    let started = h.column("started_at")?.i64()?.clone();
    let hosts = names
        .into_iter()
        .zip(classes)
        .zip(runs)
        .enumerate()
        .map(|(i, ((host, class), run_id))| {
            (host, HostState { class, started_at: started.get(i).unwrap_or(0), run_id })
        })
        .collect();
    let c = decode(partitions)?;
    let (dates, runs) = (c.column("date")?.date()?.clone(), c.column("runs")?.u64()?.clone());
    let mut counts = RunCounts::new();
    for i in 0..c.height() {
        let (Some(day), Some(n)) = (dates.physical().get(i), runs.get(i)) else {
            polars_bail!(ComputeError: "state partition counts have nulls");
        };
        counts.insert(date_of_days(day), n);
    }
    Ok(State { series: by_id.into_iter().map(|s| (s.key.clone(), s)).collect(), hosts, partitions: counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    #[test]
    fn points_round_trip_in_batches_of_any_size() {
        let lengths = [5usize, 0, 7, 1, 3];
        let make = || -> Vec<NightlySeries> {
            lengths
                .iter()
                .enumerate()
                .map(|(k, &n)| {
                    let values: Vec<f64> = (0..n).map(|i| (k * 100 + i) as f64).collect();
                    let disturbed: Vec<usize> = (0..n).filter(|i| (i + k) % 3 == 0).collect();
                    series(&values, &disturbed)
                })
                .collect()
        };
        let original = make();
        let keys: Vec<&NightlySeries> = original.iter().collect();
        for (write, read) in [(1, 1), (2, 3), (3, 2), (4, 1000), (1000, 4)] {
            let bytes = Bytes::from(encode_points(&keys, write).unwrap());
            let mut back = make();
            for s in &mut back {
                (s.at, s.values, s.disturbed) = (Vec::new(), Vec::new(), Vec::new());
            }
            decode_points(bytes, &mut back, read).unwrap();
            for (a, b) in original.iter().zip(&back) {
                assert_eq!(
                    (&a.at, &a.values, &a.disturbed),
                    (&b.at, &b.values, &b.disturbed),
                    "{write}/{read}"
                );
            }
        }
    }

    #[test]
    fn points_written_by_polars_are_still_read() {
        // How states were written before the points went through arrow-rs.
        let mut df = df!(
            "series_id" => [0u32, 0, 1],
            "started_at" => [10i64, 20, 30],
            "value" => [1.5f64, f64::NAN, 7.0],
            "disturbed" => [false, true, false],
        )
        .unwrap();
        let bytes = Bytes::from(encode(&mut df).unwrap());
        let mut back = vec![series(&[], &[]), series(&[], &[])];
        decode_points(bytes, &mut back, POINT_BATCH).unwrap();
        assert_eq!(
            (&back[0].at, &back[0].disturbed, &back[1].at),
            (&vec![10, 20], &vec![false, true], &vec![30])
        );
        assert!(back[0].values[0] == 1.5 && back[0].values[1].is_nan() && back[1].values == [7.0]);
    }

    #[test]
    fn state_round_trips() {
        let mut a = series(&[1.0, f64::NAN, 3.0], &[2]);
        a.key.host = "a".into();
        let mut b = series(&[5.0], &[]);
        b.key.host = "b".into();
        b.higher_is_better = false;
        let map: SeriesMap = [a, b].into_iter().map(|s| (s.key.clone(), s)).collect();
        let hosts: HostMap =
            [("a".to_string(), HostState { class: "genoa".into(), started_at: 7, run_id: "r1".into() })]
                .into();
        let list: Vec<NightlySeries> = map.values().cloned().collect();
        let counts: RunCounts = [
            (NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(), 12),
            (NaiveDate::from_ymd_opt(1969, 12, 31).unwrap(), 1),
        ]
        .into();
        let [s, p, h, c] = encode_state(list.iter(), &hosts, &counts).unwrap().map(Bytes::from);
        let State { series: back, hosts: back_hosts, partitions } = decode_state([&s, &p, &h, &c]).unwrap();
        assert_eq!(back_hosts, hosts);
        assert_eq!(partitions, counts);
        assert_eq!(back.len(), 2);
        for (k, v) in &map {
            let w = &back[k];
            assert_eq!((&w.at, &w.disturbed, w.higher_is_better), (&v.at, &v.disturbed, v.higher_is_better));
            assert!(w.values.iter().zip(&v.values).all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        }
    }
}
