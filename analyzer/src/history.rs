//! A window of history for every series: the last `keep` runs up to a night, loaded a week of
//! partitions at a time and trimmed as it goes, so memory follows the number of series and the
//! window, not the rows read (a year of a large fleet is hundreds of millions of rows).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use fathom_datasets::Table;
use fathom_datasets::schema::col;
use fathom_datasets::store::{Dataset, DateRange};
use polars::prelude::*;

use crate::load::{LoadError, Loader, SkippedFile};
use crate::runs::{RunInfo, read_runs};
use crate::series::{NightlySeries, SeriesKey, date_of_days, load_series};

/// Partition dates loaded together.
pub const CHUNK_DAYS: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("reading {what}: {cause}")]
    Polars { what: &'static str, cause: polars::prelude::PolarsError },
}

/// The series and the runs of the partitions read.
#[derive(Default)]
pub struct Loaded {
    pub runs: Vec<RunInfo>,
    pub skipped: Vec<SkippedFile>,
    pub dates: Vec<NaiveDate>,
}

/// Reads the partitions in `range` into `series` (adding each series' newer runs, keeping the
/// last `keep`) and returns their runs. A chunk whose query fails on a corrupt page is decoded
/// file by file, the bad files dropped and named, and read again.
pub fn load_into(
    runtime: &tokio::runtime::Runtime,
    dataset: &Dataset,
    range: DateRange,
    keep: usize,
    series: &mut BTreeMap<SeriesKey, NightlySeries>,
) -> Result<Loaded, HistoryError> {
    let files = runtime.block_on(dataset.list_files(Table::Runs, range)).map_err(LoadError::from)?;
    let mut dates: Vec<NaiveDate> = files.iter().filter_map(|f| f.date).collect();
    dates.sort();
    dates.dedup();
    let mut loaded = Loaded { dates: dates.clone(), ..Loaded::default() };
    for chunk in dates.chunks(CHUNK_DAYS) {
        let range = DateRange { since: chunk.first().copied(), until: chunk.last().copied() };
        let mut loader = Loader::new(dataset.clone(), range);
        let read = |loader: &mut Loader| -> Result<(Vec<NightlySeries>, Vec<RunInfo>), HistoryError> {
            let polars = |what| move |cause| HistoryError::Polars { what, cause };
            let Some(runs) = runtime.block_on(loader.scan(Table::Runs))? else {
                return Ok(Default::default());
            };
            let runs = read_runs(runs).map_err(polars("the runs table"))?;
            let found = match runtime.block_on(loader.committed_measurements())? {
                Some(m) => load_series(m).map_err(polars("the measurements"))?,
                None => Vec::new(),
            };
            Ok((found, runs))
        };
        let (found, runs) = match read(&mut loader) {
            Ok(v) => v,
            Err(first) if loader.recheck() == 0 => return Err(first),
            Err(_) => read(&mut loader)?,
        };
        loaded.skipped.append(&mut loader.skipped);
        loaded.runs.extend(runs);
        for s in found {
            match series.get_mut(&s.key) {
                Some(kept) => kept.extend_with(s, keep),
                None => {
                    let mut s = s;
                    s.keep_last(keep);
                    series.insert(s.key.clone(), s);
                }
            }
        }
    }
    Ok(loaded)
}

/// Distinct runs per partition in `range`, from the runs table's `run_id` column only: how a
/// night tells that runs arrived late into partitions its state has already read.
pub fn run_counts(
    runtime: &tokio::runtime::Runtime,
    dataset: &Dataset,
    range: DateRange,
) -> Result<BTreeMap<NaiveDate, u64>, HistoryError> {
    let polars = |cause| HistoryError::Polars { what: "the runs table", cause };
    let mut loader = Loader::new(dataset.clone(), range);
    let count = |loader: &mut Loader| -> Result<Option<DataFrame>, HistoryError> {
        let Some(runs) = runtime.block_on(loader.scan(Table::Runs))? else { return Ok(None) };
        runs.select([
            col(col::STARTED_AT)
                .cast(DataType::Datetime(TimeUnit::Microseconds, None))
                .dt()
                .date()
                .alias("date"),
            col(col::RUN_ID),
        ])
        .group_by([col("date")])
        .agg([col(col::RUN_ID).n_unique().cast(DataType::UInt64).alias("runs")])
        .collect()
        .map(Some)
        .map_err(polars)
    };
    let df = match count(&mut loader) {
        Ok(df) => df,
        Err(first) if loader.recheck() == 0 => return Err(first),
        Err(_) => count(&mut loader)?,
    };
    let Some(df) = df else { return Ok(BTreeMap::new()) };
    let dates = df.column("date").and_then(|c| c.date().cloned()).map_err(polars)?;
    let counts = df.column("runs").and_then(|c| c.u64().cloned()).map_err(polars)?;
    Ok((0..df.height())
        .filter_map(|i| Some((date_of_days(dates.physical().get(i)?), counts.get(i)?)))
        .collect())
}
