//! Schedule files: when a host benchmarks itself, inside which maintenance window, what it runs
//! and where the run goes.
//!
//! A file holds one or more `[[schedule]]` tables (TOML). Loading checks everything before
//! anything runs, and every error names the file, the line and the field: unknown keys, an
//! invalid cron expression (six fields, seconds first), an unknown IANA time zone, an empty or
//! malformed window, a suite and a probe list together. The planning itself (fire times, window
//! membership, daylight-saving changes) lives in [`plan`] and [`window`] as plain functions of
//! time, so tests can drive a simulated month in milliseconds.

pub mod agenda;
pub mod plan;
pub mod window;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use window::Window;

/// What a schedule file says, as written (spans kept for error messages).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    schedule: Vec<ScheduleToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleToml {
    name: Spanned<String>,
    cron: Spanned<String>,
    timezone: Spanned<String>,
    window: Spanned<WindowToml>,
    suite: Option<Spanned<String>>,
    probes: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    jitter: Option<Spanned<String>>,
    max_runtime: Option<Spanned<String>>,
    guard: Option<Spanned<GuardToml>>,
    #[serde(default)]
    role: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    dataset: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowToml {
    days: Spanned<Vec<String>>,
    start: Spanned<String>,
    end: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardToml {
    cpu_busy_above: Option<f64>,
    load_average_above: Option<f64>,
    over: Option<String>,
    action: Option<String>,
}

/// What a run does when the production-load guard trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Wait and try again, until the window's end.
    Defer,
    /// Record the run as skipped with the reason.
    Skip,
}

/// The production-load guard: a run starts only while the host is quiet enough.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// Share of the machine's CPU busy over `over` (0–1) above which the guard trips.
    pub cpu_busy_above: Option<f64>,
    /// One-minute load average above which the guard trips.
    pub load_average_above: Option<f64>,
    pub over: Duration,
    pub action: GuardAction,
}

/// What a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Suite(String),
    Probes(Vec<String>),
}

/// One validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    /// Where it was defined, `file:line`, for messages.
    pub origin: String,
    pub cron_text: String,
    pub cron: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub window: Window,
    pub work: Work,
    pub params: BTreeMap<String, String>,
    pub jitter: Duration,
    pub max_runtime: Option<Duration>,
    pub guard: Option<Guard>,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub dataset: Option<String>,
}

/// A schedule file that cannot be used, with where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ScheduleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The schedule and field, e.g. `schedule "nightly" cron`; `file` for the whole file.
    pub field: String,
    pub message: String,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(
        &self,
        span: std::ops::Range<usize>,
        field: String,
        message: impl Into<String>,
    ) -> ScheduleError {
        let (line, column) = line_col(self.text, span.start);
        ScheduleError { file: self.file.to_string(), line, column, field, message: message.into() }
    }
}

/// `30s`, `10m`, `1h30m`, `2h`: what `jitter`, `max_runtime` and `guard.over` take.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 30s, 10m or 1h30m".into());
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 =
            digits.parse().map_err(|_| format!("{text:?} is not a duration such as 30s, 10m or 1h30m"))?;
        digits.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{text:?}: unknown unit {c:?}; use s, m, h or d")),
        };
    }
    if !digits.is_empty() {
        return Err(format!("{text:?} needs a unit: s, m, h or d (e.g. {digits}m)"));
    }
    Ok(Duration::from_secs(total))
}

/// The cron parser schedules use: six fields, seconds first, as `tokio-cron-scheduler` takes.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds};
    CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(text.trim())
        .map_err(|e| format!("{text:?} is not a cron expression with seconds (sec min hour day month weekday, e.g. \"0 30 1 * * *\"): {e}"))
}

fn validate(
    ctx: &Ctx,
    raw: ScheduleToml,
    known_probes: &[&str],
    known_suites: &[&str],
) -> Result<Schedule, ScheduleError> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(ctx.error(raw.name.span(), "schedule name".into(), "must not be empty"));
    }
    let field = |f: &str| format!("schedule {name:?} {f}");
    let cron = parse_cron(raw.cron.get_ref()).map_err(|m| ctx.error(raw.cron.span(), field("cron"), m))?;
    let timezone: chrono_tz::Tz = raw.timezone.get_ref().parse().map_err(|_| {
        ctx.error(
            raw.timezone.span(),
            field("timezone"),
            format!(
                "unknown time zone {:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                raw.timezone.get_ref()
            ),
        )
    })?;
    let w = raw.window.get_ref();
    let window =
        Window::parse(w.days.get_ref(), w.start.get_ref(), w.end.get_ref()).map_err(|(part, m)| {
            let span = match part {
                window::Part::Days => w.days.span(),
                window::Part::Start => w.start.span(),
                window::Part::End => w.end.span(),
            };
            ctx.error(span, field(&format!("window.{}", part.name())), m)
        })?;
    let work = match (raw.suite, raw.probes) {
        (Some(_), Some(p)) => {
            return Err(ctx.error(p.span(), field("probes"), "give either suite or probes, not both"));
        }
        (None, None) => {
            return Err(ctx.error(
                raw.name.span(),
                field("suite"),
                "missing: give a suite (quick, standard, deep) or probes",
            ));
        }
        (Some(s), None) => {
            let suite = s.get_ref().trim().to_string();
            if !known_suites.contains(&suite.as_str()) {
                return Err(ctx.error(
                    s.span(),
                    field("suite"),
                    format!("unknown suite {suite:?}; the suites are {}", known_suites.join(", ")),
                ));
            }
            Work::Suite(suite)
        }
        (None, Some(p)) => {
            if p.get_ref().is_empty() {
                return Err(ctx.error(p.span(), field("probes"), "empty list: name at least one probe"));
            }
            for id in p.get_ref() {
                if !known_probes.contains(&id.as_str()) {
                    return Err(ctx.error(
                        p.span(),
                        field("probes"),
                        format!("unknown probe {id:?}; `fathom-collector probes` lists them"),
                    ));
                }
            }
            Work::Probes(p.get_ref().clone())
        }
    };
    let duration = |v: &Option<Spanned<String>>, f: &str| -> Result<Option<Duration>, ScheduleError> {
        v.as_ref()
            .map(|s| parse_duration(s.get_ref()).map_err(|m| ctx.error(s.span(), field(f), m)))
            .transpose()
    };
    let jitter = duration(&raw.jitter, "jitter")?.unwrap_or_default();
    let max_runtime = duration(&raw.max_runtime, "max_runtime")?;
    if jitter >= window.length() {
        let span = raw.jitter.as_ref().map(|j| j.span()).unwrap_or(raw.name.span());
        return Err(ctx.error(
            span,
            field("jitter"),
            "is as long as the window or longer: no run could start inside it",
        ));
    }
    let guard = match raw.guard {
        None => None,
        Some(g) => {
            let span = g.span();
            let g = g.into_inner();
            let action = match g.action.as_deref().unwrap_or("defer") {
                "defer" => GuardAction::Defer,
                "skip" => GuardAction::Skip,
                other => {
                    return Err(ctx.error(
                        span,
                        field("guard.action"),
                        format!("{other:?}: use \"defer\" or \"skip\""),
                    ));
                }
            };
            if g.cpu_busy_above.is_none() && g.load_average_above.is_none() {
                return Err(ctx.error(
                    span,
                    field("guard"),
                    "needs cpu_busy_above (0–1) or load_average_above",
                ));
            }
            if let Some(c) = g.cpu_busy_above
                && !(0.0..=1.0).contains(&c)
            {
                return Err(ctx.error(
                    span,
                    field("guard.cpu_busy_above"),
                    format!("{c} is not a share between 0 and 1"),
                ));
            }
            if let Some(l) = g.load_average_above
                && !(l.is_finite() && l >= 0.0)
            {
                return Err(ctx.error(
                    span,
                    field("guard.load_average_above"),
                    format!("{l} is not a load average ≥ 0"),
                ));
            }
            let over = g
                .over
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|m| ctx.error(span.clone(), field("guard.over"), m))?
                .unwrap_or(Duration::from_secs(60));
            Some(Guard {
                cpu_busy_above: g.cpu_busy_above,
                load_average_above: g.load_average_above,
                over,
                action,
            })
        }
    };
    let (line, _) = line_col(ctx.text, raw.name.span().start);
    Ok(Schedule {
        name,
        origin: format!("{}:{line}", ctx.file),
        cron_text: raw.cron.get_ref().trim().to_string(),
        cron,
        timezone,
        window,
        work,
        params: raw.params,
        jitter,
        max_runtime,
        guard,
        role: raw.role,
        labels: raw.labels,
        tags: raw.tags,
        dataset: raw.dataset,
    })
}

/// Parses the text of one schedule file; `file` names it in errors.
pub fn parse(
    file: &str,
    text: &str,
    known_probes: &[&str],
    known_suites: &[&str],
) -> Result<Vec<Schedule>, ScheduleError> {
    let ctx = Ctx { file, text };
    let parsed: FileToml = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's message names the key; its own rendering repeats the source, which we do not.
        ctx.error(span, "schedule file".into(), e.message().trim().lines().collect::<Vec<_>>().join("; "))
    })?;
    if parsed.schedule.is_empty() {
        return Err(ctx.error(0..0, "schedule file".into(), "no [[schedule]] tables"));
    }
    parsed.schedule.into_iter().map(|s| validate(&ctx, s, known_probes, known_suites)).collect()
}

/// Loads a schedule file, or every `*.toml` file of a folder (sorted), and checks that
/// schedule names are unique across them.
pub fn load(
    path: &Path,
    known_probes: &[&str],
    known_suites: &[&str],
) -> Result<Vec<Schedule>, ScheduleError> {
    let whole = |message: String| ScheduleError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        field: "file".into(),
        message,
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| whole(format!("cannot read the folder: {e}")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        f.sort();
        if f.is_empty() {
            return Err(whole("the folder holds no *.toml schedule files".into()));
        }
        f
    } else {
        vec![path.to_path_buf()]
    };
    let mut all: Vec<Schedule> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| ScheduleError {
            file: file.display().to_string(),
            line: 1,
            column: 1,
            field: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        for s in parse(&file.display().to_string(), &text, known_probes, known_suites)? {
            if let Some(first) = all.iter().find(|o| o.name == s.name) {
                let (file, line) =
                    s.origin.rsplit_once(':').map(|(f, l)| (f.to_string(), l.parse().unwrap_or(1))).unwrap();
                return Err(ScheduleError {
                    file,
                    line,
                    column: 1,
                    field: format!("schedule {:?} name", s.name),
                    message: format!("already defined at {}", first.origin),
                });
            }
            all.push(s);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests;
