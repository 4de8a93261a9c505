//! `memory.bandwidth`: read, write, copy and triad bandwidth of main memory on all threads.
//!
//! Three arrays of f64 (`a`, `b`, `c`), each `size` bytes, far larger than the last-level
//! cache, are split into one contiguous chunk per thread. Each thread is pinned to a CPU,
//! writes its chunks once before any timing (so first touch places the pages on its memory
//! node, and page faults stay out of the figures), and the threads start each repetition
//! together behind a barrier. A repetition is one or more full passes over the arrays; its
//! figure is all threads' bytes over the longest thread's time, in GB/s (10⁹ bytes/s).
//!
//! `size=auto` is, per array, four times all last-level caches together (STREAM's rule; on
//! AMD each CCX has its own L3, and all threads fill all of them) and at least 256 MiB, halved
//! while the three arrays would take more than half the available memory. Repetitions last
//! about [`slice_for`] of a quarter of the budget left after the setup (one full pass at least).
//!
//! The kernels, as STREAM and likwid-bench's `load`, `store`, `copy` and `stream` kernels:
//!
//! | metric  | kernel            | bytes counted per element |
//! |---------|-------------------|---------------------------|
//! | `read`  | `sum += b[i]`     | 8 (one load)              |
//! | `write` | `a[i] = x`        | 8 (one store)             |
//! | `copy`  | `a[i] = b[i]`     | 16 (load + store)         |
//! | `triad` | `a[i] = b[i] + s·c[i]` | 24 (two loads + store) |
//!
//! Bytes are counted STREAM's way: the write-allocate read a cached store causes is not counted.
//! With `nt_stores=auto` stores are non-temporal (`_mm512_stream_pd` with AVX-512F, else
//! `_mm256_stream_pd` with AVX, else `_mm_stream_pd`, then `sfence`), which bypass the caches
//! and cause no write-allocate traffic, so the figure is what memory really moved, as
//! likwid-bench's `_mem` kernels. `nt_stores=off` uses ordinary vector stores: the memory moves
//! the write-allocate reads as well, uncounted, so write, copy and triad come out lower. The
//! ISA is chosen at run time; elsewhere than x86-64 the kernels are plain loops the compiler
//! vectorises, with ordinary stores. Loads for `read` are vector loads into four independent
//! accumulators, whose sum is kept (`black_box`) so no load is optimised away.
//!
//! The arrays get the system's default pages (no `madvise`), as likwid-bench's: streaming
//! touches each page in order, so page size hardly matters to the figure, and on VMs that hand
//! freed huge pages back to the host, faulting fresh huge pages in costs seconds of setup.
//!

use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::system::{
    Pages, Region, caches, fmt_size, huge_page_bytes, mem_available, size_param, switch_param,
};
use crate::affinity::{allowed_cpus, pin_current_thread};
use crate::load::LoadMeter;
use crate::measure::{Shares, repeat, slice_for};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput};
use crate::probes::threads_param;

pub struct MemoryBandwidth;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "size",
        default: "auto",
        help: "bytes per array (three arrays): a size (1MiB–64GiB) or `auto` (max(4 × all \
               last-level caches, 256 MiB), less where memory is short)",
        identity: true,
    },
    ParamSpec { name: "threads", default: "all", help: "threads: a number or `all`", identity: true },
    ParamSpec {
        name: "nt_stores",
        default: "auto",
        help: "`auto`: non-temporal stores where the CPU has them (x86-64); `off`: ordinary stores",
        identity: true,
    },
];

/// The triad's scalar.
const SCALAR: f64 = 3.0;
/// Elements per thread chunk are a multiple of this (512 bytes), so chunks start aligned.
const CHUNK_ALIGN: usize = 64;

// ---------------------------------------------------------------------------------------------
// Kernels.

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx,
    Sse2,
    Portable,
}

impl Isa {
    fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx => is_x86_feature_detected!("avx"),
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => true,
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512F",
            Isa::Avx => "AVX",
            Isa::Sse2 => "SSE2",
            Isa::Portable => "portable loops",
        }
    }

    fn stream_intrinsic(self) -> &'static str {
        match self {
            Isa::Avx512 => "_mm512_stream_pd",
            Isa::Avx => "_mm256_stream_pd",
            Isa::Sse2 => "_mm_stream_pd",
            Isa::Portable => "none",
        }
    }
}

/// A kernel set: an ISA this CPU has, and whether stores are non-temporal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kernels {
    isa: Isa,
    nt: bool,
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($module:ident, $feature:literal, $lanes:literal, $zero:ident, $set1:ident, $loadu:ident,
     $storeu:ident, $store:ident, $stream:ident, $add:ident, $mul:ident) => {
        mod $module {
            use std::arch::x86_64::*;

            /// f64 per vector; a loop iteration handles four vectors.
            const LANES: usize = $lanes;
            const BLOCK: usize = LANES * 4;
            /// Aligned stores need the destination aligned to the vector.
            const ALIGN: usize = LANES * 8;

            #[target_feature(enable = $feature)]
            pub(super) fn read(a: &[f64]) -> f64 {
                let mut acc = [$zero(); 4];
                let blocks = a.chunks_exact(BLOCK);
                let rest = blocks.remainder();
                for block in blocks {
                    let p = block.as_ptr();
                    for (k, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: the block holds four vectors.
                        *acc = $add(*acc, unsafe { $loadu(p.add(k * LANES)) });
                    }
                }
                let mut sum: f64 = rest.iter().sum();
                let mut lanes = [0.0f64; LANES];
                for acc in acc {
                    // SAFETY: `lanes` holds one vector.
                    unsafe { $storeu(lanes.as_mut_ptr(), acc) };
                    sum += lanes.iter().sum::<f64>();
                }
                sum
            }

            #[target_feature(enable = $feature)]
            pub(super) fn fill<const NT: bool>(a: &mut [f64], x: f64) {
                let head = a.as_ptr().align_offset(ALIGN).min(a.len());
                let (first, body) = a.split_at_mut(head);
                first.fill(x);
                let v = $set1(x);
                let mut blocks = body.chunks_exact_mut(BLOCK);
                for block in &mut blocks {
                    let p = block.as_mut_ptr();
                    for k in 0..4 {
                        // SAFETY: within the block, and ALIGN-aligned as the body starts so.
                        unsafe { if NT { $stream(p.add(k * LANES), v) } else { $store(p.add(k * LANES), v) } }
                    }
                }
                blocks.into_remainder().fill(x);
                if NT {
                    _mm_sfence();
                }
            }

            #[target_feature(enable = $feature)]
            pub(super) fn copy<const NT: bool>(a: &mut [f64], b: &[f64]) {
                let head = a.as_ptr().align_offset(ALIGN).min(a.len());
                let (a0, a1) = a.split_at_mut(head);
                let (b0, b1) = b[..a0.len() + a1.len()].split_at(head);
                a0.copy_from_slice(b0);
                let mut dst = a1.chunks_exact_mut(BLOCK);
                let mut src = b1.chunks_exact(BLOCK);
                for (d, s) in (&mut dst).zip(&mut src) {
                    let (d, s) = (d.as_mut_ptr(), s.as_ptr());
                    for k in 0..4 {
                        // SAFETY: within both blocks; `d` is ALIGN-aligned.
                        unsafe {
                            let v = $loadu(s.add(k * LANES));
                            if NT { $stream(d.add(k * LANES), v) } else { $store(d.add(k * LANES), v) }
                        }
                    }
                }
                dst.into_remainder().copy_from_slice(src.remainder());
                if NT {
                    _mm_sfence();
                }
            }

            #[target_feature(enable = $feature)]
            pub(super) fn triad<const NT: bool>(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
                let n = a.len();
                let head = a.as_ptr().align_offset(ALIGN).min(n);
                let (a0, a1) = a.split_at_mut(head);
                let (b0, b1) = b[..n].split_at(head);
                let (c0, c1) = c[..n].split_at(head);
                for ((a, b), c) in a0.iter_mut().zip(b0).zip(c0) {
                    *a = b + s * c;
                }
                let vs = $set1(s);
                let mut dst = a1.chunks_exact_mut(BLOCK);
                let mut bs = b1.chunks_exact(BLOCK);
                let mut cs = c1.chunks_exact(BLOCK);
                for ((d, bb), cc) in (&mut dst).zip(&mut bs).zip(&mut cs) {
                    let (d, bb, cc) = (d.as_mut_ptr(), bb.as_ptr(), cc.as_ptr());
                    for k in 0..4 {
                        // SAFETY: within the three blocks; `d` is ALIGN-aligned.
                        unsafe {
                            let v = $add($loadu(bb.add(k * LANES)), $mul(vs, $loadu(cc.add(k * LANES))));
                            if NT { $stream(d.add(k * LANES), v) } else { $store(d.add(k * LANES), v) }
                        }
                    }
                }
                for ((a, b), c) in dst.into_remainder().iter_mut().zip(bs.remainder()).zip(cs.remainder()) {
                    *a = b + s * c;
                }
                if NT {
                    _mm_sfence();
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
x86_kernels!(
    avx512,
    "avx512f",
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_store_pd,
    _mm512_stream_pd,
    _mm512_add_pd,
    _mm512_mul_pd
);
#[cfg(target_arch = "x86_64")]
x86_kernels!(
    avx,
    "avx",
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_store_pd,
    _mm256_stream_pd,
    _mm256_add_pd,
    _mm256_mul_pd
);
#[cfg(target_arch = "x86_64")]
x86_kernels!(
    sse2,
    "sse2",
    2,
    _mm_setzero_pd,
    _mm_set1_pd,
    _mm_loadu_pd,
    _mm_storeu_pd,
    _mm_store_pd,
    _mm_stream_pd,
    _mm_add_pd,
    _mm_mul_pd
);

/// Plain loops for any CPU; ordinary stores.
mod portable {
    pub(super) fn read(a: &[f64]) -> f64 {
        // Eight independent sums, so the adds neither serialise nor stop vectorisation.
        let mut acc = [0.0f64; 8];
        let blocks = a.chunks_exact(8);
        let rest: f64 = blocks.remainder().iter().sum();
        for block in blocks {
            for (acc, x) in acc.iter_mut().zip(block) {
                *acc += x;
            }
        }
        acc.iter().sum::<f64>() + rest
    }

    pub(super) fn fill(a: &mut [f64], x: f64) {
        a.fill(x);
    }

    pub(super) fn copy(a: &mut [f64], b: &[f64]) {
        for (a, b) in a.iter_mut().zip(b) {
            *a = *b;
        }
    }

    pub(super) fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
        for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
            *a = b + s * c;
        }
    }
}

/// Calls an x86 kernel for `$k.isa` (checked available when `$k` was made), with the store
/// kind as a const parameter, or the portable one.
macro_rules! dispatch {
    ($k:expr, $f:ident($($arg:expr),*)) => {
        match ($k.isa, $k.nt) {
            // SAFETY (all three ISAs): `Kernels::new` only accepts an ISA this CPU has.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, true) => unsafe { avx512::$f::<true>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, false) => unsafe { avx512::$f::<false>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx, true) => unsafe { avx::$f::<true>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx, false) => unsafe { avx::$f::<false>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Sse2, true) => unsafe { sse2::$f::<true>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Sse2, false) => unsafe { sse2::$f::<false>($($arg),*) },
            _ => portable::$f($($arg),*),
        }
    };
}

impl Kernels {
    /// `isa` with non-temporal stores if `nt` (and the ISA has them); `None` if the CPU lacks it.
    fn new(isa: Isa, nt: bool) -> Option<Kernels> {
        isa.available().then_some(Kernels { isa, nt: nt && isa != Isa::Portable })
    }

    /// The widest ISA this CPU has.
    fn best(nt: bool) -> Kernels {
        [Isa::Avx512, Isa::Avx, Isa::Sse2, Isa::Portable]
            .into_iter()
            .find_map(|isa| Kernels::new(isa, nt))
            .expect("portable kernels run anywhere")
    }

    fn describe(self) -> String {
        if self.nt {
            format!(
                "{} kernels, non-temporal stores ({} + sfence)",
                self.isa.name(),
                self.isa.stream_intrinsic()
            )
        } else {
            format!("{} kernels, ordinary stores", self.isa.name())
        }
    }

    fn read(self, a: &[f64]) -> f64 {
        match self.isa {
            // SAFETY (all three): `Kernels::new` only accepts an ISA this CPU has.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::read(a) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx => unsafe { avx::read(a) },
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => unsafe { sse2::read(a) },
            _ => portable::read(a),
        }
    }

    fn fill(self, a: &mut [f64], x: f64) {
        dispatch!(self, fill(a, x))
    }

    fn copy(self, a: &mut [f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        dispatch!(self, copy(a, b))
    }

    fn triad(self, a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
        assert!(a.len() == b.len() && a.len() == c.len());
        dispatch!(self, triad(a, b, c, s))
    }
}

// ---------------------------------------------------------------------------------------------
// The arrays and the threads.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Read,
    Write,
    Copy,
    Triad,
}

impl Metric {
    const ALL: [Metric; 4] = [Metric::Read, Metric::Write, Metric::Copy, Metric::Triad];

    fn name(self) -> &'static str {
        match self {
            Metric::Read => "read",
            Metric::Write => "write",
            Metric::Copy => "copy",
            Metric::Triad => "triad",
        }
    }

    /// Bytes counted per element, STREAM's way.
    fn bytes_per_element(self) -> usize {
        match self {
            Metric::Read | Metric::Write => 8,
            Metric::Copy => 16,
            Metric::Triad => 24,
        }
    }

    fn run(self, k: Kernels, a: &mut [f64], b: &[f64], c: &[f64]) {
        match self {
            Metric::Read => {
                std::hint::black_box(k.read(b));
            }
            Metric::Write => k.fill(a, 1.5),
            Metric::Copy => k.copy(a, b),
            Metric::Triad => k.triad(a, b, c, SCALAR),
        }
    }
}

/// A raw pointer handed to a thread that writes only its own part of the region.
#[derive(Clone, Copy)]
struct SharedPtr(*mut f64);
// SAFETY: see `Arrays::new`: each thread writes a disjoint range.
unsafe impl Send for SharedPtr {}
unsafe impl Sync for SharedPtr {}

/// The three arrays, every element initialised, and the threads that work on them.
struct Arrays {
    regions: [Region; 3],
    len: usize,
    threads: usize,
    cpus: Vec<usize>,
}

impl Arrays {
    /// Allocates three arrays of `len` f64 and writes them on the threads that will use them
    /// (`threads`, pinned round-robin over `cpus`), so each page is first touched where it is used.
    fn new(len: usize, threads: usize, cpus: Vec<usize>) -> Result<Arrays, ProbeError> {
        let region = || Region::new(len * 8, Pages::Default);
        let regions = [region()?, region()?, region()?];
        let ptrs = regions.each_ref().map(|r| SharedPtr(r.as_ptr() as *mut f64));
        let chunk = chunk_len(len, threads);
        let parts = len.div_ceil(chunk);
        std::thread::scope(|scope| {
            for t in 0..parts {
                let cpus = &cpus;
                scope.spawn(move || {
                    pin_current_thread(cpus[t % cpus.len()]);
                    let range = t * chunk..((t + 1) * chunk).min(len);
                    for (ptr, value) in ptrs.iter().zip([0.0, 1.0, 2.0]) {
                        for i in range.clone() {
                            // SAFETY: i < len, each region holds len f64, and the threads'
                            // ranges are disjoint.
                            unsafe { ptr.0.add(i).write(value) };
                        }
                    }
                });
            }
        });
        Ok(Arrays { regions, len, threads, cpus })
    }

    /// `a` (written), `b` and `c` (read).
    fn slices(&mut self) -> (&mut [f64], &[f64], &[f64]) {
        let [a, b, c] = &mut self.regions;
        // SAFETY: each region holds `len` f64, all initialised in `new`, and the three regions
        // are distinct allocations.
        unsafe {
            (
                std::slice::from_raw_parts_mut(a.as_mut_ptr().cast::<f64>(), self.len),
                std::slice::from_raw_parts(b.as_ptr().cast::<f64>(), self.len),
                std::slice::from_raw_parts(c.as_ptr().cast::<f64>(), self.len),
            )
        }
    }

    /// Runs `passes` passes of `metric` on every thread, started together; returns the bytes
    /// counted and the longest thread's time in seconds.
    fn timed(&mut self, metric: Metric, k: Kernels, passes: usize) -> (f64, f64) {
        let chunk = chunk_len(self.len, self.threads);
        let (len, cpus) = (self.len, self.cpus.clone());
        let (a, b, c) = self.slices();
        let parts: Vec<_> = a.chunks_mut(chunk).zip(b.chunks(chunk)).zip(c.chunks(chunk)).collect();
        let barrier = Barrier::new(parts.len());
        let longest = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .into_iter()
                .enumerate()
                .map(|(t, ((a, b), c))| {
                    let (barrier, cpus) = (&barrier, &cpus);
                    scope.spawn(move || {
                        pin_current_thread(cpus[t % cpus.len()]);
                        barrier.wait();
                        let started = Instant::now();
                        for _ in 0..passes {
                            metric.run(k, a, b, c);
                        }
                        started.elapsed()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("bandwidth worker panicked")).max()
        });
        let bytes = (len * metric.bytes_per_element() * passes) as f64;
        (bytes, longest.unwrap_or_default().as_secs_f64().max(1e-9))
    }
}

/// Elements per thread: an equal share rounded up to 512 bytes.
fn chunk_len(len: usize, threads: usize) -> usize {
    len.div_ceil(threads.max(1)).next_multiple_of(CHUNK_ALIGN).max(CHUNK_ALIGN)
}

// ---------------------------------------------------------------------------------------------
// The probe.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    /// Bytes per array, a whole number of f64.
    size: usize,
    threads: usize,
    nt: bool,
}

fn settings(params: &BTreeMap<String, String>) -> Result<Settings, ProbeError> {
    let c = caches();
    settings_with(params, c.llc * c.llc_instances, mem_available())
}

/// `llc_total`: all last-level caches together, which all threads can fill at once.
fn settings_with(
    params: &BTreeMap<String, String>,
    llc_total: usize,
    available: Option<u64>,
) -> Result<Settings, ProbeError> {
    // The three arrays may take half of the available memory.
    let per_array_cap =
        available.map_or(usize::MAX, |a| usize::try_from(a / 6).unwrap_or(usize::MAX)).max(1 << 20);
    let auto = (4 * llc_total).max(256 << 20).next_multiple_of(1 << 20);
    let size = size_param(params, "size", auto, per_array_cap, 8, |text| {
        format!(
            "three arrays of `{text}` need more than half the available memory ({})",
            fmt_size(available.unwrap_or_default() as usize)
        )
    })?;
    let nt = switch_param(params, "nt_stores")?;
    Ok(Settings { size, threads: threads_param(params)?, nt })
}

impl Probe for MemoryBandwidth {
    fn id(&self) -> &'static str {
        "memory.bandwidth"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let s = settings(&ctx.params)?;
        let params = self.params_text(ctx);
        let start = Instant::now();
        let kernels = Kernels::best(s.nt);
        let cpus = allowed_cpus();
        let mut arrays = Arrays::new(s.size / 8, s.threads, cpus.clone())?;
        let setup = start.elapsed();
        let huge = huge_page_bytes(&arrays.regions[0]);

        let per_metric = (ctx.effort.budget.saturating_sub(setup) / 4).max(Duration::from_millis(100));
        let slice = slice_for(per_metric, &ctx.effort);
        let mut shares = Shares::new(per_metric * 4, 4);
        for (i, metric) in Metric::ALL.into_iter().enumerate() {
            ctx.check()?;
            let load = LoadMeter::start();
            // One pass sizes the repetitions (and warms up).
            let (_, one) = arrays.timed(metric, kernels, 1);
            let passes = (slice.as_secs_f64() / one).round().clamp(1.0, 1e6) as usize;
            let reps = repeat(ctx, shares.take(1), start, || {
                let (bytes, secs) = arrays.timed(metric, kernels, passes);
                Ok(bytes / secs / 1e9)
            })?;
            out.record(self.id(), metric.name(), &params, &reps, load.finish());
            (ctx.progress)((i + 1) as f64 / 4.0);
        }

        let c = caches();
        let shown = cpus.iter().take(s.threads).map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        out.notes.push(format!(
            "{}; {} threads pinned to CPUs {shown}{}",
            kernels.describe(),
            s.threads,
            if s.threads > cpus.len() { " (round-robin)" } else { "" }
        ));
        out.notes.push(format!(
            "3 arrays of {} ({} last-level cache{} of {}); huge pages: {}; setup {} ms",
            fmt_size(s.size),
            c.llc_instances,
            if c.llc_instances == 1 { "" } else { "s" },
            fmt_size(c.llc),
            huge.map_or_else(
                || "unknown".to_string(),
                |b| format!("{} of {}", fmt_size(b), fmt_size(s.size))
            ),
            setup.as_millis()
        ));
        if s.size < 4 * c.llc * c.llc_instances {
            out.notes.push("arrays smaller than 4 × the last-level caches: figures include cache".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kernel_set() -> Vec<Kernels> {
        [Isa::Avx512, Isa::Avx, Isa::Sse2, Isa::Portable]
            .into_iter()
            .flat_map(|isa| [true, false].map(|nt| Kernels::new(isa, nt)))
            .flatten()
            .collect()
    }

    #[test]
    fn kernels_compute_the_same_values_on_every_path() {
        let n = 1003;
        let b: Vec<f64> = (0..n).map(|i| (i % 97) as f64 * 0.25).collect();
        let c: Vec<f64> = (0..n).map(|i| (i % 13) as f64 - 6.5).collect();
        let expected_sum: f64 = b.iter().sum();
        let sets = every_kernel_set();
        assert!(sets.contains(&Kernels { isa: Isa::Portable, nt: false }));
        #[cfg(target_arch = "x86_64")]
        assert!(sets.iter().any(|k| k.nt), "x86-64 always has SSE2 streaming stores");
        // Odd offsets, so the aligned body has a head and a tail around it.
        for offset in [0, 1, 3, 7] {
            let (b, c) = (&b[offset..], &c[offset..]);
            let len = b.len();
            for k in &sets {
                let mut buf = vec![-1.0f64; n + 8];
                let a = &mut buf[offset..offset + len];
                assert_eq!(k.read(b), expected_sum_from(b), "{k:?} read, offset {offset}");
                k.fill(a, 1.5);
                assert!(a.iter().all(|&x| x == 1.5), "{k:?} fill, offset {offset}");
                k.copy(a, b);
                assert_eq!(a, b, "{k:?} copy, offset {offset}");
                k.triad(a, b, c, SCALAR);
                let want: Vec<f64> = b.iter().zip(c).map(|(b, c)| b + SCALAR * c).collect();
                assert_eq!(a, &want[..], "{k:?} triad, offset {offset}");
                assert!(
                    buf[..offset].iter().chain(&buf[offset + len..]).all(|&x| x == -1.0),
                    "{k:?} overran"
                );
            }
        }
        assert_eq!(expected_sum_from(&b), expected_sum);
    }

    /// Quarter-integers sum exactly in any order.
    fn expected_sum_from(b: &[f64]) -> f64 {
        b.iter().sum()
    }

    #[test]
    fn threads_cover_the_whole_arrays() {
        // 3 threads over a length that does not split evenly into 512-byte chunks.
        let len = 10_000;
        let mut arrays = Arrays::new(len, 3, allowed_cpus()).unwrap();
        {
            let (a, b, c) = arrays.slices();
            assert!(
                a.iter().all(|&x| x == 0.0) && b.iter().all(|&x| x == 1.0) && c.iter().all(|&x| x == 2.0)
            );
        }
        let k = Kernels::best(true);
        let (bytes, secs) = arrays.timed(Metric::Triad, k, 2);
        assert_eq!(bytes, (len * 24 * 2) as f64);
        assert!(secs > 0.0);
        assert!(arrays.slices().0.iter().all(|&x| x == 1.0 + SCALAR * 2.0));
        arrays.timed(Metric::Write, k, 1);
        assert!(arrays.slices().0.iter().all(|&x| x == 1.5));
        arrays.timed(Metric::Copy, k, 1);
        assert!(arrays.slices().0.iter().all(|&x| x == 1.0));
        assert_eq!(chunk_len(10_000, 3), 3392);
        assert_eq!(chunk_len(10, 4), 64);
    }

    #[test]
    fn parameters_are_checked_with_their_name() {
        let p = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            let mut m: BTreeMap<String, String> =
                PARAMS.iter().map(|s| (s.name.to_string(), s.default.to_string())).collect();
            m.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            m
        };
        let llc = 32 << 20;
        let auto = settings_with(&p(&[("threads", "2")]), llc, Some(16 << 30)).unwrap();
        assert_eq!(auto, Settings { size: 256 << 20, threads: 2, nt: true });
        // Twelve CCX caches: four times all of them.
        assert_eq!(settings_with(&p(&[]), 12 * llc, Some(64 << 30)).unwrap().size, 1536 << 20);
        // Short of memory, auto shrinks rather than fails.
        assert_eq!(settings_with(&p(&[]), llc, Some(600 << 20)).unwrap().size, 64 << 20);
        let name = |r: Result<Settings, ProbeError>| match r {
            Err(ProbeError::Param { name, .. }) => name,
            other => panic!("expected a parameter error, got {other:?}"),
        };
        assert_eq!(name(settings_with(&p(&[("size", "4KiB")]), llc, None)), "size");
        assert_eq!(name(settings_with(&p(&[("size", "huge")]), llc, None)), "size");
        assert_eq!(name(settings_with(&p(&[("size", "100GiB")]), llc, None)), "size");
        assert_eq!(name(settings_with(&p(&[("size", "4GiB")]), llc, Some(8 << 30))), "size");
        assert_eq!(name(settings_with(&p(&[("nt_stores", "yes")]), llc, None)), "nt_stores");
        assert_eq!(name(settings_with(&p(&[("threads", "0")]), llc, None)), "threads");
        let off = settings_with(&p(&[("size", "512MiB"), ("nt_stores", "off")]), llc, None).unwrap();
        assert_eq!((off.size, off.nt), (512 << 20, false));
    }
}
