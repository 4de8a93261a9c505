//! `cpu.aes_gcm`: AES-256-GCM throughput, the cost of encrypting data at rest and in flight.
//!
//! Buffers are 16 KiB, as `openssl speed -evp aes-256-gcm -bytes 16384`. The default
//! implementation is `ring`, whose assembly (from BoringSSL, shared with OpenSSL's lineage)
//! uses AES-NI with PCLMULQDQ, and VAES with VPCLMULQDQ where the CPU has them: it runs at the
//! speed of the `openssl speed` reference. The pure-Rust `aes-gcm` crate stays available as
//! `impl=rustcrypto`; on a Zen 4 it reaches about 70 % of that, since it has no VAES path
//! (docs/PERFORMANCE.md has the figures).
//!
//! Both directions work in place on one buffer, without a copy per call skewing the figure:
//! encryption XORs the keystream into the buffer, and decryption alternates between the
//! ciphertext of the plaintext and the ciphertext of that ciphertext (CTR mode is its own
//! inverse), each with its precomputed tag, so every call authenticates real input.

use std::collections::BTreeMap;
use std::time::Instant;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Tag, UnboundKey};

use crate::load::LoadMeter;
use crate::measure::{Shares, parallel_throughput_mbps, repeat, slice_for, throughput_mbps};
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
    ParamSpec {
        name: "impl",
        default: "ring",
        help: "implementation: ring (assembly, VAES where present) or rustcrypto (the aes-gcm crate)",
        identity: true,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    Ring,
    RustCrypto,
}

const KEY: [u8; 32] = [0x5a; 32];
const NONCE: [u8; 12] = [7; 12];

/// One thread's working set for one implementation.
enum Worker {
    Ring { key: LessSafeKey, buf: Vec<u8>, tags: [Tag; 2], turn: usize },
    RustCrypto { cipher: Aes256Gcm, buf: Vec<u8>, tags: [aes_gcm::Tag; 2], turn: usize },
}

fn ring_nonce() -> ring::aead::Nonce {
    ring::aead::Nonce::assume_unique_for_key(NONCE)
}

impl Worker {
    /// A buffer holding the ciphertext of a plaintext, and the tags that let it be decrypted
    /// to the plaintext and then back to the ciphertext.
    fn new(implementation: Implementation, size: usize, seed: u8) -> Worker {
        let mut buf: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        match implementation {
            Implementation::Ring => {
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("32-byte key"));
                let seal = |buf: &mut Vec<u8>| {
                    key.seal_in_place_separate_tag(ring_nonce(), Aad::empty(), buf).expect("within limits")
                };
                let to_plain = seal(&mut buf); // buf: ciphertext C of the plaintext P
                let to_cipher = seal(&mut buf); // buf: P again, which is the ciphertext of C
                let _ = seal(&mut buf); // buf: C
                Worker::Ring { key, buf, tags: [to_plain, to_cipher], turn: 0 }
            }
            Implementation::RustCrypto => {
                let cipher = Aes256Gcm::new_from_slice(&KEY).expect("32-byte key");
                let nonce = Nonce::<Aes256Gcm>::from(NONCE);
                let seal = |buf: &mut Vec<u8>| {
                    cipher
                        .encrypt_inout_detached(&nonce, b"", InOutBuf::from(buf.as_mut_slice()))
                        .expect("within limits")
                };
                let to_plain = seal(&mut buf);
                let to_cipher = seal(&mut buf);
                let _ = seal(&mut buf);
                Worker::RustCrypto { cipher, buf, tags: [to_plain, to_cipher], turn: 0 }
            }
        }
    }

    fn encrypt(&mut self) -> usize {
        match self {
            Worker::Ring { key, buf, .. } => {
                let tag = key.seal_in_place_separate_tag(ring_nonce(), Aad::empty(), buf).expect("encrypt");
                let _ = std::hint::black_box(tag);
                buf.len()
            }
            Worker::RustCrypto { cipher, buf, .. } => {
                let nonce = Nonce::<Aes256Gcm>::from(NONCE);
                let tag = cipher.encrypt_inout_detached(&nonce, b"", InOutBuf::from(buf.as_mut_slice()));
                std::hint::black_box(tag.expect("encrypt"));
                buf.len()
            }
        }
    }

    /// Decrypts and authenticates the buffer in place; it alternates between two states.
    fn decrypt(&mut self) -> usize {
        match self {
            Worker::Ring { key, buf, tags, turn } => {
                key.open_in_place_separate_tag(ring_nonce(), Aad::empty(), tags[*turn], buf, 0..)
                    .expect("ciphertext made by this worker authenticates");
                *turn ^= 1;
                buf.len()
            }
            Worker::RustCrypto { cipher, buf, tags, turn } => {
                let nonce = Nonce::<Aes256Gcm>::from(NONCE);
                cipher
                    .decrypt_inout_detached(&nonce, b"", InOutBuf::from(buf.as_mut_slice()), &tags[*turn])
                    .expect("ciphertext made by this worker authenticates");
                *turn ^= 1;
                buf.len()
            }
        }
    }

    #[cfg(test)]
    fn buffer(&self) -> &[u8] {
        match self {
            Worker::Ring { buf, .. } | Worker::RustCrypto { buf, .. } => buf,
        }
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
        let (size, threads, implementation) = settings(&ctx.params)?;
        let params = self.params_text(ctx);
        let start = Instant::now();
        let slice = slice_for(ctx.effort.budget / 4, &ctx.effort);
        let mut shares = Shares::new(ctx.effort.budget, 4);
        let metrics: [(&str, bool, usize); 4] = [
            ("encrypt_1t", true, 1),
            ("decrypt_1t", false, 1),
            ("encrypt_mt", true, threads),
            ("decrypt_mt", false, threads),
        ];
        for (i, (metric, encrypt, n)) in metrics.into_iter().enumerate() {
            let load = LoadMeter::start();
            let budget = shares.take(1);
            let reps = if n == 1 {
                let mut w = Worker::new(implementation, size, 1);
                repeat(ctx, budget, start, || {
                    Ok(throughput_mbps(slice, || if encrypt { w.encrypt() } else { w.decrypt() }))
                })?
            } else {
                repeat(ctx, budget, start, || {
                    Ok(parallel_throughput_mbps(n, slice, |t| {
                        let mut w = Worker::new(implementation, size, t as u8 + 1);
                        Box::new(move || if encrypt { w.encrypt() } else { w.decrypt() })
                    }))
                })?
            };
            out.record(self.id(), metric, &params, &reps, load.finish());
            (ctx.progress)((i + 1) as f64 / 4.0);
        }
        out.notes.push(format!("{threads} threads for the _mt metrics; {}", cpu_support()));
        Ok(())
    }
}

/// What the CPU offers AES-GCM, for the run's notes.
fn cpu_support() -> String {
    let flags = crate::host::cpu_flags();
    let has = |f: &str| if flags.iter().any(|x| x == f) { "yes" } else { "no" };
    format!(
        "AES-NI {}, PCLMULQDQ {}, VAES {}, VPCLMULQDQ {}",
        has("aes"),
        has("pclmulqdq"),
        has("vaes"),
        has("vpclmulqdq")
    )
}

/// The buffer size, the thread count of the `_mt` metrics and the implementation.
fn settings(params: &BTreeMap<String, String>) -> Result<(usize, usize, Implementation), ProbeError> {
    let buffer = params.get("buffer").map(String::as_str).unwrap_or_default();
    let size = parse_size(buffer).map_err(|reason| ProbeError::Param { name: "buffer".into(), reason })?;
    if size == 0 || size > 64 << 20 {
        return Err(ProbeError::Param {
            name: "buffer".into(),
            reason: format!("`{buffer}` is not within 1 B to 64 MiB"),
        });
    }
    let implementation = match params.get("impl").map(String::as_str).unwrap_or_default() {
        "ring" | "" => Implementation::Ring,
        "rustcrypto" => Implementation::RustCrypto,
        other => {
            return Err(ProbeError::Param {
                name: "impl".into(),
                reason: format!("`{other}` is not `ring` or `rustcrypto`"),
            });
        }
    };
    Ok((size, threads_param(params)?, implementation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_implementations_agree_and_decryption_authenticates_every_call() {
        for implementation in [Implementation::Ring, Implementation::RustCrypto] {
            let mut w = Worker::new(implementation, 1000, 3);
            let sealed = w.buffer().to_vec();
            let plain: Vec<u8> = (0..1000).map(|i| (i as u8).wrapping_mul(31) ^ 3).collect();
            assert_ne!(sealed, plain);
            assert_eq!(w.decrypt(), 1000);
            assert_eq!(w.buffer(), plain, "{implementation:?}");
            w.decrypt();
            assert_eq!(w.buffer(), sealed, "{implementation:?}: back to the ciphertext");
            w.decrypt();
            assert_eq!(w.buffer(), plain);
        }
        let (ring, rust) =
            (Worker::new(Implementation::Ring, 64, 9), Worker::new(Implementation::RustCrypto, 64, 9));
        assert_eq!(ring.buffer(), rust.buffer(), "same key and nonce give the same ciphertext");
    }

    #[test]
    #[should_panic(expected = "authenticates")]
    fn a_corrupted_buffer_fails_authentication() {
        let mut w = Worker::new(Implementation::Ring, 100, 1);
        if let Worker::Ring { buf, .. } = &mut w {
            buf[0] ^= 1;
        }
        w.decrypt();
    }

    #[test]
    fn an_unknown_implementation_is_refused_by_name() {
        let params = BTreeMap::from([("buffer".into(), "16KiB".into()), ("impl".into(), "openssl".into())]);
        let err = settings(&params).unwrap_err().to_string();
        assert!(err.contains("`impl`") && err.contains("openssl"), "{err}");
    }
}
