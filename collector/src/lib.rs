//! Fathom's collector: runs probe suites on a host and appends the results to the dataset.
//!
//! What it is for: probes (one module each, behind one trait), suites, host facts, and
//! delivery of a run into the Parquet dataset. What it is not: it analyses nothing and never
//! links Polars, so it stays a small binary to install on every host.

pub mod affinity;
pub mod calibrate;
pub mod daemon;
pub mod histogram;
pub mod host;
pub mod load;
pub mod measure;
pub mod output;
pub mod params;
pub mod probe;
pub mod probes;
pub mod runner;
pub mod schedule;
pub mod serve;
pub mod spool;
pub mod suite;
