//! The `dockerfile.v0` frontend, as BuildKit's Dockerfile frontend takes its inputs: the
//! frontend attributes become build options, the Dockerfile, `.dockerignore`, build context
//! and local named contexts come from the client's session, and the one builder runs.

use crate::filesync::{self, SyncRequest};
use crate::session::{BuildSession, Session};
use crate::status::{StatusLog, Step};
use crate::BuildKit;
use berth_build::builder::{BuildError, BuildInput, BuildOptions, NamedContext};
use berth_build::instructions::{parse_stages, Kind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn bad(m: impl Into<String>) -> BuildError {
    BuildError::BadRequest(m.into())
}

/// Whether a frontend (and its `source`, for `gateway.v0`) is the Dockerfile frontend.
pub fn is_dockerfile(frontend: &str, attrs: &HashMap<String, String>) -> bool {
    match frontend {
        "dockerfile.v0" => true,
        "gateway.v0" => attrs.get("source").is_some_and(|s| {
            let s = s.split('@').next().unwrap_or(s);
            let repo = s
                .rsplit_once(':')
                .map_or(s, |(r, t)| if t.contains('/') { s } else { r });
            let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
            matches!(repo, "docker/dockerfile" | "docker/dockerfile-upstream")
        }),
        _ => false,
    }
}

/// The build options the frontend attributes give.
pub fn options(
    attrs: &HashMap<String, String>,
    entitlements: &[String],
) -> Result<BuildOptions, BuildError> {
    let mut o = BuildOptions {
        parallel: true,
        allow_network_host: entitlements.iter().any(|e| e == "network.host"),
        allow_insecure: entitlements.iter().any(|e| e == "security.insecure"),
        ..Default::default()
    };
    if let Some(r) = attrs
        .get("requestid")
        .filter(|r| r.starts_with("frontend."))
    {
        return Err(bad(format!(
            "the {} request (--call, --check, --print) is not supported by this builder",
            r.trim_start_matches("frontend.")
        )));
    }
    for (k, v) in attrs {
        if let Some(a) = k.strip_prefix("build-arg:") {
            o.build_args.insert(a.to_string(), Some(v.clone()));
        } else if let Some(l) = k.strip_prefix("label:") {
            o.labels.insert(l.to_string(), v.clone());
        }
    }
    o.dockerfile = attrs
        .get("filename")
        .filter(|f| !f.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    o.target = attrs.get("target").filter(|t| !t.is_empty()).cloned();
    if let Some(nc) = attrs.get("no-cache") {
        if nc.is_empty() {
            o.no_cache = true;
        } else {
            o.no_cache_stages = nc
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect();
        }
    }
    o.pull = attrs.get("image-resolve-mode").is_some_and(|m| m == "pull");
    match attrs.get("force-network-mode").map(String::as_str) {
        None | Some("") | Some("default") | Some("sandbox") => {}
        Some("none") => o.network = Some("none".into()),
        Some("host") if o.allow_network_host => o.network = Some("host".into()),
        Some("host") => {
            return Err(bad(
                "network.host is not allowed: grant the network.host entitlement (--allow network.host)",
            ))
        }
        Some(n) => return Err(bad(format!("network mode {n:?} not supported"))),
    }
    if let Some(h) = attrs.get("add-hosts").filter(|h| !h.is_empty()) {
        for e in h.split(',') {
            let (host, ip) = e
                .split_once('=')
                .or_else(|| e.split_once(':'))
                .ok_or_else(|| bad(format!("invalid host {e:?}")))?;
            o.extra_hosts.push(format!("{host}:{ip}"));
        }
    }
    if let Some(p) = attrs.get("platform").filter(|p| !p.is_empty()) {
        if p.contains(',') {
            return Err(bad(
                "multi-platform builds are not supported by this builder (one --platform)",
            ));
        }
        o.platform = Some(p.clone());
    }
    if let Some(s) = attrs.get("shm-size").filter(|s| !s.is_empty()) {
        o.shm_size = Some(
            s.parse()
                .map_err(|_| bad(format!("invalid shm-size {s:?}")))?,
        );
    }
    if let Some(u) = attrs.get("ulimit").filter(|u| !u.is_empty()) {
        o.ulimits = u.split(',').map(|s| s.trim().to_string()).collect();
    }
    o.cgroup_parent = attrs
        .get("cgroup-parent")
        .filter(|c| !c.is_empty())
        .cloned();
    Ok(o)
}

/// `.dockerignore` lines as fsutil exclude patterns.
fn ignore_patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Whether a Dockerfile reads the build context (COPY/ADD without --from, bind mounts
/// without from=). When it cannot be parsed the builder reports why; nothing is sent.
fn needs_context(src: &str) -> bool {
    let Ok(df) = berth_build::parser::parse(src) else {
        return false;
    };
    let Ok(stages) = parse_stages(&df) else {
        return false;
    };
    stages
        .stages
        .iter()
        .flat_map(|s| &s.commands)
        .any(|c| match &c.kind {
            Kind::Copy(spec) => spec.from.is_none(),
            Kind::Run { mounts, .. } => mounts.iter().any(|m| {
                let m = m.to_ascii_lowercase();
                !m.contains("from=") && (m.contains("type=bind") || !m.contains("type="))
            }),
            // ONBUILD triggers may copy: be safe.
            Kind::Onbuild(_) => true,
            _ => false,
        })
}

/// A directory holding a received local; a persistent one is locked while in use.
pub struct LocalDir {
    pub path: PathBuf,
    temp: bool,
    _lock: Option<std::fs::File>,
}

impl Drop for LocalDir {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn flock_nb(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Where to receive local `name`: the directory kept for this client context (shared key),
/// so the next build only transfers what changed, or a temporary one when that is busy.
fn local_dir(state: &Path, shared_key: &str, name: &str) -> Result<LocalDir, BuildError> {
    let fail = |e: std::io::Error| BuildError::Failed(format!("context directory: {e}"));
    if !shared_key.is_empty() {
        let key = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            format!("{shared_key}\n{name}").as_bytes(),
        ));
        let dir = state.join("contexts").join(&key[..32]);
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(fail)?;
        if flock_nb(&lock) {
            let data = dir.join("data");
            std::fs::create_dir_all(&data).map_err(fail)?;
            let now = std::time::SystemTime::now();
            let _ = std::fs::File::options()
                .write(true)
                .open(dir.join("lock"))
                .and_then(|f| f.set_modified(now));
            return Ok(LocalDir {
                path: data,
                temp: false,
                _lock: Some(lock),
            });
        }
    }
    let dir = state.join("tmp").join(format!(
        "local-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    Ok(LocalDir {
        path: dir,
        temp: true,
        _lock: None,
    })
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.2}MB", n as f64 / 1e6),
        n if n >= 1 << 10 => format!("{:.2}kB", n as f64 / 1e3),
        n => format!("{n}B"),
    }
}

/// Receives local `req` as a vertex of its own.
async fn load(
    log: &StatusLog,
    build: &str,
    vertex: &str,
    what: &str,
    session: &Session,
    req: SyncRequest,
    dest: &Path,
) -> Result<(), BuildError> {
    let step = Step::start(log, build, vertex);
    let r = filesync::receive(session, &req, dest).await;
    transferred(step, what, r.map(|stats| stats.bytes))
}

/// Ends a transfer's vertex: its size as the last status, or its error.
fn transferred(step: Step<'_>, what: &str, r: Result<u64, BuildError>) -> Result<(), BuildError> {
    match r {
        Ok(n) => {
            step.status(
                &format!("transferring {what}: {}", human(n)),
                n as i64,
                0,
                true,
            );
            step.done();
            Ok(())
        }
        Err(e) => {
            step.fail(&e.to_string());
            Err(e)
        }
    }
}

/// Where a build's context comes from.
enum ContextSource {
    /// A local directory of the client's (`context`, or `contextkey`).
    Local(String),
    /// A tar the client uploads on its session (`docker build - < context.tar`): the URL
    /// path buildx names it by.
    Upload(String),
}

fn context_source(attrs: &HashMap<String, String>) -> Result<ContextSource, BuildError> {
    match attrs.get("context").filter(|c| !c.is_empty()) {
        None => Ok(ContextSource::Local(
            attrs
                .get("contextkey")
                .cloned()
                .unwrap_or_else(|| "context".into()),
        )),
        Some(u) => match u.strip_prefix("http://buildkit-session/") {
            Some(id) => Ok(ContextSource::Upload(format!("/{id}"))),
            None => Err(bad(format!(
                "remote build contexts ({u}) are not supported by this builder: build from a directory or a tar on stdin"
            ))),
        },
    }
}

/// Receives the uploaded context tar into `dest` (extracted safely), as a vertex.
async fn load_upload(
    log: &StatusLog,
    build: &str,
    session: &Session,
    path: &str,
    dest: &Path,
) -> Result<(), BuildError> {
    let step = Step::start(log, build, "[internal] load remote build context");
    let r = filesync::receive_upload(session, path, dest).await;
    transferred(step, "context", r)
}

/// Runs a `dockerfile.v0` solve: returns the built image's id.
pub async fn run(
    bk: &Arc<BuildKit>,
    build: &str,
    log: &Arc<StatusLog>,
    session: Option<Arc<Session>>,
    attrs: &HashMap<String, String>,
    entitlements: &[String],
    cancel: Arc<AtomicBool>,
) -> Result<String, BuildError> {
    let mut opts = options(attrs, entitlements)?;
    let source = context_source(attrs)?;
    let session = session.ok_or_else(|| {
        bad("no active session for this build: the client's files cannot be read")
    })?;
    let state = bk.host.state_dir();
    let df_name = opts.dockerfile.clone();
    let df_base = Path::new(&df_name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| df_name.clone());
    let ignore_name = format!("{df_name}.dockerignore");
    // An uploaded context holds its Dockerfile unless the client sends one apart.
    let ctx;
    let df_dir;
    let df_root = match &source {
        ContextSource::Upload(path) if !attrs.contains_key("dockerfilekey") => {
            ctx = local_dir(&state, "", "upload")?;
            load_upload(log, build, &session, path, &ctx.path).await?;
            df_dir = None;
            ctx.path.clone()
        }
        _ => {
            let key = attrs
                .get("dockerfilekey")
                .cloned()
                .unwrap_or_else(|| "dockerfile".into());
            // The Dockerfile, and a `<Dockerfile>.dockerignore` next to it.
            let d = local_dir(&state, "", &key)?;
            load(
                log,
                build,
                &format!("[internal] load build definition from {df_base}"),
                "dockerfile",
                &session,
                SyncRequest {
                    name: key,
                    include: vec![df_name.clone(), ignore_name.clone()],
                    follow_paths: vec![df_name.clone(), ignore_name.clone()],
                    ..Default::default()
                },
                &d.path,
            )
            .await?;
            let p = d.path.clone();
            df_dir = Some(d);
            ctx = match &source {
                ContextSource::Local(key) => local_dir(&state, &session.shared_key, key)?,
                ContextSource::Upload(path) => {
                    let c = local_dir(&state, "", "upload")?;
                    load_upload(log, build, &session, path, &c.path).await?;
                    c
                }
            };
            p
        }
    };
    let src = berth_fs::secure_join(&df_root, &df_name)
        .and_then(std::fs::read)
        .map_err(|_| {
            bad(format!(
                "failed to read dockerfile: open {df_name}: no such file or directory"
            ))
        })?;
    let src = String::from_utf8_lossy(&src).into_owned();
    if let ContextSource::Local(key) = &source {
        if needs_context(&src) {
            let excludes =
                load_ignore(log, build, &state, &session, &df_root, &ignore_name, key).await?;
            load(
                log,
                build,
                "[internal] load build context",
                "context",
                &session,
                SyncRequest {
                    name: key.clone(),
                    exclude: excludes,
                    ..Default::default()
                },
                &ctx.path,
            )
            .await?;
        }
    }
    drop(df_dir);
    let named = named_contexts(log, build, &state, &session, attrs).await?;
    opts.named_contexts = named
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let host = bk.host.clone();
    let rt = tokio::runtime::Handle::current();
    let log2 = log.clone();
    let ctx_path = ctx.path.clone();
    let r = tokio::task::spawn_blocking(move || {
        let bs = BuildSession { session, rt };
        let input = BuildInput {
            dockerfile: &src,
            dockerfile_name: &df_name,
            context: &ctx_path,
            session: Some(&bs),
        };
        host.build(&input, &opts, &*log2, cancel)
    })
    .await
    .map_err(|e| BuildError::Failed(format!("build task: {e}")))?;
    drop(named);
    drop(ctx);
    r
}

/// The `.dockerignore` patterns (next to the Dockerfile, or the context's), as a vertex.
async fn load_ignore(
    log: &StatusLog,
    build: &str,
    state: &Path,
    session: &Session,
    df_root: &Path,
    ignore_name: &str,
    ctx_key: &str,
) -> Result<Vec<String>, BuildError> {
    let step = Step::start(log, build, "[internal] load .dockerignore");
    let own = berth_fs::secure_join(df_root, ignore_name).and_then(std::fs::read_to_string);
    let text = match own {
        Ok(t) => Some(t),
        Err(_) => {
            let d = local_dir(state, "", "dockerignore")?;
            let r = filesync::receive(
                session,
                &SyncRequest {
                    name: ctx_key.to_string(),
                    include: vec![".dockerignore".into()],
                    follow_paths: vec![".dockerignore".into()],
                    ..Default::default()
                },
                &d.path,
            )
            .await;
            if let Err(e) = r {
                step.fail(&e.to_string());
                return Err(e);
            }
            std::fs::read_to_string(d.path.join(".dockerignore")).ok()
        }
    };
    step.status(
        &format!(
            "transferring context: {}",
            human(text.as_ref().map_or(0, |t| t.len() as u64))
        ),
        0,
        0,
        true,
    );
    step.done();
    Ok(text.map(|t| ignore_patterns(&t)).unwrap_or_default())
}

/// `context:NAME` attributes: local directories received from the client, or image
/// references. The directories stay until the build ends.
async fn named_contexts(
    log: &StatusLog,
    build: &str,
    state: &Path,
    session: &Session,
    attrs: &HashMap<String, String>,
) -> Result<Vec<(String, NamedContext, Option<LocalDir>)>, BuildError> {
    let mut out = Vec::new();
    for (k, v) in attrs {
        let Some(name) = k.strip_prefix("context:") else {
            continue;
        };
        let entry = if let Some(r) = v.strip_prefix("docker-image://") {
            (NamedContext::Image(r.to_string()), None)
        } else if let Some(local) = v.strip_prefix("local:") {
            let d = local_dir(state, &session.shared_key, local)?;
            load(
                log,
                build,
                &format!("[context {name}] load from client"),
                name,
                session,
                SyncRequest {
                    name: local.to_string(),
                    ..Default::default()
                },
                &d.path,
            )
            .await?;
            (NamedContext::Dir(d.path.clone()), Some(d))
        } else {
            return Err(bad(format!(
                "named context {name}={v}: only local directories and docker-image:// references are supported by this builder"
            )));
        };
        out.push((name.to_ascii_lowercase(), entry.0, entry.1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn attributes_become_options() {
        let o = options(
            &attrs(&[
                ("build-arg:A", "1"),
                ("label:l", "v"),
                ("target", "t"),
                ("no-cache", "a,B"),
                ("add-hosts", "h=1.2.3.4,g=5.6.7.8"),
                ("force-network-mode", "none"),
                ("shm-size", "1048576"),
                ("ulimit", "nofile=10:20"),
                ("image-resolve-mode", "pull"),
            ]),
            &[],
        )
        .expect("options");
        assert_eq!(o.build_args.get("A"), Some(&Some("1".to_string())));
        assert_eq!(o.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(o.target.as_deref(), Some("t"));
        assert_eq!(o.no_cache_stages, ["a", "b"]);
        assert!(!o.no_cache);
        assert_eq!(o.extra_hosts, ["h:1.2.3.4", "g:5.6.7.8"]);
        assert_eq!(o.network.as_deref(), Some("none"));
        assert_eq!(o.shm_size, Some(1 << 20));
        assert_eq!(o.ulimits, ["nofile=10:20"]);
        assert!(o.pull && o.parallel);
        assert_eq!(o.dockerfile, "Dockerfile");
        assert!(
            options(&attrs(&[("no-cache", "")]), &[])
                .expect("o")
                .no_cache
        );
        assert!(options(&attrs(&[("force-network-mode", "host")]), &[]).is_err());
        assert!(
            options(
                &attrs(&[("force-network-mode", "host")]),
                &["network.host".into()]
            )
            .expect("o")
            .allow_network_host
        );
        assert!(options(&attrs(&[("platform", "linux/amd64,linux/arm64")]), &[]).is_err());
        assert!(options(&attrs(&[("requestid", "frontend.outline")]), &[]).is_err());
    }

    #[test]
    fn frontends() {
        assert!(is_dockerfile("dockerfile.v0", &HashMap::new()));
        assert!(is_dockerfile(
            "gateway.v0",
            &attrs(&[("source", "docker/dockerfile:1.7")])
        ));
        assert!(is_dockerfile(
            "gateway.v0",
            &attrs(&[("source", "docker.io/docker/dockerfile:1@sha256:abc")])
        ));
        assert!(!is_dockerfile(
            "gateway.v0",
            &attrs(&[("source", "tonistiigi/hello")])
        ));
        assert!(!is_dockerfile("other.v0", &HashMap::new()));
    }

    #[test]
    fn context_needed_only_when_read() {
        assert!(!needs_context("FROM busybox\nRUN true\n"));
        assert!(needs_context("FROM busybox\nCOPY a /a\n"));
        assert!(!needs_context(
            "FROM busybox AS a\nFROM busybox\nCOPY --from=a /x /x\n"
        ));
        assert!(needs_context("FROM busybox\nRUN --mount=target=/x true\n"));
        assert!(!needs_context(
            "FROM busybox\nRUN --mount=type=cache,target=/x true\n"
        ));
        assert_eq!(ignore_patterns("# c\n\n a \n!b\n"), ["a", "!b"]);
    }
}
