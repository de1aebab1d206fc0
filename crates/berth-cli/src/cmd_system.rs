//! `version` and `info`.

use berth_api::types::{SystemInfo, SystemVersion};
use berth_api::Client;

use crate::cli::{InfoArgs, VersionArgs};
use crate::error::CliError;
use crate::format::{bytes_size, tabwrite};
use crate::template::Template;
use crate::value::Value;

fn client_os_arch() -> (String, String) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (std::env::consts::OS.to_string(), arch.to_string())
}

/// The client half of `version`, as template data.
fn client_value(api: &str) -> Value {
    let (os, arch) = client_os_arch();
    Value::Object(vec![
        (
            "Platform".into(),
            Value::Object(vec![("Name".into(), Value::str("Berth"))]),
        ),
        ("Version".into(), Value::str(env!("CARGO_PKG_VERSION"))),
        ("ApiVersion".into(), Value::str(api)),
        (
            "DefaultAPIVersion".into(),
            Value::str(berth_api::API_VERSION),
        ),
        ("Os".into(), Value::str(os)),
        ("Arch".into(), Value::str(arch)),
        ("Context".into(), Value::str("default")),
    ])
}

pub async fn version(c: &Client, a: VersionArgs) -> Result<i32, CliError> {
    let server: Result<SystemVersion, _> = c.version().await;
    let api = c
        .api_version()
        .await
        .unwrap_or_else(|_| berth_api::API_VERSION.to_string());
    if let Some(f) = a.format {
        let tmpl = Template::parse(&f)?;
        let mut data = vec![("Client".to_string(), client_value(&api))];
        if let Ok(s) = &server {
            // Templates use the Go struct's field names: the wire's "ApiVersion" is APIVersion.
            let mut v = Value::from_serialize(s)?;
            if let Value::Object(fields) = &mut v {
                for (k, _) in fields.iter_mut() {
                    if k == "ApiVersion" {
                        *k = "APIVersion".into();
                    }
                }
            }
            data.push(("Server".into(), v));
        }
        println!("{}", tmpl.render(&Value::Object(data))?);
        return server.map(|_| 0).map_err(Into::into);
    }
    let (os, arch) = client_os_arch();
    let mut out = String::new();
    out.push_str("Client:\n");
    out.push_str(&format!(" Version:\t{}\n", env!("CARGO_PKG_VERSION")));
    let downgraded = if api != berth_api::API_VERSION {
        format!(" (downgraded from {})", berth_api::API_VERSION)
    } else {
        String::new()
    };
    out.push_str(&format!(" API version:\t{api}{downgraded}\n"));
    out.push_str(&format!(" OS/Arch:\t{os}/{arch}\n"));
    out.push_str(" Context:\tdefault\n");
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            print!("{}", tabwrite(&out, 20, 1));
            return Err(e.into());
        }
    };
    out.push('\n');
    let plat = if server.platform.name.is_empty() {
        String::new()
    } else {
        format!(" {}", server.platform.name)
    };
    out.push_str(&format!("Server:{plat}\n"));
    let components = server.components.clone().unwrap_or_else(|| {
        vec![berth_api::types::ComponentVersion {
            name: "Engine".into(),
            version: server.version.clone(),
            details: None,
        }]
    });
    for comp in components {
        out.push_str(&format!(" {}:\n", comp.name));
        let d = comp.details.clone().unwrap_or_default();
        let det = |k: &str| -> String {
            match d.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            }
        };
        if comp.name == "Engine" {
            let or = |a: String, b: &str| if a.is_empty() { b.to_string() } else { a };
            out.push_str(&format!("  Version:\t{}\n", comp.version));
            out.push_str(&format!(
                "  API version:\t{} (minimum version {})\n",
                or(det("ApiVersion"), &server.api_version),
                or(det("MinAPIVersion"), &server.min_api_version)
            ));
            out.push_str(&format!(
                "  Git commit:\t{}\n",
                or(det("GitCommit"), &server.git_commit)
            ));
            out.push_str(&format!(
                "  Built:\t{}\n",
                or(det("BuildTime"), &server.build_time)
            ));
            out.push_str(&format!(
                "  OS/Arch:\t{}/{}\n",
                or(det("Os"), &server.os),
                or(det("Arch"), &server.arch)
            ));
            out.push_str(&format!(
                "  Experimental:\t{}\n",
                or(det("Experimental"), &server.experimental.to_string())
            ));
        } else {
            out.push_str(&format!("  Version:\t{}\n", comp.version));
            for (k, v) in &d {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("  {k}:\t{v}\n"));
            }
        }
    }
    print!("{}", tabwrite(&out, 20, 1));
    Ok(0)
}

/// `Name=seccomp,profile=builtin` -> "  seccomp\n   Profile: builtin\n".
fn security_option_lines(opt: &str) -> String {
    let mut out = String::new();
    for kv in opt.split(',') {
        match kv.split_once('=') {
            Some(("name", v)) => out.push_str(&format!("  {v}\n")),
            Some((k, v)) => {
                let mut cs = k.chars();
                let title: String = cs
                    .next()
                    .map(|c| c.to_uppercase().chain(cs).collect())
                    .unwrap_or_default();
                out.push_str(&format!("   {title}: {v}\n"));
            }
            None => out.push_str(&format!("  {kv}\n")),
        }
    }
    out
}

pub fn render_info(i: &SystemInfo) -> String {
    let mut o = String::new();
    o.push_str(&format!(" Containers: {}\n", i.containers));
    o.push_str(&format!("  Running: {}\n", i.containers_running));
    o.push_str(&format!("  Paused: {}\n", i.containers_paused));
    o.push_str(&format!("  Stopped: {}\n", i.containers_stopped));
    o.push_str(&format!(" Images: {}\n", i.images));
    o.push_str(&format!(" Server Version: {}\n", i.server_version));
    o.push_str(&format!(" Storage Driver: {}\n", i.driver));
    for [k, v] in i.driver_status.iter().flatten() {
        o.push_str(&format!("  {k}: {v}\n"));
    }
    o.push_str(&format!(" Logging Driver: {}\n", i.logging_driver));
    o.push_str(&format!(" Cgroup Driver: {}\n", i.cgroup_driver));
    o.push_str(&format!(" Cgroup Version: {}\n", i.cgroup_version));
    o.push_str(" Plugins:\n");
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default().join(" ");
    o.push_str(&format!("  Volume: {}\n", list(&i.plugins.volume)));
    o.push_str(&format!("  Network: {}\n", list(&i.plugins.network)));
    if i.plugins
        .authorization
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        o.push_str(&format!(
            "  Authorization: {}\n",
            list(&i.plugins.authorization)
        ));
    }
    o.push_str(&format!("  Log: {}\n", list(&i.plugins.log)));
    let swarm = if i.swarm.local_node_state.is_empty() {
        "inactive"
    } else {
        &i.swarm.local_node_state
    };
    o.push_str(&format!(" Swarm: {swarm}\n"));
    if let Some(rts) = &i.runtimes {
        let names: Vec<&str> = rts.keys().map(String::as_str).collect();
        o.push_str(&format!(" Runtimes: {}\n", names.join(" ")));
    }
    o.push_str(&format!(" Default Runtime: {}\n", i.default_runtime));
    o.push_str(&format!(" Init Binary: {}\n", i.init_binary));
    o.push_str(&format!(
        " containerd version: {}\n",
        i.containerd_commit.id
    ));
    o.push_str(&format!(" runc version: {}\n", i.runc_commit.id));
    o.push_str(&format!(" init version: {}\n", i.init_commit.id));
    if let Some(so) = i.security_options.as_ref().filter(|s| !s.is_empty()) {
        o.push_str(" Security Options:\n");
        for s in so {
            o.push_str(&security_option_lines(s));
        }
    }
    o.push_str(&format!(" Kernel Version: {}\n", i.kernel_version));
    o.push_str(&format!(" Operating System: {}\n", i.operating_system));
    o.push_str(&format!(" OSType: {}\n", i.os_type));
    o.push_str(&format!(" Architecture: {}\n", i.architecture));
    o.push_str(&format!(" CPUs: {}\n", i.ncpu));
    o.push_str(&format!(
        " Total Memory: {}\n",
        bytes_size(i.mem_total as f64)
    ));
    o.push_str(&format!(" Name: {}\n", i.name));
    o.push_str(&format!(" ID: {}\n", i.id));
    o.push_str(&format!(" Docker Root Dir: {}\n", i.docker_root_dir));
    o.push_str(&format!(" Debug Mode: {}\n", i.debug));
    if !i.http_proxy.is_empty() {
        o.push_str(&format!(" HTTP Proxy: {}\n", i.http_proxy));
    }
    if !i.https_proxy.is_empty() {
        o.push_str(&format!(" HTTPS Proxy: {}\n", i.https_proxy));
    }
    if !i.no_proxy.is_empty() {
        o.push_str(&format!(" No Proxy: {}\n", i.no_proxy));
    }
    if let Some(l) = i.labels.as_ref().filter(|l| !l.is_empty()) {
        o.push_str(" Labels:\n");
        for x in l {
            o.push_str(&format!("  {x}\n"));
        }
    }
    o.push_str(&format!(" Experimental: {}\n", i.experimental_build));
    if let Some(rc) = &i.registry_config {
        let mut insecure: Vec<String> = rc
            .index_configs
            .iter()
            .flatten()
            .filter(|(_, v)| !v.secure)
            .map(|(k, _)| k.clone())
            .collect();
        insecure.extend(rc.insecure_registry_cidrs.clone().unwrap_or_default());
        if !insecure.is_empty() {
            o.push_str(" Insecure Registries:\n");
            for x in insecure {
                o.push_str(&format!("  {x}\n"));
            }
        }
        if let Some(m) = rc.mirrors.as_ref().filter(|m| !m.is_empty()) {
            o.push_str(" Registry Mirrors:\n");
            for x in m {
                o.push_str(&format!("  {x}\n"));
            }
        }
    }
    o.push_str(&format!(
        " Live Restore Enabled: {}\n",
        i.live_restore_enabled
    ));
    if !i.product_license.is_empty() {
        o.push_str(&format!(" Product License: {}\n", i.product_license));
    }
    o
}

pub async fn info(c: &Client, a: InfoArgs) -> Result<i32, CliError> {
    let info = c.info().await;
    if let Some(f) = a.format {
        let tmpl = Template::parse(&f)?;
        let i = info?;
        let v = Value::from_serialize(&i)?;
        println!("{}", tmpl.render(&v)?);
        return Ok(0);
    }
    let mut out = String::from("Client:\n");
    out.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    out.push_str(" Context:    default\n");
    out.push_str(" Debug Mode: false\n\nServer:\n");
    match info {
        Ok(i) => {
            out.push_str(&render_info(&i));
            print!("{out}");
            if let Some(w) = i.warnings.as_ref().filter(|w| !w.is_empty()) {
                eprintln!();
                for x in w {
                    eprintln!("{x}");
                }
            }
            Ok(0)
        }
        Err(e) => {
            print!("{out}");
            // docker prints the connection error inside the Server section and exits 1.
            println!("ERROR: {e}");
            println!("errors pretty printing info");
            Err(CliError::Exit(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_golden_start() {
        let i = SystemInfo {
            containers: 3,
            containers_running: 1,
            containers_stopped: 2,
            images: 5,
            server_version: "0.1.0".into(),
            driver: "overlay2".into(),
            driver_status: Some(vec![["Backing Filesystem".into(), "extfs".into()]]),
            mem_total: 16_642_998_272,
            security_options: Some(vec![
                "name=seccomp,profile=builtin".into(),
                "name=cgroupns".into(),
            ]),
            ..Default::default()
        };
        let s = render_info(&i);
        assert!(s.starts_with(
            " Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 5\n Server Version: 0.1.0\n Storage Driver: overlay2\n  Backing Filesystem: extfs\n"
        ));
        assert!(s.contains(" Security Options:\n  seccomp\n   Profile: builtin\n  cgroupns\n"));
        assert!(s.contains(" Total Memory: 15.5GiB\n"));
    }
}
