//! `POST /build` (legacy builder protocol: a context tar in, a JSON message stream out) and
//! `POST /build/prune`.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Request, Response};
use axum::routing::post;
use axum::Router;
use berth_api::types::Ulimit;
use berth_build::builder::{BuildOptions, StepLimits};
use berth_engine::image::build::BuildMessage;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use tokio_stream::wrappers::ReceiverStream;

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::params::Query;
use crate::server::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/build", post(build))
        .route("/build/prune", post(prune))
}

fn json_map<T: serde::de::DeserializeOwned + Default>(q: &Query, key: &str) -> ApiResult<T> {
    match q.get(key) {
        None | Some("") => Ok(T::default()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::bad_request(format!("invalid {key} parameter: {e}"))),
    }
}

/// An integer query parameter; absent or empty is 0.
fn int(q: &Query, key: &str) -> ApiResult<i64> {
    match q.get(key).map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid {key} parameter: {v:?}"))),
    }
}

/// The resource options the classic builder gives every RUN step's container.
fn step_limits(q: &Query) -> ApiResult<StepLimits> {
    Ok(StepLimits {
        memory: int(q, "memory")?,
        memory_swap: int(q, "memswap")?,
        cpu_shares: int(q, "cpushares")?,
        cpu_period: int(q, "cpuperiod")?,
        cpu_quota: int(q, "cpuquota")?,
        cpuset_cpus: q.get("cpusetcpus").unwrap_or_default().to_string(),
        cpuset_mems: q.get("cpusetmems").unwrap_or_default().to_string(),
    })
}

fn options(q: &Query, experimental: bool) -> ApiResult<BuildOptions> {
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts are not supported; send the context as the request body",
        ));
    }
    if q.get("version").is_some_and(|v| v == "2") {
        return Err(ApiError::bad_request(
            "BuildKit (version=2) is not supported; use the legacy builder (DOCKER_BUILDKIT=0)",
        ));
    }
    let squash = q.flag("squash");
    if squash && !experimental {
        return Err(ApiError::bad_request(
            "squash is only supported with experimental mode",
        ));
    }
    let platform = crate::images::platform_param(q)?;
    let build_args: BTreeMap<String, Option<String>> = json_map(q, "buildargs")?;
    let labels: BTreeMap<String, String> = json_map(q, "labels")?;
    let network = q
        .get("networkmode")
        .filter(|n| !n.is_empty() && *n != "default")
        .map(String::from);
    Ok(BuildOptions {
        dockerfile: q.first("dockerfile").unwrap_or("Dockerfile").to_string(),
        tags: q.all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        build_args,
        target: q.get("target").filter(|t| !t.is_empty()).map(String::from),
        no_cache: q.flag("nocache"),
        cache_from: json_map::<Option<Vec<String>>>(q, "cachefrom")?.unwrap_or_default(),
        pull: q.flag("pull"),
        labels,
        network,
        extra_hosts: q
            .all("extrahosts")
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect(),
        platform,
        quiet: q.flag("q"),
        squash,
        // The classic builder allows RUN --network=host; nothing grants insecure mode here.
        allow_network_host: true,
        shm_size: Some(int(q, "shmsize")?).filter(|s| *s > 0),
        ulimits: json_map::<Option<Vec<Ulimit>>>(q, "ulimits")?
            .unwrap_or_default()
            .into_iter()
            .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
            .collect(),
        cgroup_parent: q
            .get("cgroupparent")
            .filter(|c| !c.is_empty())
            .map(String::from),
        limits: step_limits(q)?,
        keep_failed: !q.flag("forcerm"),
        ..Default::default()
    })
}

fn line(m: BuildMessage) -> Bytes {
    let v = match m {
        BuildMessage::Stream(s) => serde_json::json!({ "stream": s }),
        BuildMessage::Aux(id) => serde_json::json!({ "aux": { "ID": id } }),
        BuildMessage::Failed(e) => {
            let msg = e.to_string();
            match e.code() {
                Some(c) => serde_json::json!({
                    "errorDetail": { "code": c, "message": msg },
                    "error": msg
                }),
                None => serde_json::json!({ "errorDetail": { "message": msg }, "error": msg }),
            }
        }
    };
    Bytes::from(format!("{v}\n"))
}

async fn build(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let opts = options(&q, st.engine.config().experimental)?;
    let file = crate::images::spool(&st, req.into_body()).await?;
    let mut rx = st.engine.build(Box::new(file), opts);
    // A failure before any output is an HTTP error (a Dockerfile syntax error, a missing
    // base image); later ones are error lines in the stream.
    let first = match rx.recv().await {
        Some(BuildMessage::Failed(e)) => return Err(ApiError::new(e.status(), e.to_string())),
        Some(m) => m,
        None => return Err(ApiError::new(500, "build ended without a result")),
    };
    let head = futures_util::stream::once({
        let b = line(first);
        async move { Ok::<Bytes, std::io::Error>(b) }
    });
    let rest = ReceiverStream::new(rx).map(|m| Ok::<Bytes, std::io::Error>(line(m)));
    let mut r = Response::new(Body::from_stream(head.chain(rest)));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn prune(State(st): State<AppState>) -> ApiResult<Response<Body>> {
    let (ids, bytes) = st.engine.build_prune().await?;
    Ok(json_response(&serde_json::json!({
        "CachesDeleted": ids,
        "SpaceReclaimed": bytes
    })))
}
