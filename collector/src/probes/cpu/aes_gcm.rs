//! `cpu.aes_gcm`: AES-256-GCM throughput, the cost of encrypting data at rest and in flight.
//!
//! Buffers are 16 KiB, as `openssl speed -evp aes-256-gcm -bytes 16384`. The default
//! implementation is OpenSSL 3.6, built from source with the collector (`openssl-src`): its
//! assembly picks AES-NI with PCLMULQDQ, VAES with VPCLMULQDQ on 256-bit registers, or the
//! AVX-512 code, whichever the CPU runs best, so the figure is what the hardware can do.
//! `impl=ring` (BoringSSL's assembly, VAES on 256-bit registers at most) and `impl=rustcrypto`
//! (the pure-Rust `aes-gcm` crate, no VAES) measure those libraries instead; on a Zen 5 they
//! reach about 0.6× and 0.2× of OpenSSL 3.6 (docs/PERFORMANCE.md has the figures).
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
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::lib_ctx::LibCtx;
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
        default: "openssl",
        help: "implementation: openssl (OpenSSL 3.6, built in), ring, or rustcrypto (the aes-gcm crate)",
        identity: true,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    OpenSsl,
    Ring,
    RustCrypto,
}

const KEY: [u8; 32] = [0x5a; 32];
const NONCE: [u8; 12] = [7; 12];
/// Associated data authenticated with every buffer: 13 bytes, a TLS record header, as
/// `openssl speed -evp` uses for AEAD ciphers.
const AAD: [u8; 13] = [0xad; 13];

/// One thread's working set for one implementation. Every call sets the key and the nonce,
/// as `openssl speed -evp` does: the key schedule and GHASH key are part of each message's cost
/// (about a tenth of it at 16 KiB on a VAES core), so figures compare with the reference's.
enum Worker {
    /// An OpenSSL context given its cipher once, as `openssl speed` does (naming the cipher
    /// on every call would look it up in the provider each time, under a lock), keyed on
    /// every call.
    OpenSsl {
        ctx: CipherCtx,
        buf: Vec<u8>,
        tags: [[u8; 16]; 2],
        turn: usize,
        _lib: LibCtx,
    },
    Ring {
        buf: Vec<u8>,
        tags: [Tag; 2],
        turn: usize,
    },
    RustCrypto {
        buf: Vec<u8>,
        tags: [aes_gcm::Tag; 2],
        turn: usize,
    },
}

fn ring_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("32-byte key"))
}

fn ring_seal(buf: &mut [u8]) -> Tag {
    let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
    ring_key().seal_in_place_separate_tag(nonce, Aad::from(AAD), buf).expect("within limits")
}

fn rustcrypto_seal(buf: &mut [u8]) -> aes_gcm::Tag {
    let cipher = Aes256Gcm::new_from_slice(&KEY).expect("32-byte key");
    let nonce = Nonce::<Aes256Gcm>::from(NONCE);
    cipher.encrypt_inout_detached(&nonce, &AAD, InOutBuf::from(buf)).expect("within limits")
}

/// Encrypts `buf` in place under the key and nonce and returns the tag.
fn openssl_seal(ctx: &mut CipherCtx, buf: &mut [u8]) -> [u8; 16] {
    ctx.encrypt_init(None, Some(&KEY), Some(&NONCE)).expect("key and nonce");
    ctx.cipher_update(&AAD, None).expect("associated data");
    let len = buf.len();
    ctx.cipher_update_inplace(buf, len).expect("encrypt");
    ctx.cipher_final(&mut []).expect("encrypt");
    let mut tag = [0; 16];
    ctx.tag(&mut tag).expect("the tag");
    tag
}

impl Worker {
    /// A buffer holding the ciphertext of a plaintext, and the tags that let it be decrypted
    /// to the plaintext and then back to the ciphertext.
    fn new(implementation: Implementation, size: usize, seed: u8) -> Worker {
        let mut buf: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        // Three seals: buf holds the ciphertext C of the plaintext P, then P again (which is
        // the ciphertext of C), then C; the first two tags open C and P.
        match implementation {
            Implementation::OpenSsl => {
                let lib = LibCtx::new().expect("an OpenSSL library context");
                let mut ctx = CipherCtx::new().expect("an OpenSSL cipher context");
                let cipher = Cipher::fetch(Some(&lib), "AES-256-GCM", None)
                    .expect("AES-256-GCM in the default provider");
                ctx.encrypt_init(Some(&cipher), None, None).expect("AES-256-GCM");
                let tags = [openssl_seal(&mut ctx, &mut buf), openssl_seal(&mut ctx, &mut buf)];
                openssl_seal(&mut ctx, &mut buf);
                Worker::OpenSsl { ctx, buf, tags, turn: 0, _lib: lib }
            }
            Implementation::Ring => {
                let tags = [ring_seal(&mut buf), ring_seal(&mut buf)];
                let _ = ring_seal(&mut buf);
                Worker::Ring { buf, tags, turn: 0 }
            }
            Implementation::RustCrypto => {
                let tags = [rustcrypto_seal(&mut buf), rustcrypto_seal(&mut buf)];
                rustcrypto_seal(&mut buf);
                Worker::RustCrypto { buf, tags, turn: 0 }
            }
        }
    }

    fn encrypt(&mut self) -> usize {
        match self {
            Worker::OpenSsl { ctx, buf, .. } => {
                std::hint::black_box(openssl_seal(ctx, buf));
                buf.len()
            }
            Worker::Ring { buf, .. } => {
                let _ = std::hint::black_box(ring_seal(buf));
                buf.len()
            }
            Worker::RustCrypto { buf, .. } => {
                std::hint::black_box(rustcrypto_seal(buf));
                buf.len()
            }
        }
    }

    /// Decrypts and authenticates the buffer in place; it alternates between two states.
    fn decrypt(&mut self) -> usize {
        match self {
            Worker::OpenSsl { ctx, buf, tags, turn, .. } => {
                ctx.decrypt_init(None, Some(&KEY), Some(&NONCE)).expect("key and nonce");
                ctx.set_tag(&tags[*turn]).expect("a 16-byte tag");
                ctx.cipher_update(&AAD, None).expect("associated data");
                let len = buf.len();
                ctx.cipher_update_inplace(buf, len).expect("decrypt");
                ctx.cipher_final(&mut []).expect("ciphertext made by this worker authenticates");
                *turn ^= 1;
                buf.len()
            }
            Worker::Ring { buf, tags, turn } => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
                ring_key()
                    .open_in_place_separate_tag(nonce, Aad::from(AAD), tags[*turn], buf, 0..)
                    .expect("ciphertext made by this worker authenticates");
                *turn ^= 1;
                buf.len()
            }
            Worker::RustCrypto { buf, tags, turn } => {
                let cipher = Aes256Gcm::new_from_slice(&KEY).expect("32-byte key");
                let nonce = Nonce::<Aes256Gcm>::from(NONCE);
                cipher
                    .decrypt_inout_detached(&nonce, &AAD, InOutBuf::from(buf.as_mut_slice()), &tags[*turn])
                    .expect("ciphertext made by this worker authenticates");
                *turn ^= 1;
                buf.len()
            }
        }
    }

    #[cfg(test)]
    fn buffer(&self) -> &[u8] {
        match self {
            Worker::OpenSsl { buf, .. } | Worker::Ring { buf, .. } | Worker::RustCrypto { buf, .. } => buf,
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
        "openssl" | "" => Implementation::OpenSsl,
        "ring" => Implementation::Ring,
        "rustcrypto" => Implementation::RustCrypto,
        other => {
            return Err(ProbeError::Param {
                name: "impl".into(),
                reason: format!("`{other}` is not `openssl`, `ring` or `rustcrypto`"),
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
        for implementation in [Implementation::OpenSsl, Implementation::Ring, Implementation::RustCrypto] {
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
        let ciphertext = |i| Worker::new(i, 64, 9).buffer().to_vec();
        let ring = ciphertext(Implementation::Ring);
        assert_eq!(ring, ciphertext(Implementation::RustCrypto), "same key and nonce, same ciphertext");
        assert_eq!(ring, ciphertext(Implementation::OpenSsl), "same key and nonce, same ciphertext");
    }

    #[test]
    fn a_corrupted_buffer_fails_authentication() {
        for implementation in [Implementation::OpenSsl, Implementation::Ring, Implementation::RustCrypto] {
            let mut w = Worker::new(implementation, 100, 1);
            match &mut w {
                Worker::OpenSsl { buf, .. } | Worker::Ring { buf, .. } | Worker::RustCrypto { buf, .. } => {
                    buf[0] ^= 1
                }
            }
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.decrypt()));
            assert!(failed.is_err(), "{implementation:?} decrypted a tampered buffer");
        }
    }

    #[test]
    fn an_unknown_implementation_is_refused_by_name() {
        let params = BTreeMap::from([("buffer".into(), "16KiB".into()), ("impl".into(), "boringssl".into())]);
        let err = settings(&params).unwrap_err().to_string();
        assert!(err.contains("`impl`") && err.contains("boringssl"), "{err}");
    }
}
