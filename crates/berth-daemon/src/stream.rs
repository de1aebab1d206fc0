//! The hijacked stream of an attach or an exec start: shim output to the client (stdcopy frames,
//! or the bare payload for a TTY), client stdin to the shim, scanned for the detach keys.

use std::future::Future;

use berth_api::detach::{parse_keys, EscapeMatcher, DEFAULT_KEYS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ApiError, ApiResult};

/// The `detachKeys` parameter (Docker's default when absent or empty), or Docker's 400.
pub fn detach_keys(param: Option<&str>) -> ApiResult<Vec<u8>> {
    let spec = param.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_KEYS);
    parse_keys(spec)
        .map_err(|_| ApiError::bad_request(format!("Invalid detach keys ({spec}) provided")))
}

/// Joins client and shim until the shim's output ends, the client goes, or the client types
/// the detach keys (which end the attachment and leave the process alone). `before_close`
/// runs after the output ended and before the client's connection is closed (an exec start
/// records the exit code there, so the client's next inspect sees it).
pub async fn pump<C, S, F>(
    client: C,
    shim: S,
    tty: bool,
    stdin: bool,
    keys: Vec<u8>,
    before_close: F,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(shim);
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let mut detach_tx = Some(detach_tx);
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        if !stdin {
            // Keep reading so we notice the client closing, but discard.
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            return;
        }
        let mut matcher = EscapeMatcher::new(keys);
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (fwd, detached) = matcher.feed(&buf[..n]);
            if !fwd.is_empty() && sw.write_all(&fwd).await.is_err() {
                return;
            }
            if detached {
                if let Some(tx) = detach_tx.take() {
                    let _ = tx.send(());
                }
                // Keep the shim side open until the output side is gone: a half-close would
                // read as the end of stdin.
                std::future::pending::<()>().await;
            }
        }
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    let mut demux = berth_api::stdcopy::Demuxer::new();
    let mut detached = false;
    let mut input_done = false;
    loop {
        let n = tokio::select! {
            r = sr.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            r = &mut detach_rx, if !input_done => match r {
                Ok(()) => {
                    detached = true;
                    break;
                }
                // stdin ended without a detach: keep forwarding output.
                Err(_) => {
                    input_done = true;
                    continue;
                }
            }
        };
        let ok = if tty {
            demux.push(&buf[..n]);
            let mut ok = true;
            while let Ok(Some((_, payload))) = demux.next_frame() {
                if cw.write_all(&payload).await.is_err() {
                    ok = false;
                    break;
                }
            }
            ok
        } else {
            cw.write_all(&buf[..n]).await.is_ok()
        };
        if !ok {
            break;
        }
    }
    if !detached {
        before_close.await;
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    input.abort();
}
