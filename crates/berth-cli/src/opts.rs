//! Parsing of docker's option values (sizes, ports, volumes, mounts, env files) and the
//! translation of `run`/`create` flags into a create body.

use std::collections::BTreeMap;

use berth_api::types::{
    BindOptions, ContainerConfig, ContainerCreateBody, EndpointSettings, HostConfig, LogConfig,
    Mount, NetworkingConfig, PortBinding, RestartPolicy, TmpfsOptions, Ulimit, VolumeOptions,
};
use serde_json::Value as Json;

use crate::error::CliError;

fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// docker's `units.RAMInBytes`: `512m`, `1g`, `1.5GiB`, plain bytes; binary multiples.
pub fn parse_ram(s: &str) -> Result<i64, CliError> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let n: f64 = num
        .parse()
        .map_err(|_| invalid(format!("invalid size: '{s}'")))?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(invalid(format!("invalid size: '{s}'"))),
    };
    Ok((n * mult) as i64)
}

/// `DEVICE:VALUE` flags (`--device-read-bps /dev/sda:1mb`, `--blkio-weight-device
/// /dev/sda:200`) as the API's `[{"Path": ..., key: n}]`; `bytes` takes sizes (kb, mb, gb).
fn device_list(
    flags: &[String],
    key: &str,
    bytes: bool,
) -> Result<Option<Vec<serde_json::Value>>, CliError> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for f in flags {
        let (path, v) = f
            .rsplit_once(':')
            .filter(|(p, _)| p.starts_with("/dev/"))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "bad format for {f}: expected DEVICE:VALUE with DEVICE under /dev"
                ))
            })?;
        let n: i64 = if bytes {
            parse_ram(v)?
        } else {
            v.parse().map_err(|_| {
                CliError::Usage(format!("invalid value {v} for {f}: expected a number"))
            })?
        };
        if n < 0 {
            return Err(CliError::Usage(format!("invalid value {v} for {f}")));
        }
        out.push(serde_json::json!({ "Path": path, key: n }));
    }
    Ok(Some(out))
}

/// `--memory-swap`: a size, or -1 for unlimited.
pub fn parse_swap(s: &str) -> Result<i64, CliError> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    parse_ram(s)
}

/// `--cpus 1.5` -> NanoCpus.
pub fn parse_cpus(s: &str) -> Result<i64, CliError> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid(format!("invalid argument \"{s}\" for \"--cpus\" flag: failed to parse {s} as a rational number")))?;
    let nano = f * 1e9;
    if nano.fract().abs() > 1e-6 && (nano.fract() - 1.0).abs() > 1e-6 {
        return Err(invalid(format!(
            "invalid argument \"{s}\" for \"--cpus\" flag: value is too precise"
        )));
    }
    Ok(nano.round() as i64)
}

/// `-e KEY=VAL` / `-e KEY` (taken from our environment, dropped if unset).
pub fn env_entry(s: &str) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_string());
    }
    std::env::var(s).ok().map(|v| format!("{s}={v}"))
}

/// Lines of an env or label file: comments and blank lines skipped.
pub fn read_kv_file(path: &str, lookup_env: bool) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Message(format!("open {path}: {e}")))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if lookup_env {
            if let Some(e) = env_entry(l) {
                out.push(e);
            }
        } else {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

/// `k=v` list -> map (`k` alone maps to "").
pub fn kv_map(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.to_string(), String::new()),
        })
        .collect()
}

fn parse_port_range(s: &str) -> Result<(u16, u16), CliError> {
    let bad = || invalid(format!("invalid containerPort: {s}"));
    match s.split_once('-') {
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p: u16 = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// One `-p` spec: `[ip:][hostPort:]containerPort[/proto]` with ranges; returns
/// (`"80/tcp"`, binding) pairs.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, PortBinding)>, CliError> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    // An IPv6 address is bracketed: [::1]:8080:80
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| invalid(format!("invalid IP address: {rest}")))?;
        (ip.to_string(), r.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => {
                return Err(invalid(format!(
                    "invalid port format for --publish: {spec}"
                )))
            }
        }
    };
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h.to_string(), c.to_string()),
        None => (String::new(), rest.clone()),
    };
    if ctr.is_empty() {
        return Err(invalid(format!("no port specified: {spec}<empty>")));
    }
    let (c0, c1) = parse_port_range(&ctr)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_port_range(&host).map_err(|_| invalid(format!("invalid hostPort: {host}")))?)
    };
    let mut out = Vec::new();
    for (i, p) in (c0..=c1).enumerate() {
        let host_port = match host_range {
            None => String::new(),
            Some((h0, h1)) if h0 == h1 => h0.to_string(),
            Some((h0, h1)) => {
                if h1 - h0 != c1 - c0 {
                    // A host range for one container port: the daemon picks one.
                    if c0 == c1 {
                        format!("{h0}-{h1}")
                    } else {
                        return Err(invalid(format!(
                            "invalid ranges specified for container and host Ports: {ctr} and {host}"
                        )));
                    }
                } else {
                    (h0 + i as u16).to_string()
                }
            }
        };
        out.push((
            format!("{p}/{proto}"),
            PortBinding {
                host_ip: ip.clone(),
                host_port,
            },
        ));
    }
    Ok(out)
}

/// `--mount type=bind,source=/a,target=/b,readonly`.
pub fn parse_mount(spec: &str) -> Result<Mount, CliError> {
    let mut m = Mount {
        r#type: "volume".into(),
        ..Default::default()
    };
    let mut bind = BindOptions::default();
    let mut vol = VolumeOptions::default();
    let mut tmpfs = TmpfsOptions::default();
    let (mut has_bind, mut has_vol, mut has_tmpfs) = (false, false, false);
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let bool_val = |v: &Option<String>| -> Result<bool, CliError> {
            match v.as_deref() {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(o) => Err(invalid(format!("invalid value for {k}: {o}"))),
            }
        };
        let val = || -> Result<String, CliError> {
            v.clone()
                .ok_or_else(|| invalid(format!("invalid field '{field}' must be a key=value pair")))
        };
        match k.as_str() {
            "type" => m.r#type = val()?,
            "source" | "src" => m.source = val()?,
            "target" | "destination" | "dst" => m.target = val()?,
            "readonly" | "ro" => m.read_only = bool_val(&v)?,
            "consistency" => m.consistency = val()?,
            "bind-propagation" => {
                bind.propagation = val()?;
                has_bind = true
            }
            "bind-nonrecursive" => {
                bind.non_recursive = bool_val(&v)?;
                has_bind = true
            }
            "bind-recursive" => {
                match val()?.as_str() {
                    "enabled" => {}
                    "disabled" => bind.non_recursive = true,
                    "writable" => bind.read_only_non_recursive = true,
                    "readonly" => bind.read_only_force_recursive = true,
                    other => return Err(invalid(format!("invalid value for {k}: {other}"))),
                }
                has_bind = true
            }
            "bind-create-host-path" => {
                bind.create_mountpoint = bool_val(&v)?;
                has_bind = true
            }
            "volume-nocopy" => {
                vol.no_copy = bool_val(&v)?;
                has_vol = true
            }
            "volume-subpath" => {
                vol.subpath = val()?;
                has_vol = true
            }
            "volume-label" => {
                let (lk, lv) = val()?
                    .split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or((val()?, String::new()));
                vol.labels
                    .get_or_insert_with(Default::default)
                    .insert(lk, lv);
                has_vol = true
            }
            "volume-driver" => {
                vol.driver_config.get_or_insert_with(Default::default).name = val()?;
                has_vol = true
            }
            "volume-opt" => {
                let raw = val()?;
                let (ok, ov) = raw.split_once('=').unwrap_or((raw.as_str(), ""));
                vol.driver_config
                    .get_or_insert_with(Default::default)
                    .options
                    .get_or_insert_with(Default::default)
                    .insert(ok.to_string(), ov.to_string());
                has_vol = true
            }
            "tmpfs-size" => {
                tmpfs.size_bytes = parse_ram(&val()?)?;
                has_tmpfs = true
            }
            "tmpfs-mode" => {
                let raw = val()?;
                tmpfs.mode = Some(
                    u32::from_str_radix(&raw, 8)
                        .map_err(|_| invalid(format!("invalid value for tmpfs-mode: {raw}")))?,
                );
                has_tmpfs = true
            }
            _ => return Err(invalid(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    if m.target.is_empty() {
        return Err(invalid("target is required"));
    }
    if m.r#type == "bind" && m.source.is_empty() {
        return Err(invalid("source is required when specifying bind mounts"));
    }
    if has_bind {
        m.bind_options = Some(bind);
    }
    if has_vol {
        m.volume_options = Some(vol);
    }
    if has_tmpfs {
        m.tmpfs_options = Some(tmpfs);
    }
    Ok(m)
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, CliError> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let max = match count {
        Some(c) => c.parse::<i64>().map_err(|_| {
            invalid("invalid restart policy format: maximum retry count must be an integer")
        })?,
        None => 0,
    };
    match name {
        "" | "no" | "always" | "unless-stopped" if count.is_some() => Err(invalid("invalid restart policy format: maximum retry count can only be used with 'on-failure'")),
        "" | "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: max,
        }),
        _ => Err(invalid(format!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"))),
    }
}

/// `--ulimit nofile=1024:2048`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit, CliError> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| invalid(format!("invalid ulimit argument: {s}")))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let p = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| invalid(format!("invalid ulimit argument: {s}")))
    };
    Ok(Ulimit {
        name: name.to_string(),
        soft: p(soft)?,
        hard: p(hard)?,
    })
}

/// Go durations (`10s`, `1m30s`, `500ms`) in nanoseconds, leading and trailing blanks allowed.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    berth_build::instructions::parse_go_duration(s.trim())
}

/// `--since`/`--until`: a Go duration relative to now, a unix timestamp, or an RFC 3339 time;
/// returned as the API's `seconds[.nanoseconds]`.
pub fn parse_timestamp(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, CliError> {
    if let Some(d) = parse_go_duration(s) {
        if !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            let t = now - chrono::Duration::nanoseconds(d);
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.is_empty() {
        return Ok(s.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            let t = t.and_utc();
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt) {
            if let Some(t) = d.and_hms_opt(0, 0, 0) {
                return Ok(format!("{}.000000000", t.and_utc().timestamp()));
            }
        }
    }
    Err(invalid(format!(
        "invalid value for \"since\"/\"until\": {s:?}"
    )))
}

/// Everything `run` and `create` accept that shapes the container.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ContainerOpts {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight (relative device weight): DEVICE:WEIGHT
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Limit read rate (bytes per second) from a device: DEVICE:RATE[kb|mb|gb]
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device: DEVICE:RATE[kb|mb|gb]
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device: DEVICE:RATE
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device: DEVICE:RATE
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Attach STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
    /// Connect a container to a network
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container IPv4/IPv6 link-local addresses
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Container MAC address
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
}

impl ContainerOpts {
    /// Build the create body for `image` and its command.
    pub fn to_create_body(
        &self,
        image: &str,
        cmd: &[String],
        detach: bool,
    ) -> Result<ContainerCreateBody, CliError> {
        let mut env: Vec<String> = Vec::new();
        for f in &self.env_file {
            env.extend(read_kv_file(f, true)?);
        }
        env.extend(self.env.iter().filter_map(|e| env_entry(e)));

        let mut labels_list = Vec::new();
        for f in &self.label_file {
            labels_list.extend(read_kv_file(f, false)?);
        }
        labels_list.extend(self.label.iter().cloned());

        // Attach streams: -a picks them; otherwise stdout/stderr unless detached, stdin with -i.
        let (mut a_in, mut a_out, mut a_err) = (false, false, false);
        if !self.attach.is_empty() {
            if detach {
                return Err(invalid(
                    "conflicting options: cannot specify both --attach and --detach",
                ));
            }
            for a in &self.attach {
                match a.to_ascii_lowercase().as_str() {
                    "stdin" => a_in = true,
                    "stdout" => a_out = true,
                    "stderr" => a_err = true,
                    _ => return Err(invalid(format!("invalid argument {a:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"))),
                }
            }
        } else if !detach {
            a_out = true;
            a_err = true;
            a_in = self.interactive;
        }

        let mut exposed: BTreeMap<String, Json> = BTreeMap::new();
        let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
        for p in &self.publish {
            for (k, b) in parse_publish(p)? {
                exposed.insert(k.clone(), Json::Object(Default::default()));
                bindings
                    .entry(k)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(b);
            }
        }
        for e in &self.expose {
            let (range, proto) = match e.split_once('/') {
                Some((r, p)) => (r, p),
                None => (e.as_str(), "tcp"),
            };
            let (a, b) = parse_port_range(range)?;
            for p in a..=b {
                exposed.insert(format!("{p}/{proto}"), Json::Object(Default::default()));
            }
        }

        let mut volumes: BTreeMap<String, Json> = BTreeMap::new();
        let mut binds = Vec::new();
        for v in &self.volume {
            let parts: Vec<&str> = v.split(':').collect();
            if parts.len() == 1 {
                volumes.insert(v.clone(), Json::Object(Default::default()));
            } else if parts.len() <= 3 && !parts[0].is_empty() && !parts[1].is_empty() {
                binds.push(v.clone());
            } else {
                return Err(invalid(format!("invalid volume specification: '{v}'")));
            }
        }
        let mut mounts = Vec::new();
        for m in &self.mount {
            mounts.push(parse_mount(m)?);
        }
        let mut tmpfs = BTreeMap::new();
        for t in &self.tmpfs {
            match t.split_once(':') {
                Some((p, o)) => tmpfs.insert(p.to_string(), o.to_string()),
                None => tmpfs.insert(t.clone(), String::new()),
            };
        }

        let mut log_config = LogConfig::default();
        if let Some(d) = &self.log_driver {
            log_config.r#type = d.clone();
        }
        if !self.log_opt.is_empty() {
            log_config.config = Some(kv_map(&self.log_opt));
        }

        let network_mode =
            berth_api::types::NetworkMode::parse(self.network.as_deref().unwrap_or(""));
        let mut endpoints = BTreeMap::new();
        let builtin = !matches!(network_mode, berth_api::types::NetworkMode::Network(_));
        let ipam = (self.ip.is_some() || self.ip6.is_some() || !self.link_local_ip.is_empty())
            .then(|| berth_api::types::EndpointIpamConfig {
                ipv4_address: self.ip.clone().unwrap_or_default(),
                ipv6_address: self.ip6.clone().unwrap_or_default(),
                link_local_ips: (!self.link_local_ip.is_empty())
                    .then(|| self.link_local_ip.clone()),
            });
        if !builtin || !self.network_alias.is_empty() || ipam.is_some() {
            endpoints.insert(
                network_mode.to_string(),
                EndpointSettings {
                    ipam_config: ipam,
                    aliases: (!self.network_alias.is_empty()).then(|| self.network_alias.clone()),
                    // On a user-defined network a link is the endpoint's (an alias for
                    // the name); on the default bridge it is the legacy kind.
                    links: (!builtin && !self.link.is_empty()).then(|| self.link.clone()),
                    mac_address: self.mac_address.clone().unwrap_or_default(),
                    ..Default::default()
                },
            );
        }

        let healthcheck = if self.no_healthcheck {
            Some(berth_api::types::HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            })
        } else if self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some()
        {
            let dur = |s: &Option<String>, flag: &str| -> Result<i64, CliError> {
                match s {
                    None => Ok(0),
                    Some(v) => parse_go_duration(v).ok_or_else(|| invalid(format!("invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\""))),
                }
            };
            Some(berth_api::types::HealthConfig {
                test: self
                    .health_cmd
                    .as_ref()
                    .map(|c| vec!["CMD-SHELL".into(), c.clone()]),
                interval: dur(&self.health_interval, "health-interval")?,
                timeout: dur(&self.health_timeout, "health-timeout")?,
                start_period: dur(&self.health_start_period, "health-start-period")?,
                start_interval: dur(&self.health_start_interval, "health-start-interval")?,
                retries: self.health_retries.unwrap_or(0),
            })
        } else {
            None
        };

        let entrypoint = self.entrypoint.as_ref().map(|e| {
            // `--entrypoint ""` resets the image's entrypoint.
            if e.is_empty() {
                vec![String::new()]
            } else {
                vec![e.clone()]
            }
        });

        let config = ContainerConfig {
            hostname: self.hostname.clone().unwrap_or_default(),
            domainname: self.domainname.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            attach_stdin: a_in,
            attach_stdout: a_out,
            attach_stderr: a_err,
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            tty: self.tty,
            open_stdin: self.interactive,
            stdin_once: self.interactive && a_in,
            env: Some(env),
            cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
            healthcheck,
            image: image.to_string(),
            volumes: (!volumes.is_empty()).then_some(volumes),
            working_dir: self.workdir.clone().unwrap_or_default(),
            entrypoint,
            mac_address: self.mac_address.clone().unwrap_or_default(),
            labels: Some(kv_map(&labels_list)),
            stop_signal: self.stop_signal.clone().unwrap_or_default(),
            stop_timeout: self.stop_timeout,
            ..Default::default()
        };

        let (h, w) = if self.tty {
            crate::term::size().unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        let host = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            log_config,
            network_mode,
            port_bindings: Some(bindings),
            restart_policy: parse_restart(&self.restart)?,
            auto_remove: self.rm,
            volumes_from: (!self.volumes_from.is_empty()).then(|| self.volumes_from.clone()),
            volume_driver: self.volume_driver.clone().unwrap_or_default(),
            mounts: (!mounts.is_empty()).then_some(mounts),
            console_size: Some([h as u64, w as u64]),
            cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
            cap_drop: (!self.cap_drop.is_empty()).then(|| self.cap_drop.clone()),
            cgroupns_mode: self.cgroupns.clone().unwrap_or_default(),
            cgroup_parent: self.cgroup_parent.clone().unwrap_or_default(),
            dns: Some(self.dns.clone()),
            dns_options: Some(self.dns_option.clone()),
            dns_search: Some(self.dns_search.clone()),
            extra_hosts: (!self.add_host.is_empty()).then(|| self.add_host.clone()),
            links: (!self.link.is_empty()).then(|| self.link.clone()),
            group_add: (!self.group_add.is_empty()).then(|| self.group_add.clone()),
            ipc_mode: self.ipc.clone().unwrap_or_default(),
            oom_score_adj: self.oom_score_adj.unwrap_or(0),
            pid_mode: self.pid.clone().unwrap_or_default(),
            privileged: self.privileged,
            publish_all_ports: self.publish_all,
            readonly_rootfs: self.read_only,
            security_opt: (!self.security_opt.is_empty())
                .then(|| security_opts(&self.security_opt))
                .transpose()?,
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            uts_mode: self.uts.clone().unwrap_or_default(),
            userns_mode: self.userns.clone().unwrap_or_default(),
            shm_size: match &self.shm_size {
                Some(s) => parse_ram(s)?,
                None => 0,
            },
            sysctls: (!self.sysctl.is_empty()).then(|| kv_map(&self.sysctl)),
            runtime: self.runtime.clone().unwrap_or_default(),
            memory: match &self.memory {
                Some(s) => parse_ram(s)?,
                None => 0,
            },
            memory_swap: match &self.memory_swap {
                Some(s) => parse_swap(s)?,
                None => 0,
            },
            memory_reservation: match &self.memory_reservation {
                Some(s) => parse_ram(s)?,
                None => 0,
            },
            nano_cpus: match &self.cpus {
                Some(s) => parse_cpus(s)?,
                None => 0,
            },
            cpu_shares: self.cpu_shares.unwrap_or(0),
            cpu_period: self.cpu_period.unwrap_or(0),
            cpu_quota: self.cpu_quota.unwrap_or(0),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            memory_swappiness: self.memory_swappiness,
            blkio_weight: self.blkio_weight.unwrap_or(0),
            blkio_weight_device: device_list(&self.blkio_weight_device, "Weight", false)?,
            blkio_device_read_bps: device_list(&self.device_read_bps, "Rate", true)?,
            blkio_device_write_bps: device_list(&self.device_write_bps, "Rate", true)?,
            blkio_device_read_iops: device_list(&self.device_read_iops, "Rate", false)?,
            blkio_device_write_iops: device_list(&self.device_write_iops, "Rate", false)?,
            pids_limit: self.pids_limit,
            oom_kill_disable: self.oom_kill_disable.then_some(true),
            ulimits: if self.ulimit.is_empty() {
                None
            } else {
                Some(
                    self.ulimit
                        .iter()
                        .map(|u| parse_ulimit(u))
                        .collect::<Result<_, _>>()?,
                )
            },
            init: self.init.then_some(true),
            ..Default::default()
        };
        if host.nano_cpus > 0 && (host.cpu_period > 0 || host.cpu_quota > 0) {
            return Err(invalid(
                "conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        Ok(ContainerCreateBody {
            config,
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(parse_ram("512m").ok(), Some(512 * 1024 * 1024));
        assert_eq!(parse_ram("1g").ok(), Some(1 << 30));
        assert_eq!(parse_ram("1GB").ok(), Some(1 << 30));
        assert_eq!(parse_ram("1.5k").ok(), Some(1536));
        assert_eq!(parse_ram("100").ok(), Some(100));
        assert!(parse_ram("12x").is_err());
        assert_eq!(parse_swap("-1").ok(), Some(-1));
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1.5").ok(), Some(1_500_000_000));
        assert_eq!(parse_cpus("0.01").ok(), Some(10_000_000));
        assert!(parse_cpus("abc").is_err());
    }

    #[test]
    fn publish_specs() {
        let one = |s: &str| parse_publish(s).expect(s);
        assert_eq!(one("80")[0].0, "80/tcp");
        assert_eq!(one("80")[0].1.host_port, "");
        let b = one("8080:80/udp");
        assert_eq!(
            (b[0].0.as_str(), b[0].1.host_port.as_str()),
            ("80/udp", "8080")
        );
        let b = one("127.0.0.1:8080:80");
        assert_eq!(b[0].1.host_ip, "127.0.0.1");
        let b = one("[::1]:8080:80");
        assert_eq!(b[0].1.host_ip, "::1");
        let b = one("8000-8001:80-81");
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[1].0.as_str(), b[1].1.host_port.as_str()),
            ("81/tcp", "8001")
        );
        let b = one("127.0.0.1::80");
        assert_eq!(
            (b[0].1.host_ip.as_str(), b[0].1.host_port.as_str()),
            ("127.0.0.1", "")
        );
        assert!(parse_publish("80/xyz").is_err());
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=bind,source=/a,target=/b,readonly").expect("m");
        assert_eq!(
            (
                m.r#type.as_str(),
                m.source.as_str(),
                m.target.as_str(),
                m.read_only
            ),
            ("bind", "/a", "/b", true)
        );
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly,bind-recursive=writable").expect("m");
        assert!(m.bind_options.is_some_and(|b| b.read_only_non_recursive));
        assert!(parse_mount("type=bind,src=/a,dst=/b,bind-recursive=nope").is_err());
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m").expect("m");
        assert_eq!(m.tmpfs_options.map(|t| t.size_bytes), Some(64 << 20));
        assert!(parse_mount("type=bind,target=/b").is_err());
        assert!(parse_mount("source=x").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:3")
                .map(|r| r.maximum_retry_count)
                .ok(),
            Some(3)
        );
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_go_duration("x"), None);
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).expect("t");
        assert_eq!(
            parse_timestamp("10s", now).ok().as_deref(),
            Some("999990.000000000")
        );
        assert_eq!(parse_timestamp("12345", now).ok().as_deref(), Some("12345"));
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05Z", now).ok().as_deref(),
            Some("1704164645.000000000")
        );
    }

    #[test]
    fn create_body_from_flags() {
        let o = ContainerOpts {
            env: vec!["A=1".into()],
            label: vec!["k=v".into(), "flag".into()],
            memory: Some("512m".into()),
            cpus: Some("1.5".into()),
            publish: vec!["8080:80".into()],
            volume: vec!["/data".into(), "/host:/ctr:ro".into()],
            rm: true,
            interactive: true,
            restart: "no".into(),
            ..Default::default()
        };
        let b = o
            .to_create_body("busybox", &["sh".into(), "-c".into(), "true".into()], false)
            .expect("body");
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(v["Image"], "busybox");
        assert_eq!(v["Cmd"][2], "true");
        assert_eq!(v["Env"][0], "A=1");
        assert_eq!(v["Labels"]["flag"], "");
        assert_eq!(v["AttachStdin"], true);
        assert_eq!(v["OpenStdin"], true);
        assert_eq!(v["StdinOnce"], true);
        assert_eq!(v["ExposedPorts"]["80/tcp"], serde_json::json!({}));
        assert_eq!(v["Volumes"]["/data"], serde_json::json!({}));
        let hc = &v["HostConfig"];
        assert_eq!(hc["Memory"], 536870912);
        assert_eq!(hc["NanoCpus"], 1500000000i64);
        assert_eq!(hc["AutoRemove"], true);
        assert_eq!(hc["Binds"][0], "/host:/ctr:ro");
        assert_eq!(hc["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(hc["NetworkMode"], "default");
    }
}

/// As the docker CLI does: a seccomp profile named by path is read here and sent inline
/// (`seccomp=<json>`), since the daemon may not see the client's files.
fn security_opts(opts: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::with_capacity(opts.len());
    for o in opts {
        let (key, val) = match o.split_once('=').or_else(|| o.split_once(':')) {
            Some(kv) => kv,
            None if o == "no-new-privileges" => {
                out.push(o.clone());
                continue;
            }
            None => return Err(CliError::Usage(format!("Invalid --security-opt: {o:?}"))),
        };
        if key == "seccomp" && val != "unconfined" && !val.trim_start().starts_with('{') {
            let text = std::fs::read_to_string(val).map_err(|e| {
                CliError::msg(format!("opening seccomp profile ({val}) failed: {e}"))
            })?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CliError::msg(format!("decoding seccomp profile ({val}) failed: {e}"))
            })?;
            out.push(format!("seccomp={v}"));
        } else {
            out.push(o.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod security_opt_tests {
    use super::security_opts;

    #[test]
    fn seccomp_file_is_inlined() {
        let d = std::env::temp_dir().join(format!("berth-seccomp-{}.json", std::process::id()));
        std::fs::write(&d, r#"{ "defaultAction": "SCMP_ACT_ALLOW" }"#).unwrap();
        let o = security_opts(&[
            format!("seccomp={}", d.display()),
            "no-new-privileges".into(),
        ])
        .unwrap();
        assert_eq!(o[0], r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#);
        assert_eq!(o[1], "no-new-privileges");
        assert_eq!(
            security_opts(&["seccomp=unconfined".into()]).unwrap(),
            vec!["seccomp=unconfined"]
        );
        assert!(security_opts(&["seccomp=/nonexistent/x.json".into()]).is_err());
        assert!(security_opts(&["bogus".into()]).is_err());
        let _ = std::fs::remove_file(d);
    }
}

/// `--filter k=v` flags (and `extra` pairs) as the API's `filters` JSON, `{"k":["v",…]}`;
/// `None` when there are none.
pub fn filters_json(
    list: &[String],
    extra: &[(&str, &str)],
) -> Result<Option<String>, crate::error::CliError> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in list {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            crate::error::CliError::Usage(format!(
                "bad format of filter (expected name=value): {f}"
            ))
        })?;
        m.entry(k.trim().to_string())
            .or_default()
            .push(v.to_string());
    }
    for (k, v) in extra {
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok((!m.is_empty()).then(|| serde_json::to_string(&m).unwrap_or_default()))
}
