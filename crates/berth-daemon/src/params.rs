//! Query-string helpers with Docker's leniency: booleans as "1"/"true"/"yes", repeated keys.

use std::collections::HashMap;

/// All query pairs, keeping repeats (`names=a&names=b`).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let pairs = match q {
            Some(q) => url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            None => Vec::new(),
        };
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, as Go's `FormValue` (docker-py sends `dockerfile` twice for an
    /// out-of-context Dockerfile: its generated name, then its content).
    pub fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Docker's boolValue: absent, "", "0", "no", "false", "none" are false.
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    /// Like `flag`, but a missing key gives `default`.
    pub fn flag_or(&self, key: &str, default: bool) -> bool {
        if self.get(key).is_none() {
            default
        } else {
            self.flag(key)
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("invalid value for {key}: {v}")),
        }
    }

    pub fn filters(&self) -> Result<HashMap<String, Vec<String>>, String> {
        match self.get("filters") {
            None => Ok(HashMap::new()),
            Some(f) => berth_engine::parse_filters(f).map_err(|e| e.to_string()),
        }
    }
}
