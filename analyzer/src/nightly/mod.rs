//! `nightly`: every analysis over every series, written as Parquet tables under `analysis/` in
//! the same store, with a digest of what needs attention.
//!
//! # Incremental nights
//!
//! Each series is analysed over its window: its last [`HISTORY_RUNS`] runs up to the night. The
//! window is kept as state (`analysis/state/date=NIGHT/`), so the next night reads that state and
//! the partitions after it, not the year behind it. A full recompute (`--full`, or no state yet)
//! reads every partition up to the night, keeping the same window; both give the same findings
//! because the findings are a function of the window only.
//!
//! Runs can arrive late: the night analysed by default is the latest partition with runs, which
//! may still be filling, and a collector that spooled through an outage uploads days later. So
//! an incremental night reads again the last [`OVERLAP_NIGHTS`] partitions its state covered, and
//! counts the runs of every older partition (one column of the small runs table) against the
//! counts the state recorded: from the oldest partition that changed, the window is dropped and
//! read again. Late runs are then in the findings as if they had been on time.
//!
//! # Writing
//!
//! Every file goes in with one atomic put. A night's digest says it is complete: it is deleted
//! before a night is redone and written last, so a night cut off half-way is never read as
//! finished and its state never used.

pub mod digest;
pub mod state;
pub mod tables;

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use fathom_datasets::Table;
use fathom_datasets::store::{Dataset, DateRange, StoreError, partition_date};
use polars::prelude::{DataFrame, PolarsError};
use rayon::prelude::*;

use crate::analyses::anomalies::{Anomaly, anomalies_from};
use crate::analyses::changepoint::{Options, detect};
use crate::analyses::forecast::{Forecast, Limit, forecast_since};
use crate::analyses::outliers::{class_of, fleet_outliers};
use crate::analyses::stability::{Stability, stability_of};
use crate::analyses::trends::{Trend, regime_start_after, trend_since};
use crate::history::{HistoryError, load_into, run_counts};
use crate::load::SkippedFile;
use crate::series::{NightlySeries, midnight_micros};
use digest::{Digest, Findings};
use state::{HostMap, HostState, STATE_FILES, SeriesMap, State};

/// Runs per series the nightly analyses look at: a year of nightly runs.
pub const HISTORY_RUNS: usize = 365;
/// Nor runs older than this many nights: a full recompute reads no further back however long
/// the dataset, and a retired host's runs leave the state.
pub const HISTORY_NIGHTS: u64 = 400;
/// A series without a run in this many nights (a retired host, a removed probe) is left out of
/// the analyses: its latest level says nothing about the fleet now.
pub const STALE_NIGHTS: i64 = 30;
pub const ANALYSIS_DIR: &str = "analysis";
/// Partitions an incremental night reads again before the new ones, for runs that arrived
/// after the state was taken (the state's own night may have been still filling).
pub const OVERLAP_NIGHTS: u64 = 3;
/// The file name of each table's night.
const TABLE_FILE: &str = "nightly.parquet";

#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {cause}")]
    Polars { what: String, cause: PolarsError },
    #[error("{0}")]
    Nothing(String),
    #[error("encoding the digest: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct NightlyOptions {
    /// The night analysed; the latest partition with runs when `None`.
    pub night: Option<NaiveDate>,
    pub full: bool,
    /// Ongoing change points from this many nights back are incidents.
    pub recent: u32,
    pub limits: Vec<Limit>,
    /// Write nothing (print the digest only).
    pub dry_run: bool,
}

/// What one night produced.
pub struct NightlyRun {
    pub digest: Digest,
    /// The files written, relative to the dataset.
    pub written: Vec<String>,
    pub changes: Vec<Anomaly>,
    pub trends: Vec<Trend>,
    pub stability: Vec<Stability>,
}

fn polars(what: impl Into<String>) -> impl FnOnce(PolarsError) -> NightlyError {
    let what = what.into();
    move |cause| NightlyError::Polars { what, cause }
}

fn location(name: &str, night: NaiveDate, file: &str) -> String {
    format!("{ANALYSIS_DIR}/{name}/date={night}/{file}")
}

/// Nights that have a complete result (a digest), oldest first.
async fn finished_nights(dataset: &Dataset) -> Result<Vec<NaiveDate>, StoreError> {
    let metas = dataset.list_objects(&format!("{ANALYSIS_DIR}/digest")).await?;
    let mut nights: Vec<NaiveDate> = metas
        .iter()
        .filter(|m| m.location.filename() == Some("digest.json"))
        .filter_map(|m| partition_date(&m.location))
        .collect();
    nights.sort();
    nights.dedup();
    Ok(nights)
}

/// The newest finished night before `night` whose state has all its files (one listing, as
/// [`restore_state`] sees them): the state pruning keeps for a redo of `night` (redoing an old
/// night finds its neighbours' states pruned: it then starts from an older one, or in full).
async fn usable_state_before(dataset: &Dataset, night: NaiveDate) -> Result<Option<NaiveDate>, StoreError> {
    let present = state_inventory(dataset).await?;
    let nights = finished_nights(dataset).await?;
    Ok(nights.into_iter().rev().filter(|d| *d < night).find(|d| present.get(d) == Some(&STATE_FILES.len())))
}

/// Deletes the states before `night` but the one the next redo of `night` would start from: a
/// state is hundreds of megabytes for a large fleet, and only the newest one, with one before it
/// to redo a night from, is ever read. A state a crashed night left goes too; states after
/// `night` (an old night redone) and the findings tables and digests stay.
async fn prune_states(dataset: &Dataset, night: NaiveDate) -> Result<(), StoreError> {
    let keep = usable_state_before(dataset, night).await?;
    let metas = dataset.list_objects(&format!("{ANALYSIS_DIR}/state")).await?;
    let old: Vec<object_store::path::Path> = metas
        .into_iter()
        .filter(|m| partition_date(&m.location).is_some_and(|d| d < night && Some(d) != keep))
        .map(|m| m.location)
        .collect();
    if !old.is_empty() {
        tracing::info!("removing {} files of older states", old.len());
        dataset.delete_all(&old).await?;
        // A local store keeps the emptied `date=` folders; an object store has none.
        let folders: std::collections::BTreeSet<std::path::PathBuf> = old
            .iter()
            .filter_map(|p| dataset.local_path(p))
            .filter_map(|p| p.parent().map(std::path::Path::to_path_buf))
            .collect();
        for folder in folders {
            // Only an empty folder goes (something else put there stays, with it).
            let _ = std::fs::remove_dir(folder);
        }
    }
    Ok(())
}

/// Where an incremental night starting from the state of `previous` must read from: the
/// overlap, or the oldest partition before it whose runs changed since the state was taken.
/// Partitions before `window` are out of every series' window and do not count.
fn reread_from(
    previous: NaiveDate,
    window: NaiveDate,
    recorded: &state::RunCounts,
    now: &state::RunCounts,
) -> NaiveDate {
    let overlap = (previous - Days::new(OVERLAP_NIGHTS - 1)).max(window);
    let counted = |d: &NaiveDate| *d >= window && *d < overlap;
    let changed = now
        .iter()
        .filter(|(d, n)| counted(d) && recorded.get(*d) != Some(*n))
        .map(|(d, _)| *d)
        .chain(recorded.keys().copied().filter(|d| counted(d) && !now.contains_key(d)))
        .min();
    match changed {
        Some(d) => {
            tracing::warn!("runs arrived late into {d} (or went): the windows are read again from there");
            d
        }
        None => overlap,
    }
}

/// The findings of one series; the detector runs once and trends and forecasts reuse its last
/// change.
struct SeriesFindings {
    stability: Stability,
    trend: Option<Trend>,
    changes: Vec<Anomaly>,
    forecast: Option<Forecast>,
}

fn analyze(s: &NightlySeries, opts: &Options, limits: &[Limit]) -> SeriesFindings {
    let clean = s.clean_values();
    let found = detect(&clean, opts);
    let start = regime_start_after(clean.len(), found.last().map(|c| c.index));
    SeriesFindings {
        stability: stability_of(s),
        trend: trend_since(s, &clean, start),
        changes: anomalies_from(s, &found),
        forecast: forecast_since(s, &clean, limits, start),
    }
}

fn merge_hosts(hosts: &mut HostMap, runs: &[crate::runs::RunInfo]) {
    for r in runs {
        let newer = hosts.get(&r.host).is_none_or(|h| (r.started_at, &r.run_id) > (h.started_at, &h.run_id));
        if newer {
            hosts.insert(
                r.host.clone(),
                HostState { class: class_of(r), started_at: r.started_at, run_id: r.run_id.clone() },
            );
        }
    }
}

/// The state a finished night kept; `Ok(Err(…))` when it is damaged or a file has gone (what
/// and why). Other store errors (a store that is down, refused credentials) fail the night
/// rather than cost a full recompute.
fn read_state(
    runtime: &tokio::runtime::Runtime,
    dataset: &Dataset,
    night: NaiveDate,
) -> Result<Result<State, SkippedFile>, StoreError> {
    let mut bytes = Vec::with_capacity(STATE_FILES.len());
    for file in STATE_FILES {
        let path = location("state", night, file);
        match runtime.block_on(dataset.get(&dataset.child(&path))) {
            Ok(b) => bytes.push(b),
            Err(StoreError::Object { cause: object_store::Error::NotFound { .. }, .. }) => {
                return Ok(Err(SkippedFile { path, reason: "the file is missing".into() }));
            }
            Err(e) => return Err(e),
        }
    }
    let files = [&bytes[0], &bytes[1], &bytes[2], &bytes[3]];
    Ok(state::decode_state(files)
        .map_err(|e| SkippedFile { path: location("state", night, "*.parquet"), reason: e.to_string() }))
}

/// The files each night's kept state has, by night (one listing).
async fn state_inventory(dataset: &Dataset) -> Result<BTreeMap<NaiveDate, usize>, StoreError> {
    let mut present = BTreeMap::new();
    for m in dataset.list_objects(&format!("{ANALYSIS_DIR}/state")).await? {
        let known = m.location.filename().is_some_and(|f| STATE_FILES.contains(&f));
        if let (Some(d), true) = (partition_date(&m.location), known) {
            *present.entry(d).or_insert(0) += 1;
        }
    }
    Ok(present)
}

/// The state a night starts from (the night it was kept for, and it), and the kept states that
/// could not be read.
type Restored = (Option<(NaiveDate, State)>, Vec<SkippedFile>);

/// The newest finished night's state before `night` that can be read, and the kept ones that
/// could not (damaged, or a file gone), newest first: each is a warning, and the night starts
/// from an older state, or in full, rather than fail.
fn restore_state(
    runtime: &tokio::runtime::Runtime,
    dataset: &Dataset,
    night: NaiveDate,
) -> Result<Restored, StoreError> {
    let present = runtime.block_on(state_inventory(dataset))?;
    let mut unreadable = Vec::new();
    for d in runtime.block_on(finished_nights(dataset))?.into_iter().rev().filter(|d| *d < night) {
        // No file at all: pruned, as every state but the newest two is.
        let Some(&files) = present.get(&d) else { continue };
        let attempt = if files < STATE_FILES.len() {
            let missing = STATE_FILES.len() - files;
            Err(SkippedFile {
                path: location("state", d, ""),
                reason: format!("{missing} of its {} files are missing", STATE_FILES.len()),
            })
        } else {
            read_state(runtime, dataset, d)?
        };
        match attempt {
            Ok(state) => return Ok((Some((d, state)), unreadable)),
            Err(skipped) => {
                tracing::warn!(
                    "the state of {d} is unreadable ({}: {}): starting from an older one, or in full",
                    skipped.path,
                    skipped.reason
                );
                unreadable.push(skipped);
            }
        }
    }
    Ok((None, unreadable))
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    dataset: &Dataset,
    opts: &NightlyOptions,
) -> Result<NightlyRun, NightlyError> {
    let night = match opts.night {
        Some(n) => n,
        None => runtime
            .block_on(dataset.list_files(Table::Runs, DateRange::default()))?
            .iter()
            .filter_map(|f| f.date)
            .max()
            .ok_or_else(|| NightlyError::Nothing(format!("{} holds no runs", dataset.url())))?,
    };
    let clock = std::time::Instant::now();
    // Counted before the windows are read: a run arriving in between is then read but not
    // counted, and the next night reads its partition again, rather than the other way round.
    let window = night - Days::new(HISTORY_NIGHTS - 1);
    let window_micros = midnight_micros(window);
    let counts = run_counts(runtime, dataset, DateRange { since: Some(window), until: Some(night) })?;
    let (restored, unreadable) =
        if opts.full { (None, Vec::new()) } else { restore_state(runtime, dataset, night)? };
    let previous = restored.as_ref().map(|(p, _)| *p);
    let mode = if restored.is_some() { "incremental" } else { "full" };
    let (mut series, mut hosts, since) = match restored {
        Some((p, State { mut series, hosts, partitions })) => {
            let since = reread_from(p, window, &partitions, &counts);
            let cut = midnight_micros(since);
            for s in series.values_mut() {
                s.truncate_from(cut);
            }
            (series, hosts, Some(since))
        }
        None => (SeriesMap::new(), HostMap::new(), Some(window)),
    };
    tracing::info!("state of {previous:?}: {} series, {:.1?}", series.len(), clock.elapsed());
    let loaded =
        load_into(runtime, dataset, DateRange { since, until: Some(night) }, HISTORY_RUNS, &mut series)?;
    // Runs older than the window go, and with them a series whose runs were all there (or all
    // in partitions read again that no longer hold them).
    for s in series.values_mut() {
        s.drop_before(window_micros);
    }
    series.retain(|_, s| !s.is_empty());
    hosts.retain(|_, h| h.started_at >= window_micros);
    tracing::info!("{} partitions read, {:.1?}", loaded.dates.len(), clock.elapsed());
    if series.is_empty() {
        return Err(NightlyError::Nothing(format!(
            "{} holds no measurements in the {HISTORY_NIGHTS} nights up to {night}",
            dataset.url()
        )));
    }
    merge_hosts(&mut hosts, &loaded.runs);
    let classes: BTreeMap<String, String> = hosts.iter().map(|(h, s)| (h.clone(), s.class.clone())).collect();
    // Stale series stay in the state (the host may come back) but out of the analyses.
    let active_since = midnight_micros(night - Days::new(STALE_NIGHTS as u64));
    let (list, stale): (Vec<NightlySeries>, Vec<NightlySeries>) =
        series.into_values().partition(|s| s.at.last().is_some_and(|&t| t >= active_since));

    let detector = Options::default();
    let per_series: Vec<SeriesFindings> =
        list.par_iter().map(|s| analyze(s, &detector, &opts.limits)).collect();
    let mut changes = Vec::new();
    let mut trends = Vec::new();
    let mut stability = Vec::with_capacity(per_series.len());
    let mut predicted = Vec::new();
    for f in per_series {
        stability.push(f.stability);
        trends.extend(f.trend);
        changes.extend(f.changes);
        predicted.extend(f.forecast);
    }
    let outliers = fleet_outliers(&list, &classes);

    tracing::info!("analysed, {:.1?}", clock.elapsed());
    let findings = Findings {
        changes: &changes,
        trends: &trends,
        stability: &stability,
        outliers: &outliers,
        forecasts: &predicted,
        classes: &classes,
        hosts: &hosts,
    };
    let digest = digest::digest(
        &findings,
        night,
        mode,
        dataset.url().to_string(),
        loaded.dates.len(),
        opts.recent,
        unreadable.into_iter().chain(loaded.skipped).collect(),
    );
    let mut written = Vec::new();
    if !opts.dry_run {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut table = |name: &str, df: Result<DataFrame, PolarsError>| -> Result<(), NightlyError> {
            let mut df = df.map_err(polars(format!("building the {name} table")))?;
            let bytes = state::encode(&mut df).map_err(polars(format!("encoding the {name} table")))?;
            files.push((location(name, night, TABLE_FILE), bytes));
            Ok(())
        };
        table("change_points", tables::change_points(night, &changes))?;
        table("trends", tables::trends(night, &trends))?;
        table("stability", tables::stability(night, &stability))?;
        table("outliers", tables::outliers(night, &outliers))?;
        if !opts.limits.is_empty() {
            table("forecasts", tables::forecasts(night, &predicted))?;
        }
        let encoded = state::encode_state(list.iter().chain(&stale), &hosts, &counts)
            .map_err(polars("encoding the state"))?;
        for (file, bytes) in STATE_FILES.into_iter().zip(encoded) {
            files.push((location("state", night, file), bytes));
        }
        let mut json = serde_json::to_vec_pretty(&digest)?;
        json.push(b'\n');
        files.push((location("digest", night, "digest.json"), json));
        // Redoing a finished night: it stops being finished until its new digest is in.
        runtime.block_on(dataset.delete(&dataset.child(&location("digest", night, "digest.json"))))?;
        for (path, bytes) in files {
            runtime.block_on(dataset.put(&dataset.child(&path), bytes.into()))?;
            written.push(path);
        }
        runtime.block_on(prune_states(dataset, night))?;
    }
    tracing::info!("written, {:.1?}", clock.elapsed());
    Ok(NightlyRun { digest, written, changes, trends, stability })
}
