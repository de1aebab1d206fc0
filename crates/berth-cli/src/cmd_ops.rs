//! pause, unpause, top, diff, commit, export, update, stats.

use std::io::Write;
use std::sync::Arc;

use berth_api::client::{Body, Client, Method};
use serde_json::Value as Json;

use crate::cli::{
    CommitArgs, ContainersArgs, DiffArgs, ExportArgs, StatsArgs, TopArgs, UpdateArgs,
};
use crate::error::CliError;
use crate::format::{bytes_size, human_size_prec, tabwrite};

fn seg(s: &str) -> String {
    berth_api::client::encode_query_component(s)
}

/// `POST /containers/{name}/{what}` (with `body` as JSON) for each name: prints the names that
/// succeeded, the errors of the others; exit status 1 if any failed.
async fn post_each(
    c: &Client,
    names: &[String],
    what: &str,
    body: Option<&Json>,
) -> Result<i32, CliError> {
    let mut failed = false;
    for n in names {
        let body = match body {
            Some(b) => Body::json(b)?,
            None => Body::Empty,
        };
        let r = c
            .request(
                Method::POST,
                &format!("/containers/{}/{what}", seg(n)),
                &[],
                body,
            )
            .await;
        match r {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn pause(c: Arc<Client>, a: ContainersArgs) -> Result<i32, CliError> {
    post_each(&c, &a.containers, "pause", None).await
}

pub async fn unpause(c: Arc<Client>, a: ContainersArgs) -> Result<i32, CliError> {
    post_each(&c, &a.containers, "unpause", None).await
}

pub async fn top(c: Arc<Client>, a: TopArgs) -> Result<i32, CliError> {
    let mut q = Vec::new();
    if !a.ps_args.is_empty() {
        q.push(("ps_args", a.ps_args.join(" ")));
    }
    let v: Json = c
        .get_json(&format!("/containers/{}/top", seg(&a.container)), &q)
        .await?;
    let mut text = String::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    text.push_str(&titles.join("\t"));
    text.push('\n');
    for p in v["Processes"].as_array().cloned().unwrap_or_default() {
        let cols: Vec<String> = p
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        text.push_str(&cols.join("\t"));
        text.push('\n');
    }
    print!("{}", tabwrite(&text, 0, 3));
    Ok(0)
}

pub async fn diff(c: Arc<Client>, a: DiffArgs) -> Result<i32, CliError> {
    let v: Json = c
        .get_json(&format!("/containers/{}/changes", seg(&a.container)), &[])
        .await?;
    for ch in v.as_array().cloned().unwrap_or_default() {
        let k = match ch["Kind"].as_u64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(0)
}

pub async fn commit(c: Arc<Client>, a: CommitArgs) -> Result<i32, CliError> {
    let mut q = vec![
        ("container", a.container.clone()),
        ("pause", (!a.no_pause_flag()).to_string()),
    ];
    if let Some(r) = &a.repository {
        let (repo, tag) = crate::format::split_repo_tag(r);
        q.push(("repo", repo));
        if !tag.is_empty() {
            q.push(("tag", tag));
        }
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let v: Json = c
        .request(Method::POST, "/commit", &q, Body::Empty)
        .await?
        .json()
        .await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

pub async fn export(c: Arc<Client>, a: ExportArgs) -> Result<i32, CliError> {
    let mut r = c
        .request(
            Method::GET,
            &format!("/containers/{}/export", seg(&a.container)),
            &[],
            Body::Empty,
        )
        .await?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p)?),
        None => {
            if crate::term::stdout_is_tty() {
                return Err(CliError::msg(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            Box::new(std::io::stdout().lock())
        }
    };
    while let Some(chunk) = r.chunk().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(0)
}

pub async fn update(c: Arc<Client>, a: UpdateArgs) -> Result<i32, CliError> {
    let mut body = serde_json::Map::new();
    if let Some(m) = &a.memory {
        body.insert("Memory".into(), crate::opts::parse_ram(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        body.insert("MemorySwap".into(), crate::opts::parse_swap(m)?.into());
    }
    if let Some(m) = &a.memory_reservation {
        body.insert(
            "MemoryReservation".into(),
            crate::opts::parse_ram(m)?.into(),
        );
    }
    if let Some(cpus) = &a.cpus {
        body.insert("NanoCpus".into(), crate::opts::parse_cpus(cpus)?.into());
    }
    if let Some(s) = a.cpu_shares {
        body.insert("CpuShares".into(), s.into());
    }
    if let Some(s) = a.cpu_period {
        body.insert("CpuPeriod".into(), s.into());
    }
    if let Some(s) = a.cpu_quota {
        body.insert("CpuQuota".into(), s.into());
    }
    if let Some(s) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), s.clone().into());
    }
    if let Some(s) = &a.cpuset_mems {
        body.insert("CpusetMems".into(), s.clone().into());
    }
    if let Some(w) = a.blkio_weight {
        body.insert("BlkioWeight".into(), w.into());
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), p.into());
    }
    if let Some(r) = &a.restart {
        let (name, count) = match r.split_once(':') {
            Some((n, c)) => (
                n.to_string(),
                c.parse::<i64>()
                    .map_err(|_| CliError::Usage(format!("invalid restart policy format: {r}")))?,
            ),
            None => (r.clone(), 0),
        };
        body.insert(
            "RestartPolicy".into(),
            serde_json::json!({"Name": name, "MaximumRetryCount": count}),
        );
    }
    if body.is_empty() {
        return Err(CliError::Usage(
            "you must provide one or more flags when using this command".into(),
        ));
    }
    post_each(&c, &a.containers, "update", Some(&Json::Object(body))).await
}

/// CPU % the way the docker CLI computes it (v1 and v2 shapes alike).
pub fn cpu_percent(v: &Json) -> f64 {
    let cur = v["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let pre = v["precpu_stats"]["cpu_usage"]["total_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let sys = v["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let presys = v["precpu_stats"]["system_cpu_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let online = v["cpu_stats"]["online_cpus"]
        .as_f64()
        .filter(|n| *n > 0.0)
        .or_else(|| {
            v["cpu_stats"]["cpu_usage"]["percpu_usage"]
                .as_array()
                .map(|a| a.len() as f64)
        })
        .unwrap_or(1.0);
    let (dc, ds) = (cur - pre, sys - presys);
    if dc > 0.0 && ds > 0.0 {
        dc / ds * online * 100.0
    } else {
        0.0
    }
}

/// Memory usage as the docker CLI shows it: usage minus the page cache.
pub fn mem_usage(v: &Json) -> f64 {
    let m = &v["memory_stats"];
    let usage = m["usage"].as_f64().unwrap_or(0.0);
    let st = &m["stats"];
    let cache = st["total_inactive_file"]
        .as_f64()
        .filter(|x| *x < usage)
        .or_else(|| st["inactive_file"].as_f64().filter(|x| *x < usage))
        .unwrap_or(0.0);
    usage - cache
}

fn stats_row(v: &Json, no_trunc: bool) -> [String; 8] {
    let id = v["id"].as_str().unwrap_or("");
    let id = if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    };
    let name = v["name"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let mem = mem_usage(v);
    let limit = v["memory_stats"]["limit"].as_f64().unwrap_or(0.0);
    let mem_pct = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(n) = v["networks"].as_object() {
        for i in n.values() {
            rx += i["rx_bytes"].as_f64().unwrap_or(0.0);
            tx += i["tx_bytes"].as_f64().unwrap_or(0.0);
        }
    }
    let (mut br, mut bw) = (0.0, 0.0);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => br += e["value"].as_f64().unwrap_or(0.0),
            Some("write") => bw += e["value"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    let running = v["read"].as_str() != Some("0001-01-01T00:00:00Z");
    let pct = |x: f64| {
        if running {
            format!("{x:.2}%")
        } else {
            "--".into()
        }
    };
    [
        id,
        name,
        pct(cpu_percent(v)),
        if running {
            format!("{} / {}", bytes_size(mem), bytes_size(limit))
        } else {
            "-- / --".into()
        },
        pct(mem_pct),
        format!("{} / {}", human_size_prec(rx, 3), human_size_prec(tx, 3)),
        format!("{} / {}", human_size_prec(br, 3), human_size_prec(bw, 3)),
        v["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    ]
}

fn render(rows: &[[String; 8]]) -> String {
    let mut text = String::from(
        "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS\n",
    );
    for r in rows {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    tabwrite(&text, 0, 3)
}

pub async fn stats(c: Arc<Client>, a: StatsArgs) -> Result<i32, CliError> {
    let names: Vec<String> = if a.containers.is_empty() {
        let q = [("all", a.all.to_string())];
        let list: Json = c.get_json("/containers/json", &q).await?;
        list.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x["Id"].as_str().map(str::to_string))
            .collect()
    } else {
        a.containers.clone()
    };
    let tmpl = match a.format.as_deref() {
        None | Some("") | Some("table") => None,
        Some(f) => Some(crate::template::Template::parse(
            f.trim_start_matches("table "),
        )?),
    };
    loop {
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for n in &names {
            let q = [("stream", "false".to_string())];
            let v: Json = match c
                .get_json(&format!("/containers/{}/stats", seg(n)), &q)
                .await
            {
                Ok(v) => v,
                Err(e) if a.containers.is_empty() => {
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let row = stats_row(&v, a.no_trunc);
            if let Some(t) = &tmpl {
                let data = serde_json::json!({
                    "Container": n, "ID": row[0], "Name": row[1], "CPUPerc": row[2],
                    "MemUsage": row[3], "MemPerc": row[4], "NetIO": row[5], "BlockIO": row[6],
                    "PIDs": row[7],
                });
                let val = crate::value::Value::from_json(&serde_json::to_vec(&data)?)?;
                lines.push(t.render(&val)?);
            }
            rows.push(row);
        }
        let mut out = std::io::stdout().lock();
        if !a.no_stream {
            // Redraw in place, as docker does.
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        if tmpl.is_some() {
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        } else {
            let _ = write!(out, "{}", render(&rows));
        }
        let _ = out.flush();
        if a.no_stream {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
