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
    // The client's side is read until the client closes it, whatever happens to the shim's
    // stdin: a connection closed with input still unread is reset (ECONNRESET at the client,
    // after or instead of the last output), which the docker CLI reports as an error. With
    // `exec -it` under `script`, the CLI forwards the EOF character script types when its
    // own stdin ends, often after the process has exited.
    let mut input = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut forward = stdin;
        let mut detached = false;
        let mut matcher = EscapeMatcher::new(keys);
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !forward {
                continue;
            }
            let (fwd, det) = matcher.feed(&buf[..n]);
            if !fwd.is_empty() && sw.write_all(&fwd).await.is_err() {
                // The process's stdin is gone (it exited): discard from now on.
                forward = false;
                continue;
            }
            if det {
                if let Some(tx) = detach_tx.take() {
                    let _ = tx.send(());
                }
                forward = false;
                detached = true;
            }
        }
        // After a detach the shim side stays open until the output side is gone: a half-close
        // would read as the end of stdin.
        if stdin && !detached {
            let _ = sw.shutdown().await;
        }
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
    // The client sees the end of the output and closes; until then (bounded) its input is
    // still read, so the close is not a reset.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut input).await;
    input.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process exits with the client's input still unread (its stdin no longer takes it):
    /// the client gets the whole output and then an orderly end, not a reset.
    #[tokio::test]
    async fn unread_input_does_not_reset_the_connection() {
        let (ours, mut client) = tokio::net::UnixStream::pair().expect("socketpair");
        // A shim whose stdin takes almost nothing: the client's input stays queued.
        let (shim_side, mut shim) = tokio::io::duplex(64);
        let keys = detach_keys(None).expect("keys");
        let pumping = tokio::spawn(pump(ours, shim_side, false, true, keys, async {}));
        client
            .write_all(&vec![b'x'; 64 * 1024])
            .await
            .expect("client input");
        shim.write_all(b"output").await.expect("shim output");
        drop(shim);
        let mut got = Vec::new();
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut got),
        )
        .await
        .expect("the output ends");
        assert_eq!(got, b"output");
        end.expect("an orderly end, not ECONNRESET");
        drop(client);
        tokio::time::timeout(std::time::Duration::from_secs(10), pumping)
            .await
            .expect("the pump ends when the client closes")
            .expect("pump");
    }
}
