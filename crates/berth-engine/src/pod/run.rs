//! `run`: a pod's /etc files, its network namespace wired by the CNI plugins, and its infra
//! process. Every failure rolls back what was made.

use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_net::cni;

use crate::error::{EngineError, Result};
use crate::pod::{NsMode, PodEntry, PodRecord, PodSpec, PodState};
use crate::Engine;

const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The pod's resolv.conf: its DNS settings, or the host's file when it has none.
fn resolv_conf(spec: &PodSpec) -> String {
    match &spec.dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            let mut s = String::new();
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            for n in &d.servers {
                s.push_str(&format!("nameserver {n}\n"));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s
        }
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Kubernetes' arguments to the plugins.
fn cni_args(id: &str, spec: &PodSpec) -> Vec<(String, String)> {
    vec![
        ("K8S_POD_NAMESPACE".into(), spec.namespace.clone()),
        ("K8S_POD_NAME".into(), spec.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
        ("K8S_POD_UID".into(), spec.uid.clone()),
    ]
}

pub(crate) fn attachment(id: &str, netns: &Path, spec: &PodSpec) -> cni::Attachment {
    cni::Attachment {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        args: cni_args(id, spec),
        // Only mappings with a host port go to the plugins (the kubelet's rule).
        port_mappings: spec
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0 && p.container_port > 0)
            .map(|p| cni::PortMapping {
                host_port: p.host_port as u16,
                container_port: p.container_port as u16,
                protocol: if p.protocol.is_empty() {
                    "tcp".into()
                } else {
                    p.protocol.to_ascii_lowercase()
                },
                host_ip: p.host_ip.clone(),
            })
            .collect(),
    }
}

impl Engine {
    /// The CNI network configuration, if one is there (NetworkReady).
    pub fn pod_network_config(&self) -> Result<cni::NetworkList> {
        cni::load(&self.inner.cfg.cni.conf_dir)
            .map_err(|e| EngineError::Internal(format!("cni config uninitialized: {e}")))
    }

    pub async fn run_pod(&self, spec: PodSpec) -> Result<String> {
        if spec.name.is_empty() || spec.uid.is_empty() || spec.namespace.is_empty() {
            return Err(EngineError::InvalidParameter(
                "the pod's metadata needs a name, a uid and a namespace".into(),
            ));
        }
        if spec.namespaces.userns != NsMode::Node {
            return Err(EngineError::InvalidParameter(
                "user namespaces are not supported: only NODE mode is".into(),
            ));
        }
        if spec.namespaces.pid == NsMode::Target {
            return Err(EngineError::InvalidParameter(
                "a pod's PID namespace cannot be a target's".into(),
            ));
        }
        let id = crate::util::new_id();
        let key = PodRecord::key(&spec);
        {
            let mut idx = self.pods_index();
            if let Some(other) = idx.keys.get(&key) {
                return Err(EngineError::Conflict(format!(
                    "failed to reserve sandbox name {key:?}: name {key:?} is reserved for {other:?}"
                )));
            }
            idx.keys.insert(key.clone(), id.clone());
        }
        let engine = self.clone();
        let (id2, spec2) = (id.clone(), spec.clone());
        let made = tokio::task::spawn_blocking(move || engine.make_pod(&id2, spec2))
            .await
            .map_err(EngineError::internal)?;
        match made {
            Ok(rec) => {
                let entry = Arc::new(PodEntry {
                    id: id.clone(),
                    dir: self.pod_dir(&id),
                    record: Mutex::new(rec),
                    op: tokio::sync::Mutex::new(()),
                });
                self.pods_index().by_id.insert(id.clone(), entry);
                Ok(id)
            }
            Err(e) => {
                self.pods_index().keys.remove(&key);
                Err(e)
            }
        }
    }

    /// The blocking part of `run_pod`; on error nothing it made is left.
    fn make_pod(&self, id: &str, spec: PodSpec) -> Result<PodRecord> {
        let dir = self.pod_dir(id);
        let run_dir = self.pod_run_dir(id);
        let res = self.make_pod_inner(id, spec, &dir, &run_dir);
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            berth_net::netns::remove(&run_dir.join("netns"));
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        res
    }

    fn make_pod_inner(
        &self,
        id: &str,
        spec: PodSpec,
        dir: &Path,
        run_dir: &Path,
    ) -> Result<PodRecord> {
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all(run_dir)?;
        let host_net = spec.namespaces.network == NsMode::Node;
        let hostname = if host_net || spec.hostname.is_empty() {
            host_hostname()
        } else {
            spec.hostname.clone()
        };
        crate::util::write_atomic(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
        crate::util::write_atomic(&dir.join("resolv.conf"), resolv_conf(&spec).as_bytes())?;

        let mut rec = PodRecord {
            id: id.to_string(),
            created: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            spec,
            state: PodState::NotReady,
            netns: None,
            cni_result: None,
            ips: Vec::new(),
            infra: None,
        };
        if !host_net {
            let list = self.pod_network_config()?;
            let netns = run_dir.join("netns");
            berth_net::netns::create(&netns, |_| Ok(()))
                .map_err(|e| EngineError::Internal(format!("creating the pod's netns: {e}")))?;
            rec.netns = Some(netns.clone());
            let att = attachment(id, &netns, &rec.spec);
            let result = cni::add(&list, &att, &self.inner.cfg.cni.bin_dirs).map_err(|e| {
                EngineError::Internal(format!("failed to setup network for sandbox {id:?}: {e}"))
            })?;
            rec.ips = cni::result_ips(&result, "eth0")
                .iter()
                .map(|ip| ip.to_string())
                .collect();
            rec.cni_result = Some(result);
        }
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.into())
        } else {
            let mut h = DEFAULT_HOSTS.to_string();
            if let Some(ip) = rec.ips.first() {
                h.push_str(&format!("{ip}\t{hostname}\n"));
            }
            h
        };
        crate::util::write_atomic(&dir.join("hosts"), hosts.as_bytes())?;

        if rec.spec.namespaces.ipc != NsMode::Node {
            // The pod's /dev/shm, shared by its containers as their IPC namespace is.
            let shm = run_dir.join("shm");
            std::fs::create_dir_all(&shm)?;
            nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(|e| {
                self.pod_network_down(&mut rec);
                EngineError::Internal(format!("mounting the pod's /dev/shm: {e}"))
            })?;
        }
        let opts = berth_runtime::infra::InfraOptions {
            dir: run_dir.to_path_buf(),
            hostname,
            new_ipc: rec.spec.namespaces.ipc != NsMode::Node,
            new_uts: !host_net,
            new_pid: rec.spec.namespaces.pid == NsMode::Pod,
            // What containerd gives its pause container, as far as the host allows.
            oom_score_adj: Some(crate::pod::clamp_oom_score_adj(-998)),
        };
        let infra = berth_runtime::infra::spawn_infra(&self.inner.cfg.berth_exe, &opts);
        let infra = match infra {
            Ok(i) => i,
            Err(e) => {
                self.pod_network_down(&mut rec);
                return Err(EngineError::Internal(format!(
                    "starting the pod's infra process: {e}"
                )));
            }
        };
        rec.infra = Some(infra);
        rec.state = PodState::Ready;
        if let Err(e) = rec.save(dir) {
            infra.kill();
            self.pod_network_down(&mut rec);
            return Err(e.into());
        }
        Ok(rec)
    }

    /// CNI DEL and the namespace's removal; the record keeps no network afterwards. The pod's
    /// /dev/shm goes too.
    pub(crate) fn pod_network_down(&self, rec: &mut PodRecord) {
        let shm = self.pod_run_dir(&rec.id).join("shm");
        if berth_net::netns::is_pinned(&shm) {
            let _ = nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH);
        }
        let Some(netns) = rec.netns.clone() else {
            return;
        };
        if rec.cni_result.is_some() || berth_net::netns::is_pinned(&netns) {
            match self.pod_network_config() {
                Ok(list) => {
                    let att = attachment(&rec.id, &netns, &rec.spec);
                    if let Err(e) = cni::del(
                        &list,
                        &att,
                        rec.cni_result.as_ref(),
                        &self.inner.cfg.cni.bin_dirs,
                    ) {
                        tracing::warn!("pod {}: cni del: {e}", rec.id);
                    }
                }
                Err(e) => tracing::warn!("pod {}: cannot tear its network down: {e}", rec.id),
            }
        }
        berth_net::netns::remove(&netns);
        rec.cni_result = None;
        rec.netns = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{DnsSpec, PortSpec};

    #[test]
    fn resolv_conf_from_the_pods_dns_settings() {
        let mut spec = PodSpec {
            dns: Some(DnsSpec {
                servers: vec!["10.10.10.10".into()],
                searches: vec!["google.com".into()],
                options: vec!["ndots:8".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&spec),
            "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n"
        );
        spec.dns = Some(DnsSpec::default());
        assert_eq!(
            resolv_conf(&spec),
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        );
    }

    #[test]
    fn only_host_ports_go_to_the_plugins() {
        let spec = PodSpec {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            port_mappings: vec![
                PortSpec {
                    protocol: "TCP".into(),
                    container_port: 80,
                    host_port: 8080,
                    host_ip: String::new(),
                },
                PortSpec {
                    protocol: "udp".into(),
                    container_port: 53,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            ..Default::default()
        };
        let a = attachment("abc", Path::new("/n"), &spec);
        assert_eq!(a.port_mappings.len(), 1);
        assert_eq!(a.port_mappings[0].protocol, "tcp");
        assert_eq!(a.ifname, "eth0");
        assert!(a
            .args
            .contains(&("K8S_POD_INFRA_CONTAINER_ID".into(), "abc".into())));
    }
}
