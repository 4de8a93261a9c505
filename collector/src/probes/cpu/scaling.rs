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

use crate::load::LoadMeter;
use crate::measure::{parallel_throughput_mbps, repeat_together, slice_for};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, parse_size};
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
        // Each repetition runs the whole ladder, 1 thread first, so slow drift of a shared host
        // (a neighbour on a sibling core, a frequency change) hits every thread count alike and
        // efficiency compares figures taken seconds, not a whole probe, apart.
        let slice = slice_for(ctx.effort.budget / 2, &ctx.effort) / counts.len() as u32;
        let rate = |threads: usize| {
            // One thread per CPU (the harness pins them): the scheduler must not stack two on
            // one CPU, or move the single thread between CPUs mid-measurement.
            let units_per_us = parallel_throughput_mbps(threads, slice, |_| {
                let mut compressor = zstd::bulk::Compressor::new(1).expect("zstd level 1");
                let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
                let data = data.clone();
                // Once before timing: zstd allocates and faults in its tables on first use.
                compressor.compress_to_buffer(&data, &mut packed).expect("buffer fits the bound");
                Box::new(move || {
                    packed.clear();
                    compressor.compress_to_buffer(&data, &mut packed).expect("buffer fits the bound");
                    1
                })
            });
            units_per_us * 1e6
        };
        let load = LoadMeter::start();
        // Every figure of the ladder must be steady, the one-thread throughput included.
        let mut series = repeat_together(ctx, ctx.effort.budget, start, 2 * counts.len(), |figures| {
            let rates: Vec<f64> = counts.iter().map(|&threads| rate(threads)).collect();
            figures.extend(&rates);
            figures.extend(counts.iter().zip(&rates).map(|(&threads, r)| r / (threads as f64 * rates[0])));
            (ctx.progress)((start.elapsed().as_secs_f64() / ctx.effort.budget.as_secs_f64()).min(1.0));
            Ok(())
        })?;
        let load = load.finish();
        let efficiency = series.split_off(counts.len());
        let throughput = series;
        for (i, &threads) in counts.iter().enumerate() {
            let at_count = canonical(
                ctx.params
                    .iter()
                    .filter(|(k, _)| PARAMS.iter().any(|p| p.identity && p.name == k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([("threads", threads.to_string().as_str())])
                    .collect::<Vec<_>>(),
            );
            let (tput, eff) = (&throughput[i], &efficiency[i]);
            out.record(self.id(), "throughput_nt", &at_count, tput, load);
            out.record(self.id(), "efficiency_nt", &at_count, eff, load);
            if threads == 1 {
                out.record(self.id(), "throughput_1t", &params, tput, load);
            }
            if threads == max_threads {
                out.record(self.id(), "throughput_mt", &params, tput, load);
                out.record(self.id(), "efficiency_mt", &params, eff, load);
            }
        }
        out.notes.push(format!("threads {counts:?}; a work unit is zstd -1 of {chunk} bytes"));
        Ok(())
    }
}

fn settings(params: &BTreeMap<String, String>) -> Result<(usize, usize), ProbeError> {
    let max_threads = crate::probes::thread_count(params, "max_threads")?;
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
