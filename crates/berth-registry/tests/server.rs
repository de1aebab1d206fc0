//! Protocol tests of `berth registry serve` over a real HTTP server on 127.0.0.1:0.

use berth_registry::server::{spawn, Registry, ServerConfig};
use berth_registry::storage::{sha256_digest, Storage};
use std::io::Write;
use std::time::Duration;

struct Env {
    _dir: tempfile::TempDir,
    storage: std::path::PathBuf,
    reg: Registry,
    base: String,
    http: reqwest::Client,
}

async fn start(htpasswd: Option<&str>, anonymous_read: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let ht = htpasswd.map(|content| {
        let p = dir.path().join("htpasswd");
        std::fs::write(&p, content).unwrap();
        p
    });
    let cfg = ServerConfig {
        storage: storage.clone(),
        htpasswd: ht,
        anonymous_read,
    };
    let reg = spawn(&cfg, "127.0.0.1:0", None).await.unwrap();
    let base = format!("http://{}", reg.addr);
    Env {
        _dir: dir,
        storage,
        reg,
        base,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn url(&self, p: &str) -> String {
        format!("{}{}", self.base, p)
    }
    fn abs(&self, loc: &str) -> String {
        if loc.starts_with("http") {
            loc.to_string()
        } else {
            self.url(loc)
        }
    }
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256_digest(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "monolithic upload");
        assert_eq!(header(&r, "docker-content-digest"), d);
        d
    }
    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", media)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }
}

fn header(r: &reqwest::Response, h: &str) -> String {
    r.headers()
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image_manifest(config: &str, config_len: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_blobs_manifests_tags() {
    let e = start(None, false).await;
    let r = e.http.get(e.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );

    let layer = b"layer-bytes-0123456789".to_vec();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let ld = e.push_blob("lib/app", &layer).await;
    let cd = e.push_blob("lib/app", &config).await;

    // HEAD and GET, with Range.
    let r = e
        .http
        .head(e.url(&format!("/v2/lib/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), layer.len().to_string());
    let r = e
        .http
        .get(e.url(&format!("/v2/lib/app/blobs/{ld}")))
        .header("Range", "bytes=6-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 6-10/{}", layer.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[6..=10]);
    let r = e
        .http
        .get(e.url(&format!("/v2/lib/app/blobs/{ld}")))
        .header("Range", "bytes=999-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    // Unknown in another repository.
    let r = e
        .http
        .get(e.url(&format!("/v2/other/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");

    // Manifest referencing a missing blob is refused.
    let missing = sha256_digest(b"nope");
    let bad = image_manifest(&cd, config.len(), &[(&missing, 4)]);
    let r = e.put_manifest("lib/app", "v1", OCI_MANIFEST, &bad).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    let m = image_manifest(&cd, config.len(), &[(&ld, layer.len())]);
    let md = sha256_digest(&m);
    for tag in ["v1", "v2", "v3", "a", "b"] {
        let r = e.put_manifest("lib/app", tag, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "docker-content-digest"), md);
    }
    for reference in ["v1", md.as_str()] {
        let r = e
            .http
            .get(e.url(&format!("/v2/lib/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), md);
        assert_eq!(r.bytes().await.unwrap().as_ref(), m.as_slice());
    }
    let r = e
        .http
        .head(e.url("/v2/lib/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = e
        .http
        .get(e.url("/v2/lib/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    // Digest in the URL must match.
    let r = e.put_manifest("lib/app", &missing, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // Invalid name.
    let r = e
        .http
        .get(e.url("/v2/Bad_Name/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "NAME_INVALID");

    // Tags pagination.
    let r = e
        .http
        .get(e.url("/v2/lib/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/lib/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"name":"lib/app","tags":["a","b"]}));
    let r = e
        .http
        .get(e.url("/v2/lib/app/tags/list?n=2&last=b"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    let r = e
        .http
        .get(e.url("/v2/lib/app/tags/list?n=2&last=v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "link"), "");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v3"]));
    let r = e
        .http
        .get(e.url("/v2/nothere/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    // Catalog pagination.
    for repo in ["c1", "c2/x"] {
        e.push_blob(repo, &layer).await;
        e.push_blob(repo, &config).await;
        assert_eq!(
            e.put_manifest(repo, "t", OCI_MANIFEST, &m).await.status(),
            201
        );
    }
    let r = e.http.get(e.url("/v2/_catalog?n=2")).send().await.unwrap();
    assert!(header(&r, "link").contains("last=c2/x"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["c1", "c2/x"]));
    let r = e
        .http
        .get(e.url("/v2/_catalog?last=c2/x"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["lib/app"]));

    // Cross-repository mount.
    let r = e
        .http
        .post(e.url(&format!(
            "/v2/mounted/blobs/uploads/?mount={ld}&from=lib/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = e
        .http
        .head(e.url(&format!("/v2/mounted/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A mount of an unknown blob starts an ordinary upload.
    let r = e
        .http
        .post(e.url(&format!(
            "/v2/mounted/blobs/uploads/?mount={missing}&from=lib/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Delete a tag, then the manifest by digest.
    let r = e
        .http
        .delete(e.url("/v2/lib/app/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = e
        .http
        .delete(e.url(&format!("/v2/lib/app/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = e
        .http
        .get(e.url("/v2/lib/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = e
        .http
        .delete(e.url(&format!("/v2/lib/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = e
        .http
        .head(e.url(&format!("/v2/lib/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    e.reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resumes_after_dropped_connection() {
    let e = start(None, false).await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let r = e
        .http
        .post(e.url("/v2/up/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    let loc = e.abs(&header(&r, "location"));

    // First chunk.
    let r = e
        .http
        .patch(&loc)
        .header("Content-Range", "0-9999")
        .body(data[..10_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-9999");

    // Out-of-order chunk: 416.
    let r = e
        .http
        .patch(&loc)
        .header("Content-Range", "20000-29999")
        .body(data[20_000..30_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    // A chunk whose connection drops halfway.
    let path = loc.trim_start_matches(&e.base).to_string();
    {
        let mut s = std::net::TcpStream::connect(e.reg.addr).unwrap();
        write!(
            s,
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Range: 10000-39999\r\nContent-Length: 30000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&data[10_000..22_000]).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    } // dropped
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Status tells where to resume.
    let r = e.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let range = header(&r, "range");
    let end: usize = range.trim_start_matches("0-").parse().unwrap();
    let offset = end + 1;
    assert!(offset > 10_000 && offset <= 22_000, "range {range}");

    let r = e
        .http
        .patch(&loc)
        .header("Content-Range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = e.abs(&header(&r, "location"));
    let r = e
        .http
        .put(format!("{loc}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = e
        .http
        .get(e.url(&format!("/v2/up/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    // Digest mismatch refused, monolithic and chunked.
    let wrong = sha256_digest(b"other");
    let r = e
        .http
        .post(e.url(&format!("/v2/up/blobs/uploads/?digest={wrong}")))
        .body(b"content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = e
        .http
        .post(e.url("/v2/up/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = e.abs(&header(&r, "location"));
    let r = e
        .http
        .put(format!("{loc}?digest={wrong}"))
        .body(b"content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = e
        .http
        .head(e.url(&format!("/v2/up/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Unknown session.
    let r = e
        .http
        .get(e.url("/v2/up/blobs/uploads/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    e.reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_api() {
    let e = start(None, false).await;
    let config = b"{}".to_vec();
    let cd = e.push_blob("r", &config).await;
    let m = image_manifest(&cd, config.len(), &[]);
    let md = sha256_digest(&m);
    assert_eq!(
        e.put_manifest("r", "v1", OCI_MANIFEST, &m).await.status(),
        201
    );
    let empty = e.push_blob("r", b"{}").await;
    for (at, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let art = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
            "annotations": {"note": note},
        }))
        .unwrap();
        let ad = sha256_digest(&art);
        let r = e.put_manifest("r", &ad, OCI_MANIFEST, &art).await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), md);
    }
    let r = e
        .http
        .get(e.url(&format!("/v2/r/referrers/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = e
        .http
        .get(e.url(&format!(
            "/v2/r/referrers/{md}?artifactType=application/vnd.example.sig"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(list[0]["annotations"]["note"], "sig");
    // No referrers: an empty index, not a 404.
    let r = e
        .http
        .get(e.url(&format!("/v2/r/referrers/{cd}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    e.reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_anonymous_read() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let ht = format!("alice:{hash}\n");
    let e = start(Some(&ht), true).await;
    // Anonymous read allowed, write refused with a Basic challenge.
    let r = e.http.get(e.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = e
        .http
        .post(e.url("/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Basic realm="));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = e
        .http
        .post(e.url("/v2/x/blobs/uploads/"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .post(e.url("/v2/x/blobs/uploads/"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    e.reg.shutdown().await;

    // Without --anonymous-read even the ping needs credentials.
    let e = start(Some(&ht), false).await;
    let r = e.http.get(e.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .get(e.url("/v2/"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    e.reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collect_removes_unreferenced_blobs() {
    let e = start(None, false).await;
    let config = b"{\"c\":1}".to_vec();
    let layer = b"kept layer".to_vec();
    let cd = e.push_blob("g", &config).await;
    let ld = e.push_blob("g", &layer).await;
    let orphan = e.push_blob("g", b"orphan layer").await;
    let m = image_manifest(&cd, config.len(), &[(&ld, layer.len())]);
    assert_eq!(
        e.put_manifest("g", "v1", OCI_MANIFEST, &m).await.status(),
        201
    );
    let st = Storage::open(&e.storage).unwrap();
    assert_eq!(st.garbage_collect(true).unwrap(), vec![orphan.clone()]);
    assert!(st.blob_exists_global(&orphan), "dry run keeps it");
    assert_eq!(st.garbage_collect(false).unwrap(), vec![orphan.clone()]);
    assert!(!st.blob_exists_global(&orphan));
    for d in [&cd, &ld] {
        let r = e
            .http
            .get(e.url(&format!("/v2/g/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = e
        .http
        .head(e.url(&format!("/v2/g/blobs/{orphan}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The subcommand.
    let code = berth_registry::main(vec![
        "garbage-collect".into(),
        "--storage".into(),
        e.storage.display().to_string(),
    ]);
    assert_eq!(code, 0);
    e.reg.shutdown().await;
}

/// One HTTP/1.1 request on an open connection; returns (status, headers lower-cased, body).
/// Reads exactly the response (Content-Length), so the connection can carry the next one.
async fn exchange(
    s: &mut tokio::net::TcpStream,
    head: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, headers, body)
}

/// A client that sends a body without credentials gets its 401 and can retry on the same
/// connection (the conformance suite does; it used to read EOF); a body too large to drain
/// gets `Connection: close` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_body_leaves_the_connection_usable() {
    use base64::Engine as _;
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let e = start(Some(&format!("alice:{hash}\n")), false).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let host = e.reg.addr.to_string();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (st, h, _) = exchange(
        &mut s,
        &format!("POST /v2/keep/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Length: 0\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(st, 202);
    let loc = h
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .expect("location");
    let path = loc.strip_prefix(&e.base).unwrap_or(&loc).to_string();
    let data = vec![7u8; 100_000];
    let digest = sha256_digest(&data);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = |creds: bool| {
        format!(
            "PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: {host}\r\n{}Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            if creds { format!("Authorization: Basic {auth}\r\n") } else { String::new() },
            data.len()
        )
    };
    let (st, h, body) = exchange(&mut s, &put(false), &data).await;
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
    assert!(!h.iter().any(|(k, v)| k == "connection" && v == "close"));
    let (st, _, body) = exchange(&mut s, &put(true), &data).await;
    assert_eq!(
        st,
        201,
        "retry on the same connection: {}",
        String::from_utf8_lossy(&body)
    );

    // Too large to drain: the 401 closes the connection, and says so.
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (st, h, _) = exchange(
        &mut s,
        &format!("PUT /v2/keep/blobs/uploads/x?digest={digest} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000000\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(st, 401);
    assert!(
        h.iter().any(|(k, v)| k == "connection" && v == "close"),
        "{h:?}"
    );
    e.reg.shutdown().await;
}

/// GET/HEAD of a manifest by a tag no tag can be: unknown (404), as the spec and the
/// reference registry say; a PUT by such a tag stays TAG_INVALID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tag_reads_are_unknown_manifests() {
    let e = start(None, false).await;
    let r = e
        .http
        .get(e.url("/v2/x/manifests/.INVALID"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = e
        .http
        .head(e.url("/v2/x/manifests/.INVALID"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = e
        .http
        .put(e.url("/v2/x/manifests/.INVALID"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "TAG_INVALID");
    e.reg.shutdown().await;
}
