//! The synthetic fleet: a year of nightly runs of many hosts, with injected events and their
//! ground truth, so the analyzer can be developed and scored without a real fleet.
//!
//! Hosts belong to hardware classes that are strictly ordered on every metric; values carry
//! realistic noise; steps, drifts, upgrade roll-outs and outlier hosts are injected and written
//! to `ground_truth.json` next to the tables. The same options always give the same rows: no
//! wall clock, and every host-night draws from its own generator seeded from the options.

mod classes;
mod events;
mod fleet;
#[cfg(test)]
mod tests;
mod values;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{Days, NaiveDate};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;

use crate::catalogue::{METRICS, PROBES};
use crate::schema::Table;
use crate::store::{Dataset, StoreError};
use crate::write::{WriteError, write_table_file};

pub use classes::{HARDWARE_CLASSES, HardwareClass};
pub use events::{EventKind, GroundTruth, InjectedEvent};

/// The ground truth object, at the dataset root.
pub const GROUND_TRUTH_FILE: &str = "ground_truth.json";

/// One file per table per day, as a compacted dataset would have.
const FILE_NAME: &str = "synth-0.parquet";

/// Nights generated and written at the same time, at most.
const MAX_PARALLEL: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    pub hosts: usize,
    /// Nights, ending at `end` inclusive.
    pub days: u32,
    pub seed: u64,
    pub end: NaiveDate,
    /// Also write every repetition to `samples` (five rows per measurement).
    pub samples: bool,
}

/// What `generate` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub hosts: usize,
    pub runs: u64,
    pub measurements: u64,
    pub samples: u64,
    pub events: usize,
    /// Bytes written, Parquet files and ground truth together.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synthetic fleet options: {0}")]
    Options(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encoding the ground truth: {0}")]
    Json(#[from] serde_json::Error),
    #[error("generating the synthetic fleet was interrupted: {0}")]
    Interrupted(String),
}

/// Independent random streams, so e.g. the fleet's layout does not depend on the period.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Fleet = 1,
    Nights = 2,
    Events = 3,
    Values = 4,
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of one stream and one (a, b) pair, e.g. host × night.
fn rng_for(seed: u64, stream: Stream, a: u64, b: u64) -> StdRng {
    let h = splitmix(splitmix(splitmix(seed) ^ stream as u64) ^ a);
    StdRng::seed_from_u64(splitmix(h ^ b.rotate_left(32)))
}

/// The planned fleet, shared by the night tasks.
struct Fleet {
    seed: u64,
    first: NaiveDate,
    samples: bool,
    hosts: Vec<fleet::Host>,
    /// `METRICS` indices of each probe, by `PROBES` index.
    probe_metrics: Vec<Vec<usize>>,
}

/// Rows and bytes one night wrote.
#[derive(Default)]
struct Written {
    runs: u64,
    measurements: u64,
    samples: u64,
    bytes: u64,
}

/// Generates the fleet into `dataset`: one file per table per night, then the ground truth.
/// Runs inside a Tokio runtime (nights are generated as tasks, a few at a time); files of an
/// earlier generation with other options are not removed.
pub async fn generate(dataset: &Dataset, opts: &SynthOptions) -> Result<SynthSummary, SynthError> {
    if opts.hosts == 0 || opts.days == 0 {
        return Err(SynthError::Options("hosts and days must be at least 1".into()));
    }
    let first = opts.end.checked_sub_days(Days::new(u64::from(opts.days - 1))).ok_or_else(|| {
        SynthError::Options(format!("{} nights before {} is out of range", opts.days, opts.end))
    })?;
    let mut hosts = fleet::hosts(opts.seed, opts.hosts, opts.days);
    let events = events::inject(opts.seed, first, opts.days, &mut hosts);
    let probe_metrics =
        PROBES.iter().map(|p| (0..METRICS.len()).filter(|&i| METRICS[i].probe == p.id).collect()).collect();
    let fleet = Arc::new(Fleet { seed: opts.seed, first, samples: opts.samples, hosts, probe_metrics });

    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_PARALLEL);
    let mut summary = SynthSummary { hosts: opts.hosts, events: events.len(), ..SynthSummary::default() };
    let mut tasks = JoinSet::new();
    let mut next = 0;
    loop {
        while tasks.len() < parallel && next < opts.days {
            tasks.spawn(write_night(dataset.clone(), fleet.clone(), next));
            next += 1;
        }
        let Some(done) = tasks.join_next().await else { break };
        let w = match done {
            Ok(w) => w?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(SynthError::Interrupted(e.to_string())),
        };
        summary.runs += w.runs;
        summary.measurements += w.measurements;
        summary.samples += w.samples;
        summary.bytes += w.bytes;
    }

    let truth = GroundTruth {
        seed: opts.seed,
        hosts: opts.hosts,
        days: opts.days,
        end: opts.end,
        classes: HARDWARE_CLASSES.iter().map(|c| c.name.to_string()).collect(),
        events,
    };
    let mut json = serde_json::to_vec_pretty(&truth)?;
    json.push(b'\n');
    summary.bytes += json.len() as u64;
    dataset.put(&dataset.child(GROUND_TRUTH_FILE), Bytes::from(json)).await?;
    Ok(summary)
}

/// Generates and writes one night; the `runs` file goes last, as it commits the rows.
async fn write_night(dataset: Dataset, fleet: Arc<Fleet>, night: u32) -> Result<Written, WriteError> {
    let rows = values::night(&fleet, night);
    let date = fleet.first + Days::new(u64::from(night));
    let mut w = Written {
        runs: rows.runs.len() as u64,
        measurements: rows.measurements.len() as u64,
        samples: rows.samples.len() as u64,
        bytes: 0,
    };
    if !rows.samples.is_empty() {
        let batch = rows.samples.finish();
        w.bytes += write_table_file(&dataset, Table::Samples, date, FILE_NAME, &batch).await?;
    }
    if !rows.measurements.is_empty() {
        let batch = rows.measurements.finish();
        w.bytes += write_table_file(&dataset, Table::Measurements, date, FILE_NAME, &batch).await?;
    }
    if !rows.runs.is_empty() {
        let batch = crate::records::runs_batch(&rows.runs);
        w.bytes += write_table_file(&dataset, Table::Runs, date, FILE_NAME, &batch).await?;
    }
    Ok(w)
}
