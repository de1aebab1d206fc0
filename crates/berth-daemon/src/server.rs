//! The listener, the version prefix, shutdown.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::Router;
use berth_engine::{Engine, EngineConfig};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tower::ServiceExt;

use crate::error::ApiError;

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `unix:///path` or `tcp://host:port` addresses to listen on.
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub berth_exe: PathBuf,
    /// Registries reached over plain HTTP (besides localhost and 127.0.0.0/8).
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors, tried first.
    pub registry_mirrors: Vec<String>,
    pub network: berth_engine::network::NetConfig,
    /// Default json-file log options for new containers (`--log-opt`, `log-opts`).
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// Listening sockets handed over by systemd (socket activation: `LISTEN_FDS` from fd 3),
    /// served for `-H fd://` (all of them) or `-H fd://N` (that one).
    pub activated_fds: Vec<i32>,
    /// `--experimental`: features dockerd keeps behind it (`build --squash`).
    pub experimental: bool,
    /// `--exec-opt native.cgroupdriver=` (or the host's default), checked against the host.
    pub cgroup_driver: berth_engine::CgroupDriver,
    /// `--default-cgroupns-mode` (or the host's default).
    pub default_cgroupns: berth_engine::CgroupnsMode,
    /// `--registry-config-path`: per-registry `hosts.toml` (mirrors) for both APIs' pulls.
    pub registry_config_path: PathBuf,
    /// `--cri-socket`: `unix://PATH` of the CRI server; empty for none.
    pub cri_socket: String,
    /// Pod networking (CNI): configuration directory and plugin directories.
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// TLS on the `tcp://` listeners (`--tls`, `--tlsverify`); `None`: plain HTTP there.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `--tls=false` (or `--tlsverify=false`) given explicitly: the user accepts plain TCP on a
    /// non-loopback address, which is refused otherwise (Docker 27's rule).
    pub tls_explicitly_off: bool,
    /// Timeouts and the CORS rule of every listener.
    pub hygiene: crate::hygiene::Hygiene,
}

/// The negotiated API version of a request, e.g. (1, 45).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

const MAX_VERSION: ApiVersion = ApiVersion(1, 45);
const MIN_VERSION: ApiVersion = ApiVersion(1, 24);

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// BuildKit's API (`/grpc`, `/session`), over the same engine.
    pub buildkit: Arc<berth_buildkit::BuildKit>,
}

fn parse_version(s: &str) -> Option<ApiVersion> {
    let (a, b) = s.split_once('.')?;
    Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
}

/// Strips `/vX.Y` and checks it against what we support.
fn split_version(path: &str) -> Result<(Option<ApiVersion>, String), ApiError> {
    if let Some(rest) = path.strip_prefix("/v") {
        let (ver, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if let Some(v) = parse_version(ver) {
            if v > MAX_VERSION {
                return Err(ApiError::bad_request(format!(
                    "client version {ver} is too new. Maximum supported API version is 1.45"
                )));
            }
            if v < MIN_VERSION {
                return Err(ApiError::bad_request(format!(
                    "client version {ver} is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
                )));
            }
            return Ok((Some(v), tail.to_string()));
        }
    }
    Ok((None, path.to_string()))
}

fn add_common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static("1.45"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
}

/// What a connection's requests are checked against: the listener's kind and the rules.
#[derive(Clone)]
struct ConnCtx {
    /// A TCP listener (TLS or not): reachable by browsers, so `Origin` is checked.
    tcp: bool,
    cors: Option<Arc<str>>,
}

async fn dispatch(router: Router, ctx: ConnCtx, mut req: Request<Body>) -> Response<Body> {
    let allow_origin =
        match crate::hygiene::check_origin(ctx.cors.as_deref(), req.headers(), ctx.tcp) {
            Ok(a) => a,
            Err(e) => {
                let mut resp = axum::response::IntoResponse::into_response(e);
                add_common_headers(&mut resp);
                return resp;
            }
        };
    let path = req.uri().path().to_string();
    let mut resp = if let Some(r) = crate::hygiene::preflight(req.method()) {
        r
    } else {
        match split_version(&path) {
            Err(e) => axum::response::IntoResponse::into_response(e),
            Ok((ver, tail)) => {
                req.extensions_mut().insert(ver.unwrap_or(MAX_VERSION));
                if ver.is_some() {
                    let pq = match req.uri().query() {
                        Some(q) => format!("{tail}?{q}"),
                        None => tail,
                    };
                    if let Ok(uri) = pq.parse() {
                        *req.uri_mut() = uri;
                    }
                }
                match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(e) => match e {},
                }
            }
        }
    };
    add_common_headers(&mut resp);
    if let Some(a) = allow_origin {
        crate::hygiene::add_cors_headers(&mut resp, a);
    }
    resp
}

async fn not_found(req: Request<Body>) -> ApiError {
    ApiError::new(404, format!("page not found: {}", req.uri().path()))
}

fn router(state: AppState) -> Router {
    let r = Router::new();
    let r = crate::system::routes(r);
    let r = crate::containers::routes(r);
    let r = crate::exec::routes(r);
    let r = crate::archive::routes(r);
    let r = crate::events::routes(r);
    let r = crate::ops::routes(r);
    let r = crate::images::routes(r);
    let r = crate::volumes::routes(r);
    let r = crate::networks::routes(r);
    let r = crate::build::routes(r);
    let r = crate::grpc::routes(r);
    let r = crate::swarm::routes(r);
    r.fallback(not_found).with_state(state)
}

/// What one `-H` address listens on.
enum Listener {
    Unix(UnixListener),
    /// With TLS when the daemon has `--tls`/`--tlsverify`.
    Tcp(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>),
}

/// A connection of either kind, for hyper.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// An accepted connection before its TLS handshake (which runs on the connection's own task,
/// bounded by the header timeout, so a silent client cannot stall the accept loop).
enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match self {
            Listener::Unix(l) => Accepted::Unix(l.accept().await?.0),
            Listener::Tcp(l, tls) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Accepted::Tcp(s, tls.clone())
            }
        })
    }

    fn is_tcp(&self) -> bool {
        matches!(self, Listener::Tcp(..))
    }
}

impl Accepted {
    async fn into_conn(
        self,
        handshake_timeout: std::time::Duration,
    ) -> std::io::Result<Box<dyn Conn>> {
        match self {
            Accepted::Unix(s) => Ok(Box::new(s)),
            Accepted::Tcp(s, None) => Ok(Box::new(s)),
            Accepted::Tcp(s, Some(acceptor)) => {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(s)).await {
                    Ok(r) => Ok(Box::new(r?)),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            }
        }
    }
}

fn socket_path(host: &str) -> Result<PathBuf, String> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!(
            "unsupported host {host}: only unix:///path sockets and tcp://host:port are served"
        )),
    }
}

/// `host[:port]` with Docker's default port (2376 with TLS, 2375 without) when none is given.
fn with_default_port(addr: &str, tls: bool) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{}", if tls { 2376 } else { 2375 })
    }
}

/// Whether every address `addr` resolves to is a loopback one.
async fn is_loopback(addr: &str) -> bool {
    match tokio::net::lookup_host(addr).await {
        Ok(it) => {
            let all: Vec<std::net::SocketAddr> = it.collect();
            !all.is_empty() && all.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// `tcp://host[:port]`: with TLS when configured. Plain TCP on a non-loopback address is
/// refused unless `--tls=false` says the user means it (Docker 27's rule): anyone who reaches
/// such a port is root on this host.
async fn bind_tcp(
    addr: &str,
    tls: Option<&Arc<tokio_rustls::rustls::ServerConfig>>,
    explicitly_plain: bool,
) -> Result<Listener, String> {
    if addr.is_empty() || addr.contains('/') {
        return Err(format!(
            "invalid tcp address tcp://{addr}: host:port expected"
        ));
    }
    let addr = with_default_port(addr, tls.is_some());
    if tls.is_none() {
        if is_loopback(&addr).await {
            tracing::warn!(
                "API listening on tcp://{addr} without TLS: any local user or web page that \
                 reaches it controls this host (cross-origin requests are refused)"
            );
        } else if explicitly_plain {
            tracing::warn!(
                "API listening on tcp://{addr} without TLS (--tls=false): anyone who can reach \
                 it controls this host"
            );
        } else {
            return Err(format!(
                "refusing to listen on tcp://{addr} without TLS: anyone who can reach it would \
                 control this host. Use --tlsverify with --tlscacert, --tlscert and --tlskey \
                 (berth daemon --tls-generate DIR makes a first set), or give --tls=false to \
                 listen without TLS anyway"
            ));
        }
    }
    let l = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("listening on tcp://{addr}: {e}"))?;
    Ok(Listener::Tcp(
        l,
        tls.map(|c| tokio_rustls::TlsAcceptor::from(c.clone())),
    ))
}

fn write_pidfile(path: &Path) -> Result<(), String> {
    if let Ok(old) = std::fs::read_to_string(path) {
        if let Ok(pid) = old.trim().parse::<i32>() {
            let alive = pid != std::process::id() as i32
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|e| e.to_string_lossy().contains("berth"))
                    .unwrap_or(false);
            if alive {
                return Err(format!(
                    "pid file found, ensure berth is not running or delete {}",
                    path.display()
                ));
            }
        }
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, format!("{}", std::process::id())).map_err(|e| e.to_string())
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    if path.exists() {
        // A socket file with nobody behind it is left over from a crash.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by another daemon", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    let l =
        UnixListener::bind(path).map_err(|e| format!("listening on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| e.to_string())?;
    // Docker's convention: members of the "docker" group may use the socket.
    if let Ok(Some(g)) = nix::unistd::Group::from_name("docker") {
        let _ = nix::unistd::chown(path, None, Some(g.gid));
    }
    Ok(l)
}

/// The listeners of `-H fd://` (every activated socket) or `-H fd://N`, as dockerd serves them
/// under systemd socket activation. They are the socket unit's: never unlinked by us.
fn activated(which: &str, fds: &[i32]) -> Result<Vec<UnixListener>, String> {
    use std::os::fd::FromRawFd;
    if fds.is_empty() {
        return Err(
            "no sockets found via socket activation: make sure the service was started by systemd"
                .into(),
        );
    }
    let chosen: Vec<i32> = if which.is_empty() {
        fds.to_vec()
    } else {
        let n: i32 = which
            .parse()
            .map_err(|_| format!("invalid host fd://{which}"))?;
        if !fds.contains(&n) {
            return Err(format!(
                "too large fd://{which}: the socket unit passes {fds:?}"
            ));
        }
        vec![n]
    };
    let mut out = Vec::new();
    for fd in chosen {
        // systemd hands the sockets over without close-on-exec; shims must not inherit them.
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
            .map_err(|e| format!("activated socket fd {fd}: {e}"))?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags))
            .map_err(|e| format!("activated socket fd {fd}: {e}"))?;
        // SAFETY: the fd was passed to us by the service manager (LISTEN_FDS) and nothing else
        // in this process owns it; `chosen` holds each fd once.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        l.set_nonblocking(true)
            .map_err(|e| format!("activated socket fd {fd}: {e}"))?;
        out.push(UnixListener::from_std(l).map_err(|e| format!("activated socket fd {fd}: {e}"))?);
    }
    Ok(out)
}

pub async fn run(opts: DaemonOptions) -> Result<(), String> {
    write_pidfile(&opts.pidfile)?;
    let result = serve(&opts).await;
    let _ = std::fs::remove_file(&opts.pidfile);
    result
}

async fn serve(opts: &DaemonOptions) -> Result<(), String> {
    // Before anything answers: a SIGTERM right after the first /_ping must shut down cleanly.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let tls = match &opts.tls {
        Some(files) => Some(crate::tls::server_config(files)?),
        None => None,
    };
    crate::config::validate_socket_paths(&opts.hosts, None)?;
    let mut listeners = Vec::new();
    let mut paths = Vec::new();
    for h in &opts.hosts {
        if let Some(which) = h.strip_prefix("fd://") {
            listeners.extend(
                activated(which, &opts.activated_fds)?
                    .into_iter()
                    .map(Listener::Unix),
            );
            continue;
        }
        if let Some(addr) = h.strip_prefix("tcp://") {
            listeners.push(
                bind_tcp(
                    addr.trim_end_matches('/'),
                    tls.as_ref(),
                    opts.tls_explicitly_off,
                )
                .await?,
            );
            continue;
        }
        let p = socket_path(h)?;
        listeners.push(Listener::Unix(bind(&p)?));
        paths.push(p);
    }
    let engine = Engine::open(EngineConfig {
        data_root: opts.data_root.clone(),
        exec_root: opts.exec_root.clone(),
        berth_exe: opts.berth_exe.clone(),
        registry: berth_engine::RegistryConfig {
            insecure_registries: opts.insecure_registries.clone(),
            mirrors: opts.registry_mirrors.clone(),
            hosts_dir: Some(opts.registry_config_path.clone()),
        },
        network: opts.network.clone(),
        log_opts: opts.log_opts.clone(),
        experimental: opts.experimental,
        cgroup_driver: opts.cgroup_driver,
        default_cgroupns: opts.default_cgroupns,
        cni: berth_net_cni(opts),
    })
    .await
    .map_err(|e| e.to_string())?;
    // The Kubernetes front door, on its own socket (`--cri-socket ""` turns it off).
    let cri_stop = Arc::new(tokio::sync::Notify::new());
    let cri = match berth_cri::socket_path(&opts.cri_socket)? {
        Some(socket) => {
            let stop = cri_stop.clone();
            Some(
                berth_cri::serve(
                    engine.clone(),
                    berth_cri::CriOptions {
                        socket,
                        stream_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    },
                    async move { stop.notified().await },
                )
                .await?,
            )
        }
        None => None,
    };
    let app = router(AppState {
        engine: engine.clone(),
        buildkit: berth_buildkit::BuildKit::new(Arc::new(engine.clone())),
    });
    tracing::info!("API listening on {}", opts.hosts.join(", "));

    let shutdown = Arc::new(tokio::sync::Notify::new());
    let hygiene = opts.hygiene.clone();
    for l in listeners {
        let app = app.clone();
        let shutdown = shutdown.clone();
        let ctx = ConnCtx {
            tcp: l.is_tcp(),
            cors: hygiene.cors.as_deref().map(Arc::from),
        };
        let hygiene = hygiene.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = l.accept() => c,
                    _ = shutdown.notified() => return,
                };
                let accepted = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        continue;
                    }
                };
                let app = app.clone();
                let ctx = ctx.clone();
                let hygiene = hygiene.clone();
                tokio::spawn(async move {
                    let stream = match accepted.into_conn(hygiene.header_timeout).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!("connection dropped before its first request: {e}");
                            return;
                        }
                    };
                    let body_timeout = hygiene.body_timeout;
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let app = app.clone();
                        let ctx = ctx.clone();
                        async move {
                            let req = req
                                .map(|b| Body::new(crate::hygiene::IdleBody::new(b, body_timeout)));
                            Ok::<_, Infallible>(dispatch(app, ctx, req).await)
                        }
                    });
                    // The header timeout covers the first request's head and the idle time
                    // between requests on a kept-alive connection.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(hygiene.header_timeout)
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
    }

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down; containers keep running (live restore)");
    shutdown.notify_waiters();
    if let Some(cri) = cri {
        // A permit, so the CRI server stops even if it was not waiting yet.
        cri_stop.notify_one();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cri).await;
    }
    engine.shutdown();
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

fn berth_net_cni(opts: &DaemonOptions) -> berth_engine::network::CniConfig {
    berth_engine::network::CniConfig {
        conf_dir: opts.cni_conf_dir.clone(),
        bin_dirs: opts.cni_bin_dirs.clone(),
    }
}

pub fn status_only(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix() {
        let (v, p) = split_version("/v1.45/containers/json").ok().unwrap();
        assert_eq!(v, Some(ApiVersion(1, 45)));
        assert_eq!(p, "/containers/json");
        let (v, p) = split_version("/_ping").ok().unwrap();
        assert_eq!(v, None);
        assert_eq!(p, "/_ping");
        assert!(split_version("/v1.99/info").is_err());
        assert!(split_version("/v1.12/info").is_err());
        let (v, p) = split_version("/v1.24/version").ok().unwrap();
        assert_eq!(v, Some(ApiVersion(1, 24)));
        assert_eq!(p, "/version");
        // A path that merely starts with "v" is not a version.
        let (v, p) = split_version("/volumes").ok().unwrap();
        assert_eq!(v, None);
        assert_eq!(p, "/volumes");
    }
}
