//! Descriptive statistics over repetitions, as plain functions over slices: what a measurement
//! row records, computed the same way by the collector and the synthetic fleet.

/// Median; the mean of the two middle values for an even count. `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    median_in_place(&mut values.to_vec())
}

/// [`median`] without the copy: reorders `values` (a selection, O(n), not a sort). The one
/// median every analysis uses, so the same values give the same median everywhere.
#[inline]
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (left, mid, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *mid;
    // Everything left of the middle is ≤ it: the lower middle is their largest.
    Some(if n % 2 == 1 { hi } else { (left.iter().copied().fold(f64::NEG_INFINITY, f64::max) + hi) / 2.0 })
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (n − 1); zero for a single value.
pub fn stddev(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    if values.len() < 2 {
        return Some(0.0);
    }
    let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Coefficient of variation as a fraction (0.02 = 2 %); `None` for fewer than two values (one
/// value says nothing about noise) or a zero mean.
pub fn cv(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    (values.len() >= 2 && m != 0.0).then(|| stddev(values).unwrap_or(0.0) / m.abs())
}

/// Everything a measurement row records about its repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub cv: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    Some(Summary {
        median: median(values)?,
        mean: mean(values)?,
        stddev: stddev(values)?,
        cv: cv(values),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        n: values.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let mut v = [5.0, -1.0, 4.0, 2.0, 3.0, 0.0];
        assert_eq!(median_in_place(&mut v), Some(2.5));
        assert_eq!(median_in_place(&mut [7.0]), Some(7.0));
    }

    #[test]
    fn cv_of_one_sample_is_unknown_and_of_constants_zero() {
        assert_eq!(cv(&[5.0]), None);
        assert_eq!(cv(&[2.0, 2.0, 2.0]), Some(0.0));
        assert_eq!(cv(&[0.0, 0.0]), None);
    }

    #[test]
    fn stddev_is_the_sample_estimate() {
        let s = stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((s - 2.138_089_935).abs() < 1e-6, "{s}");
        let sum = summarize(&[1.0, 3.0]).unwrap();
        assert_eq!((sum.min, sum.max, sum.n, sum.median), (1.0, 3.0, 2, 2.0));
    }
}
