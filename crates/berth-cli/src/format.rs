//! Human formatting as the docker CLI does it: durations, sizes, aligned tables, ports, and the
//! per-row field sets (`ps`, `images`, `history`) that `--format` templates see.

use std::collections::BTreeMap;

use berth_api::types::{ContainerSummary, HistoryItem, ImageSummary, Port};

use crate::template::{Template, TemplateError};
use crate::value::Value;

pub use berth_api::units::human_duration;

/// Go's `%.<prec>g`.
pub fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// docker's `units.HumanSizeWithPrecision` (decimal units).
pub fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(s, prec), UNITS[i])
}

/// The size form `ps` and `images` print.
pub fn human_size(size: i64) -> String {
    human_size_prec(size as f64, 3)
}

/// docker's `units.BytesSize` (binary units, 4 significant digits) as `info` prints memory.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut s = size;
    let mut i = 0;
    while s >= 1024.0 && i < UNITS.len() - 1 {
        s /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(s, 4), UNITS[i])
}

/// Unix seconds as Go's `time.Time.String()` in UTC.
pub fn go_time(unix: i64) -> String {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => String::new(),
    }
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Strip `sha256:` and keep 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// docker's `Ellipsis`: cut to `width` characters, the last being "…".
pub fn ellipsis(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width <= 3 {
        return s.chars().take(width).collect();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `text/tabwriter` with docker's settings (left aligned, space padding): cells end in `\t`,
/// a column's width is its widest cell plus `padding`, at least `minwidth`, computed per block of
/// consecutive lines that have that column.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    if text.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    tab_format(
        &lines,
        0,
        lines.len(),
        &mut widths,
        minwidth,
        padding,
        &mut out,
    );
    out
}

fn tab_format(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        tab_write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        tab_format(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    tab_write_lines(lines, line0, line1, widths, out);
}

fn tab_write_lines(
    lines: &[Vec<&str>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < line.len() {
                let w = cell.chars().count();
                out.push_str(&" ".repeat(widths[j].saturating_sub(w)));
            }
        }
        out.push('\n');
    }
}

fn join_host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// docker ps's PORTS column: equal host/container ports grouped into ranges, other mappings listed
/// after them.
pub fn displayable_ports(ports: &[Port]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_by(|a, b| {
        (a.private_port, &a.ip, a.public_port.unwrap_or(0), &a.r#type).cmp(&(
            b.private_port,
            &b.ip,
            b.public_port.unwrap_or(0),
            &b.r#type,
        ))
    });
    let mut groups: Vec<(String, String, u16, u16)> = Vec::new(); // (ip, type, first, last)
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    let form = |ip: &str, ty: &str, first: u16, last: u16| {
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if ip.is_empty() {
            format!("{g}/{ty}")
        } else {
            format!("{}->{g}/{ty}", join_host_port(ip, &g))
        }
    };
    for p in &ports {
        let public = p.public_port.unwrap_or(0);
        let ip = if p.ip.is_empty() {
            String::new()
        } else {
            p.ip.clone()
        };
        if !ip.is_empty() && public != p.private_port {
            host_mappings.push(format!(
                "{}->{}/{}",
                join_host_port(&ip, &public.to_string()),
                p.private_port,
                p.r#type
            ));
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == ip && g.1 == p.r#type) {
            None => groups.push((ip, p.r#type.clone(), p.private_port, p.private_port)),
            Some(g) => {
                if p.private_port == g.3.wrapping_add(1) {
                    g.3 = p.private_port;
                } else {
                    result.push(form(&g.0, &g.1, g.2, g.3));
                    g.2 = p.private_port;
                    g.3 = p.private_port;
                }
            }
        }
    }
    for g in &groups {
        result.push(form(&g.0, &g.1, g.2, g.3));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// Familiar form of a reference: `docker.io/library/x` -> `x`.
pub fn familiar(name: &str) -> String {
    if let Some(r) = name.strip_prefix("docker.io/library/") {
        return r.to_string();
    }
    if let Some(r) = name.strip_prefix("docker.io/") {
        return r.to_string();
    }
    name.to_string()
}

/// Split `repo:tag` (the tag is after the last colon that follows the last slash).
pub fn split_repo_tag(s: &str) -> (String, String) {
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[slash..].rfind(':') {
        Some(i) => (s[..slash + i].to_string(), s[slash + i + 1..].to_string()),
        None => (s.to_string(), String::new()),
    }
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Field names as docker's container formatter exposes them, with their column headers.
pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Label", "LABEL"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// One `ps` row as template data.
pub fn ps_row(c: &ContainerSummary, trunc: bool, now: i64) -> Value {
    let mut names: Vec<String> = c
        .names
        .iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n).to_string())
        .collect();
    if trunc {
        // Link names ("other/alias") are hidden unless --no-trunc.
        if let Some(n) = names.iter().find(|n| !n.contains('/')) {
            names = vec![n.clone()];
        }
    }
    let image = if c.image.is_empty() {
        "<no image>".to_string()
    } else if trunc {
        if short_id(&c.image_id) == short_id(&c.image) {
            short_id(&c.image)
        } else {
            // Drop a digest, keep name:tag, in familiar form.
            let no_digest = c.image.split('@').next().unwrap_or(&c.image);
            familiar(no_digest)
        }
    } else {
        c.image.clone()
    };
    let command = if trunc {
        go_quote(&ellipsis(&c.command, 20))
    } else {
        go_quote(&c.command)
    };
    let size = match (c.size_rw, c.size_root_fs) {
        (rw, Some(root)) if root > 0 => {
            format!(
                "{} (virtual {})",
                human_size(rw.unwrap_or(0)),
                human_size(root)
            )
        }
        (rw, _) => human_size(rw.unwrap_or(0)),
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let label_map = Value::Object(
        c.labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect(),
    );
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let n = if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            };
            if trunc {
                ellipsis(n, 15)
            } else {
                n.clone()
            }
        })
        .collect();
    let networks: Vec<String> = c
        .network_settings
        .networks
        .as_ref()
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    let local = c.mounts.iter().filter(|m| m.driver == "local").count();
    obj(vec![
        (
            "ID",
            Value::Str(if trunc { short_id(&c.id) } else { c.id.clone() }),
        ),
        ("Image", Value::Str(image)),
        ("Command", Value::Str(command)),
        ("CreatedAt", Value::Str(go_time(c.created))),
        (
            "RunningFor",
            Value::Str(format!("{} ago", human_duration(now - c.created))),
        ),
        ("Ports", Value::Str(displayable_ports(&c.ports))),
        ("State", Value::Str(c.state.clone())),
        ("Status", Value::Str(c.status.clone())),
        ("Size", Value::Str(size)),
        ("Names", Value::Str(names.join(","))),
        ("Labels", Value::Str(labels.join(","))),
        ("Label", label_map),
        ("Mounts", Value::Str(mounts.join(","))),
        ("Networks", Value::Str(networks.join(","))),
        ("LocalVolumes", Value::Str(local.to_string())),
    ])
}

pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("VirtualSize", "VIRTUAL SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

/// The `images` rows of one image: one per repository:tag (per digest too with `--digests`).
pub fn image_rows(i: &ImageSummary, trunc: bool, digests: bool, now: i64) -> Vec<Value> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dgsts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rt in &i.repo_tags {
        if rt == "<none>:<none>" {
            continue;
        }
        let (r, t) = split_repo_tag(rt);
        tags.entry(familiar(&r)).or_default().push(t);
    }
    for rd in &i.repo_digests {
        if let Some((r, d)) = rd.split_once('@') {
            if r == "<none>" {
                continue;
            }
            dgsts.entry(familiar(r)).or_default().push(d.to_string());
        }
    }
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for (repo, ts) in &tags {
        let ds = dgsts.remove(repo).unwrap_or_default();
        for t in ts {
            if !digests || ds.is_empty() {
                rows.push((repo.clone(), t.clone(), "<none>".into()));
            } else {
                for d in &ds {
                    rows.push((repo.clone(), t.clone(), d.clone()));
                }
            }
        }
    }
    for (repo, ds) in dgsts {
        if digests {
            for d in ds {
                rows.push((repo.clone(), "<none>".into(), d));
            }
        } else {
            rows.push((repo, "<none>".into(), "<none>".into()));
        }
    }
    if rows.is_empty() {
        rows.push(("<none>".into(), "<none>".into(), "<none>".into()));
    }
    let created_since = if i.created <= 0 {
        "N/A".to_string()
    } else {
        format!("{} ago", human_duration(now - i.created))
    };
    let id = if trunc { short_id(&i.id) } else { i.id.clone() };
    let containers = if i.containers < 0 {
        "N/A".to_string()
    } else {
        i.containers.to_string()
    };
    let shared = if i.shared_size < 0 {
        "N/A".to_string()
    } else {
        human_size(i.shared_size)
    };
    let unique = if i.shared_size < 0 {
        "N/A".to_string()
    } else {
        human_size(i.size - i.shared_size)
    };
    rows.into_iter()
        .map(|(repo, tag, digest)| {
            obj(vec![
                ("ID", Value::Str(id.clone())),
                ("Repository", Value::Str(repo)),
                ("Tag", Value::Str(tag)),
                ("Digest", Value::Str(digest)),
                ("CreatedSince", Value::Str(created_since.clone())),
                ("CreatedAt", Value::Str(go_time(i.created))),
                ("Size", Value::Str(human_size(i.size))),
                ("Containers", Value::Str(containers.clone())),
                (
                    "VirtualSize",
                    Value::Str(human_size(i.virtual_size.unwrap_or(i.size))),
                ),
                ("SharedSize", Value::Str(shared.clone())),
                ("UniqueSize", Value::Str(unique.clone())),
            ])
        })
        .collect()
}

pub const SEARCH_HEADERS: &[(&str, &str)] = &[
    ("Name", "NAME"),
    ("Description", "DESCRIPTION"),
    ("StarCount", "STARS"),
    ("IsOfficial", "OFFICIAL"),
    ("IsAutomated", "AUTOMATED"),
];

pub const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// One `search` result (the API's snake_case fields) as the CLI's template fields.
pub fn search_row(r: &serde_json::Value, trunc: bool) -> Value {
    let desc = r["description"].as_str().unwrap_or("").replace('\n', " ");
    let ok = |k: &str| {
        Value::str(if r[k].as_bool() == Some(true) {
            "[OK]"
        } else {
            ""
        })
    };
    obj(vec![
        ("Name", Value::str(r["name"].as_str().unwrap_or(""))),
        (
            "Description",
            Value::Str(if trunc { ellipsis(&desc, 45) } else { desc }),
        ),
        (
            "StarCount",
            Value::Str(r["star_count"].as_i64().unwrap_or(0).to_string()),
        ),
        ("IsOfficial", ok("is_official")),
        ("IsAutomated", ok("is_automated")),
    ])
}

pub fn history_row(h: &HistoryItem, trunc: bool, human: bool, now: i64) -> Value {
    let id = if h.id.starts_with('<') {
        h.id.clone()
    } else if trunc {
        short_id(&h.id)
    } else {
        h.id.clone()
    };
    let created_since = if human {
        format!("{} ago", human_duration(now - h.created))
    } else {
        chrono::DateTime::from_timestamp(h.created, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let created_at = chrono::DateTime::from_timestamp(h.created, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let created_by = h.created_by.replace('\t', " ");
    let created_by = if trunc {
        ellipsis(&created_by, 45)
    } else {
        created_by
    };
    let size = if human {
        human_size_prec(h.size as f64, 3)
    } else {
        h.size.to_string()
    };
    obj(vec![
        ("ID", Value::Str(id)),
        ("CreatedSince", Value::Str(created_since)),
        ("CreatedAt", Value::Str(created_at)),
        ("CreatedBy", Value::Str(created_by)),
        ("Size", Value::Str(size)),
        ("Comment", Value::Str(h.comment.clone())),
    ])
}

/// The template a listing renders: `quiet` (`-q`'s, when given), else the user's `--format`
/// (an empty one or a plain `table` means the default), else `default`.
pub fn listing_format(quiet: Option<&str>, format: Option<&str>, default: &str) -> String {
    quiet
        .or_else(|| format.filter(|f| !f.trim().is_empty() && f.trim() != "table"))
        .unwrap_or(default)
        .to_string()
}

/// Prints what an `inspect` found (each through `tmpl`, or all as one JSON array), then the
/// errors of the names it did not find; exit status 1 if there were any.
pub fn print_inspected(
    tmpl: Option<&Template>,
    found: Vec<Value>,
    errors: &[String],
) -> Result<i32, TemplateError> {
    match tmpl {
        Some(t) => {
            let mut out = String::new();
            for v in &found {
                out.push_str(&t.render(v)?);
                out.push('\n');
            }
            print!("{out}");
        }
        None => println!("{}", Value::Array(found).to_json_pretty()),
    }
    for e in errors {
        eprintln!("{e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// Render rows with a docker `--format` (`table ...`, `json`, or a plain template).
pub fn render_rows(
    format: &str,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> Result<String, TemplateError> {
    let trimmed = format.trim_start();
    if trimmed == "json" {
        let mut out = String::new();
        for r in rows {
            let mut fields: Vec<(String, Value)> = match r {
                Value::Object(o) => o.iter().filter(|(k, _)| k != "Label").cloned().collect(),
                other => vec![("".into(), other.clone())],
            };
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            out.push_str(&Value::Object(fields).to_json());
            out.push('\n');
        }
        return Ok(out);
    }
    let (is_table, body) = match trimmed.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest),
        _ => (false, format),
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let mut tmpl = Template::parse(&body)?;
    tmpl.strict = true;
    let mut buf = String::new();
    if is_table {
        let header = Value::Object(
            headers
                .iter()
                .map(|(k, h)| (k.to_string(), Value::Str(h.to_string())))
                .collect(),
        );
        // A header template that fails (e.g. `.Label "x"`) just yields an empty header cell.
        let h = tmpl.render(&header).unwrap_or_default();
        buf.push_str(&h);
        buf.push('\n');
    }
    for r in rows {
        buf.push_str(&tmpl.render(r)?);
        buf.push('\n');
    }
    if is_table {
        Ok(tabwrite(&buf, 10, 3))
    } else {
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::types::MountPoint;

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(65), "About a minute");
        assert_eq!(human_duration(125), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(77_900_000), "77.9MB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(123_456), "123kB");
        assert_eq!(human_size(999_900), "1e+03kB");
        assert_eq!(bytes_size(2.0 * 1024.0 * 1024.0 * 1024.0), "2GiB");
        assert_eq!(bytes_size(15.5 * 1024.0 * 1024.0 * 1024.0), "15.5GiB");
    }

    #[test]
    fn tabwriter_like_go() {
        let t = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tx\n";
        assert_eq!(
            tabwrite(t, 10, 3),
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   x\n"
        );
    }

    #[test]
    fn ports() {
        let p = |ip: &str, private, public: Option<u16>, t: &str| Port {
            ip: ip.into(),
            private_port: private,
            public_port: public,
            r#type: t.into(),
        };
        assert_eq!(
            displayable_ports(&[
                p("0.0.0.0", 80, Some(8080), "tcp"),
                p("::", 80, Some(8080), "tcp"),
                p("", 443, None, "tcp"),
                p("", 444, None, "tcp"),
                p("0.0.0.0", 9000, Some(9000), "udp"),
            ]),
            "443-444/tcp, 0.0.0.0:9000->9000/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(displayable_ports(&[]), "");
    }

    #[test]
    fn ps_table_golden() {
        let now = 1_700_000_100;
        let c = ContainerSummary {
            id: "4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e1234".into(),
            names: vec!["/web".into()],
            image: "busybox".into(),
            image_id: "sha256:aaaa".into(),
            command: "sh -c 'while true; do sleep 1; done'".into(),
            created: now - 90,
            state: "running".into(),
            status: "Up About a minute".into(),
            ports: vec![Port {
                ip: "0.0.0.0".into(),
                private_port: 80,
                public_port: Some(8080),
                r#type: "tcp".into(),
            }],
            mounts: vec![MountPoint {
                name: "data".into(),
                driver: "local".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = ContainerSummary {
            id: "0123456789abcdef".into(),
            names: vec!["/db".into()],
            image: "sha256:bbbbbbbbbbbbbbbbbbbb".into(),
            image_id: "sha256:bbbbbbbbbbbbbbbbbbbb".into(),
            command: "true".into(),
            created: now - 3,
            state: "exited".into(),
            status: "Exited (0) 2 seconds ago".into(),
            ..Default::default()
        };
        let rows = vec![ps_row(&c, true, now), ps_row(&d, true, now)];
        let out = render_rows(
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            PS_HEADERS,
            &rows,
        )
        .expect("render");
        let want = "\
CONTAINER ID   IMAGE          COMMAND                  CREATED              STATUS                     PORTS                  NAMES
4f66ad9a0b2e   busybox        \"sh -c 'while true; …\"   About a minute ago   Up About a minute          0.0.0.0:8080->80/tcp   web
0123456789ab   bbbbbbbbbbbb   \"true\"                   3 seconds ago        Exited (0) 2 seconds ago                          db
";
        assert_eq!(out, want);
        let out = render_rows(
            "{{.Names}} {{.LocalVolumes}} {{.Mounts}}",
            PS_HEADERS,
            &rows,
        )
        .expect("r");
        assert_eq!(out, "web 1 data\ndb 0 \n");
        assert!(render_rows("{{.Nope}}", PS_HEADERS, &rows).is_err());
        let j = render_rows("json", PS_HEADERS, &rows[1..]).expect("json");
        assert!(j.starts_with(r#"{"Command":"\"true\"","CreatedAt":"#));
    }

    #[test]
    fn images_table_golden() {
        let now = 1_700_000_000;
        let a = ImageSummary {
            id: "sha256:0123456789abcdef0123".into(),
            repo_tags: vec!["busybox:latest".into(), "localhost:5000/bb:1.36".into()],
            repo_digests: vec!["busybox@sha256:feed".into()],
            created: now - 3 * 7 * 86400,
            size: 4_261_234,
            ..Default::default()
        };
        let b = ImageSummary {
            id: "sha256:fedcba9876543210fedc".into(),
            created: now - 7200,
            size: 1_200_000_000,
            ..Default::default()
        };
        let mut rows = image_rows(&a, true, false, now);
        rows.extend(image_rows(&b, true, false, now));
        let out = render_rows(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
            IMAGE_HEADERS,
            &rows,
        )
        .expect("render");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "REPOSITORY          TAG       IMAGE ID       CREATED       SIZE"
        );
        assert_eq!(
            lines[1],
            "busybox             latest    0123456789ab   3 weeks ago   4.26MB"
        );
        assert_eq!(
            lines[2],
            "localhost:5000/bb   1.36      0123456789ab   3 weeks ago   4.26MB"
        );
        assert_eq!(
            lines[3],
            "<none>              <none>    fedcba987654   2 hours ago   1.2GB"
        );
        let d = image_rows(&a, true, true, now);
        assert_eq!(d[0].get("Digest"), Some(&Value::str("sha256:feed")));
    }
}
