//! Accuracy of the fleet analyses against the synthetic fleet's ground truth, over several
//! seeds: change points (looking back and night by night, by step size and noise), deltas of the
//! injected roll-outs (A/A and true effects), and fleet outliers. Prints a Markdown report.
//!
//! `cargo run --example accuracy_bench -- HOSTS DAYS SEED[,SEED…]`, e.g. `-- 200 365 1,2,3`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use fathom_analyzer::analyses::changepoint::Options;
use fathom_analyzer::analyses::delta::{Split, host_delta};
use fathom_analyzer::analyses::delta_stats::DeltaOptions;
use fathom_analyzer::analyses::evaluate::{Evaluation, Label, bucket_order, evaluate, quantile};
use fathom_analyzer::analyses::outliers::{Basis, Outlier, Side, fleet_outliers, host_classes};
use fathom_analyzer::load::Loader;
use fathom_analyzer::runs::read_runs;
use fathom_analyzer::series::{NightlySeries, load_series, metric_label, midnight_micros};
use fathom_datasets::Table;
use fathom_datasets::store::{Dataset, DateRange};
use fathom_datasets::synth::{EventKind, GroundTruth, InjectedEvent, SynthOptions, generate};

#[derive(Default)]
struct Tally {
    cases: usize,
    correct: usize,
    no_change: usize,
    inconclusive: usize,
    wrong: usize,
}

impl Tally {
    fn rate(&self, n: usize) -> String {
        if self.cases == 0 { "-".into() } else { format!("{:.3}", n as f64 / self.cases as f64) }
    }
}

fn noise_bucket(cv: Option<f64>) -> &'static str {
    match cv {
        Some(c) if c <= 0.01 => "cv≤1%",
        Some(c) if c <= 0.02 => "cv≤2%",
        Some(c) if c <= 0.03 => "cv≤3%",
        Some(c) if c <= 0.05 => "cv≤5%",
        Some(_) => "cv>5%",
        None => "no noise estimate",
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hosts, days, seeds] = args.as_slice() else {
        anyhow::bail!("usage: accuracy_bench HOSTS DAYS SEED[,SEED…]");
    };
    let hosts: usize = hosts.parse().context("HOSTS")?;
    let days: u32 = days.parse().context("DAYS")?;
    let seeds: Vec<u64> = seeds.split(',').map(|s| s.parse()).collect::<Result<_, _>>().context("SEEDS")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let end = NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date");
    let opts = Options::default();
    let mut evaluations = Vec::new();
    let mut deltas: BTreeMap<(String, &'static str), Tally> = BTreeMap::new();
    let (mut outlier_truth, mut outlier_found, mut outlier_flagged, mut outlier_false) = (0, 0, 0, 0);
    let mut outlier_one_metric = 0;
    println!("# Accuracy: {hosts} hosts × {days} nights, seeds {seeds:?}\n");
    for &seed in &seeds {
        let dir = tempfile::tempdir()?;
        let dataset = Dataset::open(dir.path().to_str().expect("utf-8 path"))?;
        let synth = SynthOptions { hosts, days, seed, end, samples: false };
        let started = Instant::now();
        let summary = runtime.block_on(generate(&dataset, &synth))?;
        let generated = started.elapsed();
        let truth: GroundTruth =
            serde_json::from_slice(&std::fs::read(dir.path().join("ground_truth.json"))?)?;
        let started = Instant::now();
        let mut loader = Loader::new(dataset, DateRange::default());
        let measurements = runtime.block_on(loader.committed_measurements())?.context("no measurements")?;
        let series = load_series(measurements)?;
        let runs = read_runs(runtime.block_on(loader.scan(Table::Runs))?.context("no runs")?)?;
        let loaded = started.elapsed();

        let labels: Vec<Label> = truth
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Step | EventKind::Upgrade | EventKind::Drift))
            .filter(|e| e.kind == EventKind::Drift || e.magnitude != 0.0)
            .map(|e| Label {
                host: e.host.clone(),
                probe: e.probe.clone(),
                metric: e.metric.clone(),
                params: Some(e.params.clone()),
                date: e.date,
                end: e.end_date,
                magnitude: Some(e.magnitude),
            })
            .collect();
        let started = Instant::now();
        let evaluation = evaluate(&series, &labels, &opts);
        let evaluated = started.elapsed();
        eprintln!(
            "seed {seed}: {} measurements, generated in {:.1?}, loaded {} series in {:.1?}, evaluated in {:.1?}",
            summary.measurements,
            generated,
            series.len(),
            loaded,
            evaluated
        );

        // Deltas of every upgrade event, split at its night.
        let by_key: BTreeMap<(&str, &str, &str, &str), &NightlySeries> = series
            .iter()
            .map(|s| {
                ((s.key.host.as_str(), s.key.probe.as_str(), s.key.metric.as_str(), s.key.params.as_str()), s)
            })
            .collect();
        for e in truth.events.iter().filter(|e| e.kind == EventKind::Upgrade) {
            let Some(s) =
                by_key.get(&(e.host.as_str(), e.probe.as_str(), e.metric.as_str(), e.params.as_str()))
            else {
                continue;
            };
            let at = midnight_micros(e.date);
            let split = Split::At(BTreeMap::from([(e.host.clone(), at)]));
            let Some(d) = host_delta(s, &split, 7, &DeltaOptions::default()) else { continue };
            let effect = match e.magnitude.abs() {
                0.0 => "A/A (no effect)".to_string(),
                m if m < 0.05 => "2.5–5 % effect".to_string(),
                m if m < 0.1 => "5–10 % effect".to_string(),
                _ => "≥ 10 % effect".to_string(),
            };
            let tally = deltas.entry((effect, noise_bucket(d.noise_cv))).or_default();
            tally.cases += 1;
            let better = (e.magnitude > 0.0) == s.higher_is_better;
            let right = if e.magnitude == 0.0 {
                "no_change"
            } else if better {
                "improved"
            } else {
                "regressed"
            };
            match d.verdict.as_str() {
                v if v == right => tally.correct += 1,
                "no_change" => tally.no_change += 1,
                "inconclusive" => tally.inconclusive += 1,
                _ => tally.wrong += 1,
            }
        }

        // Fleet outliers against the injected (host, probe) pairs.
        let truth_pairs: BTreeSet<(String, String)> = truth
            .events
            .iter()
            .filter(|e| e.kind == EventKind::OutlierHost)
            .map(|e| (e.host.clone(), e.probe.clone()))
            .collect();
        let worse: Vec<Outlier> = fleet_outliers(&series, &host_classes(&runs))
            .into_iter()
            .filter(|o| o.side == Side::Worse)
            .collect();
        let flagged: BTreeSet<(String, String)> =
            worse.iter().map(|o| (o.host.clone(), o.probe.clone())).collect();
        outlier_truth += truth_pairs.len();
        outlier_found += truth_pairs.intersection(&flagged).count();
        outlier_flagged += worse.len();
        outlier_one_metric += worse.iter().filter(|o| o.basis == Basis::Metric).count();
        // A flag that is neither an injected outlier nor a host with a step or drift of 5 % or
        // more there (a host 30 % slower since a step is rightly unlike its peers): on the
        // probe for a probe-wide flag, on that very metric for a flag of one metric alone.
        let higher_is_better = |e: &InjectedEvent| {
            fathom_datasets::catalogue::METRICS
                .iter()
                .find(|m| m.probe == e.probe && m.metric == e.metric)
                .is_none_or(|m| m.higher_is_better)
        };
        let changed = |e: &&InjectedEvent| {
            e.kind == EventKind::OutlierHost
                || (matches!(e.kind, EventKind::Step | EventKind::Drift)
                    && e.magnitude.abs() >= 0.05
                    && (e.magnitude > 0.0) != higher_is_better(e))
        };
        let stepped: BTreeSet<(String, String)> =
            truth.events.iter().filter(changed).map(|e| (e.host.clone(), e.probe.clone())).collect();
        let stepped_metrics: BTreeSet<(String, String)> = truth
            .events
            .iter()
            .filter(changed)
            .map(|e| (e.host.clone(), metric_label(&e.probe, &e.metric, &e.params)))
            .collect();
        outlier_false += worse
            .iter()
            .filter(|o| match o.basis {
                Basis::Probe => !stepped.contains(&(o.host.clone(), o.probe.clone())),
                Basis::Metric => !stepped_metrics.contains(&(o.host.clone(), o.worst_metric.clone())),
            })
            .count();
        evaluations.push(evaluation);
    }
    report_changes(&evaluations);
    println!("\n## Deltas of the injected roll-outs (7 nights a side)\n");
    println!("| effect | noise | cases | correct | no change | inconclusive | wrong |");
    println!("|---|---|---|---|---|---|---|");
    let effects = ["A/A (no effect)", "2.5–5 % effect", "5–10 % effect", "≥ 10 % effect"];
    let noises = ["cv≤1%", "cv≤2%", "cv≤3%", "cv≤5%", "cv>5%", "no noise estimate"];
    let rank = |names: &[&str], n: &str| names.iter().position(|x| *x == n).unwrap_or(names.len());
    let mut rows: Vec<_> = deltas.iter().collect();
    rows.sort_by_key(|((effect, noise), _)| (rank(&effects, effect), rank(&noises, noise)));
    for ((effect, noise), t) in rows {
        println!(
            "| {effect} | {noise} | {} | {} | {} | {} | {} |",
            t.cases,
            t.rate(t.correct),
            t.rate(t.no_change),
            t.rate(t.inconclusive),
            t.rate(t.wrong)
        );
    }
    println!("\n## Fleet outliers\n");
    println!(
        "injected (host, probe) pairs {outlier_truth}, found {outlier_found}; flagged worse {outlier_flagged} ({outlier_one_metric} by one metric alone), of which {outlier_false} neither injected nor on a probe (a metric, for one-metric rows) with a step or drift of 5 % or more for the worse"
    );
    Ok(())
}

fn report_changes(evaluations: &[Evaluation]) {
    let sum = |f: &dyn Fn(&Evaluation) -> f64| evaluations.iter().map(f).sum::<f64>();
    let (true_r, false_r) = (sum(&|e| e.true_reports as f64), sum(&|e| e.false_reports as f64));
    println!("## Change points\n");
    println!(
        "- looking back: precision {:.3} ({true_r} right, {false_r} wrong, {} in drifts), recall {:.3} of {} labels",
        true_r / (true_r + false_r),
        sum(&|e| e.neutral_reports as f64),
        sum(&|e| e.overall.found as f64) / sum(&|e| e.overall.labels as f64),
        sum(&|e| e.overall.labels as f64)
    );
    let mut by_noise: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for e in evaluations {
        for (noise, p) in &e.precision_by_noise {
            let t = by_noise.entry(noise).or_default();
            t.0 += p.true_reports;
            t.1 += p.false_reports;
            t.2 += p.misplaced_reports;
            t.3 += p.false_alarms;
        }
    }
    let mut by_noise: Vec<_> = by_noise.into_iter().collect();
    by_noise.sort_by_key(|(noise, _)| bucket_order(noise));
    let cells: Vec<String> = by_noise
        .iter()
        .map(|(noise, (t, f, m, a))| {
            format!(
                "{noise} {:.3} ({t} right, {f} wrong: {m} nearest a label, {a} near none)",
                *t as f64 / (*t + *f).max(1) as f64
            )
        })
        .collect();
    println!("- precision by the series' noise: {}", cells.join("; "));
    println!(
        "- series without events: {} reports in {:.0} series-years ({:.3} per 1,000 series-years)",
        sum(&|e| e.quiet_reports as f64),
        sum(&|e| e.quiet_series_years),
        1000.0 * sum(&|e| e.quiet_reports as f64) / sum(&|e| e.quiet_series_years)
    );
    // The goal's scope pooled over the seeds: steps ≥ 5 % on series at CV ≤ 2 %.
    let h = |f: &dyn Fn(&Evaluation) -> usize| evaluations.iter().map(f).sum::<usize>();
    let (right, misplaced, alarms) = (
        h(&|e| e.headline.true_reports),
        h(&|e| e.headline.misplaced_reports),
        h(&|e| e.headline.false_alarms),
    );
    let (labels, found) = (h(&|e| e.headline.labels), h(&|e| e.headline.found));
    let mut delays: Vec<f64> = evaluations.iter().flat_map(|e| e.headline.delays.iter().copied()).collect();
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&delays, q).unwrap_or(f64::NAN);
    println!(
        "- steps ≥ 5 % on series at CV ≤ 2 % (the goal's scope; a wrong report belongs to the label it is nearest, within 30 nights): recall {:.3} ({found} of {labels}), precision {:.3} ({right} right, {misplaced} nearest such a change but more than 3 nights off or reported twice, {alarms} false alarms), delay median {:.1}, p90 {:.1} nights over {} found night by night",
        found as f64 / labels.max(1) as f64,
        right as f64 / (right + misplaced + alarms).max(1) as f64,
        at(0.5),
        at(0.9),
        delays.len()
    );
    println!("\n| step / noise | labels | recall (±3 nights) | median delay | p90 delay |");
    println!("|---|---|---|---|---|");
    let mut cells: BTreeMap<String, (usize, usize, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for e in evaluations {
        for (k, s) in &e.by_size_and_noise {
            let c = cells.entry(k.clone()).or_default();
            c.0 += s.labels;
            c.1 += s.found;
            c.2.extend(s.median_delay);
            c.3.extend(s.p90_delay);
        }
    }
    let mut cells: Vec<_> = cells.into_iter().collect();
    cells.sort_by_key(|(k, _)| bucket_order(k));
    for (k, (labels, found, med, p90)) in cells {
        // Seeds' medians averaged: each seed's median and 90th percentile, then their mean.
        let mean = |v: &[f64]| {
            if v.is_empty() { "-".into() } else { format!("{:.1}", v.iter().sum::<f64>() / v.len() as f64) }
        };
        println!(
            "| {k} | {labels} | {:.3} | {} | {} |",
            found as f64 / labels as f64,
            mean(&med),
            mean(&p90)
        );
    }
}
