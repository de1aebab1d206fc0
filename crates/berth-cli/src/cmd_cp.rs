//! `berth cp`: copies between a container and the host through the archive endpoints, with
//! docker's destination rules (into an existing directory, or as a new name; `/.` copies a
//! directory's contents; `-` is a tar stream on stdin/stdout).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use berth_api::client::{Body, Client, Method};
use serde::Deserialize;

use crate::cli::CpArgs;
use crate::error::CliError;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathStat {
    name: String,
    size: i64,
    mode: u32,
    #[serde(rename = "linkTarget")]
    link_target: String,
}

const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;

/// `container:path` -> (container, path); a host path otherwise. A leading `/` or `.` or a
/// path separator before the colon means a host path, as in docker.
fn split_container(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

fn decode_stat(h: Option<&str>) -> PathStat {
    h.and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

async fn stat(c: &Client, container: &str, path: &str) -> Result<Option<PathStat>, CliError> {
    let q = [("path", path.to_string())];
    match c
        .request(
            Method::HEAD,
            &format!("/containers/{}/archive", seg(container)),
            &q,
            Body::Empty,
        )
        .await
    {
        Ok(r) => Ok(Some(decode_stat(
            r.headers
                .get("X-Docker-Container-Path-Stat")
                .and_then(|v| v.to_str().ok()),
        ))),
        Err(e) if e.status() == Some(404) => {
            if e.to_string().contains("No such container") {
                Err(e.into())
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn seg(s: &str) -> String {
    berth_api::client::encode_query_component(s)
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i])
            .replace(".000", "")
            .trim_end_matches('0')
            .to_string()
    }
}

pub async fn cp(c: Arc<Client>, a: CpArgs) -> Result<i32, CliError> {
    match (split_container(&a.src), split_container(&a.dest)) {
        (Some(_), Some(_)) => Err(CliError::msg("copying between containers is not supported")),
        (None, None) => Err(CliError::msg("must specify at least one container source")),
        (Some((cont, path)), None) => from_container(&c, &a, cont, path).await,
        (None, Some((cont, path))) => to_container(&c, &a, cont, path).await,
    }
}

/// Renames the archive's top entry (`name`) to `to` in every entry path.
/// Extracts what the daemon sent below `dest_dir` with berth-fs's extractor: nothing is written
/// through a symlink the container put in the archive, and `..` is refused.
fn extract_host(
    mut data: impl std::io::Read,
    dest_dir: &Path,
    rename: Option<(String, String)>,
) -> std::io::Result<()> {
    let opts = berth_fs::ExtractOptions {
        rebase: rename,
        ..Default::default()
    };
    berth_fs::extract(&mut data, dest_dir, &opts)
        .map(|_| ())
        .map_err(std::io::Error::other)
}

async fn from_container(c: &Client, a: &CpArgs, cont: &str, path: &str) -> Result<i32, CliError> {
    let mut src = path.to_string();
    if a.follow_link {
        if let Some(st) = stat(c, cont, &src).await? {
            if st.mode & GO_SYMLINK != 0 && !st.link_target.is_empty() {
                src = st.link_target;
            }
        }
    }
    let q = [("path", src.clone())];
    let mut r = c
        .request(
            Method::GET,
            &format!("/containers/{}/archive", seg(cont)),
            &q,
            Body::Empty,
        )
        .await
        .map_err(|e| {
            if e.status() == Some(404) && !e.to_string().contains("No such container") {
                CliError::msg(format!(
                    "Error response from daemon: Could not find the file {src} in container {cont}"
                ))
            } else {
                e.into()
            }
        })?;
    let st = decode_stat(
        r.headers
            .get("X-Docker-Container-Path-Stat")
            .and_then(|v| v.to_str().ok()),
    );
    if a.dest == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = r.chunk().await? {
            out.write_all(&chunk)?;
        }
        out.flush()?;
        return Ok(0);
    }
    let dest = PathBuf::from(&a.dest);
    let src_is_dir = st.mode & GO_DIR != 0;
    let contents = src.ends_with("/.");
    let dest_md = std::fs::metadata(&dest).ok();
    let (dir, rename) = match &dest_md {
        // Into an existing directory: the archive's top entry (or `./` contents) lands inside.
        Some(md) if md.is_dir() => (dest.clone(), None),
        Some(_) => {
            if src_is_dir {
                return Err(CliError::msg(format!(
                    "cannot copy a directory to a file: {}",
                    dest.display()
                )));
            }
            let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            let base = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (parent, Some((st.name.clone(), base)))
        }
        None => {
            if a.dest.ends_with('/') && !src_is_dir {
                return Err(CliError::msg(format!(
                    "destination directory \"{}\" must exist",
                    a.dest
                )));
            }
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(CliError::msg(format!(
                    "invalid output path: directory \"{}\" does not exist",
                    parent.display()
                )));
            }
            let base = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if contents {
                std::fs::create_dir_all(&dest)?;
                (dest.clone(), None)
            } else {
                (parent, Some((st.name.clone(), base)))
            }
        }
    };
    // Stream the body through a pipe into a tar extraction on a thread.
    let (rd, wr) = std::io::pipe()?;
    let worker = std::thread::spawn(move || extract_host(rd, &dir, rename));
    let mut wr = wr;
    let mut total = 0u64;
    while let Some(chunk) = r.chunk().await? {
        total += chunk.len() as u64;
        if wr.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(wr);
    worker
        .join()
        .map_err(|_| CliError::msg("copy failed"))?
        .map_err(|e| CliError::msg(format!("failed to copy: {e}")))?;
    if !a.quiet {
        eprintln!("Successfully copied {} to {}", human(total), a.dest);
    }
    Ok(0)
}

async fn to_container(c: &Client, a: &CpArgs, cont: &str, path: &str) -> Result<i32, CliError> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let dst_stat = stat(c, cont, &path).await?;
    let (put_dir, body_reader, total): (String, Box<dyn std::io::Read + Send>, u64) =
        if a.src == "-" {
            match &dst_stat {
                Some(s) if s.mode & GO_DIR != 0 => {}
                _ => {
                    return Err(CliError::msg(format!(
                        "destination \"{cont}:{path}\" must be a directory"
                    )))
                }
            }
            (path.clone(), Box::new(std::io::stdin()), 0)
        } else {
            let src = PathBuf::from(&a.src);
            let mut src_real = src.clone();
            if a.follow_link {
                src_real = std::fs::canonicalize(&src)?;
            }
            let md = std::fs::symlink_metadata(&src_real).map_err(|e| {
                CliError::msg(format!("lstat {}: {}", a.src, e.to_string().to_lowercase()))
            })?;
            let contents = a.src.ends_with("/.");
            let dst_is_dir = dst_stat.as_ref().is_some_and(|s| s.mode & GO_DIR != 0);
            let (put_dir, name) = if dst_is_dir {
                let name = if contents {
                    ".".to_string()
                } else {
                    src.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| ".".into())
                };
                (path.clone(), name)
            } else {
                if dst_stat.is_some() && md.is_dir() {
                    return Err(CliError::msg(format!(
                        "cannot copy a directory to a file: {cont}:{path}"
                    )));
                }
                if dst_stat.is_none() && path.ends_with('/') {
                    return Err(CliError::msg(format!(
                        "destination \"{cont}:{path}\" must be a directory"
                    )));
                }
                let trimmed = path.trim_end_matches('/');
                let (parent, base) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
                let parent = if parent.is_empty() { "/" } else { parent };
                (parent.to_string(), base.to_string())
            };
            let (rd, wr) = std::io::pipe()?;
            let size = dir_size(&src_real);
            let src2 = src_real.clone();
            std::thread::spawn(move || {
                let mut b = tar::Builder::new(wr);
                b.follow_symlinks(false);
                let res = if md.is_dir() {
                    b.append_dir_all(&name, &src2)
                } else {
                    b.append_path_with_name(&src2, &name)
                };
                if res.is_ok() {
                    let _ = b.finish();
                }
            });
            (put_dir, Box::new(rd), size)
        };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    std::thread::spawn(move || {
        let mut r = body_reader;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let reader = ChanRead {
        rx,
        cur: bytes::Bytes::new(),
    };
    let mut q = vec![("path", put_dir.clone())];
    q.push(("noOverwriteDirNonDir", "true".into()));
    if a.archive {
        q.push(("copyUIDGID", "true".into()));
    }
    c.request(
        Method::PUT,
        &format!("/containers/{}/archive", seg(cont)),
        &q,
        Body::tar(reader),
    )
    .await?
    .bytes()
    .await?;
    if !a.quiet {
        eprintln!("Successfully copied {} to {}", human(total), a.dest);
    }
    Ok(0)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// AsyncRead over chunks from a reading thread.
struct ChanRead {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
}

impl tokio::io::AsyncRead for ChanRead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.cur.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => self.cur = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(self.cur.len());
        let chunk = self.cur.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_args() {
        assert_eq!(split_container("c:/etc"), Some(("c", "/etc")));
        assert_eq!(split_container("./c:/etc"), None);
        assert_eq!(split_container("/tmp/x"), None);
        assert_eq!(split_container("dir/c:x"), None);
    }
}
