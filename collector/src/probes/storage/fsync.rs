//! `storage.fsync`: 4 KiB writes, each followed by `fsync`, on one thread: the durable-write
//! rate a database's commit log sees, and the fsync's latency percentiles, as
//! `fio --rw=write --bs=4k --ioengine=sync --fsync=1` reports them (`sync.lat_ns`).
//!
//! Buffered writes, as fio's job above and as databases write their logs: the fsync is what
//! reaches the device. The file is allocated and written once first, and the writes advance
//! through it, wrapping at the end.

use std::collections::BTreeMap;
use std::time::Instant;

use super::engine::{Slice, Timing};
use super::file::{Direct, TestFile};
use super::{common_params, record_direction, settings};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput};

pub struct Fsync;

const BLOCK: usize = 4096;

static PARAMS: [ParamSpec; 4] = {
    let c = common_params("64MiB", "1");
    [c[0], c[1], c[4], c[6]]
};

impl Probe for Fsync {
    fn id(&self) -> &'static str {
        "storage.fsync"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(&with_fixed(params)).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let s = settings(&with_fixed(&ctx.params))?;
        let start = Instant::now();
        let file = TestFile::create(&s.dir, "fsync", s.size, s.min_free, Direct::Off)?;
        out.notes.extend(file.notes.iter().cloned());
        // Written once first: the fsyncs then commit data only, as on a recycled log segment,
        // not the conversion of allocated-but-unwritten extents (which made them 50 % slower
        // on ext4 here, and depends on what the file held before).
        file.fill(&|| ctx.check())?;
        let timing = s.timing(ctx, 1, start);
        let params = fathom_datasets::params::canonical([
            ("dir", s.dir.display().to_string()),
            ("size", super::fmt_bytes(s.size)),
            ("block", super::fmt_bytes(BLOCK as u64)),
        ]);
        let load = LoadMeter::start_io();
        let offset = start.elapsed().as_secs_f64();
        let slices = write_and_sync(ctx, &file, &timing)?;
        record_direction(
            out,
            self.id(),
            &params,
            &slices,
            &timing,
            offset,
            load.finish(),
            ("fsync_rate", 1.0),
            false,
            &[("lat_p50", 50.0), ("lat_p95", 95.0), ("lat_p99", 99.0)],
        );
        (ctx.progress)(1.0);
        Ok(())
    }
}

/// The common parameters this probe does not take, at values that pass their checks.
fn with_fixed(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut p = params.clone();
    p.insert("queue_depth".into(), "1".into());
    p.insert("jobs".into(), "1".into());
    p.insert("engine".into(), "threads".into());
    p
}

/// Writes and fsyncs until the timing's end; each slice counts the pairs that finished in it
/// and the fsyncs' latencies (as `writes` and `write_lat`).
fn write_and_sync(ctx: &ProbeContext, file: &TestFile, timing: &Timing) -> Result<Vec<Slice>, ProbeError> {
    let buf = vec![0x5au8; BLOCK];
    let blocks = (file.size / BLOCK as u64).max(1);
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let count = ((timing.runtime.as_nanos() / timing.slice.as_nanos().max(1)) as usize).max(1);
    let end = measure_from + timing.slice * count as u32;
    let mut slices = vec![Slice::default(); count];
    let failed =
        |what: &str, e: std::io::Error| ProbeError::Failed(format!("{what} {}: {e}", file.path().display()));
    let mut i = 0u64;
    loop {
        let offset = (i % blocks) * BLOCK as u64;
        i += 1;
        // SAFETY: `buf` is valid for BLOCK bytes.
        let written = unsafe { libc::pwrite(file.fd(), buf.as_ptr().cast(), BLOCK, offset as libc::off_t) };
        if written < 0 {
            return Err(failed("writing", std::io::Error::last_os_error()));
        }
        let t0 = Instant::now();
        // SAFETY: a plain syscall on our own descriptor.
        if unsafe { libc::fsync(file.fd()) } != 0 {
            return Err(failed("fsync of", std::io::Error::last_os_error()));
        }
        let t1 = Instant::now();
        if t1 >= end {
            return Ok(slices);
        }
        if let Some(since) = t1.checked_duration_since(measure_from) {
            let s = &mut slices[(since.as_nanos() / timing.slice.as_nanos()) as usize];
            s.writes += 1;
            s.write_lat.record((t1 - t0).as_nanos() as u64);
        }
        if i.is_multiple_of(16) {
            ctx.check()?;
            if t1 > ctx.deadline {
                return Err(super::past_deadline(timing));
            }
        }
    }
}
