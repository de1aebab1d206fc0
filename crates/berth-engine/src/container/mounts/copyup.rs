//! Copy-up: a new, empty volume mounted over a directory of the image is first filled with that
//! directory's content (ownership, permissions, xattrs, times, symlinks, hardlinks, devices).
//!
//! The image path is resolved inside the container's rootfs with `openat2(RESOLVE_IN_ROOT)`, so
//! a symlink in the image (`/data -> /etc`, `/x -> ../../..`) is followed as the container
//! would see it and can never lead out of the rootfs. The walk below it never follows symlinks.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The kernel's `struct open_how` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` (absolute, as seen in the container) below `root` with every component resolved
/// inside `root`. `Ok(None)` when it does not exist.
pub fn open_in_root(root: &Path, path: &str) -> io::Result<Option<OwnedFd>> {
    let rootf = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = CString::new(rel).map_err(|_| io::Error::other("path contains a NUL byte"))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid fd, NUL-terminated path and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            rootf.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Resolves `path` (absolute, as the container sees it) the way the container would, with every
/// symlink followed inside `root` and `..` stopping at its top; the part that does not exist is
/// kept as written. Returns the container-absolute result.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    let mut exists = true;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        done.push(c);
        if !exists {
            continue;
        }
        let host = root.join(done.join("/"));
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&host)?;
                let t = target.to_string_lossy().into_owned();
                done.pop();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty() && *p != ".").rev() {
                    todo.push(part.to_string());
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
            Err(e) => return Err(e),
        }
    }
    Ok(format!("/{}", done.join("/")))
}

/// Creates the directories of a resolved container path below `root` (0755, like a mount point).
pub fn mkdir_in_root(root: &Path, resolved: &str) -> io::Result<()> {
    let mut cur = root.to_path_buf();
    for c in resolved.split('/').filter(|c| !c.is_empty()) {
        cur.push(c);
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

/// Fills `data` from `dest` in `rootfs` if `data` is empty and `dest` is a directory there.
/// Returns whether it copied.
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> io::Result<bool> {
    if std::fs::read_dir(data)?.next().is_some() {
        return Ok(false);
    }
    let Some(fd) = open_in_root(rootfs, dest)? else {
        return Ok(false);
    };
    let src = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let md = std::fs::metadata(&src)?;
    if !md.is_dir() {
        return Ok(false);
    }
    let mut links = HashMap::new();
    copy_dir(&src, data, md.dev(), &mut links)?;
    copy_meta(&src, data, &md, true)?;
    Ok(true)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    dev: u64,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for ent in std::fs::read_dir(src)? {
        let ent = ent?;
        let sp = ent.path();
        let dp = dst.join(ent.file_name());
        let md = std::fs::symlink_metadata(&sp)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dp)?;
            // Another filesystem mounted below (not in an image rootfs) is not descended into.
            if md.dev() == dev {
                copy_dir(&sp, &dp, dev, links)?;
            }
            copy_meta(&sp, &dp, &md, true)?;
            continue;
        }
        if md.nlink() > 1 && !ft.is_symlink() {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                std::fs::hard_link(first, &dp)?;
                continue;
            }
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(&sp)?;
            std::os::unix::fs::symlink(&target, &dp)?;
        } else if ft.is_file() {
            let mut from = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&sp)?;
            let mut to = File::create(&dp)?;
            io::copy(&mut from, &mut to)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else if ft.is_block_device() {
                nix::sys::stat::SFlag::S_IFBLK
            } else if ft.is_fifo() {
                nix::sys::stat::SFlag::S_IFIFO
            } else {
                nix::sys::stat::SFlag::S_IFSOCK
            };
            nix::sys::stat::mknod(
                &dp,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777),
                md.rdev(),
            )
            .map_err(io::Error::from)?;
        }
        if md.nlink() > 1 && !ft.is_symlink() {
            links.insert((md.dev(), md.ino()), dp.clone());
        }
        copy_meta(&sp, &dp, &md, !ft.is_symlink())?;
    }
    Ok(())
}

/// Owner, mode (after the owner: chown clears set-id bits), xattrs, then times.
fn copy_meta(src: &Path, dst: &Path, md: &std::fs::Metadata, follow_ok: bool) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if follow_ok {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst);
    let times = [
        libc::timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    let c = CString::new(dst.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Extended attributes, best effort (a filesystem without xattr support just has none);
/// overlayfs' own `trusted.overlay.*` never travel.
fn copy_xattrs(src: &Path, dst: &Path) {
    let (Ok(s), Ok(d)) = (
        CString::new(src.as_os_str().as_bytes()),
        CString::new(dst.as_os_str().as_bytes()),
    ) else {
        return;
    };
    // SAFETY: size query with a null buffer.
    let n = unsafe { libc::llistxattr(s.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return;
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: buffer of the size just reported.
    let n = unsafe { libc::llistxattr(s.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return;
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(cn) = CString::new(name) else { continue };
        // SAFETY: size query.
        let len = unsafe { libc::lgetxattr(s.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut val = vec![0u8; len as usize];
        // SAFETY: buffer of the reported size.
        let len =
            unsafe { libc::lgetxattr(s.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if len < 0 {
            continue;
        }
        // SAFETY: valid pointers and lengths.
        let r = unsafe {
            libc::lsetxattr(
                d.as_ptr(),
                cn.as_ptr(),
                val.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if r != 0 {
            tracing::debug!(
                "copy-up: xattr {} on {}: {}",
                String::from_utf8_lossy(name),
                dst.display(),
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/inside"), b"in").expect("write");
        std::os::unix::fs::symlink("/etc", root.join("abs")).expect("link");
        std::os::unix::fs::symlink("../../../../../../etc", root.join("rel")).expect("link");
        for link in ["/abs", "/rel"] {
            let fd = open_in_root(&root, link).expect("open").expect("exists");
            let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("rl");
            assert_eq!(p, root.join("etc"), "{link} stays in the root");
        }
        assert!(open_in_root(&root, "/missing/x").expect("open").is_none());
        assert_eq!(resolve_in_root(&root, "/abs/x").expect("r"), "/etc/x");
        assert_eq!(resolve_in_root(&root, "/rel/y/../z").expect("r"), "/etc/z");
        assert_eq!(
            resolve_in_root(&root, "/../../nope/a").expect("r"),
            "/nope/a"
        );
        std::os::unix::fs::symlink("../../../../outside", root.join("dangling")).expect("l");
        assert_eq!(resolve_in_root(&root, "/dangling").expect("r"), "/outside");
        std::os::unix::fs::symlink("loop", root.join("loop")).expect("l");
        assert!(resolve_in_root(&root, "/loop").is_err());
        mkdir_in_root(&root, "/outside/deeper").expect("mkdir");
        assert!(root.join("outside/deeper").is_dir());
    }

    #[test]
    fn copies_tree_with_metadata_once() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("root");
        let src = root.join("data");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("sub/f"), b"hello").expect("write");
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        std::os::unix::fs::lchown(src.join("sub/f"), Some(1234), Some(5678)).expect("chown");
        std::fs::hard_link(src.join("sub/f"), src.join("hl")).expect("hl");
        std::os::unix::fs::symlink("sub/f", src.join("sl")).expect("sl");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let xattr_path = CString::new(src.join("sub/f").as_os_str().as_bytes()).expect("c");
        // SAFETY: valid C strings and value buffer.
        let set = unsafe {
            libc::setxattr(
                xattr_path.as_ptr(),
                c"user.berth".as_ptr(),
                b"v1".as_ptr().cast(),
                2,
                0,
            )
        };
        assert_eq!(set, 0, "the test directory must support user xattrs");
        let vol = d.path().join("vol");
        std::fs::create_dir(&vol).expect("mkdir");
        assert!(copy_up(&root, "/data", &vol).expect("copy"));
        let md = std::fs::metadata(vol.join("sub/f")).expect("md");
        assert_eq!(std::fs::read(vol.join("sub/f")).expect("read"), b"hello");
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o640, 1234, 5678)
        );
        assert_eq!(
            std::fs::metadata(vol.join("hl")).expect("hl").ino(),
            md.ino(),
            "hardlinks stay hardlinks"
        );
        assert_eq!(
            std::fs::read_link(vol.join("sl")).expect("sl"),
            Path::new("sub/f")
        );
        let copied = CString::new(vol.join("sub/f").as_os_str().as_bytes()).expect("c");
        let mut buf = [0u8; 8];
        // SAFETY: valid C strings and a buffer of the given size.
        let n = unsafe {
            libc::getxattr(
                copied.as_ptr(),
                c"user.berth".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 2, "xattr copied");
        assert_eq!(&buf[..2], b"v1");
        assert_eq!(
            std::fs::metadata(&vol).expect("vol").mode() & 0o7777,
            0o1777
        );
        // Not empty any more: a second copy does nothing.
        std::fs::remove_file(vol.join("hl")).expect("rm");
        assert!(!copy_up(&root, "/data", &vol).expect("again"));
        assert!(!vol.join("hl").exists());
        // A missing or non-directory source copies nothing.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(!copy_up(&root, "/nope", &empty).expect("missing"));
        assert!(!copy_up(&root, "/data/sub/f", &empty).expect("file"));
    }
}
