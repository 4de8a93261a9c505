//! The state the nightly job keeps between nights, under `analysis/state/date=NIGHT/`: every
//! series' window of history (`series.parquet` with the keys, `points.parquet` with one row per
//! run, sorted by series and time), each host's class from its latest run (`hosts.parquet`),
//! and the runs each partition held when the state was taken (`partitions.parquet`, how the
//! next night tells that runs arrived late). A night then reads this and the new partitions
//! only, not the year behind it.

use std::collections::BTreeMap;
use std::io::Cursor;

use chrono::NaiveDate;
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
    let total: usize = keys.iter().map(|s| s.len()).sum();
    let (mut id, mut at, mut value, mut disturbed) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    for (i, s) in keys.iter().enumerate() {
        id.extend(std::iter::repeat_n(i as u32, s.len()));
        at.extend_from_slice(&s.at);
        value.extend_from_slice(&s.values);
        disturbed.extend_from_slice(&s.disturbed);
    }
    let mut points = df!("series_id" => id, "started_at" => at, "value" => value, "disturbed" => disturbed)?;
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
    Ok([encode(&mut series_df)?, encode(&mut points)?, encode(&mut hosts_df)?, encode(&mut partitions_df)?])
}

fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    let ca = df.column(name)?.str()?.clone();
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or_default().to_string()).collect())
}

/// Reads the [`STATE_FILES`] back.
pub fn decode_state([series, points, hosts, partitions]: [&[u8]; 4]) -> PolarsResult<State> {
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
    let p = decode(points)?;
    // Contiguous slices: tens of millions of points, so no per-element lookups.
    let id = p.column("series_id")?.u32()?.rechunk();
    let at = p.column("started_at")?.i64()?.rechunk();
    let value = p.column("value")?.f64()?.rechunk();
    let disturbed = p.column("disturbed")?.bool()?.rechunk();
    let (id, at, value) = (id.cont_slice()?, at.cont_slice()?, value.cont_slice()?);
    let flags: Vec<bool> = disturbed.downcast_iter().flat_map(|a| a.values_iter()).collect();
    polars_ensure!(flags.len() == id.len(), ComputeError: "state points have nulls");
    let mut start = 0;
    while start < id.len() {
        let k = id[start];
        let end = start + id[start..].iter().take_while(|&&x| x == k).count();
        let Some(s) = by_id.get_mut(k as usize) else {
            polars_bail!(ComputeError: "a state point names a series that is not there");
        };
        s.at.extend_from_slice(&at[start..end]);
        s.values.extend_from_slice(&value[start..end]);
        s.disturbed.extend_from_slice(&flags[start..end]);
        start = end;
    }
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
        let [s, p, h, c] = encode_state(list.iter(), &hosts, &counts).unwrap();
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
