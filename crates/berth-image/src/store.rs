//! The image store: image records, the tag/digest index, lookups, tagging and removal.

use crate::blobs::BlobStore;
use crate::config::ImageConfig;
use crate::error::{ImageError, IoContext};
use crate::fsutil::{atomic_write, chain_ids, digest_hex, remove_all};
use crate::layers::{LayerInfo, LayerStore};
use crate::reference::{is_lower_hex, Reference};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

#[derive(Clone, Debug, Serialize)]
pub struct Image {
    /// `sha256:<hex>` of the config blob bytes.
    pub id: String,
    /// Familiar: `busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `busybox@sha256:...`
    pub repo_digests: Vec<String>,
    pub config: ImageConfig,
    /// Sum of the layers' content sizes.
    pub size: u64,
    pub created: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

/// One row of `GET /images/{name}/history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryItem {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "CreatedBy")]
    pub created_by: String,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "Comment")]
    pub comment: String,
}

/// `<root>/images/<hex>.json`: what the store knows about an image beyond its config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub id: String,
    pub layers: Vec<LayerInfo>,
}

#[derive(Default, Serialize, Deserialize)]
struct RepositoriesFile {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Full reference (`docker.io/library/busybox:latest`, `...@sha256:..`) -> image id.
    pub refs: BTreeMap<String, String>,
    pub images: BTreeMap<String, ImageRecord>,
    configs: HashMap<String, Arc<ImageConfig>>,
}

pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) blobs: BlobStore,
    pub(crate) layers: LayerStore,
    state: Mutex<State>,
    /// Writers (loads, imports, snapshot creation) hold it shared; removals that delete layers
    /// hold it exclusively, so a layer is never deleted while something is about to use it.
    pub(crate) gc: RwLock<()>,
    /// Layers added (or found present) for an image not yet recorded: chain id -> diff id.
    /// Removals leave them alone, so an `rmi` of another image sharing a layer cannot delete
    /// it between a pull's (or build's) add_layer and its create_image. A failed pull's layers
    /// stay pinned until the daemon restarts, so a retry finds them.
    pinned: Mutex<HashMap<String, String>>,
}

pub(crate) fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// How a user string resolved to an image.
struct Resolved {
    id: String,
    /// Set when the string was a reference found in the index (not an id or id prefix).
    reference: Option<Reference>,
}

impl ImageStore {
    /// Opens (creating if absent) the store at `root` = `<data-root>/image`.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        // Absolute, because mounts are made from another working directory.
        let root = &std::path::absolute(root).ctx("resolve", root)?;
        fs::create_dir_all(root).ctx("create", root)?;
        let blobs = BlobStore::open(root)?;
        let layers = LayerStore::open(root)?;
        layers.clean_temps();
        for d in ["images", "snapshots", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("create", &p)?;
        }
        // Staging areas of loads interrupted by a crash.
        let tmp = root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = remove_all(&e.path());
            }
        }
        let mut state = State::default();
        let imgdir = root.join("images");
        for e in fs::read_dir(&imgdir).ctx("read", &imgdir)? {
            let p = e.ctx("read", &imgdir)?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let bytes = fs::read(&p).ctx("read", &p)?;
            match serde_json::from_slice::<ImageRecord>(&bytes) {
                Ok(r) if blobs.exists(&r.id) => {
                    state.images.insert(r.id.clone(), r);
                }
                Ok(_) | Err(_) => tracing::warn!("ignoring broken image record {}", p.display()),
            }
        }
        let repos = root.join("repositories.json");
        match fs::read(&repos) {
            Ok(b) => {
                let f: RepositoriesFile = serde_json::from_slice(&b)
                    .map_err(|e| ImageError::json("repositories.json", e))?;
                for (_, m) in f.repositories {
                    for (r, id) in m {
                        if state.images.contains_key(&id) {
                            state.refs.insert(r, id);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io_path("read", &repos, e)),
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            blobs,
            layers,
            state: Mutex::new(state),
            gc: RwLock::new(()),
            pinned: Mutex::new(HashMap::new()),
        };
        store.collect_orphans();
        Ok(store)
    }

    /// Deletes layers and blobs that no image or snapshot names: leftovers of loads that failed
    /// or of a crash. Only at open, when nothing can be half-way through creating an image.
    fn collect_orphans(&self) {
        let st = self.lock();
        let mut chains = BTreeSet::new();
        let mut blobs = BTreeSet::new();
        for r in st.images.values() {
            blobs.insert(r.id.clone());
            for l in &r.layers {
                chains.insert(l.chain_id.clone());
                blobs.insert(l.diff_id.clone());
            }
        }
        if let Ok(snaps) = self.snapshot_records() {
            for s in snaps {
                chains.extend(s.layers);
            }
        } else {
            return; // unsure what is in use: keep everything
        }
        for c in self.layers.list() {
            if !chains.contains(&c) {
                tracing::info!("removing unused layer {c}");
                let _ = self.layers.remove(&c);
            }
        }
        for b in self.blobs.list() {
            if !blobs.contains(&b) {
                let _ = self.blobs.remove(&b);
            }
        }
    }

    fn pin(&self, info: &LayerInfo) {
        self.pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.chain_id.clone(), info.diff_id.clone());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the on-disk state inconsistent (every
        // write is atomic), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn persist_refs(&self, st: &State) -> Result<(), ImageError> {
        let mut f = RepositoriesFile::default();
        for (r, id) in &st.refs {
            let name = match Reference::parse_named(r) {
                Ok(p) => p.name(),
                Err(_) => continue,
            };
            f.repositories
                .entry(name)
                .or_default()
                .insert(r.clone(), id.clone());
        }
        let json =
            serde_json::to_vec_pretty(&f).map_err(|e| ImageError::json("repositories", e))?;
        atomic_write(&self.root.join("repositories.json"), &json)
    }

    fn config_of(&self, st: &mut State, id: &str) -> Result<Arc<ImageConfig>, ImageError> {
        if let Some(c) = st.configs.get(id) {
            return Ok(c.clone());
        }
        let bytes = self.blobs.read(id)?;
        let c: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::json("image config", e))?;
        let c = Arc::new(c);
        st.configs.insert(id.to_string(), c.clone());
        Ok(c)
    }

    fn refs_of(st: &State, id: &str) -> Vec<Reference> {
        st.refs
            .iter()
            .filter(|(_, v)| v.as_str() == id)
            .filter_map(|(k, _)| Reference::parse_named(k).ok())
            .collect()
    }

    fn make_image(&self, st: &mut State, id: &str) -> Result<Image, ImageError> {
        let rec = st
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let config = self.config_of(st, id)?;
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for r in Self::refs_of(st, id) {
            if r.digest.is_some() {
                repo_digests.push(r.familiar());
            } else {
                repo_tags.push(r.familiar());
            }
        }
        Ok(Image {
            id: id.to_string(),
            repo_tags,
            repo_digests,
            created: config.created.clone(),
            config: (*config).clone(),
            size: rec.layers.iter().map(|l| l.size).sum(),
        })
    }

    /// Docker's GetImage: exact id, then reference, then unique id prefix.
    fn resolve(&self, st: &State, name: &str) -> Result<Resolved, ImageError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return if st.images.contains_key(name) {
                    Ok(Resolved {
                        id: name.to_string(),
                        reference: None,
                    })
                } else {
                    Err(ImageError::NotFound(name.to_string()))
                };
            }
        }
        if name.len() == 64 && is_lower_hex(name) {
            let id = format!("sha256:{name}");
            return if st.images.contains_key(&id) {
                Ok(Resolved {
                    id,
                    reference: None,
                })
            } else {
                Err(ImageError::NotFound(id))
            };
        }
        // Not a reference and not an id: Docker reports the parse error.
        let is_prefix_syntax = {
            let h = name.strip_prefix("sha256:").unwrap_or(name);
            !h.is_empty() && is_lower_hex(h)
        };
        let parsed = match Reference::parse(name) {
            Ok(r) => Some(r),
            Err(_) if is_prefix_syntax => None,
            Err(e) => return Err(e),
        };
        if let Some(r) = &parsed {
            if let Some(id) = st.refs.get(&r.full()) {
                if st.images.contains_key(id) {
                    return Ok(Resolved {
                        id: id.clone(),
                        reference: Some(r.clone()),
                    });
                }
            }
            // `name@sha256:<config digest>` also names the image by id.
            if let Some(d) = &r.digest {
                if st.images.contains_key(d) {
                    return Ok(Resolved {
                        id: d.clone(),
                        reference: None,
                    });
                }
            }
        }
        if is_prefix_syntax {
            let hex = name.strip_prefix("sha256:").unwrap_or(name);
            let want = format!("sha256:{hex}");
            let mut hits = st
                .images
                .range(want.clone()..)
                .take_while(|(k, _)| k.starts_with(&want));
            if let Some((id, _)) = hits.next() {
                if hits.next().is_none() {
                    return Ok(Resolved {
                        id: id.clone(),
                        reference: None,
                    });
                }
                // Ambiguous: Docker reports it as not found.
            }
        }
        Err(ImageError::NotFound(
            parsed
                .map(|r| r.familiar())
                .unwrap_or_else(|| name.to_string()),
        ))
    }

    /// Looks an image up by reference, full id, bare id or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Image, ImageError> {
        let mut st = self.lock();
        let r = self.resolve(&st, name_or_id)?;
        self.make_image(&mut st, &r.id)
    }

    /// Resolves a name to an image id (`sha256:<hex>`).
    pub fn resolve_id(&self, name_or_id: &str) -> Result<String, ImageError> {
        let st = self.lock();
        Ok(self.resolve(&st, name_or_id)?.id)
    }

    /// The original config blob of an image (the bytes its id is the digest of).
    pub fn config_bytes(&self, name_or_id: &str) -> Result<Vec<u8>, ImageError> {
        let id = self.resolve_id(name_or_id)?;
        self.blobs.read(&id)
    }

    /// The layers of an image, bottom first.
    pub fn image_layers(&self, name_or_id: &str) -> Result<Vec<LayerInfo>, ImageError> {
        let id = self.resolve_id(name_or_id)?;
        Ok(self.record(&id)?.layers)
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut st = self.lock();
        let ids: Vec<String> = st.images.keys().cloned().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.make_image(&mut st, &id)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub(crate) fn record(&self, id: &str) -> Result<ImageRecord, ImageError> {
        self.lock()
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| ImageError::NotFound(id.to_string()))
    }

    /// Tags of an image as references (for save).
    pub(crate) fn references(&self, id: &str) -> Vec<Reference> {
        Self::refs_of(&self.lock(), id)
    }

    /// All tag references of a repository (`docker save busybox` saves every busybox tag).
    pub(crate) fn repository_tags(&self, name: &str) -> Vec<(Reference, String)> {
        let st = self.lock();
        st.refs
            .iter()
            .filter_map(|(k, v)| Reference::parse_named(k).ok().map(|r| (r, v.clone())))
            .filter(|(r, _)| r.name() == name && r.digest.is_none())
            .collect()
    }

    /// `docker tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let r = Reference::parse(target)?;
        if r.digest.is_some() {
            return Err(ImageError::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let mut st = self.lock();
        let id = self.resolve(&st, source)?.id;
        st.refs.insert(r.full(), id);
        self.persist_refs(&st)
    }

    /// Adds a reference (tag or `name@digest`) to an image; used by pulls.
    pub fn add_reference(&self, reference: &Reference, image_id: &str) -> Result<(), ImageError> {
        let mut st = self.lock();
        if !st.images.contains_key(image_id) {
            return Err(ImageError::NotFound(image_id.to_string()));
        }
        st.refs.insert(reference.full(), image_id.to_string());
        self.persist_refs(&st)
    }

    /// Whether the layer `chain_id` is extracted in the store with its blob (left by an image,
    /// a load or an earlier, interrupted pull), so a pull need not fetch it again.
    pub fn has_layer(&self, chain_id: &str) -> bool {
        match self.layers.get(chain_id) {
            Ok(Some(info)) => self.blobs.exists(&info.diff_id),
            _ => false,
        }
    }

    /// Opens a layer's content as the store keeps it: the uncompressed tar whose sha256 is
    /// `diff_id` (byte for byte what a pull stored or a load gave). An open file stays readable
    /// even if the image is removed meanwhile.
    pub fn open_layer_tar(&self, diff_id: &str) -> Result<std::fs::File, ImageError> {
        self.blobs.open_blob(diff_id)
    }

    /// Stores a layer (plain or gzip tar) on top of `parent_chain_id`; extracts it once.
    pub fn add_layer(
        &self,
        parent_chain_id: Option<&str>,
        tar: &mut dyn std::io::Read,
    ) -> Result<LayerInfo, ImageError> {
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        self.add_layer_locked(parent_chain_id, None, tar)
    }

    /// Adds a layer whose uncompressed digest is known in advance (a pull): the tar is
    /// extracted while it streams in and written to the blob store at the same time; neither
    /// becomes visible unless the whole stream has the digest `diff_id`.
    ///
    /// Three threads share the work (a pull's critical path): one inflates, one hashes and
    /// writes the blob, and the caller's extracts.
    pub fn add_layer_streaming(
        &self,
        parent_chain_id: Option<&str>,
        diff_id: &str,
        tar: &mut (dyn std::io::Read + Send),
    ) -> Result<LayerInfo, ImageError> {
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        digest_hex(diff_id)?;
        let chain = match parent_chain_id {
            None => diff_id.to_string(),
            Some(p) => chain_ids(&[p.to_string(), diff_id.to_string()])
                .pop()
                .unwrap_or_default(),
        };
        if self.blobs.exists(diff_id) {
            if let Some(info) = self.layers.get(&chain)? {
                // Present already: take the stream to its end so the sender is not cut off.
                let mut plain = crate::archive::decompress(tar)?;
                std::io::copy(&mut plain, &mut std::io::sink())
                    .map_err(|e| ImageError::io("read layer", e))?;
                self.pin(&info);
                return Ok(info);
            }
        }
        let mut input = Some(tar);
        let mut writer = Some(self.blobs.writer()?);
        let info = self.layers.ensure_with(&chain, diff_id, &mut |dir| {
            let (Some(tar), Some(writer)) = (input.take(), writer.take()) else {
                return Err(ImageError::Internal("layer stream already used".into()));
            };
            pipelined_extract(tar, writer, diff_id, dir)
        })?;
        self.pin(&info);
        Ok(info)
    }

    pub(crate) fn add_layer_locked(
        &self,
        parent_chain_id: Option<&str>,
        expected_diff_id: Option<&str>,
        tar: &mut dyn std::io::Read,
    ) -> Result<LayerInfo, ImageError> {
        let mut plain = crate::archive::decompress(tar)?;
        let (diff_id, _) = self.blobs.put_reader(expected_diff_id, &mut plain)?;
        let chain = match parent_chain_id {
            None => diff_id.clone(),
            Some(p) => chain_ids(&[p.to_string(), diff_id.clone()])
                .pop()
                .unwrap_or_default(),
        };
        let info = self.ensure_layer(&chain, &diff_id)?;
        self.pin(&info);
        Ok(info)
    }

    /// Extracts the layer for `chain` from the stored blob `diff_id` unless already there.
    pub(crate) fn ensure_layer(&self, chain: &str, diff_id: &str) -> Result<LayerInfo, ImageError> {
        let blobs = &self.blobs;
        self.layers.ensure(chain, diff_id, &mut || {
            Ok(Box::new(std::io::BufReader::new(blobs.open_blob(diff_id)?)))
        })
    }

    /// Registers an image whose layers are all present; tags it. Returns the id.
    pub fn create_image(&self, config: &[u8], tags: &[Reference]) -> Result<String, ImageError> {
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let rec = self.prepare_record(config)?;
        let id = rec.id.clone();
        self.commit(vec![(rec, tags.to_vec())])?;
        Ok(id)
    }

    /// Stores the config blob and checks every layer of its rootfs is present.
    pub(crate) fn prepare_record(&self, config: &[u8]) -> Result<ImageRecord, ImageError> {
        let parsed: ImageConfig =
            serde_json::from_slice(config).map_err(|e| ImageError::json("image config", e))?;
        let id = self.blobs.put_bytes(None, config)?;
        let mut layers = Vec::new();
        for (chain, diff) in chain_ids(&parsed.rootfs.diff_ids)
            .iter()
            .zip(&parsed.rootfs.diff_ids)
        {
            digest_hex(diff)?;
            let info = self
                .layers
                .get(chain)?
                .ok_or_else(|| ImageError::InvalidArgument(format!("missing layer {diff}")))?;
            if !self.blobs.exists(diff) {
                return Err(ImageError::InvalidArgument(format!(
                    "missing layer blob {diff}"
                )));
            }
            layers.push(info);
        }
        Ok(ImageRecord { id, layers })
    }

    /// Makes prepared images visible: records first, then the index, in one step per call.
    pub(crate) fn commit(
        &self,
        images: Vec<(ImageRecord, Vec<Reference>)>,
    ) -> Result<(), ImageError> {
        let mut st = self.lock();
        {
            // Recorded images keep their layers from now on.
            let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
            for (rec, _) in &images {
                for l in &rec.layers {
                    pinned.remove(&l.chain_id);
                }
            }
        }
        for (rec, _) in &images {
            let hex = digest_hex(&rec.id)?;
            let json = serde_json::to_vec(rec).map_err(|e| ImageError::json("image record", e))?;
            atomic_write(&self.root.join("images").join(format!("{hex}.json")), &json)?;
        }
        // The index is rewritten (and fsynced) only when a reference moves: a build's
        // untagged step images leave it as it is.
        let mut refs_changed = false;
        for (rec, tags) in images {
            for t in &tags {
                let old = st.refs.insert(t.full(), rec.id.clone());
                refs_changed |= old.as_deref() != Some(rec.id.as_str());
            }
            st.images.insert(rec.id.clone(), rec);
        }
        if refs_changed {
            self.persist_refs(&st)?;
        }
        Ok(())
    }

    /// `docker history`: newest first.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryItem>, ImageError> {
        let img = self.get(name_or_id)?;
        let rec = self.record(&img.id)?;
        let mut out = Vec::new();
        let mut layer_idx = 0usize;
        for h in &img.config.history {
            let mut size = 0i64;
            if !h.empty_layer {
                if let Some(l) = rec.layers.get(layer_idx) {
                    size = i64::try_from(l.size).unwrap_or(i64::MAX);
                }
                layer_idx += 1;
            }
            let created = h
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|t| t.timestamp())
                .unwrap_or(0);
            out.push(HistoryItem {
                id: "<missing>".into(),
                created,
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first.id = img.id.clone();
            first.tags = img.repo_tags.clone();
        }
        Ok(out)
    }

    /// `docker rmi`, with Docker's conflict rules. `in_use(image_id)` names a container using the
    /// image and whether it runs; it should prefer a running container when there are several.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        no_prune: bool,
        in_use: &dyn Fn(&str) -> Option<(String, bool)>,
    ) -> Result<Vec<DeleteItem>, ImageError> {
        // Berth images have no parent chain, so there is nothing to prune beyond the image.
        let _ = no_prune;
        let _gc = self.gc.write().unwrap_or_else(|e| e.into_inner());
        let mut st = self.lock();
        let res = self.resolve(&st, name_or_id)?;
        let id = res.id.clone();
        let mut records = Vec::new();
        let mut repo_refs = Self::refs_of(&st, &id);
        let user = in_use(&id);
        let by_id_prefix =
            id.starts_with(name_or_id) || id.trim_start_matches("sha256:").starts_with(name_or_id);
        let mut quiet = false;

        if !by_id_prefix {
            if !force && is_single_reference(&repo_refs) {
                if let Some((cid, _)) = &user {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                        name_or_id,
                        short_id(cid),
                        short_id(&id)
                    )));
                }
            }
            let parsed = match res.reference {
                Some(r) => r,
                None => Reference::parse(name_or_id)?,
            };
            if st.refs.remove(&parsed.full()).is_none() {
                return Err(ImageError::NotFound(parsed.familiar()));
            }
            records.push(DeleteItem::Untagged(parsed.familiar()));
            repo_refs = Self::refs_of(&st, &id);
            // Removing the last tag of a repository also drops its digest references.
            if parsed.digest.is_none()
                && !repo_refs
                    .iter()
                    .any(|r| r.digest.is_none() && r.name() == parsed.name())
            {
                let mut remaining = Vec::new();
                for r in repo_refs {
                    if r.digest.is_some() && r.name() == parsed.name() {
                        st.refs.remove(&r.full());
                        records.push(DeleteItem::Untagged(r.familiar()));
                    } else {
                        remaining.push(r);
                    }
                }
                repo_refs = remaining;
            }
            self.persist_refs(&st)?;
            if !repo_refs.is_empty() {
                return Ok(records);
            }
            quiet = true;
        } else if is_single_reference(&repo_refs) {
            if let Some(c) = check_conflict(&id, &user, &[], force, false) {
                return Err(c);
            }
            for r in &repo_refs {
                st.refs.remove(&r.full());
                records.push(DeleteItem::Untagged(r.familiar()));
            }
            repo_refs.clear();
            self.persist_refs(&st)?;
        }

        // imageDeleteHelper
        if let Some(c) = check_conflict(&id, &user, &repo_refs, force, true) {
            let used = user.is_some();
            if quiet && (!repo_refs.is_empty() || used) {
                return Ok(records);
            }
            return Err(c);
        }
        // A forced delete by id untags every reference first, and says so as Docker does.
        for r in &repo_refs {
            st.refs.remove(&r.full());
            records.push(DeleteItem::Untagged(r.familiar()));
        }
        let rec = st.images.remove(&id);
        st.configs.remove(&id);
        let hex = digest_hex(&id)?.to_string();
        self.persist_refs(&st)?;
        let recfile = self.root.join("images").join(format!("{hex}.json"));
        remove_all(&recfile)?;
        self.blobs.remove(&id)?;
        records.push(DeleteItem::Deleted(id.clone()));
        if let Some(rec) = rec {
            let removed = self.gc_layers(&st, rec.layers)?;
            records.extend(removed.into_iter().map(DeleteItem::Deleted));
        }
        Ok(records)
    }

    /// Deletes those candidate layers (and their blobs) no image or snapshot still uses.
    /// Caller holds the gc write lock.
    pub(crate) fn gc_layers(
        &self,
        st: &State,
        candidates: Vec<LayerInfo>,
    ) -> Result<Vec<String>, ImageError> {
        let mut used_chains = BTreeSet::new();
        let mut used_diffs = BTreeSet::new();
        for r in st.images.values() {
            for l in &r.layers {
                used_chains.insert(l.chain_id.clone());
                used_diffs.insert(l.diff_id.clone());
            }
        }
        for s in self.snapshot_records()? {
            used_chains.extend(s.layers);
        }
        for (chain, diff) in self.pinned.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            used_chains.insert(chain.clone());
            used_diffs.insert(diff.clone());
        }
        let mut removed = Vec::new();
        for l in candidates {
            if !used_diffs.contains(&l.diff_id) {
                self.blobs.remove(&l.diff_id)?;
            }
            if !used_chains.contains(&l.chain_id) && self.layers.get(&l.chain_id)?.is_some() {
                self.layers.remove(&l.chain_id)?;
                removed.push(l.chain_id);
            }
        }
        Ok(removed)
    }
}

/// Docker's isSingleReference: at most one tag, and every digest reference in its repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&Reference> = None;
    let mut canonical = BTreeSet::new();
    for r in refs {
        if r.digest.is_some() {
            canonical.insert(r.name());
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical.len() == 1 && canonical.contains(&single.name())
}

/// Docker's checkImageDeleteConflict. `soft` enables the soft checks (references, stopped
/// containers) unless forced; `with_refs` enables the "referenced in repositories" check.
fn check_conflict(
    id: &str,
    user: &Option<(String, bool)>,
    refs: &[Reference],
    force: bool,
    with_refs: bool,
) -> Option<ImageError> {
    let conflict = |hard: bool, msg: String| {
        ImageError::Conflict(format!(
            "conflict: unable to delete {} ({}) - {}",
            short_id(id),
            if hard {
                "cannot be forced"
            } else {
                "must be forced"
            },
            msg
        ))
    };
    if let Some((cid, true)) = user {
        return Some(conflict(
            true,
            format!("image is being used by running container {}", short_id(cid)),
        ));
    }
    if force {
        return None;
    }
    if with_refs && !refs.is_empty() {
        return Some(conflict(
            false,
            "image is referenced in one or more repositories".into(),
        ));
    }
    if let Some((cid, false)) = user {
        return Some(conflict(
            false,
            format!("image is being used by stopped container {}", short_id(cid)),
        ));
    }
    None
}

type Chunk = std::sync::Arc<Vec<u8>>;

/// Inflates `tar` on one thread, hashes and stores it with `writer` on another, and extracts it
/// into `dir` on this one. Errors in order of what explains the others: a broken stream, then
/// a digest that is not `diff_id`, then the extraction's own.
fn pipelined_extract(
    tar: &mut (dyn std::io::Read + Send),
    writer: crate::blobs::BlobWriter<'_>,
    diff_id: &str,
    dir: &Path,
) -> Result<u64, ImageError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::sync_channel;
    let abort = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (xtx, xrx) = sync_channel::<std::io::Result<Chunk>>(16);
        let (htx, hrx) = sync_channel::<Chunk>(16);
        let abort = &abort;
        let inflater = s.spawn(move || -> Result<(), ImageError> {
            let mut plain = crate::archive::decompress(tar)?;
            let mut to_extractor = Some(xtx);
            loop {
                if abort.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let mut buf = vec![0u8; 256 * 1024];
                let n = match plain.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if let Some(x) = &to_extractor {
                            let _ = x.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        }
                        return Err(ImageError::io("read layer", e));
                    }
                };
                buf.truncate(n);
                let c: Chunk = std::sync::Arc::new(buf);
                if htx.send(c.clone()).is_err() {
                    return Err(ImageError::Internal("layer hashing stopped".into()));
                }
                // The tar may end before the stream does (padding): the hash still needs it all.
                if let Some(x) = &to_extractor {
                    if x.send(Ok(c)).is_err() {
                        to_extractor = None;
                    }
                }
            }
        });
        let hasher = s.spawn(move || -> Result<(), ImageError> {
            let mut w = writer;
            for c in hrx {
                std::io::Write::write_all(&mut w, &c)
                    .map_err(|e| ImageError::io("write blob", e))?;
            }
            w.finish(Some(diff_id)).map(|_| ())
        });
        let mut reader = ChunkReader {
            rx: xrx,
            cur: None,
            pos: 0,
        };
        let extracted = crate::extract::extract_layer(&mut reader, dir);
        drop(reader);
        if extracted.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let inflated = inflater
            .join()
            .unwrap_or_else(|_| Err(ImageError::Internal("layer inflater panicked".into())));
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(ImageError::Internal("layer hasher panicked".into())));
        inflated?;
        match (hashed, extracted) {
            (Err(e), _) if !abort.load(Ordering::Relaxed) => Err(e),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(size)) => Ok(size),
        }
    })
}

/// Reads the extractor's chunks.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Chunk>>,
    cur: Option<Chunk>,
    pos: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(c) = &self.cur {
                if self.pos < c.len() {
                    let n = buf.len().min(c.len() - self.pos);
                    buf[..n].copy_from_slice(&c[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = Some(c);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
    }
}

impl ImageStore {
    /// The extracted layer directories of an image, top layer first (as overlay lowerdirs),
    /// for read-only lookups in its filesystem (the builder's COPY/WORKDIR/USER checks).
    pub fn image_layer_dirs(
        &self,
        name_or_id: &str,
    ) -> Result<Vec<std::path::PathBuf>, ImageError> {
        let id = self.resolve_id(name_or_id)?;
        let rec = self.record(&id)?;
        let mut out = Vec::new();
        for l in rec.layers.iter().rev() {
            out.push(self.layers.layer_dir(&l.chain_id)?.join("diff"));
        }
        Ok(out)
    }
}
