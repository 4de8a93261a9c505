//! The probe trait and what a probe gets and gives.
//!
//! A probe is one module: an id from the design, its parameters with defaults, and `run`, which
//! measures within the context's time budget and returns measurements, raw samples and notes.
//! Deadline and cancellation live in the context, so schedulers and signal handlers never have
//! to reopen a probe.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fathom_datasets::catalogue;
use fathom_datasets::params::canonical;
use fathom_datasets::{Measurement, Sample};

use crate::load::CpuLoad;
use fathom_datasets::stats::summarize;

/// One parameter a probe accepts, settable with `--param PROBE.NAME=VALUE`.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    /// Part of what is measured (recorded in `params`, so series only compare like with like);
    /// false for knobs that change precision, not the quantity (budget, repetitions).
    pub identity: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("parameter `{name}`: {reason}")]
    Param { name: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    /// Not run, for a reason that is no fault (a network probe without a peer); recorded in
    /// the run's reason, the run stays `ok`.
    #[error("skipped: {0}")]
    Skipped(String),
    #[error("{0}")]
    Failed(String),
}

/// Shared flag that stops probes between repetitions (Ctrl-C, SIGTERM, a window's end).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How hard to try: warm-up, repetitions and the noise target, from the suite, overridable per
/// probe with the common parameters (`budget`, `warmup`, `min_reps`, `max_reps`, `target_cv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effort {
    pub budget: Duration,
    pub warmup: Duration,
    pub min_reps: usize,
    pub max_reps: usize,
    pub target_cv: f64,
}

/// Everything a probe run needs from outside.
pub struct ProbeContext<'a> {
    pub params: BTreeMap<String, String>,
    pub effort: Effort,
    /// When the probe must have returned; the budget capped by what its caller has left.
    pub deadline: Instant,
    pub cancel: CancelToken,
    /// Called with the fraction of the probe done, 0..=1.
    pub progress: &'a (dyn Fn(f64) + Sync),
}

impl ProbeContext<'_> {
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or_default()
    }

    pub fn check(&self) -> Result<(), ProbeError> {
        if self.cancel.is_cancelled() { Err(ProbeError::Cancelled) } else { Ok(()) }
    }

    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// What a probe returns.
#[derive(Debug, Default)]
pub struct ProbeOutput {
    pub measurements: Vec<Measurement>,
    pub samples: Vec<Sample>,
    /// Things a reader should know, such as a fallback taken.
    pub notes: Vec<String>,
}

impl ProbeOutput {
    /// Records one metric from its repetitions: the median of the steady window as `value`, the
    /// window's spread beside it, every repetition as a sample (those of the window marked). Unit, category and direction
    /// come from the metric catalogue.
    pub fn record(&mut self, probe: &str, metric: &str, params: &str, reps: &Repetitions, load: CpuLoad) {
        let spec = catalogue::metric(probe, metric)
            .unwrap_or_else(|| panic!("{probe}.{metric} is not in the metric catalogue"));
        let Some(s) = summarize(reps.steady()) else { return };
        self.measurements.push(Measurement {
            probe: probe.to_string(),
            category: spec.category().to_string(),
            metric: metric.to_string(),
            unit: spec.unit.to_string(),
            higher_is_better: spec.higher_is_better,
            params: params.to_string(),
            value: s.median,
            mean: Some(s.mean),
            stddev: Some(s.stddev),
            cv: s.cv,
            min: Some(s.min),
            max: Some(s.max),
            n: s.n as i32,
            disturbed: load.disturbed(),
            foreign_cpu: load.foreign_share,
        });
        self.record_samples(probe, metric, params, reps);
    }

    /// Records a metric whose figure is computed from all the repetitions' data together, not
    /// as their median: a latency percentile over every I/O of the run, as fio reports it. The
    /// repetitions' own figures (per time slice) give the spread, `n` and the samples.
    pub fn record_overall(
        &mut self,
        probe: &str,
        metric: &str,
        params: &str,
        reps: &Repetitions,
        overall: f64,
        load: CpuLoad,
    ) {
        let before = self.measurements.len();
        self.record(probe, metric, params, reps, load);
        if let Some(m) = self.measurements.get_mut(before) {
            m.value = overall;
        }
    }

    fn record_samples(&mut self, probe: &str, metric: &str, params: &str, reps: &Repetitions) {
        let window = reps.window_range();
        for (seq, (value, t)) in reps.values.iter().zip(&reps.offsets).enumerate() {
            self.samples.push(Sample {
                probe: probe.to_string(),
                metric: metric.to_string(),
                params: params.to_string(),
                seq: seq as i32,
                t_offset_s: *t,
                value: *value,
                in_window: window.contains(&seq),
            });
        }
    }
}

/// The values of one metric's repetitions, with when each ended (seconds since the probe began).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repetitions {
    pub values: Vec<f64>,
    pub offsets: Vec<f64>,
    /// The repetitions the measurement describes: the steady window that ended the repetitions,
    /// or the steadiest one when none met the target in time (see [`crate::measure`]); `None`
    /// for all of them.
    pub window: Option<Range<usize>>,
}

impl Repetitions {
    /// A figure computed once rather than repeated (a compression ratio, a theoretical peak).
    pub fn once(value: f64, offset: f64) -> Repetitions {
        Repetitions { values: vec![value], offsets: vec![offset], window: None }
    }

    /// Where the described repetitions are, as indices into `values`.
    pub fn window_range(&self) -> Range<usize> {
        let n = self.values.len();
        self.window.clone().map_or(0..n, |w| w.start.min(n)..w.end.min(n))
    }

    /// The repetitions the measurement's statistics are computed from.
    pub fn steady(&self) -> &[f64] {
        &self.values[self.window_range()]
    }
}

pub trait Probe: Send + Sync {
    /// The id from the design, `category.name`.
    fn id(&self) -> &'static str;

    /// One line for `fathom-collector probes`.
    fn description(&self) -> &'static str {
        catalogue::probe(self.id()).map(|p| p.description).unwrap_or("")
    }

    /// The probe's own parameters; the common effort parameters are added by the runner.
    fn params(&self) -> &'static [ParamSpec];

    /// Checks parameter values before anything runs, so a typo fails in a second, not after
    /// the probes before it have run.
    fn check(&self, _params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        Ok(())
    }

    /// Measures, recording into `out` as it goes: what was recorded stays in the run even when
    /// the probe is cancelled or fails half-way.
    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError>;

    /// The canonical `params` text of this run: the identity parameters only.
    fn params_text(&self, ctx: &ProbeContext) -> String {
        canonical(self.params().iter().filter(|p| p.identity).map(|p| (p.name, ctx.param(p.name))))
    }
}

/// Parses sizes such as `16KiB`, `4MiB`, `1GB`, `4096`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("`{text}` is not a size (e.g. 16KiB, 4MiB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "T" => 1024.0f64.powi(4),
        "PiB" | "P" => 1024.0f64.powi(5),
        "TB" => 1e12,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, TiB, PiB, KB, MB, GB, TB)"
            ));
        }
    };
    Ok((num * mult) as usize)
}

/// Parses durations such as `2s`, `500ms`, `1.5` (seconds), `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 2s, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => num,
        "ms" => num / 1e3,
        "m" | "min" => num * 60.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m)")),
    };
    if secs > 86_400.0 {
        return Err(format!("`{text}` is longer than a day"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a duration (e.g. 2s, 500ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").unwrap_err().contains("unknown size unit"));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999999").unwrap_err().contains("longer than a day"));
    }

    #[test]
    fn record_takes_the_median_and_keeps_samples() {
        let mut out = ProbeOutput::default();
        let reps = Repetitions { values: vec![10.0, 30.0, 20.0], offsets: vec![0.1, 0.2, 0.3], window: None };
        out.record("cpu.aes_gcm", "encrypt_1t", "buffer=16KiB", &reps, CpuLoad::default());
        let m = &out.measurements[0];
        assert_eq!((m.value, m.n, m.unit.as_str(), m.category.as_str()), (20.0, 3, "MB/s", "cpu"));
        assert_eq!(out.samples.len(), 3);
        assert_eq!(out.samples[2].seq, 2);
        assert!(out.samples.iter().all(|s| s.in_window), "no window: the row describes them all");
    }

    #[test]
    fn record_describes_the_steady_window_and_keeps_every_sample() {
        let mut out = ProbeOutput::default();
        let reps = Repetitions {
            values: vec![50.0, 70.0, 100.0, 101.0, 99.0, 60.0],
            offsets: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            window: Some(2..5),
        };
        out.record("cpu.aes_gcm", "encrypt_1t", "buffer=16KiB", &reps, CpuLoad::default());
        let m = &out.measurements[0];
        assert_eq!((m.value, m.n, m.min, m.max), (100.0, 3, Some(99.0), Some(101.0)));
        assert!((m.cv.unwrap() - 0.01).abs() < 1e-9, "sample stddev 1 over a mean of 100");
        assert_eq!(out.samples.len(), 6);
        assert_eq!(out.samples[0].value, 50.0);
        let marked: Vec<i32> = out.samples.iter().filter(|s| s.in_window).map(|s| s.seq).collect();
        assert_eq!(marked, [2, 3, 4], "the samples the row describes, and only those");
    }
}
