//! CPU probes.

pub mod aes_gcm;
pub mod compress;
mod corpus;
