//! CPU probes.

pub mod aes_gcm;
pub mod compress;
pub mod corpus;
pub mod flops;
pub mod scaling;
