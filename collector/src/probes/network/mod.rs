//! Network probes: TCP throughput both ways, TCP round-trip latency and UDP loss and jitter, to
//! a peer running `fathom-collector serve` (`crate::serve`).
//!
//! Without a `peer` the probes are skipped, and the run's reason says so; a peer that stops
//! answering fails the probe after the socket timeout (5 s), never hangs it. Like the storage
//! probes they are time-based (a warm-up, then `runtime` cut into slices), since a link's
//! throughput is a rate over a stretch of time, as iperf3 measures it.

pub mod latency;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::probe::{ParamSpec, ProbeContext, ProbeError, parse_duration};
use crate::serve::DEFAULT_PORT;

pub const PEER: ParamSpec = ParamSpec {
    name: "peer",
    default: "",
    help: "HOST:PORT of a `fathom-collector serve` (port 7433 if left out); without one the probe is skipped",
    identity: true,
};

pub const RUNTIME: ParamSpec = ParamSpec {
    name: "runtime",
    default: "auto",
    help: "measured time per transfer, e.g. 10s (auto: the budget shared over the probe's transfers)",
    identity: false,
};

/// How long a peer may be silent before the probe fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The peer's address; `None` when none is set.
pub fn peer(params: &BTreeMap<String, String>) -> Result<Option<SocketAddr>, ProbeError> {
    let text = params.get("peer").map(String::as_str).unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    // A bare address (IPv6 included: `::1`) takes the default port.
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, DEFAULT_PORT)));
    }
    let with_port = if text.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        text.to_string()
    } else {
        format!("{text}:{DEFAULT_PORT}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| ProbeError::Param {
            name: "peer".into(),
            reason: format!("`{text}` does not resolve: {e}"),
        })?
        .collect();
    // IPv4 first: `serve` listens on 0.0.0.0 by default, and `localhost` often resolves to ::1
    // before 127.0.0.1.
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().map(Some).ok_or_else(|| ProbeError::Param {
        name: "peer".into(),
        reason: format!("`{text}` resolves to no address"),
    })
}

/// The peer, or the skip that says how to give one.
pub fn require_peer(probe: &str, params: &BTreeMap<String, String>) -> Result<SocketAddr, ProbeError> {
    peer(params)?.ok_or_else(|| {
        ProbeError::Skipped(format!(
            "no peer: start `fathom-collector serve` on another host and pass --peer HOST:PORT (or --param {probe}.peer=HOST:PORT)"
        ))
    })
}

pub fn runtime(params: &BTreeMap<String, String>) -> Result<Option<Duration>, ProbeError> {
    match params.get("runtime").map(String::as_str).unwrap_or_default() {
        "auto" | "" => Ok(None),
        t => {
            let d =
                parse_duration(t).map_err(|reason| ProbeError::Param { name: "runtime".into(), reason })?;
            if d < Duration::from_millis(100) {
                return Err(ProbeError::Param {
                    name: "runtime".into(),
                    reason: format!("`{t}` is shorter than 100ms"),
                });
            }
            Ok(Some(d))
        }
    }
}

/// A warm-up (the suite's), the measured time and its slices, for one of `transfers`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub runtime: Duration,
    pub slice: Duration,
    pub slices: usize,
}

pub fn timing(ctx: &ProbeContext, runtime: Option<Duration>, transfers: u32) -> Timing {
    let warmup = ctx.effort.warmup;
    let runtime = runtime.unwrap_or_else(|| {
        let spare = ctx.effort.budget.saturating_sub(warmup * transfers + Duration::from_millis(300));
        (spare / transfers.max(1)).max(Duration::from_millis(200))
    });
    let slice = (runtime / 20).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let slices = ((runtime.as_nanos() / slice.as_nanos()) as usize).max(1);
    Timing { warmup, runtime: slice * slices as u32, slice, slices }
}

pub fn failed(peer: SocketAddr, what: &str, e: std::io::Error) -> ProbeError {
    let hint = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => " (no answer within 5 s)",
        _ => "",
    };
    ProbeError::Failed(format!("peer {peer}: {what}: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(peer: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("peer".to_string(), peer.to_string())])
    }

    #[test]
    fn peers_parse_with_or_without_a_port() {
        assert_eq!(peer(&params("")).unwrap(), None);
        assert_eq!(peer(&params("127.0.0.1:9000")).unwrap(), Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(
            peer(&params("127.0.0.1")).unwrap(),
            Some(format!("127.0.0.1:{DEFAULT_PORT}").parse().unwrap())
        );
        assert_eq!(peer(&params("[::1]:9000")).unwrap(), Some("[::1]:9000".parse().unwrap()));
        assert_eq!(peer(&params("::1")).unwrap(), Some(format!("[::1]:{DEFAULT_PORT}").parse().unwrap()));
        assert_eq!(peer(&params("localhost:9000")).unwrap(), Some("127.0.0.1:9000".parse().unwrap()));
        assert!(matches!(peer(&params("no such host.invalid")), Err(ProbeError::Param { .. })));
        assert!(matches!(require_peer("network.tcp", &params("")), Err(ProbeError::Skipped(_))));
    }
}
