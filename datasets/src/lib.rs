//! Fathom's dataset contract, shared by the collector and the analyzer.
//!
//! What it is for: the schema of the three tables (`runs`, `measurements`, `samples`), the
//! metric catalogue, dataset URLs and the object store behind them, atomic Parquet writes that
//! commit a run by its `runs` row, validation, compaction, and the synthetic fleet generator. What it is
//! not: it runs no probes and computes no analysis, and it never links Polars, so the
//! collector stays small.

pub mod catalogue;
pub mod compact;
pub mod fixtures;
pub mod human;
pub mod params;
pub mod read;
pub mod records;
pub mod schema;
pub mod stats;
pub mod store;
pub mod synth;
pub mod validate;
pub mod write;

pub use catalogue::{Category, MetricSpec};
pub use records::{HostFacts, Measurement, RunRecord, RunStatus, Sample};
pub use schema::Table;
pub use store::{Dataset, DateRange, StoreError};
