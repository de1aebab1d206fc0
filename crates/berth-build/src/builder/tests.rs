//! The builder's step logic and cache keys against a fake [`Backend`]: a real image store in a
//! temp dir, RUN steps "run" by a tiny script interpreter that writes into the step's
//! snapshot (as a container would) — no kernel namespaces, no overlay mounts.
//!
//! The fake's script, one command per line: `write PATH TEXT`, `append PATH TEXT` (into a
//! mount when PATH is under one), `exit N`, `rendezvous NAME` (waits until another step
//! reached the same name: proves steps run at once).

use super::*;
use crate::builder::progress::VertexState;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct Fake {
    /// The builder's own store (opening another would sweep the build's unrecorded layers).
    store: Arc<ImageStore>,
    store_root: PathBuf,
    runs: Mutex<Vec<RunSpec>>,
    seq: Mutex<u32>,
    meeting: Arc<(Mutex<BTreeMap<String, u32>>, Condvar)>,
}

impl Fake {
    fn new(store: Arc<ImageStore>, store_root: &Path) -> Fake {
        Fake {
            store,
            store_root: store_root.to_path_buf(),
            runs: Mutex::new(Vec::new()),
            seq: Mutex::new(0),
            meeting: Arc::new((Mutex::new(BTreeMap::new()), Condvar::new())),
        }
    }

    fn runs(&self) -> Vec<RunSpec> {
        self.runs.lock().unwrap().clone()
    }

    /// Where a path the step writes lands: a mount's source, or the snapshot's upper dir.
    fn host_path(spec: &RunSpec, upper: &Path, path: &str) -> PathBuf {
        for m in &spec.mounts {
            if let (Some(rest), RunMountKind::Bind { source, .. }) =
                (path.strip_prefix(&m.target), &m.kind)
            {
                return source.join(rest.trim_start_matches('/'));
            }
        }
        upper.join(path.trim_start_matches('/'))
    }
}

impl Backend for Fake {
    fn pull(
        &self,
        reference: &str,
        _platform: Option<&str>,
        _auth: Option<&Credentials>,
        _out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        Err(BuildError::NotFound(format!(
            "no registry here: {reference}"
        )))
    }

    fn run(
        &self,
        spec: &RunSpec,
        events: &mut dyn FnMut(RunEvent<'_>),
    ) -> Result<(String, i64), BuildError> {
        self.runs.lock().unwrap().push(spec.clone());
        let id = {
            let mut s = self.seq.lock().unwrap();
            *s += 1;
            format!("fake{}-{}", std::process::id(), *s)
        };
        self.store.create_snapshot(&id, &spec.image_id).unwrap();
        let upper = self.store_root.join("snapshots").join(&id).join("upper");
        events(RunEvent::Created(&id));
        // As the runtime does: mount points appear in the container's rw layer.
        for m in &spec.mounts {
            let p = upper.join(m.target.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if !p.exists() {
                if matches!(&m.kind, RunMountKind::Bind { source, .. } if source.is_file()) {
                    std::fs::write(&p, "").unwrap();
                } else {
                    std::fs::create_dir_all(&p).unwrap();
                }
            }
        }
        let script = spec.cmd.last().cloned().unwrap_or_default();
        for line in script.lines() {
            // `$NAME` words from the step's environment, as the shell would.
            let line: String = line
                .split(' ')
                .map(|w| match w.strip_prefix('$') {
                    Some(k) => spec
                        .env
                        .iter()
                        .find_map(|e| e.strip_prefix(&format!("{k}=")))
                        .unwrap_or("")
                        .to_string(),
                    None => w.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            let w: Vec<&str> = line.splitn(3, ' ').collect();
            match w.as_slice() {
                ["write", p, text] | ["append", p, text] => {
                    let f = Self::host_path(spec, &upper, p);
                    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                    let mut old = if w[0] == "append" {
                        std::fs::read_to_string(&f).unwrap_or_default()
                    } else {
                        String::new()
                    };
                    old.push_str(text);
                    old.push('\n');
                    std::fs::write(&f, old).unwrap();
                    events(RunEvent::Output(format!("wrote {p}\n").as_bytes()));
                }
                ["exit", n] => {
                    events(RunEvent::Stderr(b"failing\n"));
                    return Ok((id, n.parse().unwrap()));
                }
                ["rendezvous", name] => {
                    let (m, cv) = &*self.meeting;
                    let mut g = m.lock().unwrap();
                    *g.entry(name.to_string()).or_default() += 1;
                    cv.notify_all();
                    let (g, t) = cv
                        .wait_timeout_while(g, Duration::from_secs(20), |g| g[*name] < 2)
                        .unwrap();
                    assert!(!t.timed_out(), "step {name} ran alone: stages not parallel");
                    drop(g);
                }
                _ => panic!("fake backend: unknown script line {line:?}"),
            }
        }
        Ok((id, 0))
    }

    fn remove(&self, container_id: &str) {
        let _ = self.store.remove_snapshot(container_id);
    }

    fn fetch(&self, url: &str, _dest: &Path) -> Result<Option<i64>, BuildError> {
        Err(BuildError::Failed(format!("no network here: {url}")))
    }
}

/// What a build reported.
#[derive(Default)]
struct Recorder {
    text: Mutex<String>,
    vertexes: Mutex<Vec<Vertex>>,
    logs: Mutex<Vec<(String, u8, String)>>,
}

impl Progress for Recorder {
    fn text(&self, s: &str) {
        self.text.lock().unwrap().push_str(s);
    }
    fn vertex(&self, v: &Vertex) {
        self.vertexes.lock().unwrap().push(v.clone());
    }
    fn output(&self, vertex: &str, stream: u8, data: &[u8]) {
        self.logs.lock().unwrap().push((
            vertex.to_string(),
            stream,
            String::from_utf8_lossy(data).into_owned(),
        ));
    }
}

impl Recorder {
    fn vertex_names(&self, state: &VertexState) -> Vec<String> {
        self.vertexes
            .lock()
            .unwrap()
            .iter()
            .filter(|v| &v.state == state)
            .map(|v| v.name.clone())
            .collect()
    }
}

struct Secrets(BTreeMap<String, Vec<u8>>);

impl Session for Secrets {
    fn secret(&self, id: &str) -> Result<Option<Vec<u8>>, BuildError> {
        Ok(self.0.get(id).cloned())
    }
    fn ssh_agent(
        &self,
        _id: &str,
        _path: &Path,
    ) -> Result<Option<Box<dyn std::any::Any + Send>>, BuildError> {
        Ok(None)
    }
    fn credentials(&self, _host: &str) -> Option<Credentials> {
        None
    }
}

/// A builder over a fresh store, the fake backend and a context dir.
struct Env {
    dir: tempfile::TempDir,
    store: Arc<ImageStore>,
    fake: Fake,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(&dir.path().join("image")).unwrap());
        let fake = Fake::new(store.clone(), &dir.path().join("image"));
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        Env { dir, store, fake }
    }

    fn file(&self, name: &str, content: &str) {
        let p = self.dir.path().join("ctx").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn build_with(
        &self,
        df: &str,
        opts: &BuildOptions,
        session: Option<&dyn Session>,
    ) -> (Result<String, BuildError>, Recorder) {
        let b = Builder {
            store: &self.store,
            backend: &self.fake,
            cache_dir: self.dir.path().join("cache"),
            parents_dir: self.dir.path().join("parents"),
            tmp_dir: self.dir.path().join("tmp"),
            cache_mounts_dir: self.dir.path().join("mounts"),
            cache_images_dir: None,
        };
        let ctx = self.dir.path().join("ctx");
        let input = BuildInput {
            dockerfile: df,
            dockerfile_name: "Dockerfile",
            context: &ctx,
            session,
        };
        let rec = Recorder::default();
        let r = b.build_dockerfile(&input, opts, &rec);
        (r, rec)
    }

    fn build(&self, df: &str, args: &[(&str, &str)]) -> (Result<String, BuildError>, Recorder) {
        let opts = BuildOptions {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..Default::default()
        };
        self.build_with(df, &opts, None)
    }

    /// Every path of an image's layers (union, top wins), as `path` → file content ("" for
    /// directories).
    fn files(&self, image: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut dirs = self.store.image_layer_dirs(image).unwrap();
        dirs.reverse();
        for d in dirs {
            walk(&d, &d, &mut out);
        }
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if p.is_dir() {
            out.insert(rel, String::new());
            walk(root, &p, out);
        } else {
            out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

#[test]
fn cache_keys_depend_on_parent_and_step() {
    let a = cache::cache_key(&None, "ENV A=1");
    assert_eq!(a, cache::cache_key(&None, "ENV A=1"));
    assert_ne!(a, cache::cache_key(&None, "ENV A=2"));
    assert_ne!(a, cache::cache_key(&Some("sha256:x".into()), "ENV A=1"));
    assert_eq!(a.len(), 64);
}

#[test]
fn metadata_steps_are_cached_and_invalidated_from_the_change_on() {
    let e = Env::new();
    let df = "FROM scratch\nENV A=1\nLABEL l=v\nWORKDIR /app\nUSER 7\nCMD [\"run\"]\n";
    let (r1, p1) = e.build(df, &[]);
    let id1 = r1.unwrap();
    assert_eq!(p1.text.lock().unwrap().matches("Using cache").count(), 0);
    let cfg = e.store.get(&id1).unwrap().config.config.unwrap();
    assert_eq!(cfg.env, Some(vec!["A=1".to_string()]));
    assert_eq!(cfg.working_dir.as_deref(), Some("/app"));
    assert_eq!(cfg.user.as_deref(), Some("7"));
    // WORKDIR made its directory: a layer.
    assert!(e.files(&id1).contains_key("app"));
    // The same build: every step from the cache, the same image.
    let (r2, p2) = e.build(df, &[]);
    assert_eq!(r2.unwrap(), id1);
    assert_eq!(p2.text.lock().unwrap().matches("Using cache").count(), 5);
    // A changed LABEL re-runs from there on; the steps before it stay cached.
    let (r3, p3) = e.build(&df.replace("l=v", "l=w"), &[]);
    assert_ne!(r3.unwrap(), id1);
    assert_eq!(p3.text.lock().unwrap().matches("Using cache").count(), 1);
}

#[test]
fn run_steps_get_build_args_not_the_image() {
    let e = Env::new();
    let df = "FROM scratch\nARG V\nENV E=env\nWORKDIR /w\nUSER 5:5\nRUN --network=none write /w/out $V\n";
    let (r, p) = e.build(df, &[("V", "one")]);
    let id = r.unwrap();
    let runs = e.fake.runs();
    assert_eq!(runs.len(), 1);
    let s = &runs[0];
    assert_eq!(s.cmd, ["/bin/sh", "-c", "write /w/out $V"]);
    assert!(s.env.contains(&"V=one".to_string()), "{:?}", s.env);
    assert!(s.env.contains(&"E=env".to_string()));
    assert_eq!((s.user.as_str(), s.workdir.as_str()), ("5:5", "/w"));
    assert_eq!(s.network.as_deref(), Some("none"));
    // The arg reached the step, not the image's config.
    let cfg = e.store.get(&id).unwrap().config;
    assert_eq!(cfg.config.unwrap().env, Some(vec!["E=env".to_string()]));
    assert_eq!(e.files(&id)["w/out"], "one\n");
    // History records the args the step saw.
    let last = cfg.history.last().unwrap();
    assert_eq!(
        last.created_by.as_deref(),
        Some("|1 V=one /bin/sh -c write /w/out $V")
    );
    // Vertexes as BuildKit names them; the step's output is its log.
    let names = p.vertex_names(&VertexState::Done);
    assert!(
        names.contains(&"[2/2] RUN --network=none write /w/out one".to_string()),
        "{names:?}"
    );
    assert!(p
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|(_, s, t)| *s == 1 && t == "wrote /w/out\n"));
    // Same args: cached, nothing runs; another value: the step runs again.
    let (r2, p2) = e.build(df, &[("V", "one")]);
    assert_eq!(r2.unwrap(), id);
    assert_eq!(e.fake.runs().len(), 1);
    assert_eq!(p2.vertex_names(&VertexState::Cached).len(), 2);
    e.build(df, &[("V", "two")]).0.unwrap();
    assert_eq!(e.fake.runs().len(), 2);
}

#[test]
fn failing_step_reports_its_code_and_leaves_no_image() {
    let e = Env::new();
    let (r, p) = e.build("FROM scratch\nRUN exit 3\n", &[]);
    match r {
        Err(BuildError::RunFailed { cmd, code }) => {
            assert_eq!((cmd.as_str(), code), ("/bin/sh -c exit 3", 3));
        }
        other => panic!("{other:?}"),
    }
    let failed = p.vertexes.lock().unwrap().clone();
    assert!(failed.iter().any(|v| v.state
        == VertexState::Failed(
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3".into()
        )));
    assert!(p.logs.lock().unwrap().iter().any(|(_, s, _)| *s == 2));
    // The step's container went.
    let snaps = std::fs::read_dir(e.dir.path().join("image/snapshots"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0);
}

#[test]
fn cache_mount_persists_and_its_mount_point_stays_out_of_the_layer() {
    let e = Env::new();
    let df =
        "FROM scratch\nARG N\nRUN --mount=type=cache,target=/cache,id=c1 append /cache/runs $N\n";
    let id1 = e.build(df, &[("N", "1")]).0.unwrap();
    e.build(df, &[("N", "2")]).0.unwrap();
    let runs = e.fake.runs();
    let RunMountKind::Bind { source, readonly } = &runs[1].mounts[0].kind else {
        panic!("{:?}", runs[1].mounts)
    };
    assert!(!readonly);
    assert_eq!(runs[1].mounts[0].target, "/cache");
    assert_eq!(
        std::fs::read_to_string(source.join("runs")).unwrap(),
        "1\n2\n"
    );
    // The runtime's mount point is not part of the image.
    assert!(!e.files(&id1).keys().any(|k| k.starts_with("cache")));
    // Usage lists it; prune removes it (not in use).
    let usage = cache_mounts_usage(&e.dir.path().join("mounts"));
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].id, "/c1");
    assert!(!usage[0].in_use);
    let gone = prune_cache_mounts(&e.dir.path().join("mounts"), &|_| false);
    assert_eq!(gone.len(), 1);
    assert!(cache_mounts_usage(&e.dir.path().join("mounts")).is_empty());
}

#[test]
fn secrets_reach_the_step_only() {
    let e = Env::new();
    let s = Secrets(BTreeMap::from([("tok".to_string(), b"hunter2".to_vec())]));
    let df = "FROM scratch\nRUN --mount=type=secret,id=tok --mount=type=secret,id=tok,env=TOKEN,target=/t2 write /done yes\n";
    let (r, _) = e.build_with(df, &BuildOptions::default(), Some(&s));
    let id = r.unwrap();
    let spec = &e.fake.runs()[0];
    assert!(spec.env.contains(&"TOKEN=hunter2".to_string()));
    let file = spec
        .mounts
        .iter()
        .find(|m| m.target == "/run/secrets/tok")
        .expect("secret mount");
    assert!(matches!(
        &file.kind,
        RunMountKind::Bind { readonly: true, .. }
    ));
    let cfg = e.store.get(&id).unwrap().config;
    assert!(!serde_json::to_string(&cfg).unwrap().contains("hunter2"));
    let files = e.files(&id);
    assert!(
        !files.keys().any(|k| k.starts_with("run") || k == "t2"),
        "{files:?}"
    );
    assert!(!files.values().any(|v| v.contains("hunter2")));
    // A required secret the client lacks is an error; an optional one is left out.
    let (r, _) = e.build_with(
        "FROM scratch\nRUN --mount=type=secret,id=nope,required write /x y\n",
        &BuildOptions::default(),
        Some(&s),
    );
    assert!(matches!(r, Err(BuildError::BadRequest(m)) if m == "secret nope: not found"));
    e.build_with(
        "FROM scratch\nRUN --mount=type=secret,id=nope write /x y\n",
        &BuildOptions::default(),
        Some(&s),
    )
    .0
    .unwrap();
    assert!(e.fake.runs().last().unwrap().mounts.is_empty());
}

#[test]
fn copy_parents_exclude_and_chmod() {
    let e = Env::new();
    e.file("src/a/one.go", "1");
    e.file("src/a/one_test.go", "t");
    e.file("src/b/two.go", "2");
    e.file("notes.txt", "n");
    let df = "FROM scratch\nCOPY --parents --exclude=**/*_test.go src/./*/*.go /app/\nCOPY --chmod=0755 notes.txt /bin/notes\n";
    let id = e.build(df, &[]).0.unwrap();
    let files = e.files(&id);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "app",
            "app/a",
            "app/a/one.go",
            "app/b",
            "app/b/two.go",
            "bin",
            "bin/notes"
        ]
    );
    let dirs = e.store.image_layer_dirs(&id).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dirs[0].join("bin/notes"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    // The copied content is the cache key: an excluded file's edit changes nothing.
    e.file("src/a/one_test.go", "changed");
    let (r, p) = e.build(df, &[]);
    assert_eq!(r.unwrap(), id);
    assert_eq!(p.vertex_names(&VertexState::Cached).len(), 2);
    e.file("src/a/one.go", "changed");
    assert_ne!(e.build(df, &[]).0.unwrap(), id);
}

#[test]
fn only_needed_stages_run_and_refusals() {
    let e = Env::new();
    let df = "FROM scratch AS a\nRUN write /a 1\nFROM scratch AS b\nRUN exit 9\nFROM a AS c\nRUN write /c 3\n";
    let opts = BuildOptions {
        target: Some("c".into()),
        ..Default::default()
    };
    let id = e.build_with(df, &opts, None).0.unwrap();
    assert_eq!(e.fake.runs().len(), 2);
    let files = e.files(&id);
    assert_eq!((files["a"].as_str(), files["c"].as_str()), ("1\n", "3\n"));
    let bad = |df: &str| e.build(df, &[]).0.unwrap_err().to_string();
    assert!(bad("# syntax=example.com/x:1\nFROM scratch\n").contains("unsupported frontend"));
    assert!(bad("FROM scratch\nRUN --security=insecure true\n").contains("security.insecure"));
    assert!(bad("FROM scratch\nRUN --network=host true\n").contains("network.host"));
    assert!(bad("FROM scratch\nRUN --mount=type=cache true\n").contains("target"));
    assert!(
        bad("FROM scratch\nRUN --mount=type=bind,source=../x,target=/x true\n")
            .contains("not found")
    );
    // docker/dockerfile (any version) is the built-in frontend.
    e.build(
        "# syntax=docker/dockerfile:1.7\nFROM scratch\nENV A=1\n",
        &[],
    )
    .0
    .unwrap();
}

/// Independent stages run at once: each step waits for the other to start. Needs root (the
/// target mounts a stage's image to copy from it).
#[test]
fn independent_stages_run_in_parallel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a stage's image needs root");
        return;
    }
    let e = Env::new();
    let df = "FROM scratch AS a\nRUN rendezvous ab\nRUN write /a 1\nFROM scratch AS b\nRUN rendezvous ab\nRUN write /b 2\nFROM a\nCOPY --from=b /b /b\n";
    let opts = BuildOptions {
        parallel: true,
        ..Default::default()
    };
    let id = e.build_with(df, &opts, None).0.unwrap();
    let files = e.files(&id);
    assert_eq!((files["a"].as_str(), files["b"].as_str()), ("1\n", "2\n"));
    // A failing stage's own error is the build's, not "cancelled".
    let df = "FROM scratch AS a\nRUN exit 4\nFROM scratch AS b\nRUN write /b 2\nFROM a\nCOPY --from=b /b /b\n";
    match e.build_with(df, &opts, None).0 {
        Err(BuildError::RunFailed { code: 4, .. }) => {}
        other => panic!("{other:?}"),
    }
}
