//! One module per analysis, each a function from lazy frames to a typed result.

pub mod summary;
