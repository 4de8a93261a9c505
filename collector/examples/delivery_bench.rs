//! How fast a night's runs go through the spool: `N` runs of `M` measurements each are spooled
//! (encoded, written, synced, renamed), then flushed to a dataset, and both are timed. Used for
//! the delivery figures in docs/PERFORMANCE.md, with `fathom-datasets compact` and
//! `fathom-analyzer summary` timed on the dataset it leaves:
//!
//! ```sh
//! cargo run --example delivery_bench -- DATASET_URL SPOOL_DIR RUNS METRICS
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use fathom_collector::spool::{DEFAULT_LIMIT, Spool};
use fathom_datasets::write::EncodedRun;
use fathom_datasets::{Measurement, fixtures};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, spool_dir, runs, metrics] = args.as_slice() else {
        anyhow::bail!("usage: delivery_bench DATASET_URL SPOOL_DIR RUNS METRICS");
    };
    let (runs, metrics): (usize, usize) =
        (runs.parse().context("RUNS")?, metrics.parse().context("METRICS")?);
    let spool = Spool::open(std::path::Path::new(spool_dir), DEFAULT_LIMIT * 8)?;
    let started_at = Utc::now().to_rfc3339();
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..runs {
        let mut run = fixtures::run(&format!("host-{i:05}"), &started_at);
        run.labels = [("site".to_string(), format!("site-{}", i % 7))].into();
        run.suite = "standard".into();
        run.schedule = Some("nightly".into());
        let measurements: Vec<Measurement> = (0..metrics)
            .map(|m| {
                let value = 1000.0 + (i * 31 + m * 17) as f64 % 97.0;
                Measurement {
                    probe: format!("cpu.probe{}", m / 6),
                    category: "cpu".into(),
                    metric: format!("metric_{}", m % 6),
                    unit: "MB/s".into(),
                    higher_is_better: true,
                    params: "threads=all".into(),
                    value,
                    mean: Some(value * 1.001),
                    stddev: Some(value * 0.01),
                    cv: Some(0.01),
                    min: Some(value * 0.98),
                    max: Some(value * 1.02),
                    n: 7,
                    disturbed: false,
                    foreign_cpu: Some(0.01),
                }
            })
            .collect();
        let encoded = EncodedRun::encode(&run, &measurements, &[])?;
        bytes += encoded.bytes();
        spool.add(url, &encoded)?;
    }
    let spooled = started.elapsed();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let report = runtime.block_on(spool.flush(None))?;
    let flushed = started.elapsed();
    anyhow::ensure!(report.waiting == 0 && report.errors.is_empty(), "flush left runs: {:?}", report.errors);
    println!(
        "{runs} runs × {metrics} measurements ({:.1} MB of Parquet): spooled in {:.2} s ({:.0} runs/s), \
         flushed to {url} in {:.2} s ({:.0} runs/s)",
        bytes as f64 / 1e6,
        spooled.as_secs_f64(),
        runs as f64 / spooled.as_secs_f64(),
        flushed.as_secs_f64(),
        runs as f64 / flushed.as_secs_f64()
    );
    Ok(())
}
