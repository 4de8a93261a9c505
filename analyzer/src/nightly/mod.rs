//! `nightly`: every analysis over every series, written as Parquet tables under `analysis/` in
//! the same store, with a digest of what needs attention.
//!
//! # Incremental nights
//!
//! Each series is analysed over its window: its last [`HISTORY_RUNS`] runs up to the night. The
//! window is kept as state (`analysis/state/date=NIGHT/`), so the next night reads that state and
//! the partitions after it, not the year behind it. A full recompute (`--full`, or no state yet)
//! reads every partition up to the night, keeping the same window; both give the same findings
//! because the findings are a function of the window only. What the incremental path cannot see
//! is a run that arrives late into a partition older than the state (a collector that spooled
//! through a long outage): `--full` picks it up.
//!
//! # Writing
//!
//! Every file goes in with one atomic put; the digest goes last and says the night is complete,
//! so a night cut off half-way is redone and its state never used.

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
use crate::analyses::forecast::{Forecast, Limit, forecasts};
use crate::analyses::outliers::{class_of, fleet_outliers};
use crate::analyses::stability::{Stability, stability_of};
use crate::analyses::trends::{Trend, regime_start_after, trend_since};
use crate::history::{HistoryError, load_into};
use crate::series::NightlySeries;
use digest::{Digest, Findings};
use state::{HostMap, HostState, SeriesMap};

/// Runs per series the nightly analyses look at: a year of nightly runs.
pub const HISTORY_RUNS: usize = 365;
pub const ANALYSIS_DIR: &str = "analysis";
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

/// Deletes the states of nights before `night` but the latest of them: a state is hundreds of
/// megabytes for a large fleet, and only the newest one, with one before it to redo a night
/// from, is ever read. The findings tables and digests stay.
async fn prune_states(dataset: &Dataset, night: NaiveDate) -> Result<(), StoreError> {
    let metas = dataset.list_objects(&format!("{ANALYSIS_DIR}/state")).await?;
    let dated: Vec<(NaiveDate, &object_store::path::Path)> =
        metas.iter().filter_map(|m| partition_date(&m.location).map(|d| (d, &m.location))).collect();
    let Some(keep) = dated.iter().map(|(d, _)| *d).filter(|d| *d < night).max() else { return Ok(()) };
    let old: Vec<object_store::path::Path> =
        dated.into_iter().filter(|(d, _)| *d < keep).map(|(_, p)| p.clone()).collect();
    if !old.is_empty() {
        tracing::info!("removing {} files of older states", old.len());
        dataset.delete_all(&old).await?;
    }
    Ok(())
}

/// The findings of one series; the detector runs once and trends reuse its last change.
struct SeriesFindings {
    stability: Stability,
    trend: Option<Trend>,
    changes: Vec<Anomaly>,
}

fn analyze(s: &NightlySeries, opts: &Options) -> SeriesFindings {
    let clean = s.clean_values();
    let found = detect(&clean, opts);
    let start = regime_start_after(clean.len(), found.last().map(|c| c.index));
    SeriesFindings {
        stability: stability_of(s),
        trend: trend_since(s, &clean, start),
        changes: anomalies_from(s, &found),
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
    let previous = if opts.full {
        None
    } else {
        // The newest finished night before this one whose state is still there (redoing an old
        // night finds its neighbours' states pruned: it then starts from an older one, or in full).
        let mut found = None;
        for d in runtime.block_on(finished_nights(dataset))?.into_iter().rev().filter(|d| *d < night) {
            let there =
                |file: &str| runtime.block_on(dataset.exists(&dataset.child(&location("state", d, file))));
            if there("series.parquet")? && there("points.parquet")? && there("hosts.parquet")? {
                found = Some(d);
                break;
            }
        }
        found
    };
    let (mut series, mut hosts, since) = match previous {
        Some(p) => {
            let get = |file: &str| runtime.block_on(dataset.get(&dataset.child(&location("state", p, file))));
            let (s, pts, h) = (get("series.parquet")?, get("points.parquet")?, get("hosts.parquet")?);
            let (series, hosts) =
                state::decode_state(&s, &pts, &h).map_err(polars(format!("reading the state of {p}")))?;
            (series, hosts, p.checked_add_days(Days::new(1)))
        }
        None => (SeriesMap::new(), HostMap::new(), None),
    };
    tracing::info!("state of {previous:?}: {} series, {:.1?}", series.len(), clock.elapsed());
    let loaded =
        load_into(runtime, dataset, DateRange { since, until: Some(night) }, HISTORY_RUNS, &mut series)?;
    tracing::info!("{} partitions read, {:.1?}", loaded.dates.len(), clock.elapsed());
    if series.is_empty() {
        return Err(NightlyError::Nothing(format!("{} holds no measurements up to {night}", dataset.url())));
    }
    merge_hosts(&mut hosts, &loaded.runs);
    let classes: BTreeMap<String, String> = hosts.iter().map(|(h, s)| (h.clone(), s.class.clone())).collect();
    let list: Vec<NightlySeries> = series.into_values().collect();

    let detector = Options::default();
    let per_series: Vec<SeriesFindings> = list.par_iter().map(|s| analyze(s, &detector)).collect();
    let mut changes = Vec::new();
    let mut trends = Vec::new();
    let mut stability = Vec::with_capacity(per_series.len());
    for f in per_series {
        stability.push(f.stability);
        trends.extend(f.trend);
        changes.extend(f.changes);
    }
    let outliers = fleet_outliers(&list, &classes);
    let predicted: Vec<Forecast> =
        if opts.limits.is_empty() { Vec::new() } else { forecasts(&list, &opts.limits, &detector) };

    tracing::info!("analysed, {:.1?}", clock.elapsed());
    let mode = if previous.is_some() { "incremental" } else { "full" };
    let findings = Findings {
        changes: &changes,
        trends: &trends,
        stability: &stability,
        outliers: &outliers,
        forecasts: &predicted,
        classes: &classes,
    };
    let digest = digest::digest(
        &findings,
        night,
        mode,
        dataset.url().to_string(),
        loaded.dates.len(),
        opts.recent,
        loaded.skipped,
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
        let [s, p, h] = state::encode_state(&list, &hosts).map_err(polars("encoding the state"))?;
        files.push((location("state", night, "series.parquet"), s));
        files.push((location("state", night, "points.parquet"), p));
        files.push((location("state", night, "hosts.parquet"), h));
        let mut json = serde_json::to_vec_pretty(&digest)?;
        json.push(b'\n');
        files.push((location("digest", night, "digest.json"), json));
        for (path, bytes) in files {
            runtime.block_on(dataset.put(&dataset.child(&path), bytes.into()))?;
            written.push(path);
        }
        runtime.block_on(prune_states(dataset, night))?;
    }
    tracing::info!("written, {:.1?}", clock.elapsed());
    Ok(NightlyRun { digest, written, changes, trends, stability })
}
