//! `cpu.scaling`: the same work on 1, 2, 4 … N threads, and how close to linear it scales.
//!
//! The work unit is compressing one chunk (64 KiB by default) of the built-in corpus with zstd
//! level 1: integer-heavy, branchy, and cache-resident per thread, like the request handling
//! most servers do. Each thread compresses its own copy, so the threads share nothing but the
//! machine: what stops linear scaling is the hardware and its tenancy (SMT siblings, shared
//! caches, turbo budgets, CPU quotas, noisy neighbours), which is what the probe exists to show.
//!
//! `efficiency_nt` at k threads is throughput(k) ÷ (k × throughput(1)); 1.0 is perfect scaling.

use std::collections::BTreeMap;
use std::time::Instant;

use fathom_datasets::params::canonical;
use fathom_datasets::stats::median;

use crate::load::LoadMeter;
use crate::measure::{parallel_throughput_mbps, repeat, slice_for};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions, parse_size};
use crate::probes::cpu::corpus;

pub struct Scaling;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "max_threads",
        default: "all",
        help: "the largest thread count of the ladder 1, 2, 4 … (a number or `all`)",
        identity: true,
    },
    ParamSpec { name: "chunk", default: "64KiB", help: "bytes compressed per work unit", identity: true },
];

/// 1, 2, 4 … up to `max`, and `max` itself when it is not a power of two.
pub fn ladder(max: usize) -> Vec<usize> {
    let mut counts: Vec<usize> =
        std::iter::successors(Some(1usize), |n| n.checked_mul(2)).take_while(|&n| n <= max).collect();
    if counts.last() != Some(&max) {
        counts.push(max);
    }
    counts
}

impl Probe for Scaling {
    fn id(&self) -> &'static str {
        "cpu.scaling"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let (max_threads, chunk) = settings(&ctx.params)?;
        let params = self.params_text(ctx);
        let data = corpus::builtin(chunk);
        let counts = ladder(max_threads);
        let start = Instant::now();
        let per_step = ctx.effort.budget / counts.len() as u32;
        let slice = slice_for(per_step, &ctx.effort);

        let mut single = None;
        for (i, &threads) in counts.iter().enumerate() {
            let load = LoadMeter::start();
            let reps = repeat(ctx, per_step, start, || {
                let units_per_us = parallel_throughput_mbps(threads, slice, |_| {
                    let mut compressor = zstd::bulk::Compressor::new(1).expect("zstd level 1");
                    let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
                    let data = data.clone();
                    Box::new(move || {
                        packed.clear();
                        compressor.compress_to_buffer(&data, &mut packed).expect("buffer fits the bound");
                        1
                    })
                });
                Ok(units_per_us * 1e6)
            })?;
            let load = load.finish();
            let at_count = canonical(
                ctx.params
                    .iter()
                    .filter(|(k, _)| PARAMS.iter().any(|p| p.identity && p.name == k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([("threads", threads.to_string().as_str())])
                    .collect::<Vec<_>>(),
            );
            out.record(self.id(), "throughput_nt", &at_count, &reps, load);
            let one = *single.get_or_insert_with(|| median(&reps.values).unwrap_or(f64::NAN));
            let efficiency = Repetitions {
                values: reps.values.iter().map(|v| v / (threads as f64 * one)).collect(),
                offsets: reps.offsets.clone(),
            };
            out.record(self.id(), "efficiency_nt", &at_count, &efficiency, load);
            if threads == 1 {
                out.record(self.id(), "throughput_1t", &params, &reps, load);
            }
            if threads == max_threads {
                out.record(self.id(), "throughput_mt", &params, &reps, load);
                out.record(self.id(), "efficiency_mt", &params, &efficiency, load);
            }
            (ctx.progress)((i + 1) as f64 / counts.len() as f64);
        }
        out.notes.push(format!("threads {counts:?}; a work unit is zstd -1 of {chunk} bytes"));
        Ok(())
    }
}

fn settings(params: &BTreeMap<String, String>) -> Result<(usize, usize), ProbeError> {
    let mut threads = params.clone();
    threads.insert("threads".into(), params.get("max_threads").cloned().unwrap_or_default());
    let max_threads = crate::probes::threads_param(&threads).map_err(|e| match e {
        ProbeError::Param { reason, .. } => ProbeError::Param { name: "max_threads".into(), reason },
        other => other,
    })?;
    let text = params.get("chunk").map(String::as_str).unwrap_or_default();
    let chunk = parse_size(text).map_err(|reason| ProbeError::Param { name: "chunk".into(), reason })?;
    if !(4096..=16 << 20).contains(&chunk) {
        return Err(ProbeError::Param {
            name: "chunk".into(),
            reason: format!("`{text}` is not within 4 KiB to 16 MiB"),
        });
    }
    Ok((max_threads, chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_doubles_and_ends_at_the_maximum() {
        assert_eq!(ladder(1), vec![1]);
        assert_eq!(ladder(2), vec![1, 2]);
        assert_eq!(ladder(6), vec![1, 2, 4, 6]);
        assert_eq!(ladder(16), vec![1, 2, 4, 8, 16]);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let p = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let err = settings(&p("max_threads", "zero")).unwrap_err().to_string();
        assert!(err.contains("`max_threads`"), "{err}");
        let mut chunk = p("max_threads", "2");
        chunk.insert("chunk".into(), "1KiB".into());
        assert!(settings(&chunk).unwrap_err().to_string().contains("`chunk`"));
    }
}
