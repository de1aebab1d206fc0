//! An async client for the Engine API over a unix socket or TCP.
//!
//! Every request opens its own connection: over a local socket that costs microseconds, and it
//! keeps streaming responses (logs, attach) independent of each other. Over TLS, where a
//! connection costs a handshake, a request reuses the last connection once its response has
//! been read; one whose response is still streaming is never shared.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
pub use http::Method;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::types::{ErrorResponse, JsonMessage};
use crate::{API_VERSION, MIN_API_VERSION};

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

const USER_AGENT: &str = concat!("berth-cli/", env!("CARGO_PKG_VERSION"));
/// Cap on an error body we buffer: error messages are small, a runaway body is not one.
const MAX_ERROR_BODY: usize = 1 << 20;

/// Errors from talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Cannot connect to the Berth daemon at {0}. Is the berth daemon running?")]
    Connect(String),
    #[error("permission denied while trying to connect to the Berth daemon socket at {0}")]
    PermissionDenied(String),
    #[error("invalid daemon host {0:?}: expected unix:///path or tcp://host:port")]
    InvalidHost(String),
    /// A non-2xx answer; `message` is the daemon's `{"message": ...}`.
    #[error("Error response from daemon: {message}")]
    Status { status: u16, message: String },
    #[error("error during connect: {0}")]
    Http(#[from] hyper::Error),
    #[error("error building request: {0}")]
    Request(#[from] http::Error),
    #[error("invalid JSON from daemon: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS settings that cannot be used (unreadable CA, key without certificate, ...).
    #[error("{0}")]
    Tls(String),
}

impl ApiError {
    /// The HTTP status of a daemon error response, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's message without the "Error response from daemon: " prefix.
    pub fn daemon_message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

impl Host {
    /// Parse `unix:///path`, `tcp://host:port` (or `http://`), or a bare absolute socket path.
    pub fn parse(s: &str) -> Result<Host> {
        Self::parse_with_default_port(s, 2375)
    }

    /// As [`Host::parse`], with the TCP port used when none is given (Docker's: 2375, or 2376
    /// with TLS).
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Host> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(ApiError::InvalidHost(s.to_string()));
            }
            return Ok(Host::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        let rest = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(|| ApiError::InvalidHost(s.to_string()))?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(ApiError::InvalidHost(s.to_string()));
        }
        // Docker's default TCP port when none is given.
        let addr = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            rest.to_string()
        } else {
            format!("{rest}:{default_port}")
        };
        Ok(Host::Tcp(addr))
    }

    /// The address as users write it.
    pub fn url(&self) -> String {
        match self {
            Host::Unix(p) => format!("unix://{}", p.display()),
            Host::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// A raw connection to the daemon.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    /// Half-closes the write side: the daemon sees EOF on the container's stdin.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A hijacked connection (attach, exec start): raw bidirectional bytes after the HTTP response.
pub struct Hijacked {
    /// Bytes that arrived with the response headers.
    prefix: Bytes,
    conn: Conn,
    /// The response's Content-Type; `application/vnd.docker.multiplexed-stream` when framed.
    pub content_type: Option<String>,
}

impl AsyncRead for Hijacked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Hijacked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}

type ReqBody = UnsyncBoxBody<Bytes, io::Error>;

/// A request body.
pub enum Body {
    Empty,
    /// Sent as `application/json`.
    Json(Vec<u8>),
    /// Streamed (chunked) from a reader with the given content type, e.g. a tar for load/import.
    Stream {
        content_type: String,
        reader: Box<dyn AsyncRead + Send + Unpin>,
    },
}

impl Body {
    pub fn json<T: Serialize>(v: &T) -> Result<Body> {
        Ok(Body::Json(serde_json::to_vec(v)?))
    }

    pub fn tar<R: AsyncRead + Send + Unpin + 'static>(reader: R) -> Body {
        Body::Stream {
            content_type: "application/x-tar".into(),
            reader: Box::new(reader),
        }
    }
}

/// A successful response whose body is read incrementally.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
}

impl Response {
    /// The next chunk of body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes> {
        Ok(self.body.collect().await?.to_bytes())
    }

    pub async fn json<T: DeserializeOwned>(self) -> Result<T> {
        let b = self.bytes().await?;
        Ok(serde_json::from_slice(&b)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decode the body as a JSON-lines progress stream.
    pub fn json_lines(self) -> JsonLines {
        JsonLines {
            resp: self,
            buf: BytesMut::new(),
            done: false,
        }
    }
}

/// A stream of [`JsonMessage`]s (one JSON value per line; Docker sometimes omits newlines between
/// values, so values are split by parsing, not by newline).
pub struct JsonLines {
    resp: Response,
    buf: BytesMut,
    done: bool,
}

impl JsonLines {
    pub async fn next(&mut self) -> Result<Option<JsonMessage>> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            let _ = self.buf.split_to(start);
            if !self.buf.is_empty() {
                let mut it =
                    serde_json::Deserializer::from_slice(&self.buf).into_iter::<JsonMessage>();
                match it.next() {
                    Some(Ok(m)) => {
                        let used = it.byte_offset();
                        let _ = self.buf.split_to(used);
                        return Ok(Some(m));
                    }
                    Some(Err(e)) if e.is_eof() && !self.done => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
            if self.done {
                return Ok(None);
            }
            match self.resp.chunk().await? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => self.done = true,
            }
        }
    }
}

/// Percent-encode a query component (RFC 3986 unreserved characters pass through).
pub fn encode_query_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?a=1&b=x%20y` from pairs (empty string when there are none).
pub fn query_string(query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode_query_component(k),
                encode_query_component(v)
            )
        })
        .collect();
    format!("?{}", parts.join("&"))
}

/// Compare dotted API versions numerically ("1.9" < "1.45").
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a).cmp(&parse(b))
}

/// TLS of a TCP connection: the configuration and the name the daemon's certificate is for.
struct Tls {
    config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

/// The Engine API client.
pub struct Client {
    host: Host,
    /// The negotiated API version; `None` until the first request pings the daemon.
    version: Mutex<Option<String>>,
    tls: Option<Tls>,
    /// Over TLS, the last connection, kept for the next request (see `send_raw`).
    idle: Mutex<Option<hyper::client::conn::http1::SendRequest<ReqBody>>>,
}

impl Client {
    pub fn new(host: &str) -> Result<Client> {
        Self::new_with_tls(host, None)
    }

    /// A client that speaks TLS to a `tcp://` host when `tls` is given (default port 2376);
    /// TLS options do not apply to unix sockets.
    pub fn new_with_tls(host: &str, tls: Option<&crate::tls::TlsOptions>) -> Result<Client> {
        let host = Host::parse_with_default_port(host, if tls.is_some() { 2376 } else { 2375 })?;
        let tls = match (&host, tls) {
            (Host::Tcp(addr), Some(opts)) => Some(Tls {
                config: crate::tls::client_config(opts)?,
                name: crate::tls::server_name(addr)?,
            }),
            _ => None,
        };
        Ok(Client {
            host,
            version: Mutex::new(None),
            tls,
            idle: Mutex::new(None),
        })
    }

    /// Use a fixed API version instead of negotiating (DOCKER_API_VERSION).
    pub fn with_version(self, v: &str) -> Client {
        if let Ok(mut g) = self.version.lock() {
            *g = Some(v.trim_start_matches('v').to_string());
        }
        self
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    async fn connect(&self) -> Result<Conn> {
        let r = match &self.host {
            Host::Unix(p) => UnixStream::connect(p).await.map(Conn::Unix),
            Host::Tcp(a) => TcpStream::connect(a.as_str()).await.map(|s| {
                // Interactive attach sends small writes; do not batch them.
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
        };
        let conn = r.map_err(|e| self.connect_error(e))?;
        match (conn, &self.tls) {
            (Conn::Tcp(s), Some(tls)) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let s = connector.connect(tls.name.clone(), s).await.map_err(|e| {
                    ApiError::Io(io::Error::new(
                        e.kind(),
                        format!("error during connect to {}: {e}", self.host.url()),
                    ))
                })?;
                Ok(Conn::Tls(Box::new(s)))
            }
            (c, _) => Ok(c),
        }
    }

    fn connect_error(&self, e: io::Error) -> ApiError {
        match e.kind() {
            io::ErrorKind::PermissionDenied => ApiError::PermissionDenied(self.host.url()),
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NotADirectory => ApiError::Connect(self.host.url()),
            _ => ApiError::Io(io::Error::new(
                e.kind(),
                format!("error during connect to {}: {e}", self.host.url()),
            )),
        }
    }

    fn host_header(&self) -> String {
        match &self.host {
            // Any name works over a socket; this is the one Docker's client sends.
            Host::Unix(_) => "api.moby.localhost".into(),
            Host::Tcp(a) => a.clone(),
        }
    }

    /// `GET /_ping` (unversioned); returns the daemon's `Api-Version` header if any.
    pub async fn ping(&self) -> Result<Option<String>> {
        let resp = self
            .send_raw(Method::GET, "/_ping".into(), Body::Empty, &[])
            .await?;
        let v = resp
            .headers
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = resp.status;
        let body = resp.body.collect().await?.to_bytes();
        if !status.is_success() {
            return Err(error_from_body(status, &body));
        }
        Ok(v)
    }

    /// The API version in use, pinging the daemon the first time.
    pub async fn api_version(&self) -> Result<String> {
        if let Ok(g) = self.version.lock() {
            if let Some(v) = g.as_ref() {
                return Ok(v.clone());
            }
        }
        let server = match self.ping().await {
            Ok(v) => v,
            // A daemon that answers but not /_ping: speak our version, as docker's client does.
            Err(ApiError::Status { .. }) => None,
            Err(e) => return Err(e),
        };
        let v = match server {
            // Speak the daemon's version if it is older than ours, never below our minimum.
            Some(s) if version_cmp(&s, API_VERSION).is_lt() => {
                if version_cmp(&s, MIN_API_VERSION).is_lt() {
                    MIN_API_VERSION.to_string()
                } else {
                    s
                }
            }
            _ => API_VERSION.to_string(),
        };
        if let Ok(mut g) = self.version.lock() {
            *g = Some(v.clone());
        }
        Ok(v)
    }

    async fn uri(&self, path: &str, query: &[(&str, String)]) -> Result<String> {
        let v = self.api_version().await?;
        Ok(format!("/v{v}{path}{}", query_string(query)))
    }

    async fn send_raw(
        &self,
        method: Method,
        uri: String,
        body: Body,
        extra: &[(&str, String)],
    ) -> Result<Response> {
        // Over TLS a connection costs a handshake: a request reuses the previous connection when
        // its response has been read (a `ps` is a ping then a list: one handshake, not two).
        let mut reused = None;
        if self.tls.is_some() {
            reused = self.idle_sender().await;
        }
        let is_reused = reused.is_some();
        let mut sender = match reused {
            Some(s) => s,
            None => self.new_sender().await?,
        };
        let req = self.build_request(method, uri, body, extra)?;
        let resp = match sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                // The daemon closed the kept connection before the request went out (its idle
                // timeout): the same request on a new connection.
                Some(req) if is_reused => {
                    sender = self.new_sender().await?;
                    sender.send_request(req).await?
                }
                _ => return Err(e.into_error().into()),
            },
        };
        if self.tls.is_some() {
            if let Ok(mut g) = self.idle.lock() {
                *g = Some(sender);
            }
        }
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A new connection, ready for one request at a time.
    async fn new_sender(&self) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>> {
        let conn = self.connect().await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, ReqBody>(TokioIo::new(conn)).await?;
        tokio::spawn(async move {
            // Errors surface through the response future; nothing to do with them here.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// The kept connection if it is open and its last response has been read.
    async fn idle_sender(&self) -> Option<hyper::client::conn::http1::SendRequest<ReqBody>> {
        let s = self.idle.lock().ok()?.take()?;
        if !s.is_ready() {
            // The connection task may not have seen the end of the last body yet.
            tokio::task::yield_now().await;
        }
        (s.is_ready() && !s.is_closed()).then_some(s)
    }

    fn build_request(
        &self,
        method: Method,
        uri: String,
        body: Body,
        extra: &[(&str, String)],
    ) -> Result<Request<ReqBody>> {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, self.host_header())
            .header(http::header::USER_AGENT, USER_AGENT);
        let builder = extra
            .iter()
            .fold(builder, |b, (k, v)| b.header(*k, v.as_str()));
        let req = match body {
            Body::Empty => builder.body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )?,
            Body::Json(b) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(
                    Full::new(Bytes::from(b))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )?,
            Body::Stream {
                content_type,
                reader,
            } => {
                let stream = futures_util::stream::unfold(Some(reader), |r| async move {
                    let mut r = r?;
                    let mut buf = vec![0u8; 64 * 1024];
                    match r.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Frame::data(Bytes::from(buf))), Some(r)))
                        }
                        Err(e) => Some((Err(e), None)),
                    }
                });
                builder
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(StreamBody::new(stream).boxed_unsync())?
            }
        };
        Ok(req)
    }

    /// Send a request to a versioned path; non-2xx answers become [`ApiError::Status`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Response> {
        self.request_with_headers(method, path, query, body, &[])
            .await
    }

    /// As [`Client::request`], with extra request headers (e.g. `X-Registry-Auth`).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        headers: &[(&str, String)],
    ) -> Result<Response> {
        let uri = self.uri(path, query).await?;
        let resp = self.send_raw(method, uri, body, headers).await?;
        if resp.status.is_success() {
            return Ok(resp);
        }
        let status = resp.status;
        let mut body = BytesMut::new();
        let mut resp = resp;
        while let Some(c) = resp.chunk().await? {
            body.extend_from_slice(&c);
            if body.len() > MAX_ERROR_BODY {
                break;
            }
        }
        Err(error_from_body(status, &body))
    }

    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.request(Method::GET, path, query, Body::Empty)
            .await?
            .json()
            .await
    }

    /// POST and parse a JSON answer.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<T> {
        self.request(Method::POST, path, query, body)
            .await?
            .json()
            .await
    }

    /// POST and discard the answer (204s).
    pub async fn post(&self, path: &str, query: &[(&str, String)], body: Body) -> Result<()> {
        self.request(Method::POST, path, query, body)
            .await?
            .bytes()
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Response> {
        self.request(Method::DELETE, path, query, Body::Empty).await
    }

    pub async fn head(&self, path: &str, query: &[(&str, String)]) -> Result<Response> {
        self.request(Method::HEAD, path, query, Body::Empty).await
    }

    /// Open a hijacked connection (`POST /containers/{id}/attach`, exec start): sends
    /// `Connection: Upgrade` / `Upgrade: tcp` and accepts `101` or, like older daemons, a `200`
    /// followed by the raw stream.
    pub async fn hijack(
        &self,
        path: &str,
        query: &[(&str, String)],
        json_body: Option<Vec<u8>>,
    ) -> Result<Hijacked> {
        let uri = self.uri(path, query).await?;
        let mut conn = self.connect().await?;
        let body = json_body.unwrap_or_default();
        let mut head = format!(
            "POST {uri} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n",
            self.host_header(),
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(&body).await?;
        conn.flush().await?;

        let mut buf = BytesMut::with_capacity(4096);
        let (status, header_len, content_type, content_length) = loop {
            if buf.len() > 64 * 1024 {
                return Err(ApiError::Protocol("response headers too large".into()));
            }
            let n = conn.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(ApiError::Protocol(
                    "connection closed before the attach response".into(),
                ));
            }
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let find = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                            .map(str::to_string)
                    };
                    let ct = find("content-type");
                    let cl = find("content-length").and_then(|v| v.trim().parse::<usize>().ok());
                    break (resp.code.unwrap_or(0), len, ct, cl);
                }
                Ok(httparse::Status::Partial) => continue,
                Err(e) => return Err(ApiError::Protocol(format!("bad attach response: {e}"))),
            }
        };
        let rest = buf.split_off(header_len).freeze();
        if status == 101 || status == 200 {
            return Ok(Hijacked {
                prefix: rest,
                conn,
                content_type,
            });
        }
        // An error: read its body (bounded by Content-Length, else to EOF).
        let mut body = BytesMut::from(&rest[..]);
        let want = content_length.unwrap_or(MAX_ERROR_BODY);
        while body.len() < want.min(MAX_ERROR_BODY) {
            if conn.read_buf(&mut body).await? == 0 {
                break;
            }
        }
        body.truncate(want.min(body.len()));
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Err(error_from_body(code, &body))
    }
}

/// A request already written to the daemon whose response has not been read yet.
///
/// `run` needs this: the wait must be registered before the container starts, and a daemon may
/// hold back even the response headers of a wait until the container exits.
pub struct PendingRequest {
    conn: Conn,
    /// Response bytes read so far.
    buf: Vec<u8>,
}

impl PendingRequest {
    /// Wait (at most `limit`) for the response headers. Docker's daemon, like ours, registers a
    /// wait before it sends them, so once they are here the container may be started safely.
    pub async fn headers(&mut self, limit: std::time::Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout_at(deadline, self.conn.read(&mut chunk)).await {
                // A daemon that holds its headers back: go on and hope, as docker's CLI does.
                Err(_) => return Ok(()),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Read the whole response (the request asked for `Connection: close`); non-2xx answers become
    /// [`ApiError::Status`].
    pub async fn finish(mut self) -> Result<Bytes> {
        let mut buf = std::mem::take(&mut self.buf);
        self.conn.read_to_end(&mut buf).await?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return Err(ApiError::Protocol(
                    "connection closed before the response ended".into(),
                ))
            }
            Err(e) => return Err(ApiError::Protocol(format!("bad response: {e}"))),
        };
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked")
        });
        let status = resp.code.unwrap_or(0);
        let raw = &buf[len..];
        let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
        if (200..300).contains(&status) {
            return Ok(Bytes::from(body));
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Err(error_from_body(code, &body))
    }

    pub async fn finish_json<T: DeserializeOwned>(self) -> Result<T> {
        let b = self.finish().await?;
        Ok(serde_json::from_slice(&b)?)
    }
}

/// Decode a complete HTTP/1.1 chunked body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Err(ApiError::Protocol("truncated chunked body".into()));
        };
        let size_txt = String::from_utf8_lossy(&raw[..eol]);
        let size_txt = size_txt.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_txt, 16)
            .map_err(|_| ApiError::Protocol(format!("bad chunk size {size_txt:?}")))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size {
            return Err(ApiError::Protocol("truncated chunk".into()));
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

impl Client {
    /// Write a body-less request and return before reading the response.
    pub async fn send_early(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<PendingRequest> {
        let uri = self.uri(path, query).await?;
        let mut conn = self.connect().await?;
        let head = format!(
            "{method} {uri} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.host_header()
        );
        conn.write_all(head.as_bytes()).await?;
        conn.flush().await?;
        Ok(PendingRequest {
            conn,
            buf: Vec::new(),
        })
    }
}

/// Turn an error body into [`ApiError::Status`]: `{"message"}` when JSON, the text otherwise.
pub fn error_from_body(status: StatusCode, body: &[u8]) -> ApiError {
    let message = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("error")
                )
            } else {
                text
            }
        }
    };
    ApiError::Status {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hosts() {
        assert_eq!(
            Host::parse("unix:///run/berth/berth.sock").ok(),
            Some(Host::Unix("/run/berth/berth.sock".into()))
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2375").ok(),
            Some(Host::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            Host::parse("tcp://example").ok(),
            Some(Host::Tcp("example:2375".into()))
        );
        assert!(Host::parse("ftp://x").is_err());
        assert!(Host::parse("unix://").is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(query_string(&[]), "");
        assert_eq!(
            query_string(&[("filters", r#"{"a":["b c"]}"#.into()), ("all", "1".into())]),
            "?filters=%7B%22a%22%3A%5B%22b%20c%22%5D%7D&all=1"
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_cmp("1.9", "1.45").is_lt());
        assert!(version_cmp("1.45", "1.45").is_eq());
        assert!(version_cmp("1.46", "1.45").is_gt());
    }

    #[test]
    fn error_bodies() {
        let e = error_from_body(
            StatusCode::NOT_FOUND,
            br#"{"message":"No such container: x"}"#,
        );
        assert_eq!(
            e.to_string(),
            "Error response from daemon: No such container: x"
        );
        assert_eq!(e.status(), Some(404));
        let e = error_from_body(StatusCode::INTERNAL_SERVER_ERROR, b"boom\n");
        assert_eq!(e.daemon_message(), Some("boom"));
        let e = error_from_body(StatusCode::NOT_FOUND, b"");
        assert_eq!(e.daemon_message(), Some("404 Not Found"));
    }

    #[tokio::test]
    async fn missing_socket_is_a_connect_error() {
        let c = Client::new("unix:///nonexistent/berth-test.sock").expect("host");
        let e = c.ping().await.err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Cannot connect to the Berth daemon at unix:///nonexistent/berth-test.sock. Is the berth daemon running?")
        );
    }

    /// A one-shot fake daemon on a unix socket answering with `response`.
    async fn fake_daemon(response: &'static [u8]) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("d.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            }
        });
        let url = format!("unix://{}", path.display());
        (dir, url)
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "berth-api-test-{}-{:?}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                std::fs::create_dir_all(&path).expect("mkdir");
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[tokio::test]
    async fn status_error_from_fake_daemon() {
        let (_d, url) = fake_daemon(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{\"message\":\"No such container: x\"}",
        )
        .await;
        let c = Client::new(&url).expect("host").with_version("1.45");
        let e = c
            .get_json::<serde_json::Value>("/containers/x/json", &[])
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Error response from daemon: No such container: x")
        );
    }

    #[tokio::test]
    async fn hijack_accepts_101_and_keeps_early_bytes() {
        let (_d, url) = fake_daemon(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello",
        )
        .await;
        let c = Client::new(&url).expect("host").with_version("1.45");
        let mut h = c
            .hijack("/containers/x/attach", &[("stream", "1".into())], None)
            .await
            .expect("hijack");
        let mut out = Vec::new();
        h.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, b"hello");
        assert_eq!(
            h.content_type.as_deref(),
            Some("application/vnd.docker.raw-stream")
        );
    }

    #[tokio::test]
    async fn hijack_accepts_200_raw_stream() {
        let (_d, url) = fake_daemon(b"HTTP/1.1 200 OK\r\n\r\nraw").await;
        let c = Client::new(&url).expect("host").with_version("1.45");
        let mut h = c
            .hijack("/containers/x/attach", &[], None)
            .await
            .expect("hijack");
        let mut out = Vec::new();
        h.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, b"raw");
    }

    #[tokio::test]
    async fn early_request_reads_chunked_body() {
        let (_d, url) = fake_daemon(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"Sta\r\nE\r\ntusCode\":137}\n\r\n0\r\n\r\n",
        )
        .await;
        let c = Client::new(&url).expect("host").with_version("1.45");
        let p = c
            .send_early("POST", "/containers/x/wait", &[])
            .await
            .expect("send");
        let w: crate::types::ContainerWaitResponse = p.finish_json().await.expect("json");
        assert_eq!(w.status_code, 137);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n").expect("ok"), b"abc");
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[tokio::test]
    async fn negotiates_lower_version() {
        let (_d, url) =
            fake_daemon(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK")
                .await;
        let c = Client::new(&url).expect("host");
        assert_eq!(c.api_version().await.expect("v"), "1.41");
    }

    #[tokio::test]
    async fn json_lines_split_values() {
        let (_d, url) = fake_daemon(
            b"HTTP/1.1 200 OK\r\nContent-Length: 56\r\n\r\n{\"stream\":\"Loaded image: a\\n\"}{\"status\":\"x\"}\r\n{\"id\":\"1\"}",
        )
        .await;
        let c = Client::new(&url).expect("host").with_version("1.45");
        let r = c
            .request(Method::POST, "/images/load", &[], Body::Empty)
            .await
            .expect("req");
        let mut lines = r.json_lines();
        let mut got = Vec::new();
        while let Some(m) = lines.next().await.expect("line") {
            got.push(m);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].stream.as_deref(), Some("Loaded image: a\n"));
        assert_eq!(got[2].id.as_deref(), Some("1"));
    }
}
