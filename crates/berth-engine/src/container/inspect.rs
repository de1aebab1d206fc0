//! `inspect` of a container.

use berth_api::types::{ContainerInspect, ContainerState, GraphDriverData};

use crate::container::list::state_text;
use crate::container::Status;
use crate::error::Result;
use crate::Engine;

impl Engine {
    /// A container's record, by id, name or unique id prefix (the CRI layer reads these).
    pub fn container_record(&self, name: &str) -> Result<crate::container::ContainerRecord> {
        Ok(self.lookup(name)?.snapshot())
    }

    /// Every container's record.
    pub fn container_records(&self) -> Vec<crate::container::ContainerRecord> {
        self.all_entries().iter().map(|e| e.snapshot()).collect()
    }

    pub async fn inspect(&self, name: &str, size: bool) -> Result<ContainerInspect> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        let st = &rec.state;
        let mut hc = rec.host_config.clone();
        if hc.runtime.is_empty() {
            // Berth's one runtime, under the name Docker gives its default.
            hc.runtime = "runc".into();
        }
        if hc.log_config.r#type.is_empty() {
            // The only log driver: Docker names it even when the client did not.
            hc.log_config.r#type = "json-file".into();
            if hc.log_config.config.is_none() {
                hc.log_config.config = Some(Default::default());
            }
        }
        let merged = self
            .config()
            .data_root
            .join("image/snapshots")
            .join(&rec.id);
        let mut gd = std::collections::BTreeMap::new();
        gd.insert(
            "MergedDir".to_string(),
            merged.join("merged").display().to_string(),
        );
        gd.insert(
            "UpperDir".to_string(),
            merged.join("upper").display().to_string(),
        );
        gd.insert(
            "WorkDir".to_string(),
            merged.join("work").display().to_string(),
        );
        let (size_rw, size_root_fs) = self.container_sizes(&rec, size);
        Ok(ContainerInspect {
            id: rec.id.clone(),
            created: rec.created.clone(),
            path: rec.path.clone(),
            args: rec.args.clone(),
            state: ContainerState {
                status: state_text(&rec).to_string(),
                running: st.status.is_running(),
                paused: st.status == Status::Paused,
                restarting: st.status == Status::Restarting,
                oom_killed: st.oom_killed,
                dead: st.status == Status::Dead,
                pid: st.pid,
                exit_code: st.exit_code,
                error: st.error.clone(),
                started_at: st.started_at.clone(),
                finished_at: st.finished_at.clone(),
                health: self.health_of(&rec.id),
            },
            image: rec.image_id.clone(),
            resolv_conf_path: rec.resolv_conf_path.clone(),
            hostname_path: rec.hostname_path.clone(),
            hosts_path: rec.hosts_path.clone(),
            log_path: rec.log_path.clone(),
            name: format!("/{}", rec.name),
            restart_count: rec.restart_count,
            driver: "overlay2".into(),
            platform: "linux".into(),
            host_config: hc,
            graph_driver: GraphDriverData {
                name: "overlay2".into(),
                data: Some(gd),
            },
            size_rw,
            size_root_fs,
            mounts: rec.mount_points.iter().map(|m| m.to_api()).collect(),
            config: rec.config.clone(),
            network_settings: self.net_settings(&rec),
            exec_ids: Some(self.exec_ids(&rec.id)).filter(|v| !v.is_empty()),
            ..Default::default()
        })
    }
}
