//! `fathom-analyzer`: turn the dataset into decisions.

mod cli_fleet;

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};
use fathom_analyzer::analyses::compare::{
    CompareReport, DEFAULT_LAST_RUNS, Side, Weights, hosts_of, overlap, side_stats,
};
use fathom_analyzer::analyses::delta_stats::DeltaOptions;
use fathom_analyzer::analyses::evaluate::{HEADLINE_MAX_CV, HEADLINE_MIN_STEP};
use fathom_analyzer::analyses::forecast::Limit;
use fathom_analyzer::analyses::rank::rank;
use fathom_analyzer::analyses::summary::{SummaryRow, summarize};
use fathom_analyzer::load::Loader;
use fathom_analyzer::report;
use fathom_analyzer::report::compare::Style;
use fathom_analyzer::report::text::summary_table;
use fathom_analyzer::runs::{RunInfo, read_runs};
use fathom_analyzer::selector::{Selector, select};
use fathom_datasets::Table;
use fathom_datasets::human::check_cli_url;
use fathom_datasets::store::{Dataset, DateRange, default_url};
use serde_json::json;

#[derive(Parser)]
#[command(name = "fathom-analyzer", version, about = "Analyse Fathom's benchmark dataset")]
struct Cli {
    /// More log output on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    /// Markdown (compare and rank).
    Markdown,
}

#[derive(clap::Args)]
struct Window {
    /// The dataset: a local path, file://, memory:// or s3:// (default: $FATHOM_DATASET or ~/.local/share/fathom/dataset).
    #[arg(long)]
    dataset: Option<String>,
    /// First partition date read, YYYY-MM-DD (inclusive).
    #[arg(long)]
    since: Option<NaiveDate>,
    /// Last partition date read, YYYY-MM-DD (inclusive).
    #[arg(long)]
    until: Option<NaiveDate>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Shorthand for --format json.
    #[arg(long)]
    json: bool,
}

impl Window {
    fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

#[derive(clap::Args)]
struct Scoring {
    /// Category weights of the overall score; categories left out keep their default.
    #[arg(long, value_parser = Weights::parse, default_value = "cpu=0.3,memory=0.2,storage=0.4,network=0.1")]
    weights: Weights,
    /// Runs per host and series a side uses: its last K (undisturbed ones first), median over them.
    #[arg(long, default_value_t = DEFAULT_LAST_RUNS, value_parser = last_runs)]
    last: usize,
}

fn last_runs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(k) if (1..=1000).contains(&k) => Ok(k),
        _ => Err(format!("{text:?} is not a whole number of runs from 1 to 1000")),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Compare a target with a source: per-metric ratios, category ratios, the weighted score, rating and recommendations.
    ///
    /// Selectors are comma-joined conditions that must all hold: host=, role=, suite=, tag.KEY=,
    /// any other key is a label; values may be globs (host=db-*).
    ///
    /// Example: fathom-analyzer compare --dataset s3://bench/fathom --source host=db-01 --target role=target,site=fra1 --format markdown
    Compare {
        #[command(flatten)]
        window: Window,
        /// The runs of the source (the system the target must replace).
        #[arg(long)]
        source: Selector,
        /// The runs of the target.
        #[arg(long)]
        target: Selector,
        #[command(flatten)]
        scoring: Scoring,
    },
    /// Rank every target host against one source, best first.
    ///
    /// Example: fathom-analyzer rank --source host=db-01 --targets role=target
    Rank {
        #[command(flatten)]
        window: Window,
        /// The runs of the source.
        #[arg(long)]
        source: Selector,
        /// The runs of the candidate targets; each host is ranked on its own.
        #[arg(long)]
        targets: Selector,
        #[command(flatten)]
        scoring: Scoring,
    },
    /// Per host × probe × metric: the latest value, the median of the 7 runs before it, and the change.
    ///
    /// Example: fathom-analyzer summary --dataset s3://bench/fathom --since 2026-01-01 --json
    Summary(Window),
    /// Per host × metric: the baseline (median of the 7 runs before the latest), the slope per
    /// 30 days with its 95 % interval (Theil–Sen since the last change point), and the latest
    /// run's deviation, also in noise units. Text shows the findings; JSON every series.
    ///
    /// Example: fathom-analyzer trends --dataset s3://bench/fathom --since 2026-01-01 --hosts 'db-*'
    Trends(cli_fleet::Scope),
    /// Change points in every host × metric series (degradations and improvements by the
    /// metric's direction: date, magnitude, confidence, whether the new level still holds), and
    /// fleet outliers: hosts far from their peers of the same hardware class. Methods:
    /// docs/ANALYSES.md.
    ///
    /// Example: fathom-analyzer anomalies --since 2026-09-01 --ongoing
    Anomalies {
        #[command(flatten)]
        scope: cli_fleet::Scope,
        /// Only change points whose new level still holds.
        #[arg(long)]
        ongoing: bool,
    },
    /// How noisy each host × metric is: the robust CV over the last 30 runs (the noise the
    /// detectors set their thresholds with) and the share of disturbed runs, graded steady,
    /// fair or noisy, so you can see which figures to trust.
    ///
    /// Example: fathom-analyzer stability --metrics 'storage.*'
    Stability(cli_fleet::Scope),
    /// When each host crosses a limit at its current trend, with a 95 % interval: a limit is
    /// PROBE.METRIC<VALUE (must stay below) or PROBE.METRIC>VALUE (must stay above), globs
    /// allowed, or a TOML file of [[limit]] tables (metric, optional hosts and params globs,
    /// max or min).
    ///
    /// Example: fathom-analyzer forecast --limit 'storage.rand4k.read_lat_p99<2000' --limit 'process.sample.rss_bytes<8e9'
    Forecast {
        #[command(flatten)]
        scope: cli_fleet::Scope,
        /// A limit (repeatable).
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<Limit>,
        /// A TOML file of limits.
        #[arg(long = "limits")]
        limits_file: Option<String>,
    },
    /// Before vs after an event (an upgrade), per host × metric: the change of the median
    /// (Hodges–Lehmann) with a rank-test interval and a verdict (improved, regressed, no_change,
    /// inconclusive with the nights per side that would settle it), and a roll-up per metric
    /// over the fleet.
    ///
    /// The event is a date or time (the same for every host), or a selector naming each host's
    /// first run after it (tag.upgrade=kernel-6.8); or --before and --after select each side's
    /// runs.
    ///
    /// Example: fathom-analyzer delta --event tag.upgrade=kernel-6.8 --metrics 'network.*'
    Delta {
        #[command(flatten)]
        scope: cli_fleet::Scope,
        /// The event: 2026-06-01, 2026-06-01T12:00:00Z, or a selector of each host's first run after it.
        #[arg(long, value_parser = cli_fleet::parse_event, conflicts_with_all = ["before", "after"])]
        event: Option<cli_fleet::Event>,
        /// The runs of the before side (with --after).
        #[arg(long, requires = "after")]
        before: Option<Selector>,
        /// The runs of the after side (with --before).
        #[arg(long, requires = "before")]
        after: Option<Selector>,
        /// Undisturbed runs per side: the last ones before the event, the first ones after.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(3..=365))]
        nights: u16,
        /// The smallest relative change worth acting on: "no change" means the nights could have
        /// shown one this large and did not.
        #[arg(long, default_value_t = 0.05)]
        min_effect: f64,
    },
    /// Every analysis over every series, written as Parquet tables under analysis/ in the same
    /// store (change_points, trends, stability, outliers, forecasts with --limit/--limits), with
    /// the state the next night starts from and a digest of what needs attention: one incident
    /// per host and night, however many metrics changed. Incremental from the last night's state
    /// unless --full; both give the same findings. Prints the digest.
    ///
    /// Example: fathom-analyzer nightly --dataset s3://bench/fathom --limits limits.toml
    Nightly {
        /// The dataset (default: $FATHOM_DATASET or ~/.local/share/fathom/dataset).
        #[arg(long)]
        dataset: Option<String>,
        /// The night analysed, YYYY-MM-DD (default: the latest partition with runs).
        #[arg(long)]
        night: Option<NaiveDate>,
        /// Read every partition instead of the last night's state and the new ones.
        #[arg(long)]
        full: bool,
        /// Ongoing changes from this many nights back are incidents.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        recent: u32,
        /// A limit to forecast against (repeatable), as in `forecast`.
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<Limit>,
        /// A TOML file of limits, as in `forecast`.
        #[arg(long = "limits")]
        limits_file: Option<String>,
        /// Analyse and print the digest, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Shorthand for --format json.
        #[arg(long)]
        json: bool,
    },
    /// Score the change point detector against your own labelled history: known changes as a
    /// CSV (header host,metric,date and optionally params, magnitude; metric as PROBE.METRIC) or
    /// JSON (an array of such objects, or a synthetic fleet's ground_truth.json). Prints
    /// precision and recall looking back (a report within 3 nights of a label finds it), the
    /// delay night by night, and false alarms per 1,000 series-years, by step size where the
    /// labels give magnitudes, and a headline over the changes you judge the detector by
    /// (`--headline-step`, `--headline-cv`).
    ///
    /// Example: fathom-analyzer evaluate --dataset /tmp/fleet --labels /tmp/fleet/ground_truth.json
    Evaluate {
        #[command(flatten)]
        scope: cli_fleet::Scope,
        /// The labels file.
        #[arg(long)]
        labels: String,
        /// The headline's scope: labelled changes of at least this size (0.05 = 5 %; 0: all) …
        #[arg(long, default_value_t = HEADLINE_MIN_STEP, value_parser = step_share)]
        headline_step: f64,
        /// … on series at most this noisy (robust CV, 0.02 = 2 %).
        #[arg(long, default_value_t = HEADLINE_MAX_CV, value_parser = fraction)]
        headline_cv: f64,
    },
    /// Find level shifts in one series of your own: the detector the nightly analyses use, with
    /// its defaults, on a CSV (`value` or `time,value`, a header optional) or a JSON array (of
    /// numbers, `[time, value]` pairs or `{"time", "value"}` objects). Missing points (empty,
    /// NaN, null) keep their index. Prints JSON: each change point as the 0-based index of the
    /// first point of the new segment (and its time where given), the levels before and after,
    /// the magnitude (after / before − 1) and the confidence.
    ///
    /// Example: fathom-analyzer changepoints --input series.csv
    Changepoints {
        /// The series file; `-` reads standard input.
        #[arg(long)]
        input: String,
        /// The fewest points a segment may have (a shorter excursion is not a level).
        #[arg(long)]
        min_segment: Option<usize>,
        /// The smallest relative change reported (0.01 = 1 %).
        #[arg(long)]
        min_magnitude: Option<f64>,
    },
}

/// A share such as 0.05: above 0 and below 1.
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{text:?} is not a share between 0 and 1 (0.05 = 5 %)")),
    }
}

/// A step size such as 0.05, from 0 (every step) to below 1.
fn step_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?} is not a step size from 0 to below 1 (0.05 = 5 %)")),
    }
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    Limit::parse_cli(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // `fathom-analyzer trends | head` ends quietly, as other command-line tools do, instead of
    // panicking on the closed pipe.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    fathom_datasets::human::init_logging(cli.verbose);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn summary_rows(runtime: &tokio::runtime::Runtime, loader: &mut Loader) -> Result<Vec<SummaryRow>> {
    match runtime.block_on(loader.committed_measurements())? {
        Some(measurements) => summarize(measurements).context("computing the summary"),
        None => Ok(Vec::new()),
    }
}

fn open(window: &Window) -> Result<Loader> {
    let url = window.dataset.clone().unwrap_or_else(default_url);
    check_cli_url(&url).map_err(anyhow::Error::msg)?;
    let dataset = Dataset::open(&url)?;
    Ok(Loader::new(dataset, DateRange { since: window.since, until: window.until }))
}

/// Every run in the window.
fn all_runs(runtime: &tokio::runtime::Runtime, loader: &mut Loader) -> Result<Vec<RunInfo>> {
    let Some(runs) = runtime.block_on(loader.scan(Table::Runs))? else {
        anyhow::bail!("{} holds no runs for the chosen dates", loader.dataset.url());
    };
    read_runs(runs).context("reading the runs table")
}

/// Runs `f` once more when it failed and a full decode drops a corrupt file.
fn retrying<T>(loader: &mut Loader, mut f: impl FnMut(&mut Loader) -> Result<T>) -> Result<T> {
    match f(loader) {
        Ok(v) => Ok(v),
        Err(first) if loader.recheck() == 0 => Err(first),
        Err(_) => f(loader),
    }
}

/// The pooled side of a selector's runs.
fn pooled_side(
    runtime: &tokio::runtime::Runtime,
    loader: &mut Loader,
    selector: &Selector,
    runs: &[&RunInfo],
    last: usize,
    flag: &str,
) -> Result<Side> {
    let measurements = runtime.block_on(loader.committed_measurements())?.ok_or_else(|| {
        anyhow::anyhow!("{} holds no measurements for the chosen dates", loader.dataset.url())
    })?;
    let stats = side_stats(measurements, runs, last, false).context("computing the side's figures")?;
    if stats.is_empty() {
        anyhow::bail!("{flag} {selector}: {} runs match, but none has measurements", runs.len());
    }
    Ok(Side { selector: selector.to_string(), hosts: hosts_of(runs), stats })
}

fn print_skipped(loader: &Loader) {
    for s in &loader.skipped {
        eprintln!("warning: skipped {}: {}", s.path, s.reason);
    }
}

fn style(format: Format) -> Style {
    if format == Format::Markdown { Style::Markdown } else { Style::Text }
}

fn run(command: Command) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        Command::Changepoints { input, min_segment, min_magnitude } => {
            changepoints(&input, min_segment, min_magnitude)
        }
        Command::Trends(scope) => cli_fleet::trends_command(&runtime, scope),
        Command::Nightly { dataset, night, full, recent, limits, limits_file, dry_run, format, json } => {
            let format = if json { Format::Json } else { format };
            let limits = cli_fleet::all_limits(limits, limits_file.as_deref())?;
            let options = fathom_analyzer::nightly::NightlyOptions { night, full, recent, limits, dry_run };
            cli_fleet::nightly_command(&runtime, dataset, options, format)
        }
        Command::Anomalies { scope, ongoing } => cli_fleet::anomalies_command(&runtime, scope, ongoing),
        Command::Stability(scope) => cli_fleet::stability_command(&runtime, scope),
        Command::Evaluate { scope, labels, headline_step, headline_cv } => {
            cli_fleet::evaluate_command(&runtime, scope, &labels, (headline_step, headline_cv))
        }
        Command::Forecast { scope, limits, limits_file } => {
            cli_fleet::forecast_command(&runtime, scope, limits, limits_file)
        }
        Command::Delta { scope, event, before, after, nights, min_effect } => {
            anyhow::ensure!(
                min_effect.is_finite() && (0.0..1.0).contains(&min_effect),
                "--min-effect must be a fraction from 0 to 1, e.g. 0.05"
            );
            let options = DeltaOptions { min_effect, ..DeltaOptions::default() };
            let args = cli_fleet::DeltaArgs { event, before, after, nights: usize::from(nights), options };
            cli_fleet::delta_command(&runtime, scope, args)
        }
        Command::Compare { window, source, target, scoring } => {
            let mut loader = open(&window)?;
            let report = retrying(&mut loader, |loader| {
                let runs = all_runs(&runtime, loader)?;
                let s = select(&runs, &source, "--source").map_err(anyhow::Error::msg)?;
                let t = select(&runs, &target, "--target").map_err(anyhow::Error::msg)?;
                let shared = overlap(&s, &t);
                if !shared.is_empty() {
                    anyhow::bail!(
                        "--source {source} and --target {target} select the same runs (hosts {}): make the selectors disjoint",
                        shared.join(", ")
                    );
                }
                let s = pooled_side(&runtime, loader, &source, &s, scoring.last, "--source")?;
                let t = pooled_side(&runtime, loader, &target, &t, scoring.last, "--target")?;
                Ok(CompareReport::new(s, t, scoring.weights.clone(), scoring.last))
            })?;
            print_skipped(&loader);
            match window.format() {
                Format::Json => {
                    let mut out = report::json::compare(&report);
                    out["dataset"] = json!(loader.dataset.url());
                    out["since"] = json!(window.since);
                    out["until"] = json!(window.until);
                    out["skipped_files"] = json!(loader.skipped);
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                f => print!("{}", report::compare::compare(&report, style(f))),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rank { window, source, targets, scoring } => {
            let mut loader = open(&window)?;
            let (side, ranked, not_ranked) = retrying(&mut loader, |loader| {
                let runs = all_runs(&runtime, loader)?;
                let s = select(&runs, &source, "--source").map_err(anyhow::Error::msg)?;
                let source_hosts: std::collections::BTreeSet<&str> =
                    s.iter().map(|r| r.host.as_str()).collect();
                // The source's own hosts are not candidates.
                let t: Vec<&RunInfo> = select(&runs, &targets, "--targets")
                    .map_err(anyhow::Error::msg)?
                    .into_iter()
                    .filter(|r| !source_hosts.contains(r.host.as_str()))
                    .collect();
                if t.is_empty() {
                    anyhow::bail!("--targets {targets}: every matching host is also a source host");
                }
                let side = pooled_side(&runtime, loader, &source, &s, scoring.last, "--source")?;
                let measurements = runtime
                    .block_on(loader.committed_measurements())?
                    .ok_or_else(|| anyhow::anyhow!("no measurements"))?;
                let stats = side_stats(measurements, &t, scoring.last, true)
                    .context("computing the targets' figures")?;
                let ranked =
                    rank(&side, &targets.to_string(), hosts_of(&t), stats, &scoring.weights, scoring.last);
                // Candidates with no completed run are named, not dropped in silence.
                let measured: std::collections::BTreeSet<&str> = t.iter().map(|r| r.host.as_str()).collect();
                let not_ranked: Vec<String> = runs
                    .iter()
                    .filter(|r| targets.matches(r) && !source_hosts.contains(r.host.as_str()))
                    .map(|r| r.host.as_str())
                    .filter(|h| !measured.contains(h))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                Ok((side, ranked, not_ranked))
            })?;
            print_skipped(&loader);
            match window.format() {
                Format::Json => {
                    let mut out = report::json::rank(&side, &ranked);
                    out["not_ranked"] = json!(not_ranked);
                    out["dataset"] = json!(loader.dataset.url());
                    out["since"] = json!(window.since);
                    out["until"] = json!(window.until);
                    out["skipped_files"] = json!(loader.skipped);
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                f => {
                    print!("{}", report::compare::rank(&side, &ranked, style(f)));
                    if !not_ranked.is_empty() {
                        println!(
                            "\nnot ranked (no completed run in the chosen dates): {}",
                            not_ranked.join(", ")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Summary(window) => {
            let url = window.dataset.clone().unwrap_or_else(default_url);
            check_cli_url(&url).map_err(anyhow::Error::msg)?;
            let dataset = Dataset::open(&url)?;
            let range = DateRange { since: window.since, until: window.until };
            let mut loader = Loader::new(dataset, range);
            let rows = match summary_rows(&runtime, &mut loader) {
                Ok(rows) => rows,
                // A corrupt page behind a valid footer: drop such files and run once more.
                Err(first) if loader.recheck() == 0 => return Err(first),
                Err(_) => summary_rows(&runtime, &mut loader)?,
            };
            match window.format() {
                Format::Json => {
                    let out = json!({
                        "dataset": loader.dataset.url(),
                        "since": window.since,
                        "until": window.until,
                        "skipped_files": loader.skipped,
                        "series": rows,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                Format::Text | Format::Markdown => {
                    if rows.is_empty() {
                        println!(
                            "no committed measurements in {} for the chosen dates",
                            loader.dataset.url()
                        );
                    } else {
                        print!("{}", summary_table(&rows));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn changepoints(input: &str, min_segment: Option<usize>, min_magnitude: Option<f64>) -> Result<ExitCode> {
    use fathom_analyzer::analyses::changepoint::{Options, detect, noise_cv};
    use std::io::Read as _;
    let (text, origin) = if input == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        (text, "stdin".to_string())
    } else {
        (std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?, input.to_string())
    };
    let series = fathom_analyzer::series_input::parse(&text, &origin)?;
    let mut options = Options::default();
    if let Some(m) = min_segment {
        anyhow::ensure!(m >= 1, "--min-segment must be at least 1");
        options.min_segment = m;
    }
    if let Some(m) = min_magnitude {
        anyhow::ensure!(m.is_finite() && m >= 0.0, "--min-magnitude must be a fraction ≥ 0, e.g. 0.02");
        options.min_magnitude = m;
    }
    let found = detect(&series.values, &options);
    let points: Vec<serde_json::Value> = found
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).expect("a change point serializes");
            if let Some(times) = &series.times {
                v["time"] = json!(times[c.index]);
            }
            v
        })
        .collect();
    let missing = series.values.iter().filter(|v| v.is_nan()).count();
    let out = json!({
        "input": origin,
        "points": series.values.len(),
        "missing": missing,
        "noise_cv": noise_cv(&series.values),
        "change_points": points,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
