//! Extracted layers: `<root>/layers/<chain-id-hex>/{diff/,layer.json}`, one per chain id, shared by
//! every image and snapshot that uses it. `<root>/l/<short>` is a short symlink to each `diff/`,
//! used to keep overlay mount options under a page (see `snapshot.rs`).

use crate::error::{ImageError, IoContext};
use crate::fsutil::{atomic_write, digest_hex, rand_suffix, remove_all, sync_dir};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Length of the short link name: 16 hex chars of the chain id (collisions are checked).
const SHORT_LEN: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerInfo {
    pub chain_id: String,
    pub diff_id: String,
    /// Content size: sum of regular file sizes.
    pub size: u64,
}

pub(crate) struct LayerStore {
    dir: PathBuf,
    links: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore, ImageError> {
        let dir = root.join("layers");
        let links = root.join("l");
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        fs::create_dir_all(&links).ctx("create", &links)?;
        Ok(LayerStore { dir, links })
    }

    pub fn links_dir(&self) -> &Path {
        &self.links
    }

    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join(digest_hex(chain_id)?))
    }

    pub fn short_name(chain_id: &str) -> Result<String, ImageError> {
        Ok(digest_hex(chain_id)?[..SHORT_LEN].to_string())
    }

    pub fn get(&self, chain_id: &str) -> Result<Option<LayerInfo>, ImageError> {
        let p = self.layer_dir(chain_id)?.join("layer.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| ImageError::json(p.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io_path("read", &p, e)),
        }
    }

    /// Extracts the layer unless it exists. Extraction goes to a private temp dir that is renamed
    /// into place only when complete, so a crash or a racing load never exposes a half layer.
    pub fn ensure(
        &self,
        chain_id: &str,
        diff_id: &str,
        tar: &mut dyn FnMut() -> Result<Box<dyn Read>, ImageError>,
    ) -> Result<LayerInfo, ImageError> {
        self.ensure_with(chain_id, diff_id, &mut |diff| {
            let mut r = tar()?;
            crate::extract::extract_layer(&mut r, diff)
        })
    }

    /// As [`Layers::ensure`], with `fill` extracting into the given dir (and vetting what it
    /// extracted: an error discards it). Returns the existing layer without calling `fill`.
    pub fn ensure_with(
        &self,
        chain_id: &str,
        diff_id: &str,
        fill: &mut dyn FnMut(&Path) -> Result<u64, ImageError>,
    ) -> Result<LayerInfo, ImageError> {
        if let Some(info) = self.get(chain_id)? {
            self.ensure_link(chain_id)?;
            return Ok(info);
        }
        let final_dir = self.layer_dir(chain_id)?;
        let tmp = self.dir.join(format!(".tmp-{}", rand_suffix()));
        let res = (|| {
            let diff = tmp.join("diff");
            fs::create_dir_all(&diff).ctx("create", &diff)?;
            let size = fill(&diff)?;
            let info = LayerInfo {
                chain_id: chain_id.to_string(),
                diff_id: diff_id.to_string(),
                size,
            };
            let json = serde_json::to_vec(&info).map_err(|e| ImageError::json("layer", e))?;
            atomic_write(&tmp.join("layer.json"), &json)?;
            // A leftover from a crash (dir without layer.json) is replaced.
            if final_dir.exists() && self.get(chain_id)?.is_none() {
                remove_all(&final_dir)?;
            }
            match fs::rename(&tmp, &final_dir) {
                Ok(()) => {}
                // Another thread finished the same layer first: keep theirs.
                Err(_) if self.get(chain_id)?.is_some() => remove_all(&tmp)?,
                Err(e) => return Err(ImageError::io_path("rename", &final_dir, e)),
            }
            sync_dir(&self.dir)?;
            Ok(info)
        })();
        if res.is_err() {
            let _ = remove_all(&tmp);
        }
        let info = res?;
        self.ensure_link(chain_id)?;
        Ok(info)
    }

    fn ensure_link(&self, chain_id: &str) -> Result<(), ImageError> {
        let hex = digest_hex(chain_id)?;
        let link = self.links.join(Self::short_name(chain_id)?);
        let target = PathBuf::from(format!("../layers/{hex}/diff"));
        match fs::read_link(&link) {
            Ok(t) if t == target => Ok(()),
            Ok(t) => Err(ImageError::Internal(format!(
                "layer short link {} collides: {}",
                link.display(),
                t.display()
            ))),
            Err(_) => {
                let tmp = self.links.join(format!(".tmp-{}", rand_suffix()));
                std::os::unix::fs::symlink(&target, &tmp).ctx("symlink", &tmp)?;
                fs::rename(&tmp, &link).ctx("rename", &link)
            }
        }
    }

    /// Chain ids of all layer dirs (complete or not).
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if digest_hex(&name).is_ok() {
                    out.push(format!("sha256:{name}"));
                }
            }
        }
        out
    }

    pub fn remove(&self, chain_id: &str) -> Result<(), ImageError> {
        let link = self.links.join(Self::short_name(chain_id)?);
        let _ = fs::remove_file(&link);
        remove_all(&self.layer_dir(chain_id)?)
    }

    /// Removes leftovers of interrupted extractions.
    pub fn clean_temps(&self) {
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = remove_all(&e.path());
                }
            }
        }
    }
}
