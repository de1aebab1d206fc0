//! Parsing the mount options of create: `-v` binds, `--mount` (`HostConfig.Mounts`) and `--tmpfs`,
//! with Docker's checks and messages.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use berth_api::types::{HostConfig, Mount as ApiMount};

use crate::container::mounts::{MountKind, MountPoint};
use crate::error::{EngineError, Result};
use crate::volume::valid_name;

pub(crate) fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// Lexically cleans an absolute container path; `Err` with Docker's words otherwise.
pub(crate) fn clean_destination(dest: &str, kind: &str) -> Result<String> {
    if !dest.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(invalid("invalid specification: destination can't be '/'"));
    }
    let clean = format!("/{}", parts.join("/"));
    // runc's rule (which the runtime shares): nothing is mounted inside the container's /proc
    // but a few files lxcfs-style tools replace.
    if clean.starts_with("/proc/") && !PROC_MOUNTABLE.contains(&clean.as_str()) {
        return Err(invalid(format!(
            "invalid mount config for type \"{kind}\": {clean:?} cannot be mounted because it is inside /proc"
        )));
    }
    if clean.contains('\0') {
        return Err(invalid(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: {clean:?}"
        )));
    }
    Ok(clean)
}

/// Files under /proc a mount may cover (runc's list).
const PROC_MOUNTABLE: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

fn clean_host_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

const PROPAGATIONS: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Binds take every mode; volumes stay private (their directory is the daemon's own).
fn supported_propagation(kind: &str, p: &str) -> Result<()> {
    if p == "private" || p == "rprivate" || kind == "bind" {
        return Ok(());
    }
    Err(invalid(format!(
        "invalid mount config for type \"{kind}\": propagation mode \"{p}\" is not supported for volumes"
    )))
}

/// Docker's start-time check: a shared bind needs its source on a shared mount (or nothing
/// would propagate back), a slave bind a shared or slave one.
pub(crate) fn check_source_propagation(source: &str, p: &str) -> Result<()> {
    let want_shared = matches!(p, "shared" | "rshared");
    let want_slave = matches!(p, "slave" | "rslave");
    if !want_shared && !want_slave {
        return Ok(());
    }
    let canon = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
    let Some((mp, shared, slave)) = crate::volume::mount_propagation(&canon) else {
        return Ok(());
    };
    if want_shared && !shared {
        return Err(EngineError::Internal(format!(
            "path {source} is mounted on {mp} but it is not a shared mount"
        )));
    }
    if want_slave && !shared && !slave {
        return Err(EngineError::Internal(format!(
            "path {source} is mounted on {mp} but it is not a shared or slave mount"
        )));
    }
    Ok(())
}

/// The parsed mode of a `-v` spec.
#[derive(Default)]
struct BindMode {
    rw: bool,
    propagation: String,
    nocopy: bool,
}

fn parse_mode(mode: &str) -> Option<BindMode> {
    let mut m = BindMode {
        rw: true,
        ..Default::default()
    };
    let (mut rwset, mut label, mut prop, mut copy, mut cons) = (false, false, false, false, false);
    for tok in mode.split(',') {
        match tok {
            "rw" | "ro" if !rwset => {
                rwset = true;
                m.rw = tok == "rw";
            }
            "z" | "Z" if !label => label = true,
            "nocopy" if !copy => {
                copy = true;
                m.nocopy = true;
            }
            "consistent" | "cached" | "delegated" if !cons => cons = true,
            p if PROPAGATIONS.contains(&p) && !prop => {
                prop = true;
                m.propagation = p.to_string();
            }
            _ => return None,
        }
    }
    Some(m)
}

/// What a `-v` / `--mount` / image `VOLUME` asks for before volumes exist.
pub(crate) struct Wanted {
    pub(crate) mp: MountPoint,
    /// A volume to create if missing: (labels, driver options); `None` name means anonymous.
    pub(crate) create: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

/// `HostConfig.Binds` entry → mount point (volumes not yet created).
pub(crate) fn parse_bind(spec: &str) -> Result<Wanted> {
    let bad = || invalid(format!("invalid volume specification: '{spec}'"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [a, b] => {
            if !b.starts_with('/') && parse_mode(b).is_some() {
                ("", *a, *b)
            } else {
                (*a, *b, "")
            }
        }
        [a, b, c] => (*a, *b, *c),
        _ => return Err(bad()),
    };
    if dst.is_empty() {
        return Err(bad());
    }
    let kind = if src.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let destination = clean_destination(dst, kind).map_err(|e| {
        if e.to_string().starts_with("invalid mount config") {
            invalid(format!("invalid volume specification: '{spec}': {e}"))
        } else {
            e
        }
    })?;
    let m = if mode.is_empty() {
        BindMode {
            rw: true,
            ..Default::default()
        }
    } else {
        parse_mode(mode).ok_or_else(|| invalid(format!("invalid mode: {mode}")))?
    };
    if src.starts_with('/') {
        if m.nocopy {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        let propagation = if m.propagation.is_empty() {
            "rprivate".to_string()
        } else {
            m.propagation.clone()
        };
        supported_propagation("bind", &propagation)?;
        return Ok(Wanted {
            mp: MountPoint {
                kind: MountKind::Bind,
                name: String::new(),
                source: clean_host_path(src),
                destination,
                driver: String::new(),
                mode: mode.to_string(),
                rw: m.rw,
                propagation,
                named: false,
                copy_data: false,
                non_recursive: false,
                create_source: true,
                tmpfs_data: Vec::new(),
                ro_non_recursive: false,
            },
            create: None,
        });
    }
    if !src.is_empty() && !valid_name(src) {
        return Err(crate::volume::invalid_name_error(src));
    }
    if !m.propagation.is_empty() {
        supported_propagation("volume", &m.propagation)?;
    }
    Ok(Wanted {
        mp: MountPoint {
            kind: MountKind::Volume,
            name: src.to_string(),
            source: String::new(),
            destination,
            driver: "local".into(),
            mode: if src.is_empty() {
                mode.to_string()
            } else if mode.is_empty() {
                "z".into()
            } else {
                mode.to_string()
            },
            rw: m.rw,
            propagation: String::new(),
            named: !src.is_empty(),
            copy_data: !m.nocopy,
            non_recursive: false,
            create_source: false,
            tmpfs_data: Vec::new(),
            ro_non_recursive: false,
        },
        create: Some((BTreeMap::new(), BTreeMap::new())),
    })
}

fn tmpfs_data(size: i64, mode: Option<u32>) -> Vec<String> {
    let mut d = Vec::new();
    if size > 0 {
        d.push(format!("size={size}"));
    }
    if let Some(m) = mode {
        d.push(format!("mode={m:o}"));
    }
    d
}

/// `HostConfig.Mounts` entry → mount point.
pub(crate) fn parse_api_mount(m: &ApiMount) -> Result<Wanted> {
    let kind = m.r#type.as_str();
    if m.target.is_empty() {
        return Err(mount_config_error(kind, "field Target must not be empty"));
    }
    let destination = clean_destination(&m.target, kind)?;
    match kind {
        "bind" => api_bind_mount(m, destination),
        "volume" => api_volume_mount(m, destination),
        "tmpfs" => api_tmpfs_mount(m, destination),
        "" => Err(invalid("invalid mount config: mount type unknown")),
        other => Err(invalid(format!(
            "invalid mount config: mount type unknown: \"{other}\""
        ))),
    }
}

fn mount_config_error(kind: &str, msg: &str) -> EngineError {
    invalid(format!("invalid mount config for type \"{kind}\": {msg}"))
}

fn api_bind_mount(m: &ApiMount, destination: String) -> Result<Wanted> {
    let bad = |msg: &str| mount_config_error("bind", msg);
    if m.source.is_empty() {
        return Err(bad("field Source must not be empty"));
    }
    if !m.source.starts_with('/') {
        return Err(bad(&format!(
            "invalid mount path: '{}' mount path must be absolute",
            m.source
        )));
    }
    if m.volume_options.is_some() {
        return Err(bad("field VolumeOptions must not be specified"));
    }
    if m.tmpfs_options.is_some() {
        return Err(bad("field TmpfsOptions must not be specified"));
    }
    let bo = m.bind_options.clone().unwrap_or_default();
    let source = clean_host_path(&m.source);
    if !Path::new(&source).exists() {
        if bo.create_mountpoint {
            std::fs::create_dir_all(&source)
                .map_err(|e| bad(&format!("error creating bind source path {source}: {e}")))?;
        } else {
            return Err(bad(&format!("bind source path does not exist: {source}")));
        }
    }
    let propagation = if bo.propagation.is_empty() {
        "rprivate".to_string()
    } else if PROPAGATIONS.contains(&bo.propagation.as_str()) {
        supported_propagation("bind", &bo.propagation)?;
        bo.propagation.clone()
    } else {
        return Err(bad(&format!(
            "invalid propagation mode: {}",
            bo.propagation
        )));
    };
    Ok(Wanted {
        mp: MountPoint {
            kind: MountKind::Bind,
            name: String::new(),
            source,
            destination,
            driver: String::new(),
            mode: String::new(),
            rw: !m.read_only,
            propagation,
            named: false,
            copy_data: false,
            non_recursive: bo.non_recursive,
            create_source: false,
            tmpfs_data: Vec::new(),
            ro_non_recursive: bo.read_only_non_recursive,
        },
        create: None,
    })
}

fn api_volume_mount(m: &ApiMount, destination: String) -> Result<Wanted> {
    let bad = |msg: &str| mount_config_error("volume", msg);
    if m.bind_options.is_some() {
        return Err(bad("field BindOptions must not be specified"));
    }
    if m.tmpfs_options.is_some() {
        return Err(bad("field TmpfsOptions must not be specified"));
    }
    if !m.source.is_empty() && !valid_name(&m.source) {
        return Err(crate::volume::invalid_name_error(&m.source));
    }
    let vo = m.volume_options.clone().unwrap_or_default();
    if !vo.subpath.is_empty() {
        return Err(bad("volume subpaths are not supported"));
    }
    let driver = vo
        .driver_config
        .as_ref()
        .map(|d| d.name.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "local".into());
    let opts = vo
        .driver_config
        .as_ref()
        .and_then(|d| d.options.clone())
        .unwrap_or_default();
    Ok(Wanted {
        mp: MountPoint {
            kind: MountKind::Volume,
            name: m.source.clone(),
            source: String::new(),
            destination,
            driver,
            mode: String::new(),
            rw: !m.read_only,
            propagation: String::new(),
            named: !m.source.is_empty(),
            copy_data: !vo.no_copy,
            non_recursive: false,
            create_source: false,
            tmpfs_data: Vec::new(),
            ro_non_recursive: false,
        },
        create: Some((vo.labels.clone().unwrap_or_default(), opts)),
    })
}

fn api_tmpfs_mount(m: &ApiMount, destination: String) -> Result<Wanted> {
    let bad = |msg: &str| mount_config_error("tmpfs", msg);
    if !m.source.is_empty() {
        return Err(bad("field Source must not be specified"));
    }
    if m.bind_options.is_some() {
        return Err(bad("field BindOptions must not be specified"));
    }
    if m.volume_options.is_some() {
        return Err(bad("field VolumeOptions must not be specified"));
    }
    let to = m.tmpfs_options.clone().unwrap_or_default();
    if to.size_bytes < 0 {
        return Err(bad("invalid size"));
    }
    Ok(Wanted {
        mp: MountPoint {
            kind: MountKind::Tmpfs,
            name: String::new(),
            source: String::new(),
            destination,
            driver: String::new(),
            mode: String::new(),
            rw: !m.read_only,
            propagation: String::new(),
            named: false,
            copy_data: false,
            non_recursive: false,
            create_source: false,
            tmpfs_data: tmpfs_data(to.size_bytes, to.mode),
            ro_non_recursive: false,
        },
        create: None,
    })
}

/// `--tmpfs /x:size=64m,mode=1777`: (flags, data) kept apart; the kernel parses the data.
pub(crate) fn tmpfs_options(opts: &str) -> Result<Vec<String>> {
    let mut flags: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    let mut data = Vec::new();
    for o in opts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let opposite = |a: &str, b: &str, flags: &mut Vec<String>| {
            flags.retain(|f| f != a && f != b);
            flags.push(a.to_string());
        };
        match o {
            "exec" => opposite("exec", "noexec", &mut flags),
            "noexec" => opposite("noexec", "exec", &mut flags),
            "suid" => opposite("suid", "nosuid", &mut flags),
            "nosuid" => opposite("nosuid", "suid", &mut flags),
            "dev" => opposite("dev", "nodev", &mut flags),
            "nodev" => opposite("nodev", "dev", &mut flags),
            "ro" => opposite("ro", "rw", &mut flags),
            "rw" => opposite("rw", "ro", &mut flags),
            "noatime" | "relatime" | "strictatime" | "nodiratime" | "sync" | "async"
            | "dirsync" | "mand" | "nomand" | "atime" | "diratime" => flags.push(o.to_string()),
            kv if kv.contains('=') => {
                if !tmpfs_value_ok(kv) {
                    return Err(invalid(format!("invalid tmpfs option [\"{kv}\"]")));
                }
                data.push(kv.to_string());
            }
            "inode64" | "noswap" => data.push(o.to_string()),
            other => return Err(invalid(format!("invalid tmpfs option [\"{other}\"]"))),
        }
    }
    flags.extend(data);
    Ok(flags)
}

/// Whether a tmpfs `key=value` option is one the kernel takes: sizes with the `k/m/g/t/p/e`
/// suffixes (or `%` for `size`), an octal mode, numeric ids, a known `huge` policy, a memory
/// policy.
fn tmpfs_value_ok(kv: &str) -> bool {
    let Some((k, v)) = kv.split_once('=') else {
        return false;
    };
    let size = |v: &str, percent: bool| {
        let digits =
            v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P', 'e', 'E']);
        let digits = if percent {
            v.strip_suffix('%').unwrap_or(digits)
        } else {
            digits
        };
        v.len() - digits.len() <= 1 && digits.parse::<u64>().is_ok()
    };
    match k {
        "size" => size(v, true),
        "nr_blocks" | "nr_inodes" => size(v, false),
        "mode" => u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777),
        "uid" | "gid" => v.parse::<u32>().is_ok(),
        "huge" => matches!(
            v,
            "never" | "always" | "within_size" | "advise" | "deny" | "force"
        ),
        "mpol" => {
            let (policy, nodes) = v.split_once(':').unwrap_or((v, ""));
            matches!(
                policy,
                "default" | "prefer" | "bind" | "interleave" | "local"
            ) && nodes
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        }
        _ => false,
    }
}

/// Validates `HostConfig.Tmpfs` at create (the options are used at start).
pub(crate) fn validate_tmpfs(hc: &HostConfig) -> Result<()> {
    for (dest, opts) in hc.tmpfs.clone().unwrap_or_default() {
        clean_destination(&dest, "tmpfs")?;
        tmpfs_options(&opts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let w = parse_bind("data:/d:ro").expect("named");
        assert_eq!(w.mp.kind, MountKind::Volume);
        assert_eq!(
            (w.mp.name.as_str(), w.mp.rw, w.mp.named),
            ("data", false, true)
        );
        let w = parse_bind("/h/../x:/d/").expect("bind");
        assert_eq!(w.mp.kind, MountKind::Bind);
        assert_eq!(
            (w.mp.source.as_str(), w.mp.destination.as_str()),
            ("/x", "/d")
        );
        assert_eq!(w.mp.propagation, "rprivate");
        let w = parse_bind("/anon").expect("anon");
        assert!(w.mp.name.is_empty() && !w.mp.named && w.mp.copy_data);
        let w = parse_bind("v1:/d:nocopy").expect("nocopy");
        assert!(!w.mp.copy_data);
        assert_eq!(
            parse_bind("relative/path:/x").err().map(|e| e.to_string()),
            Some("create relative/path: \"relative/path\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path".to_string())
        );
        assert!(parse_bind("v1:/d:bogus").is_err());
        assert!(parse_bind("v1:rel").is_err());
        assert!(parse_bind("v1:/").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("/h:/d:nocopy").is_err());
        assert!(parse_bind("/h:/d:rprivate").is_ok());
        let w = parse_bind("/h:/d:ro,rslave").expect("rslave bind");
        assert_eq!((w.mp.propagation.as_str(), w.mp.rw), ("rslave", false));
        let e = parse_bind("v1:/d:rshared").err().map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("not supported for volumes")),
            "volume"
        );
    }

    #[test]
    fn api_mounts() {
        let m = ApiMount {
            r#type: "bind".into(),
            source: "/definitely/not/here".into(),
            target: "/x".into(),
            ..Default::default()
        };
        assert_eq!(
            parse_api_mount(&m).err().map(|e| e.to_string()),
            Some("invalid mount config for type \"bind\": bind source path does not exist: /definitely/not/here".into())
        );
        let m = ApiMount {
            r#type: "tmpfs".into(),
            target: "/t".into(),
            tmpfs_options: Some(berth_api::types::TmpfsOptions {
                size_bytes: 1 << 20,
                mode: Some(0o1777),
                options: None,
            }),
            ..Default::default()
        };
        let w = parse_api_mount(&m).expect("tmpfs");
        assert_eq!(w.mp.tmpfs_data, vec!["size=1048576", "mode=1777"]);
        let m = ApiMount {
            r#type: "nope".into(),
            target: "/t".into(),
            ..Default::default()
        };
        assert!(parse_api_mount(&m).is_err());
    }

    #[test]
    fn tmpfs_opts() {
        let o = tmpfs_options("size=64m,mode=1777").expect("opts");
        assert_eq!(
            o,
            vec!["nosuid", "nodev", "noexec", "size=64m", "mode=1777"]
        );
        let o = tmpfs_options("exec").expect("exec");
        assert!(o.contains(&"exec".to_string()) && !o.contains(&"noexec".to_string()));
        assert!(tmpfs_options("bogus").is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(
            clean_destination("/a/./b/../c/", "volume").expect("ok"),
            "/a/c"
        );
        assert!(clean_destination("/..", "volume").is_err());
        assert!(clean_destination("x", "volume").is_err());
    }
}
