//! Offline test images, written as `docker save` tarballs.
//!
//! Everything here is deterministic: fixed mtimes, uid/gid 0, entries sorted by path, JSON with
//! sorted keys. The same inputs give the same bytes, hence the same image ids on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Error;

/// The mtime of every tar entry we write (2024-01-01T00:00:00Z).
pub const MTIME: u64 = 1_704_067_200;
/// The `created` time of every test image.
pub const CREATED: &str = "2024-01-01T00:00:00Z";
/// `PATH` of the test images (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One entry of a layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        uid: u64,
        gid: u64,
        data: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    Hardlink {
        target: String,
    },
}

/// A filesystem layer: a set of entries keyed by path (no leading `/`), written in sorted order.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

fn norm(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl Layer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (parents are added automatically with mode 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let p = norm(path);
        self.parents(&p);
        self.entries.insert(p, Entry::Dir { mode });
        self
    }

    /// Adds a regular file owned by root.
    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> &mut Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    /// Adds a regular file with an owner.
    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let p = norm(path);
        self.parents(&p);
        let data = data.into();
        self.entries.insert(
            p,
            Entry::File {
                mode,
                uid,
                gid,
                data,
            },
        );
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let p = norm(path);
        self.parents(&p);
        self.entries.insert(
            p,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        self
    }

    /// Adds a hard link; `target` is a path inside the layer (no leading `/`).
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let p = norm(path);
        self.parents(&p);
        self.entries.insert(
            p,
            Entry::Hardlink {
                target: norm(target),
            },
        );
        self
    }

    /// Deletes `path` of a lower layer (an AUFS-style `.wh.<name>` whiteout).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let p = norm(path);
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n.to_string()),
            None => (String::new(), p.clone()),
        };
        self.file(&format!("{dir}.wh.{name}"), 0o644, Vec::new())
    }

    /// Hides every lower-layer entry of directory `path` (`.wh..wh..opq`).
    pub fn opaque(&mut self, path: &str) -> &mut Self {
        let p = norm(path);
        self.dir(&p, 0o755);
        self.file(&format!("{p}/.wh..wh..opq"), 0o644, Vec::new())
    }

    fn parents(&mut self, p: &str) {
        let mut acc = String::new();
        let comps: Vec<&str> = p.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            self.entries
                .entry(acc.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// The layer as an uncompressed tar.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut raw = RawTar::new();
        for (path, e) in &self.entries {
            match e {
                Entry::Dir { mode } => raw.dir(&format!("{path}/"), *mode),
                Entry::File {
                    mode,
                    uid,
                    gid,
                    data,
                } => raw.file_owned(path, *mode, *uid, *gid, data),
                Entry::Symlink { target } => raw.symlink(path, target),
                // A hard link's header carries its target's mode and owner, as tar and
                // docker write them (unpackers such as containerd's apply it to the inode).
                Entry::Hardlink { target } => match self.entries.get(target) {
                    Some(Entry::File { mode, uid, gid, .. }) => {
                        raw.hardlink_owned(path, target, *mode, *uid, *gid)
                    }
                    _ => raw.hardlink(path, target),
                },
            };
        }
        raw.finish()
    }
}

/// A tar writer that writes exactly the names it is given — including `..`, absolute paths and
/// names that repeat — for building malicious archives. Names and link targets must fit the 100
/// bytes of a ustar header (longer ones go through the `tar` crate's GNU long-name extension).
pub struct RawTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        RawTar { b }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn put(
        &mut self,
        mut h: tar::Header,
        name: &str,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let fits = name.len() <= 100 && link.is_none_or(|l| l.len() <= 100);
        if fits {
            {
                let g = h.as_old_mut();
                g.name = [0; 100];
                g.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    g.linkname = [0; 100];
                    g.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
            }
            h.set_cksum();
            // Writing into a Vec cannot fail.
            let _ = self.b.append(&h, data);
        } else if let Some(l) = link {
            let _ = self.b.append_link(&mut h, name, l);
        } else {
            let _ = self.b.append_data(&mut h, name, data);
        }
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, mode, 0);
        self.put(h, name, None, &[])
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.file_owned(name, mode, 0, 0, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.put(h, name, None, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.put(h, name, Some(target), &[])
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.put(h, name, Some(target), &[])
    }

    /// A hard link whose header carries a mode and owner (its target's).
    pub fn hardlink_owned(
        &mut self,
        name: &str,
        target: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, mode, 0);
        h.set_uid(uid);
        h.set_gid(gid);
        self.put(h, name, Some(target), &[])
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap_or_default()
    }
}

/// Which `docker save` layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// Docker ≥ 25: OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) plus `manifest.json`.
    Oci,
    /// Docker < 25: `<config-hex>.json`, `<layer-id>/layer.tar`, `manifest.json`, `repositories`.
    Legacy,
}

/// An image: tags, the `config` section of its config, and its layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub repo_tags: Vec<String>,
    /// The container config (`Cmd`, `Env`, `Entrypoint`, `WorkingDir`, `Labels`…).
    pub config: Value,
    /// `(created_by, layer tar)` per layer, lowest first.
    pub layers: Vec<(String, Vec<u8>)>,
}

impl Image {
    pub fn new(tag: &str, config: Value) -> Self {
        Image {
            repo_tags: vec![tag.to_string()],
            config,
            layers: Vec::new(),
        }
    }

    pub fn layer(mut self, created_by: &str, layer: &Layer) -> Self {
        self.layers.push((created_by.to_string(), layer.to_tar()));
        self
    }

    pub fn raw_layer(mut self, created_by: &str, tar: Vec<u8>) -> Self {
        self.layers.push((created_by.to_string(), tar));
        self
    }

    /// The same image under other tags (same content, so the same id).
    pub fn retag(&self, tags: &[&str]) -> Self {
        let mut i = self.clone();
        i.repo_tags = tags.iter().map(|t| t.to_string()).collect();
        i
    }

    /// `sha256:<hex>` of each layer tar, lowest first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|(_, t)| sha256_digest(t)).collect()
    }

    /// The image config blob.
    pub fn config_json(&self) -> Vec<u8> {
        let history: Vec<Value> = self
            .layers
            .iter()
            .map(
                |(by, _)| json!({"created": CREATED, "created_by": by, "comment": "berth-testkit"}),
            )
            .collect();
        let v = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids()},
            "history": history,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// The image id, `sha256:<hex of the config blob>`.
    pub fn id(&self) -> String {
        sha256_digest(&self.config_json())
    }

    /// The OCI manifest blob.
    pub fn manifest_json(&self) -> Vec<u8> {
        let cfg = self.config_json();
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|(_, t)| {
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": sha256_digest(t), "size": t.len()})
            })
            .collect();
        let v = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256_digest(&cfg), "size": cfg.len()},
            "layers": layers,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// This image alone as a `docker save` tarball.
    pub fn save_tar(&self, format: SaveFormat) -> Vec<u8> {
        save_tar(&[self], format)
    }
}

/// `docker.io/library/busybox:latest` for `busybox:latest`, as containerd's annotation reads.
fn full_ref(tag: &str) -> String {
    let (name, t) = match tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
        _ => (tag.to_string(), "latest".to_string()),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}:{t}")
}

/// Several images in one `docker save` tarball.
pub fn save_tar(images: &[&Image], format: SaveFormat) -> Vec<u8> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest = Vec::new();
    match format {
        SaveFormat::Oci => {
            let mut index = Vec::new();
            for img in images {
                let cfg = img.config_json();
                let cfg_hex = sha256_hex(&cfg);
                files.insert(format!("blobs/sha256/{cfg_hex}"), cfg);
                let mut layer_paths = Vec::new();
                for (_, t) in &img.layers {
                    let p = format!("blobs/sha256/{}", sha256_hex(t));
                    layer_paths.push(p.clone());
                    files.insert(p, t.clone());
                }
                let m = img.manifest_json();
                let m_digest = sha256_digest(&m);
                let m_size = m.len();
                files.insert(format!("blobs/sha256/{}", sha256_hex(&m)), m);
                manifest.push(json!({
                    "Config": format!("blobs/sha256/{cfg_hex}"),
                    "RepoTags": img.repo_tags,
                    "Layers": layer_paths,
                }));
                if img.repo_tags.is_empty() {
                    index.push(
                        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "digest": m_digest, "size": m_size}),
                    );
                }
                for tag in &img.repo_tags {
                    let short = tag.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
                    index.push(json!({
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": m_digest, "size": m_size,
                        "annotations": {"io.containerd.image.name": full_ref(tag),
                                        "org.opencontainers.image.ref.name": short},
                    }));
                }
            }
            let idx = json!({"schemaVersion": 2,
                             "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": index});
            files.insert(
                "index.json".into(),
                serde_json::to_vec(&idx).unwrap_or_default(),
            );
            files.insert(
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            );
        }
        SaveFormat::Legacy => {
            let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for img in images {
                let cfg = img.config_json();
                let cfg_hex = sha256_hex(&cfg);
                files.insert(format!("{cfg_hex}.json"), cfg);
                let mut parent = String::new();
                let mut layer_paths = Vec::new();
                for (_, t) in &img.layers {
                    // v1 layer id: any deterministic digest of the chain.
                    let id = sha256_hex(format!("{parent} {}", sha256_digest(t)).as_bytes());
                    let mut v1 = json!({"id": id, "created": CREATED,
                                        "container_config": {"Cmd": null}, "os": "linux"});
                    if !parent.is_empty() {
                        v1["parent"] = json!(parent);
                    }
                    files.insert(format!("{id}/VERSION"), b"1.0".to_vec());
                    files.insert(
                        format!("{id}/json"),
                        serde_json::to_vec(&v1).unwrap_or_default(),
                    );
                    files.insert(format!("{id}/layer.tar"), t.clone());
                    layer_paths.push(format!("{id}/layer.tar"));
                    parent = id;
                }
                for tag in &img.repo_tags {
                    let (n, t) = tag.rsplit_once(':').unwrap_or((tag.as_str(), "latest"));
                    repos
                        .entry(n.to_string())
                        .or_default()
                        .insert(t.to_string(), parent.clone());
                }
                manifest.push(json!({
                    "Config": format!("{cfg_hex}.json"),
                    "RepoTags": img.repo_tags,
                    "Layers": layer_paths,
                }));
            }
            files.insert(
                "repositories".into(),
                serde_json::to_vec(&repos).unwrap_or_default(),
            );
        }
    }
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap_or_default(),
    );

    let mut raw = RawTar::new();
    let mut dirs_done = std::collections::BTreeSet::new();
    for (path, data) in &files {
        let mut acc = String::new();
        if let Some((dir, _)) = path.rsplit_once('/') {
            for c in dir.split('/') {
                acc.push_str(c);
                acc.push('/');
                if dirs_done.insert(acc.clone()) {
                    raw.dir(&acc, 0o755);
                }
            }
        }
        raw.file(path, 0o644, data);
    }
    raw.finish()
}

/// Lists the entry names of a tar (for checking what `save` wrote).
pub fn tar_entry_names(tar_bytes: &[u8]) -> Result<Vec<String>, Error> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in a
        .entries()
        .map_err(|e| Error::new(format!("read tar: {e}")))?
    {
        let e = e.map_err(|e| Error::new(format!("read tar entry: {e}")))?;
        out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
    }
    Ok(out)
}

/// Reads one file of a tar.
pub fn tar_read_file(tar_bytes: &[u8], name: &str) -> Result<Option<Vec<u8>>, Error> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar_bytes);
    for e in a
        .entries()
        .map_err(|e| Error::new(format!("read tar: {e}")))?
    {
        let mut e = e.map_err(|e| Error::new(format!("read tar entry: {e}")))?;
        if String::from_utf8_lossy(&e.path_bytes()).trim_start_matches("./") == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v)
                .map_err(|e| Error::new(format!("read {name}: {e}")))?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Where Debian's `busybox-static` puts busybox (overridable with `BERTH_TEST_BUSYBOX`).
pub fn busybox_path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("BERTH_TEST_BUSYBOX") {
        return Ok(PathBuf::from(p));
    }
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(Error::new(
        "busybox not found: apt-get install busybox-static",
    ))
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
";
const GROUP: &str = "root:x:0:
daemon:x:1:
nogroup:x:65534:
postgres:x:999:
";

/// The busybox root filesystem as a layer.
pub fn busybox_layer() -> Result<Layer, Error> {
    let bb = busybox_path()?;
    let bin = std::fs::read(&bb).map_err(|e| Error::new(format!("read {}: {e}", bb.display())))?;
    let out = Command::new(&bb)
        .arg("--list")
        .output()
        .map_err(|e| Error::new(format!("run {} --list: {e}", bb.display())))?;
    if !out.status.success() {
        return Err(Error::new(format!("{} --list failed", bb.display())));
    }
    let mut l = Layer::new();
    for d in [
        "bin", "dev", "etc", "proc", "sys", "usr", "usr/bin", "var", "var/opt", "home",
    ] {
        l.dir(d, 0o755);
    }
    l.dir("root", 0o700);
    l.dir("tmp", 0o1777);
    l.file("bin/busybox", 0o755, bin);
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let name = name.trim();
        if name.is_empty() || name == "busybox" || name.contains('/') {
            continue;
        }
        l.symlink(&format!("bin/{name}"), "busybox");
    }
    l.symlink("bin/sh", "busybox");
    l.file("etc/passwd", 0o644, PASSWD);
    l.file("etc/group", 0o644, GROUP);
    l.file("etc/hostname", 0o644, "");
    l.file("etc/hosts", 0o644, "");
    l.file("etc/resolv.conf", 0o644, "");
    Ok(l)
}

/// `busybox:latest`: Debian's static busybox, `Cmd ["sh"]`.
pub fn busybox_image() -> Result<Image, Error> {
    let l = busybox_layer()?;
    Ok(Image::new(
        "busybox:latest",
        json!({"Env": [DEFAULT_PATH], "Cmd": ["sh"]}),
    )
    .layer("/bin/sh -c #(nop) ADD busybox-static rootfs", &l))
}

/// `layered:latest`: busybox plus two layers; the top one deletes `/opt/old.txt` with a whiteout,
/// adds `/opt/new.txt`, and makes `/data` opaque (hiding `a.txt`, adding `b.txt`).
pub fn layered_image() -> Result<Image, Error> {
    let base = busybox_layer()?;
    let mut l1 = Layer::new();
    l1.file("opt/old.txt", 0o644, "old\n")
        .file("opt/keep.txt", 0o644, "keep\n")
        .file("data/a.txt", 0o644, "a\n")
        .file("etc/layer1", 0o644, "one\n");
    let mut l2 = Layer::new();
    l2.whiteout("opt/old.txt")
        .file("opt/new.txt", 0o644, "new\n")
        .opaque("data")
        .file("data/b.txt", 0o644, "b\n");
    Ok(Image::new(
        "layered:latest",
        json!({"Env": [DEFAULT_PATH], "Cmd": ["sh"], "Labels": {"berth.test": "layered"}}),
    )
    .layer("/bin/sh -c #(nop) ADD busybox-static rootfs", &base)
    .layer("/bin/sh -c echo layer one", &l1)
    .layer("/bin/sh -c rm /opt/old.txt && echo layer two", &l2))
}

/// The C source of the hello-world program.
pub const HELLO_C: &str = include_str!("../../../tests/fixtures/hello/hello.c");

/// Compiles the hello program (`musl-gcc -static -Os`, else `gcc -static -Os`) into `cache_dir`,
/// once: the file name carries a digest of the source.
pub fn hello_binary(cache_dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| Error::new(format!("mkdir {}: {e}", cache_dir.display())))?;
    let key = &sha256_hex(HELLO_C.as_bytes())[..16];
    let out = cache_dir.join(format!("hello-{key}"));
    if out.exists() {
        return Ok(out);
    }
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let src = cache_dir.join(format!("hello-{key}-{tag}.c"));
    let tmp = cache_dir.join(format!("hello-{key}-{tag}.tmp"));
    std::fs::write(&src, HELLO_C)
        .map_err(|e| Error::new(format!("write {}: {e}", src.display())))?;
    let mut errors = String::new();
    for cc in ["musl-gcc", "gcc"] {
        match Command::new(cc)
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
        {
            Ok(o) if o.status.success() => {
                let _ = std::fs::remove_file(&src);
                std::fs::rename(&tmp, &out)
                    .map_err(|e| Error::new(format!("rename {}: {e}", out.display())))?;
                return Ok(out);
            }
            Ok(o) => errors.push_str(&format!("{cc}: {}\n", String::from_utf8_lossy(&o.stderr))),
            Err(e) => errors.push_str(&format!("{cc}: {e}\n")),
        }
    }
    let _ = std::fs::remove_file(&src);
    Err(Error::new(format!(
        "cannot compile hello.c (apt-get install musl-tools):\n{errors}"
    )))
}

/// `hello-world:latest`: one static binary `/hello`.
pub fn hello_image(cache_dir: &Path) -> Result<Image, Error> {
    let bin = hello_binary(cache_dir)?;
    let data =
        std::fs::read(&bin).map_err(|e| Error::new(format!("read {}: {e}", bin.display())))?;
    let mut l = Layer::new();
    l.file("hello", 0o755, data);
    Ok(Image::new(
        "hello-world:latest",
        json!({"Env": [DEFAULT_PATH], "Cmd": ["/hello"]}),
    )
    .layer("/bin/sh -c #(nop) COPY file:hello in /", &l))
}

/// Writes bytes to `dir/name` atomically (temp file + rename), unless it already exists.
pub fn write_cached(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(format!("mkdir {}: {e}", dir.display())))?;
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    let data = make()?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::new(format!("temp file: {e}")))?;
    std::io::Write::write_all(&mut tmp, &data).map_err(|e| Error::new(format!("write: {e}")))?;
    tmp.persist(&path)
        .map_err(|e| Error::new(format!("persist {}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Layer {
        let mut l = Layer::new();
        l.file("etc/a", 0o644, "a")
            .symlink("bin/sh", "busybox")
            .whiteout("opt/x")
            .opaque("d");
        l
    }

    #[test]
    fn layer_is_deterministic_and_sorted_with_parents() {
        let t1 = layer().to_tar();
        assert_eq!(t1, layer().to_tar());
        let names = tar_entry_names(&t1).expect("tar");
        assert_eq!(
            names,
            [
                "bin/",
                "bin/sh",
                "d/",
                "d/.wh..wh..opq",
                "etc/",
                "etc/a",
                "opt/",
                "opt/.wh.x"
            ]
        );
    }

    #[test]
    fn raw_tar_keeps_hostile_names() {
        let mut r = RawTar::new();
        r.file("../escape", 0o644, b"x")
            .file("/abs", 0o644, b"y")
            .symlink("s", "/etc")
            .hardlink("h", "../../x");
        let t = r.finish();
        assert_eq!(
            tar_entry_names(&t).expect("tar"),
            ["../escape", "/abs", "s", "h"]
        );
    }

    fn img() -> Image {
        let mut l = Layer::new();
        l.file("hello", 0o755, "x");
        Image::new("busybox:latest", json!({"Cmd": ["sh"]})).layer("add", &l)
    }

    #[test]
    fn oci_save_layout() {
        let i = img();
        let t = i.save_tar(SaveFormat::Oci);
        let names = tar_entry_names(&t).expect("tar");
        for n in ["index.json", "manifest.json", "oci-layout"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        let cfg_path = format!("blobs/sha256/{}", &i.id()[7..]);
        assert!(names.contains(&cfg_path));
        let m: Value = serde_json::from_slice(
            &tar_read_file(&t, "manifest.json")
                .expect("read")
                .expect("manifest"),
        )
        .expect("json");
        assert_eq!(m[0]["Config"], json!(cfg_path));
        assert_eq!(m[0]["RepoTags"], json!(["busybox:latest"]));
        let idx: Value = serde_json::from_slice(
            &tar_read_file(&t, "index.json")
                .expect("read")
                .expect("index"),
        )
        .expect("json");
        assert_eq!(
            idx["manifests"][0]["annotations"]["io.containerd.image.name"],
            "docker.io/library/busybox:latest"
        );
        // the layer blob is the layer tar itself, named by its digest
        let diff = &i.diff_ids()[0][7..];
        assert!(tar_read_file(&t, &format!("blobs/sha256/{diff}"))
            .expect("read")
            .is_some());
        assert_eq!(t, i.save_tar(SaveFormat::Oci));
    }

    #[test]
    fn legacy_save_layout() {
        let i = img();
        let t = i.save_tar(SaveFormat::Legacy);
        let names = tar_entry_names(&t).expect("tar");
        assert!(names.contains(&format!("{}.json", &i.id()[7..])));
        assert!(names.contains(&"repositories".to_string()));
        assert!(!names.contains(&"index.json".to_string()));
        assert!(names.iter().any(|n| n.ends_with("/layer.tar")));
    }

    #[test]
    fn full_refs() {
        assert_eq!(
            full_ref("busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_ref("me/app:1"), "docker.io/me/app:1");
        assert_eq!(full_ref("localhost:5000/app:2"), "localhost:5000/app:2");
        assert_eq!(full_ref("localhost:5000/app"), "localhost:5000/app:latest");
    }
}
