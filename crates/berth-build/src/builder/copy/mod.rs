//! COPY and ADD: never a container. The step's arguments are expanded, its sources found
//! in the context (or the `--from` stage, image or named context), turned into layer entries
//! (directories walked, archives unpacked by ADD, URLs downloaded, heredocs inlined), keyed by
//! a digest of everything copied, and written as one layer.

mod archive;
mod sources;

use super::imagefs::ImageFs;
use super::layer::{Entry, EntryKind};
use super::mounts::MountedImage;
use super::stage::StageRun;
use super::util::{expand, failed, unique_suffix, TempDir};
use super::{BuildError, NamedContext};
use crate::context::clean_rel;
use crate::dockerignore::Ignore;
use crate::instructions::CopySpec;
use crate::shell::Lexer;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A COPY/ADD's arguments after variable expansion.
struct CopyArgs {
    cmd: &'static str,
    srcs: Vec<String>,
    urls: Vec<String>,
    dest_raw: String,
    chown: Option<String>,
    chmod: Option<u32>,
    /// `--exclude` patterns, matched against paths relative to each source.
    exclude: Ignore,
    parents: bool,
}

/// Where the copied files go, resolved in the image.
struct Dest {
    /// Absolute, symlinks of the image's directories followed.
    clean: String,
    /// `clean` without its leading `/`.
    rel: String,
    /// The destination names a directory (trailing `/`, or it is one).
    is_dir: bool,
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn parse_chmod(m: &str) -> Result<u32, BuildError> {
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| BuildError::BadRequest(format!("invalid chmod parameter: {m}")))
}

impl StageRun<'_, '_, '_> {
    fn copy_args(&self, spec: &CopySpec, env: &[String]) -> Result<CopyArgs, BuildError> {
        let lx = self.run.lexer();
        let cmd = if spec.add { "ADD" } else { "COPY" };
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(expand(&lx, s, env)?);
        }
        let dest_raw = expand(&lx, &spec.dest, env)?;
        let chown = spec
            .chown
            .as_ref()
            .map(|c| expand(&lx, c, env))
            .transpose()?;
        let chmod = match &spec.chmod {
            None => None,
            Some(m) => Some(parse_chmod(&expand(&lx, m, env)?)?),
        };
        let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if !spec.add && srcs.iter().any(|s| is_url(s)) {
            return Err(BuildError::BadRequest(format!(
                "{cmd} failed: source can't be a URL for COPY"
            )));
        }
        let (urls, srcs): (Vec<String>, Vec<String>) = srcs.into_iter().partition(|s| is_url(s));
        let mut exclude = Vec::new();
        for e in &spec.exclude {
            exclude.push(expand(&lx, e, env)?);
        }
        Ok(CopyArgs {
            cmd,
            srcs,
            urls,
            dest_raw,
            chown,
            chmod,
            exclude: Ignore::parse(&exclude.join("\n")),
            parents: spec.parents,
        })
    }

    fn copy_dest(&self, fs: &ImageFs, args: &CopyArgs, count: usize) -> Result<Dest, BuildError> {
        let raw = &args.dest_raw;
        let wd = self.st.workdir();
        let abs = if raw.starts_with('/') {
            raw.clone()
        } else {
            format!("{}/{}", wd.trim_end_matches('/'), raw)
        };
        let clean = fs.resolve(&format!(
            "/{}",
            clean_rel(Path::new(&abs)).unwrap_or_default().display()
        ));
        let ends_slash = raw.ends_with('/') || raw == "." || raw.ends_with("/.");
        let is_dir = ends_slash || fs.is_dir(&clean) || clean == "/" || args.parents;
        if count > 1 && !is_dir {
            return Err(BuildError::BadRequest(format!(
                "When using {} with more than one source file, the destination must be a directory and end with a /",
                args.cmd
            )));
        }
        let rel = clean.trim_start_matches('/').to_string();
        Ok(Dest { clean, rel, is_dir })
    }

    pub(super) fn copy_step(&mut self, spec: &CopySpec, env: &[String]) -> Result<(), BuildError> {
        let args = self.copy_args(spec, env)?;
        let lx = self.run.lexer();
        let store = self.run.b.store;
        let mut _mount = None;
        let root: PathBuf = match &spec.from {
            None => self.run.context.to_path_buf(),
            Some(f) => {
                let f = expand(&lx, f, env)?;
                match self.run.named_context(&f, self.idx) {
                    Some(NamedContext::Dir(d)) => d.clone(),
                    _ => {
                        let image_id = self.source_image(&f, "copy")?;
                        let m = MountedImage::new(store, &image_id)?;
                        let p = m.path.clone();
                        _mount = Some(m);
                        p
                    }
                }
            }
        };
        let fs = self.image_fs()?;
        let (uid, gid) = match &args.chown {
            Some(c) => self.resolve_chown(&fs, c)?,
            None => (0, 0),
        };
        let sources = self.find_sources(&root, &args)?;
        let dest = self.copy_dest(
            &fs,
            &args,
            sources.len() + spec.heredocs.len() + args.urls.len(),
        )?;
        let tmp = TempDir(self.run.b.tmp_dir.join(format!("copy-{}", unique_suffix())));
        let mut entries: Vec<Entry> = Vec::new();
        let mut dir_target = dest.is_dir;
        for src in &sources {
            let m = std::fs::metadata(&src.host).map_err(|e| failed("stat", e))?;
            let base = match &src.parent_path {
                Some(p) => join(&dest.rel, p),
                None => dest.rel.clone(),
            };
            if m.is_dir() {
                dir_target = true;
                if src.parent_path.is_some() && !base.is_empty() {
                    entries.push(Entry {
                        path: base.clone(),
                        kind: EntryKind::Dir,
                        mode: args.chmod.unwrap_or(m.mode() & 0o7777),
                        uid,
                        gid,
                        mtime: self.clamp(m.mtime()),
                    });
                }
                self.walk_dir(&src.host, &base, uid, gid, &args, &mut entries)?;
            } else if spec.add && archive::is_tar_archive(&src.host) {
                dir_target = true;
                std::fs::create_dir_all(&tmp.0).map_err(|e| failed("temp dir", e))?;
                self.unpack_archive(&src.host, &dest.rel, &tmp.0, &mut entries)?;
            } else {
                let target = match &src.parent_path {
                    Some(p) => join(&dest.rel, p),
                    None if dest.is_dir => join(
                        &dest.rel,
                        &src.host.file_name().unwrap_or_default().to_string_lossy(),
                    ),
                    None => dest.rel.clone(),
                };
                entries.push(Entry {
                    path: target,
                    kind: EntryKind::File(src.host.clone(), m.len()),
                    mode: args.chmod.unwrap_or(m.mode() & 0o7777),
                    uid,
                    gid,
                    mtime: self.clamp(m.mtime()),
                });
            }
        }
        self.add_urls(&args, spec, &dest, &tmp, uid, gid, &mut entries)?;
        self.add_heredocs(&args, spec, &dest, env, uid, gid, &mut entries)?;
        if dir_target && !dest.rel.is_empty() && !fs.exists(&dest.clean) {
            entries.push(Entry {
                path: dest.rel.clone(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: self.mtime_default(),
            });
        }
        self.parent_entries(&fs, &format!("{}/x", dest.clean), &mut entries);
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let digest = entries_digest(&entries)?;
        let kind = if sources.len() == 1 && !dir_target {
            "file"
        } else {
            "dir"
        };
        let created_by = format!(
            "/bin/sh -c #(nop)  {} {kind}:{digest} in {} ",
            args.cmd, args.dest_raw
        );
        let key = self.cache_key(&format!("{created_by}|{}|{:?}", entries.len(), spec.from));
        if self.try_cache(&key)? {
            return Ok(());
        }
        let diff = self.write_layer(entries)?;
        drop(tmp);
        self.finish_step(&key, created_by, Some(diff))
    }

    /// ADD of URLs: downloaded by the engine, checked against `--checksum`.
    #[allow(clippy::too_many_arguments)]
    fn add_urls(
        &self,
        args: &CopyArgs,
        spec: &CopySpec,
        dest: &Dest,
        tmp: &TempDir,
        uid: u64,
        gid: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        for (n, url) in args.urls.iter().enumerate() {
            std::fs::create_dir_all(&tmp.0).map_err(|e| failed("temp dir", e))?;
            let file = tmp.0.join(format!("url{n}"));
            let modified = self.run.b.backend.fetch(url, &file)?;
            if let Some(want) = &spec.checksum {
                let mut f = std::fs::File::open(&file).map_err(|e| failed("download", e))?;
                let mut h = Sha256::new();
                std::io::copy(&mut f, &mut h).map_err(|e| failed("download", e))?;
                let got = format!("sha256:{}", hex::encode(h.finalize()));
                if &got != want {
                    return Err(BuildError::BadRequest(format!(
                        "ADD failed: digest mismatch for {url}: expected {want}, got {got}"
                    )));
                }
            }
            let size = std::fs::metadata(&file)
                .map_err(|e| failed("download", e))?
                .len();
            let name = url
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .find(|p| !p.is_empty() && !p.contains(':'))
                .unwrap_or("")
                .to_string();
            let target = if dest.is_dir {
                if name.is_empty() {
                    return Err(BuildError::BadRequest(format!(
                        "cannot determine filename from url: {url}"
                    )));
                }
                join(&dest.rel, &name)
            } else {
                dest.rel.clone()
            };
            entries.push(Entry {
                path: target,
                kind: EntryKind::File(file, size),
                mode: args.chmod.unwrap_or(0o600),
                uid,
                gid,
                mtime: self.clamp(modified.unwrap_or(0)),
            });
        }
        Ok(())
    }

    /// Heredoc sources: inline files (expanded unless their marker is quoted).
    #[allow(clippy::too_many_arguments)]
    fn add_heredocs(
        &self,
        args: &CopyArgs,
        spec: &CopySpec,
        dest: &Dest,
        env: &[String],
        uid: u64,
        gid: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        for h in &spec.heredocs {
            let data = if h.expand {
                let raw = Lexer {
                    raw_quotes: true,
                    raw_escapes: true,
                    ..self.run.lexer()
                };
                raw.process_word(&h.content, &env.to_vec())
                    .map_err(|e| BuildError::BadRequest(e.to_string()))?
            } else {
                h.content.clone()
            };
            let target = if dest.is_dir {
                join(&dest.rel, &h.name)
            } else {
                dest.rel.clone()
            };
            entries.push(Entry {
                path: target,
                kind: EntryKind::Inline(data.into_bytes()),
                mode: args.chmod.unwrap_or(0o644),
                uid,
                gid,
                mtime: self.mtime_default(),
            });
        }
        Ok(())
    }
}

/// The cache key part of a COPY: paths, metadata and content of everything copied (not
/// mtimes).
fn entries_digest(entries: &[Entry]) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.path.as_bytes());
        h.update(format!("\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
        match &e.kind {
            EntryKind::Dir => h.update(b"d"),
            EntryKind::Symlink(t) => {
                h.update(b"l");
                h.update(t.to_string_lossy().as_bytes());
            }
            EntryKind::Inline(d) => {
                h.update(b"f");
                h.update(Sha256::digest(d));
            }
            EntryKind::File(p, size) => {
                h.update(format!("f{size}").as_bytes());
                let mut f = std::fs::File::open(p).map_err(|e| failed("reading source", e))?;
                let mut fh = Sha256::new();
                std::io::copy(&mut (&mut f).take(*size), &mut fh)
                    .map_err(|e| failed("reading source", e))?;
                h.update(fh.finalize());
            }
        }
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}
