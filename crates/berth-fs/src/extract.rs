//! The tar extractor: layers (`pull`, `load`, `import`, builds), `docker cp` and build contexts
//! all go through [`extract_at`].
//!
//! Containment: an entry's path is cleaned lexically (a leading `/` dropped, `..` refused), then
//! its directories are opened one by one from the destination with `O_NOFOLLOW`, created when
//! missing: a symlink or a non-directory on the way refuses the entry, so nothing is written
//! through a link, whoever planted it. The last name is created with `*at` calls on that
//! directory: an existing symlink there is replaced, never followed. A hardlink's target goes
//! through the same walk (without creating) and must already be in the destination. Symlink
//! targets are stored as they are: they are only ever resolved inside a root.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys::{self, check, cstr};
use crate::FsError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What `.wh.` entries mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Whiteouts {
    /// Nothing: they are ordinary files (`docker cp`, build contexts).
    #[default]
    Keep,
    /// Overlay's form: `.wh.x` becomes a 0:0 character device `x`, `.wh..wh..opq` the
    /// `trusted.overlay.opaque` xattr of its directory (a layer's diff directory).
    Overlay,
    /// As `Overlay`, applied on top of a directory that already holds the merged lower layers
    /// (`build --squash`): an opaque marker also drops what lower layers put in its directory,
    /// and a directory that replaces a non-directory becomes opaque.
    OverlayMerge,
}

#[derive(Clone, Debug, Default)]
pub struct ExtractOptions {
    pub whiteouts: Whiteouts,
    /// Keep the archive's owners; otherwise every entry is 0:0 (`docker cp` without
    /// `copyUIDGID`). Without privilege a chown that fails with EPERM is skipped.
    pub same_owner: bool,
    /// Refuse to replace a directory by a non-directory or the reverse (`docker cp`'s
    /// `noOverwriteDirNonDir`); otherwise the old one goes.
    pub no_overwrite_dir_non_dir: bool,
    /// Apply `SCHILY.xattr.*` records (never `trusted.overlay.*`, which could forge overlay
    /// redirects or opaque directories).
    pub xattrs: bool,
    /// `(from, to)`: an entry (or hardlink target) whose first component is `from` goes to
    /// `to` instead (`docker cp c:/etc ./copy` extracts `etc/...` as `copy/...`).
    pub rebase: Option<(String, String)>,
}

/// Extracts `reader` into the directory `dest`. Returns the bytes of regular files written (a
/// layer's size as Docker reports it).
pub fn extract(reader: &mut dyn Read, dest: &Path, opts: &ExtractOptions) -> Result<u64, FsError> {
    let d = sys::openat(
        libc::AT_FDCWD,
        dest.as_os_str().as_bytes(),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| FsError::io("open", dest.display(), e))?;
    extract_at(reader, d.as_fd_borrowed(), opts)
}

trait Borrow {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl Borrow for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Lexically cleaned components of an archive path: normal names only; `..` is refused.
pub fn clean_components(path: &[u8]) -> Result<Vec<Vec<u8>>, FsError> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(FsError::UnsafePath(format!(
                    "{}: path contains '..'",
                    String::from_utf8_lossy(path)
                )))
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn shown(comps: &[Vec<u8>]) -> String {
    comps
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Opens the directory `comps` below `base`, one `O_NOFOLLOW` step at a time (creating missing
/// ones, 0755, when `create`); a symlink or non-directory on the way is an unsafe path.
fn open_dirs(base: RawFd, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd, FsError> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let mut cur = sys::openat(base, b".", flags, 0).map_err(|e| FsError::io("open", ".", e))?;
    for (i, c) in comps.iter().enumerate() {
        let next = match sys::openat(cur.as_raw_fd(), c, flags, 0) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                let cc = cstr(c).map_err(|e| FsError::io("mkdir", shown(&comps[..=i]), e))?;
                // SAFETY: a valid directory fd and a NUL-terminated name.
                let r = unsafe { libc::mkdirat(cur.as_raw_fd(), cc.as_ptr(), 0o755) };
                if let Err(e) = check(r) {
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(FsError::io("mkdir", shown(&comps[..=i]), e));
                    }
                }
                sys::openat(cur.as_raw_fd(), c, flags, 0)
                    .map_err(|e| unsafe_or_io(e, &comps[..=i]))?
            }
            Err(e) => return Err(unsafe_or_io(e, &comps[..=i])),
        };
        cur = next;
    }
    Ok(cur)
}

fn unsafe_or_io(e: io::Error, comps: &[Vec<u8>]) -> FsError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => FsError::UnsafePath(format!(
            "{}: path goes through a symlink or a non-directory",
            shown(comps)
        )),
        Some(libc::ENOENT) => FsError::UnsafePath(format!("{}: not found", shown(comps))),
        _ => FsError::io("open", shown(comps), e),
    }
}

/// What is at `name` in `dir`, not following a symlink.
fn lstat_opt(dir: RawFd, name: &[u8]) -> Option<libc::stat> {
    sys::lstatat(dir, name).ok()
}

/// Makes room for an entry at `name`. An existing directory stays for a directory entry (the
/// return value says so); anything else is removed, never followed, unless
/// `no_overwrite_dir_non_dir` forbids replacing a directory by a non-directory or the reverse.
fn clear_slot(
    dir: RawFd,
    name: &[u8],
    for_dir: bool,
    opts: &ExtractOptions,
) -> Result<bool, FsError> {
    let Some(st) = lstat_opt(dir, name) else {
        return Ok(false);
    };
    let is_dir = sys::is_kind(&st, libc::S_IFDIR);
    if is_dir && for_dir {
        return Ok(true);
    }
    let shown_name = String::from_utf8_lossy(name);
    if opts.no_overwrite_dir_non_dir && is_dir != for_dir {
        let what = |d: bool| if d { "directory" } else { "non-directory" };
        return Err(FsError::Conflict(format!(
            "cannot overwrite {} {shown_name:?} with a {}",
            what(is_dir),
            what(for_dir)
        )));
    }
    if is_dir {
        // std's remove_dir_all never follows a symlink below the directory.
        let p = format!("/proc/self/fd/{dir}/{shown_name}");
        std::fs::remove_dir_all(&p).map_err(|e| FsError::io("remove", &shown_name, e))?;
    } else {
        let c = cstr(name).map_err(|e| FsError::io("remove", &shown_name, e))?;
        // SAFETY: a valid directory fd and a NUL-terminated name.
        check(unsafe { libc::unlinkat(dir, c.as_ptr(), 0) })
            .map_err(|e| FsError::io("remove", &shown_name, e))?;
    }
    Ok(false)
}

fn set_xattr(dir: RawFd, name: &[u8], key: &str, value: &[u8]) -> io::Result<()> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name);
    let p = cstr(&p)?;
    let k = cstr(key.as_bytes())?;
    // SAFETY: NUL-terminated path and name, a value slice of the length given; lsetxattr does
    // not follow a symlink at the last name.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

fn set_times(dir: RawFd, name: &[u8], mtime: i64) -> io::Result<()> {
    let c = cstr(name)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let ts = [t, t];
    // SAFETY: valid fd, NUL-terminated name, two timespecs; never follows a symlink.
    check(unsafe { libc::utimensat(dir, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

fn mknod(
    dir: RawFd,
    name: &[u8],
    kind: libc::mode_t,
    perm: u32,
    dev: libc::dev_t,
) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid directory fd and a NUL-terminated name.
    check(unsafe { libc::mknodat(dir, c.as_ptr(), kind | (perm & 0o7777) as libc::mode_t, dev) })
}

/// Extraction state across entries.
struct Run<'a> {
    dest: RawFd,
    opts: &'a ExtractOptions,
    /// Paths this archive wrote (OverlayMerge): an opaque marker keeps them, in any order.
    written: HashSet<Vec<Vec<u8>>>,
    /// Directories whose mtime is set at the end (creating children changes it).
    dir_times: Vec<(Vec<Vec<u8>>, i64)>,
    size: u64,
}

/// [`extract`] into a directory given as a descriptor (a container's directory opened with
/// `open_in_root`).
pub fn extract_at(
    reader: &mut dyn Read,
    dest: BorrowedFd<'_>,
    opts: &ExtractOptions,
) -> Result<u64, FsError> {
    let mut run = Run {
        dest: dest.as_raw_fd(),
        opts,
        written: HashSet::new(),
        dir_times: Vec::new(),
        size: 0,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| FsError::InvalidArchive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| FsError::InvalidArchive(e.to_string()))?;
        run.entry(&mut entry)?;
    }
    // Deepest first: setting a directory's time must come after its children are made.
    run.dir_times
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (comps, t) in std::mem::take(&mut run.dir_times) {
        let Some((last, parents)) = comps.split_last() else {
            continue;
        };
        let d = open_dirs(run.dest, parents, false)?;
        set_times(d.as_raw_fd(), last, t)
            .map_err(|e| FsError::io("set times", shown(&comps), e))?;
    }
    Ok(run.size)
}

impl Run<'_> {
    fn rebased(&self, comps: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, FsError> {
        match &self.opts.rebase {
            Some((from, to)) if comps.first().is_some_and(|c| c == from.as_bytes()) => {
                let mut out = clean_components(to.as_bytes())?;
                out.extend(comps.into_iter().skip(1));
                Ok(out)
            }
            _ => Ok(comps),
        }
    }

    fn entry(&mut self, entry: &mut tar::Entry<'_, &mut dyn Read>) -> Result<(), FsError> {
        let raw = entry.path_bytes().into_owned();
        let comps = self.rebased(clean_components(&raw)?)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(()); // the root directory itself
        };
        let (last, parents) = (last.clone(), parents.to_vec());
        if self.opts.whiteouts != Whiteouts::Keep && last.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&raw, &parents, &last);
        }
        let header = entry.header().clone();
        let mut kind = header.entry_type();
        // Old tars mark directories only by a trailing slash on a regular entry.
        if kind == tar::EntryType::Regular && raw.ends_with(b"/") {
            kind = tar::EntryType::Directory;
        }
        let dir = open_dirs(self.dest, &parents, true)?;
        let d = dir.as_raw_fd();
        if self.opts.whiteouts == Whiteouts::OverlayMerge {
            self.written.insert(comps.clone());
        }
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let io_err = |op: &'static str| {
            let p = shown(&comps);
            move |e: io::Error| FsError::io(op, p, e)
        };
        let name = cstr(&last).map_err(io_err("create"))?;
        use tar::EntryType as E;
        match kind {
            E::Directory => {
                let replaces =
                    lstat_opt(d, &last).is_some_and(|st| !sys::is_kind(&st, libc::S_IFDIR));
                if !clear_slot(d, &last, true, self.opts)? {
                    // SAFETY: a valid directory fd and a NUL-terminated name.
                    check(unsafe { libc::mkdirat(d, name.as_ptr(), 0o700) })
                        .map_err(io_err("mkdir"))?;
                }
                if self.opts.whiteouts == Whiteouts::OverlayMerge && replaces {
                    set_xattr(d, &last, OPAQUE_XATTR, b"y")
                        .map_err(io_err("set opaque xattr on"))?;
                }
            }
            E::Regular | E::Continuous | E::GNUSparse => {
                clear_slot(d, &last, false, self.opts)?;
                let f = sys::openat(
                    d,
                    &last,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(io_err("create"))?;
                let mut f = File::from(f);
                self.size += io::copy(entry, &mut f).map_err(io_err("write"))?;
            }
            E::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        FsError::InvalidArchive(format!(
                            "{}: symlink without target",
                            shown(&comps)
                        ))
                    })?
                    .into_owned();
                clear_slot(d, &last, false, self.opts)?;
                let t = cstr(&target).map_err(io_err("symlink"))?;
                // SAFETY: NUL-terminated strings and a valid directory fd.
                check(unsafe { libc::symlinkat(t.as_ptr(), d, name.as_ptr()) })
                    .map_err(io_err("symlink"))?;
            }
            E::Link => {
                // A hardlink shares its target's inode, metadata included.
                return self.hardlink(entry, &comps, d, &last);
            }
            E::Char | E::Block | E::Fifo => {
                clear_slot(d, &last, false, self.opts)?;
                let t = match kind {
                    E::Char => libc::S_IFCHR,
                    E::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                mknod(d, &last, t, mode, dev).map_err(io_err("mknod"))?;
            }
            // Pax/GNU metadata entries are consumed by the tar crate; anything else is skipped.
            _ => return Ok(()),
        }
        self.metadata(entry, &header, kind, d, &last, &comps, mode)
    }

    #[allow(clippy::too_many_arguments)]
    fn metadata(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        header: &tar::Header,
        kind: tar::EntryType,
        d: RawFd,
        last: &[u8],
        comps: &[Vec<u8>],
        mode: u32,
    ) -> Result<(), FsError> {
        let name = cstr(last).map_err(|e| FsError::io("chown", shown(comps), e))?;
        let (uid, gid) = if self.opts.same_owner {
            (
                header
                    .uid()
                    .ok()
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or(0),
                header
                    .gid()
                    .ok()
                    .and_then(|g| u32::try_from(g).ok())
                    .unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        // Ownership first: chown clears set-id bits, so the mode is applied after it.
        // SAFETY: a valid directory fd and a NUL-terminated name; never follows a symlink.
        if let Err(e) =
            check(unsafe { libc::fchownat(d, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        {
            // Without privilege (unit tests as non-root) keep going; as root this is real.
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(FsError::io("chown", shown(comps), e));
            }
        }
        if kind != tar::EntryType::Symlink {
            // SAFETY: as above; the object is not a symlink (it was just made here).
            check(unsafe { libc::fchmodat(d, name.as_ptr(), mode, 0) })
                .map_err(|e| FsError::io("chmod", shown(comps), e))?;
        }
        if self.opts.xattrs {
            if let Ok(Some(exts)) = entry.pax_extensions() {
                for ext in exts.flatten() {
                    let Ok(key) = ext.key() else { continue };
                    let Some(xname) = key.strip_prefix("SCHILY.xattr.") else {
                        continue;
                    };
                    if xname.starts_with("trusted.overlay.") {
                        continue;
                    }
                    if let Err(e) = set_xattr(d, last, xname, ext.value_bytes()) {
                        tracing::debug!("xattr {xname} on {}: {e}", shown(comps));
                    }
                }
            }
        }
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        if kind == tar::EntryType::Directory {
            self.dir_times.push((comps.to_vec(), mtime));
        } else {
            set_times(d, last, mtime).map_err(|e| FsError::io("set times", shown(comps), e))?;
        }
        Ok(())
    }

    fn hardlink(
        &mut self,
        entry: &tar::Entry<'_, &mut dyn Read>,
        comps: &[Vec<u8>],
        d: RawFd,
        last: &[u8],
    ) -> Result<(), FsError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| {
                FsError::InvalidArchive(format!("{}: hardlink without target", shown(comps)))
            })?
            .into_owned();
        let not_inside = || {
            FsError::UnsafePath(format!(
                "{}: hardlink target {} is not in the archive's destination",
                shown(comps),
                String::from_utf8_lossy(&target)
            ))
        };
        let tcomps = self.rebased(clean_components(&target)?)?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(FsError::UnsafePath(format!(
                "{}: hardlink to the root",
                shown(comps)
            )));
        };
        let tdir = open_dirs(self.dest, tparents, false).map_err(|_| not_inside())?;
        let st = lstat_opt(tdir.as_raw_fd(), tlast).ok_or_else(not_inside)?;
        if sys::is_kind(&st, libc::S_IFDIR) {
            return Err(FsError::UnsafePath(format!(
                "{}: hardlink to a directory",
                shown(comps)
            )));
        }
        if tcomps == comps {
            return Ok(());
        }
        clear_slot(d, last, false, self.opts)?;
        let (tn, n) = (
            cstr(tlast).map_err(|e| FsError::io("link", shown(comps), e))?,
            cstr(last).map_err(|e| FsError::io("link", shown(comps), e))?,
        );
        // SAFETY: valid fds and NUL-terminated names; flags 0: a symlink source is linked itself.
        check(unsafe { libc::linkat(tdir.as_raw_fd(), tn.as_ptr(), d, n.as_ptr(), 0) })
            .map_err(|e| FsError::io("link", shown(comps), e))
    }

    fn whiteout(&mut self, raw: &[u8], parents: &[Vec<u8>], last: &[u8]) -> Result<(), FsError> {
        let dir = open_dirs(self.dest, parents, true)?;
        let d = dir.as_raw_fd();
        if last == WHITEOUT_OPAQUE {
            if self.opts.whiteouts == Whiteouts::OverlayMerge {
                let p = format!("/proc/self/fd/{d}");
                let rd =
                    std::fs::read_dir(&p).map_err(|e| FsError::io("read", shown(parents), e))?;
                for child in rd {
                    let child = child.map_err(|e| FsError::io("read", shown(parents), e))?;
                    let mut cp = parents.to_vec();
                    cp.push(child.file_name().as_bytes().to_vec());
                    if !self.written.contains(&cp) {
                        clear_slot(
                            d,
                            child.file_name().as_bytes(),
                            false,
                            &ExtractOptions::default(),
                        )?;
                    }
                }
            }
            return set_xattr(d, b".", OPAQUE_XATTR, b"y")
                .map_err(|e| FsError::io("set opaque xattr on", shown(parents), e));
        }
        if last.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(()); // other aufs metadata: meaningless for overlay
        }
        let hidden = &last[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(FsError::UnsafePath(
                String::from_utf8_lossy(raw).into_owned(),
            ));
        }
        clear_slot(d, hidden, false, &ExtractOptions::default())?;
        let mut comps = parents.to_vec();
        comps.push(hidden.to_vec());
        mknod(d, hidden, libc::S_IFCHR, 0, 0)
            .map_err(|e| FsError::io("mknod", shown(&comps), e))?;
        if self.opts.whiteouts == Whiteouts::OverlayMerge {
            self.written.insert(comps);
        }
        Ok(())
    }
}
