//! The repetition engine every probe shares: warm-up, then timed repetitions until the noise
//! target is met, the repetition cap is hit, or the time budget is spent.
//!
//! The noise target applies to a sliding window, as in DaCapo's `--converge`: measuring stops
//! once the last `min_reps` repetitions vary by no more than `target_cv`, and the measurement
//! describes that window. On a shared host a neighbour's burst can slow a few repetitions by
//! 20 % for a second; repetitions before a steady stretch are then an extended warm-up rather
//! than part of the figure. When no window meets the target within the budget, the measurement
//! describes the steadiest window of `min_reps` repetitions seen (the lowest CV, the latest of
//! equals): the stretch least touched by the neighbours, whose CV, above the target, still says
//! how noisy the host was. Every timed repetition goes to `samples`, the window's marked.

use std::ops::Range;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::affinity::{allowed_cpus, pin_current_thread};
use crate::probe::{Effort, ProbeContext, ProbeError, Repetitions};
use fathom_datasets::stats::cv;

/// Measures one metric. `one` performs a single timed repetition and returns its value; the
/// first repetitions within the warm-up are discarded (caches, page faults, clock ramp-up).
pub fn repeat(
    ctx: &ProbeContext,
    budget: Duration,
    probe_start: Instant,
    mut one: impl FnMut() -> Result<f64, ProbeError>,
) -> Result<Repetitions, ProbeError> {
    let mut series = repeat_together(ctx, budget, probe_start, 1, |values| {
        values.push(one()?);
        Ok(())
    })?;
    Ok(series.pop().expect("one series"))
}

/// Measures `width` figures taken together in each repetition (a thread-count ladder), which
/// `one` pushes in order. The window is steady when every figure is.
pub fn repeat_together(
    ctx: &ProbeContext,
    budget: Duration,
    probe_start: Instant,
    width: usize,
    mut one: impl FnMut(&mut Vec<f64>) -> Result<(), ProbeError>,
) -> Result<Vec<Repetitions>, ProbeError> {
    let start = Instant::now();
    let end = (start + budget).min(ctx.deadline);
    let warmup_end = start + ctx.effort.warmup.min(budget / 4);
    let mut values = Vec::with_capacity(width);
    let mut take = |values: &mut Vec<f64>| -> Result<(), ProbeError> {
        ctx.check()?;
        values.clear();
        one(values)?;
        assert_eq!(values.len(), width, "a repetition gave the wrong number of figures");
        Ok(())
    };
    loop {
        take(&mut values)?;
        if Instant::now() >= warmup_end {
            break;
        }
    }
    let mut series = vec![Repetitions::default(); width];
    let window = ctx.effort.min_reps.max(1);
    loop {
        take(&mut values)?;
        let at = probe_start.elapsed().as_secs_f64();
        for (reps, &value) in series.iter_mut().zip(&values) {
            reps.values.push(value);
            reps.offsets.push(at);
        }
        let n = series[0].values.len();
        if n >= window && series.iter().all(|r| steady(&r.values[n - window..], ctx.effort.target_cv)) {
            for reps in &mut series {
                reps.window = Some(n - window..n);
            }
            return Ok(series);
        }
        if n >= ctx.effort.max_reps || Instant::now() >= end {
            let steadiest = steadiest_window(&series, window);
            for reps in &mut series {
                reps.window = steadiest.clone();
            }
            return Ok(series);
        }
    }
}

/// The `width` consecutive repetitions whose noisiest figure varies least (the latest of equal
/// windows); `None` when there are no more repetitions than that, and all of them count.
fn steadiest_window(series: &[Repetitions], width: usize) -> Option<Range<usize>> {
    let n = series.first()?.values.len();
    if n <= width {
        return None;
    }
    let noise = |start: usize| {
        series
            .iter()
            .map(|r| {
                let w = &r.values[start..start + width];
                if w.iter().all(|&v| v == 0.0) { 0.0 } else { cv(w).unwrap_or(f64::INFINITY) }
            })
            .fold(0.0, f64::max)
    };
    let start = (0..=n - width).rev().min_by(|&a, &b| noise(a).total_cmp(&noise(b)))?;
    Some(start..start + width)
}

/// Whether a window of repetitions meets the noise target; a single repetition or a window of
/// zeros (nothing to vary) is steady.
fn steady(window: &[f64], target_cv: f64) -> bool {
    window.len() < 2 || window.iter().all(|&v| v == 0.0) || cv(window).is_some_and(|c| c <= target_cv)
}

/// Time for metrics measured one after another. Each takes its weight's share of what is left
/// of the probe's budget, so time a quiet metric did not need goes to the noisier ones after it.
#[derive(Debug)]
pub struct Shares {
    end: Instant,
    weight_left: u32,
}

impl Shares {
    pub fn new(budget: Duration, total_weight: u32) -> Shares {
        Shares { end: Instant::now() + budget, weight_left: total_weight.max(1) }
    }

    /// The next metric's time: `weight` parts of what is left.
    pub fn take(&mut self, weight: u32) -> Duration {
        let weight = weight.min(self.weight_left);
        let left = self.end.saturating_duration_since(Instant::now());
        let share = left * weight / self.weight_left.max(1);
        self.weight_left -= weight;
        share
    }
}

/// Windows of `min_reps` repetitions the budget holds.
const WINDOWS_PER_BUDGET: f64 = 10.0;

/// How long one repetition should run: short enough that the budget holds ten windows of
/// `min_reps`, long enough that timer resolution vanishes (5 ms at least; threads start before
/// their clock does). On a shared host the noise comes in stretches of tenths of a second to
/// seconds: on the machine of PERFORMANCE.md (`scripts/noise-profile`), 36 % of the windows of
/// five 5 ms slices had a CV under 2 %, against 32 % of five 20 ms slices and 27 % of five
/// 50 ms, and the longest stretch without such a window was 0.27 s, against 1.5 s and 1.8 s.
/// Short repetitions find the quiet stretches.
pub fn slice_for(budget: Duration, effort: &Effort) -> Duration {
    let per_rep = budget.as_secs_f64() / (effort.min_reps.max(1) as f64 * WINDOWS_PER_BUDGET);
    Duration::from_secs_f64(per_rep.clamp(0.005, 1.0))
}

/// Runs `work` (which returns the bytes it processed) back to back for about `slice`, and
/// returns the throughput in MB/s (10⁶ bytes per second).
pub fn throughput_mbps(slice: Duration, mut work: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    loop {
        bytes += work();
        let elapsed = start.elapsed();
        if elapsed >= slice {
            return bytes as f64 / elapsed.as_secs_f64() / 1e6;
        }
    }
}

/// The same as [`throughput_mbps`] on `threads` threads at once, each pinned to its own CPU
/// (of those the process may use) and given its own state by `setup`; all start together
/// behind a barrier and the total is divided by the longest thread's time, so a straggler
/// lowers the figure as it would lower a real workload. Unpinned, two threads of a short
/// repetition can share one CPU until the scheduler spreads them: AES-GCM on two threads read
/// 5–15 % below `openssl speed -multi 2` that way, and within 5 % pinned.
pub fn parallel_throughput_mbps<S>(threads: usize, slice: Duration, setup: S) -> f64
where
    S: Fn(usize) -> Box<dyn FnMut() -> usize + Send> + Sync,
{
    let barrier = Barrier::new(threads);
    let cpus = allowed_cpus();
    let results: Vec<(usize, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let barrier = &barrier;
                let setup = &setup;
                let cpu = cpus[i % cpus.len()];
                scope.spawn(move || {
                    pin_current_thread(cpu);
                    let mut job = setup(i);
                    barrier.wait();
                    let start = Instant::now();
                    let mut bytes = 0usize;
                    while start.elapsed() < slice {
                        bytes += job();
                    }
                    (bytes, start.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("probe worker panicked")).collect()
    });
    let bytes: usize = results.iter().map(|r| r.0).sum();
    let longest = results.iter().map(|r| r.1).max().unwrap_or_default();
    bytes as f64 / longest.as_secs_f64().max(1e-9) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::CancelToken;
    use std::collections::BTreeMap;

    fn ctx(effort: Effort, progress: &(dyn Fn(f64) + Sync)) -> ProbeContext<'_> {
        ProbeContext {
            params: BTreeMap::new(),
            effort,
            deadline: Instant::now() + Duration::from_secs(5),
            cancel: CancelToken::default(),
            progress,
        }
    }

    const EFFORT: Effort = Effort {
        budget: Duration::from_secs(1),
        warmup: Duration::ZERO,
        min_reps: 5,
        max_reps: 50,
        target_cv: 0.02,
    };

    #[test]
    fn stops_at_min_reps_when_quiet_and_at_max_reps_when_noisy() {
        let quiet =
            repeat(&ctx(EFFORT, &|_| {}), Duration::from_secs(1), Instant::now(), || Ok(100.0)).unwrap();
        assert_eq!(quiet.values.len(), 5);
        let mut flip = false;
        let noisy = repeat(&ctx(EFFORT, &|_| {}), Duration::from_secs(5), Instant::now(), || {
            flip = !flip;
            Ok(if flip { 50.0 } else { 150.0 })
        })
        .unwrap();
        assert_eq!(noisy.values.len(), 50);
        // Nothing met the target. Windows that start on a 150 vary least (mean 110); the
        // latest of them is the one described.
        assert_eq!(noisy.values[0], 150.0);
        assert_eq!(noisy.window, Some(44..49));
        assert!(noisy.offsets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_disturbed_start_is_left_out_of_the_steady_window() {
        // The first value is the warm-up's, which is never kept.
        let values = [0.0, 60.0, 140.0, 80.0, 100.0, 101.0, 99.0, 100.0, 100.5, 1.0];
        let mut next = values.iter();
        let reps = repeat(&ctx(EFFORT, &|_| {}), Duration::from_secs(5), Instant::now(), || {
            Ok(*next.next().unwrap())
        })
        .unwrap();
        assert_eq!(reps.values, values[1..9]);
        assert_eq!(reps.offsets.len(), 8);
        assert_eq!(reps.window, Some(3..8));
        assert_eq!(reps.steady(), [100.0, 101.0, 99.0, 100.0, 100.5]);
    }

    #[test]
    fn figures_taken_together_stop_when_all_are_steady() {
        // The first figure is steady from the start, the second only from the fourth repetition.
        let second = [0.0, 10.0, 20.0, 30.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0];
        let mut i = 0;
        let series = repeat_together(&ctx(EFFORT, &|_| {}), Duration::from_secs(5), Instant::now(), 2, |f| {
            f.extend([7.0, second[i]]);
            i += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].values.len(), 8);
        assert!(series.iter().all(|s| s.window == Some(3..8)));
        assert_eq!(series[1].steady(), [50.0; 5]);
    }

    #[test]
    fn without_a_steady_window_the_steadiest_stretch_is_described() {
        // A quiet stretch within the target's reach (CV 3 %, target 2 %) between bursts.
        let values = [0.0, 60.0, 140.0, 80.0, 97.0, 103.0, 100.0, 95.0, 104.0, 150.0, 40.0, 120.0];
        let mut next = values.iter().cycle();
        let effort = Effort { max_reps: values.len() - 1, ..EFFORT };
        let reps = repeat(&ctx(effort, &|_| {}), Duration::from_secs(5), Instant::now(), || {
            Ok(*next.next().unwrap())
        })
        .unwrap();
        assert_eq!(reps.values.len(), 11);
        assert_eq!(reps.window, Some(3..8));
        assert_eq!(reps.steady(), [97.0, 103.0, 100.0, 95.0, 104.0]);
        // Figures taken together: the window where the noisier of the two varies least. Alone,
        // the first figure's steadiest windows would be 0..3 and 1..4 (equal; the latest wins).
        let first = [1.0, 100.0, 104.0, 100.0, 100.0, 108.0, 100.0];
        let second = [1.0, 100.0, 100.0, 104.0, 108.0, 100.0, 100.0];
        let mut i = 0;
        let effort = Effort { min_reps: 3, max_reps: 6, ..EFFORT };
        let series = repeat_together(&ctx(effort, &|_| {}), Duration::from_secs(5), Instant::now(), 2, |f| {
            f.extend([first[i], second[i]]);
            i += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(series[0].values.len(), 6, "no window met the 2 % target");
        assert!(series.iter().all(|s| s.window == Some(0..3)));
    }

    #[test]
    fn shares_give_what_a_quick_metric_left_to_the_next() {
        let mut shares = Shares::new(Duration::from_millis(400), 4);
        let first = shares.take(1);
        assert!(first <= Duration::from_millis(100) && first > Duration::from_millis(90), "{first:?}");
        std::thread::sleep(Duration::from_millis(10));
        // 390 ms left for three metrics: each of them gets more than a quarter of the whole.
        let second = shares.take(1);
        assert!(second > Duration::from_millis(120) && second <= Duration::from_millis(130), "{second:?}");
        let rest = shares.take(2);
        assert!(rest > Duration::from_millis(250), "{rest:?}");
        assert_eq!(shares.take(1), Duration::ZERO, "nothing is left after the whole weight");
    }

    #[test]
    fn the_budget_bounds_a_noisy_metric() {
        let mut flip = false;
        let started = Instant::now();
        let effort = Effort { max_reps: usize::MAX, ..EFFORT };
        let reps = repeat(&ctx(effort, &|_| {}), Duration::from_millis(100), Instant::now(), || {
            std::thread::sleep(Duration::from_millis(5));
            flip = !flip;
            Ok(if flip { 1.0 } else { 3.0 })
        })
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(reps.values.len() >= 5, "{}", reps.values.len());
    }

    #[test]
    fn cancellation_stops_between_repetitions() {
        let c = ctx(EFFORT, &|_| {});
        c.cancel.cancel();
        assert!(matches!(
            repeat(&c, Duration::from_secs(1), Instant::now(), || Ok(1.0)),
            Err(ProbeError::Cancelled)
        ));
    }

    #[test]
    fn parallel_throughput_runs_every_thread_with_its_own_state() {
        use std::sync::Mutex;
        let started = Mutex::new(Vec::new());
        let mbps = parallel_throughput_mbps(3, Duration::from_millis(30), |i| {
            started.lock().unwrap().push(i);
            Box::new(|| {
                std::thread::sleep(Duration::from_millis(1));
                1000
            })
        });
        let mut started = started.into_inner().unwrap();
        started.sort();
        assert_eq!(started, vec![0, 1, 2]);
        // Three threads, each about 1000 bytes per millisecond: about 3 MB/s, at most 3.
        assert!(mbps > 1.0 && mbps <= 3.0 + 1e-9, "{mbps}");
    }
}
