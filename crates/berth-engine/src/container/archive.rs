//! The archive endpoints (`docker cp`): `HEAD`/`GET`/`PUT /containers/{id}/archive`.
//!
//! A running container is reached through `/proc/<init pid>/root`, so its mounts (volumes,
//! binds, tmpfs) are seen as the container sees them; a stopped one through its mounted
//! snapshot. Every path is resolved inside that root: the requested path with
//! `berth_fs::open_in_root` (a symlink in the container is followed as the container would
//! follow it and never leads out), and everything below it through directory descriptors with
//! `O_NOFOLLOW`, so neither a read nor an extraction ever goes through a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::container::Status;
use crate::error::{EngineError, Result};

/// Docker's `X-Docker-Container-Path-Stat` payload.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    pub fn header_value(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Go's FileMode from a Unix `st_mode`.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= 1 << 31,
        libc::S_IFLNK => m |= 1 << 27,
        libc::S_IFIFO => m |= 1 << 25,
        libc::S_IFSOCK => m |= 1 << 24,
        libc::S_IFBLK => m |= 1 << 26,
        libc::S_IFCHR => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

use berth_fs::sys::openat;

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    berth_fs::sys::lstatat(fd, b"")
}

fn readlink_fd(fd: RawFd) -> io::Result<Vec<u8>> {
    berth_fs::sys::readlinkat(fd, b"")
}

fn not_found(path: &str, container: &str) -> EngineError {
    EngineError::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

/// Splits a container path into the directory to resolve and the last name (`None` when the
/// path names a directory itself: `/`, `x/`, `x/.`).
fn split_path(path: &str) -> (String, Option<String>) {
    let p = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if p.ends_with('/') || p.ends_with("/.") {
        return (p, None);
    }
    match p.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() && name != ".." => (
            if dir.is_empty() {
                "/".into()
            } else {
                dir.into()
            },
            Some(name.into()),
        ),
        _ => (p, None),
    }
}

/// An opened path: an O_PATH descriptor of the object itself (symlinks not followed for a
/// last name), its stat and the name it goes by in a tar.
struct Target {
    fd: OwnedFd,
    st: libc::stat,
    name: String,
    link_target: String,
}

fn open_target(root: &Path, path: &str) -> io::Result<Option<Target>> {
    let (dir, last) = split_path(path);
    let Some(dfd) = berth_fs::open_in_root(root, &dir)? else {
        return Ok(None);
    };
    let (fd, name) = match &last {
        Some(n) => match openat(
            dfd.as_raw_fd(),
            n.as_bytes(),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => (fd, n.clone()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        },
        None => {
            let st = fstat(dfd.as_raw_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Ok(None);
            }
            let base = dir
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let name = if path.ends_with("/.") || base.is_empty() {
                ".".to_string()
            } else {
                base
            };
            (dfd, name)
        }
    };
    let st = fstat(fd.as_raw_fd())?;
    let link_target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        // Docker reports where the link leads, resolved in the container.
        let full = format!("{}/{}", dir.trim_end_matches('/'), name);
        berth_fs::resolve_in_root(root, &full)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Some(Target {
        fd,
        st,
        name,
        link_target,
    }))
}

fn stat_of(t: &Target) -> PathStat {
    let mtime = chrono::DateTime::from_timestamp(t.st.st_mtime, t.st.st_mtime_nsec as u32)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default();
    PathStat {
        name: t.name.clone(),
        size: t.st.st_size,
        mode: go_mode(t.st.st_mode),
        mtime,
        link_target: t.link_target.clone(),
    }
}

/// A `Write` that sends chunks to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// A `Read` over the request body's chunks.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

fn header_for(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// The names in the directory `dfd` (without `.` and `..`), sorted so archives are
/// reproducible, and the open directory to reach them through.
fn sorted_entries(dfd: OwnedFd) -> io::Result<(nix::dir::Dir, Vec<Vec<u8>>)> {
    let mut dir = nix::dir::Dir::from_fd(dfd.as_raw_fd()).map_err(io::Error::from)?;
    std::mem::forget(dfd); // Dir owns it now.
    let mut names: Vec<Vec<u8>> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    Ok((dir, names))
}

/// `name` in `dir` as an O_PATH handle that does not follow it, with its stat; `None` when it
/// went away since it was listed.
fn open_entry(dir: &nix::dir::Dir, name: &[u8]) -> io::Result<Option<(OwnedFd, libc::stat)>> {
    let child = match openat(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(child.as_raw_fd())?;
    Ok(Some((child, st)))
}

/// Writes `fd` (O_PATH) and everything below it as `name` into the tar.
fn tar_tree<W: Write>(
    b: &mut tar::Builder<W>,
    fd: &OwnedFd,
    st: &libc::stat,
    name: &str,
    links: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let mut h = header_for(st, tar::EntryType::Directory);
            let dname = format!("{}/", name.trim_end_matches('/'));
            b.append_data(&mut h, &dname, io::empty())?;
            let dfd = openat(fd.as_raw_fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let (dir, names) = sorted_entries(dfd)?;
            for n in names {
                let Some((child, cst)) = open_entry(&dir, &n)? else {
                    continue;
                };
                let cname = format!(
                    "{}/{}",
                    name.trim_end_matches('/'),
                    OsStr::from_bytes(&n).to_string_lossy()
                );
                tar_tree(b, &child, &cst, &cname, links)?;
            }
        }
        libc::S_IFREG => {
            if st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = links.get(&key) {
                    let mut h = header_for(st, tar::EntryType::Link);
                    b.append_link(&mut h, name, first)?;
                    return Ok(());
                }
                links.insert(key, name.to_string());
            }
            // Reopen the very inode the O_PATH descriptor names.
            let f = File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            let mut h = header_for(st, tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            b.append_data(&mut h, name, f.take(st.st_size as u64))?;
        }
        libc::S_IFLNK => {
            let target = readlink_fd(fd.as_raw_fd())?;
            let mut h = header_for(st, tar::EntryType::Symlink);
            b.append_link(&mut h, name, Path::new(OsStr::from_bytes(&target)))?;
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            let kind = match st.st_mode & libc::S_IFMT {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header_for(st, kind);
            h.set_device_major(libc::major(st.st_rdev))?;
            h.set_device_minor(libc::minor(st.st_rdev))?;
            b.append_data(&mut h, name, io::empty())?;
        }
        // Sockets are not archived (as with Docker).
        _ => {}
    }
    Ok(())
}

/// `docker export`: everything below `root` (its top-level entries without a `./` prefix).
pub(crate) fn export_root(root: &Path, tx: mpsc::Sender<Bytes>) -> io::Result<()> {
    let rootf = openat(
        libc::AT_FDCWD,
        root.as_os_str().as_bytes(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    let mut b = tar::Builder::new(ChannelWriter {
        tx,
        buf: Vec::new(),
    });
    let (dir, names) = sorted_entries(rootf)?;
    let mut links = HashMap::new();
    for n in names {
        let Some((child, st)) = open_entry(&dir, &n)? else {
            continue;
        };
        let name = OsStr::from_bytes(&n).to_string_lossy().into_owned();
        tar_tree(&mut b, &child, &st, &name, &mut links)?;
    }
    b.finish()?;
    b.get_mut().flush()
}

/// `PUT /archive`'s extraction: no whiteouts, the options `docker cp` gives.
fn extract<R: Read>(
    dest: &OwnedFd,
    mut reader: R,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
) -> std::result::Result<u64, berth_fs::FsError> {
    let opts = berth_fs::ExtractOptions {
        whiteouts: berth_fs::Whiteouts::Keep,
        same_owner: copy_uid_gid,
        no_overwrite_dir_non_dir,
        xattrs: false,
        rebase: None,
    };
    berth_fs::extract::extract_at(&mut reader, std::os::fd::AsFd::as_fd(dest), &opts)
}

/// The container's filesystem root for the duration of one operation.
struct RootGuard {
    root: PathBuf,
    unmount: Option<(std::sync::Arc<berth_image::ImageStore>, String)>,
    /// A stopped container's volumes and binds, mounted for the operation in a private mount
    /// namespace (see `run_in_root`).
    mounts: Vec<crate::container::mounts::MountPoint>,
}

/// Bind-mounts a stopped container's volumes and binds over its rootfs, in this thread's own
/// mount namespace (so nobody else sees them and they vanish with the thread).
fn mount_container_volumes(
    root: &Path,
    mounts: &[crate::container::mounts::MountPoint],
) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    // SAFETY: unshare only changes this thread's fs context and mount namespace.
    if unsafe { libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    let mut sorted: Vec<&crate::container::mounts::MountPoint> = mounts
        .iter()
        .filter(|m| m.kind != crate::container::mounts::MountKind::Tmpfs && !m.source.is_empty())
        .collect();
    sorted.sort_by_key(|m| m.destination.matches('/').count());
    for m in sorted {
        let dest = berth_fs::resolve_in_root(root, &m.destination)?;
        let target = root.join(dest.strip_prefix("/").unwrap_or(&dest));
        let src = Path::new(&m.source);
        if src.is_dir() {
            berth_fs::mkdir_in_root(root, &dest)?;
        } else if !target.exists() {
            if let Some(parent) = dest.parent() {
                berth_fs::mkdir_in_root(root, parent)?;
            }
            std::fs::File::create(&target)?;
        }
        mount(
            Some(src),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        if !m.rw {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
        }
    }
    Ok(())
}

/// Runs `f` on the container's root on a thread of its own (a stopped container's mounts
/// exist only there).
async fn run_in_root<T, F>(g: RootGuard, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Path) -> Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = if g.mounts.is_empty() {
            f(&g.root)
        } else {
            match mount_container_volumes(&g.root, &g.mounts) {
                Ok(()) => f(&g.root),
                Err(e) => Err(EngineError::Internal(format!(
                    "mounting the container's volumes: {e}"
                ))),
            }
        };
        // Unmounted before the answer: a client's next request on this stopped container
        // mounts the snapshot again, and must not find it taken away under it.
        drop(g);
        let _ = tx.send(r);
    });
    rx.await.map_err(EngineError::internal)?
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        if let Some((images, id)) = self.unmount.take() {
            let _ = images.unmount_snapshot(&id);
        }
    }
}

impl crate::Engine {
    async fn archive_root(&self, name: &str) -> Result<(RootGuard, String, bool)> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        if rec.state.status.is_running() || rec.state.status == Status::Paused {
            let root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            return Ok((
                RootGuard {
                    root,
                    unmount: None,
                    mounts: Vec::new(),
                },
                c.id.clone(),
                rec.host_config.readonly_rootfs,
            ));
        }
        let images = self.images();
        let id = c.id.clone();
        let i2 = images.clone();
        let root = tokio::task::spawn_blocking(move || i2.mount_snapshot(&id))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)?;
        Ok((
            RootGuard {
                root,
                unmount: Some((images, c.id.clone())),
                mounts: rec.mount_points.clone(),
            },
            c.id.clone(),
            false,
        ))
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let (g, _, _) = self.archive_root(name).await?;
        let p = path.to_string();
        let t = run_in_root(g, move |root| {
            open_target(root, &p)
                .map(|t| t.map(|t| stat_of(&t)))
                .map_err(EngineError::internal)
        })
        .await?;
        t.ok_or_else(|| not_found(path, name))
    }

    /// `GET /containers/{id}/archive`: the stat and a tar stream of the path.
    pub async fn archive_get(
        &self,
        name: &str,
        path: &str,
    ) -> Result<(PathStat, mpsc::Receiver<Bytes>)> {
        let (g, _, _) = self.archive_root(name).await?;
        let p = path.to_string();
        let (ttx, trx) = tokio::sync::oneshot::channel();
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        // The stream goes on after this returns: the thread keeps the root (and mounts).
        tokio::spawn(run_in_root(g, move |root| {
            let t = match open_target(root, &p) {
                Ok(Some(t)) => t,
                other => {
                    let _ = ttx.send(other.map(|_| None));
                    return Ok(());
                }
            };
            let _ = ttx.send(Ok(Some(stat_of(&t))));
            let mut b = tar::Builder::new(ChannelWriter {
                tx,
                buf: Vec::new(),
            });
            let mut links = HashMap::new();
            let res = tar_tree(&mut b, &t.fd, &t.st, &t.name, &mut links)
                .and_then(|_| b.finish())
                .and_then(|_| b.get_mut().flush());
            if let Err(e) = res {
                tracing::debug!("archive of {p}: {e}");
            }
            Ok(())
        }));
        match trx.await.map_err(EngineError::internal)? {
            Ok(Some(st)) => Ok((st, rx)),
            Ok(None) => Err(not_found(path, name)),
            Err(e) => Err(EngineError::internal(e)),
        }
    }

    /// `PUT /containers/{id}/archive`: extracts a tar (from `body`) into the directory `path`.
    pub async fn archive_put(
        &self,
        name: &str,
        path: &str,
        body: mpsc::Receiver<Bytes>,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let (g, _, readonly) = self.archive_root(name).await?;
        if readonly {
            return Err(EngineError::Forbidden(
                "container rootfs is marked read-only".into(),
            ));
        }
        let p = path.to_string();
        let cname = name.to_string();
        run_in_root(g, move |root| {
            let dest = match berth_fs::open_in_root(root, &p) {
                Ok(Some(d)) => d,
                Ok(None) => return Err(not_found(&p, &cname)),
                Err(e) => return Err(EngineError::internal(e)),
            };
            let st = fstat(dest.as_raw_fd()).map_err(EngineError::internal)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(EngineError::InvalidParameter(
                    "extraction point is not a directory".into(),
                ));
            }
            // The spec: a tar, or a tar compressed with gzip, bzip2 or xz.
            let mut raw = ChannelReader::new(body);
            let tar = berth_image::archive::decompress(&mut raw)
                .map_err(|e| EngineError::InvalidParameter(e.to_string()))?;
            extract(&dest, tar, no_overwrite_dir_non_dir, copy_uid_gid)
                .map(|_| ())
                .map_err(|e| EngineError::InvalidParameter(e.to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_mode(libc::S_IFREG | 0o4755), (1 << 23) | 0o755);
    }

    #[test]
    fn split_paths() {
        assert_eq!(
            split_path("/etc/passwd"),
            ("/etc".into(), Some("passwd".into()))
        );
        assert_eq!(split_path("/etc/"), ("/etc/".into(), None));
        assert_eq!(split_path("/etc/."), ("/etc/.".into(), None));
        assert_eq!(split_path("/"), ("/".into(), None));
        assert_eq!(split_path("x"), ("/".into(), Some("x".into())));
    }

    #[test]
    fn extraction_never_goes_through_symlinks() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("dir")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("dir/evil")).expect("symlink");
        let tarball = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"hi"[..]).expect("append");
            b.into_inner().expect("tar")
        };
        let dest = berth_fs::open_in_root(&root, "/dir")
            .expect("open")
            .expect("exists");
        let e = extract(&dest, &tarball("evil/x")[..], false, false);
        assert!(e.is_err(), "wrote through a symlink");
        assert!(!outside.join("x").exists());
        // A symlink at the final name is replaced, not followed.
        extract(&dest, &tarball("evil")[..], false, false).expect("replace");
        assert!(std::fs::symlink_metadata(root.join("dir/evil"))
            .expect("md")
            .is_file());
        assert!(std::fs::read_dir(&outside).expect("ls").next().is_none());
        // `..` is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_path("ok").expect("path");
        // Write a raw name with `..` the builder would refuse.
        let name = b"../escape";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().name[name.len()] = 0;
        h.set_cksum();
        b.append(&h, io::empty()).expect("append");
        let data = b.into_inner().expect("tar");
        assert!(extract(&dest, &data[..], false, false).is_err());
        assert!(!t.path().join("escape").exists());
    }

    #[test]
    fn archive_of_a_symlinked_path_stays_in_the_root() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/passwd"), b"inside\n").expect("write");
        // An absolute link that would lead to the host's /etc outside the root.
        std::os::unix::fs::symlink("/etc", root.join("link")).expect("symlink");
        let tgt = open_target(&root, "/link/passwd")
            .expect("open")
            .expect("found");
        let mut out = Vec::new();
        {
            let mut b = tar::Builder::new(&mut out);
            tar_tree(&mut b, &tgt.fd, &tgt.st, &tgt.name, &mut HashMap::new()).expect("tar");
            b.finish().expect("finish");
        }
        let mut ar = tar::Archive::new(&out[..]);
        let mut e = ar
            .entries()
            .expect("entries")
            .next()
            .expect("one")
            .expect("entry");
        let mut s = String::new();
        e.read_to_string(&mut s).expect("read");
        assert_eq!(s, "inside\n");
        // The link itself is reported with its target resolved in the root.
        let l = open_target(&root, "/link").expect("open").expect("found");
        assert_eq!(stat_of(&l).link_target, "/etc");
        assert_eq!(stat_of(&l).mode & (1 << 27), 1 << 27);
    }
}
