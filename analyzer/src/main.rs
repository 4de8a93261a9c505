//! `fathom-analyzer`: turn the dataset into decisions.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};
use fathom_analyzer::analyses::summary::{SummaryRow, summarize};
use fathom_analyzer::load::Loader;
use fathom_analyzer::report::text::summary_table;
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

#[derive(Subcommand)]
enum Command {
    /// Per host × probe × metric: the latest value, the median of the 7 runs before it, and the change.
    ///
    /// Example: fathom-analyzer summary --dataset s3://bench/fathom --since 2026-01-01 --json
    Summary(Window),
}

fn main() -> ExitCode {
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

fn run(command: Command) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
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
                Format::Text => {
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
