//! One series from outside a dataset, for `fathom-analyzer changepoints --input`: what
//! analysts have at hand, read without ceremony.
//!
//! - CSV: one column of values, or `time,value`; a header line is recognised by its first
//!   field not being a number (a `value` or `time,value` header, or any names).
//! - JSON: an array of numbers, of `[time, value]` pairs, or of `{"time": …, "value": …}`
//!   objects.
//!
//! A missing night is an empty field, `NaN`, `NA` or `null`: it keeps its index, so reported
//! change points point into the input as given. Anything else that is not a number is an error
//! naming the line (CSV) or the element (JSON).

/// A series read from a file: values (NaN where missing) and, when given, each point's time
/// as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub values: Vec<f64>,
    pub times: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("{origin}: line {line}: {reason}")]
    Csv { origin: String, line: usize, reason: String },
    #[error("{origin}: element {index}: {reason}")]
    Json { origin: String, index: usize, reason: String },
    #[error("{origin}: not JSON: {reason}")]
    NotJson { origin: String, reason: String },
    #[error("{origin}: no values")]
    Empty { origin: String },
}

fn missing(field: &str) -> bool {
    matches!(field.trim().to_ascii_lowercase().as_str(), "" | "nan" | "na" | "null")
}

fn number(field: &str) -> Option<f64> {
    if missing(field) {
        return Some(f64::NAN);
    }
    field.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Reads `text`; `origin` names it in errors (a path, or `stdin`).
pub fn parse(text: &str, origin: &str) -> Result<Series, InputError> {
    let trimmed = text.trim_start();
    let series =
        if trimmed.starts_with('[') { parse_json(trimmed, origin)? } else { parse_csv(text, origin)? };
    if series.values.is_empty() {
        return Err(InputError::Empty { origin: origin.to_string() });
    }
    Ok(series)
}

fn parse_csv(text: &str, origin: &str) -> Result<Series, InputError> {
    let err = |line: usize, reason: String| InputError::Csv { origin: origin.to_string(), line, reason };
    let mut values = Vec::new();
    let mut times: Vec<String> = Vec::new();
    let mut columns: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if columns.is_none() {
            if !matches!(fields.len(), 1 | 2) {
                return Err(err(i + 1, format!("{} fields: expected `value` or `time,value`", fields.len())));
            }
            columns = Some(fields.len());
            let value_field = fields[fields.len() - 1];
            if number(value_field).is_none() {
                continue; // a header
            }
        }
        let expected = columns.expect("set above");
        if fields.len() != expected {
            return Err(err(i + 1, format!("{} fields, the first line had {expected}", fields.len())));
        }
        let field = fields[expected - 1];
        let value = number(field).ok_or_else(|| err(i + 1, format!("`{field}` is not a number")))?;
        values.push(value);
        if expected == 2 {
            times.push(fields[0].to_string());
        }
    }
    Ok(Series { values, times: (columns == Some(2)).then_some(times) })
}

fn parse_json(text: &str, origin: &str) -> Result<Series, InputError> {
    use serde_json::Value;
    let items: Vec<Value> = serde_json::from_str(text)
        .map_err(|e| InputError::NotJson { origin: origin.to_string(), reason: e.to_string() })?;
    let err = |index: usize, reason: String| InputError::Json { origin: origin.to_string(), index, reason };
    let value_of = |index: usize, v: &Value| -> Result<f64, InputError> {
        match v {
            Value::Null => Ok(f64::NAN),
            Value::Number(n) => n.as_f64().ok_or_else(|| err(index, format!("{n} is not a number"))),
            Value::String(s) => number(s).ok_or_else(|| err(index, format!("`{s}` is not a number"))),
            other => Err(err(index, format!("{other} is not a number"))),
        }
    };
    let time_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut values = Vec::with_capacity(items.len());
    let mut times = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let (time, value) = match item {
            Value::Array(pair) if pair.len() == 2 => (Some(time_of(&pair[0])), value_of(index, &pair[1])?),
            Value::Array(other) => {
                return Err(err(index, format!("a pair is [time, value], not {} elements", other.len())));
            }
            Value::Object(map) => {
                let value =
                    map.get("value").ok_or_else(|| err(index, "an object needs a \"value\"".into()))?;
                (map.get("time").map(time_of), value_of(index, value)?)
            }
            other => (None, value_of(index, other)?),
        };
        if index > 0 && time.is_some() != (times.len() == index) {
            return Err(err(index, "every element has a time, or none does".into()));
        }
        if let Some(t) = time {
            times.push(t);
        }
        values.push(value);
    }
    let timed = !times.is_empty();
    Ok(Series { values, times: timed.then_some(times) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &Series) -> Vec<String> {
        s.values.iter().map(|v| format!("{v}")).collect()
    }

    #[test]
    fn csv_with_and_without_header_and_times() {
        let s = parse("value\n1\n2.5\n\nNaN\n4\n", "a.csv").unwrap();
        assert_eq!(values(&s), ["1", "2.5", "NaN", "4"]);
        assert_eq!(s.times, None);
        let s = parse("3\n4\n", "b.csv").unwrap();
        assert_eq!(values(&s), ["3", "4"]);
        let s = parse("time,value\n2026-01-01,10\n2026-01-02,\n2026-01-03,12\n", "c.csv").unwrap();
        assert_eq!(values(&s), ["10", "NaN", "12"]);
        assert_eq!(s.times.unwrap(), ["2026-01-01", "2026-01-02", "2026-01-03"]);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = parse("value\n1\nabc\n", "x.csv").unwrap_err();
        assert_eq!(e.to_string(), "x.csv: line 3: `abc` is not a number");
        let e = parse("t,v\n1,2\n3\n", "x.csv").unwrap_err();
        assert_eq!(e.to_string(), "x.csv: line 3: 1 fields, the first line had 2");
        let e = parse("a,b,c\n", "x.csv").unwrap_err();
        assert!(e.to_string().contains("line 1: 3 fields"), "{e}");
        assert_eq!(parse("value\n", "x.csv").unwrap_err(), InputError::Empty { origin: "x.csv".into() });
        assert!(parse("1\ninf\n", "x.csv").is_err(), "infinity is no measurement");
    }

    #[test]
    fn json_arrays_pairs_and_objects() {
        let s = parse("[1, 2, null, 4]", "-").unwrap();
        assert_eq!(values(&s), ["1", "2", "NaN", "4"]);
        let s = parse(r#"[["2026-01-01", 1], ["2026-01-02", 2]]"#, "-").unwrap();
        assert_eq!(s.times.unwrap(), ["2026-01-01", "2026-01-02"]);
        let s = parse(r#"[{"time": 1, "value": 5}, {"time": 2, "value": "6"}]"#, "-").unwrap();
        assert_eq!(values(&s), ["5", "6"]);
        assert_eq!(s.times.unwrap(), ["1", "2"]);
    }

    #[test]
    fn json_errors_name_the_element() {
        let e = parse(r#"[1, true]"#, "s.json").unwrap_err();
        assert_eq!(e.to_string(), "s.json: element 1: true is not a number");
        let e = parse(r#"[{"time": 1}]"#, "s.json").unwrap_err();
        assert!(e.to_string().contains("element 0: an object needs a \"value\""), "{e}");
        let e = parse(r#"[[1, 2], 3]"#, "s.json").unwrap_err();
        assert!(e.to_string().contains("element 1: every element has a time, or none does"), "{e}");
        assert!(matches!(parse("[1, 2", "s.json"), Err(InputError::NotJson { .. })));
    }
}
