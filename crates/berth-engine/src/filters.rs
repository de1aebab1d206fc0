//! Filters of list and prune requests: the `filters` query parameter (both encodings), `until`,
//! `label` and the check of allowed keys.

use std::collections::HashMap;

use crate::error::{EngineError, Result};

/// Accepts both filter encodings Docker has used: `{"k":["v"]}` and `{"k":{"v":true}}`.
pub fn parse_filters(json: &str) -> Result<HashMap<String, Vec<String>>> {
    if json.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| EngineError::InvalidParameter(format!("invalid filter: {e}")))?;
    let mut out = HashMap::new();
    let obj = v
        .as_object()
        .ok_or_else(|| EngineError::InvalidParameter("invalid filter: not an object".into()))?;
    for (k, val) in obj {
        let vals: Vec<String> = match val {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, b)| b.as_bool().unwrap_or(false))
                .map(|(s, _)| s.clone())
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

/// `until` (a unix time, RFC 3339 time or Go duration before now) as unix seconds.
pub(crate) fn until_filter(filters: &HashMap<String, Vec<String>>) -> Result<Option<i64>> {
    let Some(v) = filters.get("until").and_then(|v| v.first()) else {
        return Ok(None);
    };
    if let Ok(n) = v.split('.').next().unwrap_or("").parse::<i64>() {
        return Ok(Some(n));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.timestamp()));
    }
    let mut secs = 0f64;
    let mut num = String::new();
    for ch in v.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad_until(v))?;
        num.clear();
        secs += n * match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad_until(v)),
        };
    }
    if !num.is_empty() {
        return Err(bad_until(v));
    }
    Ok(Some(chrono::Utc::now().timestamp() - secs as i64))
}

fn bad_until(v: &str) -> EngineError {
    EngineError::InvalidParameter(format!("invalid filter 'until={v}'"))
}

/// `label=k`, `label=k=v`, `label!=...` against a label map.
pub(crate) fn labels_match(
    filters: &HashMap<String, Vec<String>>,
    labels: &HashMap<String, String>,
) -> bool {
    let has = |l: &str| match l.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(l),
    };
    filters
        .get("label")
        .is_none_or(|ls| ls.iter().all(|l| has(l)))
        && filters
            .get("label!")
            .is_none_or(|ls| ls.iter().all(|l| !has(l)))
}

pub(crate) fn check_keys(filters: &HashMap<String, Vec<String>>, allowed: &[&str]) -> Result<()> {
    for k in filters.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(EngineError::InvalidParameter(format!(
                "invalid filter '{k}'"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_both_encodings() {
        let f = parse_filters(r#"{"status":["running"],"label":{"a=b":true}}"#).unwrap();
        assert_eq!(f["status"], vec!["running"]);
        assert_eq!(f["label"], vec!["a=b"]);
        assert!(parse_filters("nope").is_err());
        assert!(parse_filters("").unwrap().is_empty());
    }

    #[test]
    fn until_and_labels() {
        let f = |k: &str, v: &str| HashMap::from([(k.to_string(), vec![v.to_string()])]);
        assert_eq!(until_filter(&f("until", "100")).expect("u"), Some(100));
        assert_eq!(
            until_filter(&f("until", "2020-01-01T00:00:00Z")).expect("u"),
            Some(1577836800)
        );
        let now = chrono::Utc::now().timestamp();
        let h = until_filter(&f("until", "1h")).expect("u").expect("some");
        assert!((now - 3600 - h).abs() <= 1);
        assert!(until_filter(&f("until", "soon")).is_err());
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(labels_match(&f("label", "a"), &labels));
        assert!(labels_match(&f("label", "a=1"), &labels));
        assert!(!labels_match(&f("label", "a=2"), &labels));
        assert!(!labels_match(&f("label!", "a"), &labels));
    }
}
