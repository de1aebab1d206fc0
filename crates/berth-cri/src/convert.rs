//! CRI messages to the engine's pod and container specs, and engine records to CRI statuses.

use std::collections::{BTreeMap, HashMap};

use berth_engine::container::{ContainerRecord, Status};
use berth_engine::pod::{
    ContainerSpec, DeviceSpec, DnsSpec, MountSpec, Namespaces, NsMode, PodSpec, PortSpec,
    Propagation, Resources, SeccompSpec, SecuritySpec,
};
use k8s_cri::v1 as cri;

use crate::error::CriError;

fn map(h: &HashMap<String, String>) -> BTreeMap<String, String> {
    h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn hmap(b: &BTreeMap<String, String>) -> HashMap<String, String> {
    b.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn ns_mode(v: i32) -> NsMode {
    match cri::NamespaceMode::try_from(v).unwrap_or(cri::NamespaceMode::Pod) {
        cri::NamespaceMode::Pod => NsMode::Pod,
        cri::NamespaceMode::Container => NsMode::Container,
        cri::NamespaceMode::Node => NsMode::Node,
        cri::NamespaceMode::Target => NsMode::Target,
    }
}

fn ns_value(m: NsMode) -> i32 {
    match m {
        NsMode::Pod => cri::NamespaceMode::Pod as i32,
        NsMode::Container => cri::NamespaceMode::Container as i32,
        NsMode::Node => cri::NamespaceMode::Node as i32,
        NsMode::Target => cri::NamespaceMode::Target as i32,
    }
}

fn namespaces(o: Option<&cri::NamespaceOption>) -> Namespaces {
    let Some(o) = o else {
        return Namespaces {
            userns: NsMode::Node,
            ..Default::default()
        };
    };
    Namespaces {
        network: ns_mode(o.network),
        pid: ns_mode(o.pid),
        ipc: ns_mode(o.ipc),
        target_id: o.target_id.clone(),
        // No userns options: the host's (as the kubelet means it).
        userns: o
            .userns_options
            .as_ref()
            .map(|u| ns_mode(u.mode))
            .unwrap_or(NsMode::Node),
    }
}

pub(crate) fn namespace_option(n: &Namespaces) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: ns_value(n.network),
        pid: ns_value(n.pid),
        ipc: ns_value(n.ipc),
        target_id: n.target_id.clone(),
        userns_options: None,
    }
}

pub(crate) fn pod_spec(c: &cri::PodSandboxConfig, handler: &str) -> Result<PodSpec, CriError> {
    let md = c
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("sandbox config must include metadata"))?;
    let linux = c.linux.clone().unwrap_or_default();
    let sec = linux.security_context.clone().unwrap_or_default();
    Ok(PodSpec {
        name: md.name.clone(),
        uid: md.uid.clone(),
        namespace: md.namespace.clone(),
        attempt: md.attempt,
        hostname: c.hostname.clone(),
        log_directory: c.log_directory.clone(),
        dns: c.dns_config.as_ref().map(|d| DnsSpec {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| PortSpec {
                protocol: match cri::Protocol::try_from(p.protocol) {
                    Ok(cri::Protocol::Udp) => "udp",
                    Ok(cri::Protocol::Sctp) => "sctp",
                    _ => "tcp",
                }
                .into(),
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: map(&c.labels),
        annotations: map(&c.annotations),
        cgroup_parent: linux.cgroup_parent.clone(),
        sysctls: map(&linux.sysctls),
        namespaces: namespaces(sec.namespace_options.as_ref()),
        privileged: sec.privileged,
        runtime_handler: handler.to_string(),
    })
}

/// `SecurityProfile`, or the older `*_profile_path` string (`runtime/default`, `unconfined`,
/// `localhost/<path>`). No profile at all is unconfined, as the CRI says.
fn seccomp(p: Option<&cri::SecurityProfile>, path: &str) -> Result<SeccompSpec, CriError> {
    use cri::security_profile::ProfileType;
    if let Some(p) = p {
        return Ok(
            match ProfileType::try_from(p.profile_type).unwrap_or(ProfileType::RuntimeDefault) {
                ProfileType::RuntimeDefault => SeccompSpec::RuntimeDefault,
                ProfileType::Unconfined => SeccompSpec::Unconfined,
                ProfileType::Localhost => {
                    if p.localhost_ref.is_empty() {
                        return Err(CriError::invalid("localhost seccomp profile needs a path"));
                    }
                    SeccompSpec::Localhost(p.localhost_ref.clone())
                }
            },
        );
    }
    Ok(match path {
        "" | "unconfined" => SeccompSpec::Unconfined,
        "runtime/default" | "docker/default" => SeccompSpec::RuntimeDefault,
        p => match p.strip_prefix("localhost/") {
            Some(f) => SeccompSpec::Localhost(f.to_string()),
            None => return Err(CriError::invalid(format!("unknown seccomp profile {p:?}"))),
        },
    })
}

pub(crate) fn resources(r: Option<&cri::LinuxContainerResources>) -> Resources {
    let Some(r) = r else {
        return Resources::default();
    };
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit: r.memory_limit_in_bytes,
        memory_swap_limit: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        unified: map(&r.unified),
    }
}

pub(crate) fn linux_resources(r: &Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: Vec::new(),
        unified: hmap(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit,
    }
}

fn propagation(v: i32) -> Propagation {
    match cri::MountPropagation::try_from(v) {
        Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
        Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
        _ => Propagation::Private,
    }
}

fn propagation_value(p: Propagation) -> i32 {
    match p {
        Propagation::Private => cri::MountPropagation::PropagationPrivate as i32,
        Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer as i32,
        Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional as i32,
    }
}

// `seccomp_profile_path` is deprecated in the API but older kubelets still send it.
#[allow(deprecated)]
pub(crate) fn container_spec(
    c: &cri::ContainerConfig,
    image: String,
) -> Result<ContainerSpec, CriError> {
    let md = c
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("container config must include metadata"))?;
    if md.name.is_empty() {
        return Err(CriError::invalid("container config must include a name"));
    }
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    if sc
        .namespace_options
        .as_ref()
        .and_then(|n| n.userns_options.as_ref())
        .is_some_and(|u| ns_mode(u.mode) != NsMode::Node)
    {
        return Err(CriError::invalid("user namespaces are not supported"));
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(ContainerSpec {
        name: md.name.clone(),
        attempt: md.attempt,
        image,
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c
            .envs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        labels: map(&c.labels),
        annotations: map(&c.annotations),
        mounts: c
            .mounts
            .iter()
            .map(|m| MountSpec {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                recursive_read_only: m.recursive_read_only,
                propagation: propagation(m.propagation),
                selinux_relabel: m.selinux_relabel,
            })
            .collect(),
        devices: c
            .devices
            .iter()
            .map(|d| DeviceSpec {
                container_path: d.container_path.clone(),
                host_path: d.host_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        log_path: c.log_path.clone(),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources: resources(linux.resources.as_ref()),
        security: SecuritySpec {
            add_capabilities: caps.add_capabilities.clone(),
            drop_capabilities: caps.drop_capabilities.clone(),
            privileged: sc.privileged,
            namespaces: namespaces(sc.namespace_options.as_ref()),
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            run_as_username: sc.run_as_username.clone(),
            readonly_rootfs: sc.readonly_rootfs,
            supplemental_groups: sc.supplemental_groups.clone(),
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
            no_new_privs: sc.no_new_privs,
            masked_paths: nonempty(&sc.masked_paths),
            readonly_paths: nonempty(&sc.readonly_paths),
            seccomp: seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path)?,
        },
    })
}

/// Unix nanoseconds of an RFC 3339 time (0 for Docker's zero time).
pub(crate) fn nanos(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .filter(|d| d.timestamp() > 0)
        .and_then(|d| d.timestamp_nanos_opt())
        .unwrap_or(0)
}

pub(crate) fn container_state(rec: &ContainerRecord) -> cri::ContainerState {
    match rec.state.status {
        // A start that failed leaves the container exited, with the error as its message.
        Status::Created if !rec.state.error.is_empty() => cri::ContainerState::ContainerExited,
        Status::Created => cri::ContainerState::ContainerCreated,
        Status::Running | Status::Paused | Status::Restarting => {
            cri::ContainerState::ContainerRunning
        }
        Status::Exited | Status::Dead | Status::Removing => {
            if nanos(&rec.state.started_at) == 0 && rec.state.error.is_empty() {
                cri::ContainerState::ContainerCreated
            } else {
                cri::ContainerState::ContainerExited
            }
        }
    }
}

pub(crate) fn container_metadata(rec: &ContainerRecord) -> Option<cri::ContainerMetadata> {
    rec.pod.as_ref().map(|p| cri::ContainerMetadata {
        name: p.spec.name.clone(),
        attempt: p.spec.attempt,
    })
}

pub(crate) fn image_spec(rec: &ContainerRecord) -> cri::ImageSpec {
    let image = rec
        .pod
        .as_ref()
        .map(|p| p.spec.image.clone())
        .unwrap_or_else(|| rec.config.image.clone());
    cri::ImageSpec {
        image,
        user_specified_image: rec.config.image.clone(),
        ..Default::default()
    }
}

pub(crate) fn container(rec: &ContainerRecord) -> Option<cri::Container> {
    let p = rec.pod.as_ref()?;
    Some(cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: p.pod_id.clone(),
        metadata: container_metadata(rec),
        image: Some(image_spec(rec)),
        image_ref: p.image_ref.clone(),
        state: container_state(rec) as i32,
        created_at: nanos(&rec.created),
        labels: hmap(&p.spec.labels),
        annotations: hmap(&p.spec.annotations),
        image_id: rec.image_id.clone(),
    })
}

pub(crate) fn container_status(
    rec: &ContainerRecord,
    user: Option<(u32, u32, Vec<u32>)>,
) -> Option<cri::ContainerStatus> {
    let p = rec.pod.as_ref()?;
    let state = container_state(rec);
    let (reason, message) = match state {
        cri::ContainerState::ContainerExited => {
            if rec.state.oom_killed {
                ("OOMKilled", rec.state.error.clone())
            } else if !rec.state.error.is_empty() {
                ("StartError", rec.state.error.clone())
            } else if rec.state.exit_code == 0 {
                ("Completed", String::new())
            } else {
                ("Error", String::new())
            }
        }
        _ => ("", String::new()),
    };
    let exited = state == cri::ContainerState::ContainerExited;
    Some(cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: container_metadata(rec),
        state: state as i32,
        created_at: nanos(&rec.created),
        started_at: nanos(&rec.state.started_at),
        finished_at: if exited {
            nanos(&rec.state.finished_at)
        } else {
            0
        },
        exit_code: if exited {
            rec.state.exit_code as i32
        } else {
            0
        },
        image: Some(image_spec(rec)),
        image_ref: p.image_ref.clone(),
        reason: reason.into(),
        message,
        labels: hmap(&p.spec.labels),
        annotations: hmap(&p.spec.annotations),
        mounts: p
            .spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                selinux_relabel: false,
                propagation: propagation_value(m.propagation),
                recursive_read_only: m.recursive_read_only,
                ..Default::default()
            })
            .collect(),
        log_path: p.log_file.clone(),
        resources: Some(cri::ContainerResources {
            linux: Some(linux_resources(&p.spec.resources)),
            windows: None,
        }),
        image_id: rec.image_id.clone(),
        user: user.map(|(uid, gid, groups)| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: uid as i64,
                gid: gid as i64,
                supplemental_groups: groups.into_iter().map(i64::from).collect(),
            }),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_profiles() {
        use cri::security_profile::ProfileType;
        assert_eq!(seccomp(None, "").unwrap(), SeccompSpec::Unconfined);
        let p = |t: ProfileType, r: &str| cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        };
        assert_eq!(
            seccomp(Some(&p(ProfileType::RuntimeDefault, "")), "").unwrap(),
            SeccompSpec::RuntimeDefault
        );
        assert_eq!(
            seccomp(Some(&p(ProfileType::Localhost, "/x.json")), "").unwrap(),
            SeccompSpec::Localhost("/x.json".into())
        );
        assert!(seccomp(Some(&p(ProfileType::Localhost, "")), "").is_err());
        assert_eq!(
            seccomp(None, "localhost//p.json").unwrap(),
            SeccompSpec::Localhost("/p.json".into())
        );
        assert_eq!(
            seccomp(None, "runtime/default").unwrap(),
            SeccompSpec::RuntimeDefault
        );
        assert!(seccomp(None, "bogus").is_err());
    }

    #[test]
    fn pod_specs_need_metadata_and_keep_namespaces() {
        let mut c = cri::PodSandboxConfig::default();
        assert!(pod_spec(&c, "").is_err());
        c.metadata = Some(cri::PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into(),
            attempt: 2,
        });
        c.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: String::new(),
        }];
        let s = pod_spec(&c, "runc").unwrap();
        assert_eq!((s.attempt, s.runtime_handler.as_str()), (2, "runc"));
        assert_eq!(s.namespaces.network, NsMode::Node);
        assert_eq!(s.namespaces.pid, NsMode::Container);
        assert_eq!(s.namespaces.ipc, NsMode::Pod);
        assert_eq!(s.namespaces.userns, NsMode::Node);
        assert_eq!(s.port_mappings[0].protocol, "udp");
    }

    #[test]
    fn times() {
        assert_eq!(nanos("0001-01-01T00:00:00Z"), 0);
        assert_eq!(nanos("1970-01-01T00:00:01.5Z"), 1_500_000_000);
        assert_eq!(nanos("garbage"), 0);
    }
}
