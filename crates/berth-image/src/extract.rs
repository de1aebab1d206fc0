//! Safe extraction of a layer tarball into a directory, producing overlayfs whiteouts.
//!
//! Containment strategy: every entry path is normalised lexically (leading `/` stripped, `..`
//! rejected), and each parent directory is walked with `lstat` from the target root: a missing
//! parent is created, a symlink (or any non-directory) in the parent chain rejects the layer. The
//! final component is created with `O_EXCL`/`lchown`/`utimensat(AT_SYMLINK_NOFOLLOW)`, so a symlink
//! planted by an earlier entry is replaced, never followed. Hardlink targets go through the same
//! walk, so they always name a file inside the layer. Symlink targets themselves are stored
//! verbatim: they are only ever resolved inside the container's root.

use crate::error::{ImageError, IoContext};
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Lexically normalises an archive path to a relative path with only normal components.
pub(crate) fn clean_path(p: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(ImageError::UnsafePath(format!(
                    "{}: path contains '..'",
                    p.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Walks `rel`'s components under `root`, refusing symlinks and non-directories; creates missing
/// directories when `create` is set. Returns the absolute directory path.
fn safe_dir(root: &Path, rel: &Path, create: bool) -> Result<PathBuf, ImageError> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::UnsafePath(format!(
                    "{}: path goes through a symlink",
                    rel.display()
                )))
            }
            Ok(_) => {
                return Err(ImageError::UnsafePath(format!(
                    "{}: parent is not a directory",
                    rel.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).ctx("mkdir", &cur)?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755)).ctx("chmod", &cur)?;
            }
            Err(e) => return Err(ImageError::io_path("stat", &cur, e)),
        }
    }
    Ok(cur)
}

fn cstr(p: &Path) -> Result<CString, ImageError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ImageError::UnsafePath(format!("{}: NUL in path", p.display())))
}

pub(crate) fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> Result<(), std::io::Error> {
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let n = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both pointers are valid NUL-terminated strings; value is a valid slice.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_times(path: &Path, mtime: u64) -> Result<(), ImageError> {
    let c = cstr(path)?;
    let secs = libc::time_t::try_from(mtime).unwrap_or(libc::time_t::MAX);
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array as utimensat requires.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(ImageError::io_path(
            "set times",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u32,
    minor: u32,
) -> Result<(), ImageError> {
    let c = cstr(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: valid C string.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | (perm & 0o7777) as libc::mode_t, dev) };
    if r != 0 {
        return Err(ImageError::io_path(
            "mknod",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Removes whatever is at `path` unless it is a directory and `keep_dir` is set.
fn clear_target(path: &Path, keep_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => {
            if !keep_dir {
                fs::remove_dir_all(path).ctx("remove", path)?;
            }
        }
        Ok(_) => fs::remove_file(path).ctx("remove", path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io_path("stat", path, e)),
    }
    Ok(())
}

/// Extracts a (decompressed) layer tar into `dest`, which must exist. Returns the layer's content
/// size (sum of regular file sizes, as Docker reports layer sizes).
pub fn extract_layer(reader: &mut dyn Read, dest: &Path) -> Result<u64, ImageError> {
    extract(reader, dest, false)
}

/// Applies a layer tar on top of `dest`, an overlay-format directory holding the merged layers
/// below it (`build --squash`), so that `dest` then stands for all of them over the same base:
/// an opaque marker also drops what lower layers put in the directory, and a directory that
/// replaces a whiteout or a file becomes opaque (lower layers had hidden the base's one).
pub fn merge_layer(reader: &mut dyn Read, dest: &Path) -> Result<u64, ImageError> {
    extract(reader, dest, true)
}

fn extract(reader: &mut dyn Read, dest: &Path, merge: bool) -> Result<u64, ImageError> {
    // Paths this layer wrote (merge): an opaque marker keeps them, whatever their order.
    let mut written: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let mut archive = tar::Archive::new(reader);
    let mut size = 0u64;
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| ImageError::InvalidArgument(format!("invalid layer archive: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| ImageError::InvalidArgument(format!("invalid layer archive: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| ImageError::InvalidArgument(format!("invalid entry path: {e}")))?
            .into_owned();
        let rel = clean_path(&raw_path)?;
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue; // the root directory itself
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name_str = name.to_string_lossy().into_owned();

        // Whiteouts.
        if name_str == WHITEOUT_OPAQUE {
            let dir = safe_dir(dest, &parent_rel, true)?;
            if merge {
                for child in fs::read_dir(&dir).ctx("read", &dir)? {
                    let child = child.ctx("read", &dir)?;
                    if !written.contains(&parent_rel.join(child.file_name())) {
                        clear_target(&child.path(), false)?;
                    }
                }
            }
            lsetxattr(&dir, OPAQUE_XATTR, b"y").ctx("set opaque xattr on", &dir)?;
            continue;
        }
        if name_str.starts_with(WHITEOUT_META_PREFIX) {
            continue; // other aufs metadata: meaningless for overlay
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            let hidden_rel = clean_path(Path::new(hidden))?;
            if hidden_rel.components().count() != 1 {
                return Err(ImageError::UnsafePath(raw_path.display().to_string()));
            }
            let dir = safe_dir(dest, &parent_rel, true)?;
            let target = dir.join(&hidden_rel);
            clear_target(&target, false)?;
            mknod(&target, libc::S_IFCHR, 0, 0, 0)?;
            if merge {
                written.insert(parent_rel.join(hidden_rel));
            }
            continue;
        }

        let header = entry.header().clone();
        let mut kind = header.entry_type();
        // Old tars mark directories only by a trailing slash on a regular entry.
        if kind == tar::EntryType::Regular && entry.path_bytes().ends_with(b"/") {
            kind = tar::EntryType::Directory;
        }
        let dir = safe_dir(dest, &parent_rel, true)?;
        let target = dir.join(&name);
        if merge {
            written.insert(rel.clone());
        }
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        use tar::EntryType as E;
        match kind {
            E::Directory => {
                let replaces = fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir());
                clear_target(&target, true)?;
                if !target.is_dir() {
                    fs::create_dir(&target).ctx("mkdir", &target)?;
                }
                if merge && replaces {
                    lsetxattr(&target, OPAQUE_XATTR, b"y").ctx("set opaque xattr on", &target)?;
                }
            }
            E::Regular | E::Continuous | E::GNUSparse => {
                clear_target(&target, false)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .ctx("create", &target)?;
                size += std::io::copy(&mut entry, &mut f).ctx("write", &target)?;
            }
            E::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| ImageError::InvalidArgument(format!("invalid link name: {e}")))?
                    .ok_or_else(|| ImageError::InvalidArgument("symlink without target".into()))?
                    .into_owned();
                clear_target(&target, false)?;
                std::os::unix::fs::symlink(&link, &target).ctx("symlink", &target)?;
            }
            E::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| ImageError::InvalidArgument(format!("invalid link name: {e}")))?
                    .ok_or_else(|| ImageError::InvalidArgument("hardlink without target".into()))?
                    .into_owned();
                let link_rel = clean_path(&link)?;
                let Some(link_name) = link_rel.file_name() else {
                    return Err(ImageError::UnsafePath(format!(
                        "{}: hardlink to the root",
                        raw_path.display()
                    )));
                };
                let src_dir = safe_dir(dest, link_rel.parent().unwrap_or(Path::new("")), false)
                    .map_err(|_| {
                        ImageError::UnsafePath(format!(
                            "{}: hardlink target {} is not in the layer",
                            raw_path.display(),
                            link.display()
                        ))
                    })?;
                let src = src_dir.join(link_name);
                let meta = fs::symlink_metadata(&src).map_err(|_| {
                    ImageError::UnsafePath(format!(
                        "{}: hardlink target {} is not in the layer",
                        raw_path.display(),
                        link.display()
                    ))
                })?;
                if meta.is_dir() {
                    return Err(ImageError::UnsafePath(format!(
                        "{}: hardlink to a directory",
                        raw_path.display()
                    )));
                }
                if src == target {
                    continue;
                }
                clear_target(&target, false)?;
                // link(2) does not follow a symlink at the source: the link stays inside.
                fs::hard_link(&src, &target).ctx("link", &target)?;
                // A hardlink shares the inode: its metadata is the target's.
                continue;
            }
            E::Char | E::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                clear_target(&target, false)?;
                let t = if kind == E::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                mknod(&target, t, mode, major, minor)?;
            }
            E::Fifo => {
                clear_target(&target, false)?;
                mknod(&target, libc::S_IFIFO, mode, 0, 0)?;
            }
            // Pax/GNU metadata entries are consumed by the tar crate; anything else is skipped.
            _ => continue,
        }

        // Ownership first: chown clears set-id bits, so the mode is applied after it.
        let uid = header
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0);
        let gid = header
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0);
        if let Err(e) = std::os::unix::fs::lchown(&target, Some(uid), Some(gid)) {
            // Without privilege (unit tests as non-root) keep going; as root this is real.
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(ImageError::io_path("chown", &target, e));
            }
        }
        if kind != E::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).ctx("chmod", &target)?;
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                let Some(xname) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                // Overlay's own xattrs from an archive could forge redirects or opaque dirs.
                if xname.starts_with("trusted.overlay.") {
                    continue;
                }
                if let Err(e) = lsetxattr(&target, xname, ext.value_bytes()) {
                    tracing::debug!("xattr {xname} on {}: {e}", target.display());
                }
            }
        }
        if kind == E::Directory {
            dir_times.push((target, mtime));
        } else {
            set_times(&target, mtime)?;
        }
    }
    // Directory mtimes last, deepest first, since creating children changes them.
    dir_times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, t) in dir_times {
        set_times(&p, t)?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    enum Ent<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    /// Builds a tar with raw names (bypassing the tar crate's own `..` checks on append).
    fn build(entries: &[Ent]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match e {
                Ent::File(p, data) => {
                    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
                    set_raw_name(&mut h, p);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                Ent::Dir(p) => {
                    let mut h = header(tar::EntryType::Directory, 0, 0o755);
                    set_raw_name(&mut h, p);
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                Ent::Sym(p, t) | Ent::Hard(p, t) => {
                    let kind = if matches!(e, Ent::Sym(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    let mut h = header(kind, 0, 0o777);
                    set_raw_name(&mut h, p);
                    set_raw_link(&mut h, t);
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn set_raw_name(h: &mut tar::Header, p: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..p.len()].copy_from_slice(p.as_bytes());
    }

    fn set_raw_link(h: &mut tar::Header, p: &str) {
        let l = &mut h.as_old_mut().linkname;
        l.fill(0);
        l[..p.len()].copy_from_slice(p.as_bytes());
    }

    /// A sandbox: `outside/` holds a host file, `dest/` is the extraction target.
    struct Sandbox {
        _t: tempfile::TempDir,
        dest: PathBuf,
        outside: PathBuf,
        host_file: PathBuf,
    }

    fn sandbox() -> Sandbox {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("dest");
        let outside = t.path().join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        let host_file = outside.join("passwd");
        fs::write(&host_file, b"host").unwrap();
        Sandbox {
            _t: t,
            dest,
            outside,
            host_file,
        }
    }

    impl Sandbox {
        fn assert_host_untouched(&self) {
            assert_eq!(fs::read(&self.host_file).unwrap(), b"host");
            let names: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
            // Nothing next to dest either.
            let top: Vec<_> = fs::read_dir(self.dest.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(top.len(), 2);
        }
        fn extract(&self, tar: &[u8]) -> Result<u64, ImageError> {
            extract_layer(&mut &tar[..], &self.dest)
        }
    }

    #[test]
    fn extracts_regular_tree() {
        let s = sandbox();
        let tar = build(&[
            Ent::Dir("etc/"),
            Ent::File("etc/hostname", b"box\n"),
            Ent::File("bin/sh", b"#!"),
            Ent::Sym("bin/ash", "sh"),
            Ent::Hard("bin/ash2", "bin/sh"),
            Ent::Sym("abs", "/etc/hostname"),
        ]);
        let size = s.extract(&tar).unwrap();
        assert_eq!(size, 6);
        assert_eq!(fs::read(s.dest.join("etc/hostname")).unwrap(), b"box\n");
        assert_eq!(
            fs::read_link(s.dest.join("bin/ash")).unwrap(),
            Path::new("sh")
        );
        assert_eq!(
            fs::read_link(s.dest.join("abs")).unwrap(),
            Path::new("/etc/hostname")
        );
        let m = fs::metadata(s.dest.join("bin/ash2")).unwrap();
        assert_eq!(m.nlink(), 2);
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_eq!(m.mtime(), 1_600_000_000);
        assert_eq!(
            fs::metadata(s.dest.join("etc")).unwrap().mtime(),
            1_600_000_000
        );
        s.assert_host_untouched();
    }

    #[test]
    fn rejects_dotdot() {
        let s = sandbox();
        let tar = build(&[Ent::File("../outside/passwd", b"pwned")]);
        assert!(matches!(s.extract(&tar), Err(ImageError::UnsafePath(_))));
        let tar = build(&[Ent::File("a/../../outside/passwd", b"pwned")]);
        assert!(matches!(s.extract(&tar), Err(ImageError::UnsafePath(_))));
        s.assert_host_untouched();
    }

    #[test]
    fn contains_absolute_paths() {
        let s = sandbox();
        let abs = format!("{}", s.host_file.display());
        let tar = build(&[Ent::File(&abs, b"pwned")]);
        s.extract(&tar).unwrap();
        // Landed inside dest, under the same relative path.
        let inside = s.dest.join(abs.trim_start_matches('/'));
        assert_eq!(fs::read(inside).unwrap(), b"pwned");
        s.assert_host_untouched();
    }

    #[test]
    fn refuses_writing_through_planted_symlink() {
        let s = sandbox();
        let out = s.outside.display().to_string();
        let tar = build(&[Ent::Sym("evil", &out), Ent::File("evil/passwd", b"pwned")]);
        assert!(matches!(s.extract(&tar), Err(ImageError::UnsafePath(_))));
        s.assert_host_untouched();
        // Relative escaping symlink, then a directory entry and a nested file through it.
        let s = sandbox();
        let tar = build(&[
            Ent::Sym("up", "../outside"),
            Ent::Dir("up/new/"),
            Ent::File("up/passwd", b"pwned"),
        ]);
        assert!(s.extract(&tar).is_err());
        s.assert_host_untouched();
    }

    #[test]
    fn replaces_planted_symlink_at_final_component() {
        let s = sandbox();
        let host = s.host_file.display().to_string();
        // `f` points at the host file; a later regular entry `f` must replace the link, not write
        // through it.
        let tar = build(&[Ent::Sym("f", &host), Ent::File("f", b"pwned")]);
        s.extract(&tar).unwrap();
        assert_eq!(fs::read(s.dest.join("f")).unwrap(), b"pwned");
        assert!(!fs::symlink_metadata(s.dest.join("f"))
            .unwrap()
            .file_type()
            .is_symlink());
        s.assert_host_untouched();
    }

    #[test]
    fn hardlinks_stay_inside() {
        let s = sandbox();
        let host = s.host_file.display().to_string();
        // Absolute hardlink target is taken relative to the layer root: not found => rejected.
        let tar = build(&[Ent::Hard("h", &host)]);
        assert!(matches!(s.extract(&tar), Err(ImageError::UnsafePath(_))));
        let tar = build(&[Ent::Hard("h", "../outside/passwd")]);
        assert!(matches!(s.extract(&tar), Err(ImageError::UnsafePath(_))));
        // Through a symlinked directory.
        let out = s.outside.display().to_string();
        let s2 = sandbox();
        let tar = build(&[Ent::Sym("d", &out), Ent::Hard("h", "d/passwd")]);
        assert!(matches!(s2.extract(&tar), Err(ImageError::UnsafePath(_))));
        // To a symlink that escapes: the link is to the symlink itself, not its target.
        let s3 = sandbox();
        let host3 = s3.host_file.display().to_string();
        let tar = build(&[Ent::Sym("l", &host3), Ent::Hard("h", "l")]);
        s3.extract(&tar).unwrap();
        assert!(fs::symlink_metadata(s3.dest.join("h"))
            .unwrap()
            .file_type()
            .is_symlink());
        s.assert_host_untouched();
        s2.assert_host_untouched();
        s3.assert_host_untouched();
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod and trusted.* xattrs need root
        }
        let s = sandbox();
        let tar = build(&[
            Ent::File("etc/.wh.motd", b""),
            Ent::Dir("var/"),
            Ent::File("var/.wh..wh..opq", b""),
            Ent::File("var/new", b"x"),
        ]);
        s.extract(&tar).unwrap();
        let m = fs::symlink_metadata(s.dest.join("etc/motd")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert!(!s.dest.join("etc/.wh.motd").exists());
        let mut buf = [0u8; 8];
        let p = CString::new(s.dest.join("var").as_os_str().as_bytes()).unwrap();
        let n = CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid strings and buffer.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(r, 1);
        assert_eq!(buf[0], b'y');
        assert!(!s.dest.join("var/.wh..wh..opq").exists());
        // A whiteout cannot name a path outside its directory.
        let tar = build(&[Ent::File(".wh...", b"")]);
        assert!(s.extract(&tar).is_err());
        s.assert_host_untouched();
    }

    fn is_opaque(p: &Path) -> bool {
        let mut buf = [0u8; 8];
        let p = CString::new(p.as_os_str().as_bytes()).unwrap();
        let n = CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid strings and buffer.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 8) };
        r == 1 && buf[0] == b'y'
    }

    #[test]
    fn merged_layers_stand_for_the_stack_over_its_base() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod and trusted.* xattrs need root
        }
        let s = sandbox();
        let merge = |entries: &[Ent]| {
            let tar = build(entries);
            merge_layer(&mut &tar[..], &s.dest).unwrap();
        };
        merge(&[
            Ent::Dir("a/"),
            Ent::File("a/one", b"1"),
            Ent::File("keep", b"k"),
            Ent::File("gone", b"g"),
        ]);
        // The opaque marker comes after this layer's own child: only the lower one goes.
        merge(&[
            Ent::Dir("a/"),
            Ent::File("a/two", b"2"),
            Ent::File("a/.wh..wh..opq", b""),
            Ent::File(".wh.gone", b""),
            Ent::File(".wh.base", b""),
        ]);
        merge(&[Ent::Dir("gone/"), Ent::File("gone/inner", b"i")]);
        assert!(!s.dest.join("a/one").exists());
        assert_eq!(fs::read(s.dest.join("a/two")).unwrap(), b"2");
        assert!(is_opaque(&s.dest.join("a")));
        assert_eq!(fs::read(s.dest.join("keep")).unwrap(), b"k");
        // A whiteout of a base path stays; a directory over a whiteout hides the base's.
        let m = fs::symlink_metadata(s.dest.join("base")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(is_opaque(&s.dest.join("gone")));
        assert_eq!(fs::read(s.dest.join("gone/inner")).unwrap(), b"i");
        // A plain extraction makes no such directory opaque.
        let s2 = sandbox();
        let tar = build(&[Ent::File(".wh.x", b"")]);
        s2.extract(&tar).unwrap();
        let tar = build(&[Ent::Dir("x/")]);
        s2.extract(&tar).unwrap();
        assert!(!is_opaque(&s2.dest.join("x")));
    }

    #[test]
    fn keeps_devices_fifos_ownership() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let s = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Char, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, "dev/null", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Fifo, 0, 0o600);
        b.append_data(&mut h, "run/fifo", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Regular, 1, 0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        b.append_data(&mut h, "bin/suid", &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        s.extract(&tar).unwrap();
        let m = fs::symlink_metadata(s.dest.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), libc::makedev(1, 3));
        assert!(fs::symlink_metadata(s.dest.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let m = fs::metadata(s.dest.join("bin/suid")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o4755));
    }
}
