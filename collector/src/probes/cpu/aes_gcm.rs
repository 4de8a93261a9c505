//! `cpu.aes_gcm`: AES-256-GCM throughput, the cost of encrypting data at rest and in flight.
//!
//! Buffers are 16 KiB, as `openssl speed -evp aes-256-gcm -bytes 16384`, and input and output
//! are separate buffers, so decryption always sees valid ciphertext without a copy per round
//! skewing the figure. The `aes-gcm` crate picks AES-NI and CLMUL at run time.

use std::collections::BTreeMap;
use std::time::Instant;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};

use crate::load::LoadMeter;
use crate::measure::{parallel_throughput_mbps, repeat, slice_for, throughput_mbps};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, parse_size};
use crate::probes::threads_param;

pub struct AesGcm;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "buffer", default: "16KiB", help: "bytes per encrypt/decrypt call", identity: true },
    ParamSpec {
        name: "threads",
        default: "all",
        help: "threads for the *_mt metrics: a number or `all`",
        identity: true,
    },
];

/// One thread's working set: a cipher, a ciphertext of the buffer, and an output buffer.
struct Worker {
    cipher: Aes256Gcm,
    nonce: Nonce<Aes256Gcm>,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    tag: aes_gcm::Tag,
    out: Vec<u8>,
}

impl Worker {
    fn new(size: usize, seed: u8) -> Worker {
        let cipher = Aes256Gcm::new_from_slice(&[seed ^ 0x5a; 32]).expect("32-byte key");
        let nonce = Nonce::<Aes256Gcm>::from([seed; 12]);
        let plain: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let mut sealed = vec![0; size];
        let tag = cipher
            .encrypt_inout_detached(&nonce, b"", InOutBuf::new(&plain, &mut sealed).expect("equal lengths"))
            .expect("buffer within AES-GCM limits");
        Worker { cipher, nonce, plain, sealed, tag, out: vec![0; size] }
    }

    fn encrypt(&mut self) -> usize {
        let buf = InOutBuf::new(&self.plain, &mut self.out).expect("equal lengths");
        let tag = self.cipher.encrypt_inout_detached(&self.nonce, b"", buf).expect("encrypt");
        std::hint::black_box(tag);
        self.plain.len()
    }

    fn decrypt(&mut self) -> usize {
        let buf = InOutBuf::new(&self.sealed, &mut self.out).expect("equal lengths");
        self.cipher
            .decrypt_inout_detached(&self.nonce, b"", buf, &self.tag)
            .expect("ciphertext made by this worker authenticates");
        self.plain.len()
    }
}

impl Probe for AesGcm {
    fn id(&self) -> &'static str {
        "cpu.aes_gcm"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let (size, threads) = settings(&ctx.params)?;
        let params = self.params_text(ctx);
        let start = Instant::now();
        let per_metric = ctx.effort.budget / 4;
        let slice = slice_for(per_metric, &ctx.effort);
        let metrics: [(&str, bool, usize); 4] = [
            ("encrypt_1t", true, 1),
            ("decrypt_1t", false, 1),
            ("encrypt_mt", true, threads),
            ("decrypt_mt", false, threads),
        ];
        for (i, (metric, encrypt, n)) in metrics.into_iter().enumerate() {
            let load = LoadMeter::start();
            let reps = if n == 1 {
                let mut w = Worker::new(size, 1);
                repeat(ctx, per_metric, start, || {
                    Ok(throughput_mbps(slice, || if encrypt { w.encrypt() } else { w.decrypt() }))
                })?
            } else {
                repeat(ctx, per_metric, start, || {
                    Ok(parallel_throughput_mbps(n, slice, |t| {
                        let mut w = Worker::new(size, t as u8 + 1);
                        Box::new(move || if encrypt { w.encrypt() } else { w.decrypt() })
                    }))
                })?
            };
            out.record(self.id(), metric, &params, &reps, load.finish());
            (ctx.progress)((i + 1) as f64 / 4.0);
        }
        out.notes.push(format!("{threads} threads for the _mt metrics"));
        Ok(())
    }
}

/// The buffer size and the thread count of the `_mt` metrics.
fn settings(params: &BTreeMap<String, String>) -> Result<(usize, usize), ProbeError> {
    let buffer = params.get("buffer").map(String::as_str).unwrap_or_default();
    let size = parse_size(buffer).map_err(|reason| ProbeError::Param { name: "buffer".into(), reason })?;
    if size == 0 || size > 64 << 20 {
        return Err(ProbeError::Param {
            name: "buffer".into(),
            reason: format!("`{buffer}` is not within 1 B to 64 MiB"),
        });
    }
    Ok((size, threads_param(params)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypting_what_was_encrypted_round_trips() {
        let mut w = Worker::new(1000, 3);
        assert_eq!(w.decrypt(), 1000);
        assert_eq!(w.out, w.plain);
        assert_eq!(w.encrypt(), 1000);
        assert_eq!(w.out, w.sealed, "same key and nonce give the same ciphertext");
    }
}
