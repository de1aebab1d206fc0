//! Per-registry hosts in containerd's `hosts.toml` format (`<dir>/<registry host>/hosts.toml`,
//! `<dir>/_default/hosts.toml` for the rest), so any registry can have mirrors — Docker's
//! `registry-mirrors` only cover Docker Hub. Pulls try the listed hosts in file order, then the
//! `server` (the registry itself when the file names none).
//!
//! ```toml
//! server = "https://registry.k8s.io"
//!
//! [host."http://127.0.0.1:5000"]
//!   capabilities = ["pull", "resolve"]
//!   skip_verify = false            # TLS: accept any certificate
//!   ca = "/etc/berth/certs.d/registry.k8s.io/ca.crt"   # or a list
//!   override_path = false          # true: the URL is the API root (ends in /v2)
//! ```
//!
//! A host without `resolve` only serves pulls by digest (it cannot be trusted with tags), as in
//! containerd; one without `pull` is not used for pulls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::RegistryError;

/// One endpoint for a registry's pulls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryHost {
    /// Scheme, host and path prefix; the client appends `/v2/...`.
    pub base: String,
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
}

impl RegistryHost {
    /// TLS settings of their own (the shared client will not do).
    pub fn custom_tls(&self) -> bool {
        self.skip_verify || !self.ca.is_empty()
    }
}

#[derive(Deserialize)]
struct File {
    server: Option<String>,
    #[serde(default)]
    host: toml::Table,
    // Options that apply to `server` itself.
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<StringOrList>,
}

#[derive(Deserialize, Default)]
struct HostSection {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<StringOrList>,
    #[serde(default)]
    override_path: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    header: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn paths(&self, file_dir: &Path) -> Vec<PathBuf> {
        let v = match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        };
        // Relative paths are relative to the hosts.toml's directory, as in containerd.
        v.into_iter().map(|p| file_dir.join(p)).collect()
    }
}

/// What a `hosts.toml` says about one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// The `[host."…"]` sections, in file order.
    pub hosts: Vec<RegistryHost>,
    /// `server`, when given: it replaces the registry's own address as the last endpoint.
    pub server: Option<RegistryHost>,
}

/// The hosts configured for `domain` under `dir`; `None` when neither
/// `<dir>/<domain>/hosts.toml` nor `<dir>/_default/hosts.toml` exists.
pub fn load(dir: &Path, domain: &str) -> Result<Option<Hosts>, RegistryError> {
    let mut path = dir.join(domain).join("hosts.toml");
    if !path.is_file() {
        path = dir.join("_default").join("hosts.toml");
        if !path.is_file() {
            return Ok(None);
        }
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RegistryError::io(format!("read {}", path.display()), e))?;
    parse(&text, path.parent().unwrap_or(dir))
        .map(Some)
        .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))
}

fn caps(list: &Option<Vec<String>>) -> Result<(bool, bool, bool), String> {
    let Some(list) = list else {
        return Ok((true, true, true));
    };
    let (mut pull, mut resolve, mut push) = (false, false, false);
    for c in list {
        match c.as_str() {
            "pull" => pull = true,
            "resolve" => resolve = true,
            "push" => push = true,
            other => return Err(format!("unknown capability {other:?}")),
        }
    }
    Ok((pull, resolve, push))
}

fn base_of(url: &str, override_path: bool) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("host {url:?} needs a scheme (http:// or https://)"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("host {url:?}: unsupported scheme {scheme:?}"));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("host {url:?} has no address"));
    }
    let url = url.trim_end_matches('/');
    if !override_path {
        return Ok(url.to_string());
    }
    // The client speaks `<base>/v2/...`: an overridden path must be such a root.
    url.strip_suffix("/v2")
        .map(str::to_string)
        .ok_or_else(|| format!("host {url:?}: override_path needs a path ending in /v2"))
}

fn parse(text: &str, file_dir: &Path) -> Result<Hosts, String> {
    let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // `toml::Table` keeps the file's order (the `preserve_order` feature).
    for (url, section) in f.host {
        let h: HostSection = section
            .try_into()
            .map_err(|e: toml::de::Error| format!("host {url:?}: {e}"))?;
        let (pull, resolve, push) = caps(&h.capabilities)?;
        out.push(RegistryHost {
            base: base_of(&url, h.override_path.unwrap_or(false))?,
            pull,
            resolve,
            push,
            skip_verify: h.skip_verify.unwrap_or(false),
            ca: h.ca.map(|c| c.paths(file_dir)).unwrap_or_default(),
        });
    }
    let (pull, resolve, push) = caps(&f.capabilities)?;
    let server = match f.server {
        Some(url) => Some(RegistryHost {
            base: base_of(&url, false)?,
            pull,
            resolve,
            push,
            skip_verify: f.skip_verify.unwrap_or(false),
            ca: f.ca.map(|c| c.paths(file_dir)).unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Hosts { hosts: out, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_in_order_then_server() {
        let t = r#"
server = "https://registry.k8s.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example/base"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["ca.crt", "/abs/other.crt"]

[host."https://x.example/custom/v2"]
  override_path = true
"#;
        let f = parse(t, Path::new("/etc/berth/certs.d/registry.k8s.io")).unwrap();
        let h = &f.hosts;
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].base, "http://127.0.0.1:5000");
        assert!(h[0].pull && h[0].resolve && !h[0].push && !h[0].custom_tls());
        assert_eq!(h[1].base, "https://mirror.example/base");
        assert!(h[1].pull && !h[1].resolve && h[1].skip_verify);
        assert_eq!(
            h[1].ca,
            vec![
                PathBuf::from("/etc/berth/certs.d/registry.k8s.io/ca.crt"),
                PathBuf::from("/abs/other.crt")
            ]
        );
        assert_eq!(h[2].base, "https://x.example/custom");
        let server = f.server.unwrap();
        assert_eq!(server.base, "https://registry.k8s.io");
        assert!(server.pull && server.resolve && server.push);
    }

    #[test]
    fn default_server_and_errors() {
        let f = parse("", Path::new("/d")).unwrap();
        assert!(f.hosts.is_empty() && f.server.is_none());
        assert!(parse("[host.\"127.0.0.1:5000\"]\n", Path::new("/d"))
            .unwrap_err()
            .contains("needs a scheme"));
        assert!(parse(
            "[host.\"http://h\"]\ncapabilities=[\"fly\"]\n",
            Path::new("/d")
        )
        .unwrap_err()
        .contains("unknown capability"));
        assert!(parse("server = 3\n", Path::new("/d")).is_err());
        assert!(parse(
            "[host.\"http://h/x\"]\noverride_path = true\n",
            Path::new("/d")
        )
        .unwrap_err()
        .contains("/v2"));
    }

    #[test]
    fn files_per_registry_and_default() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(load(tmp.path(), "registry.k8s.io").unwrap().is_none());
        std::fs::create_dir_all(tmp.path().join("_default")).unwrap();
        std::fs::write(
            tmp.path().join("_default/hosts.toml"),
            "[host.\"http://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let f = load(tmp.path(), "gcr.io").unwrap().unwrap();
        assert_eq!(f.hosts[0].base, "http://127.0.0.1:1");
        assert!(f.server.is_none());
        std::fs::create_dir_all(tmp.path().join("localhost:5000")).unwrap();
        std::fs::write(tmp.path().join("localhost:5000/hosts.toml"), "bad = [").unwrap();
        let e = load(tmp.path(), "localhost:5000").unwrap_err();
        assert!(e.to_string().contains("hosts.toml"), "{e}");
    }
}
