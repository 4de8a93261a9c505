//! Canonical `params` text: the probe's own parameter names, sorted, `key=value` joined by
//! commas, so equal settings compare equal as strings.

use std::collections::BTreeMap;

/// `{"queue_depth": "32", "block_size": "4KiB"}` → `block_size=4KiB,queue_depth=32`.
pub fn canonical<'a, I, K, V>(pairs: I) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let sorted: BTreeMap<String, String> =
        pairs.into_iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect();
    sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The inverse of [`canonical`]; `None` when a part has no `=`.
pub fn parse(text: &str) -> Option<BTreeMap<String, String>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_round_trips() {
        let text = canonical([("queue_depth", "32"), ("block_size", "4KiB"), ("jobs", "1")]);
        assert_eq!(text, "block_size=4KiB,jobs=1,queue_depth=32");
        assert_eq!(canonical(parse(&text).unwrap()), text);
        assert_eq!(canonical(Vec::<(&str, &str)>::new()), "");
        assert_eq!(parse("").unwrap().len(), 0);
        assert!(parse("a=1,b").is_none());
    }
}
