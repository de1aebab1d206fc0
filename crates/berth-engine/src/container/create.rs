//! `create`: reserve the name, resolve networks and mounts, make the rw layer, persist the record.

use std::sync::Arc;

use berth_api::types::{ContainerConfig, ContainerCreateBody, HostConfig};

use crate::container::config::{
    fill_host_config_defaults, merge_config, merge_default_log_opts, validate_config,
    validate_container_network_mode, validate_host_config,
};
use crate::container::{ContainerRecord, Owner, StateRecord};
use crate::error::{EngineError, Result};
use crate::util::{self, now_rfc3339};
use crate::Engine;

impl Engine {
    pub async fn create(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>)> {
        self.create_as(name, body, Owner::User).await
    }

    /// `create`, for a build's RUN step or a pod (see `Owner`).
    pub(crate) async fn create_as(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
        owner: Owner,
    ) -> Result<(String, Vec<String>)> {
        let mut config = body.config.clone();
        let mut host_config = body.host_config.clone().unwrap_or_default();
        validate_host_config(&host_config)?;
        validate_config(&config, &host_config)?;
        crate::container::resources::validate(
            &mut host_config,
            crate::container::resources::When::Create,
        )?;
        validate_container_network_mode(&config, &host_config)?;
        // Rootless drops the limits first (one warning for them), then the driver's checks.
        let mut warnings = crate::container::resources::discard_rootless_limits(&mut host_config);
        warnings.extend(crate::cgroups::check(
            &host_config,
            self.config().cgroup_driver,
        )?);
        merge_default_log_opts(&mut host_config, &self.inner.cfg.log_opts);
        fill_host_config_defaults(&mut host_config, self.config().default_cgroupns);
        crate::container::mounts::validate_tmpfs(&host_config)?;
        let image_name = config.image.clone();
        if image_name.is_empty() {
            return Err(EngineError::InvalidParameter(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        let images = self.images();
        let lookup = image_name.clone();
        let image = tokio::task::spawn_blocking(move || images.get(&lookup))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)?;
        let image_cfg: Option<ContainerConfig> = image
            .config
            .config
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| serde_json::from_value(v).ok());
        config = merge_config(&config, image_cfg.as_ref());
        config.image = image_name;
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(EngineError::InvalidParameter("no command specified".into()));
        }

        let id = util::new_id();
        let short = id[..12].to_string();
        if config.hostname.is_empty() {
            // dockerd: the host's name on the host's network, else the short id.
            config.hostname = if host_config.network_mode.is_host() {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| short.clone())
            } else {
                short.clone()
            };
        }
        // Reserve the name first: two concurrent creates with one name must not both win.
        let name = {
            let mut reg = self.write_index();
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    crate::container::names::validate(n).map_err(EngineError::InvalidParameter)?
                }
                None => crate::container::names::generate(|n| reg.names.contains_key(n)),
            };
            if let Some(other) = reg.names.get(&name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            reg.names.insert(name.clone(), id.clone());
            name
        };

        // A pod's container lives in its pod's network, not in Docker's.
        let net = match owner {
            Owner::Pod(_) => Ok(()),
            _ => self.net_create(&id, &name, &body),
        };
        // Volumes are resolved (and created) and reserved for this container until it is
        // registered as their user, so no volume rm/prune can take them meanwhile.
        let result = match net {
            Ok(()) => match self.reserve_mounts(&id, &config, &host_config).await {
                Ok(mounts) => {
                    let r = self
                        .create_reserved(
                            &id,
                            &name,
                            config,
                            host_config,
                            &image.id,
                            argv,
                            mounts.clone(),
                            owner,
                        )
                        .await;
                    self.settle_mounts(&id, &mounts, r.is_ok()).await;
                    r
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.net_forget(&id);
            let mut reg = self.write_index();
            reg.names.remove(&name);
            reg.by_id.remove(&id);
        } else {
            self.emit_container(&id, "create", &[]);
        }
        result.map(|_| (id, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_reserved(
        &self,
        id: &str,
        name: &str,
        config: ContainerConfig,
        host_config: HostConfig,
        image_id: &str,
        argv: Vec<String>,
        mount_points: Vec<crate::container::mounts::MountPoint>,
        owner: Owner,
    ) -> Result<()> {
        let dir = self.container_dir(id);
        std::fs::create_dir_all(&dir)?;
        let images = self.images();
        let (cid, iid) = (id.to_string(), image_id.to_string());
        let snap = tokio::task::spawn_blocking(move || images.create_snapshot(&cid, &iid))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err);
        if let Err(e) = snap {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let rec = ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: now_rfc3339(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            image_id: image_id.to_string(),
            state: StateRecord::default(),
            restart_count: 0,
            manually_stopped: false,
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: dir.join("hostname").display().to_string(),
            hosts_path: dir.join("hosts").display().to_string(),
            resolv_conf_path: dir.join("resolv.conf").display().to_string(),
            mount_points,
            build_step: matches!(owner, Owner::BuildStep),
            pod: match owner {
                Owner::Pod(p) => Some(*p),
                _ => None,
            },
        };
        if let Err(e) = rec.save(&dir) {
            let images = self.images();
            let cid = id.to_string();
            let _ = tokio::task::spawn_blocking(move || images.remove_snapshot(&cid)).await;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.write_index()
            .by_id
            .insert(id.to_string(), Arc::new(self.new_entry(rec, dir)));
        Ok(())
    }
}
