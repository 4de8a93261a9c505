//! The storage probes' I/O engine: keeps `queue_depth` I/Os in flight on each of `jobs`
//! threads, through io_uring where the kernel allows it, else through one blocking thread per
//! queue slot, and times every I/O into fio-compatible histograms, one per time slice.
//!
//! Latency is fio's completion latency (`clat`): for io_uring from the return of the submit
//! call that queued the I/O to the moment its completion is reaped, for threads the duration of
//! the `pread`/`pwrite`. I/Os during the warm-up are done but not counted. Offsets are drawn
//! uniformly with replacement for random patterns (fio's `norandommap`) and advance block by
//! block for sequential ones, each job in its own part of the file.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::file::{AlignedBuf, TestFile};
use crate::histogram::Histogram;
use crate::probe::ProbeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Sequential,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    IoUring,
    Threads,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::IoUring => "io_uring",
            Engine::Threads => "threads",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub block: usize,
    pub queue_depth: usize,
    pub jobs: usize,
    pub pattern: Pattern,
    /// Share of reads in percent: 100 reads only, 0 writes only, 70 the mixed probe.
    pub read_percent: u32,
}

/// What one time slice saw, all jobs together.
#[derive(Debug, Clone, Default)]
pub struct Slice {
    pub reads: u64,
    pub writes: u64,
    pub read_lat: Histogram,
    pub write_lat: Histogram,
}

impl Slice {
    fn merge(&mut self, other: &Slice) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_lat.merge(&other.read_lat);
        self.write_lat.merge(&other.write_lat);
    }
}

/// The timeline of one run of a workload.
pub struct Timing {
    pub warmup: Duration,
    pub runtime: Duration,
    pub slice: Duration,
}

/// The most blocking I/O threads the fallback engine starts.
pub const MAX_THREADS: usize = 1024;

/// Whether io_uring can be used here, and if not why (for the notes).
pub fn io_uring_available() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        match io_uring::IoUring::new(4) {
            Ok(_) => Ok(()),
            Err(e) => {
                let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                    .map(|v| format!(" (kernel.io_uring_disabled = {})", v.trim()))
                    .unwrap_or_default();
                Err(format!("io_uring unavailable: {e}{disabled}"))
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    Err("io_uring exists only on Linux".into())
}

/// Runs `workload` on `file` and returns one slice per `timing.slice` of the measured time.
/// `stop` is polled every few milliseconds; a stop returns `Cancelled` after every I/O in
/// flight has completed (the kernel may still write into their buffers until then).
pub fn run(
    file: &TestFile,
    workload: &Workload,
    engine: Engine,
    timing: &Timing,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Slice>, ProbeError> {
    let blocks = (file.size / workload.block as u64).max(1);
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    // Whole slices only, so every slice's rate covers the same time.
    let slices = ((timing.runtime.as_nanos() / timing.slice.as_nanos().max(1)) as usize).max(1);
    let end = measure_from + timing.slice * slices as u32;
    let workers = match engine {
        Engine::IoUring => workload.jobs,
        Engine::Threads => workload.jobs * workload.queue_depth,
    };
    if engine == Engine::Threads && workers > MAX_THREADS {
        return Err(ProbeError::Failed(format!(
            "the threads engine runs one thread per queue slot: jobs × queue_depth = {workers} is more than \
             {MAX_THREADS}; lower queue_depth or jobs, or use io_uring"
        )));
    }
    let clock = Clock { measure_from, end, slice: timing.slice, slices };
    let results: Vec<Result<Vec<Slice>, ProbeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let clock = &clock;
                let fd = file.fd();
                let region =
                    (blocks * w as u64 / workers as u64, (blocks * (w as u64 + 1) / workers as u64).max(1));
                scope.spawn(move || {
                    let offsets = Offsets::new(workload, region, blocks, w as u64);
                    match engine {
                        Engine::IoUring => uring_worker(fd, workload, offsets, clock, stop),
                        Engine::Threads => thread_worker(fd, workload, offsets, clock, stop),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut total = vec![Slice::default(); slices];
    for result in results {
        for (sum, slice) in total.iter_mut().zip(result?) {
            sum.merge(&slice);
        }
    }
    if stop() {
        return Err(ProbeError::Cancelled);
    }
    Ok(total)
}

struct Clock {
    measure_from: Instant,
    end: Instant,
    slice: Duration,
    slices: usize,
}

impl Clock {
    /// The slice `t` falls in; `None` during the warm-up and after the end.
    fn slice_of(&self, t: Instant) -> Option<usize> {
        let since = t.checked_duration_since(self.measure_from)?;
        let i = (since.as_nanos() / self.slice.as_nanos()) as usize;
        (i < self.slices).then_some(i)
    }
}

/// Where the next I/O goes and whether it reads.
struct Offsets {
    pattern: Pattern,
    block: u64,
    region: (u64, u64),
    blocks: u64,
    next: u64,
    rng: u64,
    read_percent: u32,
}

impl Offsets {
    fn new(w: &Workload, region: (u64, u64), blocks: u64, seed: u64) -> Offsets {
        Offsets {
            pattern: w.pattern,
            block: w.block as u64,
            region,
            blocks,
            next: region.0,
            rng: 0x2545_f491_4f6c_dd1d ^ (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            read_percent: w.read_percent,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: fast and plenty uniform for choosing blocks.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// (byte offset, is a read)
    fn next(&mut self) -> (u64, bool) {
        let read = match self.read_percent {
            100 => true,
            0 => false,
            p => self.random() % 100 < p as u64,
        };
        let block = match self.pattern {
            Pattern::Random => self.random() % self.blocks,
            Pattern::Sequential => {
                let b = self.next;
                self.next = if b + 1 >= self.region.1 { self.region.0 } else { b + 1 };
                b
            }
        };
        (block * self.block, read)
    }
}

fn io_error(what: &str, e: std::io::Error) -> ProbeError {
    ProbeError::Failed(format!("{what}: {e}"))
}

fn record(slices: &mut [Slice], clock: &Clock, done: Instant, latency_ns: u64, read: bool) {
    if let Some(i) = clock.slice_of(done) {
        let s = &mut slices[i];
        if read {
            s.reads += 1;
            s.read_lat.record(latency_ns);
        } else {
            s.writes += 1;
            s.write_lat.record(latency_ns);
        }
    }
}

/// One blocking I/O at a time.
fn thread_worker(
    fd: RawFd,
    w: &Workload,
    mut offsets: Offsets,
    clock: &Clock,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Slice>, ProbeError> {
    let mut slices = vec![Slice::default(); clock.slices];
    let mut buf = AlignedBuf::new(w.block);
    fill_pattern(buf.as_mut_slice());
    let mut n = 0u64;
    loop {
        let (offset, read) = offsets.next();
        let t0 = Instant::now();
        // SAFETY: `buf` is valid for `block` bytes and outlives the call.
        let done = unsafe {
            if read {
                libc::pread(fd, buf.as_mut_ptr().cast(), w.block, offset as libc::off_t)
            } else {
                libc::pwrite(fd, buf.as_slice().as_ptr().cast(), w.block, offset as libc::off_t)
            }
        };
        let t1 = Instant::now();
        if done < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_error(if read { "read" } else { "write" }, e));
        }
        record(&mut slices, clock, t1, (t1 - t0).as_nanos() as u64, read);
        n += 1;
        if t1 >= clock.end || (n.is_multiple_of(64) && stop()) {
            return Ok(slices);
        }
    }
}

fn fill_pattern(buf: &mut [u8]) {
    let mut state = 0xdead_beef_cafe_f00du64;
    for chunk in buf.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
}

#[cfg(target_os = "linux")]
fn uring_worker(
    fd: RawFd,
    w: &Workload,
    mut offsets: Offsets,
    clock: &Clock,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Slice>, ProbeError> {
    use io_uring::{IoUring, opcode, types};

    let depth = w.queue_depth;
    let mut ring =
        IoUring::new(depth.next_power_of_two() as u32).map_err(|e| io_error("io_uring_setup", e))?;
    let mut slices = vec![Slice::default(); clock.slices];
    let mut bufs: Vec<AlignedBuf> = (0..depth).map(|_| AlignedBuf::new(w.block)).collect();
    for b in &mut bufs {
        fill_pattern(b.as_mut_slice());
    }
    // Per slot: when its I/O was issued and whether it reads.
    let mut issued = vec![Instant::now(); depth];
    let mut reading = vec![false; depth];
    let mut in_flight = 0usize;
    let mut failure: Option<ProbeError> = None;
    let mut done = false;
    let mut completions = 0u64;
    let mut next_stop_check = 64u64;
    // One submit call per I/O, as fio does (`iodepth_batch_submit=1`): submitting a whole
    // queue's worth at once, which costs several microseconds per I/O on a VM's virtio disk,
    // makes the queue run in lock-step bursts that leave the device idle between them.
    let mut issue = |ring: &mut IoUring, slot: usize, issued: &mut [Instant], reading: &mut [bool]| {
        let (offset, read) = offsets.next();
        reading[slot] = read;
        let ptr = bufs[slot].as_mut_ptr();
        let entry = if read {
            opcode::Read::new(types::Fd(fd), ptr, w.block as u32).offset(offset).build()
        } else {
            opcode::Write::new(types::Fd(fd), ptr, w.block as u32).offset(offset).build()
        };
        // SAFETY: the buffer stays alive and untouched until its completion is reaped; the
        // queue has room, since at most `depth` I/Os are ever queued or in flight.
        unsafe { ring.submission().push(&entry.user_data(slot as u64)).expect("a free queue entry") };
        // Queued, so in flight from here: a failed submit leaves the entry in the queue, and
        // the next wait submits it; its buffer must live until it completes.
        let submitted = loop {
            match ring.submit() {
                Ok(_) => break Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(io_error("io_uring_enter", e)),
            }
        };
        issued[slot] = Instant::now();
        submitted
    };
    // An error never returns while I/Os are in flight: the kernel may still write into their
    // buffers, so the loop drains first.
    for slot in 0..depth {
        in_flight += 1;
        if let Err(e) = issue(&mut ring, slot, &mut issued, &mut reading) {
            failure.get_or_insert(e);
            done = true;
            break;
        }
    }
    let mut reaped = Vec::with_capacity(depth);
    let mut wait_errors = 0;
    while in_flight > 0 {
        match ring.submit_and_wait(1) {
            Ok(_) => wait_errors = 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failure.get_or_insert(io_error("io_uring_enter", e));
                done = true;
                wait_errors += 1;
                if wait_errors > 1000 {
                    // The ring is broken: leave the buffers to the kernel rather than free them.
                    std::mem::forget(bufs);
                    return Err(failure.expect("set above"));
                }
            }
        }
        let now = Instant::now();
        reaped.clear();
        for cqe in ring.completion() {
            let slot = cqe.user_data() as usize;
            in_flight -= 1;
            completions += 1;
            let result = cqe.result();
            if result < 0 {
                let what = if reading[slot] { "read" } else { "write" };
                failure.get_or_insert(io_error(what, std::io::Error::from_raw_os_error(-result)));
                done = true;
            } else if !done {
                record(&mut slices, clock, now, (now - issued[slot]).as_nanos() as u64, reading[slot]);
            }
            reaped.push(slot);
        }
        if now >= clock.end {
            done = true;
        } else if completions >= next_stop_check {
            next_stop_check = completions + 64;
            done |= stop();
        }
        if !done {
            for &slot in &reaped {
                in_flight += 1;
                if let Err(e) = issue(&mut ring, slot, &mut issued, &mut reading) {
                    failure.get_or_insert(e);
                    done = true;
                    break;
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(slices),
    }
}

#[cfg(not(target_os = "linux"))]
fn uring_worker(
    _fd: RawFd,
    _w: &Workload,
    _offsets: Offsets,
    _clock: &Clock,
    _stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Slice>, ProbeError> {
    Err(ProbeError::Failed("io_uring exists only on Linux".into()))
}

#[cfg(test)]
mod tests {
    use super::super::file::Direct;
    use super::*;

    fn workload(pattern: Pattern, read_percent: u32, queue_depth: usize) -> Workload {
        Workload { block: 4096, queue_depth, jobs: 1, pattern, read_percent }
    }

    fn timing() -> Timing {
        Timing {
            warmup: Duration::from_millis(20),
            runtime: Duration::from_millis(200),
            slice: Duration::from_millis(50),
        }
    }

    #[test]
    fn both_engines_do_real_io_into_time_slices() {
        let dir = tempfile::tempdir().unwrap();
        let file = TestFile::create(dir.path(), "e", 8 << 20, Some(0), Direct::Auto).unwrap();
        file.fill(&|| Ok(())).unwrap();
        let mut engines = vec![Engine::Threads];
        if io_uring_available().is_ok() {
            engines.push(Engine::IoUring);
        }
        for engine in engines {
            let slices = run(&file, &workload(Pattern::Random, 70, 4), engine, &timing(), &|| false).unwrap();
            assert_eq!(slices.len(), 4, "{engine:?}");
            let reads: u64 = slices.iter().map(|s| s.reads).sum();
            let writes: u64 = slices.iter().map(|s| s.writes).sum();
            assert!(reads > 0 && writes > 0, "{engine:?}: {reads} reads, {writes} writes");
            let share = reads as f64 / (reads + writes) as f64;
            assert!((0.6..0.8).contains(&share), "{engine:?}: read share {share}");
            let lat = &slices[1].read_lat;
            assert_eq!(lat.len(), slices[1].reads);
            let p50 = lat.percentile_ns(50.0).unwrap();
            assert!(p50 > 100.0 && p50 < 1e9, "{engine:?}: p50 {p50} ns");
        }
    }

    #[test]
    fn sequential_offsets_walk_each_jobs_region_and_random_ones_cover_the_file() {
        let w = Workload {
            block: 4096,
            queue_depth: 1,
            jobs: 2,
            pattern: Pattern::Sequential,
            read_percent: 100,
        };
        let mut o = Offsets::new(&w, (10, 13), 20, 0);
        let got: Vec<u64> = (0..5).map(|_| o.next().0 / 4096).collect();
        assert_eq!(got, [10, 11, 12, 10, 11]);
        let mut r = Offsets::new(&workload(Pattern::Random, 0, 1), (0, 20), 20, 3);
        let mut seen = [false; 20];
        for _ in 0..2000 {
            let (offset, read) = r.next();
            assert!(!read);
            assert_eq!(offset % 4096, 0);
            seen[(offset / 4096) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "uniform over the file");
    }

    #[test]
    fn a_stop_returns_cancelled_after_draining() {
        let dir = tempfile::tempdir().unwrap();
        let file = TestFile::create(dir.path(), "s", 4 << 20, Some(0), Direct::Auto).unwrap();
        let long = Timing {
            warmup: Duration::ZERO,
            runtime: Duration::from_secs(30),
            slice: Duration::from_millis(100),
        };
        let started = Instant::now();
        let deadline = started + Duration::from_millis(100);
        let got = run(&file, &workload(Pattern::Random, 100, 8), Engine::Threads, &long, &|| {
            Instant::now() > deadline
        });
        assert!(matches!(got, Err(ProbeError::Cancelled)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
