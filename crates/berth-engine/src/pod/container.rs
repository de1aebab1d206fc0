//! A pod's containers: created as engine containers (one record, one shim, the same lifecycle
//! as Docker's) that carry their pod (`ContainerRecord::pod`), and started with a spec that
//! joins the pod's namespaces and follows Kubernetes' settings instead of Docker's.

use crate::container::mounts::oci_bind;
use std::path::{Path, PathBuf};

use berth_api::types::{ContainerConfig, ContainerCreateBody, HostConfig};
use berth_runtime::spec::{ContainerRunConfig, NetworkMode, SeccompMode};
use berth_runtime::spec_extras::{DeviceMap, NsJoin, SpecExtras};

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::pod::{ContainerSpec, NsMode, PodContainer, PodRecord, Propagation, SeccompSpec};
use crate::Engine;

/// Docker-visible label naming a container's pod; `ps --filter label=io.berth.cri.pod` lists
/// the pods' containers, which are left out otherwise.
pub const POD_LABEL: &str = "io.berth.cri.pod";

/// Characters a container name may hold; others become `-`.
fn name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Checks what would only fail later, with the kubelet's wording where it has one.
fn validate(spec: &ContainerSpec, pod: &PodRecord) -> Result<()> {
    let sec = &spec.security;
    if sec.run_as_group.is_some() && sec.run_as_user.is_none() && sec.run_as_username.is_empty() {
        return Err(EngineError::InvalidParameter(
            "failed to generate user string: user group \"RunAsGroup\" is specified without user \"RunAsUser\" or \"RunAsUsername\"".into(),
        ));
    }
    if sec.privileged && !pod.spec.privileged {
        return Err(EngineError::InvalidParameter(
            "no privileged container allowed in sandbox".into(),
        ));
    }
    for m in &spec.mounts {
        if !m.container_path.starts_with('/') {
            return Err(EngineError::InvalidParameter(format!(
                "mount destination {:?} is not an absolute path",
                m.container_path
            )));
        }
        if m.host_path.is_empty() {
            return Err(EngineError::InvalidParameter(format!(
                "mount {:?} has no host path",
                m.container_path
            )));
        }
        if m.recursive_read_only {
            if !m.readonly {
                return Err(EngineError::InvalidParameter(format!(
                    "recursive read-only mount {:?} must be read-only",
                    m.container_path
                )));
            }
            if m.propagation != Propagation::Private {
                return Err(EngineError::InvalidParameter(format!(
                    "recursive read-only mount {:?} needs private propagation",
                    m.container_path
                )));
            }
        }
    }
    if let SeccompSpec::Localhost(p) = &sec.seccomp {
        if !Path::new(p).is_file() {
            return Err(EngineError::InvalidParameter(format!(
                "failed to load seccomp profile {p:?}: no such file"
            )));
        }
    }
    Ok(())
}

/// The `user` of the container's config: the kubelet's choice, else the image's.
fn user_string(spec: &ContainerSpec) -> String {
    let sec = &spec.security;
    let user = if !sec.run_as_username.is_empty() {
        sec.run_as_username.clone()
    } else if let Some(u) = sec.run_as_user {
        u.to_string()
    } else {
        return String::new();
    };
    match sec.run_as_group {
        Some(g) => format!("{user}:{g}"),
        None => user,
    }
}

impl PodContainer {
    /// The container's cgroups path: under the pod's cgroup parent (a path, or a systemd slice
    /// name as the kubelet's systemd driver gives), or with the Docker containers when the
    /// kubelet gives none.
    pub fn cgroups_path(&self, id: &str) -> String {
        crate::cgroups::container_path(id, &self.cgroup_parent)
    }
}

impl Engine {
    pub async fn create_pod_container(&self, pod_id: &str, spec: ContainerSpec) -> Result<String> {
        let p = self.pod_lookup(pod_id)?;
        let _g = p.op.lock().await;
        let pod = p.snapshot();
        if !pod.ready() {
            return Err(EngineError::Conflict(format!(
                "sandbox container {:?} is not running",
                pod.id
            )));
        }
        validate(&spec, &pod)?;
        let images = self.images();
        let lookup = spec.image.clone();
        let image = tokio::task::spawn_blocking(move || images.get(&lookup))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)?;
        let image_ref = image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let name = format!(
            "k8s_{}_{}_{}_{}_{}",
            name_part(&spec.name),
            name_part(&pod.spec.name),
            name_part(&pod.spec.namespace),
            name_part(&pod.spec.uid),
            spec.attempt
        );
        let log_file = if pod.spec.log_directory.is_empty() || spec.log_path.is_empty() {
            String::new()
        } else {
            Path::new(&pod.spec.log_directory)
                .join(&spec.log_path)
                .display()
                .to_string()
        };
        let mut labels = spec.labels.clone();
        labels.insert(POD_LABEL.into(), pod.id.clone());
        labels.insert("io.kubernetes.pod.name".into(), pod.spec.name.clone());
        labels.insert(
            "io.kubernetes.pod.namespace".into(),
            pod.spec.namespace.clone(),
        );
        labels.insert("io.kubernetes.pod.uid".into(), pod.spec.uid.clone());
        labels.insert("io.kubernetes.container.name".into(), spec.name.clone());
        let config = ContainerConfig {
            hostname: std::fs::read_to_string(self.pod_dir(&pod.id).join("hostname"))
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            user: user_string(&spec),
            tty: spec.tty,
            open_stdin: spec.stdin,
            stdin_once: spec.stdin_once,
            env: Some(spec.envs.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
            working_dir: spec.working_dir.clone(),
            image: spec.image.clone(),
            labels: Some(labels),
            ..Default::default()
        };
        let host_config = HostConfig {
            network_mode: "none".into(),
            privileged: spec.security.privileged,
            readonly_rootfs: spec.security.readonly_rootfs,
            ..Default::default()
        };
        let pc = PodContainer {
            pod_id: pod.id.clone(),
            spec,
            image_ref,
            cgroup_parent: pod.spec.cgroup_parent.clone(),
            log_file,
        };
        let body = ContainerCreateBody {
            config,
            host_config: Some(host_config),
            networking_config: None,
        };
        let (id, _) = self
            .create_as(
                Some(&name),
                body,
                crate::container::Owner::Pod(Box::new(pc)),
            )
            .await?;
        Ok(id)
    }

    /// The run configuration of a pod's container, in place of Docker's (`start` calls it).
    pub(crate) fn pod_run_config(
        &self,
        rec: &ContainerRecord,
        pc: &PodContainer,
        rootfs: PathBuf,
    ) -> Result<ContainerRunConfig> {
        let pod = self.pod_lookup(&pc.pod_id)?.snapshot();
        let infra = match (pod.ready(), pod.infra) {
            (true, Some(i)) => i,
            _ => {
                return Err(EngineError::Conflict(format!(
                    "sandbox container {:?} is not running",
                    pod.id
                )))
            }
        };
        let spec = &pc.spec;
        let sec = &spec.security;
        let mounts = self.pod_container_mounts(&pod, spec)?;

        let seccomp = seccomp_mode(sec)?;
        let host_net = pod.host_network();
        let pid = match sec.namespaces.pid {
            NsMode::Node => NsJoin::Host,
            NsMode::Pod if pod.spec.namespaces.pid == NsMode::Pod => {
                NsJoin::Path(infra.ns_path("pid"))
            }
            NsMode::Target => {
                let t = self.lookup(&sec.namespaces.target_id)?.snapshot();
                if !t.state.status.is_running() {
                    return Err(EngineError::Conflict(format!(
                        "target container {} is not running",
                        t.id
                    )));
                }
                NsJoin::Path(format!("/proc/{}/ns/pid", t.state.pid).into())
            }
            _ => NsJoin::New,
        };
        let extras = SpecExtras {
            ipc: if pod.spec.namespaces.ipc == NsMode::Node {
                NsJoin::Host
            } else {
                NsJoin::Path(infra.ns_path("ipc"))
            },
            uts: if host_net {
                NsJoin::Host
            } else {
                NsJoin::Path(infra.ns_path("uts"))
            },
            pid,
            masked_paths: sec.masked_paths.clone(),
            readonly_paths: sec.readonly_paths.clone(),
            sysctls: Some(pod.spec.sysctls.clone().into_iter().collect()),
            oom_score_adj: Some(crate::pod::clamp_oom_score_adj(
                spec.resources.oom_score_adj,
            )),
            devices: spec
                .devices
                .iter()
                .map(|d| DeviceMap {
                    host_path: d.host_path.clone().into(),
                    container_path: d.container_path.clone(),
                    permissions: d.permissions.clone(),
                })
                .collect(),
            unified: spec.resources.unified.clone().into_iter().collect(),
            supplemental_groups: Some(
                sec.supplemental_groups
                    .iter()
                    .filter_map(|g| u32::try_from(*g).ok())
                    .collect(),
            ),
            strict_groups: sec.strict_groups,
        };
        let memory = spec.resources.memory_limit.max(0);
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        Ok(ContainerRunConfig {
            id: rec.id.clone(),
            rootfs,
            args,
            env: rec.config.env.clone().unwrap_or_default(),
            cwd: rec.config.working_dir.clone(),
            user: rec.config.user.clone(),
            // The kubelet's groups, with the policy it asks for (in `extras`).
            group_add: Vec::new(),
            hostname: rec.config.hostname.clone(),
            tty: rec.config.tty,
            readonly_rootfs: sec.readonly_rootfs,
            privileged: sec.privileged,
            cap_add: sec.add_capabilities.clone(),
            cap_drop: sec.drop_capabilities.clone(),
            no_new_privileges: sec.no_new_privs,
            // The kubelet's limits are the same cgroup limits as Docker's (the v2 weight from
            // its shares, as runc converts them); its unified map and the OOM score are extras.
            resources: berth_runtime::cgroup::Resources {
                memory,
                // No swap beyond the limit unless the kubelet says so.
                memory_swap: match spec.resources.memory_swap_limit {
                    s if s > 0 => s,
                    _ => memory,
                },
                cpu_shares: spec.resources.cpu_shares.max(0),
                cpu_period: spec.resources.cpu_period.max(0),
                cpu_quota: spec.resources.cpu_quota.max(0),
                cpuset_cpus: spec.resources.cpuset_cpus.clone(),
                cpuset_mems: spec.resources.cpuset_mems.clone(),
                ..Default::default()
            },
            // The kubelet sets no rlimits (the runtime's defaults).
            ulimits: Vec::new(),
            mounts,
            cgroups_path: pc.cgroups_path(&rec.id),
            network: match (&pod.netns, host_net) {
                (_, true) => NetworkMode::Host,
                (Some(ns), false) => NetworkMode::Path(ns.clone()),
                (None, false) => {
                    return Err(EngineError::Conflict(format!(
                        "sandbox {:?} has no network namespace",
                        pod.id
                    )))
                }
            },
            isolation: Default::default(),
            oom_score_adj: 0,
            seccomp,
            extras,
        })
    }

    /// The pod's shared `/dev/shm`: its own tmpfs, or the host's with the host's IPC.
    /// A pod container's mounts: the pod's /etc files and /dev/shm unless the kubelet mounts
    /// its own there, then the kubelet's, sorted so parents come first.
    fn pod_container_mounts(
        &self,
        pod: &PodRecord,
        spec: &ContainerSpec,
    ) -> Result<Vec<oci_spec::runtime::Mount>> {
        let sec = &spec.security;
        let pod_dir = self.pod_dir(&pod.id);
        let mut mounts = Vec::new();
        let given = |dest: &str| spec.mounts.iter().any(|m| m.container_path == dest);
        for (dest, file) in [
            ("/etc/hostname", "hostname"),
            ("/etc/hosts", "hosts"),
            ("/etc/resolv.conf", "resolv.conf"),
        ] {
            if !given(dest) {
                mounts.push(oci_bind(
                    dest,
                    pod_dir.join(file),
                    &["rbind", "rprivate"],
                    sec.readonly_rootfs,
                )?);
            }
        }
        let shm = self.pod_shm(pod);
        if !given("/dev/shm") {
            if let Some(shm) = shm {
                mounts.push(oci_bind("/dev/shm", &shm, &["rbind", "rprivate"], false)?);
            }
        }
        for m in &spec.mounts {
            let src = PathBuf::from(&m.host_path);
            if !src.exists() {
                std::fs::create_dir_all(&src).map_err(|e| {
                    EngineError::InvalidParameter(format!("failed to mkdir {:?}: {e}", m.host_path))
                })?;
            }
            // Symlinks in the source are the host's to follow.
            let src = std::fs::canonicalize(&src).unwrap_or(src);
            let prop = match m.propagation {
                Propagation::Private => "rprivate",
                Propagation::HostToContainer => "rslave",
                Propagation::Bidirectional => "rshared",
            };
            let mut opts = vec!["rbind", prop];
            if m.recursive_read_only {
                opts.push("rro");
            }
            mounts.push(oci_bind(&m.container_path, &src, &opts, m.readonly)?);
        }
        crate::container::mounts::sort_mounts(&mut mounts);
        Ok(mounts)
    }

    fn pod_shm(&self, pod: &PodRecord) -> Option<PathBuf> {
        if pod.spec.namespaces.ipc == NsMode::Node {
            return Some(PathBuf::from("/dev/shm"));
        }
        let p = self.pod_run_dir(&pod.id).join("shm");
        berth_net::netns::is_pinned(&p).then_some(p)
    }

    /// The user a running pod container's process has (uid, gid, groups), from its spec.
    pub fn pod_container_user(&self, id: &str) -> Option<(u32, u32, Vec<u32>)> {
        let c = self.lookup(id).ok()?;
        if !c.snapshot().state.status.is_running() {
            return None;
        }
        let spec =
            oci_spec::runtime::Spec::load(self.runtime_dir(&c.id).join("config.json")).ok()?;
        let u = spec.process().as_ref()?.user().clone();
        Some((
            u.uid(),
            u.gid(),
            u.additional_gids().clone().unwrap_or_default(),
        ))
    }

    /// New resources for a pod's container: applied to its cgroup and kept in its record.
    pub async fn update_pod_container_resources(
        &self,
        id: &str,
        r: crate::pod::Resources,
    ) -> Result<()> {
        let c = self.lookup(id)?;
        if c.snapshot().pod.is_none() {
            return Err(EngineError::NotFound(format!(
                "container {id} is not a pod's"
            )));
        }
        let pos = |v: i64| (v > 0).then_some(v);
        let memory = pos(r.memory_limit);
        let u = crate::ops::UpdateConfig {
            memory,
            memory_swap: pos(r.memory_swap_limit).or(memory),
            cpu_shares: pos(r.cpu_shares),
            cpu_period: pos(r.cpu_period),
            cpu_quota: pos(r.cpu_quota),
            cpuset_cpus: (!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()),
            ..Default::default()
        };
        self.update(&c.id, u).await?;
        c.update(|rec| {
            if let Some(p) = rec.pod.as_mut() {
                p.spec.resources = r;
            }
        })?;
        Ok(())
    }

    /// The kubelet rotated the log (renamed it): the shim opens the path again.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.lookup(id)?;
        let rec = c.snapshot();
        if !rec.state.status.is_running() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        self.runtime().reopen_log(&self.runtime_dir(&c.id)).await
    }
}

/// The seccomp profile the kubelet asks for (none for a privileged container).
fn seccomp_mode(sec: &crate::pod::SecuritySpec) -> Result<SeccompMode> {
    Ok(if sec.privileged {
        SeccompMode::Unconfined
    } else {
        match &sec.seccomp {
            SeccompSpec::Unconfined => SeccompMode::Unconfined,
            SeccompSpec::RuntimeDefault => SeccompMode::Default,
            SeccompSpec::Localhost(p) => {
                SeccompMode::Profile(std::fs::read_to_string(p).map_err(|e| {
                    EngineError::InvalidParameter(format!(
                        "failed to load seccomp profile {p:?}: {e}"
                    ))
                })?)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::SecuritySpec;

    #[test]
    fn names_and_users() {
        assert_eq!(name_part("a b/c_d.e-f"), "a-b-c_d.e-f");
        let mut s = ContainerSpec::default();
        assert_eq!(user_string(&s), "");
        s.security = SecuritySpec {
            run_as_user: Some(1001),
            run_as_group: Some(1002),
            ..Default::default()
        };
        assert_eq!(user_string(&s), "1001:1002");
        s.security.run_as_username = "nobody".into();
        assert_eq!(user_string(&s), "nobody:1002");
        let pc = PodContainer {
            cgroup_parent: "/kubepods/pod1/".into(),
            ..Default::default()
        };
        assert_eq!(pc.cgroups_path("abc"), "/kubepods/pod1/abc");
        assert_eq!(PodContainer::default().cgroups_path("abc"), "/berth/abc");
    }

    #[test]
    fn validation_follows_the_kubelets_rules() {
        let pod = PodRecord {
            id: "p".into(),
            created: 0,
            spec: Default::default(),
            state: crate::pod::PodState::Ready,
            netns: None,
            cni_result: None,
            ips: vec![],
            infra: None,
        };
        let mut s = ContainerSpec::default();
        s.security.run_as_group = Some(5);
        assert!(validate(&s, &pod)
            .unwrap_err()
            .to_string()
            .contains("RunAsGroup"));
        s.security.run_as_group = None;
        s.security.privileged = true;
        assert!(validate(&s, &pod).is_err());
        s.security.privileged = false;
        s.mounts = vec![crate::pod::MountSpec {
            container_path: "/mnt".into(),
            host_path: "/tmp".into(),
            readonly: false,
            recursive_read_only: true,
            ..Default::default()
        }];
        assert!(validate(&s, &pod).is_err());
        s.mounts[0].readonly = true;
        s.mounts[0].propagation = Propagation::HostToContainer;
        assert!(validate(&s, &pod).is_err());
        s.mounts[0].propagation = Propagation::Private;
        assert!(validate(&s, &pod).is_ok());
        s.security.seccomp = SeccompSpec::Localhost("/nonexistent/profile.json".into());
        assert!(validate(&s, &pod).is_err());
    }
}
