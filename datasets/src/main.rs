//! `fathom-datasets`: the dataset's own tools — print the schema, validate and compact a
//! dataset, and generate a synthetic fleet.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use fathom_datasets::compact::{self, CompactOptions, LeftReason, Recovery};
use fathom_datasets::human::{check_cli_url, format_count};
use fathom_datasets::store::{Dataset, default_url};
use fathom_datasets::{schema, synth, validate};

#[derive(Parser)]
#[command(name = "fathom-datasets", version, about = "Tools for Fathom's Parquet dataset")]
struct Cli {
    /// More log output on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the dataset contract: tables, partitions, columns and types.
    ///
    /// Example: fathom-datasets schema
    Schema {
        /// Print the metric catalogue (every probe's metrics) as a Markdown table instead.
        #[arg(long)]
        metrics: bool,
    },
    /// Check every Parquet file of a dataset against the contract.
    ///
    /// Each bad file is printed with the reason; the exit code is 1 if any is bad.
    /// Example: fathom-datasets validate s3://bench/fathom
    Validate {
        /// The dataset URL: a local path, file://, memory:// or s3:// (default: the local dataset).
        url: Option<String>,
    },
    /// Merge each day's small files into one file per table, sorted by host, probe, metric.
    ///
    /// Rows are counted and hashed before and after; any difference stops it with nothing
    /// changed. Safe while collectors upload (undelivered uploads are left for the next run) and
    /// while Fathom reads; an interrupted compaction is finished or rolled back by the next one.
    /// Example: fathom-datasets compact s3://bench/fathom --date 2026-03-01
    Compact {
        /// The dataset URL: a local path, file:// or s3:// (default: the local dataset).
        url: Option<String>,
        /// Only this day, YYYY-MM-DD (default: every day with more than one file in a table).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Read, merge and check everything, print what would be merged, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Generate a synthetic fleet with injected events and their ground truth.
    ///
    /// Writes one file per table per day plus ground_truth.json at the dataset root.
    /// Example: fathom-datasets synth --out /tmp/fleet --hosts 200 --days 365 --seed 7
    Synth {
        /// Where to write the dataset (a local path, file://, memory:// or s3://).
        #[arg(long)]
        out: String,
        #[arg(long, default_value_t = 50)]
        hosts: usize,
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The last night generated, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        end: Option<NaiveDate>,
        /// Also write every raw repetition to the samples table (about 5× the rows).
        #[arg(long)]
        samples: bool,
        /// Write even if --out already holds a dataset (its files are overwritten or mixed in).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fathom_datasets::human::init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether any table or the ground truth is already there.
async fn holds_data(dataset: &Dataset) -> Result<bool> {
    for table in fathom_datasets::Table::ALL {
        if !dataset.list_files(table, Default::default()).await?.is_empty() {
            return Ok(true);
        }
    }
    Ok(dataset.exists(&dataset.child(synth::GROUND_TRUTH_FILE)).await?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Schema { metrics } => {
            if metrics {
                print!("{}", fathom_datasets::catalogue::markdown_table());
            } else {
                print!("{}", schema::describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { url } => {
            let url = url.unwrap_or_else(default_url);
            check_cli_url(&url).map_err(anyhow::Error::msg)?;
            let dataset = Dataset::open(&url)?;
            let report = runtime.block_on(validate::validate(&dataset))?;
            if report.files == 0 {
                anyhow::bail!(
                    "{} has no Parquet files under runs/, measurements/ or samples/: is it a Fathom dataset?",
                    dataset.url()
                );
            }
            for p in &report.problems {
                println!("bad: {}: {}", p.path, p.reason);
            }
            let [runs, measurements, samples] = report.rows;
            println!(
                "{}: {} files checked, {} bad; rows: {runs} runs, {measurements} measurements, {samples} samples",
                dataset.url(),
                report.files,
                report.problems.len(),
            );
            if report.uncommitted_runs > 0 {
                println!(
                    "note: {} runs have measurements but no runs row yet (uncommitted; readers ignore them)",
                    report.uncommitted_runs
                );
            }
            Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Compact { url, date, dry_run } => {
            let url = url.unwrap_or_else(default_url);
            check_cli_url(&url).map_err(anyhow::Error::msg)?;
            let dataset = Dataset::open(&url)?;
            let opts = CompactOptions { date, dry_run, ..Default::default() };
            let report = runtime
                .block_on(compact::compact(&dataset, &opts))
                .with_context(|| format!("compacting {}", dataset.url()))?;
            print_compaction(&dataset, &report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth { out, hosts, days, seed, end, samples, force } => {
            anyhow::ensure!(hosts > 0 && days > 0, "--hosts and --days must be at least 1");
            check_cli_url(&out).map_err(anyhow::Error::msg)?;
            let dataset = Dataset::create(&out)?;
            if !force && runtime.block_on(holds_data(&dataset))? {
                anyhow::bail!(
                    "{} already holds a dataset: choose an empty folder, or pass --force to write into it",
                    dataset.url()
                );
            }
            let end = end.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let opts = synth::SynthOptions { hosts, days, seed, end, samples };
            let started = std::time::Instant::now();
            let s = runtime.block_on(synth::generate(&dataset, &opts))?;
            println!(
                "{}: {} hosts, {} runs, {} measurements, {} samples, {} events, {:.1} MB in {:.1} s",
                dataset.url(),
                s.hosts,
                s.runs,
                s.measurements,
                s.samples,
                s.events,
                s.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_compaction(dataset: &Dataset, report: &compact::Report) {
    let would = if report.dry_run { "would be " } else { "" };
    for r in &report.recovered {
        let what = match r.action {
            Recovery::Finished => "finished (its outputs were all stored)",
            Recovery::RolledBack => "rolled back (not all its outputs were stored)",
        };
        println!("{} interrupted compaction {}: {would}{what}", r.date, r.id);
    }
    for m in &report.merged {
        println!(
            "{} {}: {} files → {}, {} rows, hash {} = {}",
            m.date,
            m.table,
            format_count(m.inputs.len() as u64),
            m.outputs.len(),
            format_count(m.output.rows),
            m.input.short(),
            m.output.short(),
        );
        if report.dry_run {
            for input in &m.inputs {
                println!("  {input}");
            }
        }
    }
    let mut undelivered = 0;
    for l in &report.left {
        match &l.reason {
            LeftReason::Undelivered => {
                undelivered += 1;
                println!(
                    "pending: {}: no delivered marker yet (upload in progress?), left for the next run",
                    l.path
                )
            }
            LeftReason::Unreadable(reason) => println!("bad: {}: {reason} (left in place)", l.path),
            LeftReason::OtherLayout(reason) => println!("kept: {}: {reason}, left as it is", l.path),
        }
    }
    let files_in: usize = report.merged.iter().map(|m| m.inputs.len()).sum();
    let files_out: usize = report.merged.iter().map(|m| m.outputs.len()).sum();
    let rows: u64 = report.merged.iter().map(|m| m.output.rows).sum();
    let mut summary = if report.merged.is_empty() {
        format!("{}: nothing to compact", dataset.url())
    } else {
        format!(
            "{}: {} {} days, {} files → {}, {} rows, every row checked",
            dataset.url(),
            if report.dry_run { "would compact" } else { "compacted" },
            report.days(),
            format_count(files_in as u64),
            format_count(files_out as u64),
            format_count(rows),
        )
    };
    let other = report.left.len() - undelivered;
    if undelivered > 0 {
        summary.push_str(&format!("; {undelivered} files of undelivered uploads left"));
    }
    if other > 0 {
        summary.push_str(&format!("; {other} files left as they are (see above)"));
    }
    if report.dry_run {
        summary.push_str(" (dry run: nothing written)");
    }
    println!("{summary}");
}
