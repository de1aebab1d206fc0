//! Container commands that are one request each: ps, inspect, stop, kill, restart, rm, wait,
//! rename, port.

use berth_api::endpoints::ListContainersOptions;
use berth_api::types::ContainerWaitResponse;
use berth_api::Client;

use crate::cli::{
    ContainersArgs, InspectArgs, KillArgs, PortArgs, PsArgs, RenameArgs, RmArgs, StopArgs,
};
use crate::error::CliError;
use crate::format::{self, now_unix, render_rows};
use crate::template::Template;
use crate::value::Value;

/// Run `f` on every name, printing the name on success and the error otherwise (docker's
/// behaviour for stop/kill/rm...); exit 1 if any failed.
async fn each<F, Fut>(names: &[String], f: F) -> Result<i32, CliError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), berth_api::ApiError>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn stop(c: &Client, a: StopArgs) -> Result<i32, CliError> {
    let sig = a.signal.clone();
    each(&a.containers, |n| {
        let sig = sig.clone();
        async move { c.container_stop(&n, sig.as_deref(), a.time).await }
    })
    .await
}

pub async fn restart(c: &Client, a: StopArgs) -> Result<i32, CliError> {
    let sig = a.signal.clone();
    each(&a.containers, |n| {
        let sig = sig.clone();
        async move { c.container_restart(&n, sig.as_deref(), a.time).await }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<i32, CliError> {
    let sig = a.signal.clone();
    each(&a.containers, |n| {
        let sig = sig.clone();
        async move { c.container_kill(&n, sig.as_deref()).await }
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<i32, CliError> {
    each(&a.containers, |n| async move {
        c.container_remove(&n, a.force, a.volumes, a.link).await
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> Result<i32, CliError> {
    let new = a.new_name.trim();
    if new.is_empty() {
        return Err(CliError::msg(
            "Error: Neither old nor new names may be empty",
        ));
    }
    c.container_rename(&a.container, new).await?;
    Ok(0)
}

pub async fn wait(c: &Client, a: ContainersArgs) -> Result<i32, CliError> {
    let mut failed = false;
    for n in &a.containers {
        let r: Result<ContainerWaitResponse, _> = match c.container_wait_early(n, None).await {
            Ok(p) => p.finish_json().await,
            Err(e) => Err(e),
        };
        match r {
            Ok(w) => println!("{}", w.status_code),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn ps(c: &Client, a: PsArgs) -> Result<i32, CliError> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::msg("bad format of filter (expected name=value)"))?;
        filters.push((k.trim().to_lowercase(), v.to_string()));
    }
    let mut last = a.last;
    if a.latest && last == -1 {
        last = 1;
    }
    let o = ListContainersOptions {
        all: a.all || last > 0,
        limit: (last > 0).then_some(last),
        size: a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size")),
        filters,
    };
    let list = c.containers_list(&o).await?;
    let now = now_unix();
    let trunc = !a.no_trunc;
    let rows: Vec<_> = list.iter().map(|s| format::ps_row(s, trunc, now)).collect();
    let fmt = format::listing_format(
        a.quiet.then_some("{{.ID}}"),
        a.format.as_deref(),
        if a.size {
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
        } else {
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
        },
    );
    print!("{}", render_rows(&fmt, format::PS_HEADERS, &rows)?);
    Ok(0)
}

async fn get_raw(
    c: &Client,
    path: &str,
    query: &[(&str, String)],
) -> Result<Value, berth_api::ApiError> {
    let b = c
        .request(http_get(), path, query, berth_api::Body::Empty)
        .await?
        .bytes()
        .await?;
    Value::from_json(&b).map_err(berth_api::ApiError::from)
}

fn http_get() -> berth_api::client::Method {
    berth_api::client::Method::GET
}

fn seg(s: &str) -> String {
    berth_api::client::encode_query_component(s)
}

/// The inspect JSON of one object, trying containers then images unless `kind` says which.
async fn inspect_one(
    c: &Client,
    name: &str,
    kind: Option<&str>,
    size: bool,
) -> Result<Value, CliError> {
    let size_q = [("size", if size { "1" } else { "0" }.to_string())];
    let want_container = matches!(kind, None | Some("container"));
    let want_image = matches!(kind, None | Some("image"));
    if let Some(k) = kind {
        if k != "container" && k != "image" {
            return Err(CliError::msg(format!(
                "\"{k}\" is not a valid value for --type"
            )));
        }
    }
    if want_container {
        match get_raw(c, &format!("/containers/{}/json", seg(name)), &size_q).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if want_image {
        match get_raw(c, &format!("/images/{}/json", seg(name)), &[]).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::msg(match kind {
        Some("container") => format!("Error: No such container: {name}"),
        Some("image") => format!("Error: No such image: {name}"),
        _ => format!("Error: No such object: {name}"),
    }))
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<i32, CliError> {
    let tmpl = match a
        .format
        .as_deref()
        .filter(|f| !f.trim().is_empty() && f.trim() != "table")
    {
        Some("json") => None,
        Some(f) => Some(Template::parse(f)?),
        None => None,
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match inspect_one(c, n, a.kind.as_deref(), a.size).await {
            Ok(v) => found.push(v),
            Err(CliError::Api(e)) if e.status().is_none() => return Err(e.into()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(format::print_inspected(tmpl.as_ref(), found, &errors)?)
}

/// `port` lines for one mapping list: `80/tcp -> 0.0.0.0:8080`.
pub fn port_lines(ports: &Value, filter: Option<&str>) -> Result<Vec<String>, String> {
    let mut keys: Vec<(u32, String, Vec<String>)> = Vec::new();
    if let Value::Object(m) = ports {
        for (k, v) in m {
            let (num, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let mut addrs = Vec::new();
            if let Value::Array(bs) = v {
                for b in bs {
                    let ip = match b.get("HostIp") {
                        Some(Value::Str(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let port = match b.get("HostPort") {
                        Some(Value::Str(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let ip = if ip.is_empty() {
                        "0.0.0.0".to_string()
                    } else {
                        ip
                    };
                    addrs.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                }
            }
            keys.push((num.parse().unwrap_or(0), format!("{num}/{proto}"), addrs));
        }
    }
    keys.sort();
    if let Some(f) = filter {
        let want = if f.contains('/') {
            f.to_string()
        } else {
            format!("{f}/tcp")
        };
        for (_, k, addrs) in &keys {
            if *k == want && !addrs.is_empty() {
                return Ok(addrs.clone());
            }
        }
        return Err(want);
    }
    Ok(keys
        .into_iter()
        .flat_map(|(_, k, addrs)| addrs.into_iter().map(move |a| format!("{k} -> {a}")))
        .collect())
}

pub async fn port(c: &Client, a: PortArgs) -> Result<i32, CliError> {
    let v = get_raw(c, &format!("/containers/{}/json", seg(&a.container)), &[]).await?;
    let ports = v
        .get("NetworkSettings")
        .and_then(|n| n.get("Ports"))
        .cloned()
        .unwrap_or(Value::Null);
    match port_lines(&ports, a.port.as_deref()) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(0)
        }
        Err(want) => Err(CliError::msg(format!(
            "Error: No public port '{want}' published for {}",
            a.container
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_output() {
        let p = Value::from_json(
            br#"{"443/tcp":null,"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}],"53/udp":[{"HostIp":"","HostPort":"5353"}]}"#,
        )
        .expect("json");
        assert_eq!(
            port_lines(&p, None).expect("ok"),
            vec![
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080"
            ]
        );
        assert_eq!(
            port_lines(&p, Some("80")).expect("ok"),
            vec!["0.0.0.0:8080", "[::]:8080"]
        );
        assert_eq!(port_lines(&p, Some("443")), Err("443/tcp".to_string()));
    }
}
