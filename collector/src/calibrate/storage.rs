//! The storage probes against fio: the same block size, queue depth, direct flag, file size,
//! warm-up and runtime, on the same filesystem (calibration's scratch folder), JSON output.
//!
//! fio 3.33's fields: `jobs[0].read|write.bw_bytes` (bytes/s), `.iops`, completion-latency
//! percentiles in `.clat_ns.percentile["99.000000"]` (ns), and for `fsync=1` the fsync
//! latencies in `jobs[0].sync.lat_ns.percentile`. `--norandommap --randrepeat=0` make fio draw
//! offsets uniformly with replacement, as the probe does.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

use super::{Check, Parse, Reference, Setup, Target};
use crate::probes::storage::file::{FillError, check_space, fill_fd};

/// Storage seq MB/s and 4K IOPS within ±15 % of fio.
pub const WITHIN_15: Target = Target { low: 0.85, high: Some(1.15), info: false };
/// Latency percentiles within ±25 %.
pub const WITHIN_25: Target = Target { low: 0.75, high: Some(1.25), info: false };

/// Test file size for the direct-I/O probes, shared by probe and fio.
pub const FILE_SIZE: &str = "512MiB";
/// And for the fsync probe.
pub const FSYNC_FILE_SIZE: &str = "64MiB";

/// Writes fio's files once, whole, as the probes write theirs: fio would otherwise lay them out
/// itself (allocated, and written only for read jobs), and on this project's VM random writes
/// into a file fio laid out ran at half the IOPS of writes into a file written with direct
/// 1 MiB blocks, for fio and the probe alike.
pub fn prepare(setup: &Setup) -> Result<()> {
    for (name, size, direct) in [("fio.dat", FILE_SIZE, true), ("fio-fsync.dat", FSYNC_FILE_SIZE, false)] {
        let size = crate::probe::parse_size(size).map_err(anyhow::Error::msg)? as u64;
        check_space(&setup.scratch, size, None).map_err(anyhow::Error::msg)?;
        let path = setup.scratch.join(name);
        let open =
            |flags| std::fs::OpenOptions::new().write(true).create(true).custom_flags(flags).open(&path);
        let (file, direct) = match open(if direct { libc::O_DIRECT } else { 0 }) {
            Ok(f) => (f, direct),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        // SAFETY: a plain syscall on our own descriptor.
        unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        match fill_fd(file.as_raw_fd(), size, direct, &|| Ok(())) {
            Ok(()) => {}
            Err(FillError::Io(e)) => bail!("writing {}: {e}", path.display()),
            Err(FillError::Cancelled(e)) => bail!("writing {}: {e}", path.display()),
        }
    }
    Ok(())
}

fn fio(setup: &Setup, name: &str, file: &str, size: &str, job: &[&str]) -> Vec<String> {
    let path = setup.scratch.join(file);
    let mut argv: Vec<String> = vec![
        "fio".into(),
        format!("--name={name}"),
        format!("--filename={}", path.display()),
        format!("--size={}", size.trim_end_matches("iB")),
        "--time_based".into(),
        format!("--runtime={}", setup.reference_seconds),
        format!("--ramp_time={}ms", setup.storage_warmup_ms),
        "--output-format=json".into(),
    ];
    argv.extend(job.iter().map(|s| s.to_string()));
    argv
}

fn check(
    probe: &'static str,
    metric: &'static str,
    argv: &[String],
    pointer: &'static str,
    factor: f64,
    target: Target,
) -> Check {
    Check {
        probe,
        metric,
        reference: Reference { argv: argv.to_vec(), parse: Parse::Json(pointer, factor) },
        target,
        note: "",
    }
}

pub fn checks(setup: &Setup) -> Vec<Check> {
    let direct = ["--direct=1", "--ioengine=io_uring", "--norandommap", "--randrepeat=0"];
    let job = |extra: &[&'static str]| -> Vec<&str> { direct.iter().chain(extra).copied().collect() };
    let write = fio(setup, "seqwrite", "fio.dat", FILE_SIZE, &job(&["--rw=write", "--bs=1M", "--iodepth=8"]));
    let read = fio(setup, "seqread", "fio.dat", FILE_SIZE, &job(&["--rw=read", "--bs=1M", "--iodepth=8"]));
    let randread =
        fio(setup, "randread", "fio.dat", FILE_SIZE, &job(&["--rw=randread", "--bs=4k", "--iodepth=32"]));
    let randwrite =
        fio(setup, "randwrite", "fio.dat", FILE_SIZE, &job(&["--rw=randwrite", "--bs=4k", "--iodepth=32"]));
    let mixed = fio(
        setup,
        "mixed",
        "fio.dat",
        FILE_SIZE,
        &job(&["--rw=randrw", "--rwmixread=70", "--bs=4k", "--iodepth=32"]),
    );
    let fsync = fio(
        setup,
        "fsync",
        "fio-fsync.dat",
        FSYNC_FILE_SIZE,
        &["--rw=write", "--bs=4k", "--ioengine=sync", "--fsync=1"],
    );
    let ns = 1.0;
    vec![
        check("storage.seq", "write_bw", &write, "/jobs/0/write/bw_bytes", 1e-6, WITHIN_15),
        check("storage.seq", "read_bw", &read, "/jobs/0/read/bw_bytes", 1e-6, WITHIN_15),
        check("storage.rand4k", "read_iops", &randread, "/jobs/0/read/iops", 1.0, WITHIN_15),
        check(
            "storage.rand4k",
            "read_lat_p50",
            &randread,
            "/jobs/0/read/clat_ns/percentile/50.000000",
            ns,
            WITHIN_25,
        ),
        check(
            "storage.rand4k",
            "read_lat_p99",
            &randread,
            "/jobs/0/read/clat_ns/percentile/99.000000",
            ns,
            WITHIN_25,
        ),
        check("storage.rand4k", "write_iops", &randwrite, "/jobs/0/write/iops", 1.0, WITHIN_15),
        check(
            "storage.rand4k",
            "write_lat_p50",
            &randwrite,
            "/jobs/0/write/clat_ns/percentile/50.000000",
            ns,
            WITHIN_25,
        ),
        check(
            "storage.rand4k",
            "write_lat_p99",
            &randwrite,
            "/jobs/0/write/clat_ns/percentile/99.000000",
            ns,
            WITHIN_25,
        ),
        check("storage.mixed", "read_iops", &mixed, "/jobs/0/read/iops", 1.0, WITHIN_15),
        check("storage.mixed", "write_iops", &mixed, "/jobs/0/write/iops", 1.0, WITHIN_15),
        check(
            "storage.mixed",
            "read_lat_p99",
            &mixed,
            "/jobs/0/read/clat_ns/percentile/99.000000",
            ns,
            WITHIN_25,
        ),
        check(
            "storage.mixed",
            "write_lat_p99",
            &mixed,
            "/jobs/0/write/clat_ns/percentile/99.000000",
            ns,
            WITHIN_25,
        ),
        // fio's write IOPS for this job count write + fsync pairs over the wall time.
        check("storage.fsync", "fsync_rate", &fsync, "/jobs/0/write/iops", 1.0, WITHIN_15),
        check("storage.fsync", "lat_p50", &fsync, "/jobs/0/sync/lat_ns/percentile/50.000000", ns, WITHIN_25),
        check("storage.fsync", "lat_p99", &fsync, "/jobs/0/sync/lat_ns/percentile/99.000000", ns, WITHIN_25),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_is_read_after_its_warnings() {
        let output = "fio: some warning\n{\n \"jobs\": [{\"read\": {\"iops\": 1234.5, \"clat_ns\": {\"percentile\": {\"99.000000\": 81920}}}}]\n}\n";
        assert_eq!(Parse::Json("/jobs/0/read/iops", 1.0).figure(output), Some(1234.5));
        assert_eq!(
            Parse::Json("/jobs/0/read/clat_ns/percentile/99.000000", 1e-3).figure(output),
            Some(81.92)
        );
        assert_eq!(Parse::Json("/jobs/0/write/iops", 1.0).figure(output), None);
        assert_eq!(Parse::Json("/jobs/0/read/iops", 1.0).figure("no json"), None);
    }
}
