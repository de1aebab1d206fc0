//! pause/unpause, top, changes, export, commit, update, stats routes.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use berth_api::types::{ContainerConfig, IdResponse};
use berth_engine::ops::{CommitRequest, UpdateConfig};
use futures_util::StreamExt;

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{status_only, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/stats", get(stats))
        .route("/commit", post(commit))
        .route("/containers/prune", post(container_prune))
        .route("/images/prune", post(image_prune))
        .route("/system/df", get(system_df))
}

async fn pause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    st.engine.pause(&id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn unpause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    st.engine.unpause(&id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn top(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    Ok(json_response(
        &st.engine.top(&id, q.get("ps_args").unwrap_or("")).await?,
    ))
}

async fn changes(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let c = st.engine.changes(&id).await?;
    if c.is_empty() {
        // Docker answers null for no changes.
        return Ok(json_response(&serde_json::Value::Null));
    }
    Ok(json_response(&c))
}

async fn export(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let rx = st.engine.export(&id).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let u: UpdateConfig = if body.is_empty() {
        UpdateConfig::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let warnings = st.engine.update(&id, u).await?;
    Ok(json_response(&serde_json::json!({ "Warnings": warnings })))
}

async fn commit(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let container = q.get("container").unwrap_or("").to_string();
    if container.is_empty() {
        return Err(ApiError::new(404, "No such container: "));
    }
    let config: Option<ContainerConfig> = if body.is_empty() || body.as_ref() == b"null" {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?,
        )
    };
    let req = CommitRequest {
        container,
        repo: q.get("repo").unwrap_or("").to_string(),
        tag: q.get("tag").unwrap_or("").to_string(),
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        pause: q.flag_or("pause", true),
        changes: q.all("changes"),
        config,
    };
    let id = st.engine.commit(req).await?;
    let mut r = json_response(&IdResponse { id });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn stats(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let stream = q.flag_or("stream", true);
    let one_shot = q.flag("one-shot");
    let rx = st.engine.stats(&id, stream, one_shot).await?;
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(|v| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(b))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn container_prune(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let f = q.filters().map_err(ApiError::bad_request)?;
    Ok(json_response(&st.engine.container_prune(&f).await?))
}

async fn image_prune(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let f = q.filters().map_err(ApiError::bad_request)?;
    Ok(json_response(&st.engine.image_prune(&f).await?))
}

async fn system_df(State(st): State<AppState>) -> ApiResult<Response<Body>> {
    Ok(json_response(&st.engine.system_df().await?))
}
