//! Docker Engine API (v1.45) wire types.
//!
//! Field names are the wire's (PascalCase, with Docker's irregular spellings renamed explicitly).
//! Every struct is `#[serde(default)]` so the partial bodies real clients send (docker CLI,
//! docker-py, compose) parse, and collection fields are `Option` because Go clients send `null`
//! for nil slices and maps. Scalars that a client may send as `null` go through [`nullable`].
//! Fields Docker marks `omitempty` are skipped when empty so our output matches Docker's.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::network::NetworkMode;

/// `null` (as docker-py sends for unset strings) becomes the type's default.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's `StrSlice` (Cmd, Entrypoint, Shell): a JSON list, a single string, or null.
pub fn strslice<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// A string that some clients send as a number (`HostPort: 8080`).
pub fn string_or_number<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string or a number, got {other}"
            )))
        }
    })
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// String-keyed string map (labels, options, sysctls...). Sorted so output is stable.
pub type StringMap = BTreeMap<String, String>;
/// `{"80/tcp": {}}` sets, as used by `ExposedPorts` and `Volumes`.
pub type EmptyObjectMap = BTreeMap<String, Value>;
/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`; a `null` value means "exposed, not published".
pub type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;

/// Every non-2xx response body: `{"message": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorResponse {
    #[serde(deserialize_with = "nullable")]
    pub message: String,
}

/// `{"Id": "..."}` (exec create, commit, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdResponse {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
}

// ---------------------------------------------------------------- system

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ComponentVersion {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PlatformName {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SystemVersion {
    pub platform: PlatformName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentVersion>>,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", deserialize_with = "nullable")]
    pub min_api_version: String,
    #[serde(deserialize_with = "nullable")]
    pub git_commit: String,
    #[serde(deserialize_with = "nullable")]
    pub go_version: String,
    #[serde(deserialize_with = "nullable")]
    pub os: String,
    #[serde(deserialize_with = "nullable")]
    pub arch: String,
    #[serde(deserialize_with = "nullable")]
    pub kernel_version: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub experimental: bool,
    #[serde(deserialize_with = "nullable")]
    pub build_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PluginsInfo {
    pub volume: Option<Vec<String>>,
    pub network: Option<Vec<String>>,
    pub authorization: Option<Vec<String>>,
    pub log: Option<Vec<String>>,
}

/// containerd/runc/init commit as reported by `/info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Commit {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(
        rename = "Expected",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub expected: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeInfo {
    #[serde(
        rename = "path",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub path: String,
    #[serde(rename = "runtimeArgs", skip_serializing_if = "Option::is_none")]
    pub runtime_args: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IndexInfo {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    pub mirrors: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub secure: bool,
    #[serde(deserialize_with = "nullable")]
    pub official: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RegistryServiceConfig {
    #[serde(rename = "AllowNondistributableArtifactsCIDRs")]
    pub allow_nondistributable_artifacts_cidrs: Option<Vec<String>>,
    pub allow_nondistributable_artifacts_hostnames: Option<Vec<String>>,
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Option<Vec<String>>,
    pub index_configs: Option<BTreeMap<String, IndexInfo>>,
    pub mirrors: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID", deserialize_with = "nullable")]
    pub node_id: String,
    #[serde(deserialize_with = "nullable")]
    pub node_addr: String,
    /// "inactive" for a non-swarm engine.
    #[serde(deserialize_with = "nullable")]
    pub local_node_state: String,
    #[serde(deserialize_with = "nullable")]
    pub control_available: bool,
    #[serde(deserialize_with = "nullable")]
    pub error: String,
    pub remote_managers: Option<Vec<Value>>,
}

/// `GET /info`: what `docker info` prints, plus the rest of the spec's scalar fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SystemInfo {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub containers: i64,
    #[serde(deserialize_with = "nullable")]
    pub containers_running: i64,
    #[serde(deserialize_with = "nullable")]
    pub containers_paused: i64,
    #[serde(deserialize_with = "nullable")]
    pub containers_stopped: i64,
    #[serde(deserialize_with = "nullable")]
    pub images: i64,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    pub driver_status: Option<Vec<[String; 2]>>,
    #[serde(deserialize_with = "nullable")]
    pub docker_root_dir: String,
    pub plugins: PluginsInfo,
    #[serde(deserialize_with = "nullable")]
    pub memory_limit: bool,
    #[serde(deserialize_with = "nullable")]
    pub swap_limit: bool,
    #[serde(
        rename = "KernelMemoryTCP",
        skip_serializing_if = "is_false",
        deserialize_with = "nullable"
    )]
    pub kernel_memory_tcp: bool,
    #[serde(deserialize_with = "nullable")]
    pub cpu_cfs_period: bool,
    #[serde(deserialize_with = "nullable")]
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares", deserialize_with = "nullable")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet", deserialize_with = "nullable")]
    pub cpu_set: bool,
    #[serde(deserialize_with = "nullable")]
    pub pids_limit: bool,
    #[serde(deserialize_with = "nullable")]
    pub oom_kill_disable: bool,
    #[serde(rename = "IPv4Forwarding", deserialize_with = "nullable")]
    pub ipv4_forwarding: bool,
    #[serde(deserialize_with = "nullable")]
    pub bridge_nf_iptables: bool,
    #[serde(rename = "BridgeNfIp6tables", deserialize_with = "nullable")]
    pub bridge_nf_ip6tables: bool,
    #[serde(deserialize_with = "nullable")]
    pub debug: bool,
    #[serde(rename = "NFd", deserialize_with = "nullable")]
    pub nfd: i64,
    #[serde(deserialize_with = "nullable")]
    pub n_goroutines: i64,
    #[serde(deserialize_with = "nullable")]
    pub system_time: String,
    #[serde(deserialize_with = "nullable")]
    pub logging_driver: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_driver: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_version: String,
    #[serde(deserialize_with = "nullable")]
    pub n_events_listener: i64,
    #[serde(deserialize_with = "nullable")]
    pub kernel_version: String,
    #[serde(deserialize_with = "nullable")]
    pub operating_system: String,
    #[serde(rename = "OSVersion", deserialize_with = "nullable")]
    pub os_version: String,
    #[serde(rename = "OSType", deserialize_with = "nullable")]
    pub os_type: String,
    #[serde(deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(rename = "NCPU", deserialize_with = "nullable")]
    pub ncpu: i64,
    #[serde(deserialize_with = "nullable")]
    pub mem_total: i64,
    #[serde(deserialize_with = "nullable")]
    pub index_server_address: String,
    pub registry_config: Option<RegistryServiceConfig>,
    pub generic_resources: Option<Vec<Value>>,
    #[serde(deserialize_with = "nullable")]
    pub http_proxy: String,
    #[serde(deserialize_with = "nullable")]
    pub https_proxy: String,
    #[serde(deserialize_with = "nullable")]
    pub no_proxy: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    pub labels: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub experimental_build: bool,
    #[serde(deserialize_with = "nullable")]
    pub server_version: String,
    pub runtimes: Option<BTreeMap<String, RuntimeInfo>>,
    #[serde(deserialize_with = "nullable")]
    pub default_runtime: String,
    pub swarm: SwarmInfo,
    #[serde(deserialize_with = "nullable")]
    pub live_restore_enabled: bool,
    #[serde(deserialize_with = "nullable")]
    pub isolation: String,
    #[serde(deserialize_with = "nullable")]
    pub init_binary: String,
    pub containerd_commit: Commit,
    pub runc_commit: Commit,
    pub init_commit: Commit,
    pub security_options: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub product_license: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_address_pools: Option<Vec<Value>>,
    pub warnings: Option<Vec<String>>,
    #[serde(rename = "CDISpecDirs")]
    pub cdi_spec_dirs: Option<Vec<String>>,
}

// ---------------------------------------------------------------- container config

/// `Healthcheck` in a container config; durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub start_interval: i64,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub retries: i64,
}

/// The portable part of a container's configuration (the create body's top level, `Config` in
/// container and image inspect).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "nullable")]
    pub domainname: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<EmptyObjectMap>,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "strslice")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub args_escaped: bool,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    pub volumes: Option<EmptyObjectMap>,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    #[serde(deserialize_with = "strslice")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub network_disabled: bool,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub mac_address: String,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<StringMap>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "strslice")]
    pub shell: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    pub config: Option<StringMap>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(deserialize_with = "string_or_number")]
    pub host_port: String,
}

/// `Name` is "", "no", "always", "unless-stopped" or "on-failure".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ulimit {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub soft: i64,
    #[serde(deserialize_with = "nullable")]
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DeviceMapping {
    #[serde(deserialize_with = "nullable")]
    pub path_on_host: String,
    #[serde(deserialize_with = "nullable")]
    pub path_in_container: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct BindOptions {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub propagation: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub non_recursive: bool,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub create_mountpoint: bool,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub read_only_non_recursive: bool,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub read_only_force_recursive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DriverConfig {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<StringMap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeOptions {
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_copy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<StringMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<DriverConfig>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subpath: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TmpfsOptions {
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub size_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Vec<String>>>,
}

/// `HostConfig.Mounts[]` (`--mount`). `Type` is "bind", "volume", "tmpfs", "npipe" or "cluster".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Mount {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub target: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub source: String,
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub read_only: bool,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub consistency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

/// The non-portable part of a container's configuration (resources, mounts, networking mode...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HostConfig {
    // Resources (Docker embeds its Resources struct here).
    #[serde(deserialize_with = "nullable")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "nullable")]
    pub memory: i64,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_parent: String,
    #[serde(deserialize_with = "nullable")]
    pub blkio_weight: u16,
    pub blkio_weight_device: Option<Vec<Value>>,
    pub blkio_device_read_bps: Option<Vec<Value>>,
    pub blkio_device_write_bps: Option<Vec<Value>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<Value>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<Value>>,
    #[serde(deserialize_with = "nullable")]
    pub cpu_period: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_quota: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_realtime_period: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_realtime_runtime: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    #[serde(deserialize_with = "nullable")]
    pub cpuset_mems: String,
    pub devices: Option<Vec<DeviceMapping>>,
    pub device_cgroup_rules: Option<Vec<String>>,
    pub device_requests: Option<Vec<Value>>,
    #[serde(
        rename = "KernelMemoryTCP",
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "nullable"
    )]
    pub kernel_memory_tcp: i64,
    #[serde(deserialize_with = "nullable")]
    pub memory_reservation: i64,
    #[serde(deserialize_with = "nullable")]
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub nano_cpus: i64,
    pub oom_kill_disable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(deserialize_with = "nullable")]
    pub cpu_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_percent: i64,
    #[serde(rename = "IOMaximumIOps", deserialize_with = "nullable")]
    pub io_maximum_iops: u64,
    #[serde(rename = "IOMaximumBandwidth", deserialize_with = "nullable")]
    pub io_maximum_bandwidth: u64,

    // Host configuration proper.
    pub binds: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    #[serde(deserialize_with = "nullable")]
    pub network_mode: NetworkMode,
    pub port_bindings: Option<PortMap>,
    pub restart_policy: RestartPolicy,
    #[serde(deserialize_with = "nullable")]
    pub auto_remove: bool,
    #[serde(deserialize_with = "nullable")]
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// `[height, width]` of the TTY at creation.
    pub console_size: Option<[u64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<StringMap>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub cgroupns_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub ipc_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub oom_score_adj: i64,
    #[serde(deserialize_with = "nullable")]
    pub pid_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    #[serde(deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_opt: Option<StringMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<StringMap>,
    #[serde(rename = "UTSMode", deserialize_with = "nullable")]
    pub uts_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub userns_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub shm_size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<StringMap>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub runtime: String,
    #[serde(deserialize_with = "nullable")]
    pub isolation: String,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(
        rename = "IPv4Address",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub ipv4_address: String,
    #[serde(
        rename = "IPv6Address",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs", skip_serializing_if = "Option::is_none")]
    pub link_local_ips: Option<Vec<String>>,
}

/// One network attachment (create's `NetworkingConfig.EndpointsConfig`, inspect's `Networks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    pub links: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub mac_address: String,
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "NetworkID", deserialize_with = "nullable")]
    pub network_id: String,
    #[serde(rename = "EndpointID", deserialize_with = "nullable")]
    pub endpoint_id: String,
    #[serde(deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(rename = "IPAddress", deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen", deserialize_with = "nullable")]
    pub ip_prefix_len: i64,
    #[serde(rename = "IPv6Gateway", deserialize_with = "nullable")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address", deserialize_with = "nullable")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", deserialize_with = "nullable")]
    pub global_ipv6_prefix_len: i64,
    pub driver_opts: Option<StringMap>,
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, EndpointSettings>>,
}

/// `POST /containers/create` body: the container config at top level plus host and network config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerCreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<NetworkingConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerCreateResponse {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    /// Docker sends `[]`, never null, here.
    #[serde(deserialize_with = "nullable")]
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------- container list / inspect

/// A port in `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Port {
    #[serde(
        rename = "IP",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub ip: String,
    #[serde(rename = "PrivatePort", deserialize_with = "nullable")]
    pub private_port: u16,
    #[serde(rename = "PublicPort", skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// "tcp", "udp" or "sctp".
    #[serde(rename = "Type", deserialize_with = "nullable")]
    pub r#type: String,
}

/// A mount as reported by inspect and ps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    #[serde(deserialize_with = "nullable")]
    pub destination: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub mode: String,
    #[serde(rename = "RW", deserialize_with = "nullable")]
    pub rw: bool,
    #[serde(deserialize_with = "nullable")]
    pub propagation: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    #[serde(deserialize_with = "nullable")]
    pub network_mode: NetworkMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<StringMap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SummaryNetworkSettings {
    pub networks: Option<BTreeMap<String, EndpointSettings>>,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerSummary {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    /// With the leading slash, as Docker reports them.
    #[serde(deserialize_with = "nullable")]
    pub names: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(rename = "ImageID", deserialize_with = "nullable")]
    pub image_id: String,
    #[serde(deserialize_with = "nullable")]
    pub command: String,
    /// Unix seconds.
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
    #[serde(deserialize_with = "nullable")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub labels: StringMap,
    /// "created", "running", "paused", "restarting", "removing", "exited" or "dead".
    #[serde(deserialize_with = "nullable")]
    pub state: String,
    /// Human text: "Up 3 seconds", "Exited (0) 2 seconds ago".
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworkSettings,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<MountPoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthcheckResult {
    #[serde(deserialize_with = "nullable")]
    pub start: String,
    #[serde(deserialize_with = "nullable")]
    pub end: String,
    #[serde(deserialize_with = "nullable")]
    pub exit_code: i64,
    #[serde(deserialize_with = "nullable")]
    pub output: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Health {
    /// "none", "starting", "healthy" or "unhealthy".
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub failing_streak: i64,
    pub log: Option<Vec<HealthcheckResult>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerState {
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub running: bool,
    #[serde(deserialize_with = "nullable")]
    pub paused: bool,
    #[serde(deserialize_with = "nullable")]
    pub restarting: bool,
    #[serde(rename = "OOMKilled", deserialize_with = "nullable")]
    pub oom_killed: bool,
    #[serde(deserialize_with = "nullable")]
    pub dead: bool,
    #[serde(deserialize_with = "nullable")]
    pub pid: i64,
    #[serde(deserialize_with = "nullable")]
    pub exit_code: i64,
    #[serde(deserialize_with = "nullable")]
    pub error: String,
    /// RFC 3339 with nanoseconds; "0001-01-01T00:00:00Z" when never started (Go's zero time).
    #[serde(deserialize_with = "nullable")]
    pub started_at: String,
    #[serde(deserialize_with = "nullable")]
    pub finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct GraphDriverData {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    pub data: Option<StringMap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(deserialize_with = "nullable")]
    pub bridge: String,
    #[serde(rename = "SandboxID", deserialize_with = "nullable")]
    pub sandbox_id: String,
    #[serde(deserialize_with = "nullable")]
    pub sandbox_key: String,
    pub ports: Option<PortMap>,
    #[serde(deserialize_with = "nullable")]
    pub hairpin_mode: bool,
    #[serde(rename = "LinkLocalIPv6Address", deserialize_with = "nullable")]
    pub link_local_ipv6_address: String,
    #[serde(rename = "LinkLocalIPv6PrefixLen", deserialize_with = "nullable")]
    pub link_local_ipv6_prefix_len: i64,
    #[serde(rename = "SecondaryIPAddresses")]
    pub secondary_ip_addresses: Option<Vec<Value>>,
    #[serde(rename = "SecondaryIPv6Addresses")]
    pub secondary_ipv6_addresses: Option<Vec<Value>>,
    #[serde(rename = "EndpointID", deserialize_with = "nullable")]
    pub endpoint_id: String,
    #[serde(deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address", deserialize_with = "nullable")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", deserialize_with = "nullable")]
    pub global_ipv6_prefix_len: i64,
    #[serde(rename = "IPAddress", deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen", deserialize_with = "nullable")]
    pub ip_prefix_len: i64,
    #[serde(rename = "IPv6Gateway", deserialize_with = "nullable")]
    pub ipv6_gateway: String,
    #[serde(deserialize_with = "nullable")]
    pub mac_address: String,
    pub networks: Option<BTreeMap<String, EndpointSettings>>,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerInspect {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    /// RFC 3339 with nanoseconds.
    #[serde(deserialize_with = "nullable")]
    pub created: String,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    pub state: ContainerState,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(deserialize_with = "nullable")]
    pub resolv_conf_path: String,
    #[serde(deserialize_with = "nullable")]
    pub hostname_path: String,
    #[serde(deserialize_with = "nullable")]
    pub hosts_path: String,
    #[serde(deserialize_with = "nullable")]
    pub log_path: String,
    /// With the leading slash.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub restart_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub platform: String,
    #[serde(deserialize_with = "nullable")]
    pub mount_label: String,
    #[serde(deserialize_with = "nullable")]
    pub process_label: String,
    #[serde(deserialize_with = "nullable")]
    pub app_armor_profile: String,
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Option<Vec<String>>,
    pub host_config: HostConfig,
    pub graph_driver: GraphDriverData,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<MountPoint>,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct WaitError {
    #[serde(deserialize_with = "nullable")]
    pub message: String,
}

/// `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerWaitResponse {
    #[serde(deserialize_with = "nullable")]
    pub status_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<WaitError>,
}

// ---------------------------------------------------------------- exec

/// `POST /containers/{id}/exec` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u64; 2]>,
    #[serde(deserialize_with = "nullable")]
    pub detach_keys: String,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "strslice")]
    pub cmd: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
}

/// `POST /exec/{id}/start` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecStartConfig {
    #[serde(deserialize_with = "nullable")]
    pub detach: bool,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u64; 2]>,
}

/// `ProcessConfig` of an exec inspect (lowercase on the wire).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecProcessConfig {
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub entrypoint: String,
    #[serde(deserialize_with = "nullable")]
    pub arguments: Vec<String>,
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(deserialize_with = "nullable")]
    pub can_remove: bool,
    #[serde(rename = "ContainerID", deserialize_with = "nullable")]
    pub container_id: String,
    #[serde(deserialize_with = "nullable")]
    pub detach_keys: String,
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub running: bool,
    /// `null` while running.
    pub exit_code: Option<i64>,
    pub process_config: ExecProcessConfig,
    #[serde(deserialize_with = "nullable")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub open_stderr: bool,
    #[serde(deserialize_with = "nullable")]
    pub open_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub pid: i64,
}

// ---------------------------------------------------------------- images

/// One entry of `GET /images/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageSummary {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "ParentId", deserialize_with = "nullable")]
    pub parent_id: String,
    #[serde(deserialize_with = "nullable")]
    pub repo_tags: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
    /// -1 when not computed.
    #[serde(deserialize_with = "nullable")]
    pub shared_size: i64,
    /// Deprecated in 1.44; kept for older clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub labels: StringMap,
    /// -1 when not computed.
    #[serde(deserialize_with = "nullable")]
    pub containers: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageMetadata {
    /// RFC 3339, or "" if never tagged after pull/load.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub last_tag_time: String,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageInspect {
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub repo_tags: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub repo_digests: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub parent: String,
    #[serde(deserialize_with = "nullable")]
    pub comment: String,
    /// The committed container's id (deprecated in Docker, still returned by API 1.45 for
    /// images made by `docker commit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The committed container's config (see `container`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_config: Option<ContainerConfig>,
    /// RFC 3339 with nanoseconds.
    #[serde(deserialize_with = "nullable")]
    pub created: String,
    #[serde(deserialize_with = "nullable")]
    pub docker_version: String,
    #[serde(deserialize_with = "nullable")]
    pub author: String,
    pub config: ContainerConfig,
    #[serde(deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub variant: String,
    #[serde(deserialize_with = "nullable")]
    pub os: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub os_version: String,
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    pub graph_driver: GraphDriverData,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub metadata: ImageMetadata,
}

/// One entry of `GET /images/{name}/history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HistoryItem {
    /// "<missing>" for layers that are not images of their own.
    #[serde(rename = "Id", deserialize_with = "nullable")]
    pub id: String,
    /// Unix seconds.
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
    #[serde(deserialize_with = "nullable")]
    pub created_by: String,
    #[serde(deserialize_with = "nullable")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
    #[serde(deserialize_with = "nullable")]
    pub comment: String,
}

/// One entry of `DELETE /images/{name}`: exactly one of the two is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageDeleteItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

// ---------------------------------------------------------------- streams

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// One line of a JSON-lines progress stream (pull, push, load, import, build). Lowercase on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<Value>,
}

// ---------------------------------------------------------------- queries

/// `GET /containers/{id}/logs` query. `since`/`until` are unix seconds (fractional allowed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerLogsQuery {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    pub timestamps: bool,
    /// "all" or a number of lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
}

/// Filters as sent in the `filters` query parameter: `{"status": ["running"], ...}`.
pub type Filters = HashMap<String, Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_parses_docker_cli_shape() {
        let body = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
            "AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,
            "StdinOnce":false,"Env":null,"Cmd":["echo","hi"],"Image":"busybox",
            "Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},
            "HostConfig":{"Binds":null,"NetworkMode":"default","PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
            "RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,
            "ConsoleSize":[24,80],"PidsLimit":null,"Mounts":null},
            "NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let b: ContainerCreateBody = serde_json::from_str(body).expect("parse");
        assert_eq!(b.config.image, "busybox");
        assert_eq!(
            b.config.cmd.as_deref(),
            Some(&["echo".to_string(), "hi".to_string()][..])
        );
        let hc = b.host_config.expect("host config");
        assert!(hc.auto_remove);
        assert_eq!(hc.console_size, Some([24, 80]));
        let pb = hc.port_bindings.expect("bindings");
        assert_eq!(pb["80/tcp"].as_ref().expect("list")[0].host_port, "8080");
    }

    #[test]
    fn docker_py_nulls_and_partial_bodies_parse() {
        let b: ContainerCreateBody =
            serde_json::from_str(r#"{"Image":"x","User":null,"Tty":null,"StopTimeout":null}"#)
                .expect("parse");
        assert_eq!(b.config.user, "");
        assert!(!b.config.tty);
        let _: ContainerCreateBody = serde_json::from_str("{}").expect("empty");
        let _: HostConfig = serde_json::from_str(r#"{"Memory":null}"#).expect("null memory");
    }

    #[test]
    fn strslice_and_numeric_ports() {
        let b: ContainerCreateBody = serde_json::from_str(
            r#"{"Cmd":"echo hi","Entrypoint":["/bin/sh","-c"],"Shell":null,
                "HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":8080}]}}}"#,
        )
        .expect("parse");
        assert_eq!(b.config.cmd, Some(vec!["echo hi".to_string()]));
        assert_eq!(b.config.entrypoint.as_ref().map(Vec::len), Some(2));
        assert_eq!(b.config.shell, None);
        let pb = b.host_config.and_then(|h| h.port_bindings).expect("pb");
        assert_eq!(pb["80/tcp"].as_ref().expect("list")[0].host_port, "8080");
    }

    #[test]
    fn irregular_names_on_the_wire() {
        let mut s = ContainerState {
            oom_killed: true,
            ..Default::default()
        };
        s.status = "exited".into();
        let v = serde_json::to_value(&s).expect("ser");
        assert_eq!(v["OOMKilled"], true);
        let e = EndpointSettings {
            ip_address: "10.0.0.2".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&e).expect("ser");
        assert_eq!(v["IPAddress"], "10.0.0.2");
        assert!(v.get("IPAMConfig").is_some());
        let p = Port {
            private_port: 80,
            r#type: "tcp".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&p).expect("ser"),
            r#"{"PrivatePort":80,"Type":"tcp"}"#
        );
        let r = IdResponse { id: "abc".into() };
        assert_eq!(serde_json::to_string(&r).expect("ser"), r#"{"Id":"abc"}"#);
        let e = ErrorResponse {
            message: "No such container: x".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).expect("ser"),
            r#"{"message":"No such container: x"}"#
        );
    }

    #[test]
    fn flattened_create_body_roundtrips() {
        let mut b = ContainerCreateBody::default();
        b.config.image = "busybox".into();
        b.host_config = Some(HostConfig {
            nano_cpus: 1_500_000_000,
            ..Default::default()
        });
        let s = serde_json::to_string(&b).expect("ser");
        assert!(s.contains(r#""Image":"busybox""#));
        assert!(s.contains(r#""NanoCpus":1500000000"#));
        let back: ContainerCreateBody = serde_json::from_str(&s).expect("de");
        assert_eq!(back, b);
    }

    #[test]
    fn image_delete_items() {
        let v: Vec<ImageDeleteItem> =
            serde_json::from_str(r#"[{"Untagged":"busybox:latest"},{"Deleted":"sha256:abc"}]"#)
                .expect("parse");
        assert_eq!(v[0].untagged.as_deref(), Some("busybox:latest"));
        assert_eq!(v[1].deleted.as_deref(), Some("sha256:abc"));
        assert_eq!(
            serde_json::to_string(&v[1]).expect("ser"),
            r#"{"Deleted":"sha256:abc"}"#
        );
    }

    #[test]
    fn wait_response() {
        let w: ContainerWaitResponse =
            serde_json::from_str(r#"{"StatusCode":3,"Error":null}"#).expect("parse");
        assert_eq!(w.status_code, 3);
        assert!(w.error.is_none());
        assert_eq!(
            serde_json::to_string(&w).expect("ser"),
            r#"{"StatusCode":3}"#
        );
    }
}
