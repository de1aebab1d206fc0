//! /containers/... routes.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_api::types::{ContainerCreateBody, ContainerCreateResponse, ContainerWaitResponse};
use berth_engine::{AttachOptions, ListOptions, LogsOptions, WaitCondition};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{status_only, ApiVersion, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/attach/ws", get(crate::ws::attach_ws))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/{link}", delete(remove_link))
}

fn q(raw: Option<String>) -> Query {
    Query::parse(raw.as_deref())
}

async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let filters = q.filters().map_err(ApiError::bad_request)?;
    let limit = q.int("limit").map_err(ApiError::bad_request)?;
    let opts = ListOptions {
        all: q.flag("all"),
        limit: limit.filter(|n| *n > 0).map(|n| n as usize),
        size: q.flag("size"),
        filters,
    };
    let list = st.engine.list(&opts).await?;
    Ok(json_response(&list))
}

pub fn json_response<T: serde::Serialize>(v: &T) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    r
}

async fn create(
    State(st): State<AppState>,
    Extension(ver): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let mut req: ContainerCreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    // Clients before API 1.40 expect the IPC mode that was the default then (dockerd's rule).
    if ver < ApiVersion(1, 40) {
        let hc = req.host_config.get_or_insert_with(Default::default);
        if hc.ipc_mode.is_empty() {
            hc.ipc_mode = "shareable".into();
        }
    }
    let (id, warnings) = st.engine.create(q.get("name"), req).await?;
    let mut r = json_response(&ContainerCreateResponse { id, warnings });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    Ok(json_response(
        &st.engine.inspect(&id, q.flag("size")).await?,
    ))
}

async fn start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    st.engine.start(&id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

fn timeout_param(q: &Query) -> ApiResult<Option<i64>> {
    q.int("t")
        .and_then(|t| match t {
            Some(t) => Ok(Some(t)),
            None => q.int("timeout"),
        })
        .map_err(ApiError::bad_request)
}

async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let t = timeout_param(&q)?;
    st.engine.stop(&id, t, q.get("signal")).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    st.engine.kill(&id, q.get("signal")).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let t = timeout_param(&q)?;
    st.engine.restart(&id, t, q.get("signal")).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    if q.flag("link") {
        // `parent/alias` sent with its slash encoded.
        if let Some((parent, alias)) = id.trim_start_matches('/').rsplit_once('/') {
            st.engine.remove_link(parent, alias).await?;
            return Ok(status_only(StatusCode::NO_CONTENT));
        }
        return Err(ApiError::from(berth_engine::EngineError::Conflict(
            "Conflict, cannot remove the default link name of the container".into(),
        )));
    }
    st.engine.remove(&id, q.flag("force"), q.flag("v")).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `DELETE /containers/{parent}/{alias}?link=1`: a legacy link's name has a slash in it.
async fn remove_link(
    State(st): State<AppState>,
    Path((id, link)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    if !q.flag("link") {
        return Err(ApiError::from(berth_engine::EngineError::NotFound(
            format!("No such container: {id}/{link}"),
        )));
    }
    st.engine.remove_link(&id, &link).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let name = q.get("name").unwrap_or("");
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "Neither old nor new names may be empty",
        ));
    }
    st.engine.rename(&id, name).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let h = q.int("h").map_err(ApiError::bad_request)?.unwrap_or(0);
    let w = q.int("w").map_err(ApiError::bad_request)?.unwrap_or(0);
    if h < 0 || w < 0 || h > u16::MAX as i64 || w > u16::MAX as i64 {
        return Err(ApiError::bad_request("invalid terminal size"));
    }
    st.engine.resize(&id, h as u32, w as u32).await?;
    Ok(status_only(StatusCode::OK))
}

/// Sends the headers at once (clients sync on them), the status when the condition is met.
async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let cond = WaitCondition::parse(q.get("condition").unwrap_or(""))?;
    let fut = st.engine.wait(&id, cond).await?;
    let stream = futures_util::stream::once(async move {
        let code = fut.await;
        let body = serde_json::to_vec(&ContainerWaitResponse {
            status_code: code,
            error: None,
        })
        .unwrap_or_default();
        Ok::<_, std::io::Error>(Bytes::from([body, b"\n".to_vec()].concat()))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let stdout = q.flag("stdout");
    let stderr = q.flag("stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => None,
        },
    };
    let since = berth_engine::container::logs::parse_timestamp(q.get("since").unwrap_or(""))?;
    let until = berth_engine::container::logs::parse_timestamp(q.get("until").unwrap_or(""))?;
    let opts = LogsOptions {
        stdout,
        stderr,
        follow: q.flag("follow"),
        timestamps: q.flag("timestamps"),
        since,
        until,
        tail,
    };
    let (tty, rx) = st.engine.logs(&id, opts).await?;
    let stream = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(r)
}

/// Hijacks the connection: answers 101 at once (the docker CLI starts the container only after
/// this), then joins the client to the container's shim when it is running.
async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    mut req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let info = st.engine.inspect(&id, false).await?;
    let tty = info.config.tty;
    let opts = AttachOptions {
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
    };
    if !q.flag_or("stream", true) {
        // Docker's stream=0: the logs (with logs=1), nothing live to join.
        if !q.flag("logs") {
            return Ok(status_only(StatusCode::OK));
        }
        let opts = LogsOptions {
            stdout: opts.stdout,
            stderr: opts.stderr,
            ..Default::default()
        };
        let (tty, mut rx) = st.engine.logs(&id, opts).await?;
        let ct = HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        });
        let upgrade = req
            .headers()
            .get("Upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
        if upgrade {
            // Hijacked like a live attach (clients then read the socket to its end).
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(u) = on_upgrade.await {
                    let mut client = hyper_util::rt::TokioIo::new(u);
                    // Clients that read the 101 through a buffered reader and then switch to
                    // the raw socket (docker-py) lose bytes that arrive with the headers;
                    // Docker's own log read gives them this gap, so give it too.
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    while let Some(chunk) = rx.recv().await {
                        if client.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown().await;
                }
            });
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert("Connection", HeaderValue::from_static("Upgrade"));
            h.insert("Upgrade", HeaderValue::from_static("tcp"));
            h.insert("Content-Type", ct);
            return Ok(r);
        }
        let stream = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert("Content-Type", ct);
        return Ok(r);
    }
    let keys = crate::stream::detach_keys(q.get("detachKeys"))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Registered before the 101 goes out: the client starts the container right after it.
    let attached = st.engine.attach(&id, opts).await?;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("attach upgrade failed: {e}");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(upgraded);
        // A start that fails is reported by the start call; the attach just ends.
        let shim = match attached.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("attach to {id} ended: {e}");
                let _ = client.shutdown().await;
                return;
            }
        };
        crate::stream::pump(client, shim.io, tty || shim.tty, opts.stdin, keys, async {}).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("tcp"));
    h.insert(
        "Content-Type",
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(r)
}
