//! Pod networking through CNI plugins, as the CNI specification says: the network
//! configuration is the first file of the configuration directory (`.conflist`, `.conf` or
//! `.json`, by name), each plugin is an executable of that name found in the plugin
//! directories, run with the `CNI_*` variables and its configuration on stdin (with `name`,
//! `cniVersion`, the previous plugin's result and the `runtimeConfig` of the capabilities it
//! declares); ADD runs the list in order, DEL in reverse with the cached result.
//! The plugins do the work (bridge, veth, IPAM, port mappings); this module only drives them.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{NetError, Result};

/// Where the configuration and the plugins are.
#[derive(Clone, Debug)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// A loaded network configuration list.
#[derive(Clone, Debug)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from.
    pub source: PathBuf,
}

/// One port mapping, as the `portMappings` capability takes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "hostIP")]
    pub host_ip: String,
}

/// What the runtime tells the plugins about one attachment.
#[derive(Clone, Debug, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs (Kubernetes' `K8S_POD_NAME`, ...).
    pub args: Vec<(String, String)>,
    pub port_mappings: Vec<PortMapping>,
}

fn err(msg: impl Into<String>) -> NetError {
    NetError::Cni(msg.into())
}

/// Reads the network configuration: the first valid file of `dir` in name order.
pub fn load(dir: &Path) -> Result<NetworkList> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("no network config found in {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    let mut last = None;
    for f in files {
        match load_file(&f) {
            Ok(l) => return Ok(l),
            Err(e) => {
                tracing::warn!("cni: skipping {}: {e}", f.display());
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| err(format!("no network config found in {}", dir.display()))))
}

fn load_file(path: &Path) -> Result<NetworkList> {
    let data = std::fs::read(path).map_err(|e| err(format!("read {}: {e}", path.display())))?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let Value::Object(mut top) = v else {
        return Err(err("not a JSON object"));
    };
    let name = top
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(err("network has no name"));
    }
    let cni_version = top
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.4.0")
        .to_string();
    let is_list = path.extension().and_then(|x| x.to_str()) == Some("conflist")
        || top.contains_key("plugins");
    let plugins: Vec<Map<String, Value>> = if is_list {
        match top.remove("plugins") {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|p| match p {
                    Value::Object(m) => Ok(m),
                    _ => Err(err("a plugin is not a JSON object")),
                })
                .collect::<Result<_>>()?,
            _ => return Err(err("a network list needs \"plugins\"")),
        }
    } else {
        vec![top]
    };
    if plugins.is_empty() {
        return Err(err("a network list needs at least one plugin"));
    }
    for p in &plugins {
        if p.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            return Err(err("a plugin has no \"type\""));
        }
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        source: path.to_path_buf(),
    })
}

/// The plugin executable `typ` in the first directory that has it.
fn find_plugin(typ: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    if typ.contains('/') {
        return Err(err(format!("invalid plugin type {typ:?}")));
    }
    dirs.iter()
        .map(|d| d.join(typ))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(format!(
                "failed to find plugin {typ:?} in path {:?}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
            ))
        })
}

/// The stdin of one plugin: its configuration, the list's name and version, the previous
/// result, and the runtime configuration of the capabilities it declares.
fn plugin_input(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    att: &Attachment,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), json!(list.name));
    conf.insert("cniVersion".into(), json!(list.cni_version));
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    let wants = |cap: &str| {
        plugin
            .get("capabilities")
            .and_then(|c| c.get(cap))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    conf.remove("capabilities");
    let mut rc = Map::new();
    if wants("portMappings") && !att.port_mappings.is_empty() {
        rc.insert("portMappings".into(), json!(att.port_mappings));
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    Value::Object(conf)
}

fn exec_plugin(
    path: &Path,
    command: &str,
    input: &Value,
    att: &Attachment,
    bin_dirs: &[PathBuf],
) -> Result<Option<Value>> {
    let cni_path = std::env::join_paths(bin_dirs).map_err(|e| err(e.to_string()))?;
    let mut args = vec!["IgnoreUnknown=1".to_string()];
    args.extend(att.args.iter().map(|(k, v)| format!("{k}={v}")));
    let mut child = Command::new(path)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", cni_path)
        // The plugins run iptables and ip: a sane PATH.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("run {}: {e}", path.display())))?;
    let body = serde_json::to_vec(input).map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait {}: {e}", path.display())))?;
    let typ = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    if !out.status.success() {
        // The spec's error object: {"code", "msg", "details"}.
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let msg = v
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        let details = v.get("details").and_then(Value::as_str).unwrap_or("");
        let mut m = format!("plugin type={typ:?} failed ({command}): {msg}");
        if !details.is_empty() {
            m.push_str(&format!(": {details}"));
        }
        return Err(err(m));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|e| err(format!("plugin type={typ:?}: invalid result: {e}")))
}

/// CNI ADD over the list; returns the final result.
pub fn add(list: &NetworkList, att: &Attachment, bin_dirs: &[PathBuf]) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let typ = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        let path = find_plugin(typ, bin_dirs)?;
        let input = plugin_input(list, plugin, prev.as_ref(), att);
        match exec_plugin(&path, "ADD", &input, att, bin_dirs) {
            Ok(Some(r)) => prev = Some(r),
            Ok(None) => {}
            Err(e) => {
                // Undo what the plugins before this one did.
                let partial = NetworkList {
                    plugins: list.plugins[..=i].to_vec(),
                    ..list.clone()
                };
                let _ = del(&partial, att, prev.as_ref(), bin_dirs);
                return Err(e);
            }
        }
    }
    prev.ok_or_else(|| err("the network's plugins returned no result"))
}

/// CNI DEL over the list, in reverse order. Every plugin runs even if one fails; the first
/// error is returned.
pub fn del(
    list: &NetworkList,
    att: &Attachment,
    prev: Option<&Value>,
    bin_dirs: &[PathBuf],
) -> Result<()> {
    let mut first = None;
    for plugin in list.plugins.iter().rev() {
        let typ = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        let res = find_plugin(typ, bin_dirs).and_then(|path| {
            let input = plugin_input(list, plugin, prev, att);
            exec_plugin(&path, "DEL", &input, att, bin_dirs).map(|_| ())
        });
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The addresses a result gives the interface `ifname` (all of them when none is named),
/// IPv4 first.
pub fn result_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let ifaces = result
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<IpAddr> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| match ip.get("interface").and_then(Value::as_u64) {
            Some(i) => ifaces
                .get(i as usize)
                .and_then(|x| x.get("name"))
                .and_then(Value::as_str)
                .is_none_or(|n| n == ifname),
            None => true,
        })
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    out.sort_by_key(|ip| !ip.is_ipv4());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att() -> Attachment {
        Attachment {
            container_id: "abc".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "p".into())],
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        }
    }

    #[test]
    fn loads_the_first_valid_file_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("05-bad.conflist"), "{").unwrap();
        std::fs::write(
            d.path().join("10-net.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("20-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("99-ignored.txt"), "x").unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!(l.name, "pods");
        assert_eq!(l.plugins.len(), 2);
        std::fs::remove_file(d.path().join("10-net.conflist")).unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!((l.name.as_str(), l.plugins.len()), ("one", 1));
        assert!(load(&d.path().join("none")).is_err());
    }

    #[test]
    fn plugin_input_carries_name_version_prev_result_and_capabilities() {
        let list = NetworkList {
            name: "pods".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![],
            source: PathBuf::new(),
        };
        let pm: Map<String, Value> = serde_json::from_value(
            json!({"type":"portmap","capabilities":{"portMappings":true},"snat":true}),
        )
        .unwrap();
        let prev = json!({"ips":[]});
        let v = plugin_input(&list, &pm, Some(&prev), &att());
        assert_eq!(v["name"], "pods");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["prevResult"], prev);
        assert_eq!(
            v["runtimeConfig"]["portMappings"],
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"}])
        );
        assert!(v.get("capabilities").is_none());
        let br: Map<String, Value> = serde_json::from_value(json!({"type":"bridge"})).unwrap();
        assert!(plugin_input(&list, &br, None, &att())
            .get("runtimeConfig")
            .is_none());
    }

    #[test]
    fn result_addresses_of_the_pod_interface_v4_first() {
        let r = json!({
            "interfaces": [{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/x"}],
            "ips": [
                {"interface":2,"address":"fd00::5/64"},
                {"interface":2,"address":"10.88.0.5/16","gateway":"10.88.0.1"},
                {"interface":0,"address":"10.88.0.1/16"}
            ]
        });
        assert_eq!(
            result_ips(&r, "eth0"),
            vec![
                "10.88.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        // 0.3/0.4 results without interface indexes.
        let r = json!({"ips":[{"version":"4","address":"10.1.0.2/24"}]});
        assert_eq!(
            result_ips(&r, "eth0"),
            vec!["10.1.0.2".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn missing_plugin_is_a_clear_error() {
        let e = find_plugin("nosuch", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(
            e.to_string().contains("failed to find plugin \"nosuch\""),
            "{e}"
        );
        assert!(find_plugin("../x", &[]).is_err());
    }
}
