//! `fathom-collector`: run probe suites on this host and append the results to the dataset.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fathom_collector::host;
use fathom_collector::output::{ProgressReporter, run_json, run_table};
use fathom_collector::params::{check_all, parse_overrides, parse_pair};
use fathom_collector::probe::{CancelToken, Probe};
use fathom_collector::probes::{self, EFFORT_PARAMS};
use fathom_collector::runner::{RunSpec, run_probes};
use fathom_collector::spool::{self, Delivered, Spool};
use fathom_collector::suite::Suite;
use fathom_datasets::human::check_cli_url;
use fathom_datasets::store::{Dataset, default_url};
use fathom_datasets::write::{EncodedRun, RunWrite, put_run};

#[derive(Parser)]
#[command(name = "fathom-collector", version, about = "Benchmark this host and record the results")]
struct Cli {
    /// More log output on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Source,
    Target,
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Validate schedule files and print the next fire times that fall inside their windows.
    ///
    /// Errors name the file, line and field. Example: fathom-collector schedules check schedules/
    Check {
        /// A schedule file, or a folder of *.toml files.
        path: std::path::PathBuf,
        /// Fire times to show per schedule.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Plan from this instant (RFC 3339) instead of now.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// What is waiting to be uploaded: runs and bytes per dataset, the oldest, and how many
    /// were quarantined or refused while the spool was full.
    ///
    /// Example: fathom-collector spool status
    Status {
        /// The spool folder (default: $XDG_STATE_HOME/fathom/spool).
        #[arg(long)]
        spool: Option<std::path::PathBuf>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload every waiting run now, oldest first; exits 75 if any is still waiting.
    ///
    /// Safe beside a running daemon: only one of them uploads at a time, and a run already
    /// in its dataset is never written twice. Example: fathom-collector spool flush
    Flush {
        /// The spool folder (default: $XDG_STATE_HOME/fathom/spool).
        #[arg(long)]
        spool: Option<std::path::PathBuf>,
        /// Print what happened as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the schedules: each suite inside its maintenance window, one at a time, every fire
    /// time that does not run recorded in `runs` with the reason (skipped, deferred, missed).
    ///
    /// SIGTERM or Ctrl-C stop it between probes (the run so far is recorded as partial); SIGHUP
    /// reloads the schedule files. Example: fathom-collector daemon --schedules /etc/fathom/schedules
    Daemon {
        /// A schedule file, or a folder of *.toml files.
        #[arg(long)]
        schedules: std::path::PathBuf,
        /// The host name recorded in the runs (default: this machine's).
        #[arg(long)]
        host: Option<String>,
        /// Where the daemon remembers how far it planned (default: $XDG_STATE_HOME/fathom/daemon-state).
        #[arg(long)]
        state_file: Option<std::path::PathBuf>,
        /// Where finished runs wait for their upload (default: $XDG_STATE_HOME/fathom/spool).
        #[arg(long)]
        spool: Option<std::path::PathBuf>,
        /// The most the spool may hold, e.g. 500MiB; past it new runs are refused (and logged),
        /// the oldest kept.
        #[arg(long, default_value = "1GiB", value_parser = parse_limit)]
        spool_limit: u64,
    },
    /// The local spool of runs waiting for their upload.
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// Schedule files: check them, see when they fire.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Run a suite (or chosen probes) and append the run to the dataset.
    ///
    /// Example: fathom-collector run --suite quick --label site=fra1 --param cpu.compress.corpus_size=8MiB
    Run(RunArgs),
    /// Run probes and their reference tools (openssl, zstd, lz4, likwid-bench, a C pointer chase)
    /// back to back, alternating, and print both figures and their ratio.
    ///
    /// Install the reference tools first with scripts/reference-tools. Nothing is written to
    /// the dataset. Example: fathom-collector calibrate --probes cpu.aes_gcm --rounds 5
    Calibrate(CalibrateArgs),
    /// Be the peer the network probes measure against: a TCP sink and source, an echo and a
    /// UDP receiver, nothing else (no commands, no files). Bounded: --max-clients connections
    /// at once, each test at most five minutes. Prints `listening on ADDR` once ready.
    ///
    /// Example: fathom-collector serve --listen 0.0.0.0:7433, then on another host
    /// fathom-collector run --probes network.tcp --param network.tcp.peer=THIS_HOST:7433
    Serve {
        /// Address and port to listen on (port 0: any free port).
        #[arg(long, default_value = "0.0.0.0:7433")]
        listen: std::net::SocketAddr,
        /// Clients served at once; more are told `busy` and closed.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
        max_clients: u32,
    },
    /// List the probes with a one-line description each.
    Probes {
        /// Also list every probe's parameters with their defaults.
        #[arg(short, long)]
        long: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The suite to run.
    #[arg(long, value_enum, default_value = "quick")]
    suite: Suite,
    /// Run only these probes (comma-separated ids), with the suite's effort.
    #[arg(long, value_delimiter = ',')]
    probes: Vec<String>,
    /// Where to append the run: a local path, file://, memory:// or s3:// (default: $FATHOM_DATASET or ~/.local/share/fathom/dataset).
    #[arg(long)]
    dataset: Option<String>,
    /// The host name recorded (default: this machine's hostname).
    #[arg(long)]
    host: Option<String>,
    /// The host's role in comparisons.
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// What the host is, KEY=VALUE (repeatable), e.g. --label site=fra1.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// What happened before this run, KEY=VALUE (repeatable), e.g. --tag upgrade=kernel-6.8.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// A probe parameter, PROBE.NAME=VALUE (repeatable), e.g. --param cpu.aes_gcm.threads=4.
    #[arg(long = "param", value_name = "PROBE.NAME=VALUE")]
    params: Vec<String>,
    /// Print the run as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// The peer (`fathom-collector serve`) of every network probe, HOST[:PORT]; a probe's own
    /// `--param network.X.peer=` wins.
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Option<String>,
    /// The spool the run is kept in until its upload succeeds (default: $XDG_STATE_HOME/fathom/spool).
    #[arg(long)]
    spool: Option<std::path::PathBuf>,
}

fn parse_limit(text: &str) -> Result<u64, String> {
    let bytes = fathom_collector::probe::parse_size(text)? as u64;
    if bytes < 1 << 20 {
        return Err(format!("`{text}` is too small for a spool: give at least 1MiB"));
    }
    Ok(bytes)
}

#[derive(clap::Args)]
struct CalibrateArgs {
    /// Calibrate only these probes (comma-separated ids; default: every calibrated probe).
    #[arg(long, value_delimiter = ',')]
    probes: Vec<String>,
    /// Rounds of probe-then-reference every probe gets; each side's figure is the median over
    /// the rounds, the ratio the median of the rounds' ratios.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// More rounds, up to this many, for a probe whose rounds' ratios still spread by more
    /// than 10 % (a host with performance modes); at least --rounds.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_rounds: u32,
    /// The suite whose effort (budget, repetitions, noise target) the probes run with.
    #[arg(long, value_enum, default_value = "quick")]
    suite: Suite,
    /// A second `openssl` to check cpu.aes_gcm against, beside the one on PATH: a current
    /// release with a VAES path, as `scripts/reference-openssl` builds and prints.
    #[arg(long, value_name = "PATH")]
    openssl: Option<std::path::PathBuf>,
    /// A second C loop to check the zstd figures against, built against the libzstd release
    /// the probe links, as `scripts/reference-libzstd` builds and prints.
    #[arg(long, value_name = "PATH")]
    zstd_loop: Option<std::path::PathBuf>,
    /// Seconds each reference tool measures for, where it takes a duration.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=600))]
    reference_seconds: u32,
    /// Print the outcomes as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fathom_datasets::human::init_logging(cli.verbose);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Probes { long } => {
            for p in probes::all() {
                println!("{:<18} {}", p.id(), p.description());
                if long {
                    for param in p.params().iter().chain(EFFORT_PARAMS) {
                        let default = if param.default.is_empty() { "suite" } else { param.default };
                        println!("    {:<12} {:<10} {}", param.name, default, param.help);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
        Command::Schedules(SchedulesCommand::Check { path, count, from }) => {
            schedules_check(&path, count, from)
        }
        Command::Daemon { schedules, host: name, state_file, spool, spool_limit } => {
            daemon(schedules, name, state_file, spool, spool_limit)
        }
        Command::Spool(SpoolCommand::Status { spool, json }) => spool_status(spool, json),
        Command::Spool(SpoolCommand::Flush { spool, json }) => spool_flush(spool, json),
        Command::Calibrate(args) => calibrate(args),
        Command::Serve { listen, max_clients } => serve(listen, max_clients as usize),
    }
}

fn select_probes(args: &RunArgs) -> Result<Vec<Box<dyn Probe>>> {
    if args.probes.is_empty() {
        return Ok(args.suite.probes());
    }
    let mut selected: Vec<Box<dyn Probe>> = Vec::new();
    for id in &args.probes {
        let probe = probes::find(id.trim()).with_context(|| {
            let known: Vec<_> = probes::all().iter().map(|p| p.id()).collect();
            format!("unknown probe `{id}` (known: {})", known.join(", "))
        })?;
        if selected.iter().any(|p| p.id() == probe.id()) {
            bail!("probe `{id}` is listed twice in --probes");
        }
        selected.push(probe);
    }
    Ok(selected)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let probes = select_probes(&args)?;
    let mut overrides = parse_overrides(&args.params)?;
    if let Some(peer) = &args.peer {
        for p in probes.iter().filter(|p| p.id().starts_with("network.")) {
            overrides
                .entry(p.id().to_string())
                .or_default()
                .entry("peer".into())
                .or_insert_with(|| peer.clone());
        }
    }
    check_all(&probes, args.suite.effort(), &overrides)?;
    if args.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
        bail!("--host may not be empty");
    }
    for probe_id in overrides.keys() {
        if !probes.iter().any(|p| p.id() == probe_id) {
            tracing::warn!("--param for {probe_id}, which this run does not include");
        }
    }
    let labels = args.labels.iter().map(|l| parse_pair(l, "--label")).collect::<Result<_>>()?;
    let tags = args.tags.iter().map(|t| parse_pair(t, "--tag")).collect::<Result<_>>()?;
    let url = args.dataset.clone().unwrap_or_else(default_url);
    check_cli_url(&url).map_err(anyhow::Error::msg)?;
    let dataset = Dataset::create(&url)?;
    // Opened before the probes run: a spool that cannot be used is said now, and the run then
    // goes straight to the dataset as before.
    let spool_dir = args.spool.clone().unwrap_or_else(spool::default_dir);
    let spool = Spool::open(&spool_dir, spool::DEFAULT_LIMIT)
        .map_err(|e| eprintln!("warning: {e}; the run will be written straight to {}", dataset.url()))
        .ok();
    // One worker thread: it waits for Ctrl-C or SIGTERM while probes run on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let cancel = CancelToken::default();
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => s.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        eprintln!("interrupted: stopping after the current repetition; the run so far is recorded");
        on_signal.cancel();
    });

    let spec = RunSpec {
        host: args.host.clone().unwrap_or_else(host::hostname),
        role: match args.role {
            Some(Role::Source) => "source".into(),
            Some(Role::Target) => "target".into(),
            None => String::new(),
        },
        labels,
        tags,
        suite: args.suite.name().to_string(),
        schedule: None,
        effort: args.suite.effort(),
        overrides,
        deadline: None,
        run_id: None,
    };
    let reporter = ProgressReporter::new(probes.len());
    let result = run_probes(&spec, &probes, host::facts(), &cancel, &reporter);
    drop(reporter);
    let interrupted = cancel.is_cancelled();
    let result = result?;

    // Kept in the spool first, then uploaded: a store that is down keeps the run, not loses it.
    let encoded = EncodedRun::encode(&result.run, &result.measurements, &result.samples)?;
    let delivered =
        match spool.as_ref().map(|spool| runtime.block_on(spool.deliver(dataset.url(), &encoded, 3))) {
            Some(Ok(outcome)) => outcome,
            unspooled => {
                if let Some(Err(e)) = unspooled {
                    eprintln!("warning: {e}; writing the run straight to {}", dataset.url());
                }
                let written = runtime
                    .block_on(put_run(&dataset, &encoded))
                    .with_context(|| format!("writing run {} to {}", result.run.run_id, dataset.url()))?;
                Ok(Delivered {
                    run_id: result.run.run_id.clone(),
                    dataset: dataset.url().to_string(),
                    already_there: written == RunWrite::AlreadyDelivered,
                    bytes: encoded.bytes(),
                })
            }
        };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run_json(&result, Some(dataset.url())))?);
    } else {
        print!("{}", run_table(&result));
    }
    match &delivered {
        Ok(_) if args.json => {}
        Ok(d) if d.already_there => println!("run {} was already in {}", d.run_id, dataset.url()),
        Ok(d) => println!("wrote run {} to {} ({} bytes)", d.run_id, dataset.url(), d.bytes),
        Err(reason) => {
            eprintln!(
                "error: run {} could not be uploaded to {}: {reason}\n\
                 it is kept in the spool {} and uploaded by the daemon or `fathom-collector spool flush`",
                result.run.run_id,
                dataset.url(),
                spool_dir.display()
            );
            // EX_TEMPFAIL: nothing is lost, try again later.
            return Ok(ExitCode::from(75));
        }
    }
    if result.measurements.is_empty() && !interrupted {
        bail!(
            "no probe produced a measurement: {}",
            result.run.status_reason.as_deref().unwrap_or("nothing ran")
        );
    }
    Ok(if interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

fn serve(listen: std::net::SocketAddr, max_clients: usize) -> Result<ExitCode> {
    use fathom_collector::serve::{ServeOptions, Server};
    let options = ServeOptions { listen, max_clients, ..ServeOptions::default() };
    let server = Server::bind(options).with_context(|| format!("listening on {listen}"))?;
    let stop = CancelToken::default();
    let on_signal = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => s.recv().await,
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate => {}
            }
        });
        on_signal.cancel();
    });
    println!("listening on {}", server.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    server.run(&stop)?;
    Ok(ExitCode::SUCCESS)
}

fn calibrate(args: CalibrateArgs) -> Result<ExitCode> {
    let workdir = tempfile::tempdir().context("creating a scratch directory")?;
    let setup = fathom_collector::calibrate::setup(
        workdir.path(),
        args.reference_seconds,
        args.suite.effort().warmup,
        args.openssl.clone(),
        args.zstd_loop.clone(),
    )?;
    if setup.pointer_chase.is_none() {
        eprintln!("no C compiler (cc) found: memory.latency is not calibrated");
    }
    let options = fathom_collector::calibrate::Options {
        probes: args.probes.iter().map(|p| p.trim().to_string()).collect(),
        rounds: args.rounds as usize,
        max_rounds: args.max_rounds.max(args.rounds) as usize,
        effort: args.suite.effort(),
    };
    let quiet = args.json;
    let outcomes = fathom_collector::calibrate::calibrate(&setup, &options, &|step| {
        if !quiet {
            eprintln!("{step}");
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        print!("{}", fathom_collector::calibrate::table(&outcomes));
    }
    Ok(ExitCode::SUCCESS)
}

/// The probe ids and suite names schedules may use.
fn schedule_vocabulary() -> (Vec<&'static str>, Vec<&'static str>) {
    let probes = probes::all().iter().map(|p| p.id()).collect();
    let suites = Suite::value_variants().iter().map(|s| s.name()).collect();
    (probes, suites)
}

fn schedules_check(
    path: &std::path::Path,
    count: usize,
    from: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ExitCode> {
    use fathom_collector::schedule::{self, Work, plan};
    let (probe_ids, suites) = schedule_vocabulary();
    let schedules = schedule::load(path, &probe_ids, &suites)?;
    let from = from.unwrap_or_else(chrono::Utc::now);
    let mut bad = false;
    for s in &schedules {
        // Parameters are checked as `run --param` checks them, against the probes it runs.
        let (probes, suite) = match &s.work {
            Work::Suite(name) => {
                let suite = Suite::from_str(name, true).map_err(anyhow::Error::msg)?;
                (suite.probes(), suite)
            }
            Work::Probes(ids) => (ids.iter().filter_map(|id| probes::find(id)).collect(), Suite::Standard),
        };
        let items: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let checked = parse_overrides(&items).and_then(|o| check_all(&probes, suite.effort(), &o));
        if let Err(e) = checked {
            eprintln!("error: {}: schedule {:?} params: {e:#}", s.origin, s.name);
            bad = true;
            continue;
        }
        let work = match &s.work {
            Work::Suite(name) => format!("suite {name}"),
            Work::Probes(ids) => format!("probes {}", ids.join(",")),
        };
        println!("{} ({})", s.name, s.origin);
        println!("  cron {}  in {}; window {}; {work}", s.cron_text, s.timezone, s.window.describe());
        if let Some(max) = s.max_runtime {
            println!("  at most {} s per run, and never past the window's end", max.as_secs());
        }
        if let Some(g) = &s.guard {
            let mut limits = Vec::new();
            if let Some(c) = g.cpu_busy_above {
                limits.push(format!("CPU busy above {:.0}%", c * 100.0));
            }
            if let Some(l) = g.load_average_above {
                limits.push(format!("load average above {l}"));
            }
            let action = match g.action {
                schedule::GuardAction::Defer => "defer until quiet, at most to the window's end",
                schedule::GuardAction::Skip => "skip the night, recorded",
            };
            println!("  guard: {} over {} s: {action}", limits.join(" or "), g.over.as_secs());
        }
        let fires = plan::fires(s, from, count);
        if fires.is_empty() {
            eprintln!(
                "error: {}: schedule {:?}: no fire time of `{}` falls inside the window in the next {} days",
                s.origin,
                s.name,
                s.cron_text,
                plan::HORIZON_DAYS
            );
            bad = true;
            continue;
        }
        for f in fires {
            let local = f.at.with_timezone(&s.timezone);
            let close = f.window_close.with_timezone(&s.timezone);
            println!(
                "  {}  ({}; window closes {}){}",
                local.format("%a %Y-%m-%d %H:%M:%S %Z"),
                f.at.format("%Y-%m-%dT%H:%M:%SZ"),
                close.format("%H:%M %Z"),
                if s.jitter.is_zero() {
                    String::new()
                } else {
                    format!(", plus up to {} s of jitter", s.jitter.as_secs())
                }
            );
        }
    }
    if bad {
        return Ok(ExitCode::FAILURE);
    }
    println!("{} schedule{} ok", schedules.len(), if schedules.len() == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

fn daemon(
    schedules: std::path::PathBuf,
    name: Option<String>,
    state_file: Option<std::path::PathBuf>,
    spool_dir: Option<std::path::PathBuf>,
    spool_limit: u64,
) -> Result<ExitCode> {
    use fathom_collector::daemon::{self, DaemonOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let opts = DaemonOptions {
        schedules,
        host: name.unwrap_or_else(host::hostname),
        state_file: state_file.unwrap_or_else(daemon::default_state_file),
        spool: spool_dir.unwrap_or_else(spool::default_dir),
        spool_limit,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let stop = CancelToken::default();
    let reload = Arc::new(AtomicBool::new(false));
    let (on_stop, on_reload) = (stop.clone(), reload.clone());
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup()))
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => on_reload.store(true, Ordering::SeqCst),
            }
        }
        eprintln!("daemon: stopping after the current repetition; a run going is recorded as partial");
        on_stop.cancel();
    });
    daemon::run(&opts, &stop, &reload)?;
    Ok(ExitCode::SUCCESS)
}

fn spool_status(dir: Option<std::path::PathBuf>, json: bool) -> Result<ExitCode> {
    use fathom_datasets::human::format_bytes;
    let spool = Spool::open(&dir.unwrap_or_else(spool::default_dir), spool::DEFAULT_LIMIT)?;
    let status = spool.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "spool {}: {} run{} waiting, {}",
        status.dir,
        status.waiting,
        if status.waiting == 1 { "" } else { "s" },
        format_bytes(status.bytes)
    );
    if let Some(oldest) = status.oldest_spooled_at {
        println!("  oldest spooled at {}", oldest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    for d in &status.datasets {
        println!("  {}: {} runs, {}", d.url, d.runs, format_bytes(d.bytes));
    }
    if status.unreadable > 0 {
        println!(
            "  {} entries with an unreadable header (the next flush quarantines them)",
            status.unreadable
        );
    }
    println!("quarantined: {} (in {}/quarantine, each with a .reason file)", status.quarantined, status.dir);
    println!("refused while full: {} (listed in {}/refused.log)", status.refused_while_full, status.dir);
    Ok(ExitCode::SUCCESS)
}

fn spool_flush(dir: Option<std::path::PathBuf>, json: bool) -> Result<ExitCode> {
    let spool = Spool::open(&dir.unwrap_or_else(spool::default_dir), spool::DEFAULT_LIMIT)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(spool.flush(None))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for d in &report.delivered {
            let what = if d.already_there { "was already in" } else { "delivered to" };
            println!("run {} {what} {}", d.run_id, d.dataset);
        }
        for (run_id, reason) in &report.quarantined {
            println!("run {run_id}: quarantined: {reason}");
        }
        for (dataset, error) in &report.errors {
            eprintln!("error: {dataset}: {error}");
        }
        println!(
            "{} delivered, {} quarantined, {} still waiting",
            report.delivered.len(),
            report.quarantined.len(),
            report.waiting
        );
    }
    // EX_TEMPFAIL while runs still wait, so a timer can tell "try later" from a real failure.
    Ok(if report.waiting > 0 { ExitCode::from(75) } else { ExitCode::SUCCESS })
}
