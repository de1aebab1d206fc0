//! Copy-up: a new, empty volume mounted over a directory of the image is first filled with that
//! directory's content (ownership, permissions, xattrs, times, symlinks, hardlinks, devices).
//!
//! The image path is resolved inside the container's rootfs with `berth_fs::open_in_root`, so
//! a symlink in the image (`/data -> /etc`, `/x -> ../../..`) is followed as the container
//! would see it and can never lead out of the rootfs. The walk below it never follows symlinks.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Fills `data` from `dest` in `rootfs` if `data` is empty and `dest` is a directory there.
/// Returns whether it copied.
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> io::Result<bool> {
    if std::fs::read_dir(data)?.next().is_some() {
        return Ok(false);
    }
    let Some(fd) = berth_fs::open_in_root(rootfs, dest)? else {
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
