//! The repetition engine every probe shares: warm-up, then timed repetitions until the noise
//! target is met, the repetition cap is hit, or the time budget is spent.

use std::sync::Barrier;
use std::time::{Duration, Instant};

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
    let start = Instant::now();
    let end = (start + budget).min(ctx.deadline);
    let warmup_end = start + ctx.effort.warmup.min(budget / 4);
    loop {
        ctx.check()?;
        one()?;
        if Instant::now() >= warmup_end {
            break;
        }
    }
    let mut reps = Repetitions::default();
    loop {
        ctx.check()?;
        let value = one()?;
        reps.values.push(value);
        reps.offsets.push(probe_start.elapsed().as_secs_f64());
        if done(&ctx.effort, &reps.values, Instant::now() >= end) {
            return Ok(reps);
        }
    }
}

fn done(effort: &Effort, values: &[f64], out_of_time: bool) -> bool {
    let n = values.len();
    let quiet = n >= effort.min_reps && cv(values).is_some_and(|c| c <= effort.target_cv);
    quiet || n >= effort.max_reps || out_of_time
}

/// How long one repetition should run so that the minimum repetitions and the warm-up fit the
/// budget with room to spare; long enough that timer resolution and thread start-up vanish.
pub fn slice_for(budget: Duration, effort: &Effort) -> Duration {
    let per_rep = budget.as_secs_f64() / (effort.min_reps.max(1) as f64 * 2.0 + 2.0);
    Duration::from_secs_f64(per_rep.clamp(0.01, 1.0))
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

/// The same as [`throughput_mbps`] on `threads` threads at once, each with its own state from
/// `setup`; all start together behind a barrier and the total is divided by the longest
/// thread's time, so a straggler lowers the figure as it would lower a real workload.
pub fn parallel_throughput_mbps<S>(threads: usize, slice: Duration, setup: S) -> f64
where
    S: Fn(usize) -> Box<dyn FnMut() -> usize + Send> + Sync,
{
    let barrier = Barrier::new(threads);
    let results: Vec<(usize, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let barrier = &barrier;
                let setup = &setup;
                scope.spawn(move || {
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
        assert!(noisy.offsets.windows(2).all(|w| w[0] <= w[1]));
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
