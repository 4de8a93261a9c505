//! Plain-text tables for people.

use fathom_datasets::human::format_value;

use crate::analyses::summary::SummaryRow;

/// A signed percentage with a mark saying whether the change is good for this metric.
fn change_cell(row: &SummaryRow) -> String {
    match (row.change, row.improved()) {
        (Some(c), Some(better)) => {
            let mark = if c.abs() < 0.005 {
                " "
            } else if better {
                "+"
            } else {
                "-"
            };
            format!("{:+.1}% {mark}", c * 100.0)
        }
        _ => "n/a".to_string(),
    }
}

pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<18} {:>12} {:>12} {:>4} {:>10} {:<8} {:<20} {}\n",
        "host", "probe", "metric", "latest", "median", "runs", "change", "unit", "latest at", "params"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<20} {:<16} {:<18} {:>12} {:>12} {:>4} {:>10} {:<8} {:<20} {}\n",
            r.host,
            r.probe,
            r.metric,
            format_value(r.latest),
            r.baseline_median.map(format_value).unwrap_or_else(|| "-".into()),
            r.baseline_runs,
            change_cell(r),
            r.unit,
            r.latest_at,
            r.params,
        ));
    }
    out.push_str(
        "change: latest against the median of up to 7 runs before it; + better, - worse for the metric\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_marks_respect_direction() {
        let row = SummaryRow {
            host: "a".into(),
            probe: "memory.latency".into(),
            metric: "latency".into(),
            params: String::new(),
            unit: "ns".into(),
            higher_is_better: false,
            latest_at: String::new(),
            latest: 90.0,
            latest_cv: None,
            baseline_median: Some(100.0),
            baseline_runs: 7,
            change: Some(-0.1),
        };
        assert_eq!(change_cell(&row), "-10.0% +");
        assert!(summary_table(&[row]).contains("memory.latency"));
    }
}
