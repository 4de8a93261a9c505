//! One module per output format.

pub mod compare;
pub mod json;
pub mod text;
