//! Fathom's analyzer: reads the Parquet dataset with Polars and turns measurements into
//! decisions.
//!
//! What it is for: loading (partition pruning, skipping unreadable files), one module per
//! analysis, one per report format. What it is not: it never runs a probe.

pub mod analyses;
pub mod history;
pub mod load;
pub mod nightly;
pub mod report;
pub mod runs;
pub mod selector;
pub mod series;
pub mod series_input;
