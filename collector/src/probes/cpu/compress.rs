//! `cpu.compress`: zstd compress and decompress throughput and ratio, one thread.
//!
//! Throughput counts uncompressed bytes per second, as `zstd -b` does, so compress and
//! decompress figures share a scale. The corpus is built in (logs, JSON, binary) or a file.

use std::time::Instant;

use crate::load::LoadMeter;
use crate::measure::{repeat, slice_for, throughput_mbps};
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

impl Probe for Compress {
    fn id(&self) -> &'static str {
        "cpu.compress"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let data = load_corpus(ctx)?;
        let params = self.params_text(ctx);
        let start = Instant::now();
        let per_metric = ctx.effort.budget / (LEVELS.len() as u32 * 2);
        let slice = slice_for(per_metric, &ctx.effort);
        let mut out = ProbeOutput::default();
        for (i, level) in LEVELS.into_iter().enumerate() {
            let failed = |e: std::io::Error| ProbeError::Failed(format!("zstd level {level}: {e}"));
            let mut compressor = zstd::bulk::Compressor::new(level).map_err(failed)?;
            let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            let load = LoadMeter::start();
            let reps = repeat(ctx, per_metric, start, || {
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
            let reps = repeat(ctx, per_metric, start, || {
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

            let ratio = Repetitions {
                values: vec![data.len() as f64 / packed.len() as f64],
                offsets: vec![start.elapsed().as_secs_f64()],
            };
            out.record(self.id(), &format!("zstd{level}_ratio"), &params, &ratio, Default::default());
            (ctx.progress)((i + 1) as f64 / LEVELS.len() as f64);
        }
        out.notes.push(format!("corpus of {} bytes", data.len()));
        Ok(out)
    }
}

fn load_corpus(ctx: &ProbeContext) -> Result<Vec<u8>, ProbeError> {
    let param = |name: &str, reason: String| ProbeError::Param { name: name.into(), reason };
    let data = match ctx.param("corpus") {
        "builtin" | "" => {
            let size = parse_size(ctx.param("corpus_size")).map_err(|r| param("corpus_size", r))?;
            if !(4096..=1 << 30).contains(&size) {
                return Err(param("corpus_size", "must be 4 KiB to 1 GiB".into()));
            }
            corpus::builtin(size)
        }
        path => std::fs::read(path).map_err(|e| param("corpus", format!("cannot read {path}: {e}")))?,
    };
    if data.is_empty() {
        return Err(param("corpus", "the corpus is empty".into()));
    }
    Ok(data)
}
