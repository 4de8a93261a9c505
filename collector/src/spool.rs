//! The local spool: every finished run is kept on the host's disk before it is uploaded, so an
//! unreachable store, a crash or a reboot never loses it.
//!
//! Layout under the spool folder:
//! - `ready/RUN_ID.run`: one complete run, as the Parquet files it will be stored as (see
//!   [`EncodedRun`]), behind a header naming its dataset and the SHA-256 of the payload. It is
//!   written under `tmp/` (named by the writer's pid), synced and renamed into `ready/`, so a
//!   kill at any moment leaves a complete entry or none; leftovers of writers that are gone are
//!   removed at the next open.
//! - `quarantine/`: entries that failed their checks (a torn disk write, an edited file). They
//!   are never uploaded, and never stop the others.
//! - `refused.log`: one line per run refused because the spool was full. The oldest runs are
//!   kept: they are the ones an outage would otherwise have lost first.
//! - `lock`: held by whoever uploads, so the daemon and `spool flush` never upload the same
//!   entry at once.
//!
//! Uploads go in run-id order (UUIDv7: the order the runs started), per dataset; the first
//! store error of a dataset holds back that dataset's later entries until the next attempt.
//! A retry is harmless: [`put_run`] names every object by the run id and skips a run whose
//! delivered marker exists.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use fathom_datasets::Table;
use fathom_datasets::read::check_file;
use fathom_datasets::store::Dataset;
use fathom_datasets::write::{EncodedRun, RunWrite, put_run};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"FATHOM-SPOOL/1\n";
const READY: &str = "ready";
const TMP: &str = "tmp";
const QUARANTINE: &str = "quarantine";
const REFUSED_LOG: &str = "refused.log";
/// 1 GiB: about a year of nightly standard runs, or weeks of a busy schedule.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error(
        "spool {dir} is full ({used} of {limit} bytes): run {run_id} ({bytes} bytes) was not kept; the {count} runs already there are"
    )]
    Full { dir: String, run_id: String, bytes: u64, used: u64, limit: u64, count: usize },
    #[error(transparent)]
    Encode(#[from] fathom_datasets::write::WriteError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |cause| SpoolError::Io { path: path.display().to_string(), cause }
}

/// What an entry's header says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    run_id: String,
    dataset: String,
    date: NaiveDate,
    spooled_at: DateTime<Utc>,
    /// Table name and byte length of each file, in payload order.
    files: Vec<(String, u64)>,
    sha256: String,
}

/// A spooled run, read back and checked.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub dataset: String,
    pub spooled_at: DateTime<Utc>,
    pub run: EncodedRun,
}

/// One entry as listed, before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub run_id: String,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    limit: u64,
}

/// The default spool: `$XDG_STATE_HOME/fathom/spool`, else `~/.local/state/fathom/spool`.
pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("fathom").join("spool")
}

fn hex_sha256(parts: &[&Bytes]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    parts.iter().for_each(|p| ctx.update(p));
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn table_named(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.dir() == name)
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Syncs a folder, so a rename into it survives a power cut.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

impl Spool {
    /// Opens (creating) the spool and removes entries a crash left half-written.
    pub fn open(dir: &Path, limit: u64) -> Result<Spool, SpoolError> {
        for sub in [READY, TMP, QUARANTINE] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io(&path))?;
        }
        // A staging file is named by its writer's pid: only those of writers that are gone
        // are leftovers (another collector may be spooling right now).
        let tmp = dir.join(TMP);
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let writer = name.rsplit('.').nth(1).and_then(|pid| pid.parse::<i32>().ok());
            if writer.is_some_and(process_alive) {
                continue;
            }
            tracing::warn!("spool: removing {}, a run a crash left half-spooled", entry.path().display());
            let _ = fs::remove_file(entry.path());
        }
        Ok(Spool { dir: dir.to_path_buf(), limit })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Keeps a run for `dataset`, durably, unless the spool is full.
    pub fn add(&self, dataset: &str, run: &EncodedRun) -> Result<PathBuf, SpoolError> {
        let files: Vec<(String, u64)> =
            run.files.iter().map(|(t, b)| (t.dir().to_string(), b.len() as u64)).collect();
        let header = Header {
            run_id: run.run_id.clone(),
            dataset: dataset.to_string(),
            date: run.date,
            spooled_at: Utc::now(),
            files,
            sha256: hex_sha256(&run.files.iter().map(|(_, b)| b).collect::<Vec<_>>()),
        };
        let mut head = serde_json::to_vec(&header).expect("a header serializes");
        head.push(b'\n');
        let size = (MAGIC.len() + head.len()) as u64 + run.bytes();
        let entries = self.entries()?;
        let used: u64 = entries.iter().map(|e| e.bytes).sum();
        if used + size > self.limit {
            let line = format!("{} {} {} {size}\n", Utc::now().to_rfc3339(), run.run_id, dataset);
            let log = self.dir.join(REFUSED_LOG);
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(io(&log))?;
            return Err(SpoolError::Full {
                dir: self.dir.display().to_string(),
                run_id: run.run_id.clone(),
                bytes: size,
                used,
                limit: self.limit,
                count: entries.len(),
            });
        }
        let name = format!("{}.run", run.run_id);
        let tmp = self.dir.join(TMP).join(format!("{}.{}.partial", run.run_id, std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&head)?;
            for (_, bytes) in &run.files {
                file.write_all(bytes)?;
            }
            file.sync_all()
        };
        if let Err(cause) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::Io { path: tmp.display().to_string(), cause });
        }
        let ready_dir = self.dir.join(READY);
        let ready = ready_dir.join(&name);
        fs::rename(&tmp, &ready).map_err(io(&ready))?;
        sync_dir(&ready_dir)?;
        Ok(ready)
    }

    /// The waiting entries, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, SpoolError> {
        let ready = self.dir.join(READY);
        let mut entries = Vec::new();
        for entry in fs::read_dir(&ready).map_err(io(&ready))?.flatten() {
            let path = entry.path();
            let Some(run_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".run"))
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            entries.push(Entry { path, run_id, bytes });
        }
        entries.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(entries)
    }

    /// Reads an entry back; any mismatch (header, length, checksum, a file that is not the
    /// table's Parquet) is a reason to quarantine it, a failed read only to try again later.
    pub fn read(entry: &Entry) -> Result<Spooled, ReadError> {
        let data =
            Bytes::from(fs::read(&entry.path).map_err(|e| ReadError::Io(format!("cannot read: {e}")))?);
        Self::decode(entry, data).map_err(ReadError::Corrupt)
    }

    fn decode(entry: &Entry, data: Bytes) -> Result<Spooled, String> {
        let rest = data.strip_prefix(MAGIC).ok_or("not a spool entry (bad magic)")?;
        let newline = rest.iter().position(|&b| b == b'\n').ok_or("the header is cut off")?;
        let header: Header =
            serde_json::from_slice(&rest[..newline]).map_err(|e| format!("unreadable header: {e}"))?;
        if header.run_id != entry.run_id {
            return Err(format!("the header names run {}, the file name {}", header.run_id, entry.run_id));
        }
        let mut offset = MAGIC.len() + newline + 1;
        let payload_len: u64 = header.files.iter().map(|(_, n)| n).sum();
        if (data.len() - offset) as u64 != payload_len {
            return Err(format!(
                "the payload is {} bytes, the header says {payload_len} (a torn write?)",
                data.len() - offset
            ));
        }
        let mut files = Vec::with_capacity(header.files.len());
        for (name, len) in &header.files {
            let table = table_named(name).ok_or_else(|| format!("unknown table `{name}`"))?;
            let bytes = data.slice(offset..offset + *len as usize);
            offset += *len as usize;
            files.push((table, bytes));
        }
        let sum = hex_sha256(&files.iter().map(|(_, b)| b).collect::<Vec<_>>());
        if sum != header.sha256 {
            return Err(format!("checksum mismatch (SHA-256 {sum}, the header says {})", header.sha256));
        }
        if !files.iter().any(|(t, _)| *t == Table::Runs) {
            return Err("no runs file: the run could never be committed".into());
        }
        for (table, bytes) in &files {
            check_file(*table, bytes).map_err(|e| format!("its {table} file: {e}"))?;
        }
        Ok(Spooled {
            dataset: header.dataset,
            spooled_at: header.spooled_at,
            run: EncodedRun { run_id: header.run_id, date: header.date, files },
        })
    }

    /// Moves a bad entry aside, with the reason next to it.
    pub fn quarantine(&self, entry: &Entry, reason: &str) -> Result<PathBuf, SpoolError> {
        let dir = self.dir.join(QUARANTINE);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let target = dir.join(entry.path.file_name().expect("an entry has a name"));
        fs::rename(&entry.path, &target).map_err(io(&target))?;
        let why = target.with_extension("reason");
        fs::write(&why, format!("{reason}\n")).map_err(io(&why))?;
        tracing::warn!("spool: quarantined {}: {reason}", target.display());
        Ok(target)
    }

    fn remove(&self, entry: &Entry) -> Result<(), SpoolError> {
        fs::remove_file(&entry.path).map_err(io(&entry.path))
    }

    /// Takes the upload lock, waiting while another process holds it.
    async fn lock(&self) -> Result<UploadLock, SpoolError> {
        let path = self.dir.join("lock");
        let file =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        let mut waited = false;
        loop {
            // SAFETY: flock on a file descriptor we own; it is released when the file closes.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(UploadLock { _file: file });
            }
            if !waited {
                tracing::info!("spool: another upload holds {}, waiting", path.display());
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Uploads the waiting runs in order and removes each one once it is in its dataset.
    /// Store errors stop that dataset's later entries, to keep the order; corrupt entries are
    /// quarantined and the rest go on. `pause` (the daemon's "a suite is running") makes it
    /// stop between entries, so uploads never run beside a benchmark.
    pub async fn flush(&self, pause: Option<&AtomicBool>) -> Result<FlushReport, SpoolError> {
        let _lock = self.lock().await?;
        let mut report = FlushReport::default();
        let mut failed: HashSet<String> = HashSet::new();
        let mut datasets: BTreeMap<String, Dataset> = BTreeMap::new();
        for entry in self.entries()? {
            if pause.is_some_and(|p| p.load(Ordering::SeqCst)) {
                report.waiting += 1;
                report.paused = true;
                continue;
            }
            // The header alone says the dataset: entries of one that already failed are not
            // read in full (an outage would otherwise reread the whole spool every retry).
            if header_of(&entry.path).is_some_and(|h| failed.contains(&h.dataset)) {
                report.waiting += 1;
                continue;
            }
            let spooled = match Spool::read(&entry) {
                Ok(s) => s,
                Err(ReadError::Io(reason)) => {
                    tracing::warn!("spool: {}: {reason}; trying again later", entry.path.display());
                    report.waiting += 1;
                    continue;
                }
                Err(ReadError::Corrupt(reason)) => {
                    match self.quarantine(&entry, &reason) {
                        Ok(_) => report.quarantined.push((entry.run_id.clone(), reason)),
                        Err(e) => {
                            tracing::error!("{e}");
                            report.waiting += 1;
                        }
                    }
                    continue;
                }
            };
            if failed.contains(&spooled.dataset) {
                report.waiting += 1;
                continue;
            }
            let dataset = match datasets.get(&spooled.dataset) {
                Some(d) => d.clone(),
                None => match Dataset::create(&spooled.dataset) {
                    Ok(d) => datasets.entry(spooled.dataset.clone()).or_insert(d).clone(),
                    Err(e) => {
                        report.errors.push((spooled.dataset.clone(), e.to_string()));
                        failed.insert(spooled.dataset.clone());
                        report.waiting += 1;
                        continue;
                    }
                },
            };
            match put_run(&dataset, &spooled.run).await {
                Ok(outcome) => {
                    if let Err(e) = self.remove(&entry) {
                        // Delivered all the same; the next flush finds its marker.
                        tracing::error!("{e}");
                    }
                    report.delivered.push(Delivered {
                        run_id: entry.run_id.clone(),
                        dataset: dataset.url().to_string(),
                        already_there: outcome == RunWrite::AlreadyDelivered,
                        bytes: spooled.run.bytes(),
                    });
                }
                Err(e) => {
                    report.errors.push((spooled.dataset.clone(), format!("run {}: {e}", entry.run_id)));
                    failed.insert(spooled.dataset.clone());
                    report.waiting += 1;
                }
            }
        }
        Ok(report)
    }

    /// Whether an entry for `run_id` is waiting.
    pub fn holds(&self, run_id: &str) -> bool {
        self.dir.join(READY).join(format!("{run_id}.run")).exists()
    }

    /// What is waiting, for `spool status`.
    pub fn status(&self) -> Result<Status, SpoolError> {
        let entries = self.entries()?;
        let mut per_dataset: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        let mut unreadable = 0;
        let mut oldest: Option<DateTime<Utc>> = None;
        for entry in &entries {
            match header_of(&entry.path) {
                Some(h) => {
                    let slot = per_dataset.entry(h.dataset).or_default();
                    slot.0 += 1;
                    slot.1 += entry.bytes;
                    oldest = Some(oldest.map_or(h.spooled_at, |o| o.min(h.spooled_at)));
                }
                None => unreadable += 1,
            }
        }
        let quarantine = self.dir.join(QUARANTINE);
        let quarantined = fs::read_dir(&quarantine)
            .map_err(io(&quarantine))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "run"))
            .count();
        let refused = fs::read_to_string(self.dir.join(REFUSED_LOG)).map(|s| s.lines().count()).unwrap_or(0);
        Ok(Status {
            dir: self.dir.display().to_string(),
            waiting: entries.len(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
            limit: self.limit,
            oldest_spooled_at: oldest,
            datasets: per_dataset
                .into_iter()
                .map(|(url, (runs, bytes))| DatasetWaiting { url, runs, bytes })
                .collect(),
            unreadable,
            quarantined,
            refused_while_full: refused,
        })
    }

    /// Spools a run and then tries to upload the spool (older entries first, this run among
    /// them), `attempts` times with exponential backoff. Returns whether this run was
    /// delivered; a run not delivered stays in the spool.
    pub async fn deliver(
        &self,
        dataset: &str,
        run: &EncodedRun,
        attempts: u32,
    ) -> Result<Result<Delivered, String>, SpoolError> {
        self.add(dataset, run)?;
        let mut last = String::new();
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1, Duration::from_secs(1), Duration::from_secs(30)))
                    .await;
            }
            let report = self.flush(None).await?;
            if let Some(d) = report.delivered.into_iter().find(|d| d.run_id == run.run_id) {
                return Ok(Ok(d));
            }
            if let Some((_, reason)) = report.quarantined.into_iter().find(|(id, _)| *id == run.run_id) {
                return Ok(Err(format!("the spooled copy was corrupt and is quarantined: {reason}")));
            }
            if !self.holds(&run.run_id) {
                // Another uploader (the daemon, a flush timer) took it out in between.
                let bytes = run.bytes();
                return Ok(Ok(Delivered {
                    run_id: run.run_id.clone(),
                    dataset: dataset.to_string(),
                    already_there: true,
                    bytes,
                }));
            }
            last = report
                .errors
                .into_iter()
                .find(|(url, _)| url == dataset)
                .map(|(_, e)| e)
                .unwrap_or_else(|| "an older run of this dataset could not be read".into());
            tracing::warn!("upload of run {} failed (attempt {}): {last}", run.run_id, attempt + 1);
        }
        Ok(Err(last))
    }
}

/// Reads only an entry's header, for status.
fn header_of(path: &Path) -> Option<Header> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(File::open(path).ok()?);
    let mut magic = vec![0; MAGIC.len()];
    reader.read_exact(&mut magic).ok()?;
    if magic != MAGIC {
        return None;
    }
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).ok()?;
    serde_json::from_slice(&line).ok()
}

/// Waits `base · 2^k`, at most `cap`, plus up to 10 % jitter so a fleet whose store comes back
/// does not retry in lockstep.
pub fn backoff(k: u32, base: Duration, cap: Duration) -> Duration {
    let wait = base.saturating_mul(1u32 << k.min(20)).min(cap);
    let jitter = wait.mul_f64(rand::random::<f64>() * 0.1);
    wait + jitter
}

struct UploadLock {
    _file: File,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivered {
    pub run_id: String,
    pub dataset: String,
    /// Its delivered marker was already there (an earlier upload got that far): nothing written.
    pub already_there: bool,
    pub bytes: u64,
}

/// Why an entry could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The file could not be read (a passing I/O error): left for a later try.
    Io(String),
    /// What was read is not a sound entry: quarantined.
    Corrupt(String),
}

#[derive(Debug, Default, Serialize)]
pub struct FlushReport {
    pub delivered: Vec<Delivered>,
    /// Entries still in the spool after this flush.
    pub waiting: usize,
    /// Dataset and error, one per failure.
    pub errors: Vec<(String, String)>,
    pub quarantined: Vec<(String, String)>,
    /// It stopped early because a suite started.
    pub paused: bool,
}

#[derive(Debug, Serialize)]
pub struct DatasetWaiting {
    pub url: String,
    pub runs: usize,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub dir: String,
    pub waiting: usize,
    pub bytes: u64,
    pub limit: u64,
    pub oldest_spooled_at: Option<DateTime<Utc>>,
    pub datasets: Vec<DatasetWaiting>,
    pub unreadable: usize,
    pub quarantined: usize,
    pub refused_while_full: usize,
}

#[cfg(test)]
mod tests;
