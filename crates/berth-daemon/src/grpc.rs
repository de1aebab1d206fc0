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

/// Answers 101 (after checking the client asked for h2c) and hands the upgraded connection
/// to `serve`.
fn upgrade<F, Fut>(
    what: &'static str,
    mut req: Request<Body>,
    serve: F,
) -> ApiResult<Response<Body>>
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
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
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(u) => serve(hyper_util::rt::TokioIo::new(u)).await,
            Err(e) => tracing::debug!("{what} upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("h2c"));
    Ok(r)
}

async fn grpc(State(st): State<AppState>, req: Request<Body>) -> ApiResult<Response<Body>> {
    upgrade("grpc", req, move |io| async move {
        st.buildkit.serve_grpc(io).await
    })
}

async fn session(State(st): State<AppState>, req: Request<Body>) -> ApiResult<Response<Body>> {
    let headers = SessionHeaders::from_headers(req.headers()).ok_or_else(|| {
        ApiError::bad_request("a session needs the X-Docker-Expose-Session-Uuid header")
    })?;
    upgrade("session", req, move |io| async move {
        st.buildkit.attach_session(io, headers).await
    })
}
