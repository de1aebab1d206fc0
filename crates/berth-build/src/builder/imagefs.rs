//! Read-only lookups in an image's filesystem through its extracted layers (whiteouts
//! hide what lower layers have), without mounting it.

use crate::context::clean_rel;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(super) struct ImageFs {
    /// The layers' directories, top first.
    pub dirs: Vec<PathBuf>,
}

impl ImageFs {
    pub fn lookup(&self, path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let rel = clean_rel(Path::new(path))?;
        for d in &self.dirs {
            let full = d.join(&rel);
            if let Ok(m) = std::fs::symlink_metadata(&full) {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None; // whiteout
                }
                return Some((full, m));
            }
        }
        None
    }
    pub fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_some()
    }
    pub fn is_dir(&self, path: &str) -> bool {
        self.lookup(path).is_some_and(|(_, m)| m.is_dir())
    }
    /// `path` with the symlinks of the image's directories followed inside the image (an
    /// absolute link restarts at the image's root, as in a chroot). The last element is
    /// followed only when it is a link to a directory.
    pub fn resolve(&self, path: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    out.pop();
                    continue;
                }
                _ => {}
            }
            let mut parts = out.clone();
            parts.push(part.clone());
            let cand = format!("/{}", parts.join("/"));
            match self.lookup(&cand) {
                Some((host, m)) if m.file_type().is_symlink() && hops < 40 => {
                    hops += 1;
                    let t = std::fs::read_link(&host)
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    let mut rest: Vec<String> = Vec::new();
                    if !t.starts_with('/') {
                        rest.extend(out.iter().cloned());
                    }
                    rest.extend(t.split('/').filter(|p| !p.is_empty()).map(String::from));
                    // The final element stays a link unless it leads to a directory.
                    if pending.is_empty() {
                        let target = self.resolve(&format!("/{}", rest.join("/")));
                        if !self.is_dir(&target) {
                            out.push(part);
                            continue;
                        }
                    }
                    out.clear();
                    pending.extend(rest.into_iter().rev());
                }
                _ => out.push(part),
            }
        }
        format!("/{}", out.join("/"))
    }

    pub fn read(&self, path: &str) -> Option<String> {
        let (p, m) = self.lookup(path)?;
        if !m.is_file() {
            return None;
        }
        std::fs::read_to_string(p).ok()
    }
}
