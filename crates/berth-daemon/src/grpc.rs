//! `POST /grpc` and `POST /session`: BuildKit's API for buildx's docker driver. Both hijack
//! the connection (`Upgrade: h2c`, answered 101) and hand it to `berth-buildkit`: `/grpc`
//! is served as BuildKit's control and gateway services, `/session` attaches the client's
//! session (its files, secrets, ssh agents, logins).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use berth_buildkit::SessionHeaders;

use crate::error::{ApiError, ApiResult};
use crate::server::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/grpc", post(grpc))
        .route("/session", post(session))
}

/// The 101 answer, after checking the client asked for h2c.
fn switching(req: &Request<Body>) -> ApiResult<Response<Body>> {
    let h2c = req
        .headers()
        .get("Upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("h2c"));
    if !h2c {
        return Err(ApiError::bad_request(
            "this endpoint needs a connection upgrade to h2c (Upgrade: h2c)",
        ));
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("h2c"));
    Ok(r)
}

async fn grpc(State(st): State<AppState>, mut req: Request<Body>) -> ApiResult<Response<Body>> {
    let r = switching(&req)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(u) => {
                st.buildkit
                    .serve_grpc(hyper_util::rt::TokioIo::new(u))
                    .await
            }
            Err(e) => tracing::debug!("grpc upgrade failed: {e}"),
        }
    });
    Ok(r)
}

async fn session(State(st): State<AppState>, mut req: Request<Body>) -> ApiResult<Response<Body>> {
    let headers = SessionHeaders::from_headers(req.headers()).ok_or_else(|| {
        ApiError::bad_request("a session needs the X-Docker-Expose-Session-Uuid header")
    })?;
    let r = switching(&req)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(u) => {
                st.buildkit
                    .attach_session(hyper_util::rt::TokioIo::new(u), headers)
                    .await
            }
            Err(e) => tracing::debug!("session upgrade failed: {e}"),
        }
    });
    Ok(r)
}
