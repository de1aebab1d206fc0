//! /networks routes.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{Response, StatusCode};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_api::network::{NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{status_only, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect))
        .route("/networks/{id}", delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

fn body_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters().map_err(ApiError::bad_request)?;
    Ok(json_response(&st.engine.network_list(&filters)?))
}

async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    Ok(json_response(&st.engine.network_inspect(&id)?))
}

async fn create(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response<Body>> {
    let req: NetworkCreateRequest = body_json(&body)?;
    let resp = st.engine.network_create(req).await?;
    let mut r = json_response(&resp);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    st.engine.network_remove(&id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let req: NetworkConnectRequest = body_json(&body)?;
    st.engine.network_connect(&id, req).await?;
    Ok(status_only(StatusCode::OK))
}

async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response<Body>> {
    let req: NetworkDisconnectRequest = body_json(&body)?;
    st.engine.network_disconnect(&id, req).await?;
    Ok(status_only(StatusCode::OK))
}

async fn prune(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters().map_err(ApiError::bad_request)?;
    Ok(json_response(&st.engine.network_prune(&filters).await?))
}
