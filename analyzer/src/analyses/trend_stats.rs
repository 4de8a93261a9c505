//! Robust statistics for nightly benchmark series, used by `trends` and `forecast`.
//!
//! A series is one positive value per night (IOPS, latency, free capacity…); `NaN` marks a
//! missing or disturbed night and is skipped everywhere. The analyzer works on `ln(value)`, so
//! a slope is a relative change per day and [`per_30_days`] turns it into "+x % per 30 days".
//!
//! - **Baseline**: [`rolling_median`], a trailing median that one bad night cannot move.
//! - **Trend**: [`theil_sen`], the median of all pairwise slopes with Sen's (1968) interval.
//!   It tolerates disturbed nights and outliers (29 % breakdown point: up to ~29 % of the
//!   points can be arbitrary before the slope breaks down), and the interval comes from the
//!   distribution of Kendall's S under "no trend", so it needs no normality assumption.
//! - **Forecast**: [`crossing`], when the current level, moving at the fitted slope, crosses a
//!   limit, with the earliest/latest date from the slope interval.

/// Median of the finite values in `buf` (reordered in place); `NaN` when there are none.
fn median_in_place(buf: &mut Vec<f64>) -> f64 {
    buf.retain(|v| v.is_finite());
    fathom_datasets::stats::median_in_place(buf).unwrap_or(f64::NAN)
}

/// Median of the finite values of `values`; `NaN` when there are none.
pub fn median(values: &[f64]) -> f64 {
    median_in_place(&mut values.to_vec())
}

/// The points with finite x and y, sorted by x (stable, so equal x keep their order).
fn finite_points_by_x(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> =
        x.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

/// Trailing rolling median: element `i` is the median of the finite values among
/// `values[i + 1 - window ..= i]` (fewer at the start of the series), `NaN` when that window
/// holds no finite value. An even count averages the two middle values. `window == 0` is an
/// empty window, so every element is `NaN`.
///
/// A median rather than a mean so that a disturbed night shifts the baseline by at most one
/// rank instead of by its full excess. O(n · window), fine for windows of a few weeks.
pub fn rolling_median(values: &[f64], window: usize) -> Vec<f64> {
    let mut buf = Vec::with_capacity(window);
    (0..values.len())
        .map(|i| {
            if window == 0 {
                return f64::NAN;
            }
            let start = (i + 1).saturating_sub(window);
            buf.clear();
            buf.extend_from_slice(&values[start..=i]);
            median_in_place(&mut buf)
        })
        .collect()
}

/// A Theil–Sen line `y = intercept + slope · x` with Sen's confidence interval for the slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlopeFit {
    /// Median of the pairwise slopes (y units per x unit; per day on ln values).
    pub slope: f64,
    /// Lower bound of Sen's interval for the slope.
    pub slope_low: f64,
    /// Upper bound of Sen's interval for the slope.
    pub slope_high: f64,
    /// Median of `y_i − slope · x_i`.
    pub intercept: f64,
    /// Points used (finite x and y).
    pub n: usize,
    /// Pairwise slopes the median was taken over (pairs with distinct x).
    pub pairs: usize,
    /// Smallest x used.
    pub x_min: f64,
    /// Largest x used.
    pub x_max: f64,
}

impl SlopeFit {
    /// The fitted line at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }

    /// Whether the interval excludes 0, i.e. the trend is significant at the fit's `z`.
    pub fn significant(&self) -> bool {
        self.slope_low > 0.0 || self.slope_high < 0.0
    }
}

/// Theil–Sen slope of `y` against `x` with Sen's (1968) two-sided interval at normal quantile
/// `z` (1.96 for 95 %). Points with a non-finite `x` or `y` are skipped (`NaN` nights); if the
/// slices differ in length the extra tail of the longer one is ignored.
///
/// The interval: with `N` sorted pairwise slopes and
/// Kendall's `var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5) − Σ u(u−1)(2u+5)] / 18` plus two cross
/// terms (groups of `t` tied x values and of `u` tied y values; without ties, the first term),
/// `C = z·√var(S)`, `M1 = (N − C)/2`, `M2 = (N + C)/2`; the bounds are the `round(M1)`-th and
/// `(round(M2)+1)`-th slopes (1-based, clamped to the list).
///
/// `None` with fewer than 3 usable points or when all x are equal (no slope defined).
pub fn theil_sen(x: &[f64], y: &[f64], z: f64) -> Option<SlopeFit> {
    let pts = finite_points_by_x(x, y);
    let n = pts.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for (i, &(xi, yi)) in pts.iter().enumerate() {
        for &(xj, yj) in &pts[i + 1..] {
            if xj != xi {
                slopes.push((yj - yi) / (xj - xi));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    // Order statistics by selection, not a sort: O(N) for the N = n(n−1)/2 slopes, which
    // over 90 runs are 4,005 a series and most of the nightly job's analysis time.
    let pairs = slopes.len();
    let mid = pairs / 2;
    let (below, &mut upper_mid, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
    let slope = if pairs % 2 == 1 {
        upper_mid
    } else {
        let lower_mid = below.iter().copied().max_by(f64::total_cmp).expect("an even count ≥ 2");
        (lower_mid + upper_mid) / 2.0
    };

    let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    ys.sort_unstable_by(f64::total_cmp);
    let var_s = kendall_var_s(&xs, &ys);
    let c = z.abs() * var_s.sqrt();
    let big_n = pairs as f64;
    let m1 = ((big_n - c) / 2.0).round();
    let m2 = ((big_n + c) / 2.0).round();
    let last = (pairs - 1) as f64;
    // 1-based M1-th → 0-based M1 − 1; 1-based (M2 + 1)-th → 0-based M2.
    let lo_idx = (m1 - 1.0).clamp(0.0, last) as usize;
    let hi_idx = m2.clamp(0.0, last) as usize;
    let low = order_stat(&mut slopes, lo_idx, mid, upper_mid);
    let high = order_stat(&mut slopes, hi_idx, mid, upper_mid);

    let mut resid: Vec<f64> = pts.iter().map(|&(a, b)| b - slope * a).collect();
    let intercept = median_in_place(&mut resid);

    Some(SlopeFit {
        slope,
        slope_low: low.min(slope),
        slope_high: high.max(slope),
        intercept,
        n,
        pairs,
        x_min: pts[0].0,
        x_max: pts[n - 1].0,
    })
}

/// The `k`-th smallest of `v` (0-based), `v` already partitioned around its `mid`-th, whose
/// value is `at_mid`: the selection runs on the side that holds `k`.
fn order_stat(v: &mut [f64], k: usize, mid: usize, at_mid: f64) -> f64 {
    match k.cmp(&mid) {
        std::cmp::Ordering::Equal => at_mid,
        std::cmp::Ordering::Less => *v[..mid].select_nth_unstable_by(k, f64::total_cmp).1,
        std::cmp::Ordering::Greater => *v[mid + 1..].select_nth_unstable_by(k - mid - 1, f64::total_cmp).1,
    }
}

/// Sums over the groups of `t` equal values of a sorted slice: Σ t(t−1)(2t+5), Σ t(t−1)(t−2)
/// and Σ t(t−1), the tie terms of Kendall's var(S).
struct TieSums {
    a: f64,
    b: f64,
    c: f64,
}

impl TieSums {
    fn of_sorted(v: &[f64]) -> TieSums {
        let mut sums = TieSums { a: 0.0, b: 0.0, c: 0.0 };
        let mut run = 1usize;
        for k in 1..=v.len() {
            if k < v.len() && v[k] == v[k - 1] {
                run += 1;
            } else {
                let t = run as f64;
                sums.a += t * (t - 1.0) * (2.0 * t + 5.0);
                sums.b += t * (t - 1.0) * (t - 2.0);
                sums.c += t * (t - 1.0);
                run = 1;
            }
        }
        sums
    }
}

/// Kendall's var(S) under "no trend" with ties in both x and y (Kendall 1970, eq. 4.4): several
/// runs a night tie in x, integer-valued metrics tie in y. Both slices sorted, of length ≥ 3.
fn kendall_var_s(xs: &[f64], ys: &[f64]) -> f64 {
    let nf = xs.len() as f64;
    let (tx, ty) = (TieSums::of_sorted(xs), TieSums::of_sorted(ys));
    ((nf * (nf - 1.0) * (2.0 * nf + 5.0) - tx.a - ty.a) / 18.0
        + tx.b * ty.b / (9.0 * nf * (nf - 1.0) * (nf - 2.0))
        + tx.c * ty.c / (2.0 * nf * (nf - 1.0)))
        .max(0.0)
}

/// Relative change over 30 days of a slope fitted on `ln(values)` per day:
/// `exp(30 · s) − 1`, e.g. `0.05` = +5 % per 30 days.
pub fn per_30_days(log_slope_per_day: f64) -> f64 {
    (30.0 * log_slope_per_day).exp() - 1.0
}

/// The current robust level at `at_x`: the median, over the last `last_k` usable points, of
/// each value moved along the fitted slope to `at_x` (`y_i + slope · (at_x − x_i)`).
///
/// This is the anchor [`crossing`] expects. It is preferred to `fit.at(at_x)` because the
/// global intercept is a median over the whole history: after a step change (a firmware
/// update, a new disk) it lags the present, while the last week's residual-adjusted values
/// describe where the series is now and, as a median, still ignore a bad night or two.
/// `None` when no point is usable.
pub fn anchored_level(fit: &SlopeFit, x: &[f64], y: &[f64], at_x: f64, last_k: usize) -> Option<f64> {
    let pts = finite_points_by_x(x, y);
    let start = pts.len().saturating_sub(last_k.max(1));
    let mut moved: Vec<f64> = pts[start..].iter().map(|&(a, b)| b + fit.slope * (at_x - a)).collect();
    let level = median_in_place(&mut moved);
    level.is_finite().then_some(level)
}

/// Which side of a limit is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The value must stay below the limit (latency).
    Upper,
    /// The value must stay above the limit (throughput, free capacity).
    Lower,
}

/// When a series reaches its limit at the current trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    /// The current level is already at or beyond the limit.
    AlreadyBeyond,
    /// The central slope does not move toward the limit, or it gets there only after the
    /// horizon (`max_days`).
    Never,
    /// Days after the anchor point: `days` at the central slope, `days_earliest` at the bound of
    /// the slope interval that moves fastest toward the limit, `days_latest` at the slowest one;
    /// `None` when that bound is flat, moves away (the interval includes "no trend") or gets
    /// there only after the horizon — "possibly never".
    Crosses { days: f64, days_earliest: f64, days_latest: Option<f64> },
}

/// Forecasts when a series crosses `limit`, all on the fitted scale (log units for ln values).
///
/// `level_now` is the current robust level at the last point (see [`anchored_level`]); the
/// line is `level_now + slope · days` rather than the global fit, so the forecast starts from
/// where the series is now. `max_days` caps the horizon (e.g. 3650): a crossing further away is
/// reported as `Never` (central) or `None` (latest). Non-finite inputs give `Never`.
pub fn crossing(fit: &SlopeFit, level_now: f64, limit: f64, bound: Bound, max_days: f64) -> Crossing {
    if !(level_now.is_finite() && limit.is_finite() && fit.slope.is_finite()) {
        return Crossing::Never;
    }
    // Headroom left and rates toward the limit, both positive when heading for it.
    let (headroom, toward) = match bound {
        Bound::Upper => (limit - level_now, 1.0),
        Bound::Lower => (level_now - limit, -1.0),
    };
    if headroom <= 0.0 {
        return Crossing::AlreadyBeyond;
    }
    let rate = toward * fit.slope;
    if rate <= 0.0 {
        return Crossing::Never;
    }
    let within_horizon = |d: f64| d <= max_days; // false for NaN
    let days = headroom / rate;
    if !within_horizon(days) {
        return Crossing::Never;
    }
    let (a, b) = (toward * fit.slope_low, toward * fit.slope_high);
    let fastest = a.max(b).max(rate);
    let slowest = a.min(b).min(rate);
    let days_earliest = headroom / fastest;
    let days_latest = (slowest > 0.0).then(|| headroom / slowest).filter(|d| within_horizon(*d));
    Crossing::Crosses { days, days_earliest, days_latest }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Deterministic normal samples: splitmix64 + Box–Muller.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn days(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn rolling_median_odd_window() {
        let r = rolling_median(&[5.0, 1.0, 3.0, 10.0, 2.0], 3);
        assert_eq!(r, vec![5.0, 3.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn rolling_median_even_window() {
        let r = rolling_median(&[4.0, 2.0, 8.0, 6.0], 2);
        assert_eq!(r, vec![4.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn rolling_median_skips_nan_and_all_nan_is_nan() {
        let n = f64::NAN;
        let r = rolling_median(&[n, 1.0, n, n, n, 7.0, 9.0], 3);
        assert!(r[0].is_nan());
        assert_eq!(r[1], 1.0);
        assert_eq!(r[2], 1.0); // [NaN, 1, NaN]
        assert_eq!(r[3], 1.0); // [1, NaN, NaN]
        assert!(r[4].is_nan()); // [NaN, NaN, NaN]
        assert_eq!(r[5], 7.0);
        assert_eq!(r[6], 8.0);
    }

    #[test]
    fn rolling_median_window_larger_than_series() {
        let r = rolling_median(&[3.0, 1.0, 2.0], 30);
        assert_eq!(r, vec![3.0, 2.0, 2.0]);
        assert!(rolling_median(&[1.0, 2.0], 0).iter().all(|v| v.is_nan()));
        assert!(rolling_median(&[], 7).is_empty());
    }

    #[test]
    fn theil_sen_exact_line_has_tight_interval() {
        let x = days(40);
        let y: Vec<f64> = x.iter().map(|v| 2.5 - 0.03 * v).collect();
        let f = theil_sen(&x, &y, 1.96).expect("fit");
        assert!(close(f.slope, -0.03, 1e-12));
        assert!(close(f.slope_low, -0.03, 1e-12) && close(f.slope_high, -0.03, 1e-12));
        assert!(close(f.intercept, 2.5, 1e-12));
        assert!(close(f.at(10.0), 2.2, 1e-12));
        assert_eq!((f.n, f.pairs), (40, 780));
        assert!(f.significant());
    }

    #[test]
    fn theil_sen_resists_a_huge_outlier() {
        let x = days(30);
        let mut y: Vec<f64> = x.iter().map(|v| 1.0 + 0.1 * v).collect();
        y[17] = 1e6;
        let f = theil_sen(&x, &y, 1.96).expect("fit");
        assert!(close(f.slope, 0.1, 1e-3), "slope {}", f.slope);
        assert!(close(f.intercept, 1.0, 1e-2), "intercept {}", f.intercept);
        assert!(f.slope_low <= 0.1 && 0.1 <= f.slope_high);
    }

    #[test]
    fn theil_sen_noise_interval_contains_zero() {
        let mut rng = Rng(42);
        let trials = 500;
        let mut covered = 0;
        for _ in 0..trials {
            let x = days(30);
            let y: Vec<f64> = (0..30).map(|_| rng.normal()).collect();
            let f = theil_sen(&x, &y, 1.96).expect("fit");
            assert!(f.slope_low <= f.slope && f.slope <= f.slope_high);
            if f.slope_low <= 0.0 && 0.0 <= f.slope_high {
                covered += 1;
            }
        }
        let cov = covered as f64 / trials as f64;
        println!("noise: CI contains 0 in {covered}/{trials} = {:.1} %", 100.0 * cov);
        assert!(cov >= 0.90, "coverage {cov}");
    }

    #[test]
    fn theil_sen_interval_covers_known_slope() {
        let mut rng = Rng(7);
        let trials = 500;
        let mut covered = 0;
        let mut significant = 0;
        for _ in 0..trials {
            // 60 nights, about 1 in 10 missing, slope 0.002/day on a 2 % noise.
            let x = days(60);
            let y: Vec<f64> = x
                .iter()
                .map(|v| {
                    let e = 0.02 * rng.normal();
                    if rng.uniform() < 0.1 { f64::NAN } else { 10.0 + 0.002 * v + e }
                })
                .collect();
            let f = theil_sen(&x, &y, 1.96).expect("fit");
            if f.slope_low <= 0.002 && 0.002 <= f.slope_high {
                covered += 1;
            }
            significant += f.significant() as usize;
        }
        let cov = covered as f64 / trials as f64;
        println!(
            "known slope: CI covers it in {covered}/{trials} = {:.1} %, significant in {significant}",
            100.0 * cov
        );
        assert!(cov >= 0.90, "coverage {cov}");
        assert!(significant > trials * 9 / 10);
    }

    /// The order statistics by selection are the ones a full sort gives, ties and even counts
    /// included.
    #[test]
    fn theil_sen_selection_equals_the_sorted_slopes() {
        let mut rng = Rng(41);
        for n in 3..70 {
            for ties in [false, true] {
                let x: Vec<f64> =
                    (0..n).map(|i| if ties { (i / 3) as f64 } else { i as f64 + rng.uniform() }).collect();
                let y: Vec<f64> = (0..n)
                    .map(|i| {
                        let v = 0.01 * i as f64 + rng.normal();
                        if ties { (v * 2.0).round() } else { v }
                    })
                    .collect();
                let Some(fit) = theil_sen(&x, &y, 1.96) else { continue };
                let pts = finite_points_by_x(&x, &y);
                let mut slopes: Vec<f64> = Vec::new();
                for (i, a) in pts.iter().enumerate() {
                    for b in &pts[i + 1..] {
                        if b.0 != a.0 {
                            slopes.push((b.1 - a.1) / (b.0 - a.0));
                        }
                    }
                }
                slopes.sort_by(f64::total_cmp);
                let m = slopes.len() / 2;
                let median =
                    if slopes.len() % 2 == 1 { slopes[m] } else { (slopes[m - 1] + slopes[m]) / 2.0 };
                let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
                let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
                ys.sort_by(f64::total_cmp);
                let c = 1.96 * kendall_var_s(&xs, &ys).sqrt();
                let (big_n, last) = (slopes.len() as f64, (slopes.len() - 1) as f64);
                let lo = slopes[(((big_n - c) / 2.0).round() - 1.0).clamp(0.0, last) as usize];
                let hi = slopes[((big_n + c) / 2.0).round().clamp(0.0, last) as usize];
                assert_eq!(
                    (fit.slope, fit.slope_low, fit.slope_high),
                    (median, lo.min(median), hi.max(median)),
                    "n {n} ties {ties}"
                );
            }
        }
    }

    #[test]
    fn theil_sen_handles_ties_in_x() {
        // Two measurements per day; pairs within a day are skipped, ties shrink var(S).
        let x: Vec<f64> = (0..20).map(|i| (i / 2) as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v - 1.0).collect();
        let f = theil_sen(&x, &y, 1.96).expect("fit");
        assert_eq!(f.pairs, 190 - 10);
        assert!(close(f.slope, 3.0, 1e-12) && close(f.slope_low, 3.0, 1e-12));
        assert!(close(f.intercept, -1.0, 1e-12));
        // All x equal: no slope.
        assert!(theil_sen(&[1.0; 5], &[1.0, 2.0, 3.0, 4.0, 5.0], 1.96).is_none());
    }

    #[test]
    fn kendall_variance_with_ties_matches_the_permutation_distribution() {
        // var(S) is the mean of S² over every permutation of y (each equally likely when there
        // is no trend): enumerate them for small samples with ties in x, in y and in both.
        fn s_stat(x: &[f64], y: &[f64]) -> f64 {
            let sign = |d: f64| (d > 0.0) as i32 - (d < 0.0) as i32;
            let mut s = 0;
            for i in 0..x.len() {
                for j in i + 1..x.len() {
                    s += sign(x[j] - x[i]) * sign(y[j] - y[i]);
                }
            }
            f64::from(s)
        }
        fn permutations(v: &mut Vec<f64>, k: usize, out: &mut Vec<Vec<f64>>) {
            if k == v.len() {
                out.push(v.clone());
                return;
            }
            for i in k..v.len() {
                v.swap(k, i);
                permutations(v, k + 1, out);
                v.swap(k, i);
            }
        }
        let cases: [(&[f64], &[f64]); 4] = [
            (&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            (&[0.0, 0.0, 1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            (&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 1.0, 1.0, 2.0, 2.0, 3.0]),
            (&[0.0, 0.0, 0.0, 1.0, 1.0, 2.0], &[1.0, 1.0, 2.0, 2.0, 2.0, 3.0]),
        ];
        for (x, y) in cases {
            let mut all = Vec::new();
            permutations(&mut y.to_vec(), 0, &mut all);
            let exact = all.iter().map(|p| s_stat(x, p).powi(2)).sum::<f64>() / all.len() as f64;
            let formula = kendall_var_s(x, y);
            assert!(close(formula, exact, 1e-9), "{x:?} {y:?}: {formula} vs {exact}");
        }
    }

    #[test]
    fn theil_sen_needs_three_points() {
        assert!(theil_sen(&[0.0, 1.0], &[1.0, 2.0], 1.96).is_none());
        assert!(theil_sen(&[0.0, 1.0, 2.0], &[1.0, f64::NAN, 2.0], 1.96).is_none());
        assert!(theil_sen(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0], 1.96).is_some());
    }

    #[test]
    fn theil_sen_skips_nan() {
        let n = f64::NAN;
        let x = days(8);
        let y = [0.0, n, 2.0, 3.0, n, 5.0, 6.0, 7.0];
        let f = theil_sen(&x, &y, 1.96).expect("fit");
        assert_eq!(f.n, 6);
        assert!(close(f.slope, 1.0, 1e-12));
        assert_eq!((f.x_min, f.x_max), (0.0, 7.0));
    }

    #[test]
    fn per_30_days_is_relative_change() {
        assert!(close(per_30_days(0.0), 0.0, 1e-15));
        assert!(close(per_30_days(2f64.ln() / 30.0), 1.0, 1e-12)); // doubling
        assert!(close(per_30_days(-(2f64.ln()) / 30.0), -0.5, 1e-12)); // halving
    }

    fn fit(slope: f64, low: f64, high: f64) -> SlopeFit {
        SlopeFit {
            slope,
            slope_low: low,
            slope_high: high,
            intercept: 0.0,
            n: 30,
            pairs: 435,
            x_min: 0.0,
            x_max: 29.0,
        }
    }

    #[test]
    fn anchored_level_follows_recent_step() {
        // Flat at ln 1 for 30 nights, then a step to ln 2 for the last 7.
        let x = days(37);
        let y: Vec<f64> = (0..37).map(|i| if i < 30 { 0.0 } else { 2f64.ln() }).collect();
        let f = theil_sen(&x, &y, 1.96).expect("fit");
        let lvl = anchored_level(&f, &x, &y, 36.0, 7).expect("level");
        assert!(close(lvl, 2f64.ln(), 1e-12), "level {lvl}");
        assert!(f.at(36.0) < lvl); // the global line lags the step
    }

    #[test]
    fn crossing_upper_rising() {
        // p99 at 1 ms, limit 2 ms, +1 %/day in log units: ln 2 / 0.01 = 69.31 days.
        let c = crossing(&fit(0.01, 0.005, 0.02), 1f64.ln(), 2f64.ln(), Bound::Upper, 3650.0);
        let Crossing::Crosses { days, days_earliest, days_latest } = c else { panic!("{c:?}") };
        assert!(close(days, 69.3147, 1e-3), "{days}");
        assert!(close(days_earliest, 34.6574, 1e-3));
        let latest = days_latest.expect("latest");
        assert!(close(latest, 138.629, 1e-3));
        assert!(days_earliest <= days && days <= latest);
    }

    #[test]
    fn crossing_upper_falling_is_never() {
        let c = crossing(&fit(-0.01, -0.02, 0.001), 0.0, 1.0, Bound::Upper, 3650.0);
        assert_eq!(c, Crossing::Never);
        assert_eq!(crossing(&fit(0.0, -0.01, 0.01), 0.0, 1.0, Bound::Upper, 3650.0), Crossing::Never);
    }

    #[test]
    fn crossing_already_beyond() {
        let f = fit(0.01, 0.0, 0.02);
        assert_eq!(crossing(&f, 1.0, 0.9, Bound::Upper, 3650.0), Crossing::AlreadyBeyond);
        assert_eq!(crossing(&f, 1.0, 1.0, Bound::Upper, 3650.0), Crossing::AlreadyBeyond);
        assert_eq!(crossing(&f, 1.0, 1.1, Bound::Lower, 3650.0), Crossing::AlreadyBeyond);
    }

    #[test]
    fn crossing_lower_falling() {
        // Throughput at ln 1000, floor ln 500, −0.5 %/day: ln 2 / 0.005 = 138.6 days.
        let f = fit(-0.005, -0.008, -0.004);
        let c = crossing(&f, 1000f64.ln(), 500f64.ln(), Bound::Lower, 3650.0);
        let Crossing::Crosses { days, days_earliest, days_latest } = c else { panic!("{c:?}") };
        assert!(close(days, 138.629, 1e-3), "{days}");
        assert!(close(days_earliest, 2f64.ln() / 0.008, 1e-9));
        let latest = days_latest.expect("latest");
        assert!(close(latest, 2f64.ln() / 0.004, 1e-9));
        assert!(days_earliest <= days && days <= latest);
        // A rising throughput never reaches its floor.
        assert_eq!(crossing(&fit(0.005, 0.001, 0.01), 1.0, 0.0, Bound::Lower, 3650.0), Crossing::Never);
    }

    #[test]
    fn crossing_latest_none_when_interval_includes_zero() {
        let c = crossing(&fit(0.01, -0.002, 0.02), 0.0, 1.0, Bound::Upper, 3650.0);
        let Crossing::Crosses { days, days_earliest, days_latest } = c else { panic!("{c:?}") };
        assert!(close(days, 100.0, 1e-9) && close(days_earliest, 50.0, 1e-9));
        assert_eq!(days_latest, None);
    }

    #[test]
    fn crossing_horizon_cap() {
        // Central crossing at 1000 days, horizon 365 → Never.
        assert_eq!(crossing(&fit(0.001, 0.0005, 0.002), 0.0, 1.0, Bound::Upper, 365.0), Crossing::Never);
        // Central at 100 days, latest at 2000 > 365 → None.
        let c = crossing(&fit(0.01, 0.0005, 0.02), 0.0, 1.0, Bound::Upper, 365.0);
        let Crossing::Crosses { days_latest, .. } = c else { panic!("{c:?}") };
        assert_eq!(days_latest, None);
        assert_eq!(crossing(&fit(0.01, 0.0, 0.02), f64::NAN, 1.0, Bound::Upper, 365.0), Crossing::Never);
    }
}
