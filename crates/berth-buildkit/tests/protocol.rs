//! BuildKit's API with a client of our own, over in-memory connections: the control service
//! (Solve, Status), a client session serving files (fsutil's DiffCopy, as buildx does) and
//! secrets, and a fake [`BuildHost`] that records what the frontend hands it. Covers what
//! buildx cannot be made to do: paths that try to escape, LLB definitions, unknown
//! exporters, the incremental context transfer, cancellation reaching the build.

use berth_build::builder::{BuildError, BuildInput, BuildOptions, Progress, Vertex, VertexState};
use berth_build::host::{BuildHost, CacheRecord, PruneOptions};
use berth_buildkit::pb::fsutil::types::{packet::PacketType, Packet, Stat};
use berth_buildkit::pb::moby::buildkit::secrets::v1 as spb;
use berth_buildkit::pb::moby::buildkit::v1 as cpb;
use berth_buildkit::pb::moby::filesync::v1 as fpb;
use berth_buildkit::transport::{serve, H2Channel};
use berth_buildkit::{BuildKit, SessionHeaders};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// What the fake engine saw of a build.
#[derive(Default, Clone, Debug)]
struct Seen {
    dockerfile: String,
    context_files: BTreeMap<String, String>,
    build_args: BTreeMap<String, Option<String>>,
    secret: Option<Vec<u8>>,
}

#[derive(Default)]
struct FakeHost {
    state: PathBuf,
    seen: Mutex<Vec<Seen>>,
    tags: Mutex<Vec<(String, Vec<String>)>>,
    /// The build waits for cancellation instead of finishing.
    block: AtomicBool,
    cancelled: AtomicBool,
}

fn read_tree(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(root.join(rel)).unwrap().flatten() {
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            read_tree(root, &r, out);
        } else {
            let c = std::fs::read_to_string(root.join(&r)).unwrap_or_default();
            out.insert(r.display().to_string(), c);
        }
    }
}

impl BuildHost for FakeHost {
    fn build(
        &self,
        input: &BuildInput<'_>,
        opts: &BuildOptions,
        progress: &dyn Progress,
        cancel: Arc<AtomicBool>,
    ) -> Result<String, BuildError> {
        let mut files = BTreeMap::new();
        read_tree(input.context, Path::new(""), &mut files);
        let secret = input.session.and_then(|s| s.secret("tok").ok().flatten());
        self.seen.lock().unwrap().push(Seen {
            dockerfile: input.dockerfile.to_string(),
            context_files: files,
            build_args: opts.build_args.clone(),
            secret,
        });
        progress.vertex(&Vertex {
            id: "sha256:step".into(),
            name: "[1/1] RUN true".into(),
            state: VertexState::Started,
        });
        progress.output("sha256:step", 1, b"step output\n");
        if self.block.load(Ordering::Relaxed) {
            while !cancel.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.cancelled.store(true, Ordering::Relaxed);
            return Err(BuildError::Cancelled);
        }
        progress.vertex(&Vertex {
            id: "sha256:step".into(),
            name: "[1/1] RUN true".into(),
            state: VertexState::Done,
        });
        Ok(format!("sha256:{}", "ab".repeat(32)))
    }
    fn tag(&self, image: &str, names: &[String]) -> Result<(), BuildError> {
        self.tags
            .lock()
            .unwrap()
            .push((image.to_string(), names.to_vec()));
        Ok(())
    }
    fn with_rootfs(
        &self,
        _image: &str,
        f: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        f(&self.state)
    }
    fn image_config(&self, _image: &str) -> Result<Vec<u8>, BuildError> {
        Ok(b"{}".to_vec())
    }
    fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }
    fn cache_usage(&self) -> Vec<CacheRecord> {
        Vec::new()
    }
    fn cache_prune(&self, _opts: &PruneOptions) -> Vec<CacheRecord> {
        Vec::new()
    }
    fn version(&self) -> String {
        "test".into()
    }
}

/// One local directory a client session serves: (path, content) entries; a path ending in
/// `/` is a directory. Paths are sent as given (a hostile client's are too).
type Dir = Vec<(String, String)>;

#[derive(Clone)]
struct ClientFiles {
    dirs: Arc<Mutex<HashMap<String, Dir>>>,
    /// Files the daemon asked for (REQ), by name.
    requested: Arc<Mutex<Vec<String>>>,
}

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

#[tonic::async_trait]
impl fpb::file_sync_server::FileSync for ClientFiles {
    type DiffCopyStream = PacketStream;

    async fn diff_copy(
        &self,
        req: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let name = req
            .metadata()
            .get("dir-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let includes: Vec<String> = req
            .metadata()
            .get_all("include-patterns")
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect();
        let mut dir = self
            .dirs
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir {name:?}")))?;
        // Include patterns (plain names here), applied by the client as fsutil does.
        if !includes.is_empty() {
            dir.retain(|(p, _)| includes.iter().any(|i| i == p.trim_end_matches('/')));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let requested = self.requested.clone();
        tokio::spawn(async move {
            let mut files = HashMap::new();
            for (i, (p, content)) in dir.iter().enumerate() {
                let is_dir = p.ends_with('/');
                let mut stat = Stat {
                    path: p.trim_end_matches('/').to_string(),
                    mode: if is_dir { (1 << 31) | 0o755 } else { 0o644 },
                    size: content.len() as i64,
                    mod_time: 1_700_000_000_000_000_000,
                    ..Default::default()
                };
                // `->target`: a symlink; `=>target`: a hard link to an earlier entry.
                if let Some(t) = content.strip_prefix("->") {
                    stat.mode = (1 << 27) | 0o777;
                    stat.linkname = t.to_string();
                } else if let Some(t) = content.strip_prefix("=>") {
                    stat.linkname = t.to_string();
                    stat.size = 0;
                } else if !is_dir {
                    files.insert(i as u32, (p.clone(), content.clone()));
                }
                let _ = tx
                    .send(Ok(Packet {
                        r#type: PacketType::PacketStat as i32,
                        stat: Some(stat),
                        ..Default::default()
                    }))
                    .await;
            }
            let _ = tx
                .send(Ok(Packet {
                    r#type: PacketType::PacketStat as i32,
                    ..Default::default()
                }))
                .await;
            while let Some(Ok(p)) = inbound.next().await {
                match PacketType::try_from(p.r#type) {
                    Ok(PacketType::PacketReq) => {
                        let (name, content) = files[&p.id].clone();
                        requested.lock().unwrap().push(name);
                        for data in [content.into_bytes(), Vec::new()] {
                            let _ = tx
                                .send(Ok(Packet {
                                    r#type: PacketType::PacketData as i32,
                                    id: p.id,
                                    data,
                                    ..Default::default()
                                }))
                                .await;
                        }
                    }
                    Ok(PacketType::PacketFin) => {
                        let _ = tx
                            .send(Ok(Packet {
                                r#type: PacketType::PacketFin as i32,
                                ..Default::default()
                            }))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

struct ClientSecrets;

#[tonic::async_trait]
impl spb::secrets_server::Secrets for ClientSecrets {
    async fn get_secret(
        &self,
        req: Request<spb::GetSecretRequest>,
    ) -> Result<Response<spb::GetSecretResponse>, Status> {
        match req.into_inner().id.as_str() {
            "tok" => Ok(Response::new(spb::GetSecretResponse {
                data: b"hunter2".to_vec(),
            })),
            id => Err(Status::not_found(format!("secret {id} not found"))),
        }
    }
}

struct Setup {
    bk: Arc<BuildKit>,
    host: Arc<FakeHost>,
    _state: tempfile::TempDir,
}

fn setup() -> Setup {
    let state = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost {
        state: state.path().to_path_buf(),
        ..Default::default()
    });
    let bk = BuildKit::new(host.clone());
    Setup {
        bk,
        host,
        _state: state,
    }
}

/// A control client over an in-memory `/grpc` connection.
async fn control(bk: &Arc<BuildKit>) -> cpb::control_client::ControlClient<H2Channel> {
    let (a, b) = tokio::io::duplex(1 << 20);
    tokio::spawn(bk.clone().serve_grpc(b));
    let (ch, _closed) = H2Channel::connect(a).await.unwrap();
    cpb::control_client::ControlClient::with_origin(ch, http::Uri::from_static("http://buildkit"))
}

/// Attaches a client session serving `dirs` (and a secret) under `id` and `shared_key`.
fn session(bk: &Arc<BuildKit>, id: &str, shared_key: &str, files: &ClientFiles) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let headers = SessionHeaders {
        id: id.to_string(),
        shared_key: shared_key.to_string(),
        methods: vec![
            "/moby.filesync.v1.FileSync/DiffCopy".into(),
            "/moby.buildkit.secrets.v1.Secrets/GetSecret".into(),
        ],
    };
    tokio::spawn(bk.clone().attach_session(a, headers));
    let routes =
        tonic::service::Routes::new(fpb::file_sync_server::FileSyncServer::new(files.clone()))
            .add_service(spb::secrets_server::SecretsServer::new(ClientSecrets))
            .prepare();
    tokio::spawn(serve(b, routes));
}

fn files(dirs: &[(&str, Dir)]) -> ClientFiles {
    ClientFiles {
        dirs: Arc::new(Mutex::new(
            dirs.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )),
        requested: Arc::new(Mutex::new(Vec::new())),
    }
}

fn entries(e: &[(&str, &str)]) -> Dir {
    e.iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect()
}

fn solve_request(r#ref: &str, session: &str, attrs: &[(&str, &str)]) -> cpb::SolveRequest {
    cpb::SolveRequest {
        r#ref: r#ref.into(),
        session: session.into(),
        frontend: "dockerfile.v0".into(),
        frontend_attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        exporters: vec![cpb::Exporter {
            r#type: "moby".into(),
            attrs: HashMap::from([("name".to_string(), "x:1,y".to_string())]),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_solve_with_context_secret_and_image_export() {
    let s = setup();
    let f = files(&[
        (
            "dockerfile",
            entries(&[("Dockerfile", "FROM busybox\nCOPY . /\n")]),
        ),
        (
            "context",
            entries(&[
                ("a.txt", "A"),
                ("sub/", ""),
                ("sub/b.txt", "B"),
                (".dockerignore", "ignored\n"),
            ]),
        ),
    ]);
    session(&s.bk, "sess-1", "key-1", &f);
    let mut c = control(&s.bk).await;
    // The status stream, asked for before the build starts, sees it whole.
    let mut status = c
        .status(cpb::StatusRequest {
            r#ref: "build-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let resp = c
        .solve(solve_request("build-1", "sess-1", &[("build-arg:A", "1")]))
        .await
        .unwrap()
        .into_inner();
    let id = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(resp.exporter_response["containerimage.digest"], id);
    assert_eq!(
        resp.exporter_response["image.name"],
        "docker.io/library/x:1,docker.io/library/y:latest"
    );
    assert_eq!(
        s.host.tags.lock().unwrap().clone(),
        vec![(id, vec!["x:1".to_string(), "y".to_string()])]
    );
    let seen = s.host.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.dockerfile, "FROM busybox\nCOPY . /\n");
    assert_eq!(seen.secret.as_deref(), Some(&b"hunter2"[..]));
    assert_eq!(seen.build_args.get("A"), Some(&Some("1".to_string())));
    assert_eq!(seen.context_files["a.txt"], "A");
    assert_eq!(seen.context_files["sub/b.txt"], "B");
    let mut names = Vec::new();
    let mut logs = Vec::new();
    while let Some(m) = status.message().await.unwrap() {
        names.extend(m.vertexes.iter().map(|v| v.name.clone()));
        logs.extend(
            m.logs
                .iter()
                .map(|l| String::from_utf8_lossy(&l.msg).into_owned()),
        );
    }
    for want in [
        "[internal] load build definition from Dockerfile",
        "[internal] load .dockerignore",
        "[internal] load build context",
        "[1/1] RUN true",
        "exporting to image",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    assert_eq!(logs, ["step output\n"]);

    // The same client context again: only what changed is asked for.
    f.requested.lock().unwrap().clear();
    f.dirs.lock().unwrap().insert(
        "context".into(),
        entries(&[
            ("a.txt", "A2"),
            ("sub/", ""),
            ("sub/b.txt", "B"),
            (".dockerignore", "ignored\n"),
        ]),
    );
    c.solve(solve_request("build-2", "sess-1", &[]))
        .await
        .unwrap();
    let asked = f.requested.lock().unwrap().clone();
    assert!(asked.contains(&"a.txt".to_string()), "{asked:?}");
    assert!(!asked.contains(&"sub/b.txt".to_string()), "{asked:?}");
    assert_eq!(s.host.seen.lock().unwrap()[1].context_files["a.txt"], "A2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_path_that_escapes_is_refused() {
    let s = setup();
    let f = files(&[
        (
            "dockerfile",
            entries(&[("Dockerfile", "FROM busybox\nCOPY . /\n")]),
        ),
        ("context", entries(&[("../escaped.txt", "x")])),
    ]);
    session(&s.bk, "sess-2", "key-2", &f);
    let mut c = control(&s.bk).await;
    let err = c
        .solve(solve_request("build-3", "sess-2", &[]))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("invalid path from the client"),
        "{err:?}"
    );
    assert!(s.host.seen.lock().unwrap().is_empty());
    let outside = s.host.state.join("contexts").join("escaped.txt");
    assert!(!outside.exists());
}

/// A directory listed again as a symlink, then a file through it: refused before anything
/// is written outside; a hard link through a symlinked directory too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_cannot_write_through_symlinks() {
    let s = setup();
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display().to_string();
    for (i, ctx) in [
        entries(&[("a/", ""), ("a", "->"), ("a/x", "evil")]),
        entries(&[("l", "->"), ("l/x", "evil")]),
        entries(&[("l", "->"), ("h", "=>l/passwd")]),
    ]
    .into_iter()
    .enumerate()
    {
        let ctx: Dir = ctx
            .into_iter()
            .map(|(p, c)| (p, c.replace("->", &format!("->{out}"))))
            .collect();
        let f = files(&[
            (
                "dockerfile",
                entries(&[("Dockerfile", "FROM busybox\nCOPY . /\n")]),
            ),
            ("context", ctx),
        ]);
        let id = format!("sess-link-{i}");
        session(&s.bk, &id, &id, &f);
        let mut c = control(&s.bk).await;
        let e = c
            .solve(solve_request(&format!("build-link-{i}"), &id, &[]))
            .await
            .unwrap_err();
        assert!(e.message().contains("invalid transfer"), "{i}: {e:?}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_what_this_builder_does_not_do() {
    let s = setup();
    let mut c = control(&s.bk).await;
    // An LLB definition.
    let mut r = solve_request("build-4", "", &[]);
    r.frontend.clear();
    r.definition = Some(berth_buildkit::pb::pb::Definition {
        def: vec![vec![1, 2, 3]],
    });
    let e = c.solve(r).await.unwrap_err();
    assert!(
        e.message().contains("LLB definitions are not supported"),
        "{e:?}"
    );
    // Another frontend.
    let mut r = solve_request("build-5", "", &[]);
    r.frontend = "gateway.v0".into();
    r.frontend_attrs
        .insert("source".into(), "example.com/frontend:1".into());
    let e = c.solve(r).await.unwrap_err();
    assert!(e.message().contains("unsupported frontend"), "{e:?}");
    // An exporter this builder does not have.
    let mut r = solve_request("build-6", "", &[]);
    r.exporters[0].r#type = "registry".into();
    let e = c.solve(r).await.unwrap_err();
    assert!(e.message().contains("could not be found"), "{e:?}");
    // Several platforms.
    let r = solve_request("build-7", "", &[("platform", "linux/amd64,linux/arm64")]);
    let e = c.solve(r).await.unwrap_err();
    assert!(e.message().contains("multi-platform"), "{e:?}");
    // The worker is the host's platform; the history API is not served.
    let w = c
        .list_workers(cpb::ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.record.len(), 1);
    assert_eq!(w.record[0].platforms[0].os, "linux");
    assert!(s.host.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_solve_cancels_the_build() {
    let s = setup();
    s.host.block.store(true, Ordering::Relaxed);
    let f = files(&[
        (
            "dockerfile",
            entries(&[("Dockerfile", "FROM busybox\nRUN true\n")]),
        ),
        ("context", entries(&[])),
    ]);
    session(&s.bk, "sess-3", "key-3", &f);
    let mut c = control(&s.bk).await;
    let started = Arc::new(AtomicUsize::new(0));
    let call = tokio::spawn(async move {
        let _ = c.solve(solve_request("build-8", "sess-3", &[])).await;
    });
    // The build is running once the fake host saw it.
    for _ in 0..500 {
        if !s.host.seen.lock().unwrap().is_empty() {
            started.fetch_add(1, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        started.load(Ordering::Relaxed),
        1,
        "the build never started"
    );
    // The client gives up (Ctrl-C): its call goes away.
    call.abort();
    for _ in 0..500 {
        if s.host.cancelled.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the build was not cancelled");
}
