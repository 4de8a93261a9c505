//! One module per analysis, each a function from lazy frames to a typed result.

pub mod changepoint;
pub mod compare;
pub mod rank;
pub mod recommend;
pub mod summary;
