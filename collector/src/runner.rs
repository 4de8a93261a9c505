//! Runs a list of probes one after another and assembles the run.
//!
//! Progress goes to a [`Reporter`], so the progress bar, a log line or nothing at all are
//! interchangeable, and a probe never knows who is watching.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use fathom_datasets::{HostFacts, Measurement, RunRecord, RunStatus, Sample};

use crate::params::{Overrides, effort, resolve};
use crate::probe::{CancelToken, Effort, Probe, ProbeContext, ProbeError, ProbeOutput};

pub trait Reporter: Sync {
    fn probe_started(&self, _index: usize, _total: usize, _probe: &str) {}
    fn probe_progress(&self, _fraction: f64) {}
    fn probe_finished(&self, _probe: &str, _outcome: &Result<usize, String>) {}
}

/// Reports nothing.
pub struct Silent;
impl Reporter for Silent {}

/// Who and what: everything about a run that is not measured.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub host: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub suite: String,
    pub schedule: Option<String>,
    pub effort: Effort,
    pub overrides: Overrides,
    /// Caps the whole run (a maintenance window's end); `None` for no cap.
    pub deadline: Option<Instant>,
    /// The run's id, when the caller must know it before the run (the daemon's journal).
    pub run_id: Option<String>,
}

#[derive(Debug)]
pub struct RunResult {
    pub run: RunRecord,
    pub measurements: Vec<Measurement>,
    pub samples: Vec<Sample>,
    pub notes: Vec<String>,
    /// Probes that failed, with the reason.
    pub failures: Vec<(String, String)>,
    /// Probes that did not run, with the reason (no fault: a network probe without a peer).
    pub skipped: Vec<(String, String)>,
}

pub fn run_probes(
    spec: &RunSpec,
    probes: &[Box<dyn Probe>],
    facts: HostFacts,
    cancel: &CancelToken,
    reporter: &dyn Reporter,
) -> anyhow::Result<RunResult> {
    let started_at = Utc::now();
    let mut result = RunResult {
        run: RunRecord {
            run_id: spec.run_id.clone().unwrap_or_else(RunRecord::new_id),
            host: spec.host.clone(),
            role: spec.role.clone(),
            labels: spec.labels.clone(),
            tags: spec.tags.clone(),
            suite: spec.suite.clone(),
            schedule: spec.schedule.clone(),
            started_at,
            finished_at: started_at,
            status: RunStatus::Ok,
            status_reason: None,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
            schema_version: RunRecord::schema_version(),
            facts,
        },
        measurements: Vec::new(),
        samples: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        skipped: Vec::new(),
    };
    let mut cancelled = false;
    // The run's cap (a maintenance window's end) stops it between probes.
    let mut stopped: Option<String> = None;
    for (index, probe) in probes.iter().enumerate() {
        if cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        if spec.deadline.is_some_and(|cap| Instant::now() >= cap) {
            stopped = Some(format!(
                "stopped at the run's deadline (its window's end or max_runtime) before {} ({index} of {} probes ran)",
                probe.id(),
                probes.len()
            ));
            break;
        }
        reporter.probe_started(index, probes.len(), probe.id());
        let effort = effort(spec.effort, probe.id(), &spec.overrides)?;
        // A probe may overrun its budget by a final repetition; never by more than half again.
        let mut deadline = Instant::now() + effort.budget + effort.budget / 2 + Duration::from_millis(200);
        if let Some(cap) = spec.deadline {
            deadline = deadline.min(cap);
        }
        let progress = |f: f64| reporter.probe_progress(f);
        let ctx = ProbeContext {
            params: resolve(probe.as_ref(), &spec.overrides),
            effort,
            deadline,
            cancel: cancel.clone(),
            progress: &progress,
        };
        let mut out = ProbeOutput::default();
        let outcome = probe.run(&ctx, &mut out);
        let measured = out.measurements.len();
        result.measurements.extend(out.measurements);
        result.samples.extend(out.samples);
        result.notes.extend(out.notes.into_iter().map(|n| format!("{}: {n}", probe.id())));
        let summary = match outcome {
            Ok(()) => Ok(measured),
            Err(ProbeError::Cancelled) => {
                cancelled = true;
                Err("cancelled".to_string())
            }
            Err(ProbeError::Skipped(why)) => {
                result.skipped.push((probe.id().to_string(), why.clone()));
                Err(format!("skipped: {why}"))
            }
            Err(e) => {
                result.failures.push((probe.id().to_string(), e.to_string()));
                Err(e.to_string())
            }
        };
        reporter.probe_finished(probe.id(), &summary);
        if cancelled {
            break;
        }
    }
    result.run.finished_at = Utc::now();
    let (status, reason) = status_of(&result, cancelled, stopped.as_deref(), probes.len());
    result.run.status = status;
    result.run.status_reason = reason;
    Ok(result)
}

fn status_of(
    result: &RunResult,
    cancelled: bool,
    stopped: Option<&str>,
    planned: usize,
) -> (RunStatus, Option<String>) {
    let mut reasons: Vec<String> = result.failures.iter().map(|(p, e)| format!("probe {p}: {e}")).collect();
    if cancelled {
        reasons.push("interrupted".to_string());
    }
    reasons.extend(stopped.map(str::to_string));
    let status_reasons = reasons.len();
    reasons.extend(result.skipped.iter().map(|(p, why)| format!("probe {p} skipped: {why}")));
    let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    let planned = planned - result.skipped.len();
    let status = if result.measurements.is_empty() && planned > 0 {
        RunStatus::Failed
    } else if status_reasons == 0 {
        RunStatus::Ok
    } else {
        RunStatus::Partial
    };
    (status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ParamSpec, Repetitions};

    struct Fixed(&'static str, bool);
    impl Probe for Fixed {
        fn id(&self) -> &'static str {
            self.0
        }
        fn params(&self) -> &'static [ParamSpec] {
            &[]
        }
        fn run(&self, _: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
            if !self.1 {
                return Err(ProbeError::Failed("disk on fire".into()));
            }
            let reps =
                Repetitions { values: vec![1.0, 2.0, 3.0], offsets: vec![0.0, 0.1, 0.2], window: None };
            out.record("cpu.aes_gcm", "encrypt_1t", "", &reps, Default::default());
            Ok(())
        }
    }

    fn spec() -> RunSpec {
        RunSpec {
            host: "h".into(),
            role: String::new(),
            labels: BTreeMap::new(),
            tags: BTreeMap::new(),
            suite: "quick".into(),
            schedule: None,
            effort: crate::suite::Suite::Quick.effort(),
            overrides: Overrides::new(),
            deadline: None,
            run_id: None,
        }
    }

    fn run(probes: Vec<Box<dyn Probe>>, cancel: &CancelToken) -> RunResult {
        run_probes(&spec(), &probes, HostFacts::default(), cancel, &Silent).unwrap()
    }

    #[test]
    fn statuses() {
        let ok = run(vec![Box::new(Fixed("cpu.aes_gcm", true))], &CancelToken::default());
        assert_eq!((ok.run.status, ok.measurements.len(), ok.samples.len()), (RunStatus::Ok, 1, 3));
        let partial = run(
            vec![Box::new(Fixed("cpu.aes_gcm", true)), Box::new(Fixed("cpu.compress", false))],
            &CancelToken::default(),
        );
        assert_eq!(partial.run.status, RunStatus::Partial);
        assert_eq!(partial.run.status_reason.as_deref(), Some("probe cpu.compress: disk on fire"));
        let failed = run(vec![Box::new(Fixed("cpu.compress", false))], &CancelToken::default());
        assert_eq!(failed.run.status, RunStatus::Failed);
        let cancel = CancelToken::default();
        cancel.cancel();
        let stopped = run(vec![Box::new(Fixed("cpu.aes_gcm", true))], &cancel);
        assert_eq!(
            (stopped.run.status, stopped.run.status_reason.as_deref()),
            (RunStatus::Failed, Some("interrupted"))
        );
    }
}
