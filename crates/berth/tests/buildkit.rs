//! `docker build` through the buildx plugin (its docker driver) against Berth: BuildKit's API
//! on `/grpc` and `/session`, served by Berth's own builder. The client is the real buildx
//! (v0.28.0 here): `$BUILDX`, or the docker CLI's plugin. Without the docker CLI or buildx
//! each test prints one SKIPPED line and passes.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The docker CLI with the buildx plugin, on a config directory of its own.
struct Bx {
    docker: PathBuf,
    cfg: tempfile::TempDir,
    host: String,
}

/// Where the docker CLI finds plugins when no config directory names one.
const PLUGIN_DIRS: &[&str] = &[
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

fn buildx_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BUILDX").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    PLUGIN_DIRS
        .iter()
        .map(|d| Path::new(d).join("docker-buildx"))
        .find(|p| p.is_file())
}

/// The docker CLI and buildx, or `None` after printing why the test is skipped.
fn bx(d: &Daemon) -> Option<Bx> {
    let Some(docker) = berth_testkit::which("docker") else {
        eprintln!("SKIPPED: no `docker` CLI on PATH (buildx tests need it)");
        return None;
    };
    let Some(buildx) = buildx_binary() else {
        eprintln!("SKIPPED: no buildx (set BUILDX, or install the docker-buildx CLI plugin)");
        return None;
    };
    let cfg = tempfile::tempdir().expect("config dir");
    let plugins = cfg.path().join("cli-plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::os::unix::fs::symlink(&buildx, plugins.join("docker-buildx")).expect("link buildx");
    Some(Bx {
        docker,
        cfg,
        host: d.host(),
    })
}

impl Bx {
    fn cmd(&self, args: &[&str], dir: &Path) -> Command {
        let mut c = Command::new(&self.docker);
        c.args(args)
            .current_dir(dir)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.cfg.path())
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
            .env_remove("DOCKER_BUILDKIT")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("BUILDX_BUILDER")
            .env_remove("DOCKER_API_VERSION");
        c
    }

    fn run(&self, args: &[&str], dir: &Path) -> Out {
        berth_testkit::run_with_timeout(self.cmd(args, dir), None, Duration::from_secs(180))
    }
}

/// A context directory with the given files (path, content).
fn ctx(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let full = t.path().join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, c).unwrap();
    }
    t
}

struct Rmi<'a>(&'a Daemon, Vec<String>);
impl Drop for Rmi<'_> {
    fn drop(&mut self) {
        for i in &self.1 {
            let _ = self.0.cli(&["rmi", "-f", i]);
        }
    }
}

/// `run --rm <image> <cmd...>` stdout, through the docker CLI.
fn run(b: &Bx, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    let o = b.run(&a, Path::new("/"));
    o.ok();
    o.stdout.clone()
}

#[test]
fn docker_build_uses_the_docker_driver_and_loads_into_berth() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let (t1, t2, t3) = (unique("bk-a"), unique("bk-b"), unique("bk-c"));
    let _g = Rmi(d, vec![t1.clone(), t2.clone(), t3.clone()]);
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY msg.txt /msg.txt\nRUN echo built-by-buildx >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
        ),
        ("msg.txt", "hello\n"),
        (".dockerignore", "ignored.txt\n"),
        ("ignored.txt", "no\n"),
    ]);
    // `docker build` is buildx's: it picks the docker driver, names the vertexes as BuildKit.
    let o = b.run(
        &["build", "--progress=plain", "-t", &t1, "-t", &t2, "."],
        c.path(),
    );
    o.ok();
    assert!(o.stderr.contains("using docker driver"), "{o}");
    assert!(o.stderr.contains("[2/3] COPY msg.txt /msg.txt"), "{o}");
    assert!(
        o.stderr
            .contains("[3/3] RUN echo built-by-buildx >> /msg.txt"),
        "{o}"
    );
    assert!(
        o.stderr
            .contains(&format!("naming to docker.io/library/{t2}:latest")),
        "{o}"
    );
    // Both tags, in Berth's store; the image runs with the docker CLI and with berth.
    assert_eq!(run(&b, &[&t1]), "hello\nbuilt-by-buildx\n");
    let o = d.cli(&[
        "run",
        "--rm",
        &t2,
        "sh",
        "-c",
        "test ! -e /ignored.txt && cat /msg.txt",
    ]);
    o.ok();
    assert_eq!(o.stdout, "hello\nbuilt-by-buildx\n");
    // The rebuild is cached.
    let o = b.run(&["build", "--progress=plain", "-t", &t1, "."], c.path());
    o.ok();
    assert_eq!(o.stderr.matches("CACHED").count(), 2, "{o}");
    // `buildx build --load`, with --iidfile and --metadata-file.
    let meta = c.path().join("meta.json");
    let iid = c.path().join("iid");
    let o = b.run(
        &[
            "buildx",
            "build",
            "--load",
            "-t",
            &t3,
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
            ".",
        ],
        c.path(),
    );
    o.ok();
    let id = d.fmt(&t3, "{{.Id}}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.digest"], json!(id), "{m}");
    assert_eq!(
        m["image.name"],
        json!(format!("docker.io/library/{t3}:latest"))
    );
    // The builder as buildx lists it.
    let o = b.run(&["buildx", "ls"], c.path());
    o.ok();
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains("running"))
        .unwrap_or_else(|| panic!("no running builder: {o}"));
    assert!(line.contains("default"), "{o}");
    assert!(o.stdout.contains("docker"), "{o}");
}

#[test]
fn local_and_tar_outputs() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox AS build\nRUN mkdir /out && echo artifact > /out/a.txt && ln -s a.txt /out/link\nFROM scratch\nCOPY --from=build /out/ /\n",
    )]);
    let dest = c.path().join("dest");
    let o = b.run(
        &[
            "build",
            "-o",
            &format!("type=local,dest={}", dest.display()),
            ".",
        ],
        c.path(),
    );
    o.ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "artifact\n"
    );
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        Path::new("a.txt")
    );
    let tar_path = c.path().join("out.tar");
    let o = b.run(
        &[
            "build",
            "-o",
            &format!("type=tar,dest={}", tar_path.display()),
            ".",
        ],
        c.path(),
    );
    o.ok();
    let mut ar = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
    let mut names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "link"]);
}

/// The Dockerfile features of the acceptance: syntax directive, heredocs, a cache mount whose
/// counter grows across builds, a secret readable in its step and absent from every layer and
/// from history, a bind mount from a stage, COPY --chmod, --target; independent stages run at
/// once.
#[test]
fn dockerfile_features_through_buildx() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let tag = unique("bk-feat");
    let _g = Rmi(d, vec![tag.clone()]);
    let id = unique("count");
    // The step checks the secret by its digest: its text is nowhere in the Dockerfile.
    let hash = hex_sha256(b"s3cr3t-value");
    let df = format!(
        r#"# syntax=docker/dockerfile:1
FROM busybox AS tools
RUN mkdir -p /opt && echo tool-output > /opt/tool.txt

FROM busybox AS unused
RUN exit 1

FROM busybox AS final
ARG N
RUN --mount=type=cache,id={id},target=/var/cache/counter <<EOF
echo "$N" >> /var/cache/counter/runs
wc -l < /var/cache/counter/runs | tr -d ' ' > /runs
EOF
RUN --mount=type=secret,id=token test "$(sha256sum < /run/secrets/token | cut -c1-64)" = {hash} && echo secret-ok > /secret-ok
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/tools cp /mnt/tools/tool.txt /tool.txt
COPY --chmod=0755 <<EOF /usr/local/bin/greet
#!/bin/sh
echo greetings
EOF

FROM final AS later
RUN exit 1
"#
    );
    let c = ctx(&[("Dockerfile", &df)]);
    let secret = c.path().join("token.txt");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let sec = format!("id=token,src={}", secret.display());
    for n in ["1", "2"] {
        let o = b.run(
            &[
                "build",
                "--progress=plain",
                "--target",
                "final",
                "--secret",
                &sec,
                "--build-arg",
                &format!("N={n}"),
                "-t",
                &tag,
                ".",
            ],
            c.path(),
        );
        o.ok();
        // Only the stages the target needs ran.
        assert!(!o.stderr.contains("exit 1"), "{o}");
    }
    let out = run(
        &b,
        &[
            &tag,
            "sh",
            "-c",
            "cat /runs /secret-ok /tool.txt; greet; stat -c %a /usr/local/bin/greet; test ! -e /run && test ! -e /mnt && test ! -e /var/cache/counter && echo no-mount-points",
        ],
    );
    assert_eq!(
        out,
        "2\nsecret-ok\ntool-output\ngreetings\n755\nno-mount-points\n"
    );
    // The secret is in no layer and not in the history.
    let o = b.run(&["history", "--no-trunc", &tag], Path::new("/"));
    o.ok();
    assert!(!o.stdout.contains("s3cr3t"), "{o}");
    let o = b.run(&["save", &tag], Path::new("/"));
    o.ok();
    assert!(!o.stdout.contains("s3cr3t-value"), "secret in a layer");
}

#[test]
fn errors_are_clear_and_leave_nothing_behind() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let tag = unique("bk-err");
    let _g = Rmi(d, vec![tag.clone()]);
    let fails = |df: &str, extra: &[&str], want: &str| {
        let c = ctx(&[("Dockerfile", df)]);
        let mut a = vec!["build", "--progress=plain", "-t", &tag];
        a.extend_from_slice(extra);
        a.push(".");
        let o = b.run(&a, c.path());
        o.fails();
        assert!(o.stderr.contains(want), "want {want:?}: {o}");
        o
    };
    fails(
        "FROM busybox\nRUNN echo\n",
        &[],
        "unknown instruction: RUNN",
    );
    fails(
        "# syntax=example.com/other/frontend:1\nFROM busybox\n",
        &[],
        "unsupported frontend",
    );
    fails(
        "FROM busybox\nRUN --mount=type=secret,id=absent,required true\n",
        &[],
        "secret absent: not found",
    );
    let o = fails(
        "FROM busybox\nRUN echo before && exit 7\n",
        &[],
        "process \"/bin/sh -c echo before && exit 7\" did not complete successfully: exit code: 7",
    );
    assert!(o.stderr.contains("before"), "{o}");
    fails(
        "FROM busybox\nRUN --security=insecure true\n",
        &[],
        "security.insecure is not allowed",
    );
    fails(
        "FROM busybox\n",
        &["-o", "type=oci,dest=/tmp/x.tar"],
        "not supported",
    );
    // Nothing was tagged, no build container is left.
    assert!(!d.cli(&["image", "inspect", &tag]).success());
    // A removal finishes its directories after it answers, and the other tests' builds run
    // steps on the same daemon meanwhile: a leftover is one that never goes.
    assert!(
        wait_until(Duration::from_secs(20), || no_build_containers(d)),
        "a build container was left"
    );
}

/// No container of a build's RUN steps on the daemon (they are internal: look at the runtime
/// directories).
fn no_build_containers(d: &Daemon) -> bool {
    let dir = d.exec_root().join("containers");
    let running: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    running.iter().all(|id| {
        // Containers the test suite runs on the shared daemon are listed by `ps -a`.
        d.cli(&["inspect", "--type", "container", id]).success()
    })
}

/// Ctrl-C in buildx cancels the build: the running step is killed, its container removed,
/// nothing tagged.
#[test]
fn ctrl_c_cancels_the_build() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let tag = unique("bk-cancel");
    let _g = Rmi(d, vec![tag.clone()]);
    let marker = unique("cancel-marker");
    let c = ctx(&[(
        "Dockerfile",
        // The shell stays (it would exec a last simple command), with the marker in its argv.
        &format!("FROM busybox\nRUN sleep 120 && echo {marker}\n"),
    )]);
    let mut cmd = b.cmd(&["build", "--progress=plain", "-t", &tag, "."], c.path());
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("docker build");
    let pgid = child.id() as i32;
    // The step runs once its marker process is there.
    if !wait_until(Duration::from_secs(60), || step_running(&marker)) {
        // SAFETY: a signal to the process group this test started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let out = child.wait_with_output().expect("wait");
        panic!(
            "the RUN step never started: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // SAFETY: a signal to the process group this test started.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    assert!(
        wait_until(Duration::from_secs(20), || !step_running(&marker)),
        "the step's process outlived the cancelled build"
    );
    assert!(wait_until(Duration::from_secs(20), || no_build_containers(
        d
    )));
    assert!(!d.cli(&["image", "inspect", &tag]).success());
}

fn hex_sha256(b: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn step_running(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(marker))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// `buildx du` lists the build cache (steps, cache mounts); `builder prune` clears it, cache
/// mounts included.
#[test]
fn du_and_prune() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let Some(b) = bx(&d) else { return };
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/c echo x >> /c/n && wc -l < /c/n > /n\n",
    )]);
    let tag = "bk-du";
    b.run(&["build", "-t", tag, "."], c.path()).ok();
    let o = b.run(&["buildx", "du", "--verbose"], c.path());
    o.ok();
    assert!(o.stdout.contains("exec.cachemount"), "{o}");
    assert!(o.stdout.contains("regular"), "{o}");
    let o = b.run(&["builder", "prune", "-af"], c.path());
    o.ok();
    assert!(o.stdout.contains("Total:"), "{o}");
    let o = b.run(&["buildx", "du", "--verbose"], c.path());
    o.ok();
    assert!(!o.stdout.contains("exec.cachemount"), "{o}");
    // The cache mount starts over.
    b.run(&["build", "--no-cache", "-t", tag, "."], c.path())
        .ok();
    assert_eq!(run(&b, &[tag, "cat", "/n"]).trim(), "1");
}

/// `--ssh default=<agent socket>`: the step sees the agent socket at SSH_AUTH_SOCK.
#[test]
fn ssh_agent_forwarding() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo agent-at-$SSH_AUTH_SOCK\n",
    )]);
    let sock = c.path().join("agent.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).expect("agent socket");
    let o = b.run(
        &[
            "build",
            "--progress=plain",
            "--no-cache",
            "--ssh",
            &format!("default={}", sock.display()),
            ".",
        ],
        c.path(),
    );
    o.ok();
    assert!(
        o.stderr.contains("agent-at-/run/buildkit/ssh_agent.0"),
        "{o}"
    );
}

/// `berth registry serve` with a password file on a free loopback port, killed on drop.
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start_private(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let ht = dir.path().join("htpasswd");
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        std::fs::write(&ht, format!("{user}:{hash}\n")).expect("htpasswd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(dir.path().join("storage"))
            .arg("--htpasswd")
            .arg(&ht)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn registry");
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect(&addr).is_ok()),
            "registry did not listen on {addr}"
        );
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `FROM` a private registry uses the client's login, which the session lends the build
/// (the daemon stores no credentials).
#[test]
fn from_a_private_registry_uses_the_clients_login() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let reg = Registry::start_private("alice", "s3cret");
    let image = format!("{}/private/bb:{}", reg.addr, unique("t"));
    // The image goes to the registry with a login of its own, then leaves the daemon.
    let pusher = tempfile::tempdir().unwrap();
    let host = d.host();
    let with_cfg = |args: &[&str]| {
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        d.cli_env(&all, &[("DOCKER_CONFIG", pusher.path().to_str().unwrap())])
    };
    with_cfg(&["login", &reg.addr, "-u", "alice", "-p", "s3cret"]).ok();
    d.cli(&["tag", "busybox", &image]).ok();
    with_cfg(&["push", &image]).ok();
    d.cli(&["rmi", &image]).ok();
    let tag = unique("bk-priv");
    let _g = Rmi(d, vec![tag.clone(), image.clone()]);
    let c = ctx(&[(
        "Dockerfile",
        &format!("FROM {image}\nRUN echo pulled > /p\n"),
    )]);
    // Without a login the pull is refused.
    let o = b.run(&["build", "--progress=plain", "-t", &tag, "."], c.path());
    o.fails();
    // With the client logged in, the build pulls with its credentials.
    b.run(
        &["login", &reg.addr, "-u", "alice", "-p", "s3cret"],
        c.path(),
    )
    .ok();
    let o = b.run(&["build", "--progress=plain", "-t", &tag, "."], c.path());
    o.ok();
    assert_eq!(run(&b, &[&tag, "cat", "/p"]), "pulled\n");
}

/// `docker build - < context.tar` (the context uploaded on the session, its Dockerfile in it)
/// and `docker build - < Dockerfile` (no context).
#[test]
fn stdin_tar_context_and_stdin_dockerfile() {
    let d = d();
    let Some(b) = bx(d) else { return };
    let (t1, t2) = (unique("bk-stdin-tar"), unique("bk-stdin-df"));
    let _g = Rmi(d, vec![t1.clone(), t2.clone()]);
    let mut tb = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM busybox\nCOPY f.txt /f.txt\n"[..]),
        ("f.txt", &b"from the tar\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, name, data).unwrap();
    }
    let tar = tb.into_inner().unwrap();
    let o = berth_testkit::run_with_timeout(
        b.cmd(&["build", "-t", &t1, "-"], Path::new("/")),
        Some(tar),
        Duration::from_secs(180),
    );
    o.ok();
    assert_eq!(run(&b, &[&t1, "cat", "/f.txt"]), "from the tar\n");
    let o = berth_testkit::run_with_timeout(
        b.cmd(&["build", "-t", &t2, "-"], Path::new("/")),
        Some(b"FROM busybox\nRUN echo no-context > /n\n".to_vec()),
        Duration::from_secs(180),
    );
    o.ok();
    assert_eq!(run(&b, &[&t2, "cat", "/n"]), "no-context\n");
}
