//! `network.udp`: UDP datagrams to the peer at a target rate: the share lost, in percent, and
//! the interarrival jitter in milliseconds, both as iperf3 reports them (`lost_percent`,
//! `jitter_ms`): loss from sequence numbers, jitter with RFC 3550's estimator over the
//! datagrams' transit times (computed by the peer, which receives them).
//!
//! The sender paces datagrams on a fixed schedule (a datagram every size × 8 / rate seconds),
//! sleeping between them and spinning the last 200 µs, so bursts do not turn into loss that
//! the link did not cause.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{PEER, RUNTIME, failed, require_peer, runtime, timing};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions, parse_size};
use crate::serve::{UDP_HEADER, read_reply, start_test};

pub struct Udp;

const PARAMS: &[ParamSpec] = &[
    PEER,
    ParamSpec {
        name: "rate",
        default: "100M",
        help: "target rate in bits/s (K, M, G are 10³, 10⁶, 10⁹, as iperf3's -b)",
        identity: true,
    },
    ParamSpec {
        name: "size",
        default: "1400",
        help: "bytes per datagram (16 B–63 KiB), as iperf3's -l",
        identity: true,
    },
    RUNTIME,
];

fn rate(params: &BTreeMap<String, String>) -> Result<f64, ProbeError> {
    let text = params.get("rate").map(String::as_str).unwrap_or_default().trim();
    let (num, mult) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1e3),
        Some((i, 'M' | 'm')) => (&text[..i], 1e6),
        Some((i, 'G' | 'g')) => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mult).filter(|r| (1e3..=1e11).contains(r)).ok_or_else(|| {
        ProbeError::Param {
            name: "rate".into(),
            reason: format!("`{text}` is not a rate from 1K to 100G bits/s"),
        }
    })
}

fn size(params: &BTreeMap<String, String>) -> Result<usize, ProbeError> {
    let text = params.get("size").map(String::as_str).unwrap_or_default();
    parse_size(text).ok().filter(|n| (UDP_HEADER..=63 << 10).contains(n)).ok_or_else(|| ProbeError::Param {
        name: "size".into(),
        reason: format!("`{text}` is not a size from {UDP_HEADER} B to 63 KiB"),
    })
}

impl Probe for Udp {
    fn id(&self) -> &'static str {
        "network.udp"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        super::peer(params)?;
        rate(params)?;
        size(params)?;
        runtime(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let peer = require_peer(self.id(), &ctx.params)?;
        let (rate, size) = (rate(&ctx.params)?, size(&ctx.params)?);
        let timing = timing(ctx, runtime(&ctx.params)?, 1);
        let params = self.params_text(ctx);
        let start = Instant::now();
        let load = LoadMeter::start_io();
        let (mut control, port) =
            start_test(peer, "udp", super::TIMEOUT).map_err(|e| failed(peer, "connecting", e))?;
        let port: u16 = port
            .parse()
            .map_err(|_| ProbeError::Failed(format!("peer {peer} gave no UDP port: `{port}`")))?;
        let local = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(local).map_err(|e| failed(peer, "binding a UDP socket", e))?;
        socket.connect(SocketAddr::new(peer.ip(), port)).map_err(|e| failed(peer, "UDP connect", e))?;
        let interval = Duration::from_secs_f64(size as f64 * 8.0 / rate);
        let mut datagram = vec![0u8; size];
        let clock = Instant::now();
        let end = clock + timing.runtime;
        let mut next = clock;
        let mut sent = 0u64;
        while next < end {
            ctx.check()?;
            let wait = next.saturating_duration_since(Instant::now());
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait - Duration::from_micros(200));
            }
            while Instant::now() < next {
                std::hint::spin_loop();
            }
            datagram[0..8].copy_from_slice(&sent.to_be_bytes());
            datagram[8..16].copy_from_slice(&(clock.elapsed().as_nanos() as u64).to_be_bytes());
            // A full socket buffer is loss the sender caused: wait and retry, as iperf3 does.
            match socket.send(&datagram) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(failed(peer, "sending datagrams", e)),
            }
            next += interval;
        }
        control
            .write_all(format!("END {sent}\n").as_bytes())
            .map_err(|e| failed(peer, "ending the test", e))?;
        let stats = read_reply(&control).map_err(|e| failed(peer, "reading its counts", e))?;
        let words: Vec<&str> = stats.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<f64>().ok());
        let (Some("STATS"), Some(received), Some(lost), Some(jitter_ns)) =
            (words.first().copied(), number(1), number(2), number(4))
        else {
            return Err(ProbeError::Failed(format!("peer {peer} answered `{stats}` to END")));
        };
        let load = load.finish();
        let at = start.elapsed().as_secs_f64();
        let loss_pct = if sent > 0 { lost / sent as f64 * 100.0 } else { 0.0 };
        out.record(self.id(), "loss", &params, &Repetitions::once(loss_pct, at), load);
        out.record(self.id(), "jitter", &params, &Repetitions::once(jitter_ns / 1e6, at), load);
        out.notes.push(format!(
            "peer {peer}; {sent} datagrams of {size} B sent at {:.0} Mbit/s, {received} received",
            rate / 1e6
        ));
        (ctx.progress)(1.0);
        Ok(())
    }
}
