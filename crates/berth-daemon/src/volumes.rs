//! /volumes routes.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use berth_api::volume::{VolumeCreateOptions, VolumeListResponse, VolumePruneResponse};

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{status_only, ApiVersion, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters().map_err(ApiError::bad_request)?;
    let volumes = st.engine.volume_list(&filters).await?;
    Ok(json_response(&VolumeListResponse {
        volumes,
        warnings: Vec::new(),
    }))
}

async fn create(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response<Body>> {
    let opts: VolumeCreateOptions = if body.iter().all(|b| b.is_ascii_whitespace()) {
        VolumeCreateOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let v = st.engine.volume_create(opts).await?;
    let mut r = json_response(&v);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn inspect(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response<Body>> {
    Ok(json_response(&st.engine.volume_inspect(&name).await?))
}

async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    st.engine.volume_remove(&name, q.flag("force")).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

async fn prune(
    State(st): State<AppState>,
    Extension(ver): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let mut filters = q.filters().map_err(ApiError::bad_request)?;
    // Before API 1.42 prune took every unused volume; since, only anonymous ones unless `all`.
    if ver < ApiVersion(1, 42) {
        filters.insert("all".into(), vec!["true".into()]);
    }
    let (deleted, space) = st.engine.volume_prune(&filters).await?;
    Ok(json_response(&VolumePruneResponse {
        volumes_deleted: deleted,
        space_reclaimed: space,
    }))
}
