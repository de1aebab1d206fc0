//! COPY/ADD sources: globs expanded inside the source root (symlinks followed as if it were
//! `/`), `--parents` paths, `--exclude` patterns, owners by name from the image's
//! /etc/passwd and /etc/group, and directory walks.

use super::{CopyArgs, Entry, EntryKind};
use crate::builder::imagefs::ImageFs;
use crate::builder::stage::StageRun;
use crate::builder::util::{failed, has_glob};
use crate::builder::BuildError;
use crate::context::clean_rel;
use berth_fs::secure_join;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One source to copy.
pub(super) struct Source {
    /// Where it is on the host (inside the source root).
    pub host: PathBuf,
    /// With `--parents`: its path under the destination.
    pub parent_path: Option<String>,
}

/// The number of leading path elements a `--parents` source drops: those before its last
/// `/./` pivot (none without one).
fn pivot_depth(src: &str) -> usize {
    let s = src.strip_prefix("./").unwrap_or(src);
    match s.rfind("/./") {
        Some(i) => clean_rel(Path::new(&s[..i]))
            .map(|p| p.components().count())
            .unwrap_or(0),
        None => 0,
    }
}

impl StageRun<'_, '_, '_> {
    /// `user[:group]` as numbers, names looked up in the image's /etc/passwd and /etc/group.
    pub(super) fn resolve_chown(&self, fs: &ImageFs, spec: &str) -> Result<(u64, u64), BuildError> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let lookup = |file: &str, name: &str, col: usize| -> Option<u64> {
            fs.read(file)?.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name)).then(|| f.get(col)?.parse().ok())?
            })
        };
        let uid = match u.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/passwd", u, 2).ok_or_else(|| {
                BuildError::BadRequest(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
            })?,
        };
        let gid = match g {
            None => uid,
            Some(g) => match g.parse::<u64>() {
                Ok(n) => n,
                Err(_) => lookup("/etc/group", g, 2).ok_or_else(|| {
                    BuildError::BadRequest(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// Paths (relative to `root`) a source names, globs expanded.
    fn expand_source(&self, root: &Path, src: &str, cmd: &str) -> Result<Vec<PathBuf>, BuildError> {
        let Some(rel) = clean_rel(Path::new(src)) else {
            return Err(BuildError::BadRequest(format!(
                "{cmd} failed: forbidden path outside the build context: {src} ()"
            )));
        };
        if !has_glob(src) {
            return Ok(vec![rel]);
        }
        let mut cands = vec![PathBuf::new()];
        for comp in rel.components() {
            let c = comp.as_os_str().to_string_lossy().into_owned();
            let mut next = Vec::new();
            for base in &cands {
                if has_glob(&c) {
                    let dir = secure_join(root, &base.to_string_lossy());
                    let Ok(rd) = dir.and_then(std::fs::read_dir) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        if crate::dockerignore::glob(&c, &n) {
                            next.push(base.join(n));
                        }
                    }
                } else {
                    next.push(base.join(&c));
                }
            }
            cands = next;
        }
        cands.retain(|c| {
            secure_join(root, &c.to_string_lossy())
                .and_then(std::fs::symlink_metadata)
                .is_ok()
        });
        Ok(cands)
    }

    /// Every source of the step, checked to exist.
    pub(super) fn find_sources(
        &self,
        root: &Path,
        args: &CopyArgs,
    ) -> Result<Vec<Source>, BuildError> {
        let cmd = args.cmd;
        let mut out = Vec::new();
        for s in &args.srcs {
            let found = self.expand_source(root, s, cmd)?;
            if found.is_empty() {
                return Err(BuildError::BadRequest(format!(
                    "{cmd} failed: no source files were specified"
                )));
            }
            let depth = pivot_depth(s);
            for rel in found {
                let rel_s = rel.to_string_lossy().into_owned();
                if !rel_s.is_empty() && args.exclude.excluded(&rel_s) {
                    continue;
                }
                let host = secure_join(root, &rel_s);
                let Some(host) = host.ok().filter(|h| std::fs::metadata(h).is_ok()) else {
                    return Err(BuildError::BadRequest(format!(
                        "{cmd} failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
                    )));
                };
                let parent_path = args.parents.then(|| {
                    rel.components()
                        .skip(depth)
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                });
                out.push(Source { host, parent_path });
            }
        }
        Ok(out)
    }

    /// A directory's contents (not the directory itself) under `dest`, `--exclude`d paths
    /// (relative to the directory) left out.
    pub(super) fn walk_dir(
        &self,
        dir: &Path,
        dest: &str,
        uid: u64,
        gid: u64,
        args: &CopyArgs,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut stack = vec![(dir.to_path_buf(), dest.to_string(), String::new())];
        while let Some((d, target, rel)) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|e| failed("reading source", e))?;
            for e in rd {
                let e = e.map_err(|e| failed("reading source", e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if args.exclude.excluded(&rel) {
                    continue;
                }
                let path = e.path();
                let m = std::fs::symlink_metadata(&path).map_err(|e| failed("stat", e))?;
                let t = if target.is_empty() {
                    name.clone()
                } else {
                    format!("{target}/{name}")
                };
                let ft = m.file_type();
                let kind = if ft.is_dir() {
                    stack.push((path.clone(), t.clone(), rel.clone()));
                    EntryKind::Dir
                } else if ft.is_symlink() {
                    EntryKind::Symlink(
                        std::fs::read_link(&path).map_err(|e| failed("readlink", e))?,
                    )
                } else if ft.is_file() {
                    EntryKind::File(path.clone(), m.len())
                } else {
                    continue;
                };
                let mode = match (&kind, args.chmod) {
                    (EntryKind::Symlink(_), _) => 0o777,
                    (_, Some(c)) => c,
                    _ => m.mode() & 0o7777,
                };
                out.push(Entry {
                    path: t,
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime: self.clamp(m.mtime()),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pivot_depth;

    #[test]
    fn parents_pivot() {
        assert_eq!(pivot_depth("a/b/c.txt"), 0);
        assert_eq!(pivot_depth("./a/b/c.txt"), 0);
        assert_eq!(pivot_depth("./a/./b/c.txt"), 1);
        assert_eq!(pivot_depth("a/b/./c/*.go"), 2);
    }
}
