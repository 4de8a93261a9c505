//! `forecast`: for metrics with a limit, the night each host crosses it at its current trend,
//! with an interval (capacity planning).
//!
//! The trend is the one `trends` reports (Theil–Sen on ln(value) since the last change point);
//! the line starts from the current robust level (the last week's values moved along the slope,
//! see [`anchored_level`]) rather than from the fit's intercept, which lags after a step. The
//! interval comes from the slope's 95 % interval: the bound moving fastest towards the limit
//! gives the earliest night, the slowest the latest, none when the interval includes "no trend".

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::changepoint::Options;
use super::trend_stats::{Bound, Crossing, anchored_level, crossing, per_30_days};
use super::trends::{log_fit, regime_start};
use crate::series::{NightlySeries, SeriesKey};

/// Crossings further away than this are reported as not expected.
pub const HORIZON_DAYS: f64 = 3650.0;

/// A limit on one metric: `probe.metric` (globs allowed), optionally for some hosts or params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub metric: String,
    #[serde(default)]
    pub hosts: Option<String>,
    #[serde(default)]
    pub params: Option<String>,
    /// The value must stay below this (a latency).
    #[serde(default)]
    pub max: Option<f64>,
    /// The value must stay above this (a throughput, free space).
    #[serde(default)]
    pub min: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "--limit {0:?}: write PROBE.METRIC<VALUE (must stay below) or PROBE.METRIC>VALUE (must stay above), e.g. 'storage.rand4k.read_lat_p99<2000'"
    )]
    Syntax(String),
    #[error("{origin}: {message}")]
    File { origin: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    limit: Vec<Limit>,
}

impl Limit {
    /// `probe.metric<value` or `probe.metric>value`.
    pub fn parse_cli(text: &str) -> Result<Limit, LimitError> {
        let bad = || LimitError::Syntax(text.to_string());
        let (at, bound) = text.char_indices().find(|(_, c)| *c == '<' || *c == '>').ok_or_else(bad)?;
        let metric = text[..at].trim();
        let value: f64 = text[at + 1..].trim().parse().map_err(|_| bad())?;
        if metric.is_empty() || !value.is_finite() || value <= 0.0 {
            return Err(bad());
        }
        let (max, min) = if bound == '<' { (Some(value), None) } else { (None, Some(value)) };
        Ok(Limit { metric: metric.to_string(), hosts: None, params: None, max, min })
    }

    /// A TOML file of `[[limit]]` tables; errors name the file, line and field.
    pub fn parse_file(text: &str, origin: &str) -> Result<Vec<Limit>, LimitError> {
        let file = |message: String| LimitError::File { origin: origin.to_string(), message };
        let parsed: LimitsFile = toml::from_str(text).map_err(|e| file(e.to_string()))?;
        for (i, l) in parsed.limit.iter().enumerate() {
            let n = i + 1;
            match (l.max, l.min) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(file(format!("limit {n} ({}): give exactly one of max or min", l.metric)));
                }
                (Some(v), None) | (None, Some(v)) if !v.is_finite() || v <= 0.0 => {
                    return Err(file(format!(
                        "limit {n} ({}): the value must be a positive number",
                        l.metric
                    )));
                }
                _ => {}
            }
            for pattern in [Some(&l.metric), l.hosts.as_ref(), l.params.as_ref()].into_iter().flatten() {
                glob::Pattern::new(pattern)
                    .map_err(|e| file(format!("limit {n}: {pattern:?} is not a glob: {e}")))?;
            }
        }
        Ok(parsed.limit)
    }

    fn bound(&self) -> (Bound, f64) {
        match (self.max, self.min) {
            (Some(v), _) => (Bound::Upper, v),
            (None, Some(v)) => (Bound::Lower, v),
            (None, None) => (Bound::Upper, f64::INFINITY),
        }
    }

    pub fn applies_to(&self, key: &SeriesKey) -> bool {
        let matches = |pattern: &str, text: &str| glob::Pattern::new(pattern).is_ok_and(|p| p.matches(text));
        matches(&self.metric, &format!("{}.{}", key.probe, key.metric))
            && self.hosts.as_deref().is_none_or(|h| matches(h, &key.host))
            && self.params.as_deref().is_none_or(|p| matches(p, &key.params))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outlook {
    /// Beyond the limit now.
    Breached,
    /// Crosses within the horizon at the current trend.
    Crosses,
    /// The trend does not head for the limit (or gets there after ten years).
    NotExpected,
    /// Too few undisturbed runs since the last change for a trend.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    #[serde(flatten)]
    pub key: SeriesKey,
    /// `max` (stay below) or `min` (stay above).
    pub bound: &'static str,
    pub limit: f64,
    pub level: Option<f64>,
    pub last_date: NaiveDate,
    pub slope_per_30d: Option<f64>,
    pub outlook: Outlook,
    pub date: Option<NaiveDate>,
    pub earliest: Option<NaiveDate>,
    /// `None` with a crossing: the slope's interval includes no trend, so possibly never.
    pub latest: Option<NaiveDate>,
}

/// The forecast of one series against the first limit that applies to it.
pub fn forecast_of(series: &NightlySeries, limits: &[Limit], opts: &Options) -> Option<Forecast> {
    limits.iter().find(|l| l.applies_to(&series.key))?;
    let clean = series.clean_values();
    forecast_since(series, &clean, limits, regime_start(&clean, opts))
}

/// [`forecast_of`] for a caller that has run the detector already: the trend is fitted from
/// run `start` (the first after the last change point).
pub fn forecast_since(
    series: &NightlySeries,
    clean: &[f64],
    limits: &[Limit],
    start: usize,
) -> Option<Forecast> {
    let limit = limits.iter().find(|l| l.applies_to(&series.key))?;
    let last = series.len().checked_sub(1)?;
    let (bound, value) = limit.bound();
    let fit = log_fit(series, clean, start);
    let last_date = series.night(last);
    let at = |days: f64| last_date.checked_add_days(Days::new(days.ceil() as u64));
    let mut out = Forecast {
        key: series.key.clone(),
        bound: if bound == Bound::Upper { "max" } else { "min" },
        limit: value,
        level: None,
        last_date,
        slope_per_30d: None,
        outlook: Outlook::Unknown,
        date: None,
        earliest: None,
        latest: None,
    };
    let Some((fit, x, y)) = fit else { return Some(out) };
    let Some(level) = anchored_level(&fit, &x, &y, series.days()[last], 7) else { return Some(out) };
    out.level = Some(level.exp());
    out.slope_per_30d = Some(per_30_days(fit.slope));
    match crossing(&fit, level, value.ln(), bound, HORIZON_DAYS) {
        Crossing::AlreadyBeyond => out.outlook = Outlook::Breached,
        Crossing::Never => out.outlook = Outlook::NotExpected,
        Crossing::Crosses { days, days_earliest, days_latest } => {
            out.outlook = Outlook::Crosses;
            out.date = at(days);
            out.earliest = at(days_earliest);
            out.latest = days_latest.and_then(at);
        }
    }
    Some(out)
}

pub fn forecasts(series: &[NightlySeries], limits: &[Limit], opts: &Options) -> Vec<Forecast> {
    series.iter().filter_map(|s| forecast_of(s, limits, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::tests::series;

    fn rising(n: usize, per_day: f64) -> Vec<f64> {
        (0..n).map(|i| 100.0 * (1.0 + per_day * i as f64) * (1.0 + 0.003 * [1.0, -1.0, 0.5][i % 3])).collect()
    }

    #[test]
    fn a_rising_latency_crosses_its_limit_on_the_extrapolated_night() {
        let mut s = series(&rising(60, 0.005), &[]);
        s.higher_is_better = false;
        // Now about 129.5; +0.5 of the start (≈0.39 % of now) a night: 150 is about 40 nights away.
        let limits = [Limit::parse_cli("storage.rand4k.*<150").unwrap()];
        let f = forecast_of(&s, &limits, &Options::default()).unwrap();
        assert_eq!(f.outlook, Outlook::Crosses, "{f:?}");
        let days = (f.date.unwrap() - f.last_date).num_days();
        assert!((30..=50).contains(&days), "{days}");
        assert!(f.earliest.unwrap() <= f.date.unwrap() && f.date.unwrap() <= f.latest.unwrap());
        // Already beyond, never, and a limit on another metric.
        let f = forecast_of(
            &s,
            &[Limit::parse_cli("storage.rand4k.read_iops<120").unwrap()],
            &Options::default(),
        );
        assert_eq!(f.unwrap().outlook, Outlook::Breached);
        let f =
            forecast_of(&s, &[Limit::parse_cli("storage.rand4k.read_iops>50").unwrap()], &Options::default());
        assert_eq!(f.unwrap().outlook, Outlook::NotExpected);
        assert!(
            forecast_of(&s, &[Limit::parse_cli("cpu.flops.*<1").unwrap()], &Options::default()).is_none()
        );
        let short = series(&rising(5, 0.005), &[]);
        assert_eq!(forecast_of(&short, &limits, &Options::default()).unwrap().outlook, Outlook::Unknown);
    }

    #[test]
    fn limits_parse_from_the_command_line_and_from_a_file() {
        let l = Limit::parse_cli("network.tcp.send_single > 5e9").unwrap();
        assert_eq!((l.metric.as_str(), l.min, l.max), ("network.tcp.send_single", Some(5e9), None));
        for bad in ["storage.rand4k.read_lat_p99", "<5", "a<b", "x<inf"] {
            assert!(Limit::parse_cli(bad).is_err(), "{bad}");
        }
        let ok = "[[limit]]\nmetric = \"storage.*.read_lat_p99\"\nhosts = \"db-*\"\nmax = 2000\n";
        let parsed = Limit::parse_file(ok, "limits.toml").unwrap();
        assert_eq!(parsed[0].hosts.as_deref(), Some("db-*"));
        let e = Limit::parse_file("[[limit]]\nmetric = \"a.b\"\nmaximum = 3\n", "limits.toml").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("limits.toml") && text.contains("line 3") && text.contains("maximum"),
            "{text}"
        );
        let e = Limit::parse_file("[[limit]]\nmetric = \"a.b\"\n", "l.toml").unwrap_err();
        assert!(e.to_string().contains("exactly one of max or min"), "{e}");
    }
}
