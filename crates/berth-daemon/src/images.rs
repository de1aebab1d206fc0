//! /images/... routes. Image names contain slashes, so everything under /images/ goes through
//! one wildcard and is split on its last path element.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::containers::json_response;
use crate::error::{ApiError, ApiResult};
use crate::hygiene::JsonBody;
use crate::params::Query;
use crate::server::{ApiVersion, AppState};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/images/json", get(list))
        .route("/images/load", post(load))
        .route("/images/create", post(create))
        .route("/images/get", get(save_many))
        .route("/images/search", get(search))
        .route("/distribution/{*rest}", get(distribution))
        .route("/auth", post(auth))
        .route(
            "/images/{*rest}",
            get(get_named).post(post_named).delete(delete_named),
        )
}

fn q(raw: Option<String>) -> Query {
    Query::parse(raw.as_deref())
}

async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let filters = q.filters().map_err(ApiError::bad_request)?;
    let list = st.engine.image_list(q.flag("all"), &filters).await?;
    Ok(json_response(&list))
}

/// `GET /images/search`: the named index's v1 search (Docker Hub's by default).
async fn search(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let filters = q.filters().map_err(ApiError::bad_request)?;
    let term = q.get("term").unwrap_or("").to_string();
    let limit = q.int("limit").map_err(ApiError::bad_request)?;
    let auth = registry_auth(&req)?;
    let found = st.engine.image_search(&term, limit, &filters, auth).await?;
    Ok(json_response(&found))
}

/// Spools a request body to a temp file so the blocking image code can read it at its pace.
pub(crate) async fn spool(st: &AppState, body: Body) -> ApiResult<std::fs::File> {
    let dir = st.engine.config().data_root.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut file = tempfile::tempfile_in(&dir).map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        file.write_all(&chunk)
            .map_err(|e| ApiError::new(500, e.to_string()))?;
    }
    use std::io::Seek;
    file.rewind()
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(file)
}

fn json_lines(lines: Vec<serde_json::Value>) -> Response<Body> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    r
}

/// `POST /images/load`. As in Docker, the answer is a chunked 200 JSON stream whatever
/// happens once the body is read; a failure is its `{"errorDetail":...,"error":...}` line
/// (docker-py raises `ImageLoadError` from it).
async fn load(State(st): State<AppState>, req: Request<Body>) -> ApiResult<Response<Body>> {
    let file = spool(&st, req.into_body()).await?;
    let lines: Vec<serde_json::Value> = match st.engine.image_load(Box::new(file)).await {
        Ok(lines) => lines
            .into_iter()
            .map(|l| serde_json::json!({ "stream": format!("{l}\n") }))
            .collect(),
        Err(e) => {
            let m = e.to_string();
            vec![serde_json::json!({ "errorDetail": { "message": m }, "error": m })]
        }
    };
    let chunks = lines
        .into_iter()
        .map(|l| Ok::<Bytes, std::io::Error>(Bytes::from(format!("{l}\n"))));
    let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// POST /images/create: `fromSrc` imports a tarball; `fromImage` pulls (the registry client
/// is not built yet, so it answers as Docker does when a registry cannot be reached).
async fn create(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    if let Some(src) = q.get("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad_request(
                "importing from a URL is not supported; send the tarball as the request body (fromSrc=-)",
            ));
        }
        let repo = q.get("repo").unwrap_or("");
        let tag = q.get("tag").unwrap_or("");
        let reference = match (repo.is_empty(), tag.is_empty()) {
            (true, _) => None,
            (false, true) => Some(repo.to_string()),
            (false, false) => Some(format!("{repo}:{tag}")),
        };
        let changes = q.all("changes");
        let message = q.get("message").map(String::from);
        let file = spool(&st, req.into_body()).await?;
        let id = st
            .engine
            .image_import(Box::new(file), reference, changes, message)
            .await?;
        return Ok(json_lines(vec![serde_json::json!({ "status": id })]));
    }
    if let Some(image) = q.get("fromImage") {
        let tag = q.get("tag").unwrap_or("");
        let reference = if tag.is_empty() {
            image.to_string()
        } else if tag.starts_with("sha256:") {
            format!("{image}@{tag}")
        } else {
            format!("{image}:{tag}")
        };
        let platform = platform_param(&q)?;
        let auth = registry_auth(&req)?;
        let rx = st.engine.image_pull(reference, platform, auth);
        return transfer_response(rx).await;
    }
    Err(ApiError::bad_request("fromImage or fromSrc is required"))
}

async fn save_stream(st: &AppState, names: Vec<String>) -> ApiResult<Response<Body>> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    let rx = st.engine.image_save(names).await?;
    let stream = ReceiverStream::new(rx).map(Ok::<Bytes, std::io::Error>);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

async fn save_many(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    save_stream(&st, q.all("names")).await
}

/// The fields image inspect has per API version: `VirtualSize` before 1.44, as dockerd gives
/// it. `Container` and `ContainerConfig` (an empty config for images no commit made) at every
/// version: dockerd drops them from 1.45, but docker-compose 1.29 negotiates the daemon's
/// highest version and then reads `ContainerConfig.Volumes` of the image on every recreate
/// (`KeyError: 'ContainerConfig'` against dockerd 26); extra fields harm no client.
fn inspect_for_version(img: &mut berth_api::types::ImageInspect, ver: ApiVersion) {
    if ver >= ApiVersion(1, 44) {
        img.virtual_size = None;
    }
    img.container.get_or_insert_with(String::new);
    img.container_config.get_or_insert_with(Default::default);
}

/// Splits "library/busybox:1/json" into ("library/busybox:1", "json").
fn split_rest(rest: &str) -> (&str, &str) {
    match rest.rsplit_once('/') {
        Some((name, op)) => (name, op),
        None => (rest, ""),
    }
}

async fn get_named(
    State(st): State<AppState>,
    Extension(ver): Extension<ApiVersion>,
    Path(rest): Path<String>,
    RawQuery(_raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let (name, op) = split_rest(&rest);
    match op {
        "json" => {
            let mut img = st.engine.image_inspect(name).await?;
            inspect_for_version(&mut img, ver);
            Ok(json_response(&img))
        }
        "history" => Ok(json_response(&st.engine.image_history(name).await?)),
        "get" => save_stream(&st, vec![name.to_string()]).await,
        _ => Err(ApiError::new(
            404,
            format!("page not found: /images/{rest}"),
        )),
    }
}

async fn post_named(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let (name, op) = split_rest(&rest);
    match op {
        "tag" => {
            st.engine
                .image_tag(
                    name,
                    q.get("repo").unwrap_or(""),
                    q.get("tag").unwrap_or(""),
                )
                .await?;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        "push" => {
            let tag = q.get("tag").unwrap_or("");
            let reference = if tag.is_empty() {
                name.to_string()
            } else {
                format!("{name}:{tag}")
            };
            let auth = registry_auth_headers(&headers)?;
            transfer_response(st.engine.image_push(reference, auth)).await
        }
        _ => Err(ApiError::new(
            404,
            format!("page not found: /images/{rest}"),
        )),
    }
}

async fn delete_named(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let q = q(raw);
    let items = st
        .engine
        .image_remove(&rest, q.flag("force"), q.flag("noprune"))
        .await?;
    Ok(json_response(&items))
}

fn registry_auth_headers(
    headers: &axum::http::HeaderMap,
) -> ApiResult<Option<berth_registry::RegistryAuth>> {
    match headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()) {
        None | Some("") => Ok(None),
        Some(v) => berth_registry::RegistryAuth::from_header(v)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

fn registry_auth(req: &Request<Body>) -> ApiResult<Option<berth_registry::RegistryAuth>> {
    registry_auth_headers(req.headers())
}

/// Streams a pull's or push's JSON messages. A failure before the first message is an HTTP
/// error (so `docker run` sees the 404 of a missing image); a later one is Docker's
/// `{"errorDetail":...,"error":...}` line in the 200 stream.
async fn transfer_response(
    mut rx: tokio::sync::mpsc::Receiver<berth_engine::Transfer>,
) -> ApiResult<Response<Body>> {
    let first = match rx.recv().await {
        Some(berth_engine::Transfer::Failed(e)) => return Err(e.into()),
        Some(berth_engine::Transfer::Message(m)) => m,
        None => return Ok(json_lines(Vec::new())),
    };
    let line = |v: &serde_json::Value| Bytes::from(format!("{v}\n"));
    let head = futures_util::stream::once({
        let b = line(&first);
        async move { Ok::<Bytes, std::io::Error>(b) }
    });
    let rest = ReceiverStream::new(rx).map(move |t| {
        let v = match t {
            berth_engine::Transfer::Message(m) => m,
            berth_engine::Transfer::Failed(e) => {
                let m = e.to_string();
                serde_json::json!({ "errorDetail": { "message": m }, "error": m })
            }
        };
        Ok::<Bytes, std::io::Error>(line(&v))
    });
    let mut r = Response::new(Body::from_stream(head.chain(rest)));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `GET /distribution/{name}/json`.
async fn distribution(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response<Body>> {
    let (name, op) = split_rest(&rest);
    if op != "json" || name.is_empty() {
        return Err(ApiError::new(
            404,
            format!("page not found: /distribution/{rest}"),
        ));
    }
    let auth = registry_auth_headers(&headers)?;
    let info = st
        .engine
        .distribution_inspect(name.to_string(), auth)
        .await?;
    Ok(json_response(&info))
}

/// `POST /auth`: Docker answers `{"Status":"Login Succeeded","IdentityToken":""}`.
async fn auth(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response<Body>> {
    let auth: berth_registry::RegistryAuth = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let status = st.engine.registry_login(auth).await?;
    Ok(json_response(
        &serde_json::json!({ "Status": status, "IdentityToken": "" }),
    ))
}

/// The `platform` query parameter, checked as Docker parses it (`None` when absent or empty).
pub(crate) fn platform_param(q: &Query) -> ApiResult<Option<String>> {
    let platform = q
        .get("platform")
        .filter(|p| !p.is_empty())
        .map(String::from);
    if let Some(p) = &platform {
        berth_engine::image::check_platform(p)?;
    }
    Ok(platform)
}
