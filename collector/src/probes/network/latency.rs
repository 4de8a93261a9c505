//! `network.latency`: TCP round-trip time to the peer: one `size`-byte message out and back,
//! over and over on one connection with Nagle's algorithm off at both ends, its p50, p95 and
//! p99 over every round trip of the measured time (fio's histogram, `crate::histogram`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

use super::{PEER, RUNTIME, failed, require_peer, runtime, timing};
use crate::histogram::Histogram;
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions, parse_size};
use crate::serve::start_test;

pub struct Latency;

const PARAMS: &[ParamSpec] = &[
    PEER,
    ParamSpec { name: "size", default: "64", help: "bytes per message (1 B–64 KiB)", identity: true },
    RUNTIME,
];

fn size(params: &BTreeMap<String, String>) -> Result<usize, ProbeError> {
    let text = params.get("size").map(String::as_str).unwrap_or_default();
    parse_size(text).ok().filter(|n| (1..=64 << 10).contains(n)).ok_or_else(|| ProbeError::Param {
        name: "size".into(),
        reason: format!("`{text}` is not a size from 1 B to 64 KiB"),
    })
}

impl Probe for Latency {
    fn id(&self) -> &'static str {
        "network.latency"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        super::peer(params)?;
        size(params)?;
        runtime(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let peer = require_peer(self.id(), &ctx.params)?;
        let size = size(&ctx.params)?;
        let timing = timing(ctx, runtime(&ctx.params)?, 1);
        let params = self.params_text(ctx);
        let start = Instant::now();
        let load = LoadMeter::start_io();
        let (mut stream, _) = start_test(peer, &format!("echo {size}"), super::TIMEOUT)
            .map_err(|e| failed(peer, "connecting", e))?;
        let message = vec![0xa5u8; size];
        let mut back = vec![0u8; size];
        let mut slices = vec![Histogram::default(); timing.slices];
        let measure_from = Instant::now() + timing.warmup;
        let end = measure_from + timing.runtime;
        let mut trips = 0u64;
        loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            stream.write_all(&message).map_err(|e| failed(peer, "sending", e))?;
            stream.read_exact(&mut back).map_err(|e| failed(peer, "receiving the echo", e))?;
            let t1 = Instant::now();
            if let Some(since) = t0.checked_duration_since(measure_from) {
                let i = (since.as_nanos() / timing.slice.as_nanos()) as usize;
                if i < timing.slices {
                    slices[i].record((t1 - t0).as_nanos() as u64);
                }
            }
            trips += 1;
            if trips.is_multiple_of(256) {
                ctx.check()?;
            }
        }
        let load = load.finish();
        let mut all = Histogram::default();
        for h in &slices {
            all.merge(h);
        }
        let offset = start.elapsed().as_secs_f64() - timing.runtime.as_secs_f64();
        for (metric, p) in [("rtt_p50", 50.0), ("rtt_p95", 95.0), ("rtt_p99", 99.0)] {
            let mut reps = Repetitions::default();
            for (i, h) in slices.iter().enumerate() {
                if let Some(ns) = h.percentile_ns(p) {
                    reps.values.push(ns / 1e3);
                    reps.offsets.push(offset + (timing.slice * (i as u32 + 1)).as_secs_f64());
                }
            }
            if let Some(ns) = all.percentile_ns(p) {
                out.record_overall(self.id(), metric, &params, &reps, ns / 1e3, load);
            }
        }
        out.notes.push(format!("peer {peer}; {} round trips of {size} B", all.len()));
        (ctx.progress)(1.0);
        Ok(())
    }
}
