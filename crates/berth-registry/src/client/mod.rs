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

mod pull;
mod push;
mod query;

pub use pull::pull;
pub use push::{push, PushResult};
pub use query::{inspect_distribution, login, search, SearchResult};

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

pub use berth_image::oci::{Descriptor, Platform};

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
pub(super) struct Endpoint {
    pub(super) base: String,
    pub(super) http: Option<reqwest::Client>,
}

/// The endpoints of a pull, in order: the registry's `hosts.toml` hosts (those that may serve
/// it: `pull`, and `resolve` unless the reference is a digest), Docker Hub's mirrors, then the
/// file's `server` or the registry itself.
pub(super) fn pull_endpoints(
    r: &Reference,
    opts: &PullOptions,
) -> Result<Vec<Endpoint>, RegistryError> {
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
    Ok(Endpoint {
        base: h.base.clone(),
        http: Some(finish_client(b)?),
    })
}

/// Like Docker: TLS first; for loopback and insecure registries plain HTTP as the fallback.
fn bases_for(domain: &str, insecure: &[String]) -> Vec<String> {
    match scheme_for(domain, insecure) {
        "http" => vec![format!("https://{domain}"), format!("http://{domain}")],
        _ => vec![format!("https://{domain}")],
    }
}

/// Connects a pull session to each of `r`'s pull endpoints in turn (see [`pull_endpoints`])
/// and runs `f` on it; the first success wins, else the most telling error.
fn on_pull_endpoints<T, F, Fut>(
    rt: &tokio::runtime::Runtime,
    r: &Reference,
    opts: &PullOptions,
    mut f: F,
) -> Result<T, RegistryError>
where
    F: FnMut(Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let http = pull_client(&r.domain, opts)?;
    let scopes = vec![format!("repository:{}:pull", r.path)];
    let mut last = None;
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
            f(s).await
        });
        match res {
            Ok(v) => return Ok(v),
            Err(e) => keep_error(&mut last, e),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())))
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
    finish_client(b)
}

/// Berth's timeouts and user agent on a client whose TLS trust is set.
fn finish_client(b: reqwest::ClientBuilder) -> Result<reqwest::Client, RegistryError> {
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
