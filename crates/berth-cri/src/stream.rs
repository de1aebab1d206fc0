//! The streaming server of Exec, Attach and PortForward, as the kubelet's: the CRI call answers
//! with a URL on this server (`http://127.0.0.1:<port>/exec/<token>`, single use, valid for a
//! minute); the client upgrades the request to SPDY/3.1 and names its protocol in
//! `X-Stream-Protocol-Version`: `v5`..`v2.channel.k8s.io` for exec and attach (streams `error`,
//! `stdin`, `stdout`, `stderr`, `resize`; the exit status is a JSON `Status` on `error` from v4
//! on), `portforward.k8s.io` for port forwarding (an `error` and a `data` stream per
//! connection, paired by `requestid`, for the `port` header's port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_engine::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spdy::{self, Stream, StreamSender};

const TOKEN_TTL: Duration = Duration::from_secs(60);
/// How long a client has to open the streams it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);
const REMOTECOMMAND: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PORTFORWARD: &str = "portforward.k8s.io";

#[derive(Clone, Debug)]
pub enum StreamRequest {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container_id: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    PortForward {
        pod_id: String,
    },
}

impl StreamRequest {
    fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

pub struct StreamServer {
    addr: SocketAddr,
    pending: Mutex<HashMap<String, (StreamRequest, Instant)>>,
}

impl StreamServer {
    /// Binds `addr` (port 0: any) and serves until the runtime ends.
    pub async fn start(engine: Engine, addr: SocketAddr) -> std::io::Result<Arc<StreamServer>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let server = Arc::new(StreamServer {
            addr: listener.local_addr()?,
            pending: Mutex::new(HashMap::new()),
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (s, engine) = (s.clone(), engine.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, engine) = (s.clone(), engine.clone());
                        async move { Ok::<_, std::convert::Infallible>(s.handle(engine, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers a request; returns its URL.
    pub fn register(&self, req: StreamRequest) -> String {
        let token = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
        };
        let kind = req.kind();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        p.insert(token.clone(), (req, Instant::now()));
        format!("http://{}/{kind}/{token}", self.addr)
    }

    fn take(&self, kind: &str, token: &str) -> Option<StreamRequest> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (req, at) = p.remove(token)?;
        (req.kind() == kind && at.elapsed() < TOKEN_TTL).then_some(req)
    }

    fn handle(&self, engine: Engine, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_start_matches('/').to_string();
        let Some((kind, token)) = path.split_once('/') else {
            return plain(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let Some(sreq) = self.take(kind, token) else {
            return plain(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let upgrade_ok = req
            .headers()
            .get_all(hyper::header::UPGRADE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("SPDY/3.1")));
        if !upgrade_ok {
            return plain(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing upgrade headers in request\n",
            );
        }
        let offered: Vec<String> = req
            .headers()
            .get_all("X-Stream-Protocol-Version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let supported: &[&str] = match sreq {
            StreamRequest::PortForward { .. } => &[PORTFORWARD],
            _ => REMOTECOMMAND,
        };
        let chosen = if offered.is_empty() {
            // No negotiation: the oldest protocol.
            supported.last().copied().unwrap_or_default().to_string()
        } else {
            match offered.iter().find(|o| supported.contains(&o.as_str())) {
                Some(p) => p.clone(),
                None => {
                    return plain(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}\n"
                        ),
                    )
                }
            }
        };
        let version = REMOTECOMMAND
            .iter()
            .position(|p| *p == chosen)
            .map(|i| 5 - i as u8)
            .unwrap_or(0);
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("stream upgrade: {e}");
                    return;
                }
            };
            let (streams, writer) = spdy::accept(TokioIo::new(upgraded));
            match sreq {
                StreamRequest::PortForward { pod_id } => {
                    port_forward(engine, pod_id, streams).await;
                }
                other => remote_command(engine, other, version, streams).await,
            }
            writer.go_away();
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", chosen)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response\n"))
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// The streams of one exec or attach.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Waits for the streams the request implies (the client opens them right after the upgrade).
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stream>,
    want_stdin: bool,
    want_stdout: bool,
    want_stderr: bool,
    want_resize: bool,
) -> Option<Streams> {
    let mut s = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_WAIT;
    loop {
        let complete = s.error.is_some()
            && (!want_stdin || s.stdin.is_some())
            && (!want_stdout || s.stdout.is_some())
            && (!want_stderr || s.stderr.is_some())
            && (!want_resize || s.resize.is_some());
        if complete {
            return Some(s);
        }
        let st = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        let slot = match st.header("streamtype") {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            _ => {
                st.reset();
                continue;
            }
        };
        *slot = Some(st);
    }
}

/// The exit status as the client's protocol carries it on the error stream.
fn status_message(version: u8, code: i64, cmd: &[String]) -> Option<String> {
    if version >= 4 {
        if code == 0 {
            return Some(r#"{"metadata":{},"status":"Success"}"#.into());
        }
        return Some(
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
            .to_string(),
        );
    }
    (code != 0).then(|| format!("command terminated with non-zero exit code: exit code {code}"))
}

fn failure_message(version: u8, msg: &str) -> String {
    if version >= 4 {
        serde_json::json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError"})
            .to_string()
    } else {
        msg.to_string()
    }
}

async fn remote_command(
    engine: Engine,
    req: StreamRequest,
    version: u8,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Stream>,
) {
    let (tty, stdin, stdout, stderr) = match &req {
        StreamRequest::Exec {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        }
        | StreamRequest::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (*tty, *stdin, *stdout, *stderr),
        StreamRequest::PortForward { .. } => return,
    };
    let Some(mut streams) =
        collect(&mut rx, stdin, stdout, stderr && !tty, tty && version >= 3).await
    else {
        return;
    };
    let Some(error) = streams.error.take() else {
        return;
    };
    let res = match &req {
        StreamRequest::Exec {
            container_id, cmd, ..
        } => {
            crate::runtime::exec_stream(&engine, container_id, cmd, tty, stdin, stdout, stderr)
                .await
        }
        StreamRequest::Attach { container_id, .. } => {
            crate::runtime::attach_stream(&engine, container_id, stdin, stdout, stderr).await
        }
        StreamRequest::PortForward { .. } => return,
    };
    let session = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = error.write(failure_message(version, &e.message()).as_bytes());
            error.close();
            return;
        }
    };
    let (mut io_rd, mut io_wr) = tokio::io::split(session.io);
    // stdin -> the process; its end half-closes the process's stdin.
    if let Some(mut s) = streams.stdin.take() {
        tokio::spawn(async move {
            while let Some(d) = s.read().await {
                if io_wr.write_all(&d).await.is_err() {
                    return;
                }
            }
            let _ = io_wr.shutdown().await;
        });
    }
    if let (Some(mut r), Some(resize)) = (streams.resize.take(), session.resize.clone()) {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(d) = r.read().await {
                buf.extend_from_slice(&d);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    #[derive(serde::Deserialize)]
                    struct Size {
                        #[serde(rename = "Width")]
                        width: u16,
                        #[serde(rename = "Height")]
                        height: u16,
                    }
                    if let Ok(sz) = serde_json::from_slice::<Size>(&line) {
                        resize(sz.height as u32, sz.width as u32).await;
                    }
                }
            }
        });
    }
    let out: Option<StreamSender> = streams.stdout.as_ref().map(Stream::sender);
    let err: Option<StreamSender> = streams.stderr.as_ref().map(Stream::sender);
    // The process's output until it ends, in the shim's stdcopy frames (a TTY's is all stdout).
    let mut demux = berth_api::stdcopy::Demuxer::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match io_rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        demux.push(&buf[..n]);
        while let Ok(Some((kind, data))) = demux.next_frame() {
            let target = match kind {
                berth_api::stdcopy::StreamKind::Stdout => &out,
                berth_api::stdcopy::StreamKind::Stderr => &err,
                _ => &None,
            };
            if let Some(t) = target {
                let _ = t.write(&data);
            }
        }
    }
    if let Some(o) = &out {
        o.close();
    }
    if let Some(e) = &err {
        e.close();
    }
    let code = (session.exit_code)().await;
    let cmd = match &req {
        StreamRequest::Exec { cmd, .. } => cmd.clone(),
        _ => Vec::new(),
    };
    if let Some(m) = code.and_then(|c| status_message(version, c, &cmd)) {
        let _ = error.write(m.as_bytes());
    }
    error.close();
}

async fn port_forward(
    engine: Engine,
    pod_id: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Stream>,
) {
    // requestid -> (error stream, data stream) until both are there.
    let mut pairs: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(s) = rx.recv().await {
        let rid = s.header("requestid").to_string();
        let typ = s.header("streamtype").to_string();
        let e = pairs.entry(rid.clone()).or_default();
        match typ.as_str() {
            "error" => e.0 = Some(s),
            "data" => e.1 = Some(s),
            _ => {
                s.reset();
                continue;
            }
        }
        if let (Some(_), Some(_)) = (&e.0, &e.1) {
            if let Some((Some(err), Some(data))) = pairs.remove(&rid) {
                tokio::spawn(forward_one(engine.clone(), pod_id.clone(), err, data));
            }
        }
    }
}

async fn forward_one(engine: Engine, pod_id: String, err: Stream, mut data: Stream) {
    let port: u16 = match data.header("port").parse() {
        Ok(p) if p > 0 => p,
        _ => {
            let _ = err.write(format!("invalid port {:?}", data.header("port")).as_bytes());
            err.close();
            data.close();
            return;
        }
    };
    let conn = match engine.pod_connect(&pod_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let _ = err.write(e.to_string().as_bytes());
            err.close();
            data.close();
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let out = data.sender();
    let upstream = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        out.close();
    };
    let downstream = async move {
        while let Some(d) = data.read().await {
            if wr.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(upstream, downstream);
    err.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_per_protocol() {
        assert_eq!(
            status_message(4, 0, &[]).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&status_message(5, 3, &["false".into()]).unwrap()).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert_eq!(status_message(2, 0, &[]), None);
        assert!(status_message(3, 1, &[]).unwrap().contains("exit code 1"));
    }

    #[tokio::test]
    async fn tokens_are_single_use_and_typed() {
        let engine_free = StreamServer {
            addr: "127.0.0.1:1".parse().unwrap(),
            pending: Mutex::new(HashMap::new()),
        };
        let url = engine_free.register(StreamRequest::PortForward { pod_id: "p".into() });
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:1/portforward/"));
        assert!(engine_free.take("exec", &token).is_none());
        let url = engine_free.register(StreamRequest::PortForward { pod_id: "p".into() });
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(engine_free.take("portforward", &token).is_some());
        assert!(engine_free.take("portforward", &token).is_none());
    }
}
