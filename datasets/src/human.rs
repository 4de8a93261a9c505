//! What the three binaries share in front of people: log set-up and number formatting.

use std::io::IsTerminal;

/// Logs to stderr: warnings by default, `-v` for info, `-vv` for debug; `FATHOM_LOG` (an
/// `EnvFilter` directive such as `fathom_analyzer=debug`) overrides both.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FATHOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}

/// Dataset URLs given on a command line: a `memory://` store lives only as long as the process,
/// so a binary that wrote there would lose everything on exit, and one that read it would see
/// an empty dataset.
pub fn check_cli_url(url: &str) -> Result<(), String> {
    if url.starts_with("memory://") {
        return Err(format!(
            "`{url}`: memory:// datasets live inside one process only; use a path, file:// or s3://"
        ));
    }
    Ok(())
}

/// Values with four significant digits: enough to read, not more than the noise allows.
pub fn format_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

/// Bytes for people: `0 B`, `812 B`, `4.2 kB`, `1.3 MB`, `2.0 GB` (SI, like the dataset's units).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

/// Counts with thousands separators (`24,720`), so large row counts read at a glance.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_refused_on_the_command_line() {
        assert!(check_cli_url("memory://x").unwrap_err().contains("one process"));
        assert_eq!(check_cli_url("/var/lib/fathom"), Ok(()));
    }

    #[test]
    fn values_have_four_significant_digits() {
        assert_eq!(format_value(1234.5678), "1235");
        assert_eq!(format_value(12.345678), "12.35");
        assert_eq!(format_value(0.012345), "0.01235");
        assert_eq!(format_value(-2.5), "-2.500");
        assert_eq!(format_value(0.0), "0");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(24_720), "24,720");
        assert_eq!(format_count(8_000_000), "8,000,000");
    }
}
