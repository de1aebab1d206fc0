//! `RUN --mount`: parsing the flag (BuildKit's CSV grammar and checks), and preparing each
//! mount on the host for the step's container: bind (from the context, a stage or an image;
//! writes discarded), cache (persistent directories with shared/private/locked sharing),
//! tmpfs, secret (a file on a private tmpfs, or an env variable) and ssh (a forwarded agent
//! socket).

use super::stage::StageRun;
use super::util::{failed, sha_hex, unique_suffix, TempDir};
use super::{BuildError, NamedContext, RunMount, RunMountKind};
use crate::context::clean_rel;
use berth_image::ImageStore;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` flag, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub size: Option<i64>,
    pub id: Option<String>,
    pub sharing: Sharing,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

fn bad(m: impl Into<String>) -> BuildError {
    BuildError::BadRequest(m.into())
}

/// Splits a CSV field list (quotes group commas, `""` is a quote).
fn csv_fields(s: &str) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(bad(format!(
            "failed to parse csv mounts: extraneous or missing \" in quoted-field: {s}"
        )));
    }
    out.push(cur);
    Ok(out)
}

/// Docker's size notation (`64m`, `1g`, `512k`, `1024`), in bytes.
fn ram_bytes(v: &str) -> Option<i64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1i64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        't' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, BuildError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(bad(format!("invalid value for {key}: {v}"))),
    }
}

/// Parses one `--mount` value (after variable expansion), as BuildKit's Dockerfile frontend
/// does.
pub(super) fn parse_mount(val: &str) -> Result<Mount, BuildError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        size: None,
        id: None,
        sharing: Sharing::Shared,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    let mut sharing_set = false;
    for field in csv_fields(val)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return Err(bad(format!(
                        "unexpected key 'required' for mount type '{}'",
                        type_name(m.kind)
                    )))
                }
                _ => {
                    return Err(bad(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )))
                }
            }
            continue;
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(bad(format!("unsupported mount type \"{value}\""))),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = parse_bool(&key, &value)?
            }
            "size" if m.kind == MountType::Tmpfs => {
                m.size = Some(
                    ram_bytes(&value)
                        .ok_or_else(|| bad(format!("invalid value for size: {value}")))?,
                )
            }
            "required" | "size" => {
                return Err(bad(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    type_name(m.kind)
                )))
            }
            "id" => m.id = Some(value),
            "sharing" => {
                sharing_set = true;
                m.sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(bad(format!("unsupported sharing value \"{value}\""))),
                }
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| bad(format!("invalid value {value} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("invalid value {value} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("invalid value {value} for gid")))?,
                )
            }
            "env" => m.env = Some(value),
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set {
                return Err(bad(format!(
                    "{what} not allowed for \"{}\" type mounts",
                    type_name(m.kind)
                )));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(bad("secret mount should not have a from"));
        }
        if sharing_set {
            return Err(bad("secret mount should not define sharing"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(bad("invalid secret mount. one of source, target required"));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(bad("both source and id can't be set"));
        }
    }
    if m.kind == MountType::Ssh && m.source.is_some() {
        return Err(bad("ssh does not support source"));
    }
    if sharing_set && m.kind != MountType::Cache {
        return Err(bad(format!(
            "invalid cache sharing set for {} mount",
            type_name(m.kind)
        )));
    }
    if matches!(
        m.kind,
        MountType::Bind | MountType::Cache | MountType::Tmpfs
    ) && m.target.is_none()
    {
        return Err(bad("mount target must be specified"));
    }
    Ok(m)
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// The stage or image a `--mount` value reads from (`from=`), for planning which stages
/// a build needs. Unparsable values have none (the step reports them).
pub(super) fn mount_from(val: &str) -> Option<String> {
    csv_fields(val).ok()?.into_iter().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        k.eq_ignore_ascii_case("from").then(|| v.to_string())
    })
}

/// Everything a step's mounts hold until the step's container is gone.
#[derive(Default)]
pub(super) struct Prepared<'s> {
    pub mounts: Vec<RunMount>,
    /// `KEY=value` for secrets given as env variables, and SSH_AUTH_SOCK.
    pub env: Vec<String>,
    /// What each mount adds to the step's cache key.
    pub key: Vec<String>,
    /// Mount points in the image that did not exist: dropped from the step's diff.
    pub stubs: BTreeSet<String>,
    /// Source images mounted for the step: unmounted on drop.
    pub images: Vec<MountedImage<'s>>,
    /// Cache mount locks, temp dirs, agent sockets: released on drop.
    pub guards: Vec<Box<dyn std::any::Any + Send>>,
}

/// An image's filesystem mounted for a step or a copy; unmounted on drop.
pub(super) struct MountedImage<'s> {
    pub store: &'s ImageStore,
    pub id: String,
    pub path: PathBuf,
}

impl<'s> MountedImage<'s> {
    pub fn new(store: &'s ImageStore, image_id: &str) -> Result<Self, BuildError> {
        let id = format!(
            "build-{}",
            &sha_hex(format!("{image_id}{}", unique_suffix()).as_bytes())[..32]
        );
        store
            .create_image_snapshot(&id, image_id)
            .map_err(|e| failed("mounting source image", e))?;
        let mut m = MountedImage {
            store,
            id,
            path: PathBuf::new(),
        };
        m.path = store
            .mount_snapshot(&m.id)
            .map_err(|e| failed("mounting source image", e))?;
        Ok(m)
    }
}

impl Drop for MountedImage<'_> {
    fn drop(&mut self) {
        let _ = self.store.unmount_snapshot(&self.id);
        let _ = self.store.remove_snapshot(&self.id);
    }
}

/// An open lock file held for a cache mount's use (shared or exclusive flock).
struct CacheLock(#[allow(dead_code)] std::fs::File);

fn flock(f: &std::fs::File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// A private tmpfs directory for secret files (never written to disk); unmounted and removed
/// on drop.
struct SecretDir(PathBuf, bool);

impl SecretDir {
    fn new(parent: &Path) -> Result<Self, BuildError> {
        let dir = parent.join(format!("secrets-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).map_err(|e| failed("secret dir", e))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|e| failed("secret dir", e))?;
        let opts = c"mode=0700,size=16m";
        // SAFETY: mounting a fresh tmpfs on a directory we just created; the strings are
        // NUL-terminated and live across the call.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                opts.as_ptr().cast(),
            ) == 0
        };
        Ok(SecretDir(dir, mounted))
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        if self.1 {
            if let Ok(c) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
                // SAFETY: unmounting the tmpfs this guard mounted.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A digest of a tree's paths, types, modes and contents (a bind mount's cache key part).
fn tree_digest(root: &Path) -> String {
    let mut h = Sha256::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((p, rel)) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        h.update(format!("{rel}\0{:o}\0", m.mode()).as_bytes());
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            names.sort();
            for n in names.into_iter().rev() {
                let r = format!("{rel}/{}", n.to_string_lossy());
                stack.push((p.join(&n), r));
            }
        } else if m.file_type().is_symlink() {
            if let Ok(t) = std::fs::read_link(&p) {
                h.update(t.as_os_str().as_encoded_bytes());
            }
        } else if m.is_file() {
            if let Ok(mut f) = std::fs::File::open(&p) {
                let mut fh = Sha256::new();
                let _ = std::io::copy(&mut f, &mut fh);
                h.update(fh.finalize());
            }
        }
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Copies a tree (files, directories, symlinks; modes and owners kept).
pub(super) fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(src)?;
    if m.file_type().is_symlink() {
        let t = std::fs::read_link(src)?;
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(t, dst)?;
    } else if m.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    } else if m.is_file() {
        std::fs::copy(src, dst)?;
    } else {
        return Ok(());
    }
    let _ = std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()));
    Ok(())
}

/// The directory of cache mount `id` under `root`.
fn cache_dir_for(root: &Path, id: &str) -> PathBuf {
    root.join(&sha_hex(id.as_bytes())[..32])
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct CacheMeta {
    id: String,
    created: i64,
    last_used: i64,
    uses: i64,
}

/// A cache mount directory in use: its data dir, and the lock that marks it busy.
fn open_cache(
    root: &Path,
    m: &Mount,
    id: &str,
    init: &dyn Fn(&Path) -> Result<(), BuildError>,
) -> Result<(PathBuf, CacheLock), BuildError> {
    let dir = cache_dir_for(root, id);
    std::fs::create_dir_all(&dir).map_err(|e| failed("cache mount", e))?;
    let meta_path = dir.join("meta.json");
    let mut meta: CacheMeta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if meta.id.is_empty() {
        meta.id = id.to_string();
        meta.created = now;
    }
    meta.last_used = now;
    meta.uses += 1;
    // Instance 0 is the cache; private sharing takes the next free one when it is busy.
    for n in 0.. {
        let data = if n == 0 {
            dir.join("data")
        } else {
            dir.join(format!("data-{n}"))
        };
        let lock_path = dir.join(if n == 0 {
            "lock".to_string()
        } else {
            format!("lock-{n}")
        });
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| failed("cache mount lock", e))?;
        let got = match m.sharing {
            Sharing::Shared => flock(&lock, libc::LOCK_SH),
            Sharing::Locked => flock(&lock, libc::LOCK_EX),
            Sharing::Private => flock(&lock, libc::LOCK_EX | libc::LOCK_NB),
        };
        if !got {
            if m.sharing == Sharing::Private && n < 64 {
                continue;
            }
            return Err(failed("cache mount lock", std::io::Error::last_os_error()));
        }
        if !data.exists() {
            let tmp = dir.join(format!(".new-{}", unique_suffix()));
            std::fs::create_dir_all(&tmp).map_err(|e| failed("cache mount", e))?;
            init(&tmp)?;
            let mode = m.mode.unwrap_or(0o755);
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .map_err(|e| failed("cache mount", e))?;
            std::os::unix::fs::lchown(&tmp, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                .map_err(|e| failed("cache mount", e))?;
            std::fs::rename(&tmp, &data).map_err(|e| failed("cache mount", e))?;
        }
        if let Ok(b) = serde_json::to_vec(&meta) {
            let tmp = dir.join(format!(".meta-{}", unique_suffix()));
            if std::fs::write(&tmp, b).is_ok() && std::fs::rename(&tmp, &meta_path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        return Ok((data, CacheLock(lock)));
    }
    unreachable!("the instance loop returns")
}

/// One cache mount as `buildx du` lists it.
#[derive(Clone, Debug)]
pub struct CacheMountUsage {
    pub id: String,
    pub size: u64,
    pub created: i64,
    pub last_used: i64,
    pub uses: i64,
    pub in_use: bool,
    /// The directory (under the cache mounts root) holding it.
    pub dir: PathBuf,
}

/// The cache mounts under `root` (`RUN --mount=type=cache`), with their sizes.
pub fn cache_mounts_usage(root: &Path) -> Vec<CacheMountUsage> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let Ok(b) = std::fs::read(dir.join("meta.json")) else {
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<CacheMeta>(&b) else {
            continue;
        };
        let in_use = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("lock"))
                    .any(|e| {
                        std::fs::File::open(e.path())
                            .map(|f| !flock(&f, libc::LOCK_EX | libc::LOCK_NB))
                            .unwrap_or(false)
                    })
            })
            .unwrap_or(false);
        out.push(CacheMountUsage {
            id: meta.id,
            size: crate::disk::usage(&dir),
            created: meta.created,
            last_used: meta.last_used,
            uses: meta.uses,
            in_use,
            dir,
        });
    }
    out
}

/// Removes the cache mounts `keep` refuses (those in use stay). Returns what went.
pub fn prune_cache_mounts(
    root: &Path,
    keep: &dyn Fn(&CacheMountUsage) -> bool,
) -> Vec<CacheMountUsage> {
    let mut gone = Vec::new();
    for u in cache_mounts_usage(root) {
        if u.in_use || keep(&u) {
            continue;
        }
        // Hold every instance's lock while removing, so no step starts using it meanwhile.
        let locks: Vec<std::fs::File> = std::fs::read_dir(&u.dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("lock"))
                    .filter_map(|e| std::fs::File::open(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if locks
            .iter()
            .all(|f| flock(f, libc::LOCK_EX | libc::LOCK_NB))
        {
            let doomed = u.dir.with_extension(format!("gone-{}", unique_suffix()));
            if std::fs::rename(&u.dir, &doomed).is_ok() {
                let _ = std::fs::remove_dir_all(&doomed);
                gone.push(u);
            }
        }
    }
    gone
}

impl<'a> StageRun<'_, '_, 'a> {
    /// Prepares a RUN step's `--mount`s (already expanded).
    pub(super) fn prepare_mounts(
        &mut self,
        specs: &[String],
        fs: &super::imagefs::ImageFs,
    ) -> Result<Prepared<'a>, BuildError> {
        let mut p = Prepared::default();
        let workdir = self.st.workdir();
        let mut ssh_n = 0;
        let mut targets = BTreeSet::new();
        for spec in specs {
            let m = parse_mount(spec)?;
            let target = |t: &str| -> String {
                let abs = if t.starts_with('/') {
                    t.to_string()
                } else {
                    format!("{}/{t}", workdir.trim_end_matches('/'))
                };
                format!(
                    "/{}",
                    clean_rel(Path::new(&abs)).unwrap_or_default().display()
                )
            };
            let tgt = match (m.kind, &m.target) {
                (_, Some(t)) => target(t),
                (MountType::Secret, None) => {
                    let id =
                        m.id.clone()
                            .or_else(|| m.source.clone())
                            .unwrap_or_default();
                    let base = id.rsplit('/').next().unwrap_or(&id).to_string();
                    format!("/run/secrets/{base}")
                }
                (MountType::Ssh, None) => format!("/run/buildkit/ssh_agent.{ssh_n}"),
                _ => return Err(bad("mount target must be specified")),
            };
            if tgt == "/" {
                return Err(bad(format!(
                    "invalid mount target \"{}\"",
                    m.target.as_deref().unwrap_or("/")
                )));
            }
            if !targets.insert(tgt.clone()) && m.env.is_none() {
                return Err(bad(format!("duplicate mount target {tgt}")));
            }
            let mounted = p.mounts.len();
            match m.kind {
                MountType::Bind => self.prepare_bind(&m, &tgt, &mut p)?,
                MountType::Cache => self.prepare_cache(&m, &tgt, &mut p)?,
                MountType::Tmpfs => {
                    p.key.push(format!("tmpfs:{tgt}:{:?}", m.size));
                    p.mounts.push(RunMount {
                        target: tgt.clone(),
                        kind: RunMountKind::Tmpfs { size: m.size },
                    });
                }
                MountType::Secret => {
                    if !self.prepare_secret(&m, &tgt, &mut p)? {
                        continue;
                    }
                }
                MountType::Ssh => {
                    if !self.prepare_ssh(&m, &tgt, &mut p)? {
                        continue;
                    }
                    if ssh_n == 0
                        && !self
                            .st
                            .env_list()
                            .iter()
                            .any(|e| e.starts_with("SSH_AUTH_SOCK="))
                    {
                        p.env.push(format!("SSH_AUTH_SOCK={tgt}"));
                    }
                    ssh_n += 1;
                }
            }
            if p.mounts.len() > mounted {
                // The mount point and the parents the runtime creates for it.
                let mut cur = String::new();
                for part in tgt.trim_start_matches('/').split('/') {
                    cur = if cur.is_empty() {
                        part.to_string()
                    } else {
                        format!("{cur}/{part}")
                    };
                    if !fs.exists(&format!("/{cur}")) {
                        p.stubs.insert(cur.clone());
                    }
                }
            }
        }
        Ok(p)
    }

    /// The directory a `from=` names (a stage, image or named context), mounted as needed.
    fn mount_source_root(
        &mut self,
        from: Option<&str>,
        p: &mut Prepared<'a>,
    ) -> Result<(PathBuf, String), BuildError> {
        match from {
            None => Ok((self.run.context.to_path_buf(), "context".into())),
            Some(f) => {
                if let Some(NamedContext::Dir(d)) = self.run.named_context(f, self.idx) {
                    return Ok((d.clone(), format!("context:{f}")));
                }
                let image = self.source_image(f, "mount")?;
                let m = MountedImage::new(self.run.b.store, &image)?;
                let path = m.path.clone();
                p.images.push(m);
                Ok((path, image))
            }
        }
    }

    fn prepare_bind(
        &mut self,
        m: &Mount,
        tgt: &str,
        p: &mut Prepared<'a>,
    ) -> Result<(), BuildError> {
        let (root, what) = self.mount_source_root(m.from.as_deref(), p)?;
        let src_rel = m.source.clone().unwrap_or_default();
        let host = berth_fs::secure_join(&root, &src_rel);
        let Some(host) = host.ok().filter(|h| std::fs::symlink_metadata(h).is_ok()) else {
            return Err(BuildError::BadRequest(format!(
                "failed to compute cache key: failed to calculate checksum of ref: \"/{}\": not found",
                src_rel.trim_start_matches('/')
            )));
        };
        let digest = if what == "context" || what.starts_with("context:") {
            tree_digest(&host)
        } else {
            what.clone()
        };
        p.key.push(format!(
            "bind:{tgt}:{what}:{src_rel}:{}:{digest}",
            m.readonly
        ));
        let source = if m.readonly || what != "context" && !what.starts_with("context:") {
            host
        } else {
            // A writable bind of the context: the step writes to a copy, which goes away.
            let tmp = TempDir(self.run.b.tmp_dir.join(format!("bind-{}", unique_suffix())));
            copy_tree(&host, &tmp.0).map_err(|e| failed("preparing bind mount", e))?;
            let path = tmp.0.clone();
            p.guards.push(Box::new(tmp));
            path
        };
        p.mounts.push(RunMount {
            target: tgt.to_string(),
            kind: RunMountKind::Bind {
                source,
                readonly: m.readonly,
            },
        });
        Ok(())
    }

    fn prepare_cache(
        &mut self,
        m: &Mount,
        tgt: &str,
        p: &mut Prepared<'a>,
    ) -> Result<(), BuildError> {
        let id = m.id.clone().unwrap_or_else(|| tgt.to_string());
        let ns = self
            .run
            .opts
            .build_args
            .get("BUILDKIT_CACHE_MOUNT_NS")
            .cloned()
            .flatten()
            .unwrap_or_default();
        let full_id = format!("{ns}/{id}");
        let seed = match &m.from {
            Some(_) => {
                let (root, _) = self.mount_source_root(m.from.as_deref(), p)?;
                let src = m.source.as_deref().unwrap_or("");
                Some(berth_fs::secure_join(&root, src).map_err(|e| {
                    BuildError::BadRequest(format!("cache mount source {src:?}: {e}"))
                })?)
            }
            None => None,
        };
        let init = |dir: &Path| -> Result<(), BuildError> {
            if let Some(src) = &seed {
                if let Ok(rd) = std::fs::read_dir(src) {
                    for e in rd.flatten() {
                        copy_tree(&e.path(), &dir.join(e.file_name()))
                            .map_err(|e| failed("seeding cache mount", e))?;
                    }
                }
            }
            Ok(())
        };
        let (data, lock) = open_cache(&self.run.b.cache_mounts_dir, m, &full_id, &init)?;
        p.guards.push(Box::new(lock));
        p.key.push(format!("cache:{tgt}:{full_id}:{}", m.readonly));
        p.mounts.push(RunMount {
            target: tgt.to_string(),
            kind: RunMountKind::Bind {
                source: data,
                readonly: m.readonly,
            },
        });
        Ok(())
    }

    fn prepare_secret(
        &mut self,
        m: &Mount,
        tgt: &str,
        p: &mut Prepared<'a>,
    ) -> Result<bool, BuildError> {
        let id = m
            .source
            .clone()
            .or_else(|| m.id.clone())
            .unwrap_or_else(|| tgt.rsplit('/').next().unwrap_or("").to_string());
        let data = match self.run.session {
            Some(s) => s.secret(&id)?,
            None => None,
        };
        let Some(data) = data else {
            if m.required {
                return Err(BuildError::BadRequest(format!("secret {id}: not found")));
            }
            return Ok(false);
        };
        if let Some(var) = &m.env {
            p.env
                .push(format!("{var}={}", String::from_utf8_lossy(&data)));
            if m.target.is_none() {
                return Ok(true);
            }
        }
        let dir = SecretDir::new(&self.run.b.tmp_dir)?;
        let file = dir.0.join("secret");
        std::fs::write(&file, &data).map_err(|e| failed("secret", e))?;
        let mode = m.mode.unwrap_or(0o400);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed("secret", e))?;
        std::os::unix::fs::lchown(&file, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
            .map_err(|e| failed("secret", e))?;
        p.guards.push(Box::new(dir));
        p.mounts.push(RunMount {
            target: tgt.to_string(),
            kind: RunMountKind::Bind {
                source: file,
                readonly: true,
            },
        });
        Ok(true)
    }

    fn prepare_ssh(
        &mut self,
        m: &Mount,
        tgt: &str,
        p: &mut Prepared<'a>,
    ) -> Result<bool, BuildError> {
        let id = m.id.clone().unwrap_or_else(|| "default".into());
        let dir = TempDir(self.run.b.tmp_dir.join(format!("ssh-{}", unique_suffix())));
        std::fs::create_dir_all(&dir.0).map_err(|e| failed("ssh socket dir", e))?;
        let _ = std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o711));
        let sock = dir.0.join("agent.sock");
        let guard = match self.run.session {
            Some(s) => s.ssh_agent(&id, &sock)?,
            None => None,
        };
        let Some(guard) = guard else {
            if m.required {
                return Err(BuildError::BadRequest(format!(
                    "no SSH key {id:?} forwarded from the client"
                )));
            }
            return Ok(false);
        };
        let mode = m.mode.unwrap_or(0o600);
        let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(mode));
        let _ =
            std::os::unix::fs::lchown(&sock, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)));
        p.guards.push(guard);
        p.guards.push(Box::new(dir));
        p.mounts.push(RunMount {
            target: tgt.to_string(),
            kind: RunMountKind::Bind {
                source: sock,
                readonly: true,
            },
        });
        Ok(true)
    }
}
