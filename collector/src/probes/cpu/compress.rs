//! `cpu.compress`: zstd (levels 1 and 3) and lz4 compress and decompress throughput and ratio,
//! one thread.
//!
//! Throughput counts uncompressed bytes per second, as `zstd -b` and `lz4 -b` do, so compress
//! and decompress figures share a scale. The whole corpus is one frame (one block for lz4), as
//! the reference tools treat a file of this size. Both codecs are the reference C libraries
//! (libzstd through `zstd`, liblz4 through `lz4`), so a difference from `zstd -b`/`lz4 -b` is
//! the measurement, not the code. The corpus is built in (logs, JSON, binary) or a file.

use std::collections::BTreeMap;
use std::time::Instant;

use fathom_datasets::params::canonical;

use crate::load::LoadMeter;
use crate::measure::{Shares, repeat, slice_for, throughput_mbps};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions, parse_size};
use crate::probes::cpu::corpus;

pub struct Compress;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "corpus",
        default: "builtin",
        help: "`builtin` or the path of a file to compress",
        identity: true,
    },
    ParamSpec { name: "corpus_size", default: "4MiB", help: "size of the built-in corpus", identity: true },
];

const LEVELS: [i32; 2] = [1, 3];
/// zstd levels, then lz4: each compress and decompress is one timed metric.
const TIMED_METRICS: u32 = (LEVELS.len() as u32 + 1) * 2;

impl Probe for Compress {
    fn id(&self) -> &'static str {
        "cpu.compress"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        corpus_source(params).map(|_| ())
    }

    /// The corpus size only identifies the built-in corpus; a file is named by its path.
    fn params_text(&self, ctx: &ProbeContext) -> String {
        match ctx.param("corpus") {
            "builtin" | "" => canonical([("corpus", "builtin"), ("corpus_size", ctx.param("corpus_size"))]),
            path => canonical([("corpus", path)]),
        }
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let data = match corpus_source(&ctx.params)? {
            Corpus::Builtin(size) => corpus::builtin(size),
            Corpus::File(path) => std::fs::read(&path).map_err(|e| ProbeError::Param {
                name: "corpus".into(),
                reason: format!("cannot read {path}: {e}"),
            })?,
        };
        let params = self.params_text(ctx);
        let start = Instant::now();
        let per_metric = ctx.effort.budget / TIMED_METRICS;
        let slice = slice_for(per_metric, &ctx.effort);
        let mut shares = Shares::new(ctx.effort.budget, TIMED_METRICS);
        for (i, level) in LEVELS.into_iter().enumerate() {
            let failed = |e: std::io::Error| ProbeError::Failed(format!("zstd level {level}: {e}"));
            let mut compressor = zstd::bulk::Compressor::new(level).map_err(failed)?;
            let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            let load = LoadMeter::start();
            let reps = repeat(ctx, shares.take(1), start, || {
                Ok(throughput_mbps(slice, || {
                    packed.clear();
                    compressor.compress_to_buffer(&data, &mut packed).expect("buffer fits the bound");
                    data.len()
                }))
            })?;
            out.record(self.id(), &format!("zstd{level}_compress"), &params, &reps, load.finish());

            let mut decompressor = zstd::bulk::Decompressor::new().map_err(failed)?;
            let mut unpacked = Vec::with_capacity(data.len());
            let load = LoadMeter::start();
            let reps = repeat(ctx, shares.take(1), start, || {
                Ok(throughput_mbps(slice, || {
                    unpacked.clear();
                    decompressor
                        .decompress_to_buffer(&packed, &mut unpacked)
                        .expect("own output decompresses");
                    unpacked.len()
                }))
            })?;
            if unpacked != data {
                return Err(ProbeError::Failed(format!("zstd level {level} did not round-trip")));
            }
            out.record(self.id(), &format!("zstd{level}_decompress"), &params, &reps, load.finish());

            let ratio =
                Repetitions::once(data.len() as f64 / packed.len() as f64, start.elapsed().as_secs_f64());
            out.record(self.id(), &format!("zstd{level}_ratio"), &params, &ratio, Default::default());
            (ctx.progress)((i + 1) as f64 / (LEVELS.len() + 1) as f64);
        }

        let failed = |e: std::io::Error| ProbeError::Failed(format!("lz4: {e}"));
        let bound = lz4::block::compress_bound(data.len()).map_err(failed)?;
        let mut packed = vec![0u8; bound];
        let mut packed_len = 0;
        let load = LoadMeter::start();
        let reps = repeat(ctx, shares.take(1), start, || {
            Ok(throughput_mbps(slice, || {
                packed_len = lz4::block::compress_to_buffer(&data, None, false, &mut packed)
                    .expect("buffer fits the bound");
                data.len()
            }))
        })?;
        out.record(self.id(), "lz4_compress", &params, &reps, load.finish());
        let packed = &packed[..packed_len];
        let mut unpacked = vec![0u8; data.len()];
        let load = LoadMeter::start();
        let reps = repeat(ctx, shares.take(1), start, || {
            Ok(throughput_mbps(slice, || {
                lz4::block::decompress_to_buffer(packed, Some(data.len() as i32), &mut unpacked)
                    .expect("own output decompresses")
            }))
        })?;
        if unpacked != data {
            return Err(ProbeError::Failed("lz4 did not round-trip".into()));
        }
        out.record(self.id(), "lz4_decompress", &params, &reps, load.finish());
        let ratio = Repetitions::once(data.len() as f64 / packed.len() as f64, start.elapsed().as_secs_f64());
        out.record(self.id(), "lz4_ratio", &params, &ratio, Default::default());
        (ctx.progress)(1.0);
        out.notes.push(format!("corpus of {} bytes", data.len()));
        Ok(())
    }
}

enum Corpus {
    Builtin(usize),
    File(String),
}

const MAX_CORPUS: u64 = 1 << 30;

fn corpus_source(params: &BTreeMap<String, String>) -> Result<Corpus, ProbeError> {
    let param = |name: &str, reason: String| ProbeError::Param { name: name.into(), reason };
    match params.get("corpus").map(String::as_str).unwrap_or_default() {
        "builtin" | "" => {
            let text = params.get("corpus_size").map(String::as_str).unwrap_or_default();
            let size = parse_size(text).map_err(|r| param("corpus_size", r))?;
            if !(4096..=MAX_CORPUS as usize).contains(&size) {
                return Err(param("corpus_size", format!("`{text}` is not within 4 KiB to 1 GiB")));
            }
            Ok(Corpus::Builtin(size))
        }
        path => {
            // A regular file of bounded size: a device or a FIFO would never end.
            let meta =
                std::fs::metadata(path).map_err(|e| param("corpus", format!("cannot read {path}: {e}")))?;
            if !meta.is_file() || meta.len() == 0 || meta.len() > MAX_CORPUS {
                return Err(param("corpus", format!("{path} is not a regular file of 1 byte to 1 GiB")));
            }
            Ok(Corpus::File(path.to_string()))
        }
    }
}
