//! Distribution client: pull into and push from a `berth_image::ImageStore`.
//!
//! Hand-written on reqwest (rustls, ring) rather than `oci-client`: a pull here streams each
//! layer straight into the store's extractor while it downloads, resumes a dropped blob
//! download with `Range`, tries mirrors first and reports Docker's per-layer progress; push
//! uploads in chunks with progress and cross-repository mounts. Those hooks are the whole
//! client, so the wrapper would have been the larger part.
//!
//! `pull`, `push`, `inspect_distribution` and `login` are blocking: call them from a plain
//! thread or `tokio::task::spawn_blocking` (each call drives its own small runtime).

use crate::error::{ErrorCode, RegistryError};
use crate::storage::sha256_digest;
use base64::Engine as _;
use berth_image::{ImageStore, LayerInfo, Reference};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::mpsc;

pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
const MAX_MANIFEST: usize = 8 * 1024 * 1024;
const MAX_CONFIG: usize = 64 * 1024 * 1024;
const CONCURRENT_DOWNLOADS: usize = 3;
const CONCURRENT_UPLOADS: usize = 5;
const CHUNK: usize = 8 * 1024 * 1024;

/// Credentials, as the Engine API's `X-Registry-Auth` / `POST /auth` JSON carries them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RegistryAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// `base64(user:password)`, used when username/password are empty.
    #[serde(default)]
    pub auth: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    /// A bearer token to send as is.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
}

impl RegistryAuth {
    /// Decodes an `X-Registry-Auth` header (base64url JSON; padding optional). Empty or `{}`
    /// gives `None`.
    pub fn from_header(v: &str) -> Result<Option<RegistryAuth>, RegistryError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(v))
            .map_err(|_| RegistryError::Config("invalid X-Registry-Auth header".into()))?;
        let a: RegistryAuth = serde_json::from_slice(&raw)
            .map_err(|_| RegistryError::Config("invalid X-Registry-Auth header".into()))?;
        Ok((a != RegistryAuth::default()).then_some(a))
    }

    fn basic(&self) -> Option<(String, String)> {
        if !self.username.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if !self.auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()?;
            let s = String::from_utf8(raw).ok()?;
            let (u, p) = s.split_once(':')?;
            return Some((u.to_string(), p.to_string()));
        }
        None
    }
}

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; default `linux/<host arch>`.
    pub platform: Option<String>,
    /// `host[:port]` or CIDR-less IPs reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors (`https://mirror.example` or `http://127.0.0.1:5001`), tried first.
    pub mirrors: Vec<String>,
    pub auth: Option<RegistryAuth>,
    /// Per-registry CA certificates (`<dir>/<host:port>/*.crt`); default `/etc/docker/certs.d`.
    pub certs_dir: Option<std::path::PathBuf>,
    /// Per-registry hosts (mirrors) in containerd's format, `<dir>/<host>/hosts.toml`
    /// (`crate::hosts`); none when unset.
    pub hosts_dir: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    pub insecure_registries: Vec<String>,
    pub auth: Option<RegistryAuth>,
    /// As [`PullOptions::certs_dir`].
    pub certs_dir: Option<std::path::PathBuf>,
}

/// One progress event, as Docker's JSON message stream carries it
/// (`{"status","id","progressDetail":{"current","total"},"aux"}`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Progress {
    /// Short layer id (12 hex), or the tag on the "Pulling from" line; `None` on summary lines.
    pub id: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
    /// Push result `{"Tag","Digest","Size"}` (Docker's aux message).
    pub aux: Option<serde_json::Value>,
    /// A message about `id` rather than a step of it ("Pulling from"): Docker sends it without
    /// `progressDetail`, and a terminal prints it as a line of its own instead of updating one.
    pub message: bool,
}

impl Progress {
    /// The Engine API's JSON message (`POST /images/create`, `/images/{name}/push` streams):
    /// `{"status","id","progressDetail":{"current","total"}}` or `{"progressDetail":{},"aux":{..}}`.
    pub fn to_json_message(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(aux) = &self.aux {
            m.insert("progressDetail".into(), serde_json::json!({}));
            m.insert("aux".into(), aux.clone());
            return serde_json::Value::Object(m);
        }
        m.insert("status".into(), self.status.clone().into());
        if let (Some(c), Some(t)) = (self.current, self.total) {
            m.insert(
                "progressDetail".into(),
                serde_json::json!({"current": c, "total": t}),
            );
        } else if self.id.is_some() && !self.message {
            m.insert("progressDetail".into(), serde_json::json!({}));
        }
        if let Some(id) = &self.id {
            m.insert("id".into(), id.clone().into());
        }
        serde_json::Value::Object(m)
    }

    fn line(id: Option<&str>, status: impl Into<String>) -> Progress {
        Progress {
            id: id.map(str::to_string),
            status: status.into(),
            ..Default::default()
        }
    }
    fn bar(id: &str, status: &str, current: u64, total: u64) -> Progress {
        Progress {
            id: Some(id.to_string()),
            status: status.to_string(),
            current: Some(current),
            total: Some(total),
            aux: None,
            message: false,
        }
    }
}

/// `GET /distribution/{name}/json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DistributionInspect {
    #[serde(rename = "Descriptor")]
    pub descriptor: Descriptor,
    #[serde(rename = "Platforms")]
    pub platforms: Vec<Platform>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    schema_version: i64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct ConfigPeek {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    rootfs: RootFsPeek,
}

#[derive(Deserialize, Default)]
struct RootFsPeek {
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn short(d: &str) -> String {
    d.strip_prefix("sha256:")
        .unwrap_or(d)
        .chars()
        .take(12)
        .collect()
}

fn parse_ref(s: &str) -> Result<Reference, RegistryError> {
    Reference::parse(s).map_err(|e| RegistryError::InvalidReference(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Endpoints and sessions

fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => domain,
    }
}

/// Plain HTTP for loopback and the insecure list; TLS for everything else.
pub fn scheme_for(domain: &str, insecure: &[String]) -> &'static str {
    let host = host_of(domain);
    let loopback = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    let listed = insecure.iter().any(|i| {
        let i = i
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        i == domain || i == host
    });
    if loopback || listed {
        "http"
    } else {
        "https"
    }
}

/// Base URLs to try, in order, for a repository on `domain`.
fn endpoints(domain: &str, insecure: &[String], mirrors: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if domain == DOCKER_HUB {
        for m in mirrors {
            let m = m.trim_end_matches('/');
            if m.starts_with("http://") || m.starts_with("https://") {
                out.push(m.to_string());
            } else {
                out.extend(bases_for(m, insecure));
            }
        }
        out.push(format!("https://{DOCKER_HUB_REGISTRY}"));
    } else {
        out.extend(bases_for(domain, insecure));
    }
    out
}

/// A base URL to pull from, with the client it needs when its TLS settings are its own.
struct Endpoint {
    base: String,
    http: Option<reqwest::Client>,
}

/// The endpoints of a pull, in order: the registry's `hosts.toml` hosts (those that may serve
/// it: `pull`, and `resolve` unless the reference is a digest), Docker Hub's mirrors, then the
/// file's `server` or the registry itself.
fn pull_endpoints(r: &Reference, opts: &PullOptions) -> Result<Vec<Endpoint>, RegistryError> {
    let plain = |base: String| Endpoint { base, http: None };
    let defaults = || {
        endpoints(&r.domain, &opts.insecure_registries, &opts.mirrors)
            .into_iter()
            .map(plain)
            .collect::<Vec<_>>()
    };
    let Some(dir) = &opts.hosts_dir else {
        return Ok(defaults());
    };
    let Some(file) = crate::hosts::load(dir, &r.domain)? else {
        return Ok(defaults());
    };
    let by_digest = r.digest.is_some() && r.tag.is_none();
    let usable = |h: &crate::hosts::RegistryHost| h.pull && (h.resolve || by_digest);
    let mut out = Vec::new();
    for h in file.hosts.iter().filter(|h| usable(h)) {
        out.push(host_endpoint(h)?);
    }
    match &file.server {
        Some(server) => {
            if r.domain == DOCKER_HUB {
                out.extend(
                    endpoints(&r.domain, &opts.insecure_registries, &opts.mirrors)
                        .into_iter()
                        .filter(|b| !b.ends_with(DOCKER_HUB_REGISTRY))
                        .map(plain),
                );
            }
            if usable(server) {
                out.push(host_endpoint(server)?);
            }
        }
        None => out.extend(defaults()),
    }
    Ok(out)
}

fn host_endpoint(h: &crate::hosts::RegistryHost) -> Result<Endpoint, RegistryError> {
    if !h.custom_tls() {
        return Ok(Endpoint {
            base: h.base.clone(),
            http: None,
        });
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(h.skip_verify);
    for p in &h.ca {
        let pem =
            std::fs::read(p).map_err(|e| RegistryError::io(format!("read {}", p.display()), e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| RegistryError::Config(format!("{}: {e}", p.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let http = b
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::Http(format!("http client: {e}")))?;
    Ok(Endpoint {
        base: h.base.clone(),
        http: Some(http),
    })
}

/// Like Docker: TLS first; for loopback and insecure registries plain HTTP as the fallback.
fn bases_for(domain: &str, insecure: &[String]) -> Vec<String> {
    match scheme_for(domain, insecure) {
        "http" => vec![format!("https://{domain}"), format!("http://{domain}")],
        _ => vec![format!("https://{domain}")],
    }
}

/// Keeps the most telling error of several endpoint attempts: a registry's answer beats a
/// failed connection to a fallback address.
fn keep_error(slot: &mut Option<RegistryError>, e: RegistryError) {
    if slot.is_none() || !matches!(e, RegistryError::Http(_)) {
        *slot = Some(e);
    }
}

/// Docker's per-registry CA directory: `<dir>/<host[:port]>/*.crt` are trusted for that host.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

fn http_client(
    hosts: &[&str],
    certs_dir: Option<&std::path::Path>,
) -> Result<reqwest::Client, RegistryError> {
    let dir = certs_dir.unwrap_or(std::path::Path::new(DEFAULT_CERTS_DIR));
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for h in hosts {
        let d = dir.join(h);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("crt") {
                continue;
            }
            let pem = std::fs::read(&p)
                .map_err(|e| RegistryError::io(format!("read {}", p.display()), e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Config(format!("{}: {e}", p.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
    }
    b.connect_timeout(std::time::Duration::from_secs(30))
        // A stalled transfer is an error (a blob download then resumes where it stopped).
        .read_timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::Http(format!("http client: {e}")))
}

/// A client trusting the CAs configured for the registry and its mirrors.
fn pull_client(domain: &str, opts: &PullOptions) -> Result<reqwest::Client, RegistryError> {
    let mut hosts: Vec<&str> = vec![domain];
    for m in &opts.mirrors {
        let h = m
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        hosts.push(h.split('/').next().unwrap_or(h));
    }
    http_client(&hosts, opts.certs_dir.as_deref())
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::io("start runtime", e))
}

fn net_err(what: &str, e: reqwest::Error) -> RegistryError {
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    RegistryError::Http(msg)
}

/// Splits `Bearer realm="..",service=".."` into the scheme and its parameters.
fn parse_challenge(v: &str) -> (String, BTreeMap<String, String>) {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some(eq) = s.find('=') else { break };
        let key = s[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        s = &s[eq + 1..];
        let val;
        if let Some(r) = s.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            val = r[..end].to_string();
            s = r.get(end + 1..).unwrap_or("");
        } else {
            let end = s.find(',').unwrap_or(s.len());
            val = s[..end].trim().to_string();
            s = &s[end..];
        }
        s = s.trim_start_matches(',').trim();
        params.insert(key, val);
    }
    (scheme.to_ascii_lowercase(), params)
}

struct Session {
    http: reqwest::Client,
    base: String,
    repo: String,
    auth: Option<RegistryAuth>,
    scopes: Vec<String>,
    authz: tokio::sync::Mutex<Option<String>>,
}

impl Session {
    async fn connect(
        http: reqwest::Client,
        base: &str,
        repo: &str,
        auth: Option<RegistryAuth>,
        scopes: Vec<String>,
    ) -> Result<Session, RegistryError> {
        let s = Session {
            http,
            base: base.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
            auth,
            scopes,
            authz: tokio::sync::Mutex::new(None),
        };
        let url = format!("{}/v2/", s.base);
        let resp = s
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let h = s.answer_challenge(resp.headers()).await?;
            *s.authz.lock().await = h;
        } else if let Some(t) = s.auth.as_ref().filter(|a| !a.registry_token.is_empty()) {
            *s.authz.lock().await = Some(format!("Bearer {}", t.registry_token));
        }
        Ok(s)
    }

    /// Computes the Authorization header for a 401's challenge.
    async fn answer_challenge(&self, headers: &HeaderMap) -> Result<Option<String>, RegistryError> {
        let Some(www) = headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let (scheme, params) = parse_challenge(www);
        let basic = self.auth.as_ref().and_then(|a| a.basic());
        match scheme.as_str() {
            "basic" => Ok(basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })),
            "bearer" => {
                if let Some(t) = self.auth.as_ref().filter(|a| !a.registry_token.is_empty()) {
                    return Ok(Some(format!("Bearer {}", t.registry_token)));
                }
                let Some(realm) = params.get("realm") else {
                    return Ok(None);
                };
                let mut req = self.http.get(realm);
                let mut q: Vec<(&str, &str)> = Vec::new();
                if let Some(svc) = params.get("service") {
                    q.push(("service", svc));
                }
                for sc in &self.scopes {
                    q.push(("scope", sc));
                }
                req = req.query(&q);
                if let Some((u, p)) = &basic {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| net_err(&format!("Get \"{realm}\""), e))?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(RegistryError::Unauthorized(format!(
                        "Get \"{}/v2/\": unauthorized: incorrect username or password",
                        self.base
                    )));
                }
                if !resp.status().is_success() {
                    return Err(RegistryError::Http(format!(
                        "Get \"{realm}\": token server answered {}",
                        resp.status()
                    )));
                }
                #[derive(Deserialize)]
                struct Tok {
                    #[serde(default)]
                    token: String,
                    #[serde(default)]
                    access_token: String,
                }
                let body = resp.bytes().await.map_err(|e| net_err("read token", e))?;
                let t: Tok = serde_json::from_slice(&body)
                    .map_err(|e| RegistryError::Http(format!("token response: {e}")))?;
                let tok = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                Ok((!tok.is_empty()).then(|| format!("Bearer {tok}")))
            }
            _ => Ok(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.repo, path)
    }

    /// Resolves a `Location` header against the registry base.
    fn location(&self, resp: &reqwest::Response) -> Result<String, RegistryError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Http("registry sent no upload location".into()))?;
        if loc.starts_with("http://") || loc.starts_with("https://") {
            Ok(loc.to_string())
        } else {
            Ok(format!("{}{}", self.base, loc))
        }
    }

    /// Sends a request (built twice at most: once more after answering a 401 challenge).
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retried = false;
        loop {
            let mut req = build(&self.http);
            if let Some(h) = self.authz.lock().await.clone() {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| net_err("request", e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                if let Some(h) = self.answer_challenge(resp.headers()).await? {
                    *self.authz.lock().await = Some(h);
                    continue;
                }
            }
            return Ok(resp);
        }
    }
}

/// Turns an error response into a `RegistryError::Distribution` (first error of the body).
async fn response_error(resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Es {
        #[serde(default)]
        errors: Vec<E>,
    }
    if let Ok(es) = serde_json::from_slice::<Es>(&body) {
        if let Some(e) = es.errors.into_iter().next() {
            let code = ErrorCode::parse(&e.code);
            let msg = if e.message.is_empty() {
                code.message().to_string()
            } else {
                e.message
            };
            return RegistryError::Distribution {
                code,
                message: format!("{}: {msg}", e.code.to_ascii_lowercase().replace('_', " ")),
                detail: e.detail,
                status,
            };
        }
    }
    let code = match status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Denied,
        404 => ErrorCode::NameUnknown,
        _ => ErrorCode::Unknown,
    };
    // A 401 without a body (a HEAD) reads as distribution's client words it.
    let message = if status == 401 {
        "unauthorized: authentication required".to_string()
    } else {
        format!(
            "received unexpected HTTP status: {}",
            StatusCode::from_u16(status)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| status.to_string())
        )
    };
    RegistryError::Distribution {
        code,
        message,
        detail: None,
        status,
    }
}

/// `busybox:latest` / `busybox@sha256:..` / `localhost:5000/x:1` → the repository part.
fn repo_part(familiar: &str) -> &str {
    let no_digest = familiar.split('@').next().unwrap_or(familiar);
    match no_digest.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => n,
        _ => no_digest,
    }
}

fn accept_all() -> String {
    [
        MEDIA_OCI_INDEX,
        MEDIA_DOCKER_LIST,
        MEDIA_OCI_MANIFEST,
        MEDIA_DOCKER_MANIFEST,
    ]
    .join(", ")
}

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| net_err("read", e))?;
        if out.len() + c.len() > limit {
            return Err(RegistryError::Http(format!(
                "response larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Whether the registry knows the session's repository (its tag list is not a 404).
async fn repository_exists(s: &Session) -> bool {
    let url = s.url("tags/list");
    match s.send(|c| c.get(&url)).await {
        Ok(resp) => resp.status() != StatusCode::NOT_FOUND,
        Err(_) => true,
    }
}

/// Fetches a manifest by tag or digest; verifies it. Returns (digest, media type, bytes).
async fn get_manifest(
    s: &Session,
    reference: &str,
    display: &str,
) -> Result<(String, String, Vec<u8>), RegistryError> {
    let url = s.url(&format!("manifests/{reference}"));
    let resp = s.send(|c| c.get(&url).header(ACCEPT, accept_all())).await?;
    if !resp.status().is_success() {
        let st = resp.status();
        let e = response_error(resp).await;
        return Err(match (st.as_u16(), &e) {
            (404, RegistryError::Distribution { message, .. }) => {
                RegistryError::NotFound(format!("manifest for {display} not found: {message}"))
            }
            // Docker answers this with 404 (docker-py: ImageNotFound).
            (401 | 403, _) => RegistryError::NotFound(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                repo_part(display)
            )),
            _ => e,
        });
    }
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let header_digest = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_limited(resp, MAX_MANIFEST).await?;
    let digest = sha256_digest(&body);
    let expected = if reference.contains(':') {
        Some(reference.to_string())
    } else {
        header_digest.filter(|d| d.starts_with("sha256:"))
    };
    if let Some(exp) = expected {
        if exp != digest {
            return Err(RegistryError::DigestMismatch(format!(
                "manifest verification failed for digest {exp}"
            )));
        }
    }
    let m: Manifest = serde_json::from_slice(&body)
        .map_err(|e| RegistryError::Unsupported(format!("invalid manifest: {e}")))?;
    let media = m
        .media_type
        .clone()
        .or(ct)
        .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string());
    Ok((digest, media, body))
}

async fn get_blob_bytes(s: &Session, digest: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let url = s.url(&format!("blobs/{digest}"));
    let resp = s.send(|c| c.get(&url)).await?;
    if !resp.status().is_success() {
        return Err(response_error(resp).await);
    }
    let body = read_limited(resp, limit).await?;
    let actual = sha256_digest(&body);
    if actual != digest {
        return Err(RegistryError::DigestMismatch(format!(
            "blob {digest} failed verification: content has digest {actual}"
        )));
    }
    Ok(body)
}

fn wanted_platform(opt: Option<&str>) -> Result<Platform, RegistryError> {
    let (os, architecture, variant) = match opt.filter(|p| !p.is_empty()) {
        Some(p) => berth_image::config::parse_platform(p).map_err(RegistryError::Config)?,
        None => (
            "linux".into(),
            berth_image::config::host_architecture().into(),
            None,
        ),
    };
    Ok(Platform {
        os,
        architecture,
        variant,
        os_version: None,
    })
}

fn platform_matches(want: &Platform, have: &Platform) -> bool {
    if want.os != have.os || want.architecture != have.architecture {
        return false;
    }
    match (&want.variant, &have.variant) {
        (Some(w), Some(h)) => w == h,
        (Some(w), None) => want.architecture == "arm64" && w == "v8",
        _ => true,
    }
}

fn is_index(media: &str, m: &Manifest) -> bool {
    media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST || m.manifests.is_some()
}

/// What a pull resolved: the digest the reference names, and the image manifest to use.
struct Resolved {
    /// Digest of what the tag points at (an index's digest for multi-platform images).
    digest: String,
    manifest: Manifest,
}

async fn resolve(
    s: &Session,
    r: &Reference,
    platform: &Platform,
) -> Result<Resolved, RegistryError> {
    let target = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (digest, media, body) = get_manifest(s, &target, &r.familiar()).await?;
    let m: Manifest = serde_json::from_slice(&body)
        .map_err(|e| RegistryError::Unsupported(format!("invalid manifest: {e}")))?;
    if m.schema_version == 1 {
        return Err(RegistryError::Unsupported(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed".into(),
        ));
    }
    if !is_index(&media, &m) {
        return Ok(Resolved {
            digest,
            manifest: m,
        });
    }
    let list = m.manifests.unwrap_or_default();
    let chosen = list
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| platform_matches(platform, p))
        })
        .ok_or_else(|| {
            let v = platform
                .variant
                .as_ref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default();
            RegistryError::NotFound(format!(
                "no matching manifest for {}/{}{v} in the manifest list entries",
                platform.os, platform.architecture
            ))
        })?;
    let (_, media2, body2) = get_manifest(s, &chosen.digest, &r.familiar()).await?;
    let m2: Manifest = serde_json::from_slice(&body2)
        .map_err(|e| RegistryError::Unsupported(format!("invalid manifest: {e}")))?;
    if is_index(&media2, &m2) {
        return Err(RegistryError::Unsupported(
            "nested manifest lists are not supported".into(),
        ));
    }
    Ok(Resolved {
        digest,
        manifest: m2,
    })
}

// ---------------------------------------------------------------------------------------------
// Pull

/// A `Read` over byte chunks sent from the download task.
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Decompresses zstd (every frame, skipping skippable ones) for the store, which takes plain
/// or gzip tars.
struct ZstdReader<R: Read> {
    src: std::io::BufReader<R>,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdReader<R> {
    fn new(r: R) -> Self {
        ZstdReader {
            src: std::io::BufReader::with_capacity(256 * 1024, r),
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use std::io::BufRead;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                    let need = buf.len() - self.dec.can_collect();
                    self.dec
                        .decode_blocks(
                            &mut self.src,
                            ruzstd::decoding::BlockDecodingStrategy::UptoBytes(need),
                        )
                        .map_err(std::io::Error::other)?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    std::io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut std::io::sink(),
                    )?;
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}

fn is_zstd(desc: &Descriptor) -> bool {
    desc.media_type.ends_with("+zstd") || desc.media_type.ends_with(".zstd")
}

/// Downloads a blob into `tx`, verifying its digest; resumes with `Range` after a dropped
/// connection (up to 3 times).
async fn stream_blob(
    s: &Session,
    desc: &Descriptor,
    id: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    ptx: &mpsc::Sender<Progress>,
) -> Result<(), RegistryError> {
    let url = s.url(&format!("blobs/{}", desc.digest));
    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut attempts = 0;
    let mut last_report = std::time::Instant::now();
    let gone = || RegistryError::Http("layer extraction stopped".into());
    'outer: loop {
        let resp = s
            .send(|c| {
                let r = c.get(&url);
                if offset > 0 {
                    r.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(RegistryError::Http(e)) if attempts < 3 => {
                attempts += 1;
                tracing::debug!("retrying {} at {offset}: {e}", desc.digest);
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(RegistryError::Http(format!(
                "registry can not resume blob {} (status {})",
                desc.digest,
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(response_error(resp).await);
        }
        let mut stream = resp.bytes_stream();
        while let Some(c) = stream.next().await {
            match c {
                Ok(c) => {
                    hasher.update(&c);
                    offset += c.len() as u64;
                    if desc.size > 0 && offset > desc.size {
                        return Err(RegistryError::DigestMismatch(format!(
                            "blob {} is larger than its descriptor says ({})",
                            desc.digest, desc.size
                        )));
                    }
                    tx.send(Ok(c)).await.map_err(|_| gone())?;
                    if last_report.elapsed() > std::time::Duration::from_millis(100) {
                        last_report = std::time::Instant::now();
                        let _ = ptx.send(Progress::bar(id, "Downloading", offset, desc.size));
                    }
                }
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    tracing::debug!("blob {} dropped at {offset}: {e}", desc.digest);
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
                    continue 'outer;
                }
                Err(e) => return Err(net_err(&format!("download {}", desc.digest), e)),
            }
        }
        break;
    }
    let _ = ptx.send(Progress::bar(id, "Downloading", offset, desc.size));
    let _ = ptx.send(Progress::line(Some(id), "Verifying Checksum"));
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest {
        let msg = format!(
            "filesystem layer verification failed for digest {}",
            desc.digest
        );
        let _ = tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                msg.clone(),
            )))
            .await;
        return Err(RegistryError::DigestMismatch(msg));
    }
    let _ = ptx.send(Progress::line(Some(id), "Download complete"));
    Ok(())
}

/// Pulls `reference` into `store`; returns the image id. Blocking (see the module doc).
///
/// An image whose config is already in the store is not downloaded again; layers some local
/// image already has, or that the store holds from an earlier (interrupted) pull, are reported
/// "Already exists" and skipped.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    opts: &PullOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<String, RegistryError> {
    let r = parse_ref(reference)?;
    let (ptx, prx) = mpsc::channel::<Progress>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| pull_worker(scope, store, &r, opts, ptx));
        for p in prx {
            progress(p);
        }
        worker
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Http("pull worker panicked".into())))
    })
}

fn pull_worker<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    store: &'scope ImageStore,
    r: &Reference,
    opts: &PullOptions,
    ptx: mpsc::Sender<Progress>,
) -> Result<String, RegistryError> {
    let rt = runtime()?;
    let http = pull_client(&r.domain, opts)?;
    let platform = wanted_platform(opts.platform.as_deref())?;
    let tag_or_digest = r.tag.clone().or(r.digest.clone()).unwrap_or_default();
    let scopes = vec![format!("repository:{}:pull", r.path)];
    let mut last_err = None;
    let mut found = None;
    for ep in pull_endpoints(r, opts)? {
        let res = rt.block_on(async {
            let s = Session::connect(
                ep.http.unwrap_or_else(|| http.clone()),
                &ep.base,
                &r.path,
                opts.auth.clone(),
                scopes.clone(),
            )
            .await?;
            let resolved = match resolve(&s, r, &platform).await {
                // Docker Hub answers a pull of a repository it does not have with "pull access
                // denied" (it cannot tell a missing repository from a private one); a mirror
                // standing in for it says "manifest unknown". Clients rely on Hub's wording
                // (docker-py maps it to ImageNotFound), so a repository the mirror lacks
                // altogether gets it.
                Err(RegistryError::NotFound(m))
                    if r.domain == DOCKER_HUB && !repository_exists(&s).await =>
                {
                    Err(RegistryError::NotFound(format!(
                        "pull access denied for {}, repository does not exist or may require 'docker login': {}",
                        repo_part(&r.familiar()),
                        m.rsplit_once(" not found: ").map(|(_, c)| c).unwrap_or(&m)
                    )))
                }
                res => res,
            }?;
            Ok::<_, RegistryError>((s, resolved))
        });
        match res {
            Ok(v) => {
                found = Some(v);
                break;
            }
            Err(e) => keep_error(&mut last_err, e),
        }
    }
    let Some((session, resolved)) = found else {
        return Err(last_err.unwrap_or_else(|| RegistryError::Http("no endpoint".into())));
    };
    let _ = ptx.send(Progress {
        message: true,
        ..Progress::line(
            Some(&tag_or_digest),
            format!("Pulling from {}", r.repository_familiar_path()),
        )
    });
    let m = resolved.manifest;
    let config_desc = m
        .config
        .clone()
        .ok_or_else(|| RegistryError::Unsupported("manifest has no config".into()))?;
    let config = rt.block_on(get_blob_bytes(&session, &config_desc.digest, MAX_CONFIG))?;
    let peek: ConfigPeek = serde_json::from_slice(&config)
        .map_err(|e| RegistryError::Unsupported(format!("invalid image config: {e}")))?;
    if opts.platform.is_some() {
        let have = Platform {
            os: peek.os.clone(),
            architecture: peek.architecture.clone(),
            variant: peek.variant.clone(),
            os_version: None,
        };
        if !platform_matches(&platform, &have) {
            let v = |p: &Platform| {
                let mut s = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = &p.variant {
                    s.push('/');
                    s.push_str(v);
                }
                s
            };
            return Err(RegistryError::NotFound(format!(
                "image with reference {} was found but does not match the specified platform: wanted {}, actual: {}",
                r.familiar(),
                v(&platform),
                v(&have)
            )));
        }
    }
    if peek.rootfs.diff_ids.len() != m.layers.len() {
        return Err(RegistryError::Unsupported(format!(
            "image config has {} diff ids but the manifest {} layers",
            peek.rootfs.diff_ids.len(),
            m.layers.len()
        )));
    }
    let tags: Vec<Reference> = if r.digest.is_none() {
        vec![r.clone()]
    } else {
        Vec::new()
    };
    let display = r.familiar();
    let image_id = config_desc.digest.clone();
    let previously = store.resolve_id(&r.full()).ok();
    let have_image = store.resolve_id(&image_id).is_ok();

    if !have_image {
        let chains = berth_image::chain_ids(&peek.rootfs.diff_ids);
        let mut present: HashSet<String> = HashSet::new();
        if let Ok(images) = store.list() {
            for img in images {
                if let Ok(ls) = store.image_layers(&img.id) {
                    present.extend(ls.into_iter().map(|l| l.chain_id));
                }
            }
        }
        struct Job<'a> {
            idx: usize,
            desc: &'a Descriptor,
            id: String,
            tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        }
        let mut jobs = Vec::new();
        let mut unpackers = Vec::new();
        let mut seen = HashSet::new();
        for (i, desc) in m.layers.iter().enumerate() {
            let id = short(&desc.digest);
            if present.contains(&chains[i]) || store.has_layer(&chains[i]) {
                let _ = ptx.send(Progress::line(Some(&id), "Already exists"));
                continue;
            }
            if !seen.insert(chains[i].clone()) {
                continue;
            }
            let _ = ptx.send(Progress::line(Some(&id), "Pulling fs layer"));
            let (tx, rx) = tokio::sync::mpsc::channel(32);
            let parent = (i > 0).then(|| chains[i - 1].clone());
            let expected_diff = peek.rootfs.diff_ids[i].clone();
            let ptx2 = ptx.clone();
            let lid = id.clone();
            let size = desc.size;
            let zstd = is_zstd(desc);
            unpackers.push(scope.spawn(move || {
                let reader = ChanReader {
                    rx,
                    cur: Bytes::new(),
                };
                // Extracted as it streams in; kept only if it has the config's diff id.
                let info: LayerInfo = if zstd {
                    store.add_layer_streaming(
                        parent.as_deref(),
                        &expected_diff,
                        &mut ZstdReader::new(reader),
                    )?
                } else {
                    let mut reader = reader;
                    store.add_layer_streaming(parent.as_deref(), &expected_diff, &mut reader)?
                };
                if info.diff_id != expected_diff {
                    return Err(RegistryError::DigestMismatch(format!(
                        "layer {} has diff id {}, the image config says {expected_diff}",
                        lid, info.diff_id
                    )));
                }
                let _ = ptx2.send(Progress::bar(&lid, "Extracting", size, size));
                let _ = ptx2.send(Progress::line(Some(&lid), "Pull complete"));
                Ok::<_, RegistryError>(info)
            }));
            jobs.push(Job {
                idx: i,
                desc,
                id,
                tx,
            });
        }
        for j in jobs.iter().skip(CONCURRENT_DOWNLOADS) {
            let _ = ptx.send(Progress::line(Some(&j.id), "Waiting"));
        }
        let results: Vec<(usize, Result<(), RegistryError>)> = rt.block_on(async {
            futures_util::stream::iter(jobs.into_iter().map(|j| {
                let s = &session;
                let ptx = ptx.clone();
                async move {
                    let res = stream_blob(s, j.desc, &j.id, &j.tx, &ptx).await;
                    if let Err(e) = &res {
                        let _ = j.tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    }
                    (j.idx, res)
                }
            }))
            .buffer_unordered(CONCURRENT_DOWNLOADS)
            .collect()
            .await
        });
        // Unpack results first: a download that stopped because extraction failed reports
        // the extraction error.
        let mut first_err = None;
        for h in unpackers {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(RegistryError::Http("layer unpack panicked".into()));
                }
            }
        }
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        for (_, r) in results {
            if let Err(e) = r {
                if matches!(e, RegistryError::DigestMismatch(_)) || first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    let id = store.create_image(&config, &tags)?;
    store.add_reference(&r.with_digest(&resolved.digest), &id)?;
    let _ = ptx.send(Progress::line(None, format!("Digest: {}", resolved.digest)));
    let status = if previously.as_deref() == Some(id.as_str()) {
        format!("Status: Image is up to date for {display}")
    } else {
        format!("Status: Downloaded newer image for {display}")
    };
    let _ = ptx.send(Progress::line(None, status));
    Ok(id)
}

trait FamiliarPath {
    fn repository_familiar_path(&self) -> String;
}

impl FamiliarPath for Reference {
    /// Docker's "Pulling from library/busybox" names the path inside the registry.
    fn repository_familiar_path(&self) -> String {
        self.path.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Push

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A compressed layer ready to push.
struct PreparedLayer {
    id: String,
    diff_id: String,
    digest: String,
    size: u64,
    file: tempfile::NamedTempFile,
}

/// Gzips each layer's stored tar (`ImageStore::open_layer_tar`) into a temp file, checking the
/// tar still has its diff id. Same gzip settings as ever, so a layer keeps its pushed digest.
fn prepare_layers(
    store: &ImageStore,
    layers: &[LayerInfo],
) -> Result<BTreeMap<String, PreparedLayer>, RegistryError> {
    // Open every layer first: an open file stays readable if the image is removed meanwhile.
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for l in layers {
        if seen.insert(l.diff_id.clone()) {
            files.push((l.diff_id.clone(), store.open_layer_tar(&l.diff_id)?));
        }
    }
    let mut out = BTreeMap::new();
    for (diff_id, f) in files {
        let p = compress_layer(&diff_id, f)?;
        out.insert(diff_id, p);
    }
    Ok(out)
}

fn compress_layer(diff_id: &str, mut src: std::fs::File) -> Result<PreparedLayer, RegistryError> {
    let file = tempfile::NamedTempFile::new().map_err(|e| RegistryError::io("temp file", e))?;
    let hw = HashWriter {
        inner: std::io::BufWriter::new(
            file.reopen()
                .map_err(|e| RegistryError::io("temp file", e))?,
        ),
        hasher: Sha256::new(),
        n: 0,
    };
    let mut gz = flate2::write::GzEncoder::new(hw, flate2::Compression::fast());
    let mut plain = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| RegistryError::io("read layer", e))?;
        if n == 0 {
            break;
        }
        plain.update(&buf[..n]);
        gz.write_all(&buf[..n])
            .map_err(|e| RegistryError::io("compress layer", e))?;
    }
    let mut hw = gz
        .finish()
        .map_err(|e| RegistryError::io("compress layer", e))?;
    hw.flush()
        .map_err(|e| RegistryError::io("compress layer", e))?;
    let plain_digest = format!("sha256:{}", hex::encode(plain.finalize()));
    if plain_digest != diff_id {
        return Err(RegistryError::DigestMismatch(format!(
            "local layer {diff_id} has content digest {plain_digest}"
        )));
    }
    Ok(PreparedLayer {
        id: short(diff_id),
        diff_id: diff_id.to_string(),
        digest: format!("sha256:{}", hex::encode(hw.hasher.finalize())),
        size: hw.n,
        file,
    })
}

/// Result of a push: the manifest digest and size (`tag: digest: sha256:... size: N`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PushResult {
    pub tag: String,
    pub digest: String,
    pub size: u64,
}

/// Pushes `reference` (a local image tag) to its registry. Blocking (see the module doc).
pub fn push(
    store: &ImageStore,
    reference: &str,
    opts: &PushOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PushResult, RegistryError> {
    let r = parse_ref(reference)?;
    if r.digest.is_some() {
        return Err(RegistryError::InvalidReference(
            "cannot push a digest reference".into(),
        ));
    }
    let (ptx, prx) = mpsc::channel::<Progress>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| push_worker(store, &r, opts, ptx));
        for p in prx {
            progress(p);
        }
        worker
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Http("push worker panicked".into())))
    })
}

async fn blob_exists(s: &Session, digest: &str) -> Result<bool, RegistryError> {
    let url = s.url(&format!("blobs/{digest}"));
    let resp = s.send(|c| c.head(&url)).await?;
    match resp.status() {
        st if st.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(response_error(resp).await),
    }
}

/// Uploads a blob from a file in chunks (POST, PATCH..., PUT ?digest=).
async fn upload_blob(
    s: &Session,
    digest: &str,
    size: u64,
    file: &std::path::Path,
    id: Option<&str>,
    ptx: &mpsc::Sender<Progress>,
) -> Result<(), RegistryError> {
    let start = s.url("blobs/uploads/");
    let resp = s.send(|c| c.post(&start)).await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(response_error(resp).await);
    }
    let mut loc = s.location(&resp)?;
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| RegistryError::io("open layer", e))?;
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    use tokio::io::AsyncReadExt;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f
                .read(&mut buf[n..])
                .await
                .map_err(|e| RegistryError::io("read layer", e))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        let body = Bytes::copy_from_slice(&buf[..n]);
        let range = format!("{}-{}", offset, offset + n as u64 - 1);
        let url = loc.clone();
        let resp = s
            .send(|c| {
                c.patch(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_RANGE, range.clone())
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT {
            return Err(response_error(resp).await);
        }
        loc = s.location(&resp)?;
        offset += n as u64;
        if let Some(id) = id {
            let _ = ptx.send(Progress::bar(id, "Pushing", offset, size));
        }
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = format!("{loc}{sep}digest={digest}");
    let resp = s
        .send(|c| {
            c.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, 0)
        })
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(response_error(resp).await);
    }
    Ok(())
}

async fn try_mount(s: &Session, digest: &str, from: &str) -> Result<bool, RegistryError> {
    let url = format!("{}?mount={digest}&from={from}", s.url("blobs/uploads/"));
    let resp = s.send(|c| c.post(&url)).await?;
    if resp.status() == StatusCode::CREATED {
        return Ok(true);
    }
    if resp.status() == StatusCode::ACCEPTED {
        // The registry opened an upload instead; cancel it.
        if let Ok(loc) = s.location(&resp) {
            let _ = s.send(|c| c.delete(&loc)).await;
        }
    }
    Ok(false)
}

fn push_worker(
    store: &ImageStore,
    r: &Reference,
    opts: &PushOptions,
    ptx: mpsc::Sender<Progress>,
) -> Result<PushResult, RegistryError> {
    let id = store.resolve_id(&r.full()).map_err(|_| {
        RegistryError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            r.repository_familiar()
        ))
    })?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let config = store.config_bytes(&id)?;
    let layers = store.image_layers(&id)?;
    let _ = ptx.send(Progress::line(
        None,
        format!("The push refers to repository [{}]", r.name()),
    ));
    // Docker lists the layers top first.
    for l in layers.iter().rev() {
        let _ = ptx.send(Progress::line(Some(&short(&l.diff_id)), "Preparing"));
    }
    let prepared = prepare_layers(store, &layers)?;
    // Mount sources: other repositories of the same registry whose local images have the
    // layer (this image's own other tags first). Berth's gzip is deterministic, so a layer
    // pushed from here before has the same digest there.
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add_sources = |img: &berth_image::Image, diff_ids: &[String]| {
        for s in img.repo_tags.iter().chain(img.repo_digests.iter()) {
            let Ok(o) = Reference::parse_named(s) else {
                continue;
            };
            if o.domain != r.domain || o.path == r.path {
                continue;
            }
            for d in diff_ids {
                let v = sources.entry(d.clone()).or_default();
                if v.len() < 3 && !v.contains(&o.path) {
                    v.push(o.path.clone());
                }
            }
        }
    };
    let own: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    if let Ok(img) = store.get(&id) {
        add_sources(&img, &own);
    }
    if let Ok(images) = store.list() {
        for img in images.iter().filter(|i| i.id != id) {
            let Ok(ls) = store.image_layers(&img.id) else {
                continue;
            };
            let shared: Vec<String> = ls
                .into_iter()
                .map(|l| l.diff_id)
                .filter(|d| own.contains(d))
                .collect();
            if !shared.is_empty() {
                add_sources(img, &shared);
            }
        }
    }
    let mut scopes = vec![format!("repository:{}:pull,push", r.path)];
    let mut from: Vec<&String> = sources.values().flatten().collect();
    from.sort();
    from.dedup();
    scopes.extend(from.iter().take(10).map(|s| format!("repository:{s}:pull")));
    let rt = runtime()?;
    let http = http_client(&[&r.domain], opts.certs_dir.as_deref())?;
    let domain = if r.domain == DOCKER_HUB {
        DOCKER_HUB_REGISTRY
    } else {
        r.domain.as_str()
    };
    rt.block_on(async {
        let mut last = None;
        let mut session = None;
        for base in bases_for(domain, &opts.insecure_registries) {
            match Session::connect(http.clone(), &base, &r.path, opts.auth.clone(), scopes.clone())
                .await
            {
                Ok(s) => {
                    session = Some(s);
                    break;
                }
                Err(e) => keep_error(&mut last, e),
            }
        }
        let Some(s) = session else {
            return Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())));
        };
        let mut order: Vec<&PreparedLayer> = Vec::new();
        for l in &layers {
            if let Some(p) = prepared.get(&l.diff_id) {
                if !order.iter().any(|o| o.digest == p.digest) {
                    order.push(p);
                }
            }
        }
        for p in order.iter().skip(CONCURRENT_UPLOADS) {
            let _ = ptx.send(Progress::line(Some(&p.id), "Waiting"));
        }
        let results: Vec<Result<(), RegistryError>> =
            futures_util::stream::iter(order.iter().map(|p| {
                let s = &s;
                let ptx = ptx.clone();
                let sources = &sources;
                async move {
                    if blob_exists(s, &p.digest).await? {
                        let _ = ptx.send(Progress::line(Some(&p.id), "Layer already exists"));
                        return Ok(());
                    }
                    for src in sources.get(&p.diff_id).into_iter().flatten() {
                        if try_mount(s, &p.digest, src).await? {
                            let _ = ptx
                                .send(Progress::line(Some(&p.id), format!("Mounted from {src}")));
                            return Ok(());
                        }
                    }
                    upload_blob(s, &p.digest, p.size, p.file.path(), Some(&p.id), &ptx).await?;
                    let _ = ptx.send(Progress::line(Some(&p.id), "Pushed"));
                    Ok(())
                }
            }))
            .buffer_unordered(CONCURRENT_UPLOADS)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let config_digest = sha256_digest(&config);
        if !blob_exists(&s, &config_digest).await? {
            let tmp = tempfile::NamedTempFile::new().map_err(|e| RegistryError::io("temp", e))?;
            std::fs::write(tmp.path(), &config).map_err(|e| RegistryError::io("temp", e))?;
            upload_blob(&s, &config_digest, config.len() as u64, tmp.path(), None, &ptx).await?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {
                "mediaType": MEDIA_DOCKER_CONFIG,
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": layers.iter().filter_map(|l| prepared.get(&l.diff_id)).map(|p| serde_json::json!({
                "mediaType": MEDIA_DOCKER_LAYER_GZIP,
                "size": p.size,
                "digest": p.digest,
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| RegistryError::Http(format!("manifest: {e}")))?;
        let digest = sha256_digest(&body);
        let url = s.url(&format!("manifests/{tag}"));
        let b = Bytes::from(body);
        let resp = s
            .send(|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, MEDIA_DOCKER_MANIFEST)
                    .body(b.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(response_error(resp).await);
        }
        let size = b.len() as u64;
        let _ = ptx.send(Progress::line(
            None,
            format!("{tag}: digest: {digest} size: {size}"),
        ));
        let _ = ptx.send(Progress {
            aux: Some(serde_json::json!({"Tag": tag, "Digest": digest, "Size": size})),
            ..Default::default()
        });
        Ok(PushResult {
            tag: tag.clone(),
            digest,
            size,
        })
    })
    .and_then(|res| {
        store.add_reference(&r.with_digest(&res.digest), &id)?;
        Ok(res)
    })
}

// ---------------------------------------------------------------------------------------------
// Inspect and login

/// `GET /distribution/{name}/json`: the descriptor the reference resolves to and its platforms.
pub fn inspect_distribution(
    reference: &str,
    opts: &PullOptions,
) -> Result<DistributionInspect, RegistryError> {
    let r = parse_ref(reference)?;
    let rt = runtime()?;
    let http = pull_client(&r.domain, opts)?;
    let scopes = vec![format!("repository:{}:pull", r.path)];
    let mut last = None;
    for ep in pull_endpoints(&r, opts)? {
        let res = rt.block_on(async {
            let s = Session::connect(
                ep.http.unwrap_or_else(|| http.clone()),
                &ep.base,
                &r.path,
                opts.auth.clone(),
                scopes.clone(),
            )
            .await?;
            let target = r.digest.clone().or(r.tag.clone()).unwrap_or_default();
            let (digest, media, body) = get_manifest(&s, &target, &r.familiar()).await?;
            let m: Manifest = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Unsupported(format!("invalid manifest: {e}")))?;
            let platforms = if is_index(&media, &m) {
                m.manifests
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|d| d.platform)
                    .collect()
            } else if let Some(c) = &m.config {
                let cfg = get_blob_bytes(&s, &c.digest, MAX_CONFIG).await?;
                let p: ConfigPeek = serde_json::from_slice(&cfg)
                    .map_err(|e| RegistryError::Unsupported(format!("invalid config: {e}")))?;
                vec![Platform {
                    architecture: p.architecture,
                    os: p.os,
                    variant: p.variant,
                    os_version: None,
                }]
            } else {
                Vec::new()
            };
            Ok::<_, RegistryError>(DistributionInspect {
                descriptor: Descriptor {
                    media_type: media,
                    digest,
                    size: body.len() as u64,
                    platform: None,
                    urls: None,
                },
                platforms,
            })
        });
        match res {
            Ok(v) => return Ok(v),
            Err(e) => keep_error(&mut last, e),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())))
}

/// One repository a registry's search found (the v1 search API's result, Docker's API shape).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SearchResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: i64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<SearchResult>,
}

/// `docker search TERM`: the v1 search API of the index the term names (`host[:port]/words`),
/// or of Docker Hub's index. Docker Hub mirrors are not searched, as in Docker.
pub fn search(
    term: &str,
    limit: usize,
    insecure_registries: &[String],
    auth: Option<&RegistryAuth>,
) -> Result<Vec<SearchResult>, RegistryError> {
    let (index, query) = match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("index.docker.io", term),
    };
    if query.is_empty() {
        return Err(RegistryError::Config("search term cannot be empty".into()));
    }
    let domain = if index == "index.docker.io" {
        DOCKER_HUB
    } else {
        index
    };
    let base = if domain == DOCKER_HUB {
        "https://index.docker.io".to_string()
    } else {
        format!("{}://{index}", scheme_for(index, insecure_registries))
    };
    let rt = runtime()?;
    let http = http_client(&[index], None)?;
    rt.block_on(async {
        let url = format!("{base}/v1/search");
        let mut req = http
            .get(&url)
            .query(&[("q", query), ("n", &limit.to_string())]);
        if let Some(RegistryAuth {
            username, password, ..
        }) = auth
        {
            if !username.is_empty() {
                req = req.basic_auth(username, Some(password));
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(RegistryError::Http(format!(
                "Unexpected status code {}",
                status.as_u16()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        let body: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Http(format!("invalid search response from {index}: {e}"))
        })?;
        Ok(body.results)
    })
}

/// `POST /auth`: checks credentials against a registry. Returns Docker's status text.
pub fn login(
    server_address: &str,
    auth: &RegistryAuth,
    insecure_registries: &[String],
) -> Result<String, RegistryError> {
    let addr = server_address
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let addr = addr.split('/').next().unwrap_or(addr);
    let domain = match addr {
        "" | "index.docker.io" | "docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        a => a,
    };
    let rt = runtime()?;
    let http = http_client(&[domain], None)?;
    let mut last = None;
    for base in endpoints(domain, insecure_registries, &[]) {
        match rt.block_on(login_at(&http, &base, auth)) {
            Ok(status) => return Ok(status),
            Err(e) => {
                let connection = matches!(e, RegistryError::Http(_));
                keep_error(&mut last, e);
                if !connection {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())))
}

async fn login_at(
    http: &reqwest::Client,
    base: &str,
    auth: &RegistryAuth,
) -> Result<String, RegistryError> {
    {
        let url = format!("{base}/v2/");
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok("Login Succeeded".to_string());
        }
        let s = Session {
            http: http.clone(),
            base: base.to_string(),
            repo: String::new(),
            auth: Some(auth.clone()),
            scopes: Vec::new(),
            authz: tokio::sync::Mutex::new(None),
        };
        let Some(h) = s.answer_challenge(resp.headers()).await? else {
            return Err(RegistryError::Unauthorized(format!(
                "Get \"{url}\": unauthorized: authentication required"
            )));
        };
        let resp = http
            .get(&url)
            .header(AUTHORIZATION, h)
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        if resp.status().is_success() {
            Ok("Login Succeeded".to_string())
        } else {
            Err(RegistryError::Unauthorized(format!(
                "login attempt to {url} failed with status: {}",
                resp.status()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Berth Registry""#);
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "Berth Registry");
    }

    #[test]
    fn schemes() {
        assert_eq!(scheme_for("localhost:5000", &[]), "http");
        assert_eq!(scheme_for("127.0.0.1:5000", &[]), "http");
        assert_eq!(scheme_for("127.1.2.3", &[]), "http");
        assert_eq!(scheme_for("example.com", &[]), "https");
        assert_eq!(scheme_for("reg:5000", &["reg:5000".into()]), "http");
        assert_eq!(
            endpoints("docker.io", &[], &["https://m.example".into()]),
            vec!["https://m.example", "https://registry-1.docker.io"]
        );
    }

    #[test]
    fn repo_parts() {
        assert_eq!(repo_part("busybox:latest"), "busybox");
        assert_eq!(repo_part("busybox@sha256:ab"), "busybox");
        assert_eq!(repo_part("localhost:5000/x:1"), "localhost:5000/x");
        assert_eq!(repo_part("localhost:5000/x@sha256:ab"), "localhost:5000/x");
    }

    #[test]
    fn json_messages() {
        let p = Progress::bar("abc", "Downloading", 5, 10);
        assert_eq!(
            p.to_json_message(),
            serde_json::json!({"status":"Downloading","progressDetail":{"current":5,"total":10},"id":"abc"})
        );
        let p = Progress::line(None, "Digest: sha256:x");
        assert_eq!(
            p.to_json_message(),
            serde_json::json!({"status":"Digest: sha256:x"})
        );
    }

    #[test]
    fn auth_header() {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"username":"u","password":"p"}"#);
        let a = RegistryAuth::from_header(&h).ok().flatten();
        assert_eq!(a.and_then(|a| a.basic()), Some(("u".into(), "p".into())));
        assert_eq!(RegistryAuth::from_header("").ok().flatten(), None);
    }
}
