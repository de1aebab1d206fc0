//! `ps`: Docker's filters and status strings, and the counts of `info`.

use std::collections::HashMap;

use berth_api::types::{ContainerSummary, SummaryHostConfig};

use crate::container::{ContainerRecord, Status};
use crate::error::{EngineError, Result};
use berth_api::units::human_duration;

use crate::util::parse_time;
use crate::Engine;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub size: bool,
    /// Parsed `filters`: key -> accepted values.
    pub filters: HashMap<String, Vec<String>>,
}

/// The `Status` column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
pub fn status_text(rec: &ContainerRecord) -> String {
    let now = chrono::Utc::now();
    match rec.state.status {
        Status::Running | Status::Paused => {
            let up = parse_time(&rec.state.started_at)
                .map(|t| human_duration((now - t).num_seconds()))
                .unwrap_or_else(|| "Less than a second".into());
            if rec.state.status == Status::Paused {
                format!("Up {up} (Paused)")
            } else {
                format!("Up {up}")
            }
        }
        Status::Restarting => {
            let ago = parse_time(&rec.state.finished_at)
                .map(|t| human_duration((now - t).num_seconds()))
                .unwrap_or_else(|| "Less than a second".into());
            format!("Restarting ({}) {ago} ago", rec.state.exit_code)
        }
        Status::Exited => match parse_time(&rec.state.finished_at) {
            Some(t) => format!(
                "Exited ({}) {} ago",
                rec.state.exit_code,
                human_duration((now - t).num_seconds())
            ),
            None => "Created".into(),
        },
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// The `State` value: an exited container that never ran shows as "created".
pub(crate) fn state_text(rec: &ContainerRecord) -> &'static str {
    if rec.state.status == Status::Exited && parse_time(&rec.state.finished_at).is_none() {
        return "created";
    }
    rec.state.status.as_str()
}

fn command_text(rec: &ContainerRecord) -> String {
    let mut parts = vec![rec.path.clone()];
    parts.extend(rec.args.iter().cloned());
    parts.join(" ")
}

fn label_matches(labels: &std::collections::BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(f),
    }
}

impl Engine {
    pub async fn list(&self, opts: &ListOptions) -> Result<Vec<ContainerSummary>> {
        for k in opts.filters.keys() {
            match k.as_str() {
                "id" | "name" | "status" | "label" | "exited" | "ancestor" | "before" | "since"
                | "health" | "network" | "volume" | "publish" | "expose" | "isolation"
                | "is-task" => {}
                other => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{other}'"
                    )))
                }
            }
        }
        if let Some(st) = opts.filters.get("status") {
            for s in st {
                if !matches!(
                    s.as_str(),
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                ) {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter 'status={s}'"
                    )));
                }
            }
        }
        let name_res: Vec<regex::Regex> = opts
            .filters
            .get("name")
            .map(|v| v.iter().filter_map(|n| regex::Regex::new(n).ok()).collect())
            .unwrap_or_default();
        // A pod's containers are the kubelet's: listed only when a label filter names their pod
        // label (`ps --filter label=io.berth.cri.pod[=<pod id>]`).
        let with_pods = opts.filters.get("label").is_some_and(|v| {
            v.iter()
                .any(|l| l.split('=').next() == Some(crate::pod::POD_LABEL))
        });
        let mut recs: Vec<ContainerRecord> = self
            .all_entries()
            .iter()
            .map(|e| e.snapshot())
            .filter(|r| !r.build_step && (r.pod.is_none() || with_pods))
            .collect();
        // Newest first, as Docker lists.
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        let has_status_filter = opts.filters.contains_key("status");
        let mut ancestor_ids: Vec<String> = Vec::new();
        if let Some(anc) = opts.filters.get("ancestor") {
            for a in anc {
                if let Ok(img) = self.images().get(a) {
                    ancestor_ids.push(img.id.clone());
                }
            }
        }
        let mut out = Vec::new();
        for rec in recs {
            let state = state_text(&rec);
            if !opts.all
                && !has_status_filter
                && !rec.state.status.is_running()
                && opts.limit.is_none()
            {
                continue;
            }
            if let Some(st) = opts.filters.get("status") {
                if !st.iter().any(|s| s == state) {
                    continue;
                }
            }
            if let Some(ids) = opts.filters.get("id") {
                if !ids.iter().any(|i| rec.id.starts_with(i.as_str())) {
                    continue;
                }
            }
            if opts.filters.contains_key("name")
                && !name_res
                    .iter()
                    .any(|re| re.is_match(&rec.name) || re.is_match(&format!("/{}", rec.name)))
            {
                continue;
            }
            if let Some(ls) = opts.filters.get("label") {
                let labels = rec.config.labels.clone().unwrap_or_default();
                if !ls.iter().all(|l| label_matches(&labels, l)) {
                    continue;
                }
            }
            if let Some(ex) = opts.filters.get("exited") {
                if rec.state.status != Status::Exited
                    || !ex
                        .iter()
                        .any(|e| e.parse::<i64>().ok() == Some(rec.state.exit_code))
                {
                    continue;
                }
            }
            if opts.filters.contains_key("ancestor") && !ancestor_ids.contains(&rec.image_id) {
                continue;
            }
            if let Some(vs) = opts.filters.get("volume") {
                // Docker: a volume name or a mount destination.
                if !vs.iter().any(|v| {
                    rec.mount_points
                        .iter()
                        .any(|m| (!m.name.is_empty() && &m.name == v) || &m.destination == v)
                }) {
                    continue;
                }
            }
            if !self.net_filters_match(&rec, &opts.filters)? {
                continue;
            }
            out.push(self.summary(&rec, opts.size));
        }
        if let Some(n) = opts.limit {
            out.truncate(n);
        }
        Ok(out)
    }

    /// `SizeRw` and `SizeRootFs` when `size` is asked for: the writable layer, and that plus
    /// the image.
    pub(crate) fn container_sizes(
        &self,
        rec: &ContainerRecord,
        size: bool,
    ) -> (Option<i64>, Option<i64>) {
        if !size {
            return (None, None);
        }
        let rw = self.images().snapshot_size(&rec.id).unwrap_or(0);
        let base = self
            .images()
            .get(&rec.image_id)
            .map(|i| i.size)
            .unwrap_or(0);
        (Some(rw as i64), Some((base + rw) as i64))
    }

    fn summary(&self, rec: &ContainerRecord, size: bool) -> ContainerSummary {
        let created = parse_time(&rec.created).map(|t| t.timestamp()).unwrap_or(0);
        let (size_rw, size_root_fs) = self.container_sizes(rec, size);
        ContainerSummary {
            id: rec.id.clone(),
            names: vec![format!("/{}", rec.name)],
            image: rec.config.image.clone(),
            image_id: rec.image_id.clone(),
            command: command_text(rec),
            created,
            ports: self.net_ps_ports(rec),
            size_rw,
            size_root_fs,
            labels: rec.config.labels.clone().unwrap_or_default(),
            mounts: rec.mount_points.iter().map(|m| m.to_api()).collect(),
            state: state_text(rec).to_string(),
            status: {
                let mut s = status_text(rec);
                if rec.state.status == Status::Running {
                    match self.health_of(&rec.id).map(|h| h.status) {
                        Some(h) if h == "starting" => s.push_str(" (health: starting)"),
                        Some(h) if !h.is_empty() => s.push_str(&format!(" ({h})")),
                        _ => {}
                    }
                }
                s
            },
            host_config: SummaryHostConfig {
                network_mode: rec.host_config.network_mode.clone(),
                ..Default::default()
            },
            network_settings: berth_api::types::SummaryNetworkSettings {
                networks: Some(self.net_summary(rec)),
            },
        }
    }

    /// Counts for /info: (total, running, paused, stopped).
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        let mut t = (0, 0, 0, 0);
        for e in self.all_entries() {
            let r = e.snapshot();
            if r.build_step || r.pod.is_some() {
                continue;
            }
            let s = r.state.status;
            t.0 += 1;
            match s {
                Status::Running | Status::Restarting => t.1 += 1,
                Status::Paused => t.2 += 1,
                _ => t.3 += 1,
            }
        }
        t
    }

    /// Which container, if any, uses an image (for rmi): (id, running).
    pub fn image_user(&self, image_id: &str) -> Option<(String, bool)> {
        let mut found: Option<(String, bool)> = None;
        for e in self.all_entries() {
            let r = e.snapshot();
            if r.image_id == image_id {
                let running = r.state.status.is_running();
                if running || found.is_none() {
                    found = Some((r.id.clone(), running));
                }
            }
        }
        found
    }

    /// The number of containers per image id (images `Containers` field).
    pub fn image_container_counts(&self) -> HashMap<String, i64> {
        let mut m = HashMap::new();
        for e in self.all_entries() {
            *m.entry(e.snapshot().image_id).or_insert(0) += 1;
        }
        m
    }
}
