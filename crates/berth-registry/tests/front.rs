//! The client against a registry fronted by a test-run token realm (the bearer flow Docker Hub
//! uses), a connection that drops mid-blob, and Docker Hub mirrors.

mod common;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use base64::Engine as _;
use berth_image::ImageStore;
use berth_registry::server::{router, ServerConfig};
use berth_registry::{login, pull, push, PullOptions, PushOptions, RegistryAuth};
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "tok-7f3a";

#[derive(Clone)]
struct Front {
    inner: axum::Router,
    base: Arc<std::sync::Mutex<String>>,
    cut_next_big_blob: Arc<AtomicBool>,
    range_requests: Arc<AtomicUsize>,
    tokens: Arc<AtomicUsize>,
}

async fn front(f: Front, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/token" {
        let q = req.uri().query().unwrap_or("").to_string();
        assert!(q.contains("service=berth-test"), "{q}");
        if let Some(h) = req.headers().get("authorization") {
            let creds = h
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            if creds != b"carol:right" {
                return Response::builder()
                    .status(401)
                    .body(Body::from(
                        r#"{"details":"incorrect username or password"}"#,
                    ))
                    .unwrap();
            }
        }
        f.tokens.fetch_add(1, Ordering::SeqCst);
        return Response::new(Body::from(format!(
            r#"{{"token":"{TOKEN}","expires_in":300}}"#
        )));
    }
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        let base = f.base.lock().unwrap().clone();
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                "WWW-Authenticate",
                format!(r#"Bearer realm="{base}/token",service="berth-test""#),
            )
            .header("Content-Type", "application/json")
            .body(Body::from(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
            ))
            .unwrap();
    }
    let is_blob_get = req.method() == "GET" && path.contains("/blobs/sha256:");
    let ranged = req.headers().contains_key("range");
    if ranged {
        f.range_requests.fetch_add(1, Ordering::SeqCst);
    }
    let resp = f.inner.clone().oneshot(req).await.unwrap();
    if is_blob_get && !ranged && resp.status() == 200 {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        if bytes.len() > 5000 && f.cut_next_big_blob.swap(false, Ordering::SeqCst) {
            let half = bytes.slice(..bytes.len() / 2);
            use futures_util::StreamExt;
            // Let the first half reach the client before the connection breaks.
            let stream = futures_util::stream::once(async move { Ok(half) }).chain(
                futures_util::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    Err(std::io::Error::other("connection cut by the test"))
                }),
            );
            return Response::from_parts(parts, Body::from_stream(stream));
        }
        return Response::from_parts(parts, Body::from(bytes));
    }
    resp
}

#[test]
fn bearer_token_flow_and_resumed_blob_download() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let inner = router(&ServerConfig {
        storage: dir.path().join("registry"),
        ..Default::default()
    })
    .unwrap();
    let f = Front {
        inner,
        base: Arc::default(),
        cut_next_big_blob: Arc::new(AtomicBool::new(false)),
        range_requests: Arc::default(),
        tokens: Arc::default(),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let host = listener.local_addr().unwrap().to_string();
    *f.base.lock().unwrap() = format!("http://{host}");
    let f2 = f.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| front(f2.clone(), req));
    rt.spawn(async move { axum::serve(listener, app).await });

    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/tok/app:v1");
    let id = build_image(&s1, &name, "bearer");
    let auth = RegistryAuth {
        username: "carol".into(),
        password: "right".into(),
        ..Default::default()
    };
    let (_l, mut cb) = collect();
    push(
        &s1,
        &name,
        &PushOptions {
            auth: Some(auth.clone()),
            ..Default::default()
        },
        &mut cb,
    )
    .unwrap();
    assert!(f.tokens.load(Ordering::SeqCst) >= 1);

    // Wrong password: Docker's text.
    let bad = RegistryAuth {
        password: "wrong".into(),
        ..auth.clone()
    };
    let err = login(&host, &bad, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Get \"http://{host}/v2/\": unauthorized: incorrect username or password")
    );
    assert_eq!(login(&host, &auth, &[]).unwrap(), "Login Succeeded");

    // Anonymous pull with a token; the big layer's connection drops halfway and resumes.
    f.cut_next_big_blob.store(true, Ordering::SeqCst);
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (_l, mut cb) = collect();
    assert_eq!(
        pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap(),
        id
    );
    assert!(
        !f.cut_next_big_blob.load(Ordering::SeqCst),
        "the cut happened"
    );
    assert_eq!(f.range_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn docker_hub_pulls_go_to_the_mirror_first() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let on_mirror = format!("{host}/library/mirrored:1.0");
    let id = build_image(&s1, &on_mirror, "mirror");
    let (_l, mut cb) = collect();
    push(&s1, &on_mirror, &PushOptions::default(), &mut cb).unwrap();

    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let opts = PullOptions {
        mirrors: vec![format!("http://{host}")],
        ..Default::default()
    };
    let (log, mut cb) = collect();
    assert_eq!(pull(&s2, "mirrored:1.0", &opts, &mut cb).unwrap(), id);
    let st = statuses(&log);
    assert_eq!(st[0], "1.0: Pulling from library/mirrored");
    assert_eq!(
        st.last().unwrap(),
        "Status: Downloaded newer image for mirrored:1.0"
    );
    assert_eq!(s2.resolve_id("mirrored:1.0").unwrap(), id);
    rt.block_on(reg.shutdown());
}
