//! What a person or a script sees of a run: a progress bar while it runs, then a table or one
//! JSON object.

use std::io::IsTerminal;

use fathom_datasets::human::format_value;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::runner::{Reporter, RunResult};

/// A bar on stderr when it is a terminal; nothing otherwise (cron, pipes, CI).
pub struct ProgressReporter {
    bar: ProgressBar,
}

const STEPS: u64 = 1000;

impl ProgressReporter {
    pub fn new(probes: usize) -> ProgressReporter {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(probes as u64 * STEPS), target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                .expect("valid template"),
        );
        ProgressReporter { bar }
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

impl Reporter for ProgressReporter {
    fn probe_started(&self, index: usize, total: usize, probe: &str) {
        self.bar.set_position(index as u64 * STEPS);
        self.bar.set_message(format!("{probe} ({}/{total})", index + 1));
    }

    fn probe_progress(&self, fraction: f64) {
        let base = self.bar.position() / STEPS * STEPS;
        self.bar.set_position(base + (fraction.clamp(0.0, 0.999) * STEPS as f64) as u64);
    }

    fn probe_finished(&self, probe: &str, outcome: &Result<usize, String>) {
        if let Err(e) = outcome {
            self.bar.println(format!("{probe}: {e}"));
        }
        self.bar.set_position((self.bar.position() / STEPS + 1) * STEPS);
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The run as one JSON object: the run's columns (host facts included), then its measurements
/// with the dataset's column names.
pub fn run_json(result: &RunResult, dataset: Option<&str>) -> Value {
    let mut v = serde_json::to_value(&result.run).expect("run serializes");
    let obj = v.as_object_mut().expect("run is an object");
    obj.insert("dataset".into(), json!(dataset));
    obj.insert("measurements".into(), json!(result.measurements));
    obj.insert("notes".into(), json!(result.notes));
    let failures: Vec<Value> = result.failures.iter().map(|(p, e)| json!({"probe": p, "error": e})).collect();
    obj.insert("failures".into(), Value::Array(failures));
    let skipped: Vec<Value> =
        result.skipped.iter().map(|(p, why)| json!({"probe": p, "reason": why})).collect();
    obj.insert("skipped".into(), Value::Array(skipped));
    v
}

pub fn run_table(result: &RunResult) -> String {
    let mut out = String::new();
    let r = &result.run;
    out.push_str(&format!(
        "run {} on {} ({}, {} cores / {} threads), suite {}: {}\n",
        r.run_id,
        r.host,
        r.facts.cpu_model,
        r.facts.cpu_cores,
        r.facts.cpu_threads,
        r.suite,
        r.status.as_str()
    ));
    if let Some(reason) = &r.status_reason {
        out.push_str(&format!("  reason: {reason}\n"));
    }
    out.push_str(&format!(
        "{:<16} {:<18} {:>12} {:<8} {:>7} {:>4}\n",
        "probe", "metric", "value", "unit", "cv", "n"
    ));
    for m in &result.measurements {
        let cv = m.cv.map(|c| format!("{:.2}%", c * 100.0)).unwrap_or_default();
        let flag = if m.disturbed { "  disturbed" } else { "" };
        out.push_str(&format!(
            "{:<16} {:<18} {:>12} {:<8} {:>7} {:>4}{flag}\n",
            m.probe,
            m.metric,
            format_value(m.value),
            m.unit,
            cv,
            m.n
        ));
    }
    out
}
