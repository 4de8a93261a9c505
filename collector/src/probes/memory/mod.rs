//! Memory probes.

pub mod bandwidth;
pub mod latency;
mod system;
