//! `/etc/berth/daemon.json` (`berth daemon --config-file PATH`): the keys of Docker's
//! `daemon.json` that Berth has, with dockerd's rules: an unknown key is refused, and so is a
//! key that is also given as a flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the daemon looks for its configuration when `--config-file` is not given. A missing
/// file there is no error (as with dockerd's `/etc/docker/daemon.json`).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// The keys Berth understands; each has the name dockerd gives it.
pub const KEYS: &[&str] = &[
    "api-cors-header",
    "bip",
    "bridge",
    "cni-bin-dir",
    "cni-conf-dir",
    "cri-socket",
    "data-root",
    "debug",
    "default-address-pools",
    "default-cgroupns-mode",
    "exec-opts",
    "exec-root",
    "experimental",
    "hosts",
    "insecure-registries",
    "log-level",
    "log-opts",
    "pidfile",
    "registry-config-path",
    "registry-mirrors",
    "tls",
    "tlscacert",
    "tlscert",
    "tlskey",
    "tlsverify",
];

/// The settings a daemon.json file gives; `None` where the file is silent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    pub api_cors_header: Option<String>,
    pub bip: Option<String>,
    pub bridge: Option<String>,
    pub data_root: Option<PathBuf>,
    pub debug: Option<bool>,
    /// `base=CIDR,size=N`, as the `--default-address-pool` flag takes them.
    pub default_address_pools: Option<Vec<String>>,
    /// `private` or `host`.
    pub default_cgroupns_mode: Option<String>,
    /// `KEY=VALUE` runtime options, as `--exec-opt` takes them (`native.cgroupdriver=systemd`).
    pub exec_opts: Option<Vec<String>>,
    pub exec_root: Option<PathBuf>,
    pub experimental: Option<bool>,
    pub hosts: Option<Vec<String>>,
    pub insecure_registries: Option<Vec<String>>,
    pub log_level: Option<String>,
    pub log_opts: Option<BTreeMap<String, String>>,
    pub pidfile: Option<PathBuf>,
    pub registry_mirrors: Option<Vec<String>>,
    /// `--registry-config-path`: per-registry `hosts.toml` files.
    pub registry_config_path: Option<PathBuf>,
    /// `--cri-socket`: the CRI server's socket (`unix://PATH`; empty: no CRI server).
    pub cri_socket: Option<String>,
    /// `--cni-conf-dir` and `--cni-bin-dir` (a `:`-separated list) for pod networking.
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: Option<String>,
    pub tls: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    pub tlsverify: Option<bool>,
    /// The file's top-level object, for conflict messages.
    pub raw: serde_json::Map<String, Value>,
}

/// Reads `path`. `Ok(None)` when it does not exist and `required` is false.
pub fn load(path: &Path, required: bool) -> Result<Option<FileConfig>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    parse(&text).map(Some)
}

fn strings(key: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{key}: expected a string, got {other}")),
            })
            .collect(),
        other => Err(format!("{key}: expected a list of strings, got {other}")),
    }
}

fn string(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{key}: expected a string, got {other}")),
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("{key}: expected true or false, got {other}")),
    }
}

/// Parses a daemon.json text: a JSON object of known keys.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(map) = v else {
        return Err("the configuration file must be a JSON object".into());
    };
    let mut unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(format!(
            "the following directives don't match any configuration option: {}",
            unknown.join(", ")
        ));
    }
    let mut c = FileConfig::default();
    for (k, v) in &map {
        match k.as_str() {
            "bip" => c.bip = Some(string(k, v)?),
            "bridge" => c.bridge = Some(string(k, v)?),
            "data-root" => c.data_root = Some(string(k, v)?.into()),
            "exec-root" => c.exec_root = Some(string(k, v)?.into()),
            "pidfile" => c.pidfile = Some(string(k, v)?.into()),
            "default-cgroupns-mode" => c.default_cgroupns_mode = Some(string(k, v)?),
            "exec-opts" => c.exec_opts = Some(strings(k, v)?),
            "log-level" => c.log_level = Some(string(k, v)?),
            "debug" => c.debug = Some(boolean(k, v)?),
            "experimental" => c.experimental = Some(boolean(k, v)?),
            "tls" => c.tls = Some(boolean(k, v)?),
            "tlsverify" => c.tlsverify = Some(boolean(k, v)?),
            "tlscacert" => c.tlscacert = Some(string(k, v)?.into()),
            "tlscert" => c.tlscert = Some(string(k, v)?.into()),
            "tlskey" => c.tlskey = Some(string(k, v)?.into()),
            "api-cors-header" => c.api_cors_header = Some(string(k, v)?),
            "hosts" => c.hosts = Some(strings(k, v)?),
            "insecure-registries" => c.insecure_registries = Some(strings(k, v)?),
            "registry-mirrors" => c.registry_mirrors = Some(strings(k, v)?),
            "registry-config-path" => c.registry_config_path = Some(string(k, v)?.into()),
            "cri-socket" => c.cri_socket = Some(string(k, v)?),
            "cni-conf-dir" => c.cni_conf_dir = Some(string(k, v)?.into()),
            "cni-bin-dir" => c.cni_bin_dir = Some(string(k, v)?),
            "log-opts" => {
                let Value::Object(o) = v else {
                    return Err(format!("log-opts: expected an object, got {v}"));
                };
                let mut m = BTreeMap::new();
                for (ok, ov) in o {
                    m.insert(ok.clone(), string(&format!("log-opts: {ok}"), ov)?);
                }
                c.log_opts = Some(m);
            }
            "default-address-pools" => {
                let Value::Array(a) = v else {
                    return Err(format!(
                        "default-address-pools: expected a list of {{\"base\": CIDR, \"size\": N}}, got {v}"
                    ));
                };
                let mut pools = Vec::new();
                for p in a {
                    let base = p.get("base").and_then(Value::as_str);
                    let size = p.get("size").and_then(Value::as_u64);
                    match (base, size) {
                        (Some(b), Some(s)) => pools.push(format!("base={b},size={s}")),
                        _ => {
                            return Err(format!(
                                "default-address-pools: each pool needs \"base\" (a CIDR) and \"size\" (a prefix length), got {p}"
                            ))
                        }
                    }
                }
                c.default_address_pools = Some(pools);
            }
            _ => {}
        }
    }
    c.raw = map;
    Ok(c)
}

/// A value as Go's `%v` prints it (dockerd's conflict messages): `[a b]`, `map[k:v]`.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => {
            let mut kv: Vec<(&String, &Value)> = o.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                kv.iter()
                    .map(|(k, v)| format!("{k}:{}", go_format(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// dockerd's refusal of keys set both ways. `flags` are the (file key, flag value as printed)
/// of every flag given on the command line.
pub fn conflicts(file: &FileConfig, flags: &[(&str, String)]) -> Result<(), String> {
    let found: Vec<String> = flags
        .iter()
        .filter_map(|(key, flag_value)| {
            file.raw.get(*key).map(|fv| {
                format!(
                    "{key}: (from flag: {flag_value}, from file: {})",
                    go_format(fv)
                )
            })
        })
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the following directives are specified both as a flag and in the configuration file: {}",
            found.join(", ")
        ))
    }
}

/// `--log-opt`/`log-opts` for the json-file driver: max-size and max-file, checked as Docker
/// checks them.
pub fn validate_log_opts(opts: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in opts {
        match k.as_str() {
            "max-size" => {
                let ok = v
                    .trim()
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse::<f64>()
                    .is_ok_and(|n| n >= 0.0);
                if !ok {
                    return Err(format!("invalid size: '{v}'"));
                }
            }
            "max-file" => match v.parse::<i64>() {
                Ok(n) if n >= 1 => {}
                Ok(_) => return Err("max-file cannot be less than 1".into()),
                Err(_) => return Err(format!("invalid value for max-file: {v}")),
            },
            other => {
                return Err(format!(
                    "unknown log opt '{other}' for json-file log driver"
                ))
            }
        }
    }
    Ok(())
}

/// The unix socket paths clients connect to by name (`-H unix://`, an explicit `--cri-socket`)
/// must fit a socket address: a client cannot reach a longer one, so it is refused at startup
/// (and by `--validate`) rather than failing later. Paths the daemon derives itself (the
/// default CRI socket under the exec-root, shim sockets) may be of any length.
pub fn validate_socket_paths(hosts: &[String], cri_socket: Option<&str>) -> Result<(), String> {
    let too_long = |what: &str, p: &str| {
        Err(format!(
            "{what} unix://{p}: the path is {} bytes, more than a unix socket address holds \
             ({} bytes); choose a shorter path",
            p.len(),
            berth_fs::sock::SUN_PATH_MAX
        ))
    };
    for h in hosts {
        if let Some(p) = h.strip_prefix("unix://") {
            if !berth_fs::sock::fits(Path::new(p)) {
                return too_long("-H", p);
            }
        }
    }
    if let Some(v) = cri_socket {
        let p = v.trim();
        let p = p.strip_prefix("unix://").unwrap_or(p);
        if !berth_fs::sock::fits(Path::new(p)) {
            return too_long("--cri-socket", p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_clients_connect_to_must_fit() {
        let long = format!("unix:///{}/b.sock", "x".repeat(110));
        let ok = vec![
            "unix:///run/berth/berth.sock".to_string(),
            "tcp://0:2375".into(),
        ];
        assert!(validate_socket_paths(&ok, Some("unix:///run/b/cri.sock")).is_ok());
        assert!(validate_socket_paths(&ok, None).is_ok());
        let e = validate_socket_paths(std::slice::from_ref(&long), None).unwrap_err();
        assert!(e.starts_with("-H unix:///xxx"), "{e}");
        assert!(
            e.contains("more than a unix socket address holds (107 bytes)"),
            "{e}"
        );
        let e = validate_socket_paths(&ok, Some(&long)).unwrap_err();
        assert!(e.starts_with("--cri-socket"), "{e}");
        // 107 bytes fit, 108 do not.
        let p107 = format!("unix:///{}", "y".repeat(106));
        assert!(validate_socket_paths(&[p107], None).is_ok());
        let p108 = format!("unix:///{}", "y".repeat(107));
        assert!(validate_socket_paths(&[p108], None).is_err());
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"{
              "data-root": "/srv/berth", "exec-root": "/run/b", "pidfile": "/run/b.pid",
              "hosts": ["unix:///run/b.sock"], "debug": true, "log-level": "warn",
              "registry-mirrors": ["http://127.0.0.1:5000"], "insecure-registries": ["reg:5000"],
              "log-opts": {"max-size": "10m", "max-file": "3"},
              "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}],
              "bridge": "br9", "bip": "10.98.0.1/24", "experimental": true,
              "tls": true, "tlsverify": true, "tlscacert": "/etc/b/ca.pem",
              "tlscert": "/etc/b/server-cert.pem", "tlskey": "/etc/b/server-key.pem",
              "api-cors-header": "http://ui.example",
              "exec-opts": ["native.cgroupdriver=systemd"], "default-cgroupns-mode": "host",
              "registry-config-path": "/etc/b/certs.d", "cri-socket": "unix:///run/b/cri.sock",
              "cni-conf-dir": "/etc/b/cni", "cni-bin-dir": "/opt/cni/bin:/usr/lib/cni"
            }"#,
        )
        .expect("parse");
        assert_eq!(c.data_root, Some("/srv/berth".into()));
        assert_eq!(c.hosts, Some(vec!["unix:///run/b.sock".to_string()]));
        assert_eq!(c.debug, Some(true));
        assert_eq!(
            c.default_address_pools,
            Some(vec!["base=10.99.0.0/16,size=24".to_string()])
        );
        assert_eq!(
            c.log_opts.as_ref().and_then(|m| m.get("max-file")),
            Some(&"3".to_string())
        );
        assert_eq!(c.bip.as_deref(), Some("10.98.0.1/24"));
        assert_eq!(c.experimental, Some(true));
        assert_eq!(
            c.exec_opts,
            Some(vec!["native.cgroupdriver=systemd".to_string()])
        );
        assert_eq!(c.default_cgroupns_mode.as_deref(), Some("host"));
        assert_eq!(c.tlsverify, Some(true));
        assert_eq!(c.tlskey, Some("/etc/b/server-key.pem".into()));
        assert_eq!(c.api_cors_header.as_deref(), Some("http://ui.example"));
        assert_eq!(c.cri_socket.as_deref(), Some("unix:///run/b/cri.sock"));
        assert_eq!(c.cni_bin_dir.as_deref(), Some("/opt/cni/bin:/usr/lib/cni"));
        assert_eq!(c.raw.len(), KEYS.len());
    }

    #[test]
    fn unknown_keys_are_refused_with_dockerds_words() {
        let e = parse(r#"{"storage-driver": "overlay2", "data-root": "/x", "bogus": 1}"#)
            .expect_err("unknown");
        assert_eq!(
            e,
            "the following directives don't match any configuration option: bogus, storage-driver"
        );
        assert!(parse("[]").is_err());
        assert!(parse("{").is_err());
        assert!(parse(r#"{"hosts": "unix:///x"}"#).is_err());
        assert!(parse(r#"{"default-address-pools": [{"base": "10.0.0.0/8"}]}"#).is_err());
    }

    #[test]
    fn a_key_given_both_ways_is_refused() {
        let c = parse(r#"{"hosts": ["unix:///a", "unix:///b"], "log-opts": {"max-size": "1m"}}"#)
            .expect("parse");
        assert!(conflicts(&c, &[("data-root", "/x".into())]).is_ok());
        let e = conflicts(
            &c,
            &[
                ("hosts", "[fd://]".into()),
                ("log-opts", "map[max-file:2]".into()),
            ],
        )
        .expect_err("conflict");
        assert_eq!(
            e,
            "the following directives are specified both as a flag and in the configuration file: \
             hosts: (from flag: [fd://], from file: [unix:///a unix:///b]), \
             log-opts: (from flag: map[max-file:2], from file: map[max-size:1m])"
        );
    }

    #[test]
    fn log_opts_are_checked() {
        let m = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(validate_log_opts(&m("max-size", "10m")).is_ok());
        assert!(validate_log_opts(&m("max-file", "2")).is_ok());
        assert!(validate_log_opts(&m("max-file", "0")).is_err());
        assert!(validate_log_opts(&m("max-size", "ten")).is_err());
        assert_eq!(
            validate_log_opts(&m("compress", "true")).expect_err("unknown"),
            "unknown log opt 'compress' for json-file log driver"
        );
    }

    #[test]
    fn a_missing_file_is_fine_unless_asked_for() {
        let p = Path::new("/nonexistent/berth/daemon.json");
        assert_eq!(load(p, false), Ok(None));
        assert!(load(p, true)
            .expect_err("required")
            .contains("No such file"));
    }
}
