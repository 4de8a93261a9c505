//! Storage probes: sequential bandwidth, 4 KiB random IOPS, a 70/30 mix and fsync latency on
//! the filesystem under test (`dir`), measured as fio measures them so the two agree.
//!
//! Unlike the CPU probes, storage workloads are time-based, like fio's `time_based` runs: a
//! device has state (write caches, SLC regions, garbage collection) and the figure should
//! describe a fixed stretch of load, not the first quiet moment. Each workload runs a warm-up,
//! then `runtime`; the measured time is cut into slices (the repetitions, for `cv` and
//! `samples`), throughput is the median slice and latency percentiles are computed over every
//! I/O of the measured time with fio's histogram (`crate::histogram`).

pub mod engine;
pub mod file;
pub mod fsync;
pub mod mixed;
pub mod rand4k;
pub mod seq;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use engine::{Engine, Slice, Timing, Workload};
use file::{Direct, TestFile};

use crate::histogram::Histogram;
use crate::load::CpuLoad;
use crate::probe::{
    ParamSpec, ProbeContext, ProbeError, ProbeOutput, Repetitions, parse_duration, parse_size,
};

/// The parameters every storage probe takes; `queue_depth` and `size` defaults differ by probe.
pub const fn common_params(size: &'static str, queue_depth: &'static str) -> [ParamSpec; 7] {
    [
        ParamSpec {
            name: "dir",
            default: "",
            help: "directory on the filesystem under test (default: the system's temporary directory)",
            identity: true,
        },
        ParamSpec { name: "size", default: size, help: "test file size (e.g. 512MiB)", identity: true },
        ParamSpec {
            name: "queue_depth",
            default: queue_depth,
            help: "I/Os in flight per job (1–1024)",
            identity: true,
        },
        ParamSpec {
            name: "jobs",
            default: "1",
            help: "threads issuing I/O, each with its own queue (1–64)",
            identity: true,
        },
        ParamSpec {
            name: "runtime",
            default: "auto",
            help: "measured time per workload, e.g. 10s (auto: the budget shared over the probe's workloads)",
            identity: false,
        },
        ParamSpec {
            name: "engine",
            default: "auto",
            help: "io_uring, threads (blocking pread/pwrite, one thread per queue slot) or auto (io_uring where available)",
            identity: false,
        },
        ParamSpec {
            name: "min_free",
            default: "auto",
            help: "free space that must remain after the test file (auto: 5 % of the filesystem, at least 1 GiB)",
            identity: false,
        },
    ]
}

/// `direct`, for the probes that do direct I/O.
pub const DIRECT_PARAM: ParamSpec = ParamSpec {
    name: "direct",
    default: "auto",
    help: "O_DIRECT: auto (where the filesystem supports it; the fallback is recorded), on, off",
    identity: false,
};

/// Checked settings of a storage probe.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub size: u64,
    pub queue_depth: usize,
    pub jobs: usize,
    pub runtime: Option<Duration>,
    pub engine: Option<Engine>,
    pub min_free: Option<u64>,
    pub direct: Direct,
}

fn param_error(name: &str, reason: String) -> ProbeError {
    ProbeError::Param { name: name.into(), reason }
}

fn count(params: &BTreeMap<String, String>, name: &str, max: usize) -> Result<usize, ProbeError> {
    let text = params.get(name).map(String::as_str).unwrap_or_default();
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| param_error(name, format!("`{text}` is not a whole number from 1 to {max}")))
}

/// Parses and checks the common parameters, and the free space for a file of `size` (so a run
/// that would fill the disk is refused before any probe runs).
pub fn settings(params: &BTreeMap<String, String>) -> Result<Settings, ProbeError> {
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let dir = match get("dir") {
        "" => std::env::temp_dir(),
        d => PathBuf::from(d),
    };
    let size_text = get("size");
    // Whole 4 KiB blocks, as direct I/O needs.
    let size = (parse_size(size_text).map_err(|r| param_error("size", r))? as u64).next_multiple_of(4096);
    if !(1 << 20..=1 << 50).contains(&size) {
        return Err(param_error("size", format!("`{size_text}` is not between 1 MiB and 1 PiB")));
    }
    let queue_depth = count(params, "queue_depth", 1024)?;
    let jobs = count(params, "jobs", 64)?;
    let runtime = match get("runtime") {
        "auto" | "" => None,
        t => {
            let d = parse_duration(t).map_err(|r| param_error("runtime", r))?;
            if d < Duration::from_millis(100) {
                return Err(param_error("runtime", format!("`{t}` is shorter than 100ms")));
            }
            Some(d)
        }
    };
    let engine = match get("engine") {
        "auto" | "" => None,
        "io_uring" => Some(Engine::IoUring),
        "threads" => Some(Engine::Threads),
        other => return Err(param_error("engine", format!("`{other}` is not io_uring, threads or auto"))),
    };
    if engine == Some(Engine::IoUring) {
        engine::io_uring_available().map_err(|r| param_error("engine", r))?;
    }
    let min_free = match get("min_free") {
        "auto" | "" => None,
        t => Some(parse_size(t).map_err(|r| param_error("min_free", r))? as u64),
    };
    let direct = match get("direct") {
        "auto" | "" => Direct::Auto,
        "on" => Direct::On,
        "off" => Direct::Off,
        other => return Err(param_error("direct", format!("`{other}` is not auto, on or off"))),
    };
    file::check_space(&dir, size, min_free).map_err(|r| param_error("dir", r))?;
    Ok(Settings { dir, size, queue_depth, jobs, runtime, engine, min_free, direct })
}

impl Settings {
    /// The engine to use, and a note when `auto` fell back to threads.
    pub fn engine(&self) -> (Engine, Option<String>) {
        match self.engine {
            Some(e) => (e, None),
            None => match engine::io_uring_available() {
                Ok(()) => (Engine::IoUring, None),
                Err(why) => (Engine::Threads, Some(format!("{why}: blocking threads instead"))),
            },
        }
    }

    /// The measured time of each of `workloads`: `runtime`, or what is left of the budget
    /// since `started` (after making and filling the file, however slow the disk) less the
    /// warm-ups, shared out.
    pub fn timing(&self, ctx: &ProbeContext, workloads: u32, started: Instant) -> Timing {
        let warmup = ctx.effort.warmup;
        let runtime = self.runtime.unwrap_or_else(|| {
            let used = started.elapsed() + warmup * workloads + Duration::from_millis(100);
            (ctx.effort.budget.saturating_sub(used) / workloads.max(1)).max(Duration::from_millis(200))
        });
        // Twenty slices, 50 ms to 1 s each: enough repetitions for a spread, each long enough
        // to hold many I/Os on a slow disk.
        let slice = (runtime / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
        Timing { warmup, runtime, slice }
    }

    /// The `params` text: the identity parameters as given, plus what was actually used.
    pub fn params_text(
        &self,
        block: usize,
        file: &TestFile,
        engine: Engine,
        extra: &[(&str, String)],
    ) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("dir", self.dir.display().to_string()),
            ("size", fmt_bytes(self.size)),
            ("block", fmt_bytes(block as u64)),
            ("queue_depth", self.queue_depth.to_string()),
            ("jobs", self.jobs.to_string()),
            ("direct", if file.direct { "on" } else { "off" }.to_string()),
            ("engine", engine.name().to_string()),
        ];
        pairs.extend(extra.iter().cloned());
        fathom_datasets::params::canonical(pairs)
    }
}

pub fn fmt_bytes(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Runs one workload, polling the context for cancellation.
pub fn measure(
    ctx: &ProbeContext,
    file: &TestFile,
    workload: &Workload,
    engine: Engine,
    timing: &Timing,
) -> Result<Vec<Slice>, ProbeError> {
    ctx.check()?;
    let result = engine::run(file, workload, engine, timing, &|| {
        ctx.cancel.is_cancelled() || Instant::now() > ctx.deadline
    });
    match result {
        Err(ProbeError::Cancelled) if !ctx.cancel.is_cancelled() => Err(past_deadline(timing)),
        other => other,
    }
}

/// A workload that would run past the probe's deadline (its budget, or a maintenance window).
pub fn past_deadline(timing: &Timing) -> ProbeError {
    ProbeError::Failed(format!(
        "stopped at the probe's deadline: {:.1} s of warm-up and runtime do not fit its budget \
         (raise `budget` or lower `runtime`)",
        (timing.warmup + timing.runtime).as_secs_f64()
    ))
}

/// The slices' figures as repetitions: `per_slice` of each slice, ending at its end.
pub fn repetitions(
    slices: &[Slice],
    timing: &Timing,
    offset_s: f64,
    per_slice: impl Fn(&Slice) -> Option<f64>,
) -> Repetitions {
    let mut reps = Repetitions::default();
    for (i, slice) in slices.iter().enumerate() {
        if let Some(v) = per_slice(slice) {
            reps.values.push(v);
            reps.offsets
                .push(offset_s + timing.warmup.as_secs_f64() + (i + 1) as f64 * timing.slice.as_secs_f64());
        }
    }
    reps
}

/// What the queue-depth probes (`seq`, `rand4k`, `mixed`) do before their workloads: the
/// settings, the engine (its fallback noted), the test file written whole (so writes overwrite
/// written blocks, as on a disk in use, and reads read real ones) and the timeline of
/// `workloads` runs in what is left of the budget after the fill.
pub struct Prepared {
    /// When the probe began (sample offsets count from it).
    pub started: Instant,
    pub settings: Settings,
    pub engine: Engine,
    pub file: TestFile,
    pub timing: Timing,
}

pub fn prepare(
    ctx: &ProbeContext,
    out: &mut ProbeOutput,
    name: &str,
    workloads: u32,
) -> Result<Prepared, ProbeError> {
    let settings = settings(&ctx.params)?;
    let start = Instant::now();
    let (engine, engine_note) = settings.engine();
    out.notes.extend(engine_note);
    let file = TestFile::create(&settings.dir, name, settings.size, settings.min_free, settings.direct)?;
    out.notes.extend(file.notes.iter().cloned());
    file.fill(&|| ctx.check())?;
    let timing = settings.timing(ctx, workloads, start);
    Ok(Prepared { started: start, settings, engine, file, timing })
}

/// Records a rate metric (per second of slice) and its latency percentiles over every I/O.
#[allow(clippy::too_many_arguments)]
pub fn record_direction(
    out: &mut ProbeOutput,
    probe: &str,
    params: &str,
    slices: &[Slice],
    timing: &Timing,
    offset_s: f64,
    load: CpuLoad,
    rate: (&str, f64),
    read: bool,
    latencies: &[(&str, f64)],
) {
    let (rate_metric, per_op) = rate;
    let seconds = timing.slice.as_secs_f64();
    let ops = |s: &Slice| if read { s.reads } else { s.writes };
    fn lat(s: &Slice, read: bool) -> &Histogram {
        if read { &s.read_lat } else { &s.write_lat }
    }
    let reps = repetitions(slices, timing, offset_s, |s| Some(ops(s) as f64 * per_op / seconds));
    out.record(probe, rate_metric, params, &reps, load);
    let mut all = Histogram::default();
    for s in slices {
        all.merge(lat(s, read));
    }
    for &(metric, p) in latencies {
        let reps = repetitions(slices, timing, offset_s, |s| lat(s, read).percentile_ns(p));
        if let Some(overall) = all.percentile_ns(p) {
            out.record_overall(probe, metric, params, &reps, overall, load);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = common_params("64MiB", "32")
            .iter()
            .map(|p| (p.name.to_string(), p.default.to_string()))
            .collect();
        m.insert("direct".into(), "auto".into());
        m.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        m
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let name = |pairs: &[(&str, &str)]| match settings(&params(pairs)) {
            Err(ProbeError::Param { name, .. }) => name,
            other => panic!("{pairs:?}: expected a parameter error, got {other:?}"),
        };
        assert_eq!(name(&[("size", "lots")]), "size");
        assert_eq!(name(&[("size", "4KiB")]), "size");
        assert_eq!(name(&[("queue_depth", "0")]), "queue_depth");
        assert_eq!(name(&[("jobs", "1000")]), "jobs");
        assert_eq!(name(&[("runtime", "5ms")]), "runtime");
        assert_eq!(name(&[("engine", "libaio")]), "engine");
        assert_eq!(name(&[("direct", "maybe")]), "direct");
        assert_eq!(name(&[("dir", "/nonexistent/fathom")]), "dir");
        assert_eq!(name(&[("size", "2PiB")]), "size");
        // A file larger than the free space is refused as `dir`'s problem, before anything runs.
        assert_eq!(name(&[("size", "900TiB"), ("min_free", "0")]), "dir");
        let ok = settings(&params(&[("size", "16MiB"), ("runtime", "2s")])).unwrap();
        assert_eq!((ok.size, ok.runtime), (16 << 20, Some(Duration::from_secs(2))));
    }

    #[test]
    fn sizes_print_in_whole_units() {
        assert_eq!(fmt_bytes(1 << 20), "1MiB");
        assert_eq!(fmt_bytes(4096), "4KiB");
        assert_eq!(fmt_bytes(3 << 30), "3GiB");
        assert_eq!(fmt_bytes(1000), "1000B");
    }
}
