//! One module per analysis, each a function from lazy frames or series to a typed result.

pub mod anomalies;
pub mod changepoint;
pub mod compare;
pub mod delta;
pub mod delta_stats;
pub mod evaluate;
pub mod forecast;
pub mod outliers;
pub mod rank;
pub mod recommend;
pub mod stability;
pub mod summary;
pub mod trend_stats;
pub mod trends;
