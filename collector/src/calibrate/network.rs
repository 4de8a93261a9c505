//! The network probes against iperf3 on loopback: calibration starts `iperf3 -s` and an
//! in-process `serve` on free local ports, and alternates the probes (peer: the `serve`) with
//! `iperf3 -c` (the same duration, stream count, direction, UDP rate and datagram size).
//!
//! iperf3 3.12's fields: `end.sum_received.bits_per_second` (the receiver's count, summed over
//! `-P` streams; with `-R` still the receiving side), and for UDP `end.sum.jitter_ms` and
//! `end.sum.lost_percent`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use super::storage::WITHIN_15;
use super::{Check, INFO, Parse, Reference, Setup};
use crate::probe::CancelToken;
use crate::serve::{ServeOptions, Server};

/// Streams of the `_parallel` metrics, and iperf3's `-P`.
pub const STREAMS: usize = 4;
pub const UDP_RATE: &str = "100M";
pub const UDP_SIZE: &str = "1400";

/// The servers, stopped on drop.
pub struct Peers {
    pub serve: SocketAddr,
    iperf3: Vec<Child>,
    stop: CancelToken,
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop.cancel();
        for child in &mut self.iperf3 {
            crate::load::forget_helper(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A local port free now (the kernel may give it away again, rarely).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Starts `serve` in this process and one `iperf3 -s` per port (where installed) on loopback;
/// their CPU counts as the calibration's own, not as foreign load.
pub fn start(iperf3_ports: &[u16]) -> Result<Peers> {
    let options =
        ServeOptions { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), ..ServeOptions::default() };
    let server = Server::bind(options).context("starting the serve peer on loopback")?;
    let serve = server.local_addr()?;
    let stop = CancelToken::default();
    let s = stop.clone();
    std::thread::spawn(move || server.run(&s));
    let iperf3: Vec<Child> = iperf3_ports
        .iter()
        .filter_map(|port| {
            Command::new("iperf3")
                .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for child in &iperf3 {
        crate::load::count_as_own(child.id());
    }
    // iperf3 listens within milliseconds; give it a moment before the first client.
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(Peers { serve, iperf3, stop })
}

/// One port per stream: iperf3 3.12 runs all of a client's `-P` streams on one thread, so on
/// a fast link (loopback) `-P 4` measures one core; its documented remedy is one process per
/// stream, each with its own server, which the parallel references do.
pub fn iperf3_ports() -> Result<Vec<u16>> {
    (0..STREAMS).map(|_| free_port()).collect()
}

pub fn checks(setup: &Setup) -> Vec<Check> {
    let secs = setup.reference_seconds.to_string();
    let client = |extra: &[&str]| -> Vec<String> {
        let port = setup.iperf3_ports[0].to_string();
        let mut argv: Vec<String> = ["iperf3", "-c", "127.0.0.1", "-p", &port, "-t", &secs, "-J"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    };
    // One iperf3 client per stream and server, together, each writing its JSON to its own
    // file (four writers on one pipe can interleave), printed after; the figure is their sum.
    let parallel = |reverse: &str| -> Vec<String> {
        let ports: Vec<String> = setup.iperf3_ports.iter().map(|p| p.to_string()).collect();
        let log = setup.scratch.join("iperf3");
        let log = log.display();
        let script = format!(
            "rm -f {log}-*.json; for p in {}; do iperf3 -c 127.0.0.1 -p $p -t {secs} -J {reverse} --logfile {log}-$p.json & done; wait; cat {log}-*.json",
            ports.join(" ")
        );
        vec!["sh".into(), "-c".into(), script]
    };
    let check = |probe, metric, argv: Vec<String>, parse| Check {
        probe,
        metric,
        reference: Reference { argv, parse },
        target: WITHIN_15,
        note: "",
    };
    let one = Parse::Json("/end/sum_received/bits_per_second", 1e-9);
    let sum = Parse::JsonSum("/end/sum_received/bits_per_second", 1e-9);
    let udp = client(&["-u", "-b", UDP_RATE, "-l", UDP_SIZE]);
    vec![
        check("network.tcp", "send_single", client(&[]), one),
        check("network.tcp", "send_parallel", parallel(""), sum),
        check("network.tcp", "recv_single", client(&["-R"]), one),
        check("network.tcp", "recv_parallel", parallel("-R"), sum),
        Check {
            probe: "network.udp",
            metric: "jitter",
            reference: Reference { argv: udp.clone(), parse: Parse::Json("/end/sum/jitter_ms", 1.0) },
            target: INFO,
            note: "the same unit and estimator as iperf3 (RFC 3550, ms); on loopback both are microseconds of noise",
        },
        Check {
            probe: "network.udp",
            metric: "loss",
            reference: Reference { argv: udp, parse: Parse::Json("/end/sum/lost_percent", 1.0) },
            target: INFO,
            note: "percent of datagrams, as iperf3's lost_percent",
        },
    ]
}
