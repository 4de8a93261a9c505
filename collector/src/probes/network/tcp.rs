//! `network.tcp`: TCP throughput to the peer and from it, on one stream and on `streams` at
//! once, in Gbit/s (10⁹ bits of payload per second), as `iperf3 -c PEER [-P N] [-R]` measures it.
//!
//! Each transfer warms up (slow start, window growth), then counts the bytes each slice of the
//! measured time moved, all streams together: the figure is the median slice. Sending counts
//! what the sockets accepted, checked against what the peer says it received.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::Instant;

use super::{PEER, RUNTIME, TIMEOUT, Timing, failed, require_peer, runtime, timing};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions};
use crate::serve::{read_reply, start_test};

pub struct Tcp;

const PARAMS: &[ParamSpec] = &[
    PEER,
    ParamSpec {
        name: "streams",
        default: "4",
        help: "streams of the *_parallel metrics (2–128)",
        identity: true,
    },
    RUNTIME,
];

const BUFFER: usize = 128 << 10;

fn streams(params: &BTreeMap<String, String>) -> Result<usize, ProbeError> {
    let text = params.get("streams").map(String::as_str).unwrap_or_default();
    text.parse().ok().filter(|n| (2..=64).contains(n)).ok_or_else(|| ProbeError::Param {
        name: "streams".into(),
        reason: format!("`{text}` is not a whole number from 2 to 64"),
    })
}

impl Probe for Tcp {
    fn id(&self) -> &'static str {
        "network.tcp"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        super::peer(params)?;
        streams(params)?;
        runtime(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let peer = require_peer(self.id(), &ctx.params)?;
        let n = streams(&ctx.params)?;
        let timing = timing(ctx, runtime(&ctx.params)?, 4);
        let params = self.params_text(ctx);
        let start = Instant::now();
        for (i, (metric, send, k)) in [
            ("send_single", true, 1),
            ("send_parallel", true, n),
            ("recv_single", false, 1),
            ("recv_parallel", false, n),
        ]
        .into_iter()
        .enumerate()
        {
            ctx.check()?;
            let load = LoadMeter::start_io();
            let offset = start.elapsed().as_secs_f64();
            let bytes = transfer(ctx, peer, k, send, &timing)?;
            let mut reps = Repetitions::default();
            for (s, b) in bytes.iter().enumerate() {
                reps.values.push(*b as f64 * 8.0 / timing.slice.as_secs_f64() / 1e9);
                reps.offsets.push(offset + (timing.warmup + timing.slice * (s as u32 + 1)).as_secs_f64());
            }
            out.record(self.id(), metric, &params, &reps, load.finish());
            (ctx.progress)((i + 1) as f64 / 4.0);
        }
        out.notes.push(format!("peer {peer}; {n} streams for the _parallel metrics"));
        Ok(())
    }
}

/// Bytes moved per slice of the measured time, all `streams` together.
fn transfer(
    ctx: &ProbeContext,
    peer: SocketAddr,
    streams: usize,
    send: bool,
    timing: &Timing,
) -> Result<Vec<u64>, ProbeError> {
    let total = timing.warmup + timing.runtime;
    let test =
        if send { "sink".to_string() } else { format!("source {:.3}", (total + TIMEOUT).as_secs_f64()) };
    let connections = (0..streams)
        .map(|_| start_test(peer, &test, TIMEOUT).map(|(s, _)| s))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| failed(peer, "connecting", e))?;
    let barrier = Barrier::new(streams);
    let results: Vec<Result<Vec<u64>, ProbeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .into_iter()
            .map(|mut stream| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut slices = vec![0u64; timing.slices];
                    let mut buf = vec![0x5au8; BUFFER];
                    barrier.wait();
                    let start = Instant::now();
                    let measure_from = start + timing.warmup;
                    let end = measure_from + timing.runtime;
                    let mut sent = 0u64;
                    loop {
                        let now = Instant::now();
                        if now >= end || ctx.cancel.is_cancelled() {
                            break;
                        }
                        let n = if send {
                            stream.write(&buf).map_err(|e| failed(peer, "sending", e))?
                        } else {
                            let n = stream.read(&mut buf).map_err(|e| failed(peer, "receiving", e))?;
                            if n == 0 {
                                return Err(ProbeError::Failed(format!(
                                    "peer {peer} closed the connection after {:.1} s",
                                    start.elapsed().as_secs_f64()
                                )));
                            }
                            n
                        };
                        sent += n as u64;
                        let done = Instant::now();
                        if let Some(since) = done.checked_duration_since(measure_from) {
                            let i = (since.as_nanos() / timing.slice.as_nanos()) as usize;
                            if i < timing.slices {
                                slices[i] += n as u64;
                            }
                        }
                    }
                    if send {
                        // What the peer received must be what the socket accepted.
                        stream.shutdown(std::net::Shutdown::Write).map_err(|e| failed(peer, "closing", e))?;
                        let done = read_reply(&stream).map_err(|e| failed(peer, "reading its count", e))?;
                        let received: u64 =
                            done.split_whitespace().nth(1).and_then(|b| b.parse().ok()).unwrap_or(0);
                        if received != sent && !ctx.cancel.is_cancelled() {
                            return Err(ProbeError::Failed(format!(
                                "peer {peer} received {received} bytes of the {sent} sent"
                            )));
                        }
                    }
                    Ok(slices)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    ctx.check()?;
    let mut total = vec![0u64; timing.slices];
    for r in results {
        for (t, b) in total.iter_mut().zip(r?) {
            *t += b;
        }
    }
    Ok(total)
}
