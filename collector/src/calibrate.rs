//! `fathom-collector calibrate`: each probe against the reference tool that measures the same
//! thing, run back to back on this machine, so a probe that reports half of what the hardware
//! can do is caught before it misleads a comparison.
//!
//! Method: rounds of A B A B … (the probe, then its references) so slow drift of a shared
//! machine hits both sides alike; the median of each side, and the median of the rounds'
//! ratios probe ÷ reference (see [`paired_ratio`]). Every
//! run records the CPU other processes used meanwhile (from `/proc/stat`), and a run disturbed
//! by more than [`DISTURBED_THRESHOLD`] is run again (twice at most) and flagged if it stays so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fathom_datasets::stats::median;
use serde::Serialize;

use crate::load::{DISTURBED_THRESHOLD, LoadMeter};
use crate::params::Overrides;
use crate::probe::{CancelToken, Effort};
use crate::probes::{self, cpu::flops::Isa};
use crate::runner::{RunSpec, Silent, run_probes};

mod network;
mod storage;

/// What a probe's figure must be, as a fraction of the reference's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Target {
    pub low: f64,
    /// `None` where beating the reference is no fault (a peak can only be approached).
    pub high: Option<f64>,
    /// Shown beside the reference, not judged (UDP loss and jitter on loopback, where both
    /// are near zero and a ratio means nothing).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub info: bool,
}

/// Figures printed side by side without a verdict.
pub const INFO: Target = Target { low: 0.0, high: None, info: true };

const WITHIN_10: Target = Target { low: 0.9, high: Some(1.1), info: false };
const AT_LEAST_90: Target = Target { low: 0.9, high: None, info: false };

/// One figure of a reference tool's output.
#[derive(Debug, Clone)]
pub struct Reference {
    pub argv: Vec<String>,
    /// Turns the tool's output (stdout and stderr together) into the figure, in the probe's unit.
    pub parse: Parse,
}

/// How a figure is read from a reference tool's output.
#[derive(Debug, Clone, Copy)]
pub enum Parse {
    Text(fn(&str) -> Option<f64>),
    /// The number at this JSON pointer times the factor, from the first `{` of the output on
    /// (fio prints warnings before its JSON).
    Json(&'static str, f64),
    /// The same summed over every JSON document in the output (parallel iperf3 clients).
    JsonSum(&'static str, f64),
}

impl Parse {
    pub fn figure(&self, output: &str) -> Option<f64> {
        match *self {
            Parse::Text(parse) => parse(output),
            Parse::Json(pointer, factor) => {
                let json = &output[output.find('{')?..];
                let mut stream = serde_json::Deserializer::from_str(json).into_iter::<serde_json::Value>();
                let value = stream.next()?.ok()?;
                Some(value.pointer(pointer)?.as_f64()? * factor)
            }
            Parse::JsonSum(pointer, factor) => {
                let json = &output[output.find('{')?..];
                let docs: Vec<serde_json::Value> =
                    serde_json::Deserializer::from_str(json).into_iter().collect::<Result<_, _>>().ok()?;
                let values: Option<Vec<f64>> = docs.iter().map(|d| d.pointer(pointer)?.as_f64()).collect();
                let values = values.filter(|v| !v.is_empty())?;
                Some(values.iter().sum::<f64>() * factor)
            }
        }
    }
}

/// A probe metric and the reference figure it is judged against.
#[derive(Debug, Clone)]
pub struct Check {
    pub probe: &'static str,
    pub metric: &'static str,
    pub reference: Reference,
    pub target: Target,
    pub note: &'static str,
}

/// The figure of one run with the foreign CPU share while it ran.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    pub value: f64,
    pub foreign_cpu: Option<f64>,
    pub disturbed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub probe: String,
    pub metric: String,
    pub unit: String,
    pub probe_value: Option<f64>,
    pub reference_value: Option<f64>,
    pub ratio: Option<f64>,
    pub target: Target,
    /// `ok`, `low`, `high` or `skipped`.
    pub verdict: String,
    pub reference_command: String,
    pub probe_runs: Vec<Figure>,
    pub reference_runs: Vec<Figure>,
    pub note: String,
}

/// The machine-dependent settings the checks are built from.
pub struct Setup {
    pub threads: usize,
    pub corpus: PathBuf,
    /// The compiled C pointer chase, where a C compiler was found.
    pub pointer_chase: Option<PathBuf>,
    /// The compiled libzstd loop, where libzstd's header was found too.
    pub zstd_loop: Option<PathBuf>,
    /// A second `openssl` command for the AES-GCM checks (a current release, built by
    /// `scripts/reference-openssl`), beside the one on `PATH`.
    pub current_openssl: Option<PathBuf>,
    /// A second `zstd_loop`, built against the libzstd release the probe links
    /// (`scripts/reference-libzstd`), beside the one over the system's libzstd.
    pub linked_zstd_loop: Option<PathBuf>,
    pub bandwidth_bytes: usize,
    pub latency_bytes: usize,
    pub reference_seconds: u32,
    /// Where the storage probes and fio put their test files (the scratch folder).
    pub scratch: PathBuf,
    /// The storage probes' and fio's warm-up, the suite's.
    pub storage_warmup_ms: u64,
    /// Where the `iperf3 -s` servers listen on loopback during calibration, one per stream.
    pub iperf3_ports: Vec<u16>,
}

/// Last number before `unit` on the last line that has it, e.g. `MFlops/s:  57298.18`.
fn labelled(output: &str, label: &str) -> Option<f64> {
    output.lines().rev().find_map(|l| l.split_once(label).and_then(|(_, rest)| rest.trim().parse().ok()))
}

/// `openssl speed` ends with a table whose last column is thousands of bytes per second.
fn openssl_mbps(output: &str) -> Option<f64> {
    let line =
        output.lines().rev().find(|l| l.trim_start().starts_with("AES-256-GCM") || l.starts_with("evp"))?;
    let last = line.split_whitespace().last()?.strip_suffix('k')?;
    Some(last.parse::<f64>().ok()? * 1e3 / 1e6)
}

/// `zstd -b` and `lz4 -b` print `… ,  410.5 MB/s, 1231.8 MB/s` (compress, decompress; 10⁶ B).
fn bench_speeds(output: &str) -> Option<(f64, f64)> {
    let line = output.split(['\r', '\n']).rev().find(|l| l.matches("MB/s").count() >= 2)?;
    let mut speeds =
        line.split("MB/s").filter_map(|part| part.rsplit([',', ' ']).find(|t| !t.is_empty())?.parse().ok());
    Some((speeds.next()?, speeds.next()?))
}

fn compress_speed(output: &str) -> Option<f64> {
    bench_speeds(output).map(|s| s.0)
}
fn decompress_speed(output: &str) -> Option<f64> {
    bench_speeds(output).map(|s| s.1)
}
fn likwid_gflops(output: &str) -> Option<f64> {
    labelled(output, "MFlops/s:").map(|m| m / 1e3)
}
fn likwid_gbps(output: &str) -> Option<f64> {
    labelled(output, "MByte/s:").map(|m| m / 1e3)
}
fn loop_compress(output: &str) -> Option<f64> {
    labelled(output, "zstd_compress:")
}
fn loop_decompress(output: &str) -> Option<f64> {
    labelled(output, "zstd_decompress:")
}
fn single_number(output: &str) -> Option<f64> {
    output.trim().parse().ok()
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Every check this machine can run, in probe order.
pub fn checks(setup: &Setup) -> Vec<Check> {
    let secs = setup.reference_seconds.to_string();
    let corpus = setup.corpus.display().to_string();
    let openssl_at = |program: &str, decrypt: bool, threads: usize| {
        let mut a = argv(&[program, "speed"]);
        if decrypt {
            a.push("-decrypt".into());
        }
        if threads > 1 {
            a.extend(argv(&["-multi", &threads.to_string()]));
        }
        a.extend(argv(&["-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", &secs]));
        Reference { argv: a, parse: Parse::Text(openssl_mbps) }
    };
    let openssl = |decrypt: bool, threads: usize| openssl_at("openssl", decrypt, threads);
    let bench = |tool: &str, level: &str, parse: fn(&str) -> Option<f64>| Reference {
        argv: argv(&[tool, &format!("-b{level}"), &format!("-i{secs}"), &corpus]),
        parse: Parse::Text(parse),
    };
    let (dp, sp) = match Isa::best() {
        Isa::Avx512 => ("peakflops_avx512_fma", "peakflops_sp_avx512_fma"),
        Isa::Avx2Fma => ("peakflops_avx_fma", "peakflops_sp_avx_fma"),
        _ => ("peakflops_sse", "peakflops_sp_sse"),
    };
    let vector = match Isa::best() {
        Isa::Avx512 => "_avx512",
        Isa::Avx2Fma => "_avx",
        _ => "_sse",
    };
    let likwid = |kernel: &str, bytes: usize, threads: usize, parse: fn(&str) -> Option<f64>| Reference {
        argv: argv(&["likwid-bench", "-t", kernel, "-W", &format!("N:{}kB:{threads}", bytes / 1000)]),
        parse: Parse::Text(parse),
    };
    let l1 = 32_000;
    let bw = setup.bandwidth_bytes;
    let n = setup.threads;
    let mut checks = vec![
        Check {
            probe: "cpu.flops",
            metric: "gflops_f64_1t",
            reference: likwid(dp, l1, 1, likwid_gflops),
            target: AT_LEAST_90,
            note: "",
        },
        Check {
            probe: "cpu.flops",
            metric: "gflops_f32_1t",
            reference: likwid(sp, l1, 1, likwid_gflops),
            target: AT_LEAST_90,
            note: "",
        },
        Check {
            probe: "cpu.flops",
            metric: "gflops_f64_mt",
            reference: likwid(dp, l1 * n, n, likwid_gflops),
            target: AT_LEAST_90,
            note: "",
        },
        Check {
            probe: "cpu.flops",
            metric: "gflops_f32_mt",
            reference: likwid(sp, l1 * n, n, likwid_gflops),
            target: AT_LEAST_90,
            note: "",
        },
        Check {
            probe: "cpu.aes_gcm",
            metric: "encrypt_1t",
            reference: openssl(false, 1),
            target: WITHIN_10,
            note: AES_NOTE,
        },
        Check {
            probe: "cpu.aes_gcm",
            metric: "decrypt_1t",
            reference: openssl(true, 1),
            target: WITHIN_10,
            note: AES_NOTE,
        },
        Check {
            probe: "cpu.aes_gcm",
            metric: "encrypt_mt",
            reference: openssl(false, n),
            target: WITHIN_10,
            note: AES_NOTE,
        },
        Check {
            probe: "cpu.aes_gcm",
            metric: "decrypt_mt",
            reference: openssl(true, n),
            target: WITHIN_10,
            note: AES_NOTE,
        },
        Check {
            probe: "cpu.compress",
            metric: "zstd1_compress",
            reference: bench("zstd", "1", compress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "cpu.compress",
            metric: "zstd1_decompress",
            reference: bench("zstd", "1", decompress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "cpu.compress",
            metric: "zstd3_compress",
            reference: bench("zstd", "3", compress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "cpu.compress",
            metric: "zstd3_decompress",
            reference: bench("zstd", "3", decompress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "cpu.compress",
            metric: "lz4_compress",
            reference: bench("lz4", "1", compress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "cpu.compress",
            metric: "lz4_decompress",
            reference: bench("lz4", "1", decompress_speed),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "memory.bandwidth",
            metric: "read",
            reference: likwid(&format!("load{vector}"), bw, n, likwid_gbps),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "memory.bandwidth",
            metric: "write",
            reference: likwid(&format!("store_mem{vector}"), bw, n, likwid_gbps),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "memory.bandwidth",
            metric: "copy",
            reference: likwid(&format!("copy_mem{vector}"), 2 * bw, n, likwid_gbps),
            target: WITHIN_10,
            note: "",
        },
        Check {
            probe: "memory.bandwidth",
            metric: "triad",
            reference: likwid(&format!("stream_mem{vector}"), 3 * bw, n, likwid_gbps),
            target: WITHIN_10,
            note: "",
        },
    ];
    if let Some(current) = &setup.current_openssl {
        let program = current.display().to_string();
        for (metric, decrypt, threads) in [
            ("encrypt_1t", false, 1),
            ("decrypt_1t", true, 1),
            ("encrypt_mt", false, n),
            ("decrypt_mt", true, n),
        ] {
            let at = checks.iter().rposition(|c| c.metric == metric).map_or(checks.len(), |i| i + 1);
            checks.insert(
                at,
                Check {
                    probe: "cpu.aes_gcm",
                    metric,
                    reference: openssl_at(&program, decrypt, threads),
                    target: WITHIN_10,
                    note: "reference: a current OpenSSL release (scripts/reference-openssl), with a VAES path for AES-GCM",
                },
            );
        }
    }
    let loops = [
        (
            &setup.zstd_loop,
            "reference: the system's libzstd in a plain C loop (collector/src/calibrate/zstd_loop.c)",
        ),
        (
            &setup.linked_zstd_loop,
            "reference: the same C loop over the libzstd release the probe links (scripts/reference-libzstd)",
        ),
    ];
    for (zstd_loop, note) in loops {
        let Some(zstd_loop) = zstd_loop else { continue };
        let reference = |level: &str, parse| Reference {
            argv: vec![zstd_loop.display().to_string(), corpus.clone(), level.into(), secs.clone()],
            parse: Parse::Text(parse),
        };
        for (metric, level, parse) in [
            ("zstd1_compress", "1", loop_compress as fn(&str) -> Option<f64>),
            ("zstd1_decompress", "1", loop_decompress),
            ("zstd3_compress", "3", loop_compress),
            ("zstd3_decompress", "3", loop_decompress),
        ] {
            // Beside its `zstd -b` check, so the table shows the references together.
            let at = checks.iter().rposition(|c| c.metric == metric).map_or(checks.len(), |i| i + 1);
            checks.insert(
                at,
                Check {
                    probe: "cpu.compress",
                    metric,
                    reference: reference(level, parse),
                    target: WITHIN_10,
                    note,
                },
            );
        }
    }
    if let Some(chase) = &setup.pointer_chase {
        checks.push(Check {
            probe: "memory.latency",
            metric: "latency",
            reference: Reference {
                argv: vec![chase.display().to_string(), setup.latency_bytes.to_string(), secs.clone()],
                parse: Parse::Text(single_number),
            },
            target: WITHIN_10,
            note: "reference: the same random cycle of 64-byte lines in C (collector/src/calibrate/pointer_chase.c)",
        });
    }
    checks.extend(storage::checks(setup));
    checks.extend(network::checks(setup));
    checks
}

const AES_NOTE: &str = "OpenSSL 3.0 has no VAES path for AES-GCM (3.1 added one) and the probe (ring) has: above 1.1 there means the reference leaves hardware unused; compare with a current release (--openssl \"$(scripts/reference-openssl)\")";

/// The probe parameters calibration pins so that probe and reference measure the same thing.
fn overrides(setup: &Setup) -> Overrides {
    let mut o = Overrides::new();
    o.entry("cpu.compress".into()).or_default().insert("corpus".into(), setup.corpus.display().to_string());
    o.entry("memory.bandwidth".into())
        .or_default()
        .insert("size".into(), format!("{}", setup.bandwidth_bytes));
    o.entry("memory.latency".into())
        .or_default()
        .insert("max_size".into(), format!("{}", setup.latency_bytes));
    // Storage: fio's file size, runtime and folder, and a budget that holds the warm-ups, the
    // runtimes and the making of the file.
    for (probe, workloads, size) in [
        ("storage.seq", 2, storage::FILE_SIZE),
        ("storage.rand4k", 2, storage::FILE_SIZE),
        ("storage.mixed", 1, storage::FILE_SIZE),
        ("storage.fsync", 1, storage::FSYNC_FILE_SIZE),
    ] {
        let e = o.entry(probe.into()).or_default();
        e.insert("dir".into(), setup.scratch.display().to_string());
        e.insert("size".into(), size.into());
        e.insert("runtime".into(), format!("{}s", setup.reference_seconds));
        let budget = workloads * (setup.reference_seconds as u64 * 1000 + setup.storage_warmup_ms) + 5000;
        e.insert("budget".into(), format!("{budget}ms"));
    }
    o
}

/// Runs a reference command once and returns its output with the foreign load meanwhile;
/// `Ok(None)` when its tool is not installed.
fn run_reference(argv: &[String]) -> Result<Option<(String, Figure)>> {
    let meter = LoadMeter::start();
    let output = match Command::new(&argv[0]).args(&argv[1..]).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("running {}", argv[0])),
    };
    let load = meter.finish();
    let text =
        format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("`{}` failed ({}): {}", argv.join(" "), output.status, text.trim());
    }
    Ok(Some((text, Figure { value: f64::NAN, foreign_cpu: load.foreign_share, disturbed: load.disturbed() })))
}

/// Runs `once` until it is undisturbed, three tries at most.
fn undisturbed<T>(mut once: impl FnMut() -> Result<Option<(T, bool)>>) -> Result<Option<T>> {
    let mut last = None;
    for _ in 0..3 {
        match once()? {
            None => return Ok(None),
            Some((value, disturbed)) => {
                last = Some(value);
                if !disturbed {
                    break;
                }
            }
        }
    }
    Ok(last)
}

pub struct Options {
    pub probes: Vec<String>,
    /// Rounds every probe gets.
    pub rounds: usize,
    /// Rounds a probe may get while its rounds disagree (see [`settled`]).
    pub max_rounds: usize,
    pub effort: Effort,
}

/// Prepares the corpus file and the C references in `workdir`; the references given on the
/// command line are checked to run before anything is measured.
pub fn setup(
    workdir: &Path,
    reference_seconds: u32,
    warmup: std::time::Duration,
    current_openssl: Option<PathBuf>,
    linked_zstd_loop: Option<PathBuf>,
) -> Result<Setup> {
    if let Some(program) = &linked_zstd_loop {
        let usage = Command::new(program)
            .output()
            .with_context(|| format!("--zstd-loop {}: cannot run it", program.display()))?;
        if !String::from_utf8_lossy(&usage.stderr).contains("zstd_loop") {
            bail!(
                "--zstd-loop {}: not a zstd_loop (scripts/reference-libzstd builds one)",
                program.display()
            );
        }
    }
    if let Some(program) = &current_openssl {
        let version = Command::new(program)
            .arg("version")
            .output()
            .with_context(|| format!("--openssl {}: cannot run it", program.display()))?;
        if !version.status.success() {
            bail!("--openssl {}: `openssl version` failed ({})", program.display(), version.status);
        }
    }
    let corpus = workdir.join("corpus.bin");
    std::fs::write(&corpus, probes::cpu::corpus::builtin(4 << 20)).context("writing the corpus file")?;
    let pointer_chase = compile_c(workdir, "pointer_chase", include_str!("calibrate/pointer_chase.c"), &[])?;
    let zstd_loop = compile_c(workdir, "zstd_loop", include_str!("calibrate/zstd_loop.c"), &["-lzstd"])?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Ok(Setup {
        threads,
        corpus,
        pointer_chase,
        zstd_loop,
        current_openssl,
        linked_zstd_loop,
        bandwidth_bytes: 512 << 20,
        latency_bytes: 256 << 20,
        reference_seconds,
        scratch: workdir.to_path_buf(),
        storage_warmup_ms: warmup.as_millis() as u64,
        iperf3_ports: network::iperf3_ports()?,
    })
}

/// Compiles one of the C references with `cc -O2`; `None` where that fails (no compiler, or no
/// library headers), and its checks are left out.
fn compile_c(workdir: &Path, name: &str, code: &str, libs: &[&str]) -> Result<Option<PathBuf>> {
    let source = workdir.join(format!("{name}.c"));
    std::fs::write(&source, code).with_context(|| format!("writing {}", source.display()))?;
    let binary = workdir.join(name);
    let compiled = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .args(libs)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok(compiled.then_some(binary))
}

/// Runs the checks of the chosen probes, `rounds` times each, alternating probe and reference.
pub fn calibrate(setup: &Setup, options: &Options, progress: &dyn Fn(&str)) -> Result<Vec<Outcome>> {
    let all = checks(setup);
    let overrides = overrides(setup);
    let mut outcomes = Vec::new();
    let mut probe_ids: Vec<&str> = Vec::new();
    for c in &all {
        if !probe_ids.contains(&c.probe)
            && (options.probes.is_empty() || options.probes.iter().any(|p| p == c.probe))
        {
            probe_ids.push(c.probe);
        }
    }
    if let Some(unknown) = options.probes.iter().find(|p| !all.iter().any(|c| c.probe == p.as_str())) {
        bail!("no calibration for probe `{unknown}` (calibrated: {})", probe_ids_of(&all).join(", "));
    }
    if probe_ids.iter().any(|p| p.starts_with("storage.")) {
        progress("storage: writing fio's test files");
        storage::prepare(setup)?;
    }
    // The peers live as long as the calibration; the probes' `peer` is the in-process serve.
    let mut overrides = overrides;
    let _peers = if probe_ids.iter().any(|p| p.starts_with("network.")) {
        let peers = network::start(&setup.iperf3_ports)?;
        for (probe, transfers) in [("network.tcp", 4), ("network.udp", 1)] {
            let e = overrides.entry(probe.into()).or_default();
            e.insert("peer".into(), peers.serve.to_string());
            e.insert("runtime".into(), format!("{}s", setup.reference_seconds));
            let budget = transfers * (setup.reference_seconds as u64 * 1000 + setup.storage_warmup_ms) + 3000;
            e.insert("budget".into(), format!("{budget}ms"));
        }
        let e = overrides.entry("network.tcp".into()).or_default();
        e.insert("streams".into(), network::STREAMS.to_string());
        let e = overrides.entry("network.udp".into()).or_default();
        e.insert("rate".into(), network::UDP_RATE.into());
        e.insert("size".into(), network::UDP_SIZE.into());
        Some(peers)
    } else {
        None
    };
    for probe_id in probe_ids {
        let probe = probes::find(probe_id).expect("calibrated probes are registered");
        let mine: Vec<&Check> = all.iter().filter(|c| c.probe == probe_id).collect();
        let mut probe_runs: BTreeMap<&str, Vec<Figure>> = BTreeMap::new();
        let mut reference_runs: Vec<Option<Vec<Figure>>> = vec![Some(Vec::new()); mine.len()];
        let spec = RunSpec {
            host: String::new(),
            role: String::new(),
            labels: BTreeMap::new(),
            tags: BTreeMap::new(),
            suite: "calibrate".into(),
            schedule: None,
            effort: options.effort,
            overrides: overrides.clone(),
            deadline: None,
            run_id: None,
        };
        let mut round = 0;
        while round < options.rounds
            || (round < options.max_rounds && !settled(&mine, &probe_runs, &reference_runs))
        {
            round += 1;
            progress(&format!("{probe_id}: round {round}: probe"));
            let started = Instant::now();
            let result = undisturbed(|| {
                let result = run_probes(
                    &spec,
                    std::slice::from_ref(&probe),
                    Default::default(),
                    &CancelToken::default(),
                    &Silent,
                )?;
                if let Some((_, why)) = result.failures.first() {
                    bail!("{probe_id} failed: {why}");
                }
                let disturbed = result.measurements.iter().any(|m| m.disturbed);
                Ok(Some((result, disturbed)))
            })?
            .expect("a probe run always gives a result");
            tracing::debug!("{probe_id} round {round} took {:?}", started.elapsed());
            let mut metrics: Vec<&str> = mine.iter().map(|c| c.metric).collect();
            metrics.sort_unstable();
            metrics.dedup();
            for metric in metrics {
                if let Some(m) = result.measurements.iter().find(|m| m.metric == metric) {
                    probe_runs.entry(metric).or_default().push(Figure {
                        value: m.value,
                        foreign_cpu: m.foreign_cpu,
                        disturbed: m.disturbed,
                    });
                }
            }
            // Tools that print several figures (zstd -b, lz4 -b) run once a round for all of them.
            let mut outputs: BTreeMap<Vec<String>, Option<(String, Figure)>> = BTreeMap::new();
            for (i, check) in mine.iter().enumerate() {
                let Some(runs) = reference_runs[i].as_mut() else { continue };
                let argv = &check.reference.argv;
                if !outputs.contains_key(argv) {
                    progress(&format!("{probe_id}: round {round}: {}", argv.join(" ")));
                    let run =
                        undisturbed(|| Ok(run_reference(argv)?.map(|(text, f)| ((text, f), f.disturbed))))?;
                    outputs.insert(argv.clone(), run);
                }
                match &outputs[argv] {
                    Some((text, figure)) => {
                        let value = check.reference.parse.figure(text).with_context(|| {
                            format!(
                                "no {} figure in the output of `{}`:\n{}",
                                check.metric,
                                argv.join(" "),
                                text.trim()
                            )
                        })?;
                        runs.push(Figure { value, ..*figure });
                    }
                    None => reference_runs[i] = None,
                }
            }
        }
        for (i, check) in mine.iter().enumerate() {
            let spec = fathom_datasets::catalogue::metric(check.probe, check.metric).expect("catalogued");
            // A metric may have several references: each outcome gets the probe's figures.
            let probe_figures = probe_runs.get(check.metric).cloned().unwrap_or_default();
            let probe_value = median(&probe_figures.iter().map(|f| f.value).collect::<Vec<_>>());
            let (reference_value, reference_figures, skipped) = match &reference_runs[i] {
                Some(runs) => {
                    (median(&runs.iter().map(|f| f.value).collect::<Vec<_>>()), runs.clone(), false)
                }
                None => (None, Vec::new(), true),
            };
            let ratio = paired_ratio(&probe_figures, &reference_figures)
                .or_else(|| probe_value.zip(reference_value).map(|(p, r)| p / r));
            let verdict = match ratio {
                _ if skipped => "skipped",
                _ if check.target.info => "info",
                None => "skipped",
                Some(r) if r < check.target.low => "low",
                Some(r) if check.target.high.is_some_and(|h| r > h) => "high",
                Some(_) => "ok",
            };
            let note = if skipped {
                format!(
                    "{} not found: install the reference tools with scripts/reference-tools",
                    check.reference.argv[0]
                )
            } else {
                check.note.to_string()
            };
            outcomes.push(Outcome {
                probe: check.probe.into(),
                metric: check.metric.into(),
                unit: spec.unit.into(),
                probe_value,
                reference_value,
                ratio,
                target: check.target,
                verdict: verdict.into(),
                reference_command: check.reference.argv.join(" "),
                probe_runs: probe_figures,
                reference_runs: reference_figures,
                note,
            });
        }
    }
    Ok(outcomes)
}

/// The calibrated probes, in check order.
fn probe_ids_of(checks: &[Check]) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::new();
    for c in checks {
        if !ids.contains(&c.probe) {
            ids.push(c.probe);
        }
    }
    ids
}

/// How far the rounds' paired ratios of one check may spread (coefficient of variation) before
/// calibration runs another round.
const SETTLED_CV: f64 = 0.10;

/// Whether every check's rounds agree: their paired ratios vary by no more than [`SETTLED_CV`].
/// On a host whose memory bandwidth jumps between two modes, three rounds can put the probe in
/// one mode and the reference in the other; the spread of the pairs shows it, and more rounds
/// let the median of the pairs settle on the pairs taken in one mode.
fn settled(
    checks: &[&Check],
    probe_runs: &BTreeMap<&str, Vec<Figure>>,
    reference_runs: &[Option<Vec<Figure>>],
) -> bool {
    checks.iter().zip(reference_runs).all(|(check, reference)| {
        let (Some(probe), Some(reference)) = (probe_runs.get(check.metric), reference) else { return true };
        let ratios: Vec<f64> = probe.iter().zip(reference).map(|(p, r)| p.value / r.value).collect();
        fathom_datasets::stats::cv(&ratios).is_none_or(|cv| cv <= SETTLED_CV)
    })
}

/// The median of each round's ratio, the probe's figure over the reference's taken right after
/// it. Pairs taken seconds apart share the host's state: on a machine whose bandwidth jumps
/// between modes for minutes at a time, the ratio of two medians can compare one mode with the
/// other, the median of paired ratios does not. `None` unless every round has both figures.
fn paired_ratio(probe: &[Figure], reference: &[Figure]) -> Option<f64> {
    if probe.is_empty() || probe.len() != reference.len() {
        return None;
    }
    median(&probe.iter().zip(reference).map(|(p, r)| p.value / r.value).collect::<Vec<_>>())
}

/// The outcomes as a table for a terminal.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<17} {:<17} {:>10} {:>10} {:<8} {:>6} {:<9} {:<7} {:>8}  {}\n",
        "probe",
        "metric",
        "probe",
        "reference",
        "unit",
        "ratio",
        "target",
        "verdict",
        "foreign",
        "reference command"
    );
    for o in outcomes {
        let num = |v: Option<f64>| v.map(fathom_datasets::human::format_value).unwrap_or_else(|| "-".into());
        let target = match o.target.high {
            _ if o.target.info => "-".to_string(),
            Some(h) => format!("{:.2}–{:.2}", o.target.low, h),
            None => format!("≥ {:.2}", o.target.low),
        };
        let foreign = o
            .probe_runs
            .iter()
            .chain(&o.reference_runs)
            .filter_map(|f| f.foreign_cpu)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        out.push_str(&format!(
            "{:<17} {:<17} {:>10} {:>10} {:<8} {:>6} {:<9} {:<7} {:>8}  {}\n",
            o.probe,
            o.metric,
            num(o.probe_value),
            num(o.reference_value),
            o.unit,
            o.ratio.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into()),
            target,
            o.verdict,
            foreign.map(|f| format!("{:.1}%", f * 100.0)).unwrap_or_else(|| "-".into()),
            o.reference_command,
        ));
        if !o.note.is_empty() && o.verdict != "ok" {
            out.push_str(&format!("{:<17} note: {}\n", "", o.note));
        }
    }
    let judged: Vec<_> = outcomes.iter().filter(|o| o.verdict != "skipped" && o.verdict != "info").collect();
    let ok = judged.iter().filter(|o| o.verdict == "ok").count();
    let info = outcomes.iter().filter(|o| o.verdict == "info").count();
    let skipped = outcomes.len() - judged.len() - info;
    out.push_str(&format!(
        "{ok} of {} within target; {info} shown without a target; {skipped} skipped; foreign = most CPU other processes used during any run (>{:.0}% is disturbed and rerun)\n",
        judged.len(),
        DISTURBED_THRESHOLD * 100.0
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs_parse() {
        let openssl =
            "version: 3.0.19\n+DT:evp:3:16384\ntype          16384 bytes\nAES-256-GCM    3567173.63k\n";
        assert!((openssl_mbps(openssl).unwrap() - 3567.17363).abs() < 1e-6);
        let multi = "Got: +F:22:AES-256-GCM:7000000.00 from 0\nevp            7100000.00k\n";
        assert!((openssl_mbps(multi).unwrap() - 7100.0).abs() < 1e-6);
        let zstd = " 1#corpus.bin        :   4194304 ->   1201749 (x3.490),  410.5 MB/s, 1231.8 MB/s\r";
        assert_eq!(bench_speeds(zstd), Some((410.5, 1231.8)));
        let lz4 = "1#corpus.bin       :   4194304 ->   1743186 (2.406),  694.1 MB/s , 3302.3 MB/s \n";
        assert_eq!(bench_speeds(lz4), Some((694.1, 3302.3)));
        assert_eq!(likwid_gflops("Cycles:\t\t1\nMFlops/s:\t\t57298.18\n"), Some(57.29818));
        assert_eq!(likwid_gbps("MByte/s:\t\t43757.46\n"), Some(43.75746));
        assert_eq!(single_number("91.5\n"), Some(91.5));
        let zstd_loop =
            "zstd_compress: 441.5\nzstd_decompress: 1304.2\nlibzstd 1.5.4, level 1, ratio 3.418\n";
        assert_eq!((loop_compress(zstd_loop), loop_decompress(zstd_loop)), (Some(441.5), Some(1304.2)));
        assert_eq!(bench_speeds("no figures here"), None);
    }

    #[test]
    fn rounds_that_disagree_are_not_settled() {
        let f = |value| Figure { value, foreign_cpu: None, disturbed: false };
        let check = checks(&Setup {
            threads: 2,
            corpus: PathBuf::from("corpus.bin"),
            pointer_chase: None,
            zstd_loop: None,
            current_openssl: None,
            linked_zstd_loop: None,
            bandwidth_bytes: 1 << 20,
            latency_bytes: 1 << 20,
            reference_seconds: 1,
            scratch: PathBuf::from("/tmp"),
            storage_warmup_ms: 200,
            iperf3_ports: vec![5201],
        })
        .into_iter()
        .find(|c| c.probe == "memory.bandwidth" && c.metric == "read")
        .unwrap();
        let runs = |values: &[f64]| values.iter().map(|&v| f(v)).collect::<Vec<_>>();
        let probe = BTreeMap::from([("read", runs(&[51.3, 50.5, 52.1]))]);
        let modes_apart = [Some(runs(&[28.9, 50.3, 29.1]))];
        assert!(!settled(&[&check], &probe, &modes_apart));
        let agreeing = [Some(runs(&[49.9, 50.3, 51.0]))];
        assert!(settled(&[&check], &probe, &agreeing));
        assert!(settled(&[&check], &probe, &[None]), "a skipped reference never asks for rounds");
    }

    #[test]
    fn rounds_are_compared_pairwise_so_a_mode_change_cancels() {
        let f = |value| Figure { value, foreign_cpu: None, disturbed: false };
        // The host jumps from a slow mode to a fast one after two rounds; within each round the
        // probe reads 5 % above the reference. The ratio of the medians would say 1.75.
        let probe = [f(31.5), f(31.5), f(52.5), f(52.5), f(52.5)];
        let reference = [f(30.0), f(30.0), f(50.0), f(50.0), f(30.0)];
        assert!((paired_ratio(&probe, &reference).unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(paired_ratio(&probe[..4], &reference), None, "rounds missing a figure");
        assert_eq!(paired_ratio(&[], &[]), None);
    }

    #[test]
    fn a_rerun_replaces_a_disturbed_figure_and_stops_when_quiet() {
        let mut calls = 0;
        let got = undisturbed(|| {
            calls += 1;
            Ok(Some((calls, calls < 2)))
        })
        .unwrap();
        assert_eq!((got, calls), (Some(2), 2));
        let mut calls = 0;
        let got = undisturbed(|| {
            calls += 1;
            Ok(Some((calls, true)))
        })
        .unwrap();
        assert_eq!((got, calls), (Some(3), 3), "three tries, then the last figure, flagged by the caller");
    }
}
