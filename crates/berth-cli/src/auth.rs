//! `login`/`logout` and the credentials in the docker CLI's `config.json`
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//! `{"auths": {"host:port": {"auth": base64("user:pass")}}}`, Docker Hub under
//! `https://index.docker.io/v1/`. Pull and push send them as `X-Registry-Auth`.

use std::io::Read;
use std::path::PathBuf;

use base64::Engine;
use berth_api::Client;
use serde_json::{json, Map, Value};

use crate::cli::{LoginArgs, LogoutArgs};
use crate::error::CliError;

/// Docker Hub's key in `config.json`.
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";

fn config_dir() -> Result<PathBuf, CliError> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".docker")),
        None => Err(CliError::msg(
            "cannot find the docker config: $HOME is not set",
        )),
    }
}

fn config_path() -> Result<PathBuf, CliError> {
    Ok(config_dir()?.join("config.json"))
}

/// The whole file, other keys kept as they are; a missing file is `{}`.
fn load_config() -> Result<Map<String, Value>, CliError> {
    let p = config_path()?;
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(CliError::msg(format!(
                "loading config file: {}: invalid JSON",
                p.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(CliError::msg(format!(
            "loading config file: {}: {e}",
            p.display()
        ))),
    }
}

/// Writes `config.json` atomically (temp file, fsync, rename), mode 0600.
fn save_config(cfg: &Map<String, Value>) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = config_dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join("config.json");
    let mut data = serde_json::to_vec_pretty(&Value::Object(cfg.clone()))?;
    data.push(b'\n');
    let res = berth_fs::atomic::write_atomic_mode(&path, &data, 0o600);
    if let Err(e) = res {
        return Err(CliError::msg(format!(
            "error saving credentials: {}: {e}",
            path.display()
        )));
    }
    Ok(())
}

/// The `config.json` key for a server as given to `login`/`logout`: Docker Hub's names map to
/// [`INDEX_SERVER`]; other servers are stored by `host[:port]`.
pub fn server_key(server: &str) -> String {
    let s = server.trim();
    let host = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => INDEX_SERVER.to_string(),
        h => h.to_string(),
    }
}

/// The registry part of an image reference, as a `config.json` key.
pub fn registry_of_image(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            server_key(first)
        }
        _ => INDEX_SERVER.to_string(),
    }
}

/// Stored `(username, password)` for a key (also tried with an `http(s)://` prefix).
fn stored(cfg: &Map<String, Value>, key: &str) -> Option<(String, String)> {
    let auths = cfg.get("auths")?.as_object()?;
    let candidates = [
        key.to_string(),
        format!("https://{key}"),
        format!("http://{key}"),
    ];
    let entry = candidates.iter().find_map(|k| auths.get(k))?;
    let raw = entry.get("auth")?.as_str()?;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()?;
    let dec = String::from_utf8(dec).ok()?;
    let (u, p) = dec.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The `X-Registry-Auth` value for pulling or pushing `image`, from the stored credentials.
/// No credentials (or an unreadable config) means no header: an anonymous request.
pub fn registry_auth_for(image: &str) -> Option<String> {
    let key = registry_of_image(image);
    let cfg = load_config().ok()?;
    let (username, password) = stored(&cfg, &key)?;
    let body = json!({"username": username, "password": password, "serveraddress": key});
    Some(base64::engine::general_purpose::URL_SAFE.encode(body.to_string()))
}

pub async fn login(c: &Client, a: LoginArgs) -> Result<i32, CliError> {
    if a.password.is_some() && a.password_stdin {
        return Err(CliError::Usage(
            "--password and --password-stdin are mutually exclusive".into(),
        ));
    }
    let server = a.server.clone().unwrap_or_else(|| INDEX_SERVER.to_string());
    let key = server_key(&server);
    let password = if a.password_stdin {
        if a.username.is_none() {
            return Err(CliError::Usage(
                "Must provide --username with --password-stdin".into(),
            ));
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password.clone() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        return Err(CliError::msg(
            "Error: Cannot perform an interactive login from a non TTY device",
        ));
    };
    let Some(username) = a.username.clone().filter(|u| !u.is_empty()) else {
        return Err(CliError::msg("Error: Non-null Username Required"));
    };
    if password.is_empty() {
        return Err(CliError::msg("Error: Password Required"));
    }
    let body = json!({"username": username, "password": password, "serveraddress": key});
    let resp = c.auth(&body).await?;
    let mut cfg = load_config()?;
    let auths = cfg
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Some(m) = auths.as_object_mut() {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        m.insert(key, json!({ "auth": encoded }));
    }
    save_config(&cfg)?;
    let status = resp
        .get("Status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("Login Succeeded");
    println!("{status}");
    Ok(0)
}

pub async fn logout(a: LogoutArgs) -> Result<i32, CliError> {
    let server = a.server.clone().unwrap_or_else(|| INDEX_SERVER.to_string());
    let key = server_key(&server);
    println!("Removing login credentials for {key}");
    let mut cfg = load_config()?;
    let mut changed = false;
    if let Some(auths) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        for k in [
            server.clone(),
            key.clone(),
            format!("https://{key}"),
            format!("http://{key}"),
        ] {
            changed |= auths.remove(&k).is_some();
        }
    }
    if changed {
        save_config(&cfg)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
        assert_eq!(server_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(server_key("docker.io"), INDEX_SERVER);
        assert_eq!(server_key(INDEX_SERVER), INDEX_SERVER);
        assert_eq!(registry_of_image("busybox"), INDEX_SERVER);
        assert_eq!(registry_of_image("library/busybox:1"), INDEX_SERVER);
        assert_eq!(registry_of_image("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of_image("localhost/a@sha256:ab"), "localhost");
        assert_eq!(registry_of_image("ghcr.io/o/r"), "ghcr.io");
    }

    #[test]
    fn stored_credentials() {
        let mut cfg = Map::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("bob:p:w");
        cfg.insert("auths".into(), json!({"h:1": {"auth": enc}}));
        assert_eq!(stored(&cfg, "h:1"), Some(("bob".into(), "p:w".into())));
        assert_eq!(stored(&cfg, "h:2"), None);
    }
}
