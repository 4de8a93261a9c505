//! The network probes as a user runs them: against a real `fathom-collector serve` on loopback,
//! skipped (and saying why) without a peer, and failing, not hanging, when the peer vanishes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fathom_e2e::{bin, json, run, stderr};

/// A `serve` on a free loopback port, killed on drop.
struct Peer {
    child: Child,
    addr: String,
}

impl Peer {
    fn start() -> Peer {
        let mut child = bin("fathom-collector")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve said `{line}`"))
            .to_string();
        Peer { child, addr }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROBES: &str = "network.tcp,network.latency,network.udp";

fn with_runtime(runtime: &str) -> Vec<String> {
    PROBES.split(',').flat_map(|p| ["--param".to_string(), format!("{p}.runtime={runtime}")]).collect()
}

#[test]
fn network_probes_measure_a_real_peer_on_loopback() {
    let peer = Peer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", PROBES, "--json", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--peer", &peer.addr])
        .args(with_runtime("300ms"))
        .args(["--param", "network.tcp.budget=5s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(run["status"], "ok", "{run}");
    let figure = |probe: &str, metric: &str| -> f64 {
        run["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["probe"] == probe && m["metric"] == metric)
            .unwrap_or_else(|| panic!("{probe} {metric} missing: {run}"))["value"]
            .as_f64()
            .unwrap()
    };
    // Loopback on any machine: well above 100 Mbit/s, below a terabit.
    for metric in ["send_single", "send_parallel", "recv_single", "recv_parallel"] {
        let gbps = figure("network.tcp", metric);
        assert!((0.1..1000.0).contains(&gbps), "{metric} {gbps} Gbit/s");
    }
    let (p50, p99) = (figure("network.latency", "rtt_p50"), figure("network.latency", "rtt_p99"));
    assert!(p50 > 0.5 && p50 <= p99 && p99 < 100_000.0, "rtt p50 {p50} us, p99 {p99} us");
    assert!(figure("network.udp", "loss") < 5.0, "loopback loses next to nothing");
    let jitter = figure("network.udp", "jitter");
    assert!((0.0..10.0).contains(&jitter), "jitter {jitter} ms");
    let params = run["measurements"][0]["params"].as_str().unwrap();
    assert!(params.contains(&format!("peer={}", peer.addr)), "{params}");
}

#[test]
fn without_a_peer_the_network_probes_are_skipped_and_the_run_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", "cpu.compress,network.tcp", "--json", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", "cpu.compress.budget=500ms", "--param", "cpu.compress.corpus_size=256KiB"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(run["status"], "ok", "a skip is no fault: {run}");
    let reason = run["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("network.tcp skipped: no peer") && reason.contains("network.tcp.peer="),
        "{reason}"
    );
    assert_eq!(run["skipped"][0]["probe"], "network.tcp", "{run}");
    assert!(run["measurements"].as_array().unwrap().iter().all(|m| m["probe"] == "cpu.compress"));
}

#[test]
fn a_peer_that_vanishes_mid_probe_fails_the_probe_without_hanging() {
    let mut peer = Peer::start();
    let dir = tempfile::tempdir().unwrap();
    let child = bin("fathom-collector")
        .args(["run", "--probes", "network.tcp", "--json", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", &format!("network.tcp.peer={}", peer.addr)])
        .args(["--param", "network.tcp.runtime=30s", "--param", "network.tcp.budget=200s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "the probe hung after its peer went away");
    assert!(!out.status.success(), "a run with nothing measured fails");
    let run = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(run["status"], "failed", "{run}");
    let failure = run["failures"][0]["error"].as_str().unwrap();
    assert_eq!(run["failures"][0]["probe"], "network.tcp");
    assert!(failure.contains(&peer.addr), "names the peer: {failure}");
}

#[test]
fn a_peer_that_does_not_resolve_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin("fathom-collector")
        .args(["run", "--probes", "cpu.compress,network.latency", "--dataset"])
        .arg(dir.path().join("ds"))
        .args(["--param", "network.latency.peer=no-such-host.invalid:7433"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("network.latency") && err.contains("peer") && err.contains("does not resolve"),
        "{err}"
    );
    assert!(!dir.path().join("ds").exists(), "nothing ran");
}
