//! `GET /containers/{id}/attach/ws`: attach over a WebSocket (RFC 6455). As Docker (API ≥ 1.42)
//! it is never multiplexed: every output write is one binary message, and every data message the
//! client sends goes to the container's stdin. The framing is small enough to write here: the
//! server sends unmasked frames and unmasks the client's, answers pings and closes.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use base64::Engine as _;
use berth_engine::{AttachOptions, LogsOptions};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::error::{ApiError, ApiResult};
use crate::params::Query;
use crate::server::AppState;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// The largest client message accepted (stdin is a stream of small writes).
const MAX_FRAME: u64 = 16 << 20;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One unmasked server frame (FIN set).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: (opcode, unmasked payload). `None` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).await?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "websocket frame too large",
        ));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Some((opcode, payload)))
}

/// Output chunks (stdcopy frames unless `raw`) as one binary message per payload.
fn messages(chunk: &[u8], raw: bool, demux: &mut berth_api::stdcopy::Demuxer) -> Vec<Vec<u8>> {
    if raw {
        return vec![frame(OP_BINARY, chunk)];
    }
    demux.push(chunk);
    let mut out = Vec::new();
    while let Ok(Some((_, payload))) = demux.next_frame() {
        out.push(frame(OP_BINARY, &payload));
    }
    out
}

pub async fn attach_ws(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    mut req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let key = {
        let hdr = |n: &str| -> Option<String> {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let is_ws = hdr("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        hdr("Sec-WebSocket-Key").filter(|_| is_ws)
    };
    // The request (its body is not Sync) must not be borrowed across an await.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let Some(key) = key else {
        return Err(ApiError::bad_request(
            "websocket: the client is not using the websocket protocol",
        ));
    };
    st.engine.inspect(&id, false).await?;
    let opts = AttachOptions {
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
    };
    let logs = if q.flag("logs") {
        let lo = LogsOptions {
            stdout: opts.stdout,
            stderr: opts.stderr,
            ..Default::default()
        };
        Some(st.engine.logs(&id, lo).await?)
    } else {
        None
    };
    // Registered before the 101 goes out: the client may start the container right after it.
    let attached = if q.flag("stream") {
        Some(st.engine.attach(&id, opts).await?)
    } else {
        None
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let client = hyper_util::rt::TokioIo::new(upgraded);
        serve(client, logs, attached, opts.stdin).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(&key)) {
        h.insert("Sec-WebSocket-Accept", v);
    }
    Ok(r)
}

async fn serve<C>(
    client: C,
    logs: Option<(bool, tokio::sync::mpsc::Receiver<bytes::Bytes>)>,
    attached: Option<berth_engine::AttachFuture>,
    stdin: bool,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut cr, cw) = tokio::io::split(client);
    let cw = std::sync::Arc::new(Mutex::new(cw));
    let send = |cw: std::sync::Arc<Mutex<tokio::io::WriteHalf<C>>>, data: Vec<u8>| async move {
        cw.lock().await.write_all(&data).await.is_ok()
    };
    if let Some((log_tty, mut rx)) = logs {
        let mut demux = berth_api::stdcopy::Demuxer::new();
        while let Some(chunk) = rx.recv().await {
            for m in messages(&chunk, log_tty, &mut demux) {
                if !send(cw.clone(), m).await {
                    return;
                }
            }
        }
    }
    let shim = match attached {
        Some(a) => match a.await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!("websocket attach ended: {e}");
                None
            }
        },
        None => None,
    };
    let Some(shim) = shim else {
        let _ = send(cw.clone(), frame(OP_CLOSE, &1000u16.to_be_bytes())).await;
        let _ = cw.lock().await.shutdown().await;
        return;
    };
    let (mut sr, mut sw) = tokio::io::split(shim.io);
    // Client messages: data to stdin, pings answered, a close ends the input.
    let cw_in = cw.clone();
    let input = tokio::spawn(async move {
        while let Ok(Some((op, payload))) = read_frame(&mut cr).await {
            match op {
                OP_TEXT | OP_BINARY | OP_CONT
                    if stdin && !payload.is_empty() && sw.write_all(&payload).await.is_err() =>
                {
                    break;
                }
                OP_PING => {
                    let _ = cw_in
                        .lock()
                        .await
                        .write_all(&frame(OP_PONG, &payload))
                        .await;
                }
                OP_CLOSE => {
                    let _ = cw_in
                        .lock()
                        .await
                        .write_all(&frame(OP_CLOSE, &payload))
                        .await;
                    break;
                }
                _ => {}
            }
        }
        if stdin {
            let _ = sw.shutdown().await;
        }
    });
    let mut buf = vec![0u8; 32 * 1024];
    let mut demux = berth_api::stdcopy::Demuxer::new();
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The shim always frames its output (stdcopy); a TTY's payload is sent as it is.
        let mut ok = true;
        for m in messages(&buf[..n], false, &mut demux) {
            if !send(cw.clone(), m).await {
                ok = false;
                break;
            }
        }
        if !ok {
            break;
        }
    }
    let _ = send(cw.clone(), frame(OP_CLOSE, &1000u16.to_be_bytes())).await;
    let _ = cw.lock().await.shutdown().await;
    input.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc6455() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame(OP_BINARY, b"hi"), vec![0x82, 2, b'h', b'i']);
        let f = frame(OP_BINARY, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        let f = frame(OP_BINARY, &vec![0u8; 70000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70000);
    }

    #[tokio::test]
    async fn reads_masked_client_frames() {
        let payload = b"stdin data";
        let mask = [1u8, 2, 3, 4];
        let mut wire = vec![0x82, 0x80 | payload.len() as u8];
        wire.extend_from_slice(&mask);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let mut r = &wire[..];
        let (op, p) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!((op, p.as_slice()), (OP_BINARY, &payload[..]));
        assert!(read_frame(&mut r).await.unwrap().is_none());
    }
}
