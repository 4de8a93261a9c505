//! One module per output format.

pub mod compare;
pub mod fleet;
pub mod json;
pub mod text;
