//! Registries: pull, push, search, distribution inspect and login.

use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::image::local::familiar;
use crate::Engine;

/// Registry settings the daemon was started with.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    pub insecure_registries: Vec<String>,
    pub mirrors: Vec<String>,
    /// `--registry-config-path`: per-registry hosts (`<dir>/<host>/hosts.toml`), for the pulls
    /// of both APIs.
    pub hosts_dir: Option<std::path::PathBuf>,
}

/// What a pull or push streams back: Docker's JSON messages, then the outcome.
pub enum Transfer {
    Message(serde_json::Value),
    Failed(EngineError),
}

fn registry_err(e: berth_registry::RegistryError) -> EngineError {
    let msg = e.to_string();
    match e.http_status() {
        404 => EngineError::NotFound(msg),
        400 | 401 => EngineError::InvalidParameter(msg),
        409 => EngineError::Conflict(msg),
        _ => EngineError::Internal(msg),
    }
}

impl Engine {
    /// Pulls `reference` (tag or digest form). The first item tells the caller whether the
    /// pull got going (a message) or failed at once (so it can answer with an HTTP error).
    pub fn image_pull(
        &self,
        reference: String,
        platform: Option<String>,
        auth: Option<berth_registry::RegistryAuth>,
    ) -> mpsc::Receiver<Transfer> {
        let reg = self.inner.registry_config.clone();
        let opts = berth_registry::PullOptions {
            platform,
            insecure_registries: reg.insecure_registries,
            mirrors: reg.mirrors,
            hosts_dir: reg.hosts_dir,
            auth,
            ..Default::default()
        };
        self.transfer("pull", reference, move |store, r, progress| {
            berth_registry::pull(store, r, &opts, progress).map(drop)
        })
    }

    /// `GET /images/search`: Docker's limit range and filters (`is-official`, `is-automated`,
    /// `stars`) over the index's answer.
    pub async fn image_search(
        &self,
        term: &str,
        limit: Option<i64>,
        filters: &std::collections::HashMap<String, Vec<String>>,
        auth: Option<berth_registry::RegistryAuth>,
    ) -> Result<Vec<berth_registry::SearchResult>> {
        let limit = limit.unwrap_or(25);
        if !(1..=100).contains(&limit) {
            return Err(EngineError::InvalidParameter(format!(
                "limit {limit} is outside the range of [1, 100]"
            )));
        }
        let bad =
            |k: &str, v: &str| EngineError::InvalidParameter(format!("invalid filter '{k}={v}'"));
        let mut official = None;
        let mut automated = None;
        let mut stars = 0i64;
        for (k, vs) in filters {
            for v in vs {
                match k.as_str() {
                    "is-official" => official = Some(v.parse::<bool>().map_err(|_| bad(k, v))?),
                    "is-automated" => automated = Some(v.parse::<bool>().map_err(|_| bad(k, v))?),
                    "stars" => stars = stars.max(v.parse::<i64>().map_err(|_| bad(k, v))?),
                    _ => {
                        return Err(EngineError::InvalidParameter(format!(
                            "invalid filter '{k}'"
                        )))
                    }
                }
            }
        }
        let term = term.to_string();
        let insecure = self.inner.registry_config.insecure_registries.clone();
        let found = tokio::task::spawn_blocking(move || {
            berth_registry::search(&term, limit as usize, &insecure, auth.as_ref())
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(registry_err)?;
        Ok(found
            .into_iter()
            .filter(|r| official.is_none_or(|o| r.is_official == o))
            .filter(|r| automated.is_none_or(|a| r.is_automated == a))
            .filter(|r| r.star_count >= stars)
            .take(limit as usize)
            .collect())
    }

    pub fn image_push(
        &self,
        reference: String,
        auth: Option<berth_registry::RegistryAuth>,
    ) -> mpsc::Receiver<Transfer> {
        let opts = berth_registry::PushOptions {
            insecure_registries: self.inner.registry_config.insecure_registries.clone(),
            auth,
            ..Default::default()
        };
        self.transfer("push", reference, move |store, r, progress| {
            berth_registry::push(store, r, &opts, progress).map(drop)
        })
    }

    /// Runs a pull or push on a blocking thread: its progress streams back as Docker's JSON
    /// messages; success is announced as the image event `action`, failure as the last item.
    fn transfer(
        &self,
        action: &'static str,
        reference: String,
        run: impl FnOnce(
                &berth_image::ImageStore,
                &str,
                &mut dyn FnMut(berth_registry::Progress),
            ) -> std::result::Result<(), berth_registry::RegistryError>
            + Send
            + 'static,
    ) -> mpsc::Receiver<Transfer> {
        let (tx, rx) = mpsc::channel(64);
        let store = self.images();
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut progress = |p: berth_registry::Progress| {
                let _ = tx.blocking_send(Transfer::Message(p.to_json_message()));
            };
            match run(&store, &reference, &mut progress) {
                Ok(()) => {
                    let name = familiar(&reference);
                    engine.emit("image", action, &name, &[("name", name.clone())]);
                }
                Err(e) => {
                    let _ = tx.blocking_send(Transfer::Failed(registry_err(e)));
                }
            }
        });
        rx
    }

    /// `GET /distribution/{name}/json`: the registry's descriptor and platforms for a name.
    pub async fn distribution_inspect(
        &self,
        reference: String,
        auth: Option<berth_registry::RegistryAuth>,
    ) -> Result<berth_registry::DistributionInspect> {
        let reg = self.inner.registry_config.clone();
        tokio::task::spawn_blocking(move || {
            let opts = berth_registry::PullOptions {
                insecure_registries: reg.insecure_registries,
                mirrors: reg.mirrors,
                hosts_dir: reg.hosts_dir,
                auth,
                ..Default::default()
            };
            berth_registry::inspect_distribution(&reference, &opts)
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(registry_err)
    }

    /// `POST /auth`: checks credentials against the registry; returns its status line.
    pub async fn registry_login(&self, auth: berth_registry::RegistryAuth) -> Result<String> {
        let insecure = self.inner.registry_config.insecure_registries.clone();
        tokio::task::spawn_blocking(move || {
            let server = if auth.server_address.is_empty() {
                "https://index.docker.io/v1/".to_string()
            } else {
                auth.server_address.clone()
            };
            berth_registry::login(&server, &auth, &insecure)
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(registry_err)
    }
}
