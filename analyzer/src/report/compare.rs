//! The comparison for people, as text (terminals) or Markdown (tickets, wikis): the seed's
//! report shape, then the per-metric detail.

use fathom_datasets::human::format_value;

use crate::analyses::compare::{CompareReport, Side};
use crate::analyses::rank::Ranked;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Text,
    Markdown,
}

fn pct(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

fn interval(i: [f64; 2]) -> String {
    format!("{}–{}", pct(i[0]), pct(i[1]))
}

fn side_line(label: &str, s: &Side) -> String {
    let names = s.host_names();
    let shown = if names.len() > 6 {
        format!("{}, … ({} hosts)", names[..6].join(", "), names.len())
    } else {
        names.join(", ")
    };
    let facts = match s.hosts.as_slice() {
        [h] => format!(
            "; {} cores / {} threads, {:.0} GiB, {}",
            h.facts.cpu_cores,
            h.facts.cpu_threads,
            h.facts.mem_bytes as f64 / (1u64 << 30) as f64,
            h.facts.cpu_model
        ),
        _ => String::new(),
    };
    format!("{label}: {} — {shown}, up to {} runs per series{facts}", s.selector, s.runs_used())
}

fn heading(out: &mut String, style: Style, title: &str) {
    match style {
        Style::Text => out.push_str(&format!("\n{title}:\n")),
        Style::Markdown => out.push_str(&format!("\n### {title}\n\n")),
    }
}

/// A list item: the same `- ` in text and Markdown.
fn bullet(out: &mut String, text: &str) {
    out.push_str(&format!("- {text}\n"));
}

/// Text column widths, positive left-aligned, negative right-aligned; the last column of a
/// row is never padded.
const METRIC_COLUMNS: &[isize] = &[9, 17, 17, -11, -11, 8, -7, -12, 10, 28];
const RANK_COLUMNS: &[isize] = &[4, 24, -6, 10, -12, -6, -6, -7, -7, -4];

/// One row of a table: padded columns for text (`last_sep` before the last cell), a
/// Markdown row otherwise.
fn table_row<S: AsRef<str>>(out: &mut String, style: Style, widths: &[isize], last_sep: &str, cells: &[S]) {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    match style {
        Style::Markdown => out.push_str(&format!("| {} |\n", cells.join(" | "))),
        Style::Text => {
            let (last, padded) = cells.split_last().expect("a table row has cells");
            let padded: Vec<String> = padded
                .iter()
                .zip(widths)
                .map(|(cell, &w)| {
                    let width = w.unsigned_abs();
                    if w < 0 { format!("{cell:>width$}") } else { format!("{cell:<width$}") }
                })
                .collect();
            out.push_str(&format!("{}{last_sep}{last}\n", padded.join(" ")));
        }
    }
}

/// The report of one comparison.
pub fn compare(r: &CompareReport, style: Style) -> String {
    let c = &r.comparison;
    let mut out = String::new();
    if style == Style::Markdown {
        out.push_str("## Fathom comparison\n\n");
    }
    let sep = if style == Style::Markdown { "  \n" } else { "\n" };
    out.push_str(&side_line("Source", &r.source));
    out.push_str(sep);
    out.push_str(&side_line("Target", &r.target));
    out.push('\n');
    match (c.overall_score, c.rating, c.overall_interval) {
        (Some(score), Some(rating), Some(i)) => {
            let bold = if style == Style::Markdown { "**" } else { "" };
            out.push_str(&format!(
                "\n{bold}Overall Score: {} {}{bold} ({}, 95% interval {})\n",
                pct(score),
                rating.mark(),
                rating.title(),
                interval(i)
            ));
        }
        _ => out.push_str(
            "\nOverall Score: none: no category with a weight above 0 was measured alike on both sides\n",
        ),
    }
    let cats: Vec<String> = c
        .categories
        .iter()
        .map(|k| {
            format!("{} {} {} [{}] ×{:.2}", k.category, pct(k.ratio), k.mark, interval(k.interval), k.weight)
        })
        .collect();
    if !cats.is_empty() {
        out.push_str(&format!(
            "{}{}\n",
            if style == Style::Markdown { "\n" } else { "  " },
            cats.join(" · ")
        ));
    }
    if c.weights_renormalized {
        out.push_str(&format!(
            "{}weights renormalised over the categories measured: {} missing\n",
            if style == Style::Markdown { "\n" } else { "  " },
            c.missing_categories.join(", ")
        ));
    }
    let a = &r.advice;
    heading(&mut out, style, "Recommendations");
    for l in &a.recommendations {
        match style {
            Style::Text => out.push_str(&format!("{} {}\n", l.mark, l.text)),
            Style::Markdown => out.push_str(&format!("- {} {}\n", l.mark, l.text)),
        }
    }
    for (title, lines) in [
        ("Warnings", &a.warnings),
        ("Suggestions", &a.suggestions),
        ("CRITICAL WARNINGS", &a.critical_warnings),
        ("Required Upgrades", &a.required_upgrades),
    ] {
        if !lines.is_empty() {
            heading(&mut out, style, title);
            lines.iter().for_each(|l| bullet(&mut out, l));
        }
    }
    heading(
        &mut out,
        style,
        "Per metric (target ÷ source; above 100% the target is better; * marks the scored key metrics)",
    );
    let cols = [
        "category",
        "probe",
        "metric",
        "source",
        "target",
        "unit",
        "ratio",
        "95% interval",
        "confidence",
        "params",
        "notes",
    ];
    table_row(&mut out, style, METRIC_COLUMNS, " ", &cols);
    if style == Style::Markdown {
        out.push_str(&format!("|{}\n", "---|".repeat(cols.len())));
    }
    for m in &c.metrics {
        let metric = if m.key { format!("{}*", m.metric) } else { m.metric.clone() };
        let confidence = format!("{:?}", m.confidence).to_lowercase();
        let cells = [
            m.category.clone(),
            m.probe.clone(),
            metric,
            format_value(m.source.value),
            format_value(m.target.value),
            m.unit.clone(),
            pct(m.ratio),
            interval(m.interval),
            confidence,
            m.params.clone(),
            m.notes.join("; "),
        ];
        table_row(&mut out, style, METRIC_COLUMNS, " ", &cells);
    }
    if !c.not_comparable.is_empty() {
        heading(&mut out, style, "Not comparable");
        for n in &c.not_comparable {
            let params = |p: &[String]| if p.is_empty() { "-".to_string() } else { p.join(" | ") };
            bullet(
                &mut out,
                &format!(
                    "{} {}: {} (source: {}; target: {})",
                    n.probe,
                    n.metric,
                    n.reason,
                    params(&n.source_params),
                    params(&n.target_params)
                ),
            );
        }
    }
    out
}

/// The ranking table.
pub fn rank(source: &Side, targets: &[Ranked], style: Style) -> String {
    let mut out = String::new();
    if style == Style::Markdown {
        out.push_str("## Fathom target ranking\n\n");
    }
    out.push_str(&side_line("Source", source));
    out.push_str("\n\n");
    let cols = [
        "rank",
        "host",
        "score",
        "rating",
        "95% interval",
        "cpu",
        "memory",
        "storage",
        "network",
        "runs",
        "missing",
    ];
    // Two spaces before the free-form last column.
    table_row(&mut out, style, RANK_COLUMNS, "  ", &cols);
    if style == Style::Markdown {
        out.push_str(&format!("|{}\n", "---|".repeat(cols.len())));
    }
    for t in targets {
        let c = &t.report.comparison;
        let ratio = |cat: &str| c.category(cat).map(|k| pct(k.ratio)).unwrap_or_else(|| "-".into());
        let cells = [
            t.rank.to_string(),
            t.host.clone(),
            c.overall_score.map(pct).unwrap_or_else(|| "-".into()),
            c.rating.map(|r| format!("{} {}", r.mark(), r.title())).unwrap_or_else(|| "-".into()),
            c.overall_interval.map(interval).unwrap_or_else(|| "-".into()),
            ratio("cpu"),
            ratio("memory"),
            ratio("storage"),
            ratio("network"),
            t.report.target.runs_used().to_string(),
            c.missing_categories.join(","),
        ];
        table_row(&mut out, style, RANK_COLUMNS, "  ", &cells);
    }
    out
}
