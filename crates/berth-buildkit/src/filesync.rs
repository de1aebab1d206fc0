//! fsutil's DiffCopy protocol, both ways.
//!
//! Receiving (the build context, the Dockerfile, local named contexts): the client sends a
//! STAT packet per entry in walk order (parents first, siblings by name; an empty STAT ends
//! the listing), Berth asks for the regular files it lacks with REQ packets (by the entry's
//! index), the client sends each as DATA packets ended by an empty one, and Berth ends with
//! FIN. A directory received before (same shared key) is updated in place: files whose size,
//! mtime and mode match are not asked for, entries the client no longer has are removed.
//!
//! Sending (the local exporter): the same packets the other way, on the client's FileSend
//! service; the tar exporter sends a tar stream as BytesMessage chunks there.

use crate::pb::fsutil::types::{packet::PacketType, Packet, Stat};
use crate::pb::moby::filesync::v1::{file_sync_client::FileSyncClient, BytesMessage};
use crate::session::Session;
use berth_build::builder::BuildError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

// Go's os.FileMode bits (fsutil sends modes as Go reports them).
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DEVICE: u32 = 1 << 26;
const MODE_NAMED_PIPE: u32 = 1 << 25;
const MODE_SOCKET: u32 = 1 << 24;
const MODE_SETUID: u32 = 1 << 23;
const MODE_SETGID: u32 = 1 << 22;
const MODE_CHAR_DEVICE: u32 = 1 << 21;
const MODE_STICKY: u32 = 1 << 20;
const MODE_IRREGULAR: u32 = 1 << 19;
const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;

/// Unix permission bits (with setuid/setgid/sticky) of a Go file mode.
pub fn unix_perm(go: u32) -> u32 {
    let mut m = go & 0o777;
    if go & MODE_SETUID != 0 {
        m |= 0o4000;
    }
    if go & MODE_SETGID != 0 {
        m |= 0o2000;
    }
    if go & MODE_STICKY != 0 {
        m |= 0o1000;
    }
    m
}

/// Go's file mode for a unix `st_mode`.
pub fn go_mode(unix: u32) -> u32 {
    let mut m = unix & 0o777;
    if unix & 0o4000 != 0 {
        m |= MODE_SETUID;
    }
    if unix & 0o2000 != 0 {
        m |= MODE_SETGID;
    }
    if unix & 0o1000 != 0 {
        m |= MODE_STICKY;
    }
    m | match unix & libc::S_IFMT {
        libc::S_IFDIR => MODE_DIR,
        libc::S_IFLNK => MODE_SYMLINK,
        libc::S_IFIFO => MODE_NAMED_PIPE,
        libc::S_IFSOCK => MODE_SOCKET,
        libc::S_IFBLK => MODE_DEVICE,
        libc::S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        _ => 0,
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Failed(format!("{what}: {e}"))
}

/// A path the client sent, as a relative path with no `..` (anything else is refused).
fn safe_rel(p: &str) -> Result<PathBuf, BuildError> {
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(BuildError::BadRequest(format!(
                    "invalid path from the client: {p:?}"
                )))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(BuildError::BadRequest(format!(
            "invalid path from the client: {p:?}"
        )));
    }
    Ok(out)
}

/// Query-escapes a metadata value as fsutil does for non-ASCII strings.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Adds a multi-valued option as gRPC metadata, escaped (with `<key>-encoded: 1`) when some
/// value is not plain ASCII.
fn add_opt(md: &mut tonic::metadata::MetadataMap, key: &'static str, values: &[String]) {
    let encode = values
        .iter()
        .any(|v| v.bytes().any(|b| !(0x20..0x7f).contains(&b)));
    for v in values {
        let v = if encode { query_escape(v) } else { v.clone() };
        if let Ok(v) = v.parse() {
            md.append(key, v);
        }
    }
    if encode {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(format!("{key}-encoded").as_bytes()),
            "1".parse(),
        ) {
            md.append(k, v);
        }
    }
}

/// What to ask the client for.
#[derive(Default, Clone, Debug)]
pub struct SyncRequest {
    /// The local's name: `context`, `dockerfile`, or a named context's.
    pub name: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub follow_paths: Vec<String>,
}

/// What a transfer did.
#[derive(Default, Debug, Clone, Copy)]
pub struct SyncStats {
    pub entries: u64,
    /// Bytes of files asked for and received.
    pub bytes: u64,
}

/// A file being received.
struct Pending {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    stat: Stat,
}

/// Receiving state; the file system work is blocking, done in place (small writes).
struct Receiver<'a> {
    dest: &'a Path,
    /// Entries by index, as listed.
    listed: Vec<(PathBuf, Stat)>,
    seen: BTreeSet<PathBuf>,
    /// Directories checked to be real directories (never written through a symlink).
    dirs_ok: BTreeSet<PathBuf>,
    pending: HashMap<u32, Pending>,
    requested: u64,
    stats: SyncStats,
}

fn set_times(p: &Path, nanos: i64, follow: bool) {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return;
    };
    let ts = libc::timespec {
        tv_sec: nanos.div_euclid(1_000_000_000),
        tv_nsec: nanos.rem_euclid(1_000_000_000),
    };
    let times = [ts, ts];
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: a NUL-terminated path and two timespecs that live across the call.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) };
}

fn mtime_nanos(m: &std::fs::Metadata) -> i64 {
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

impl Receiver<'_> {
    /// Makes sure every parent of `rel` is a real directory inside `dest`.
    fn check_parents(&mut self, rel: &Path) -> Result<(), BuildError> {
        let mut cur = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            if self.dirs_ok.contains(&cur) {
                continue;
            }
            let full = self.dest.join(&cur);
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(BuildError::BadRequest(format!(
                        "invalid transfer: {} is not a directory",
                        cur.display()
                    )))
                }
            }
            self.dirs_ok.insert(cur.clone());
        }
        Ok(())
    }

    fn remove_existing(&self, full: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(full) {
            if m.is_dir() {
                let _ = std::fs::remove_dir_all(full);
            } else {
                let _ = std::fs::remove_file(full);
            }
        }
    }

    /// Handles one listed entry; returns whether its data is wanted.
    fn entry(&mut self, stat: &Stat) -> Result<bool, BuildError> {
        let rel = safe_rel(&stat.path)?;
        self.check_parents(&rel)?;
        let full = self.dest.join(&rel);
        self.stats.entries += 1;
        // Each path once: a directory listed again as a symlink could redirect later writes.
        if !self.seen.insert(rel.clone()) {
            return Err(BuildError::BadRequest(format!(
                "invalid transfer: {} listed twice",
                rel.display()
            )));
        }
        let kind = stat.mode & MODE_TYPE;
        let existing = std::fs::symlink_metadata(&full).ok();
        if kind == MODE_DIR {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                self.remove_existing(&full);
                std::fs::create_dir(&full).map_err(|e| failed("receiving files", e))?;
            }
            self.dirs_ok.insert(rel.clone());
            return Ok(false);
        }
        if kind == MODE_SYMLINK {
            let same = existing
                .as_ref()
                .is_some_and(|m| m.file_type().is_symlink())
                && std::fs::read_link(&full).is_ok_and(|t| t.as_os_str() == stat.linkname.as_str());
            if !same {
                self.remove_existing(&full);
                std::os::unix::fs::symlink(&stat.linkname, &full)
                    .map_err(|e| failed("receiving files", e))?;
            }
            let _ = std::os::unix::fs::lchown(&full, Some(stat.uid), Some(stat.gid));
            set_times(&full, stat.mod_time, false);
            return Ok(false);
        }
        if kind != 0 {
            // Devices, pipes, sockets: nothing a build context needs.
            return Ok(false);
        }
        if !stat.linkname.is_empty() {
            // A hard link to an entry listed earlier: made once the data is in.
            return Ok(false);
        }
        let unchanged = existing.as_ref().is_some_and(|m| {
            m.is_file()
                && m.len() as i64 == stat.size
                && mtime_nanos(m) == stat.mod_time
                && m.mode() & 0o7777 == unix_perm(stat.mode)
                && m.uid() == stat.uid
                && m.gid() == stat.gid
        });
        Ok(!unchanged)
    }

    fn open_pending(&mut self, id: u32) -> Result<(), BuildError> {
        let (rel, stat) = self.listed[id as usize].clone();
        let path = self.dest.join(&rel);
        let tmp = path.with_file_name(format!(
            ".{}.berth-recv",
            rel.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| failed("receiving files", e))?;
        self.pending.insert(
            id,
            Pending {
                path,
                tmp,
                file,
                stat,
            },
        );
        Ok(())
    }

    fn data(&mut self, id: u32, data: &[u8]) -> Result<bool, BuildError> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(BuildError::BadRequest(format!(
                "invalid transfer: data for file {id} not asked for"
            )));
        };
        if !data.is_empty() {
            p.file
                .write_all(data)
                .map_err(|e| failed("receiving files", e))?;
            self.stats.bytes += data.len() as u64;
            return Ok(false);
        }
        let Some(p) = self.pending.remove(&id) else {
            return Ok(false);
        };
        drop(p.file);
        let _ = std::fs::set_permissions(
            &p.tmp,
            std::fs::Permissions::from_mode(unix_perm(p.stat.mode)),
        );
        let _ = std::os::unix::fs::lchown(&p.tmp, Some(p.stat.uid), Some(p.stat.gid));
        set_times(&p.tmp, p.stat.mod_time, true);
        self.remove_existing(&p.path);
        std::fs::rename(&p.tmp, &p.path).map_err(|e| failed("receiving files", e))?;
        Ok(true)
    }

    /// After the transfer: hard links, stale entries removed, directory metadata.
    fn finish(&mut self) -> Result<(), BuildError> {
        let links: Vec<(PathBuf, String)> = self
            .listed
            .iter()
            .filter(|(_, s)| s.mode & MODE_TYPE == 0 && !s.linkname.is_empty())
            .map(|(r, s)| (r.clone(), s.linkname.clone()))
            .collect();
        for (rel, linkname) in links {
            // The target must be a regular file reached through real directories: a link
            // through a symlink could reach outside the destination.
            let target = safe_rel(&linkname)?;
            self.check_parents(&target)?;
            let src = self.dest.join(&target);
            if !std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                return Err(BuildError::BadRequest(format!(
                    "invalid transfer: hard link {} to {linkname}, not a file listed before",
                    rel.display()
                )));
            }
            let full = self.dest.join(&rel);
            self.remove_existing(&full);
            if std::fs::hard_link(&src, &full).is_err() {
                std::fs::copy(&src, &full).map_err(|e| failed("receiving files", e))?;
            }
        }
        remove_unseen(self.dest, Path::new(""), &self.seen);
        // Deepest first, so setting a parent's mtime comes after its children changed it.
        let mut dirs: Vec<&(PathBuf, Stat)> = self
            .listed
            .iter()
            .filter(|(_, s)| s.mode & MODE_TYPE == MODE_DIR)
            .collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, stat) in dirs {
            let full = self.dest.join(rel);
            let _ = std::fs::set_permissions(
                &full,
                std::fs::Permissions::from_mode(unix_perm(stat.mode)),
            );
            let _ = std::os::unix::fs::lchown(&full, Some(stat.uid), Some(stat.gid));
            set_times(&full, stat.mod_time, false);
        }
        Ok(())
    }
}

/// Removes what the client did not list (a context received before may have more).
fn remove_unseen(root: &Path, rel: &Path, seen: &BTreeSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in rd.flatten() {
        let r = rel.join(e.file_name());
        let full = root.join(&r);
        if !seen.contains(&r) {
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(&full);
                }
                _ => {
                    let _ = std::fs::remove_file(&full);
                }
            }
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_unseen(root, &r, seen);
        }
    }
}

/// Receives the client's local `req.name` into `dest` (updating what is there).
pub async fn receive(
    session: &Session,
    req: &SyncRequest,
    dest: &Path,
) -> Result<SyncStats, BuildError> {
    if !session.supports("/moby.filesync.v1.FileSync/DiffCopy") {
        return Err(BuildError::BadRequest(
            "the client's session does not serve files (no FileSync service)".into(),
        ));
    }
    std::fs::create_dir_all(dest).map_err(|e| failed("receiving files", e))?;
    let (tx, rx) = mpsc::channel::<Packet>(64);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    let md = request.metadata_mut();
    add_opt(md, "dir-name", std::slice::from_ref(&req.name));
    if !req.include.is_empty() {
        add_opt(md, "include-patterns", &req.include);
    }
    if !req.exclude.is_empty() {
        add_opt(md, "exclude-patterns", &req.exclude);
    }
    if !req.follow_paths.is_empty() {
        add_opt(md, "followpaths", &req.follow_paths);
    }
    let mut client = FileSyncClient::with_origin(session.channel.clone(), session.uri())
        .max_decoding_message_size(64 << 20);
    let resp = client
        .diff_copy(request)
        .await
        .map_err(|s| transfer_error(&req.name, s))?;
    let mut inbound = resp.into_inner();
    let mut r = Receiver {
        dest,
        listed: Vec::new(),
        seen: BTreeSet::new(),
        dirs_ok: BTreeSet::new(),
        pending: HashMap::new(),
        requested: 0,
        stats: SyncStats::default(),
    };
    let mut listing_done = false;
    let mut fin_sent = false;
    let send = |p: Packet| {
        let tx = tx.clone();
        async move { tx.send(p).await.is_ok() }
    };
    loop {
        let p = match inbound.message().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(s) => return Err(transfer_error(&req.name, s)),
        };
        match PacketType::try_from(p.r#type).unwrap_or(PacketType::PacketErr) {
            PacketType::PacketStat => match p.stat {
                Some(stat) => {
                    let id = r.listed.len() as u32;
                    let rel = safe_rel(&stat.path)?;
                    r.listed.push((rel, stat.clone()));
                    if r.entry(&stat)? {
                        r.open_pending(id)?;
                        r.requested += 1;
                        send(Packet {
                            r#type: PacketType::PacketReq as i32,
                            id,
                            ..Default::default()
                        })
                        .await;
                    }
                }
                None => listing_done = true,
            },
            PacketType::PacketData => {
                if r.data(p.id, &p.data)? {
                    r.requested -= 1;
                }
            }
            PacketType::PacketFin => break,
            PacketType::PacketErr => {
                return Err(BuildError::BadRequest(format!(
                    "error from the client sending {}: {}",
                    req.name,
                    String::from_utf8_lossy(&p.data)
                )))
            }
            PacketType::PacketReq => {}
        }
        if listing_done && r.requested == 0 && !fin_sent {
            fin_sent = true;
            send(Packet {
                r#type: PacketType::PacketFin as i32,
                ..Default::default()
            })
            .await;
        }
    }
    drop(tx);
    if !listing_done || r.requested != 0 {
        return Err(BuildError::Failed(format!(
            "receiving {}: the transfer ended early",
            req.name
        )));
    }
    r.finish()?;
    Ok(r.stats)
}

fn transfer_error(name: &str, s: tonic::Status) -> BuildError {
    if s.code() == tonic::Code::NotFound {
        BuildError::BadRequest(format!(
            "no access allowed to dir {name:?}: {}",
            s.message()
        ))
    } else {
        BuildError::Failed(format!("transferring {name}: {}", s.message()))
    }
}

/// Receives a context tar the client uploads (`docker build - < context.tar`, the Upload
/// service; `path` is its URL's path) and extracts it into `dest` (safely: nothing outside,
/// nothing through a symlink). Returns the bytes received.
pub async fn receive_upload(session: &Session, path: &str, dest: &Path) -> Result<u64, BuildError> {
    use crate::pb::moby::upload::v1::{upload_client::UploadClient, BytesMessage as UpBytes};
    if !session.supports("/moby.upload.v1.Upload/Pull") {
        return Err(BuildError::BadRequest(
            "the client's session has no context upload (Upload service)".into(),
        ));
    }
    let (_tx, rx) = mpsc::channel::<UpBytes>(1);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(v) = path.parse() {
        request.metadata_mut().insert("urlpath", v);
    }
    let mut client = UploadClient::with_origin(session.channel.clone(), session.uri())
        .max_decoding_message_size(64 << 20);
    let mut inbound = client
        .pull(request)
        .await
        .map_err(|s| failed("receiving the context", s.message()))?
        .into_inner();
    let tmp = dest.with_extension("tar");
    let mut f = std::fs::File::create(&tmp).map_err(|e| failed("receiving the context", e))?;
    let mut n = 0u64;
    loop {
        match inbound.message().await {
            Ok(Some(m)) => {
                n += m.data.len() as u64;
                f.write_all(&m.data)
                    .map_err(|e| failed("receiving the context", e))?;
            }
            Ok(None) => break,
            Err(s) => return Err(failed("receiving the context", s.message())),
        }
    }
    drop(f);
    let dir = dest.to_path_buf();
    let t = tmp.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&t).map_err(|e| failed("reading the context", e))?;
        berth_build::context::extract(&mut file, &dir).map_err(BuildError::BadRequest)
    })
    .await
    .map_err(|e| failed("extracting the context", e))?;
    let _ = std::fs::remove_file(&tmp);
    r.map(|()| n)
}

/// Every entry of a tree in fsutil's walk order (parents first, siblings by name), as
/// paths relative to `root`.
fn walk_sorted(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn rec(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            let r = rel.join(&n);
            out.push(r.clone());
            if std::fs::symlink_metadata(root.join(&r)).is_ok_and(|m| m.is_dir()) {
                rec(root, &r, out);
            }
        }
    }
    rec(root, Path::new(""), &mut out);
    out
}

fn stat_of(root: &Path, rel: &Path) -> Option<Stat> {
    let full = root.join(rel);
    let m = std::fs::symlink_metadata(&full).ok()?;
    let mut st = Stat {
        path: rel.to_string_lossy().into_owned(),
        mode: go_mode(m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        mod_time: mtime_nanos(&m),
        ..Default::default()
    };
    if m.file_type().is_symlink() {
        st.linkname = std::fs::read_link(&full)
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        st.size = st.linkname.len() as i64;
    } else if m.is_file() {
        st.size = m.len() as i64;
    } else if !m.is_dir() {
        let rdev = m.rdev();
        st.devmajor = libc::major(rdev) as i64;
        st.devminor = libc::minor(rdev) as i64;
    }
    Some(st)
}

/// The client's FileSend method, which both exporters stream to; an error when its session
/// has none.
fn file_send_method(session: &Session) -> Result<&'static str, BuildError> {
    let method = "/moby.filesync.v1.FileSend/DiffCopy";
    if !session.supports(method) {
        return Err(BuildError::BadRequest(
            "the client does not accept files (no FileSend service in its session)".into(),
        ));
    }
    Ok(method)
}

/// A client ready to call the session's FileSend, and the request streaming `rx` to exporter
/// `exporter_id`.
async fn exporter_call<M>(
    session: &Session,
    exporter_id: usize,
    rx: mpsc::Receiver<M>,
    what: &str,
) -> Result<
    (
        tonic::client::Grpc<crate::transport::H2Channel>,
        tonic::Request<ReceiverStream<M>>,
    ),
    BuildError,
> {
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(v) = exporter_id.to_string().parse() {
        request
            .metadata_mut()
            .insert("buildkit-attachable-exporter-id", v);
    }
    let mut grpc = tonic::client::Grpc::with_origin(session.channel.clone(), session.uri());
    grpc.ready().await.map_err(|e| failed(what, e))?;
    Ok((grpc, request))
}

/// Sends `root` to the client's local exporter `exporter_id` (the FileSend service, fsutil
/// packets on the wire).
pub async fn send_dir(
    session: &Session,
    exporter_id: usize,
    root: PathBuf,
) -> Result<(), BuildError> {
    let method = file_send_method(session)?;
    let entries = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            walk_sorted(&root)
                .into_iter()
                .filter_map(|r| stat_of(&root, &r).map(|s| (r, s)))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| failed("walking result", e))?
    };
    let (tx, rx) = mpsc::channel::<Packet>(64);
    let (mut grpc, request) = exporter_call(session, exporter_id, rx, "exporting files").await?;
    let path = http::uri::PathAndQuery::from_static(method);
    let codec: tonic::codec::ProstCodec<Packet, Packet> = tonic::codec::ProstCodec::default();
    // The listing goes out while the client asks for files.
    let files: BTreeMap<u32, PathBuf> = entries
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.mode & MODE_TYPE == 0)
        .map(|(i, (r, _))| (i as u32, root.join(r)))
        .collect();
    let lister = {
        let tx = tx.clone();
        tokio::spawn(async move {
            for (_, s) in entries {
                if tx
                    .send(Packet {
                        r#type: PacketType::PacketStat as i32,
                        stat: Some(s),
                        ..Default::default()
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx
                .send(Packet {
                    r#type: PacketType::PacketStat as i32,
                    ..Default::default()
                })
                .await;
        })
    };
    let resp = grpc
        .streaming(request, path, codec)
        .await
        .map_err(|s| failed("exporting files", s.message()))?;
    let mut inbound = resp.into_inner();
    loop {
        let p = match inbound.message().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(s) => return Err(failed("exporting files", s.message())),
        };
        match PacketType::try_from(p.r#type).unwrap_or(PacketType::PacketErr) {
            PacketType::PacketReq => {
                let Some(f) = files.get(&p.id).cloned() else {
                    return Err(failed(
                        "exporting files",
                        format!("invalid file request {}", p.id),
                    ));
                };
                send_file(&tx, p.id, f).await?;
            }
            PacketType::PacketFin => {
                let _ = tx
                    .send(Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Default::default()
                    })
                    .await;
                break;
            }
            PacketType::PacketErr => {
                return Err(failed("exporting files", String::from_utf8_lossy(&p.data)))
            }
            _ => {}
        }
    }
    lister.abort();
    drop(tx);
    // The client closes its side once it has everything.
    while let Ok(Some(_)) = inbound.message().await {}
    Ok(())
}

async fn send_file(tx: &mpsc::Sender<Packet>, id: u32, path: PathBuf) -> Result<(), BuildError> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| failed("exporting files", e))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| failed("exporting files", e))?;
        let data = buf[..n].to_vec();
        let end = n == 0;
        if tx
            .send(Packet {
                r#type: PacketType::PacketData as i32,
                id,
                data,
                ..Default::default()
            })
            .await
            .is_err()
            || end
        {
            return Ok(());
        }
    }
}

/// Sends a tar of `root` to the client's tar exporter `exporter_id` (FileSend, BytesMessage
/// chunks).
pub async fn send_tar(
    session: &Session,
    exporter_id: usize,
    root: PathBuf,
) -> Result<(), BuildError> {
    let method = file_send_method(session)?;
    let (tx, rx) = mpsc::channel::<BytesMessage>(16);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), BuildError> {
        struct ChanWriter(mpsc::Sender<BytesMessage>, Vec<u8>);
        impl Write for ChanWriter {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.1.extend_from_slice(b);
                if self.1.len() >= 1 << 20 {
                    self.flush()?;
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                if self.1.is_empty() {
                    return Ok(());
                }
                let data = std::mem::take(&mut self.1);
                self.0
                    .blocking_send(BytesMessage { data })
                    .map_err(|_| std::io::Error::other("client went away"))
            }
        }
        let mut w = ChanWriter(tx, Vec::new());
        {
            let mut tb = tar::Builder::new(&mut w);
            tb.follow_symlinks(false);
            for rel in walk_sorted(&root) {
                let full = root.join(&rel);
                let Ok(m) = std::fs::symlink_metadata(&full) else {
                    continue;
                };
                let name = if m.is_dir() {
                    format!("{}/", rel.display())
                } else {
                    rel.display().to_string()
                };
                // Permission bits only in the mode field, as Go's tar writer puts them.
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
                h.set_mode(m.mode() & 0o7777);
                let r = if m.is_dir() {
                    h.set_size(0);
                    tb.append_data(&mut h, &name, std::io::empty())
                } else if m.file_type().is_symlink() {
                    h.set_size(0);
                    let target =
                        std::fs::read_link(&full).map_err(|e| failed("exporting tar", e))?;
                    tb.append_link(&mut h, &rel, target)
                } else if m.is_file() {
                    let f = std::fs::File::open(&full).map_err(|e| failed("exporting tar", e))?;
                    tb.append_data(&mut h, &rel, f)
                } else {
                    // Devices, fifos: their header says all.
                    tb.append_data(&mut h, &rel, std::io::empty())
                };
                r.map_err(|e| failed("exporting tar", e))?;
            }
            tb.finish().map_err(|e| failed("exporting tar", e))?;
        }
        w.flush().map_err(|e| failed("exporting tar", e))
    });
    let (mut grpc, request) = exporter_call(session, exporter_id, rx, "exporting tar").await?;
    let codec: tonic::codec::ProstCodec<BytesMessage, BytesMessage> =
        tonic::codec::ProstCodec::default();
    let resp = grpc
        .streaming(request, http::uri::PathAndQuery::from_static(method), codec)
        .await
        .map_err(|s| failed("exporting tar", s.message()))?;
    writer.await.map_err(|e| failed("exporting tar", e))??;
    let mut inbound = resp.into_inner();
    while let Ok(Some(_)) = inbound.message().await {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_round_trip() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), MODE_DIR | 0o755);
        assert_eq!(go_mode(libc::S_IFREG | 0o4755), MODE_SETUID | 0o755);
        assert_eq!(unix_perm(MODE_SETUID | MODE_STICKY | 0o700), 0o5700);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777) & MODE_TYPE, MODE_SYMLINK);
    }

    #[test]
    fn client_paths_stay_inside() {
        assert!(safe_rel("a/b").is_ok());
        assert!(safe_rel("../x").is_err());
        assert!(safe_rel("/etc/passwd").is_err());
        assert!(safe_rel("a/../../x").is_err());
        assert!(safe_rel("").is_err());
    }

    #[test]
    fn stale_entries_go() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(t.path().join("keep/sub")).expect("mk");
        std::fs::write(t.path().join("keep/sub/f"), "x").expect("w");
        std::fs::write(t.path().join("keep/old"), "x").expect("w");
        std::fs::create_dir_all(t.path().join("gone/deep")).expect("mk");
        let seen: BTreeSet<PathBuf> = ["keep", "keep/sub", "keep/sub/f"]
            .iter()
            .map(PathBuf::from)
            .collect();
        remove_unseen(t.path(), Path::new(""), &seen);
        assert!(t.path().join("keep/sub/f").exists());
        assert!(!t.path().join("keep/old").exists());
        assert!(!t.path().join("gone").exists());
    }

    #[test]
    fn walk_order_is_fsutils() {
        let t = tempfile::tempdir().expect("tmp");
        for p in ["b/x", "a.txt", "a/y", "B"] {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mk");
            std::fs::write(f, "").expect("w");
        }
        let w: Vec<String> = walk_sorted(t.path())
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(w, ["B", "a", "a/y", "a.txt", "b", "b/x"]);
    }
}
