//! docs/api-coverage.md against the vendored Engine API spec and a real daemon: every endpoint
//! of the spec in the table once, nothing else in it, and the daemon serving exactly the
//! endpoints marked supported or partial.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (METHOD, path) of every operation in the spec's `paths:` section.
fn spec_endpoints() -> Vec<Endpoint> {
    let p = repo().join("docs/engine-api/v1.45.yaml");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for l in text.lines() {
        if l == "paths:" {
            in_paths = true;
            continue;
        }
        if in_paths && !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#') {
            break;
        }
        if !in_paths {
            continue;
        }
        if let Some(rest) = l.strip_prefix("  /") {
            if let Some(p) = rest.strip_suffix(':') {
                path = Some(format!("/{p}"));
                continue;
            }
        }
        if let Some(m) = l.strip_prefix("    ").and_then(|m| m.strip_suffix(':')) {
            if ["get", "post", "put", "delete", "head", "patch"].contains(&m) {
                let p = path.clone().expect("a method before any path");
                out.push((m.to_ascii_uppercase(), p));
            }
        }
    }
    out
}

/// (METHOD, path).
type Endpoint = (String, String);

/// The heading after which docs/api-coverage.md lists endpoints outside the spec (`/grpc`).
const OUTSIDE: &str = "## Outside the v1.45 spec";

/// The table rows of docs/api-coverage.md: (METHOD, path) -> status, in order, duplicates kept.
fn table() -> (Vec<(Endpoint, String)>, String) {
    let p = repo().join("docs/api-coverage.md");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let spec_part = text.split(OUTSIDE).next().unwrap_or("").to_string();
    (rows_of(&spec_part), text)
}

/// The rows of the "outside the spec" table.
fn outside_rows() -> Vec<(Endpoint, String)> {
    let (_, text) = table();
    text.split_once(OUTSIDE)
        .map(|(_, t)| rows_of(t))
        .unwrap_or_default()
}

fn rows_of(text: &str) -> Vec<(Endpoint, String)> {
    let mut rows = Vec::new();
    for l in text.lines() {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[0].is_empty() {
            continue;
        }
        if ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"].contains(&cells[1]) {
            rows.push((
                (cells[1].to_string(), cells[2].to_string()),
                cells[3].to_string(),
            ));
        }
    }
    rows
}

/// A spec path with its parameters filled in for a probe.
fn probe_path(path: &str) -> String {
    let name = if path.starts_with("/distribution/") {
        // A registry that refuses at once: nothing leaves the machine.
        "127.0.0.1:1/berthprobe"
    } else {
        "berthprobe-none"
    };
    path.replace("{id}", "berthprobe-none")
        .replace("{name}", name)
}

/// Does the daemon route `method path`? Not when it answers 405, or 404 with Docker's
/// "page not found" (its fallback, and the wildcard routes' answer for unknown operations);
/// any other answer (an error about the missing object included) comes from a handler.
fn routed(d: &Daemon, method: &str, path: &str) -> Result<(bool, u16, String), String> {
    let mut s = UnixStream::connect(d.socket()).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} /v1.45{path} HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Headers first; a body is read only for a 404 (small JSON). Streams (events) stay open.
    let head_end = loop {
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{method} {path}: connection closed before the headers"
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line {head:?}"))?;
    if status == 405 {
        return Ok((false, status, String::new()));
    }
    if status != 404 {
        return Ok((true, status, String::new()));
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(usize::MAX);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&body).to_string();
    Ok((!body.contains("page not found"), status, body))
}

#[test]
fn table_lists_every_spec_endpoint_once() {
    let spec = spec_endpoints();
    assert!(
        spec.len() > 100,
        "spec parsed to only {} endpoints",
        spec.len()
    );
    let (rows, text) = table();
    let mut seen: BTreeMap<Endpoint, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (k, status) in &rows {
        *seen.entry(k.clone()).or_default() += 1;
        if !["supported", "partial", "not yet"].contains(&status.as_str()) {
            problems.push(format!("{} {}: unknown status {status:?}", k.0, k.1));
        }
        if !spec.contains(k) {
            problems.push(format!(
                "{} {}: not an endpoint of the v1.45 spec",
                k.0, k.1
            ));
        }
    }
    for k in &spec {
        match seen.get(k) {
            None => problems.push(format!("{} {}: missing from the table", k.0, k.1)),
            Some(1) => {}
            Some(n) => problems.push(format!("{} {}: listed {n} times", k.0, k.1)),
        }
    }
    // The totals line says what the rows say.
    let count = |s: &str| rows.iter().filter(|(_, st)| st == s).count();
    let totals = format!(
        "Totals: {} endpoints; {} supported, {} partial, {} not yet.",
        spec.len(),
        count("supported"),
        count("partial"),
        count("not yet")
    );
    if !text.contains(&totals) {
        problems.push(format!("the totals line should read: {totals}"));
    }
    for ((m, p), status) in outside_rows() {
        if spec.contains(&(m.clone(), p.clone())) {
            problems.push(format!("{m} {p}: in the spec, but listed outside it"));
        }
        if !["supported", "partial"].contains(&status.as_str()) {
            problems.push(format!("{m} {p}: listed outside the spec but {status:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/api-coverage.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn daemon_serves_exactly_what_the_table_marks_served() {
    let d = Daemon::shared(BIN);
    let (mut rows, _) = table();
    rows.extend(outside_rows());
    let mut problems = Vec::new();
    for ((method, path), status) in &rows {
        let probe = probe_path(path);
        let (served, code, body) = match routed(d, method, &probe) {
            Ok(x) => x,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let marked = status == "supported" || status == "partial";
        if served && !marked {
            problems.push(format!(
                "{method} {path}: served (HTTP {code}) but marked {status:?}"
            ));
        }
        if !served && marked {
            problems.push(format!(
                "{method} {path}: marked {status:?} but not served (HTTP {code} {})",
                body.trim()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Literal route paths registered in berth-daemon's source (`.route("/...", ...)`) must be
/// spec paths: a route outside the spec could not be in the table.
#[test]
fn daemon_source_routes_are_spec_paths() {
    let spec = spec_endpoints();
    let matches = |route: &str, spec_path: &str| {
        let a: Vec<&str> = route.split('/').collect();
        let b: Vec<&str> = spec_path.split('/').collect();
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(x, y)| x == y || (x.starts_with('{') && y.starts_with('{')))
    };
    let dir = repo().join("crates/berth-daemon/src");
    let mut routes = Vec::new();
    for e in std::fs::read_dir(&dir).expect("daemon src") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("read");
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + 7..];
                let t = rest.trim_start();
                if let Some(t) = t.strip_prefix('"') {
                    if let Some(end) = t.find('"') {
                        routes.push((p.clone(), t[..end].to_string()));
                    }
                }
            }
        }
    }
    assert!(routes.len() > 50, "found only {} routes", routes.len());
    let outside = outside_rows();
    // Routes that serve a spec path whose `{id}` holds a slash: `DELETE /containers/{id}` with a
    // link name `parent/alias` (`rm --link`, docker-py's `remove_container(link=True)`).
    const SLASHED_IDS: &[(&str, &str)] = &[("/containers/{id}/{link}", "/containers/{id}")];
    let bad: Vec<String> = routes
        .iter()
        .filter(|(_, r)| {
            let r = SLASHED_IDS
                .iter()
                .find(|(route, _)| route == r)
                .map_or(r.as_str(), |(_, spec_path)| spec_path);
            // Wildcards (`/images/{*rest}`) dispatch on the spec's sub-paths: the probe covers them.
            !r.contains("{*")
                && !spec.iter().any(|(_, sp)| matches(r, sp))
                && !outside.iter().any(|((_, p), _)| p == r)
        })
        .map(|(p, r)| format!("{}: {r}", p.display()))
        .collect();
    assert!(
        bad.is_empty(),
        "routes outside the v1.45 spec:\n{}",
        bad.join("\n")
    );
}

/// The option tables of docs/api-coverage.md (rows whose last cell names tests in backquotes)
/// name integration tests that exist, so the doc cannot point at a test that was renamed away.
#[test]
fn option_tables_name_existing_tests() {
    let (_, text) = table();
    let mut sources = String::new();
    for e in std::fs::read_dir(repo().join("crates/berth/tests")).expect("tests dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "rs") {
            sources.push_str(&std::fs::read_to_string(&p).expect("read"));
        }
    }
    let mut named = 0;
    let mut problems = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        let Some(tests) = cells.iter().rev().find(|c| !c.is_empty()) else {
            continue;
        };
        for t in tests.split(',').map(|t| t.trim().trim_matches('`')) {
            named += 1;
            if !sources.contains(&format!("fn {t}()")) {
                problems.push(format!("no test fn {t}() in crates/berth/tests: {l}"));
            }
        }
    }
    assert!(named >= 10, "only {named} tests named in option tables");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
