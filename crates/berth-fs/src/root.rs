//! Resolving paths inside a root (a container's rootfs, a build context) as a process whose `/`
//! is that root would: symlinks are followed, absolute ones from the root, and `..` stops at the
//! root's top, so nothing ever resolves outside it.
//!
//! [`open_in_root`] opens the object itself: `openat2(RESOLVE_IN_ROOT)` where the kernel has it
//! (Linux 5.6), else [`walk_in_root`], a descriptor-by-descriptor walk with `O_NOFOLLOW` that
//! expands each symlink itself. [`resolve_in_root`] gives the resolved path as a string, for
//! callers that must name it (mount targets, the builder's `COPY` destinations); its missing
//! tail is kept as written. All three allow [`MAX_SYMLINKS`] symlinks, the kernel's limit, and
//! fail with `ELOOP` beyond.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// Linux's `MAXSYMLINKS`: how many symlinks one resolution may follow.
pub const MAX_SYMLINKS: usize = 40;

/// The kernel's `struct open_how` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const OPENAT2_TRIES: usize = 8;

/// Set once `openat2` answered ENOSYS (or a seccomp filter refused it): the walk is used then.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// Components for the walk: `.` is kept (it asks for a directory), and a trailing `/` becomes
/// one.
fn walk_components(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if path.ends_with(b"/") && !out.is_empty() {
        out.push(b".".to_vec());
    }
    out
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    sys::openat(
        libc::AT_FDCWD,
        root.as_os_str().as_bytes(),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
}

fn missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Opens `path` (as seen inside `root`) with every component resolved inside `root`, a final
/// symlink followed. An `O_PATH` descriptor; `Ok(None)` when the path does not exist.
pub fn open_in_root(root: &Path, path: &str) -> io::Result<Option<OwnedFd>> {
    let rootfd = open_root(root)?;
    // With RESOLVE_IN_ROOT the kernel answers EAGAIN when a rename or mount anywhere on the
    // system raced a `..` step (found by the fuzzer under load): retried, then walked.
    for _ in 0..OPENAT2_TRIES {
        if NO_OPENAT2.load(Ordering::Relaxed) {
            break;
        }
        match openat2_in_root(rootfd.as_raw_fd(), path.as_bytes()) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) if missing(&e) => return Ok(None),
            other => return other.map(Some),
        }
    }
    walk_in_root(&rootfd, path.as_bytes())
}

fn openat2_in_root(root: RawFd, path: &[u8]) -> io::Result<OwnedFd> {
    let rel = {
        let t: Vec<u8> = path.iter().copied().skip_while(|b| *b == b'/').collect();
        if t.is_empty() {
            b".".to_vec()
        } else {
            t
        }
    };
    let c = sys::cstr(&rel)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid directory fd, a NUL-terminated path and an open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The userspace `RESOLVE_IN_ROOT`: one `openat(O_PATH|O_NOFOLLOW)` per component from `root`
/// down, each symlink read and expanded in place (re-rooted when absolute), `..` going back to
/// the descriptor it came from and never above `root`. Public so the fuzzer can hold it against
/// the kernel's `openat2`.
pub fn walk_in_root(root: &OwnedFd, path: &[u8]) -> io::Result<Option<OwnedFd>> {
    let mut pending: Vec<Vec<u8>> = walk_components(path);
    pending.reverse();
    let mut cur = root.try_clone()?;
    let mut parents: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == b".." {
            if let Some(p) = parents.pop() {
                cur = p;
            }
            continue;
        }
        if c == b"." {
            // `x/.` and `x/` name a directory: ENOTDIR otherwise, as the kernel says.
            if !sys::is_kind(&sys::lstatat(cur.as_raw_fd(), b"")?, libc::S_IFDIR) {
                return Ok(None);
            }
            continue;
        }
        let next = match sys::openat(cur.as_raw_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = sys::lstatat(next.as_raw_fd(), b"")?;
        if sys::is_kind(&st, libc::S_IFLNK) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = sys::readlinkat(next.as_raw_fd(), b"")?;
            if target.first() == Some(&b'/') {
                parents.clear();
                cur = root.try_clone()?;
            }
            let mut t = walk_components(&target);
            t.reverse();
            pending.extend(t);
            continue;
        }
        if !pending.is_empty() && !sys::is_kind(&st, libc::S_IFDIR) {
            return Ok(None);
        }
        parents.push(std::mem::replace(&mut cur, next));
    }
    Ok(Some(cur))
}

/// Resolves `path` (as seen inside `root`) the way a process rooted there would, and returns
/// the result as an absolute path inside the root (`/etc/x`). Components that do not exist are
/// kept as written (and `..` after them applied lexically). A symlink that cannot be read is an
/// error, never an empty target.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<Vec<u8>> = components(path.as_bytes());
    pending.reverse();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == b".." {
            done.pop();
            continue;
        }
        done.push(c);
        let host = join(root, &done);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&host)?;
                let target = target.as_os_str().as_bytes();
                done.pop();
                if target.first() == Some(&b'/') {
                    done.clear();
                }
                let mut t = components(target);
                t.reverse();
                pending.extend(t);
            }
            Ok(_) => {}
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(join(Path::new("/"), &done))
}

/// [`resolve_in_root`] as a host path: `root` joined with the resolved path.
pub fn secure_join(root: &Path, path: &str) -> io::Result<PathBuf> {
    let inside = resolve_in_root(root, path)?;
    Ok(root.join(inside.strip_prefix("/").unwrap_or(&inside)))
}

fn join(base: &Path, parts: &[Vec<u8>]) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in parts {
        p.push(std::ffi::OsStr::from_bytes(c));
    }
    p
}

/// Creates the directories of `resolved` (a result of [`resolve_in_root`]) below `root`, 0755
/// like a mount point; anything but a directory on the way is `ENOTDIR`, never followed.
pub fn mkdir_in_root(root: &Path, resolved: &Path) -> io::Result<()> {
    let mut cur = root.to_path_buf();
    for c in components(resolved.as_os_str().as_bytes()) {
        if c == b".." {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        cur.push(std::ffi::OsStr::from_bytes(&c));
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur)?;
                std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fd_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    /// root/{etc/passwd, usr/bin/sh} and links that try to leave it.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"inside").unwrap();
        std::fs::write(d.path().join("passwd"), b"outside").unwrap();
        symlink("/usr/bin", root.join("bin")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../etc", root.join("rel")).unwrap();
        symlink("/outside", root.join("dangling")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("../passwd", root.join("up")).unwrap();
        (d, root)
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let (_d, root) = tree();
        let r = |p: &str| resolve_in_root(&root, p).unwrap();
        assert_eq!(r("/bin/sh"), Path::new("/usr/bin/sh"));
        assert_eq!(r("/usr/escape/passwd"), Path::new("/etc/passwd"));
        assert_eq!(r("/abs/x"), Path::new("/etc/x"));
        assert_eq!(r("/rel/y/../z"), Path::new("/etc/z"));
        assert_eq!(r("/../../nope/a"), Path::new("/nope/a"));
        assert_eq!(r("/dangling"), Path::new("/outside"));
        assert_eq!(r("/up"), Path::new("/passwd"));
        assert_eq!(r("/missing/../abs"), Path::new("/etc"));
        assert_eq!(r(""), Path::new("/"));
        assert_eq!(
            resolve_in_root(&root, "/loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            secure_join(&root, "usr/escape/passwd").unwrap(),
            root.join("etc/passwd")
        );
    }

    #[test]
    fn opens_inside_the_root_with_and_without_openat2() {
        let (_d, root) = tree();
        let rootfd = open_root(&root).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();
        for (p, want) in [
            ("/usr/escape/passwd", Some("etc/passwd")),
            ("/bin", Some("usr/bin")),
            ("/abs/passwd", Some("etc/passwd")),
            ("/../../etc/passwd", Some("etc/passwd")),
            ("/up", None),
            ("/dangling", None),
            ("/etc/passwd/x", None),
            ("/", Some("")),
        ] {
            let want = want.map(|w| canon.join(w));
            let kernel = open_in_root(&root, p).unwrap().map(|f| fd_path(&f));
            let walked = walk_in_root(&rootfd, p.as_bytes())
                .unwrap()
                .map(|f| fd_path(&f));
            let want = want.map(|w| PathBuf::from(w.to_string_lossy().trim_end_matches('/')));
            assert_eq!(kernel, want, "openat2 {p}");
            assert_eq!(walked, want, "walk {p}");
        }
        assert_eq!(
            walk_in_root(&rootfd, b"/loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn mkdir_never_follows() {
        let (_d, root) = tree();
        mkdir_in_root(&root, Path::new("/a/b/c")).unwrap();
        assert!(root.join("a/b/c").is_dir());
        assert!(mkdir_in_root(&root, Path::new("/abs/new")).is_err());
        assert!(!root.join("etc/new").exists());
    }
}
