//! Exec routes: `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `POST /exec/{id}/resize`,
//! `GET /exec/{id}/json`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use berth_api::types::{ExecConfig, ExecStartConfig, IdResponse};
use tokio::io::AsyncWriteExt;

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{status_only, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let cfg: ExecConfig = if body.is_empty() {
        ExecConfig::default()
    } else {
        let mut v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
        // Docker decodes case-insensitively; docker-py sends `detachKeys`.
        if let Some(o) = v.as_object_mut() {
            if !o.contains_key("DetachKeys") {
                if let Some(k) = o.remove("detachKeys") {
                    o.insert("DetachKeys".into(), k);
                }
            }
        }
        serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    crate::stream::detach_keys(Some(&cfg.detach_keys))?;
    let exec_id = st.engine.exec_create(&id, cfg).await?;
    let mut r = json_response(&IdResponse { id: exec_id });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    Ok(json_response(&st.engine.exec_inspect(&id)?))
}

async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let h = q.int("h").map_err(ApiError::bad_request)?.unwrap_or(0);
    let w = q.int("w").map_err(ApiError::bad_request)?.unwrap_or(0);
    if h < 0 || w < 0 || h > u16::MAX as i64 || w > u16::MAX as i64 {
        return Err(ApiError::bad_request("invalid terminal size"));
    }
    st.engine.exec_resize(&id, h as u32, w as u32).await?;
    Ok(status_only(StatusCode::OK))
}

/// Starts the process before answering, so a start failure is an HTTP error; the output is
/// held in the exec's shim until the stream is joined, so nothing is lost.
async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
    mut req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let upgrade = req
        .headers()
        .get("Upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    crate::hygiene::check_json(req.headers(), !body.is_empty())?;
    let cfg: ExecStartConfig = if body.is_empty() {
        ExecStartConfig::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let info = st.engine.exec_inspect(&id)?;
    let keys = crate::stream::detach_keys(Some(&info.detach_keys))?;
    // Docker frames the stream unless the *start* asks for a TTY (docker-py relies on it).
    let tty = cfg.tty;
    let content_type = HeaderValue::from_static(if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    });
    let engine = st.engine.clone();
    let stdin = info.open_stdin;
    if upgrade && !cfg.detach {
        // As Docker: hijack first, then start; a start failure (126/127) is written into the
        // stream and the exit code is in the exec's inspect. The process starts only after the
        // 101 is out, so the client has read the headers before any output arrives.
        st.engine.exec_precheck(&id)?;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let console = cfg.console_size;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("exec {id}: upgrade failed: {e}");
                    return;
                }
            };
            let mut client = hyper_util::rt::TokioIo::new(upgraded);
            match engine.exec_start(&id, false, &console).await {
                Ok(Some(stream)) => {
                    let wait_id = id.clone();
                    let e2 = engine.clone();
                    let before_close = async move {
                        let _ = e2.exec_wait(&wait_id).await;
                    };
                    crate::stream::pump(client, stream.io, tty, stdin, keys, before_close).await;
                }
                Ok(None) => {
                    let _ = client.shutdown().await;
                }
                Err(e) => {
                    let msg = format!("{e}\r\n");
                    let data = if tty {
                        msg.into_bytes()
                    } else {
                        let mut f = vec![2u8, 0, 0, 0];
                        f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                        f.extend_from_slice(msg.as_bytes());
                        f
                    };
                    let _ = client.write_all(&data).await;
                    let _ = client.shutdown().await;
                }
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert("Connection", HeaderValue::from_static("Upgrade"));
        h.insert("Upgrade", HeaderValue::from_static("tcp"));
        h.insert("Content-Type", content_type);
        return Ok(r);
    }
    let stream = st
        .engine
        .exec_start(&id, cfg.detach, &cfg.console_size)
        .await?;
    let Some(stream) = stream else {
        return Ok(status_only(StatusCode::OK));
    };
    let wait_id = id.clone();
    let before_close = async move {
        let _ = engine.exec_wait(&wait_id).await;
    };
    // No upgrade asked for: the output is the response body, there is no stdin.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(crate::stream::pump(
        ours,
        stream.io,
        tty,
        false,
        keys,
        before_close,
    ));
    let chunks = futures_util::stream::unfold(theirs, |mut r| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), r))
            }
        }
    });
    let body = Body::from_stream(chunks);
    let mut r = Response::new(body);
    r.headers_mut().insert("Content-Type", content_type);
    Ok(r)
}
