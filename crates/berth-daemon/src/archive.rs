//! `HEAD`/`GET`/`PUT /containers/{id}/archive` (docker cp).

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;

use crate::error::{ApiError, ApiResult};
use crate::params::Query;
use crate::server::{status_only, AppState};

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/containers/{id}/archive",
        get(get_archive).head(head_archive).put(put_archive),
    )
}

fn path_param(raw: &Option<String>) -> ApiResult<String> {
    let q = Query::parse(raw.as_deref());
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path cannot be empty")),
    }
}

fn with_stat(
    mut r: Response<Body>,
    stat: &berth_engine::container::archive::PathStat,
) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&stat.header_value()) {
        r.headers_mut().insert(STAT_HEADER, v);
    }
    r
}

async fn head_archive(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let path = path_param(&raw)?;
    let stat = st.engine.archive_stat(&id, &path).await?;
    Ok(with_stat(status_only(StatusCode::OK), &stat))
}

async fn get_archive(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let path = path_param(&raw)?;
    let (stat, rx) = st.engine.archive_get(&id, &path).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(with_stat(r, &stat))
}

async fn put_archive(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let path = path_param(&raw)?;
    let q = Query::parse(raw.as_deref());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => {
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    st.engine
        .archive_put(
            &id,
            &path,
            rx,
            q.flag("noOverwriteDirNonDir"),
            q.flag("copyUIDGID"),
        )
        .await?;
    Ok(status_only(StatusCode::OK))
}
