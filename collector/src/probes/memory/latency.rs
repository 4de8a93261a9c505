//! `memory.latency`: random pointer-chasing latency from L1 to main memory.
//!
//! For a working set of W bytes the probe lays out W/64 cache-line nodes, each holding the
//! address of the next at its start, linked in one random cycle (Sattolo's algorithm, fixed
//! seed), and follows it with dependent loads (`p = *p`, 16 per loop iteration): no load can
//! start before the previous one returned and the random order defeats the prefetchers, so the
//! time per load is the load-to-use latency of wherever the working set lives. This is the
//! method of lmbench's `lat_mem_rd` with a random rather than a strided chain.
//!
//! The sweep doubles the working set from 16 KiB up to `max_size`, adding half of each cache
//! level (L1d, L2, last level) read from sysfs, and leaving out doubling points near a cache's
//! capacity (more than ¾ and less than 1½ of it): there the chain is a mixture of two levels
//! whose share moves with whatever else touches the cache (on a VM, the sibling hyperthread's
//! tenant), so such a point measures the neighbours more than the hardware; `latency_ws` is recorded for every point (its
//! `params` add `working_set=`), `latency_l1`, `latency_l2` and `latency_llc` at the half-cache
//! points, and `latency` at `max_size`, far beyond the last-level cache: main memory.
//!
//! With `huge_pages=auto` the buffer is 2 MiB-aligned and advised `MADV_HUGEPAGE`, so working
//! sets above L2 (which would overflow the TLB's 4 KiB-page reach of a few MiB) measure memory,
//! not page walks; the smaller ones sit in the same huge pages, physically contiguous, so they
//! also spread evenly over the cache sets. `huge_pages=off` advises `MADV_NOHUGEPAGE`: 4 KiB
//! pages, page walks included, as most applications see memory. Whether the kernel granted huge
//! pages is read back from `/proc/self/smaps` and noted.
//!
//! The chase runs on one thread pinned to the CPU the probe started on, so the pages it touches
//! first are local to that CPU's memory node. `collector/src/calibrate/pointer_chase.c` is the same
//! method in 100 lines of C, to check the figures against.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fathom_datasets::params::canonical;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::system::{
    Caches, Pages, Region, caches, fmt_size, huge_page_bytes, mem_available, size_param, switch_param,
};
use crate::affinity::{current_cpu, pin_current_thread};
use crate::load::LoadMeter;
use crate::measure::repeat;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions};

pub struct MemoryLatency;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "max_size",
        default: "auto",
        help: "largest working set, where `latency` is measured: a size (1MiB–64GiB) or `auto` \
               (max(256 MiB, 8 × LLC), a power of two, at most half the available memory)",
        identity: true,
    },
    ParamSpec {
        name: "huge_pages",
        default: "auto",
        help: "`auto`: ask for transparent huge pages so page walks stay out of the figures; \
               `off`: 4 KiB pages",
        identity: true,
    },
];

/// Bytes per node: one cache line.
const LINE: usize = 64;
/// The smallest working set of the sweep.
const MIN_WS: usize = 16 << 10;
/// Dependent loads per loop iteration of the chase.
const UNROLL: usize = 16;
const SEED: u64 = 0xfa7_0c4a5e;
/// The shortest and longest repetition.
const MIN_REP: Duration = Duration::from_millis(5);
const MAX_REP: Duration = Duration::from_millis(100);

/// The checked parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    max: usize,
    huge: bool,
}

fn settings(params: &BTreeMap<String, String>) -> Result<Settings, ProbeError> {
    settings_with(params, &caches(), mem_available())
}

fn settings_with(
    params: &BTreeMap<String, String>,
    caches: &Caches,
    available: Option<u64>,
) -> Result<Settings, ProbeError> {
    let half_available = available.map_or(usize::MAX, |a| usize::try_from(a / 2).unwrap_or(usize::MAX));
    let auto = (256usize << 20).max(8 * caches.llc).next_power_of_two();
    let max = size_param(params, "max_size", auto, half_available, LINE, |text| {
        format!(
            "`{text}` is more than half the available memory ({})",
            fmt_size(half_available.saturating_mul(2))
        )
    })?;
    let huge = switch_param(params, "huge_pages")?;
    Ok(Settings { max, huge })
}

/// The sweep: 16 KiB doubling below `max` except near a cache's capacity, `max` itself, and
/// half of each cache level.
fn working_sets(caches: &Caches, max: usize) -> Vec<usize> {
    let near_capacity =
        |ws: usize| [caches.l1d, caches.l2, caches.llc].iter().any(|&c| ws * 4 > c * 3 && ws * 2 < c * 3);
    let mut sets = BTreeSet::new();
    let mut ws = MIN_WS;
    while ws < max {
        if !near_capacity(ws) {
            sets.insert(ws);
        }
        ws *= 2;
    }
    sets.insert(max);
    for cache in [caches.l1d, caches.l2, caches.llc] {
        sets.insert(working_point(cache));
    }
    sets.into_iter().collect()
}

/// A random cyclic permutation of `0..n` (Sattolo's algorithm): `next[i]` follows `i`, and
/// following `next` from any node visits all `n` before returning.
fn sattolo(n: usize, rng: &mut StdRng) -> Vec<u32> {
    assert!(n <= u32::MAX as usize, "{n} nodes do not fit u32 indices");
    let mut next: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..i as u32) as usize;
        next.swap(i, j);
    }
    next
}

/// Links the first `nodes` lines of `region` in a random cycle and returns its first node.
fn build_cycle(region: &mut Region, nodes: usize, rng: &mut StdRng) -> *const u8 {
    assert!(nodes >= 1 && nodes * LINE <= region.len());
    let next = sattolo(nodes, rng);
    let base = region.as_mut_ptr();
    for (i, &j) in next.iter().enumerate() {
        // SAFETY: i and j are below `nodes`, so both lines lie within the region, and each
        // node's first word is written before any chase reads it.
        unsafe { base.add(i * LINE).cast::<*const u8>().write(base.add(j as usize * LINE)) };
    }
    base
}

/// Follows `count` dependent loads (rounded down to a multiple of 16) from `p`.
///
/// # Safety
/// `p` must be a node of a cycle made by [`build_cycle`] whose region is still alive.
#[inline(never)]
unsafe fn chase(mut p: *const u8, count: usize) -> *const u8 {
    for _ in 0..count / UNROLL {
        // SAFETY (all 16): every node holds the address of another node of the cycle.
        unsafe {
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
            p = *p.cast::<*const u8>();
        }
    }
    std::hint::black_box(p)
}

/// Times `count` loads from `*p`, moving `p` on; nanoseconds per load.
fn timed_chase(p: &mut *const u8, count: usize) -> f64 {
    let started = Instant::now();
    // SAFETY: `p` is always a node of the cycle being measured, whose region outlives the loop.
    *p = unsafe { chase(*p, count) };
    started.elapsed().as_secs_f64() * 1e9 / count as f64
}

/// Relative time a working set gets from the budget: sets beyond L2 vary more, and the
/// largest gives the key metric.
fn weight(ws: usize, caches: &Caches, max: usize) -> u32 {
    if ws >= max {
        3
    } else if ws > caches.l2 {
        2
    } else {
        1
    }
}

impl Probe for MemoryLatency {
    fn id(&self) -> &'static str {
        "memory.latency"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let settings = settings(&ctx.params)?;
        let cpu = current_cpu();
        // One thread pinned where the probe started: the pages it first touches are local to
        // it, and no migration empties its caches mid-repetition.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let pinned = cpu.is_some_and(pin_current_thread);
                    self.sweep(ctx, out, settings, cpu.filter(|_| pinned))
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl MemoryLatency {
    fn sweep(
        &self,
        ctx: &ProbeContext,
        out: &mut ProbeOutput,
        settings: Settings,
        pinned: Option<usize>,
    ) -> Result<(), ProbeError> {
        let start = Instant::now();
        let end = start + ctx.effort.budget;
        let caches = caches();
        let sets = working_sets(&caches, settings.max);
        let largest = *sets.last().expect("the sweep has max_size");
        let base_params: Vec<(&str, String)> =
            PARAMS.iter().filter(|p| p.identity).map(|p| (p.name, ctx.param(p.name).to_string())).collect();
        let params = self.params_text(ctx);

        // One buffer for every working set. The largest set comes first: building its cycle
        // faults every page in before any timing, and `latency`, the key metric, gets its share
        // of the budget before any overrun of the others can eat into it.
        let mut region = Region::new(largest, if settings.huge { Pages::Huge } else { Pages::Small })?;

        let mut left_weight: u32 = sets.iter().map(|&ws| weight(ws, &caches, largest)).sum();
        let mut build_max = Duration::ZERO;
        for (i, &ws) in sets.iter().rev().enumerate() {
            ctx.check()?;
            let load = LoadMeter::start();
            let built = Instant::now();
            let mut rng = StdRng::seed_from_u64(SEED ^ ws as u64);
            let mut p = build_cycle(&mut region, ws / LINE, &mut rng);
            build_max = build_max.max(built.elapsed());

            // This set's share of what is left of the budget, by weight.
            let w = weight(ws, &caches, largest);
            let left = end.saturating_duration_since(Instant::now());
            // A quarter of the share warms up (at most the suite's warm-up); the rest holds
            // about eight windows of the minimum repetitions (see `measure`), each repetition
            // at least MIN_REP long, so a share too small for one window grows (overrunning
            // the budget a little, not cutting repetitions).
            let min_reps = ctx.effort.min_reps.max(1) as u32;
            let share = (left * w / left_weight.max(1)).max(MIN_REP * (min_reps + 2));
            left_weight -= w;
            let warmup = ctx.effort.warmup.min(share / 4);
            let rep_time = (share.saturating_sub(warmup) / (8 * min_reps)).clamp(MIN_REP, MAX_REP);

            // Size the repetitions: loads doubling until a run lasts 2 ms, then one more 2 ms
            // run, by when what the build left in the caches no longer flatters the figure.
            // Each repetition then resizes the next from its own time.
            let loads_for = |time: Duration, ns: f64| {
                ((time.as_secs_f64() * 1e9 / ns.max(0.05)) as usize).clamp(UNROLL * 64, 1 << 34) / UNROLL
                    * UNROLL
            };
            let mut count = 4096;
            let ns = loop {
                let ns = timed_chase(&mut p, count);
                if ns * count as f64 >= 2e6 || count >= 1 << 30 {
                    break ns;
                }
                count *= 4;
            };
            let ns = timed_chase(&mut p, loads_for(Duration::from_millis(2), ns));
            let mut count = loads_for(rep_time, ns);
            let reps = repeat(ctx, share, start, || {
                let ns = timed_chase(&mut p, count);
                count = loads_for(rep_time, ns);
                Ok(ns)
            })?;
            let load = load.finish();

            let ws_params = canonical(
                base_params.iter().map(|(k, v)| (*k, v.clone())).chain([("working_set", fmt_size(ws))]),
            );
            out.record(self.id(), "latency_ws", &ws_params, &reps, load);
            let mut record =
                |metric: &str, reps: &Repetitions| out.record(self.id(), metric, &params, reps, load);
            if ws == working_point(caches.l1d) {
                record("latency_l1", &reps);
            }
            if ws == working_point(caches.l2) {
                record("latency_l2", &reps);
            }
            if ws == working_point(caches.llc) {
                record("latency_llc", &reps);
            }
            if ws == settings.max {
                record("latency", &reps);
            }
            (ctx.progress)((i + 1) as f64 / sets.len() as f64);
        }

        let granted = huge_page_bytes(&region);
        out.notes.push(format!(
            "working sets {} to {}; `latency` at {}; caches L1d {} L2 {} LLC {}{}",
            fmt_size(sets[0]),
            fmt_size(largest),
            fmt_size(settings.max),
            fmt_size(caches.l1d),
            fmt_size(caches.l2),
            fmt_size(caches.llc),
            if caches.from_sysfs { " (sysfs)" } else { " (some sizes are fallbacks: sysfs unreadable)" },
        ));
        out.notes.push(match (settings.huge, granted) {
            (true, Some(b)) => format!(
                "huge pages asked for (MADV_HUGEPAGE): {} of {} granted{}",
                fmt_size(b),
                fmt_size(region.len()),
                if b < region.len() / 2 { "; figures beyond the TLB's reach include page walks" } else { "" }
            ),
            (true, None) => "huge pages asked for (MADV_HUGEPAGE); whether granted is unknown".into(),
            (false, _) => "huge pages off (MADV_NOHUGEPAGE): figures include page walks".into(),
        });
        out.notes.push(format!(
            "chase pinned to CPU {}; the largest cycle (page faults included) built in {} ms",
            pinned.map_or_else(|| "none (pinning failed)".to_string(), |c| c.to_string()),
            build_max.as_millis()
        ));
        if settings.max < 2 * caches.llc {
            out.notes.push(format!(
                "max_size {} is less than twice the LLC: `latency` is not main memory",
                fmt_size(settings.max)
            ));
        }
        Ok(())
    }
}

/// The working set that measures a cache level: half its size, in whole lines.
fn working_point(cache: usize) -> usize {
    (cache / 2 / LINE * LINE).max(LINE * UNROLL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sattolo_makes_one_cycle_through_every_node() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1usize, 2, 3, 10, 1000, 4099] {
            let next = sattolo(n, &mut rng);
            let mut seen = vec![false; n];
            let mut i = 0usize;
            for _ in 0..n {
                assert!(!seen[i], "node {i} visited twice with n = {n}");
                seen[i] = true;
                i = next[i] as usize;
            }
            assert_eq!(i, 0, "the walk returns to its start after n = {n} steps");
            assert!(seen.iter().all(|&s| s));
        }
        // Random, not the identity shifted by one.
        let next = sattolo(1000, &mut rng);
        assert!((0..1000).filter(|&i| next[i] as usize == (i + 1) % 1000).count() < 10);
    }

    #[test]
    fn the_chase_follows_the_cycle_in_memory() {
        let nodes = 512;
        let mut region = Region::new(nodes * LINE, Pages::Small).unwrap();
        let head = build_cycle(&mut region, nodes, &mut StdRng::seed_from_u64(1));
        // A whole number of laps comes back to the start; one node short does not.
        assert_eq!(unsafe { chase(head, nodes * 3) }, head);
        assert_ne!(unsafe { chase(head, nodes - UNROLL) }, head);
        let mut p = head;
        let ns = timed_chase(&mut p, nodes * 100);
        assert!(ns > 0.0 && ns < 1000.0, "{ns} ns per load");
    }

    #[test]
    fn the_sweep_covers_each_cache_and_max_size() {
        let c = Caches { l1d: 48 << 10, l2: 1280 << 10, llc: 32 << 20, llc_instances: 1, from_sysfs: true };
        let sets = working_sets(&c, 256 << 20);
        assert_eq!(sets[0], 16 << 10);
        assert_eq!(*sets.last().unwrap(), 256 << 20);
        for point in [24 << 10, 32 << 10, 640 << 10, 2 << 20, 16 << 20, 64 << 20, 128 << 20] {
            assert!(sets.contains(&point), "{} missing", fmt_size(point));
        }
        // Near a capacity (¾ to 1½ of it) a chain mixes two levels: 64 KiB against a 48 KiB
        // L1d, 1 MiB against 1.25 MiB of L2, 32 MiB against 32 MiB of LLC.
        for point in [64 << 10, 1 << 20, 32 << 20] {
            assert!(!sets.contains(&point), "{} is too near a cache's capacity", fmt_size(point));
        }
        assert!(sets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(fmt_size(640 << 10), "640KiB");
        assert_eq!(fmt_size(256 << 20), "256MiB");
        assert_eq!(fmt_size(1000), "1000B");
    }

    #[test]
    fn parameters_are_checked_with_their_name() {
        let c = Caches::FALLBACK;
        let p = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            let mut m: BTreeMap<String, String> =
                PARAMS.iter().map(|s| (s.name.to_string(), s.default.to_string())).collect();
            m.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            m
        };
        let auto = settings_with(&p(&[]), &c, Some(16 << 30)).unwrap();
        assert_eq!(auto, Settings { max: 256 << 20, huge: true });
        // Little memory: auto shrinks rather than fails.
        assert_eq!(settings_with(&p(&[]), &c, Some(200 << 20)).unwrap().max, 64 << 20);
        let name = |r: Result<Settings, ProbeError>| match r {
            Err(ProbeError::Param { name, .. }) => name,
            other => panic!("expected a parameter error, got {other:?}"),
        };
        assert_eq!(name(settings_with(&p(&[("max_size", "12KiB")]), &c, None)), "max_size");
        assert_eq!(name(settings_with(&p(&[("max_size", "big")]), &c, None)), "max_size");
        assert_eq!(name(settings_with(&p(&[("max_size", "8GiB")]), &c, Some(4 << 30))), "max_size");
        assert_eq!(name(settings_with(&p(&[("huge_pages", "yes")]), &c, None)), "huge_pages");
        let off = settings_with(&p(&[("max_size", "64MiB"), ("huge_pages", "off")]), &c, None).unwrap();
        assert_eq!(off, Settings { max: 64 << 20, huge: false });
    }
}
