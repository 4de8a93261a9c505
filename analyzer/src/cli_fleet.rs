//! The binary's fleet commands (trends, anomalies, stability, forecast, delta): load the series
//! once, run one analysis, print text or JSON. Part of `main.rs`, not of the library.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use fathom_analyzer::analyses::anomalies::change_points;
use fathom_analyzer::analyses::changepoint::Options;
use fathom_analyzer::analyses::delta::{Split, deltas};
use fathom_analyzer::analyses::delta_stats::DeltaOptions;
use fathom_analyzer::analyses::evaluate::{evaluate, parse_labels};
use fathom_analyzer::analyses::forecast::{Limit, forecasts};
use fathom_analyzer::analyses::outliers::{fleet_outliers, host_classes};
use fathom_analyzer::analyses::stability::stability;
use fathom_analyzer::analyses::trends::trends;
use fathom_analyzer::load::Loader;
use fathom_analyzer::nightly::{self, NightlyOptions};
use fathom_analyzer::report::fleet as text;
use fathom_analyzer::runs::RunInfo;
use fathom_analyzer::selector::{Selector, select};
use fathom_analyzer::series::{NightlySeries, load_series};
use serde_json::{Value, json};

use crate::{Format, Window, all_runs, open, print_skipped, retrying};

/// Which series a fleet command looks at.
#[derive(clap::Args)]
pub struct Scope {
    #[command(flatten)]
    pub window: Window,
    /// Only hosts matching this glob (db-*).
    #[arg(long)]
    pub hosts: Option<glob::Pattern>,
    /// Only metrics matching this glob of PROBE.METRIC (storage.*, network.tcp.send_*).
    #[arg(long)]
    pub metrics: Option<glob::Pattern>,
    /// Text output: every series, not only the findings.
    #[arg(long)]
    pub all: bool,
}

pub struct Loaded {
    pub loader: Loader,
    pub series: Vec<NightlySeries>,
}

pub fn load(runtime: &tokio::runtime::Runtime, scope: &Scope) -> Result<Loaded> {
    let mut loader = open(&scope.window)?;
    let mut series =
        retrying(&mut loader, |loader| match runtime.block_on(loader.committed_measurements())? {
            Some(m) => load_series(m).context("reading the series"),
            None => Ok(Vec::new()),
        })?;
    series.retain(|s| {
        scope.hosts.as_ref().is_none_or(|p| p.matches(&s.key.host))
            && scope.metrics.as_ref().is_none_or(|p| p.matches(&format!("{}.{}", s.key.probe, s.key.metric)))
    });
    print_skipped(&loader);
    if series.is_empty() {
        eprintln!(
            "warning: no committed measurements in {} match the chosen dates and filters",
            loader.dataset.url()
        );
    }
    Ok(Loaded { loader, series })
}

/// The JSON envelope every fleet command prints.
fn envelope(scope: &Scope, loaded: &Loaded, body: Value) -> Value {
    let mut out = json!({
        "dataset": loaded.loader.dataset.url(),
        "since": scope.window.since,
        "until": scope.window.until,
        "series": loaded.series.len(),
        "skipped_files": loaded.loader.skipped,
    });
    if let (Value::Object(out), Value::Object(body)) = (&mut out, body) {
        out.extend(body);
    }
    out
}

fn print_json(v: &Value) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

pub fn trends_command(runtime: &tokio::runtime::Runtime, scope: Scope) -> Result<ExitCode> {
    let loaded = load(runtime, &scope)?;
    let rows = trends(&loaded.series, &Options::default());
    if scope.window.format() == Format::Json {
        return print_json(&envelope(&scope, &loaded, json!({ "trends": rows })));
    }
    let shown: Vec<_> = rows
        .iter()
        .filter(|t| scope.all || t.significant || t.deviation_sigmas.is_some_and(|s| s.abs() >= 3.0))
        .collect();
    print!("{}", text::trends(&shown, rows.len()));
    Ok(ExitCode::SUCCESS)
}

pub fn anomalies_command(runtime: &tokio::runtime::Runtime, scope: Scope, ongoing: bool) -> Result<ExitCode> {
    let mut loaded = load(runtime, &scope)?;
    let runs = if loaded.series.is_empty() { Vec::new() } else { all_runs(runtime, &mut loaded.loader)? };
    let mut changes = change_points(&loaded.series, &Options::default());
    if ongoing {
        changes.retain(|a| a.ongoing);
    }
    let classes = host_classes(&runs);
    let outliers = fleet_outliers(&loaded.series, &classes);
    if scope.window.format() == Format::Json {
        let body =
            json!({ "change_points": changes, "fleet_outliers": outliers, "classes": class_sizes(&classes) });
        return print_json(&envelope(&scope, &loaded, body));
    }
    // Newest first: what changed last night is what an operator reads first.
    let mut shown: Vec<_> = changes.iter().collect();
    shown.sort_by(|a, b| b.date.cmp(&a.date).then(a.key.cmp(&b.key)));
    print!("{}", text::anomalies(&shown, &outliers));
    Ok(ExitCode::SUCCESS)
}

fn class_sizes(classes: &BTreeMap<String, String>) -> BTreeMap<&str, usize> {
    let mut sizes = BTreeMap::new();
    for class in classes.values() {
        *sizes.entry(class.as_str()).or_insert(0) += 1;
    }
    sizes
}

pub fn stability_command(runtime: &tokio::runtime::Runtime, scope: Scope) -> Result<ExitCode> {
    let loaded = load(runtime, &scope)?;
    let rows = stability(&loaded.series);
    if scope.window.format() == Format::Json {
        return print_json(&envelope(&scope, &loaded, json!({ "stability": rows })));
    }
    print!("{}", text::stability(&rows));
    Ok(ExitCode::SUCCESS)
}

pub fn forecast_command(
    runtime: &tokio::runtime::Runtime,
    scope: Scope,
    limit_args: Vec<Limit>,
    limits_file: Option<String>,
) -> Result<ExitCode> {
    let limits = all_limits(limit_args, limits_file.as_deref())?;
    anyhow::ensure!(
        !limits.is_empty(),
        "give the limits to forecast against: --limit 'storage.rand4k.read_lat_p99<2000' (repeatable) or --limits FILE"
    );
    let loaded = load(runtime, &scope)?;
    let rows = forecasts(&loaded.series, &limits, &Options::default());
    if rows.is_empty() && !loaded.series.is_empty() {
        eprintln!("warning: no series matches any of the limits' metrics (PROBE.METRIC globs)");
    }
    if scope.window.format() == Format::Json {
        return print_json(&envelope(&scope, &loaded, json!({ "forecasts": rows })));
    }
    print!("{}", text::forecasts(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `--event`: a date or time (the same for every host), or a selector (per host, its first
/// matching run).
#[derive(Debug, Clone)]
pub enum Event {
    At(i64),
    FirstRun(Selector),
}

pub fn parse_event(text: &str) -> Result<Event, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Event::At(t.with_timezone(&Utc).timestamp_micros()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Event::At(fathom_analyzer::series::midnight_micros(d)));
    }
    if text.contains('=') {
        return Selector::parse(text).map(Event::FirstRun).map_err(|e| e.to_string());
    }
    Err(format!(
        "--event {text:?}: give a date (2026-06-01), an RFC 3339 time (2026-06-01T12:00:00Z) or a selector of the first run after it (tag.upgrade=kernel-6.8)"
    ))
}

pub struct DeltaArgs {
    pub event: Option<Event>,
    pub before: Option<Selector>,
    pub after: Option<Selector>,
    pub nights: usize,
    pub options: DeltaOptions,
}

fn split_of(runs: &[RunInfo], args: &DeltaArgs) -> Result<Split> {
    let measured = |r: &&RunInfo| r.measured();
    match (&args.event, &args.before, &args.after) {
        (Some(Event::At(t)), None, None) => {
            let hosts: BTreeSet<&str> = runs.iter().map(|r| r.host.as_str()).collect();
            Ok(Split::At(hosts.into_iter().map(|h| (h.to_string(), *t)).collect()))
        }
        (Some(Event::FirstRun(sel)), None, None) => {
            let mut first: BTreeMap<String, i64> = BTreeMap::new();
            for r in select(runs, sel, "--event").map_err(anyhow::Error::msg)?.into_iter().filter(measured) {
                let t = first.entry(r.host.clone()).or_insert(r.started_at);
                *t = (*t).min(r.started_at);
            }
            Ok(Split::At(first))
        }
        (None, Some(before), Some(after)) => {
            let side = |sel: &Selector, flag: &str| -> Result<BTreeMap<String, BTreeSet<i64>>> {
                let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
                for r in select(runs, sel, flag).map_err(anyhow::Error::msg)?.into_iter().filter(measured) {
                    out.entry(r.host.clone()).or_default().insert(r.started_at);
                }
                Ok(out)
            };
            Ok(Split::Runs { before: side(before, "--before")?, after: side(after, "--after")? })
        }
        _ => anyhow::bail!("give either --event WHEN, or both --before SELECTOR and --after SELECTOR"),
    }
}

pub fn delta_command(runtime: &tokio::runtime::Runtime, scope: Scope, args: DeltaArgs) -> Result<ExitCode> {
    let mut loaded = load(runtime, &scope)?;
    let runs = all_runs(runtime, &mut loaded.loader)?;
    let split = split_of(&runs, &args)?;
    let (hosts, rollups) = deltas(&loaded.series, &split, args.nights, &args.options);
    if hosts.is_empty() {
        eprintln!("warning: no host has undisturbed runs on both sides of the event");
    }
    if scope.window.format() == Format::Json {
        let body = json!({
            "nights": args.nights,
            "confidence": args.options.confidence,
            "min_effect": args.options.min_effect,
            "fleet": rollups,
            "hosts": hosts,
        });
        return print_json(&envelope(&scope, &loaded, body));
    }
    print!("{}", text::deltas(&rollups, &hosts, scope.all));
    Ok(ExitCode::SUCCESS)
}

pub fn evaluate_command(
    runtime: &tokio::runtime::Runtime,
    scope: Scope,
    labels_path: &str,
    (headline_step, headline_cv): (f64, f64),
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(labels_path).with_context(|| format!("reading {labels_path}"))?;
    let labels = parse_labels(&text, labels_path)?;
    let loaded = load(runtime, &scope)?;
    let mut e = evaluate(&loaded.series, &labels, &Options::default());
    e.headline = e.scoped(headline_step, headline_cv);
    if scope.window.format() == Format::Json {
        return print_json(&envelope(
            &scope,
            &loaded,
            json!({ "labels_file": labels_path, "evaluation": e }),
        ));
    }
    print!("{}", text::evaluation(&e));
    Ok(ExitCode::SUCCESS)
}

/// `--limit` values and the limits of a `--limits` file together.
pub fn all_limits(mut limits: Vec<Limit>, file: Option<&str>) -> Result<Vec<Limit>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        limits.extend(Limit::parse_file(&text, path)?);
    }
    Ok(limits)
}

pub fn nightly_command(
    runtime: &tokio::runtime::Runtime,
    dataset: Option<String>,
    options: NightlyOptions,
    format: Format,
) -> Result<ExitCode> {
    let url = dataset.unwrap_or_else(fathom_datasets::store::default_url);
    fathom_datasets::human::check_cli_url(&url).map_err(anyhow::Error::msg)?;
    let dataset = fathom_datasets::store::Dataset::open(&url)?;
    let started = std::time::Instant::now();
    let done = nightly::run(runtime, &dataset, &options).context("the nightly analysis")?;
    let d = &done.digest;
    for s in &d.skipped_files {
        eprintln!("warning: skipped {}: {}", s.path, s.reason);
    }
    if format == Format::Json {
        return print_json(&serde_json::to_value(d)?);
    }
    println!(
        "night {} ({}, {} partitions read, {:.1} s): {} series of {} hosts",
        d.night,
        d.mode,
        d.partitions_read,
        started.elapsed().as_secs_f64(),
        d.series,
        d.hosts
    );
    print!("{}", text::digest(d));
    if options.dry_run {
        println!("dry run: nothing written");
    } else {
        println!("wrote {} files under {}/analysis/", done.written.len(), dataset.url());
    }
    Ok(ExitCode::SUCCESS)
}
