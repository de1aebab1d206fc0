//! What a pod and its containers are made from: the engine's own types for the settings a
//! Kubernetes node runtime receives (the CRI layer fills them from its messages), persisted with
//! the records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a namespace of a pod (or of one of its containers) comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsMode {
    /// Shared by the pod's containers.
    #[default]
    Pod,
    /// The container's own.
    Container,
    /// The host's.
    Node,
    /// Another container's (`target_id`).
    Target,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_id: String,
    /// User namespace mode; only `Node` (none of its own) is supported.
    #[serde(default)]
    pub userns: NsMode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    #[serde(default)]
    pub hostname: String,
    /// The directory under which the kubelet puts the containers' logs.
    #[serde(default)]
    pub log_directory: String,
    #[serde(default)]
    pub dns: Option<DnsSpec>,
    #[serde(default)]
    pub port_mappings: Vec<PortSpec>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The pod's cgroup (cgroupfs path) under which its containers go.
    #[serde(default)]
    pub cgroup_parent: String,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub namespaces: Namespaces,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub runtime_handler: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Propagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub recursive_read_only: bool,
    #[serde(default)]
    pub propagation: Propagation,
    #[serde(default)]
    pub selinux_relabel: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    pub permissions: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompSpec {
    /// No filter (CRI: unconfined, or no profile given).
    #[default]
    Unconfined,
    /// The runtime's default profile (Docker's).
    RuntimeDefault,
    /// A profile file on the host.
    Localhost(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub cpu_period: i64,
    #[serde(default)]
    pub cpu_quota: i64,
    #[serde(default)]
    pub cpu_shares: i64,
    #[serde(default)]
    pub memory_limit: i64,
    #[serde(default)]
    pub memory_swap_limit: i64,
    #[serde(default)]
    pub oom_score_adj: i64,
    #[serde(default)]
    pub cpuset_cpus: String,
    #[serde(default)]
    pub cpuset_mems: String,
    #[serde(default)]
    pub unified: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    #[serde(default)]
    pub add_capabilities: Vec<String>,
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub namespaces: Namespaces,
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub run_as_group: Option<i64>,
    #[serde(default)]
    pub run_as_username: String,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub supplemental_groups: Vec<i64>,
    /// Only the primary and the supplemental groups, not the image's groups of the user.
    #[serde(default)]
    pub strict_groups: bool,
    #[serde(default)]
    pub no_new_privs: bool,
    /// `None`: the runtime's defaults.
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    pub seccomp: SeccompSpec,
}

/// A container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub attempt: u32,
    /// The image as the kubelet named it.
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub envs: Vec<(String, String)>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Relative to the pod's log directory.
    #[serde(default)]
    pub log_path: String,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub security: SecuritySpec,
}

/// What a container record keeps of its pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodContainer {
    pub pod_id: String,
    pub spec: ContainerSpec,
    /// The image reference the image resolved to when created (`repo@digest` or id).
    #[serde(default)]
    pub image_ref: String,
    /// The pod's cgroup parent (see `cgroup_rel`).
    #[serde(default)]
    pub cgroup_parent: String,
    /// The log file on the host ("" when the kubelet asked for none).
    #[serde(default)]
    pub log_file: String,
}
