//! The exporters: `moby`/`image` (the docker driver's default, as `--load` does: the image is
//! already in Berth's store; it gets every name), `local` (the result's files sent to the
//! client's directory) and `tar` (a tar of them to the client's file or stdout). Also the
//! received contexts as build-cache records.

use crate::session::Session;
use crate::solve::Job;
use crate::status::Step;
use crate::{filesync, BuildKit};
use berth_build::builder::BuildError;
use berth_build::host::{CacheRecord, PruneOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Refuses exporters this builder has no way to honour, before the build runs.
pub fn check(t: &str) -> Result<(), BuildError> {
    match t {
        "moby" | "image" | "local" | "tar" => Ok(()),
        "docker" | "oci" => Err(BuildError::BadRequest(format!(
            "exporter {t:?} is not supported by this builder: the image is stored in the engine (default, or --load); use type=local or type=tar for files"
        ))),
        _ => Err(BuildError::BadRequest(format!(
            "exporter {t:?} could not be found (this builder has moby/image, local and tar)"
        ))),
    }
}

/// Exporter `i` of a build, on its result `image`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    bk: &Arc<BuildKit>,
    job: &Job,
    session: Option<&Session>,
    i: usize,
    t: &str,
    attrs: &HashMap<String, String>,
    image: &str,
    resp: &mut HashMap<String, String>,
) -> Result<(), BuildError> {
    match t {
        "moby" | "image" => {
            let step = Step::start(&job.status, &job.id, "exporting to image");
            step.status("exporting layers", 0, 0, true);
            step.status(&format!("writing image {image}"), 0, 0, true);
            let names: Vec<String> = attrs
                .get("name")
                .map(|n| {
                    n.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let host = bk.host.clone();
            let (img, ns) = (image.to_string(), names.clone());
            let r = tokio::task::spawn_blocking(move || host.tag(&img, &ns))
                .await
                .map_err(|e| BuildError::Failed(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = r {
                step.fail(&e.to_string());
                return Err(e);
            }
            for n in &names {
                step.status(&format!("naming to {}", full_name(n)), 0, 0, true);
            }
            step.done();
            resp.insert("containerimage.config.digest".into(), image.to_string());
            resp.insert("containerimage.digest".into(), image.to_string());
            if !names.is_empty() {
                resp.insert(
                    "image.name".into(),
                    names
                        .iter()
                        .map(|n| full_name(n))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            Ok(())
        }
        "local" | "tar" => {
            let session = session.ok_or_else(|| {
                BuildError::BadRequest("no active session to export files to".into())
            })?;
            let name = if t == "local" {
                "exporting to client directory"
            } else {
                "exporting to client tarball"
            };
            let step = Step::start(&job.status, &job.id, name);
            let (tx, rx) = tokio::sync::oneshot::channel::<PathBuf>();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), BuildError>>();
            // The image stays mounted (on a blocking thread) while the files go out.
            let host = bk.host.clone();
            let img = image.to_string();
            let mounted = tokio::task::spawn_blocking(move || {
                let mut tx = Some(tx);
                let mut done_rx = Some(done_rx);
                host.with_rootfs(&img, &mut |p| {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(p.to_path_buf());
                    }
                    match done_rx.take().map(|d| d.blocking_recv()) {
                        Some(Ok(r)) => r,
                        _ => Err(BuildError::Cancelled),
                    }
                })
            });
            let r = match rx.await {
                Ok(root) => {
                    step.status("copying files", 0, 0, false);
                    let sent = if t == "local" {
                        filesync::send_dir(session, i, root).await
                    } else {
                        filesync::send_tar(session, i, root).await
                    };
                    let _ = done_tx.send(sent);
                    mounted
                        .await
                        .map_err(|e| BuildError::Failed(e.to_string()))
                        .and_then(|r| r)
                }
                Err(_) => mounted
                    .await
                    .map_err(|e| BuildError::Failed(e.to_string()))
                    .and_then(|r| r),
            };
            match r {
                Ok(()) => {
                    step.status("copying files", 0, 0, true);
                    step.done();
                    Ok(())
                }
                Err(e) => {
                    step.fail(&e.to_string());
                    Err(e)
                }
            }
        }
        _ => check(t),
    }
}

/// `busybox` → `docker.io/library/busybox:latest`, as BuildKit names images.
fn full_name(n: &str) -> String {
    let (repo, tag) = match n.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
        _ => (n.to_string(), None),
    };
    let (repo, digest) = match repo.split_once('@') {
        Some((r, d)) => (r.to_string(), Some(d.to_string())),
        None => (repo, None),
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_domain {
        repo
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (tag, digest) {
        (_, Some(d)) => format!("{repo}@{d}"),
        (Some(t), None) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    }
}

fn contexts_dir(state: &Path) -> PathBuf {
    state.join("contexts")
}

fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        m.blocks() * 512
    }
}

fn locked(dir: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("lock"))
        .ok()?;
    // SAFETY: flock on a descriptor we own.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Received contexts kept for incremental transfers (`source.local` records).
pub fn context_records(state: &Path) -> Vec<CacheRecord> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(contexts_dir(state)) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let in_use = locked(&dir).is_none();
        let t = mtime(&dir.join("lock"));
        out.push(CacheRecord {
            id: e.file_name().to_string_lossy().into_owned(),
            kind: "source.local".into(),
            description: "local source for context".into(),
            size: dir_size(&dir.join("data")),
            created: mtime(&dir),
            last_used: t,
            usage_count: 1,
            in_use,
            shared: false,
            mutable: true,
        });
    }
    out
}

/// Removes the received contexts `opts` selects (not those in use).
pub fn prune_contexts(state: &Path, opts: &PruneOptions) -> Vec<CacheRecord> {
    let now = chrono::Utc::now().timestamp();
    let mut gone = Vec::new();
    for r in context_records(state) {
        if r.in_use || !opts.selects(&r, now) {
            continue;
        }
        let dir = contexts_dir(state).join(&r.id);
        let Some(_lock) = locked(&dir) else {
            continue;
        };
        let doomed = dir.with_extension("gone");
        if std::fs::rename(&dir, &doomed).is_ok() {
            let _ = std::fs::remove_dir_all(&doomed);
            gone.push(r);
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_buildkit_shows_them() {
        assert_eq!(full_name("x"), "docker.io/library/x:latest");
        assert_eq!(full_name("me/x:1"), "docker.io/me/x:1");
        assert_eq!(full_name("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(full_name("reg.io/a/b:t"), "reg.io/a/b:t");
    }

    #[test]
    fn exporters_checked() {
        assert!(check("moby").is_ok() && check("local").is_ok() && check("tar").is_ok());
        assert!(check("oci").is_err());
        assert!(check("registry").is_err());
    }
}
