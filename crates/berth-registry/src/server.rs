//! `berth registry serve`: the OCI distribution spec v1.1 over HTTP(S).

use crate::error::{ErrorCode, RegistryError};
use crate::storage::{self, Storage, MAX_MANIFEST_SIZE};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use base64::Engine as _;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub const API_VERSION_HEADER: &str = "Docker-Distribution-API-Version";

/// Server configuration.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub storage: PathBuf,
    /// htpasswd file with bcrypt entries; `None` = no authentication.
    pub htpasswd: Option<PathBuf>,
    /// With `htpasswd`: GET/HEAD without credentials are allowed.
    pub anonymous_read: bool,
}

struct State {
    storage: Storage,
    users: Option<HashMap<String, String>>,
    anonymous_read: bool,
    /// `user:password` pairs already verified (bcrypt is deliberately slow).
    verified: Mutex<HashSet<String>>,
    /// One lock per upload session: chunks of one session are appended one request at a time.
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl State {
    fn upload_lock(&self, uuid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.upload_locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(uuid.to_string()).or_default().clone()
    }

    fn release_upload_lock(&self, uuid: &str) {
        let mut m = self.upload_locks.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(uuid).is_some_and(|a| Arc::strong_count(a) == 1) {
            m.remove(uuid);
        }
    }
}

/// A running registry; dropping it does not stop the server, call [`Registry::shutdown`].
pub struct Registry {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops accepting and aborts open connections at once (tests: a registry that dies).
    pub fn abort(self) {
        self.task.abort();
    }
}

pub fn parse_htpasswd(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(u, h)| (u.to_string(), h.to_string()))
        .collect()
}

fn load_state(cfg: &ServerConfig) -> Result<Arc<State>, RegistryError> {
    let storage = Storage::open(&cfg.storage)?;
    let users = match &cfg.htpasswd {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| RegistryError::io(format!("read {}", p.display()), e))?;
            Some(parse_htpasswd(&text))
        }
        None => None,
    };
    Ok(Arc::new(State {
        storage,
        users,
        anonymous_read: cfg.anonymous_read,
        verified: Mutex::new(HashSet::new()),
        upload_locks: Mutex::new(HashMap::new()),
    }))
}

/// The axum router of the registry.
pub fn router(cfg: &ServerConfig) -> Result<axum::Router, RegistryError> {
    let state = load_state(cfg)?;
    Ok(axum::Router::new().fallback(move |req: Request<Body>| {
        let st = state.clone();
        async move { handle(st, req).await }
    }))
}

/// Binds `addr` and serves in the background (plain HTTP, or TLS with `tls`).
pub async fn spawn(
    cfg: &ServerConfig,
    addr: &str,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Result<Registry, RegistryError> {
    let app = router(cfg)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RegistryError::io(format!("listen on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| RegistryError::io("local address", e))?;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (sock, _) = tokio::select! {
                _ = &mut rx => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            let app = app.clone();
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(sock).await {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                            .await;
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
        conns.abort_all();
    });
    Ok(Registry {
        addr: local,
        stop: Some(tx),
        task,
    })
}

/// Loads a PEM certificate chain and key into a rustls server config (ring provider).
pub fn tls_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, RegistryError> {
    use tokio_rustls::rustls;
    let cert_pem = std::fs::read(cert)
        .map_err(|e| RegistryError::io(format!("read {}", cert.display()), e))?;
    let key_pem =
        std::fs::read(key).map_err(|e| RegistryError::io(format!("read {}", key.display()), e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| RegistryError::io(format!("parse {}", cert.display()), e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| RegistryError::io(format!("parse {}", key.display()), e))?
        .ok_or_else(|| RegistryError::Config(format!("no private key in {}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| RegistryError::Config(format!("tls: {e}")))?;
    Ok(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------------

type Resp = Response<Body>;

fn error_response(e: &RegistryError) -> Resp {
    let (code, message, detail, status) = match e {
        RegistryError::Distribution {
            code,
            message,
            detail,
            status,
        } => (*code, message.clone(), detail.clone(), *status),
        other => {
            tracing::warn!("registry: {other}");
            (ErrorCode::Unknown, other.to_string(), None, 500)
        }
    };
    let mut err = serde_json::json!({"code": code.as_str(), "message": message});
    if let Some(d) = detail {
        err["detail"] = d;
    }
    let body = serde_json::json!({ "errors": [err] }).to_string();
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(API_VERSION_HEADER, "registry/2.0")
        .body(Body::from(body))
        .unwrap_or_default();
    if code == ErrorCode::Unauthorized {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Berth Registry\""),
        );
    }
    r
}

fn builder(status: StatusCode) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header(API_VERSION_HEADER, "registry/2.0")
}

fn finish(b: axum::http::response::Builder, body: Body) -> Result<Resp, RegistryError> {
    b.body(body)
        .map_err(|e| RegistryError::Http(format!("response: {e}")))
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(pct_decode(k), pct_decode(v));
    }
    m
}

pub(crate) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

enum Route<'a> {
    Ping,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    /// `GET /v1/search`: the v1 search API (`docker search host:port/term`) over the catalog.
    Search,
}

fn route(path: &str) -> Option<Route<'_>> {
    if path == "/v1/search" {
        return Some(Route::Search);
    }
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Ping);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Some(Route::UploadStart(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::UploadStart(name));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        return Some(Route::Upload(&rest[..i], &rest[i + 15..]));
    }
    for (marker, kind) in [("/manifests/", 0), ("/blobs/", 1), ("/referrers/", 2)] {
        if let Some(i) = rest.rfind(marker) {
            let (name, r) = (&rest[..i], &rest[i + marker.len()..]);
            if r.is_empty() || r.contains('/') {
                continue;
            }
            return Some(match kind {
                0 => Route::Manifest(name, r),
                1 => Route::Blob(name, r),
                _ => Route::Referrers(name, r),
            });
        }
    }
    None
}

/// The most of a refused request's body read to keep its connection usable; past that (or a
/// larger Content-Length) the answer says `Connection: close`.
const DRAIN_LIMIT: u64 = 4 << 20;

/// Whether the request says it has a body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Reads and drops a refused request's body, up to `DRAIN_LIMIT`; false when it is (or says it
/// is) larger, or broken: then the connection cannot be reused.
async fn drain(headers: &HeaderMap, body: Body) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return false;
    }
    let mut s = body.into_data_stream();
    let mut total = 0u64;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => {
                total += c.len() as u64;
                if total > DRAIN_LIMIT {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

async fn handle(st: Arc<State>, req: Request<Body>) -> Resp {
    // Authentication comes before anything reads the body. A client that sent one without
    // credentials (docker push, the conformance suite) retries on the same connection: the
    // body is drained so that works, or the connection is closed, never left half-read.
    if let Err(e) = authorize(&st, req.method(), req.headers()).await {
        let mut resp = error_response(&e);
        let (parts, body) = req.into_parts();
        if has_body(&parts.headers) && !drain(&parts.headers, body).await {
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        return resp;
    }
    let with_body = has_body(req.headers());
    let session = match route(req.uri().path()) {
        Some(Route::Upload(_, uuid)) => Some(uuid.to_string()),
        _ => None,
    };
    let res = match &session {
        Some(uuid) => {
            let lock = st.upload_lock(uuid);
            let guard = lock.lock_owned().await;
            let res = handle_inner(st.clone(), req).await;
            drop(guard);
            st.release_upload_lock(uuid);
            res
        }
        None => handle_inner(st, req).await,
    };
    match res {
        Ok(r) => r,
        Err(e) => {
            // Refused before (or while) reading the body: hyper will not reuse the connection,
            // so the client must not either.
            let mut resp = error_response(&e);
            if with_body {
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    }
}

async fn authorize(st: &State, method: &Method, headers: &HeaderMap) -> Result<(), RegistryError> {
    let Some(users) = &st.users else {
        return Ok(());
    };
    if st.anonymous_read && (method == Method::GET || method == Method::HEAD) {
        return Ok(());
    }
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some(creds) = creds else {
        return Err(RegistryError::code(ErrorCode::Unauthorized));
    };
    let (user, pass) = creds.split_once(':').unwrap_or((creds.as_str(), ""));
    let Some(hash) = users.get(user).cloned() else {
        return Err(RegistryError::code(ErrorCode::Unauthorized));
    };
    if st
        .verified
        .lock()
        .map(|v| v.contains(&creds))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let pass = pass.to_string();
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(RegistryError::code(ErrorCode::Unauthorized));
    }
    if let Ok(mut v) = st.verified.lock() {
        v.insert(creds);
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if storage::valid_name(name) {
        Ok(())
    } else {
        Err(RegistryError::with_detail(
            ErrorCode::NameInvalid,
            serde_json::json!({ "name": name }),
        ))
    }
}

async fn handle_inner(st: Arc<State>, req: Request<Body>) -> Result<Resp, RegistryError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query_map(req.uri().query());
    let Some(r) = route(&path) else {
        return Err(RegistryError::with_status(ErrorCode::NameUnknown, 404));
    };
    let name = match &r {
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => Some(*n),
        _ => None,
    };
    if let Some(n) = name {
        check_name(n)?;
    }
    let unsupported = || Err(RegistryError::with_status(ErrorCode::Unsupported, 405));
    match (r, &method) {
        (Route::Ping, &Method::GET | &Method::HEAD) => finish(
            builder(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            Body::from(if method == Method::GET { "{}" } else { "" }),
        ),
        (Route::Catalog, &Method::GET) => {
            let all = st.storage.catalog();
            paginate(&q, all, "/v2/_catalog", "repositories", None)
        }
        (Route::Search, &Method::GET) => {
            // Repositories whose name holds the query, at most `n` (default 25, as Docker's).
            let want = q.get("q").map(|s| s.to_lowercase()).unwrap_or_default();
            let n = q
                .get("n")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(25);
            let found: Vec<serde_json::Value> = st
                .storage
                .catalog()
                .into_iter()
                .filter(|r| r.to_lowercase().contains(&want))
                .take(n)
                .map(|name| {
                    serde_json::json!({
                        "name": name, "description": "", "star_count": 0,
                        "is_official": false, "is_automated": false,
                    })
                })
                .collect();
            let body = serde_json::json!({
                "num_pages": 1, "num_results": found.len(), "page": 1, "page_size": n,
                "query": q.get("q").cloned().unwrap_or_default(), "results": found,
            });
            finish(
                builder(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
                Body::from(body.to_string()),
            )
        }
        (Route::Tags(name), &Method::GET) => {
            if !st.storage.repo_exists(name) {
                return Err(RegistryError::with_detail(
                    ErrorCode::NameUnknown,
                    serde_json::json!({ "name": name }),
                ));
            }
            let tags = st.storage.tags(name)?;
            paginate(
                &q,
                tags,
                &format!("/v2/{name}/tags/list"),
                "tags",
                Some(name),
            )
        }
        (Route::Manifest(name, reference), &Method::GET | &Method::HEAD) => {
            let (digest, media) = st.storage.resolve_manifest(name, reference)?;
            let body = st.storage.read_blob(&digest)?;
            let b = builder(StatusCode::OK)
                .header(header::CONTENT_TYPE, media)
                .header("Docker-Content-Digest", &digest)
                .header(header::ETAG, format!("\"{digest}\""))
                .header(header::CONTENT_LENGTH, body.len());
            finish(
                b,
                if method == Method::GET {
                    Body::from(body)
                } else {
                    Body::empty()
                },
            )
        }
        (Route::Manifest(name, reference), &Method::PUT) => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_limited(req.into_body(), MAX_MANIFEST_SIZE).await?;
            let (digest, m) = st
                .storage
                .put_manifest(name, reference, ct.as_deref(), &body)?;
            let mut b = builder(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
                .header("Docker-Content-Digest", &digest)
                .header(header::CONTENT_LENGTH, 0);
            if let Some(s) = m.subject {
                b = b.header("OCI-Subject", s.digest);
            }
            finish(b, Body::empty())
        }
        (Route::Manifest(name, reference), &Method::DELETE) => {
            st.storage.delete_manifest(name, reference)?;
            finish(builder(StatusCode::ACCEPTED), Body::empty())
        }
        (Route::Blob(name, digest), &Method::GET | &Method::HEAD) => {
            serve_blob(&st, name, digest, &method, req.headers()).await
        }
        (Route::Blob(name, digest), &Method::DELETE) => {
            st.storage.unlink_blob(name, digest)?;
            finish(builder(StatusCode::ACCEPTED), Body::empty())
        }
        (Route::UploadStart(name), &Method::POST) => start_upload(&st, name, &q, req).await,
        (Route::Upload(name, uuid), &Method::GET) => {
            let s = st.storage.upload_state(name, uuid)?;
            finish(
                upload_headers(builder(StatusCode::NO_CONTENT), name, uuid, s.size),
                Body::empty(),
            )
        }
        (Route::Upload(name, uuid), &Method::PATCH) => {
            let s = st.storage.upload_state(name, uuid)?;
            if let Some(cr) = req.headers().get(header::CONTENT_RANGE) {
                let cr = cr.to_str().unwrap_or("");
                let start = parse_content_range_start(cr)
                    .ok_or_else(|| RegistryError::with_status(ErrorCode::BlobUploadInvalid, 416))?;
                if start != s.size {
                    return Err(RegistryError::with_status(
                        ErrorCode::BlobUploadInvalid,
                        416,
                    ));
                }
            }
            let size = append_body(&st, uuid, req.into_body()).await?;
            finish(
                upload_headers(builder(StatusCode::ACCEPTED), name, uuid, size),
                Body::empty(),
            )
        }
        (Route::Upload(name, uuid), &Method::PUT) => {
            let s = st.storage.upload_state(name, uuid)?;
            let Some(digest) = q.get("digest").cloned() else {
                return Err(RegistryError::with_detail(
                    ErrorCode::DigestInvalid,
                    "digest missing",
                ));
            };
            if let Some(cr) = req.headers().get(header::CONTENT_RANGE) {
                let start = parse_content_range_start(cr.to_str().unwrap_or(""));
                if start != Some(s.size) {
                    return Err(RegistryError::with_status(
                        ErrorCode::BlobUploadInvalid,
                        416,
                    ));
                }
            }
            append_body(&st, uuid, req.into_body()).await?;
            let st2 = st.clone();
            let (n, u, d) = (name.to_string(), uuid.to_string(), digest.clone());
            tokio::task::spawn_blocking(move || st2.storage.commit_upload(&n, &u, &d))
                .await
                .map_err(|e| RegistryError::Http(e.to_string()))??;
            blob_created(name, &digest)
        }
        (Route::Upload(name, uuid), &Method::DELETE) => {
            st.storage.upload_state(name, uuid)?;
            st.storage.cancel_upload(uuid)?;
            finish(builder(StatusCode::NO_CONTENT), Body::empty())
        }
        (Route::Referrers(name, digest), &Method::GET) => {
            let filter = q.get("artifactType").cloned();
            let list = st.storage.referrers(name, digest, filter.as_deref())?;
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list,
            });
            let mut b = builder(StatusCode::OK).header(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.index.v1+json",
            );
            if filter.is_some() {
                b = b.header("OCI-Filters-Applied", "artifactType");
            }
            finish(b, Body::from(body.to_string()))
        }
        _ => unsupported(),
    }
}

fn parse_content_range_start(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    (b >= a).then_some(a)
}

fn upload_headers(
    b: axum::http::response::Builder,
    name: &str,
    uuid: &str,
    size: u64,
) -> axum::http::response::Builder {
    b.header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{uuid}"))
        .header(header::RANGE, format!("0-{}", size.saturating_sub(1)))
        .header("Docker-Upload-UUID", uuid)
        .header(header::CONTENT_LENGTH, 0)
}

fn blob_created(name: &str, digest: &str) -> Result<Resp, RegistryError> {
    finish(
        builder(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
            .header("Docker-Content-Digest", digest)
            .header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}

async fn start_upload(
    st: &Arc<State>,
    name: &str,
    q: &HashMap<String, String>,
    req: Request<Body>,
) -> Result<Resp, RegistryError> {
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        if storage::valid_name(from) && st.storage.blob_size(from, mount).is_ok() {
            st.storage.link_blob(name, mount)?;
            return blob_created(name, mount);
        }
    }
    let uuid = st.storage.new_upload(name)?;
    if let Some(digest) = q.get("digest").cloned() {
        storage::digest_hex(&digest).ok_or_else(|| {
            RegistryError::with_detail(
                ErrorCode::DigestInvalid,
                format!("invalid digest {digest:?}"),
            )
        })?;
        append_body(st, &uuid, req.into_body()).await?;
        let st2 = st.clone();
        let (n, u, d) = (name.to_string(), uuid.clone(), digest.clone());
        tokio::task::spawn_blocking(move || st2.storage.commit_upload(&n, &u, &d))
            .await
            .map_err(|e| RegistryError::Http(e.to_string()))??;
        return blob_created(name, &digest);
    }
    finish(
        upload_headers(builder(StatusCode::ACCEPTED), name, &uuid, 0),
        Body::empty(),
    )
}

/// Appends a request body to an upload session as it arrives; what arrived before a dropped
/// connection stays, so the client can resume from the reported offset. Returns the new size.
async fn append_body(st: &State, uuid: &str, body: Body) -> Result<u64, RegistryError> {
    let path = st.storage.upload_data_path(uuid)?;
    let mut f = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .map_err(|_| RegistryError::code(ErrorCode::BlobUploadUnknown))?;
    let mut stream = body.into_data_stream();
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => f
                .write_all(&c)
                .await
                .map_err(|e| RegistryError::io(format!("write {}", path.display()), e))?,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    f.flush()
        .await
        .map_err(|e| RegistryError::io(format!("write {}", path.display()), e))?;
    if let Some(e) = failed {
        return Err(RegistryError::with_detail(
            ErrorCode::BlobUploadInvalid,
            format!("reading request body: {e}"),
        ));
    }
    let len = f
        .metadata()
        .await
        .map_err(|e| RegistryError::io(format!("stat {}", path.display()), e))?
        .len();
    Ok(len)
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut s = body.into_data_stream();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| RegistryError::Http(format!("reading request body: {e}")))?;
        if out.len() + c.len() > limit {
            return Err(RegistryError::with_status(ErrorCode::SizeInvalid, 413));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

fn parse_range(v: &str, total: u64) -> Option<(u64, u64)> {
    let v = v.trim().strip_prefix("bytes=")?;
    if v.contains(',') {
        return None;
    }
    let (a, b) = v.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || total == 0 {
            return None;
        }
        return Some((total.saturating_sub(n), total - 1));
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        total.checked_sub(1)?
    } else {
        b.parse::<u64>().ok()?.min(total.checked_sub(1)?)
    };
    (a <= b && a < total).then_some((a, b))
}

async fn serve_blob(
    st: &State,
    name: &str,
    digest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Resp, RegistryError> {
    let total = st.storage.blob_size(name, digest)?;
    let path = st.storage.blob_path(digest)?;
    let base = |s: StatusCode| {
        builder(s)
            .header("Docker-Content-Digest", digest)
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_TYPE, "application/octet-stream")
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range {
        Some(r) => match parse_range(r, total) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
            None => {
                return finish(
                    base(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{total}")),
                    Body::empty(),
                )
            }
        },
        None => (StatusCode::OK, 0, total.saturating_sub(1)),
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    let mut b = base(status).header(header::CONTENT_LENGTH, len);
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{total}"),
        );
    }
    if method == Method::HEAD {
        return finish(b, Body::empty());
    }
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| RegistryError::with_detail(ErrorCode::BlobUnknown, digest.to_string()))?;
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| RegistryError::io(format!("seek {}", path.display()), e))?;
    let reader = f.take(len);
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 128 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    });
    finish(b, Body::from_stream(stream))
}

fn paginate(
    q: &HashMap<String, String>,
    all: Vec<String>,
    path: &str,
    key: &str,
    name: Option<&str>,
) -> Result<Resp, RegistryError> {
    let n = match q.get("n") {
        Some(v) if !v.is_empty() => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::with_detail(ErrorCode::PaginationNumberInvalid, v.clone())
        })?),
        _ => None,
    };
    let last = q.get("last").filter(|l| !l.is_empty());
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|t| last.is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(l) = items.last() {
                link = Some(format!(
                    "<{path}?n={n}&last={}>; rel=\"next\"",
                    pct_encode(l)
                ));
            }
        }
    }
    let mut body = serde_json::Map::new();
    if let Some(name) = name {
        body.insert("name".into(), name.into());
    }
    body.insert(key.into(), items.into());
    let mut b = builder(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    finish(b, Body::from(serde_json::Value::Object(body).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/v2/"), Some(Route::Ping)));
        assert!(matches!(
            route("/v2/a/b/manifests/latest"),
            Some(Route::Manifest("a/b", "latest"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart("a"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/x-1"),
            Some(Route::Upload("a", "x-1"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/sha256:0"),
            Some(Route::Blob("a", "sha256:0"))
        ));
        assert!(matches!(route("/v2/x/tags/list"), Some(Route::Tags("x"))));
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_content_range_start("5-9"), Some(5));
        assert_eq!(pct_decode("a%2Fb"), "a/b");
    }
}
