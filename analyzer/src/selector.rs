//! Run selectors (`--source`, `--target`, `--targets`): comma-joined conditions that must all
//! hold. `host=`, `role=` and `suite=` address the run's columns, `tag.KEY=` its tags, and any
//! other key a label (`role=target,site=fra1`). Values may be globs (`host=db-*`).

use std::fmt;

use crate::runs::RunInfo;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector {text:?} is empty: give conditions such as host=db-01 or role=target,site=fra1")]
    Empty { text: String },
    #[error(
        "selector {text:?}: {part:?} is not KEY=VALUE (for example host=db-01, role=target, site=fra1, tag.upgrade=kernel-6.8)"
    )]
    NotKeyValue { text: String, part: String },
    #[error("selector {text:?}: {part:?} has an empty key")]
    EmptyKey { text: String, part: String },
    #[error("selector {text:?}: {part:?} is not a valid glob: {cause}")]
    BadGlob { text: String, part: String, cause: String },
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Host,
    Role,
    Suite,
    Label(String),
    Tag(String),
}

#[derive(Debug, Clone)]
struct Condition {
    field: Field,
    pattern: glob::Pattern,
}

/// A parsed selector; `Display` gives back the text it came from.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    conditions: Vec<Condition>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut conditions = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| SelectorError::NotKeyValue {
                text: text.to_string(),
                part: part.to_string(),
            })?;
            let key = key.trim();
            if key.is_empty() || key == "tag." {
                return Err(SelectorError::EmptyKey { text: text.to_string(), part: part.to_string() });
            }
            let field = match key {
                "host" => Field::Host,
                "role" => Field::Role,
                "suite" => Field::Suite,
                _ => match key.strip_prefix("tag.") {
                    Some(tag) => Field::Tag(tag.to_string()),
                    None => Field::Label(key.to_string()),
                },
            };
            let pattern = glob::Pattern::new(value.trim()).map_err(|e| SelectorError::BadGlob {
                text: text.to_string(),
                part: part.to_string(),
                cause: e.msg.to_string(),
            })?;
            conditions.push(Condition { field, pattern });
        }
        if conditions.is_empty() {
            return Err(SelectorError::Empty { text: text.to_string() });
        }
        Ok(Selector { text: text.trim().to_string(), conditions })
    }

    pub fn matches(&self, run: &RunInfo) -> bool {
        self.conditions.iter().all(|c| {
            let value = match &c.field {
                Field::Host => Some(run.host.as_str()),
                Field::Role => Some(run.role.as_str()),
                Field::Suite => Some(run.suite.as_str()),
                Field::Label(k) => run.labels.get(k).map(String::as_str),
                Field::Tag(k) => run.tags.get(k).map(String::as_str),
            };
            value.is_some_and(|v| c.pattern.matches(v))
        })
    }

    /// Whether the selector names exactly one host (`host=` without glob characters).
    pub fn single_host(&self) -> Option<&str> {
        self.conditions.iter().find_map(|c| match c.field {
            Field::Host if !c.pattern.as_str().contains(['*', '?', '[']) => Some(c.pattern.as_str()),
            _ => None,
        })
    }
}

/// The runs a side of a comparison uses: those `selector` matches that produced measurements.
/// `flag` names the option in errors (`--source`), which say what the dataset does hold.
pub fn select<'a>(runs: &'a [RunInfo], selector: &Selector, flag: &str) -> Result<Vec<&'a RunInfo>, String> {
    let matched: Vec<&RunInfo> = runs.iter().filter(|r| selector.matches(r)).collect();
    if matched.is_empty() {
        let hosts: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.host.as_str()).collect();
        let roles: std::collections::BTreeSet<&str> =
            runs.iter().map(|r| r.role.as_str()).filter(|r| !r.is_empty()).collect();
        let labels: std::collections::BTreeSet<&str> =
            runs.iter().flat_map(|r| r.labels.keys().map(String::as_str)).collect();
        let shown: Vec<&str> = hosts.iter().take(12).copied().collect();
        let more = if hosts.len() > shown.len() {
            format!(" and {} more", hosts.len() - shown.len())
        } else {
            String::new()
        };
        return Err(format!(
            "{flag} {selector}: no runs match in the chosen dates ({} runs of {} hosts there: {}{more}; roles: {}; labels: {})",
            runs.len(),
            hosts.len(),
            shown.join(", "),
            if roles.is_empty() {
                "none".to_string()
            } else {
                roles.into_iter().collect::<Vec<_>>().join(", ")
            },
            if labels.is_empty() {
                "none".to_string()
            } else {
                labels.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let measured: Vec<&RunInfo> = matched.iter().copied().filter(|r| r.measured()).collect();
    if measured.is_empty() {
        let mut statuses: std::collections::BTreeMap<&str, usize> = Default::default();
        matched.iter().for_each(|r| *statuses.entry(r.status.as_str()).or_default() += 1);
        let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
        return Err(format!(
            "{flag} {selector}: {} runs match, none of them completed ({})",
            matched.len(),
            statuses.join(", ")
        ));
    }
    Ok(measured)
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::run_info;

    #[test]
    fn conditions_all_hold_and_address_columns_labels_and_tags() {
        let mut run = run_info("db-01", "target");
        run.labels.insert("site".into(), "fra1".into());
        run.tags.insert("upgrade".into(), "kernel-6.8".into());
        let yes = |s: &str| Selector::parse(s).unwrap().matches(&run);
        assert!(yes("host=db-01"));
        assert!(yes("host=db-*"));
        assert!(yes("role=target, site=fra1"));
        assert!(yes("tag.upgrade=kernel-6.8"));
        assert!(yes("suite=quick"));
        assert!(!yes("role=target,site=ams1"));
        assert!(!yes("host=web-*"));
        assert!(!yes("tag.upgrade=kernel-6.9"));
        // A label the run does not have never matches, not even with `*`.
        assert!(!yes("rack=*"));
        assert!(!yes("site=fra1,role=source"));
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        assert!(matches!(Selector::parse(""), Err(SelectorError::Empty { .. })));
        assert!(matches!(Selector::parse(" , "), Err(SelectorError::Empty { .. })));
        assert!(matches!(Selector::parse("db-01"), Err(SelectorError::NotKeyValue { .. })));
        assert!(matches!(Selector::parse("=x"), Err(SelectorError::EmptyKey { .. })));
        assert!(matches!(Selector::parse("tag.=x"), Err(SelectorError::EmptyKey { .. })));
        assert!(matches!(Selector::parse("host=[db"), Err(SelectorError::BadGlob { .. })));
        let e = Selector::parse("role=target,db-01").unwrap_err().to_string();
        assert!(e.contains("\"db-01\" is not KEY=VALUE"), "{e}");
    }

    #[test]
    fn a_plain_host_condition_names_one_host() {
        assert_eq!(Selector::parse("host=db-01,site=x").unwrap().single_host(), Some("db-01"));
        assert_eq!(Selector::parse("host=db-*").unwrap().single_host(), None);
        assert_eq!(Selector::parse("role=source").unwrap().single_host(), None);
    }
}
