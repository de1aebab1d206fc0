//! `berth events`: `--since`, `--until`, `--filter`, `--format`, streamed as docker prints them.

use std::io::Write;
use std::sync::Arc;

use berth_api::client::{Body, Client, Method};

use crate::cli::EventsArgs;
use crate::error::CliError;
use crate::opts::parse_timestamp;
use crate::template::Template;
use crate::value::Value;

/// docker's default line: `TIME TYPE ACTION ID (k=v, ...)`.
fn default_line(e: &serde_json::Value) -> String {
    let nano = e["timeNano"].as_i64().unwrap_or(0);
    let t = chrono::DateTime::from_timestamp(nano / 1_000_000_000, (nano % 1_000_000_000) as u32)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string())
        .unwrap_or_default();
    let attrs: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{t} {} {} {}",
        e["Type"].as_str().unwrap_or(""),
        e["Action"].as_str().unwrap_or(""),
        e["Actor"]["ID"].as_str().unwrap_or("")
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

pub async fn events(c: Arc<Client>, a: EventsArgs) -> Result<i32, CliError> {
    let now = chrono::Utc::now();
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", parse_timestamp(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", parse_timestamp(u, now)?));
    }
    if !a.filter.is_empty() {
        q.push((
            "filters",
            crate::opts::filters_json(&a.filter, &[])?.unwrap_or_default(),
        ));
    }
    let tmpl = match a.format.as_deref() {
        None | Some("") => None,
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(f) => Some(Template::parse(f)?),
    };
    let mut r = c.request(Method::GET, "/events", &q, Body::Empty).await?;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let text = match &tmpl {
                Some(t) => t.render(&Value::from_json(&line)?)?,
                None => default_line(&ev),
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
    Ok(0)
}
