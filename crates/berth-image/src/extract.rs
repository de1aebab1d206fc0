//! Layer extraction: a layer tarball into its diff directory, with overlayfs whiteouts. The
//! extractor itself is `berth_fs::extract` (see its containment rules); this module maps its
//! errors to the image store's.

use crate::error::ImageError;
use berth_fs::{ExtractOptions, FsError, Whiteouts};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Lexically normalises an archive path to a relative path with only normal components.
pub(crate) fn clean_path(p: &Path) -> Result<PathBuf, ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let comps = berth_fs::extract::clean_components(p.as_os_str().as_bytes()).map_err(fs_err)?;
    Ok(comps
        .iter()
        .map(|c| std::ffi::OsStr::from_bytes(c))
        .collect())
}

pub(crate) fn fs_err(e: FsError) -> ImageError {
    match e {
        FsError::UnsafePath(m) => ImageError::UnsafePath(m),
        // Already worded for the client (a truncated compressed stream, `BadInput`).
        FsError::InvalidArchive(m) if m.starts_with("invalid archive: ") => {
            ImageError::InvalidArgument(m)
        }
        FsError::InvalidArchive(m) => {
            ImageError::InvalidArgument(format!("invalid layer archive: {m}"))
        }
        FsError::Conflict(m) => ImageError::InvalidArgument(m),
        FsError::Io { op, path, source } => ImageError::io(format!("{op} {path}"), source),
    }
}

fn layer_options(whiteouts: Whiteouts) -> ExtractOptions {
    ExtractOptions {
        whiteouts,
        same_owner: true,
        no_overwrite_dir_non_dir: false,
        xattrs: true,
        rebase: None,
    }
}

/// Extracts a (decompressed) layer tar into `dest`, which must exist. Returns the layer's content
/// size (sum of regular file sizes, as Docker reports layer sizes).
pub fn extract_layer(reader: &mut dyn Read, dest: &Path) -> Result<u64, ImageError> {
    berth_fs::extract(reader, dest, &layer_options(Whiteouts::Overlay)).map_err(fs_err)
}

/// Applies a layer tar on top of `dest`, an overlay-format directory holding the merged layers
/// below it (`build --squash`), so that `dest` then stands for all of them over the same base:
/// an opaque marker also drops what lower layers put in the directory, and a directory that
/// replaces a whiteout or a file becomes opaque (lower layers had hidden the base's one).
pub fn merge_layer(reader: &mut dyn Read, dest: &Path) -> Result<u64, ImageError> {
    berth_fs::extract(reader, dest, &layer_options(Whiteouts::OverlayMerge)).map_err(fs_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
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
