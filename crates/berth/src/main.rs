//! The one berth binary: `berth daemon`, `berth registry serve|garbage-collect`, the hidden
//! `berth shim`, and otherwise the CLI.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

mod rootless_setup;

/// berth daemon: serves the Docker Engine API.
#[derive(Parser, Debug)]
#[command(
    name = "berth daemon",
    about = "Run the Berth daemon (Docker Engine API server) in the foreground",
    after_help = "Settings may also come from the configuration file (default /etc/berth/daemon.json), \
                  with the same keys as Docker's daemon.json; a setting given both ways is refused."
)]
struct DaemonArgs {
    /// Daemon socket(s) to listen on (unix:///path; tcp://host:port; fd:// for systemd socket activation)
    #[arg(
        short = 'H',
        long = "host",
        default_value = berth_cli::DEFAULT_HOST
    )]
    host: Vec<String>,
    /// Daemon configuration file
    #[arg(long = "config-file", default_value = berth_daemon::config::DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// Validate the configuration file and flags, then exit
    #[arg(long)]
    validate: bool,
    /// Root directory of persistent state
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Root directory for execution state files
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Path of the daemon's pid file (default: <exec-root>/berth.pid)
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    debug: bool,
    /// Enable experimental features (`build --squash`)
    #[arg(long)]
    experimental: bool,
    /// Default json-file log option for containers: max-size=SIZE, max-file=N (repeatable)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Registry reached over plain HTTP (repeatable; localhost and 127.0.0.0/8 always are)
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// Rootless only: what connects the daemon's network namespace to the host
    /// ("slirp4netns", the default: exact `-p` forwards, taken ports reported; or "pasta":
    /// faster, forwards every listening port on all host addresses)
    #[arg(
        long = "rootless-net",
        value_name = "DRIVER",
        default_value = "slirp4netns"
    )]
    rootless_net: berth_runtime::rootless::NetDriver,
    /// Docker Hub mirror, tried before Docker Hub (repeatable)
    #[arg(long = "registry-mirror")]
    registry_mirror: Vec<String>,
    /// Bridge interface of the default network ("none": no default bridge)
    #[arg(short = 'b', long = "bridge", default_value = "berth0")]
    bridge: String,
    /// Gateway address and prefix of the default bridge (e.g. 10.20.0.1/24)
    #[arg(long)]
    bip: Option<String>,
    /// Subnets for user networks: base=CIDR,size=N (repeatable)
    #[arg(long = "default-address-pool")]
    default_address_pool: Vec<String>,
    /// Runtime execution option: native.cgroupdriver=cgroupfs|systemd (default: systemd on
    /// hosts booted with systemd on cgroup v2, else cgroupfs)
    #[arg(long = "exec-opt", value_name = "KEY=VALUE")]
    exec_opt: Vec<String>,
    /// Cgroup namespace of containers that do not choose: private|host (default: private on
    /// cgroup v2, host on v1)
    #[arg(long = "default-cgroupns-mode")]
    default_cgroupns_mode: Option<String>,
    /// Per-registry hosts (mirrors) in containerd's format: `<dir>/<registry>/hosts.toml`.
    #[arg(long = "registry-config-path", default_value = "/etc/berth/certs.d")]
    registry_config_path: PathBuf,
    /// The CRI (Kubernetes) server's socket, `unix://PATH` (default `<exec-root>/cri.sock`, so
    /// `/run/berth/cri.sock`); empty to turn it off.
    #[arg(long = "cri-socket")]
    cri_socket: Option<String>,
    /// Where pod networks are configured (CNI `.conflist`/`.conf` files).
    #[arg(long = "cni-conf-dir", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where the CNI plugins are, `:`-separated.
    #[arg(long = "cni-bin-dir", default_value = "/opt/cni/bin:/usr/lib/cni")]
    cni_bin_dir: String,
    /// Use TLS on tcp:// listeners; implied by --tlsverify (--tls=false: plain TCP, even on a
    /// non-loopback address)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls: Option<bool>,
    /// Use TLS and require client certificates signed by --tlscacert
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tlsverify: Option<bool>,
    /// Trust certs signed only by this CA (default $DOCKER_CERT_PATH/ca.pem, else ~/.docker/ca.pem)
    #[arg(long, value_name = "PATH")]
    tlscacert: Option<PathBuf>,
    /// Path to the TLS certificate file (default $DOCKER_CERT_PATH/cert.pem, else ~/.docker/cert.pem)
    #[arg(long, value_name = "PATH")]
    tlscert: Option<PathBuf>,
    /// Path to the TLS key file (default $DOCKER_CERT_PATH/key.pem, else ~/.docker/key.pem)
    #[arg(long, value_name = "PATH")]
    tlskey: Option<PathBuf>,
    /// Write a new CA, a server and a client certificate into DIR (ca.pem, ca-key.pem,
    /// server-cert.pem, server-key.pem, cert.pem, key.pem), print how to use them, and exit
    #[arg(long = "tls-generate", value_name = "DIR")]
    tls_generate: Option<PathBuf>,
    /// Host name or IP address the generated server certificate is for (repeatable; localhost,
    /// 127.0.0.1, ::1 and this machine's name are always included)
    #[arg(long = "tls-san", value_name = "NAME", requires = "tls_generate")]
    tls_san: Vec<String>,
    /// Allowed origin for cross-origin API requests ("*" for any; a comma-separated list);
    /// without it, requests carrying an Origin header are refused on tcp:// listeners
    #[arg(long = "api-cors-header", value_name = "ORIGIN")]
    api_cors_header: Option<String>,
    /// Time a client has to send a request's headers (and the TLS handshake), also the idle
    /// time allowed between requests on a kept-alive connection; at most 60s
    #[arg(long = "api-header-timeout", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    api_header_timeout: std::time::Duration,
    /// Longest silence allowed while the daemon reads a request body
    #[arg(long = "api-body-timeout", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    api_body_timeout: std::time::Duration,
}

/// A duration as Go writes them (`60s`, `1m`, `500ms`, `1m30s`), or plain seconds (`60`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(n));
    }
    berth_cli::opts::parse_go_duration(s)
        .and_then(|ns| u64::try_from(ns).ok())
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| format!("invalid duration {s:?}: expected e.g. 60s, 500ms, 1m"))
}

/// `$DOCKER_CERT_PATH`, else `~/.docker`: where dockerd (and the docker CLI) look for
/// ca.pem, cert.pem and key.pem by default.
fn default_cert_dir() -> PathBuf {
    match std::env::var_os("DOCKER_CERT_PATH").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".docker"),
    }
}

/// dockerd's TLS rules: `--tlsverify` given at all (even `=false`) turns TLS on; `--tls` alone
/// also verifies clients unless `--tlsverify=false`. Returns the listeners' TLS settings and
/// whether plain TCP was asked for explicitly (`--tls=false`, `--tlsverify=false`).
fn tls_settings(a: &DaemonArgs) -> (Option<berth_daemon::tls::TlsFiles>, bool) {
    let tls = if a.tlsverify.is_some() {
        true
    } else {
        a.tls.unwrap_or(false)
    };
    let verify = a.tlsverify.or(a.tls).unwrap_or(false);
    let explicit_off = a.tls == Some(false) || a.tlsverify == Some(false);
    if !tls {
        return (None, explicit_off);
    }
    let dir = default_cert_dir();
    let files = berth_daemon::tls::TlsFiles {
        verify_clients: verify,
        ca: a.tlscacert.clone().unwrap_or_else(|| dir.join("ca.pem")),
        cert: a.tlscert.clone().unwrap_or_else(|| dir.join("cert.pem")),
        key: a.tlskey.clone().unwrap_or_else(|| dir.join("key.pem")),
    };
    (Some(files), explicit_off)
}

/// `--tls-generate DIR`: the files, and what to do with them.
fn tls_generate(dir: &std::path::Path, sans: &[String]) -> i32 {
    match berth_daemon::tls::generate(dir, sans) {
        Ok(g) => {
            let d = g.dir.display();
            println!("wrote {d}/{{ca,ca-key,server-cert,server-key,cert,key}}.pem");
            println!("server certificate for: {}", g.names.join(", "));
            println!();
            println!("daemon:  berth daemon --tlsverify --tlscacert={d}/ca.pem --tlscert={d}/server-cert.pem --tlskey={d}/server-key.pem -H tcp://0.0.0.0:2376");
            println!("clients: copy {d}/ca.pem, cert.pem and key.pem to the client, then");
            println!("         export DOCKER_HOST=tcp://HOST:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<that directory>");
            println!("keep {d}/ca-key.pem private: whoever has it can make client certificates");
            0
        }
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}

/// `--exec-opt`s to the cgroup driver (dockerd's words for a bad value); the host's default
/// when none names one. Refused when the host cannot use it.
fn cgroup_driver(opts: &[String]) -> Result<berth_runtime::cgroup::CgroupDriver, String> {
    let mut driver = None;
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("invalid exec-opt {o:?}: expected KEY=VALUE"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "native.cgroupdriver" => {
                driver = Some(
                    v.trim()
                        .parse::<berth_runtime::cgroup::CgroupDriver>()
                        .map_err(|e| e.to_string())?,
                )
            }
            other => {
                return Err(format!(
                    "unknown exec-opt {other}: Berth knows native.cgroupdriver"
                ))
            }
        }
    }
    use berth_runtime::cgroup::CgroupDriver;
    // Rootless, containers get cgroupfs cgroups in the daemon's delegated subtree (its cgroup
    // namespace's root); the system manager's scopes are not the user's to make.
    if berth_runtime::rootless::Mode::current().is_rootless() {
        return match driver {
            Some(CgroupDriver::Systemd) => Err(
                "native.cgroupdriver=systemd is not supported rootless: containers get cgroups \
                 in the rootless daemon's delegated subtree (cgroupfs)"
                    .into(),
            ),
            _ => Ok(CgroupDriver::Cgroupfs),
        };
    }
    match driver {
        Some(d) => {
            d.check_host().map_err(|e| e.to_string())?;
            Ok(d)
        }
        None => Ok(CgroupDriver::host_default()),
    }
}

/// `--default-cgroupns-mode` (dockerd's words), or the host's default.
fn default_cgroupns(mode: Option<&str>) -> Result<berth_runtime::cgroup::CgroupnsMode, String> {
    match mode {
        None => Ok(berth_runtime::cgroup::CgroupnsMode::host_default()),
        Some("private") => Ok(berth_runtime::cgroup::CgroupnsMode::Private),
        Some("host") => Ok(berth_runtime::cgroup::CgroupnsMode::Host),
        Some(other) => Err(format!(
            "default cgroup namespace mode ({other}) is invalid; use \"host\" or \"private\""
        )),
    }
}

/// The whole command tree, for help, completions and man pages: the CLI's, plus the commands
/// this binary dispatches itself.
fn full_command() -> clap::Command {
    use clap::CommandFactory;
    berth_cli::cli::Cli::command()
        .subcommand(DaemonArgs::command().name("daemon"))
        .subcommand(berth_registry::command().name("registry"))
}

/// Go's `%v` of a flag's values, for conflict messages.
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Applies the configuration file to `a`: every key the file sets and no flag gave. Refuses
/// (with dockerd's words) a key given both ways.
fn apply_config_file(
    a: &mut DaemonArgs,
    m: &clap::ArgMatches,
    explicit_file: bool,
) -> Result<(), String> {
    use berth_daemon::config;
    let Some(f) = config::load(&a.config_file, explicit_file)? else {
        return Ok(());
    };
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let mut flags: Vec<(&str, String)> = Vec::new();
    if given("host") {
        flags.push(("hosts", go_list(&a.host)));
    }
    if given("data_root") {
        flags.push(("data-root", a.data_root.display().to_string()));
    }
    if given("exec_root") {
        flags.push(("exec-root", a.exec_root.display().to_string()));
    }
    if given("pidfile") {
        let p = a.pidfile.as_ref().map(|p| p.display().to_string());
        flags.push(("pidfile", p.unwrap_or_default()));
    }
    if given("log_level") {
        flags.push(("log-level", a.log_level.clone()));
    }
    if given("debug") {
        flags.push(("debug", a.debug.to_string()));
    }
    if given("experimental") {
        flags.push(("experimental", a.experimental.to_string()));
    }
    if given("log_opt") {
        let mut kv = a.log_opt.clone();
        kv.sort();
        flags.push((
            "log-opts",
            format!(
                "map[{}]",
                kv.iter()
                    .map(|s| s.replacen('=', ":", 1))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    if given("insecure_registry") {
        flags.push(("insecure-registries", go_list(&a.insecure_registry)));
    }
    if given("registry_mirror") {
        flags.push(("registry-mirrors", go_list(&a.registry_mirror)));
    }
    if given("bridge") {
        flags.push(("bridge", a.bridge.clone()));
    }
    if given("bip") {
        flags.push(("bip", a.bip.clone().unwrap_or_default()));
    }
    if given("default_address_pool") {
        flags.push(("default-address-pools", go_list(&a.default_address_pool)));
    }
    if given("exec_opt") {
        flags.push(("exec-opts", go_list(&a.exec_opt)));
    }
    if given("default_cgroupns_mode") {
        let m = a.default_cgroupns_mode.clone().unwrap_or_default();
        flags.push(("default-cgroupns-mode", m));
    }
    if given("registry_config_path") {
        flags.push((
            "registry-config-path",
            a.registry_config_path.display().to_string(),
        ));
    }
    if given("cri_socket") {
        flags.push(("cri-socket", a.cri_socket.clone().unwrap_or_default()));
    }
    if given("cni_conf_dir") {
        flags.push(("cni-conf-dir", a.cni_conf_dir.display().to_string()));
    }
    if given("cni_bin_dir") {
        flags.push(("cni-bin-dir", a.cni_bin_dir.clone()));
    }
    if given("tls") {
        flags.push(("tls", a.tls.unwrap_or(true).to_string()));
    }
    if given("tlsverify") {
        flags.push(("tlsverify", a.tlsverify.unwrap_or(true).to_string()));
    }
    for (id, key, v) in [
        ("tlscacert", "tlscacert", &a.tlscacert),
        ("tlscert", "tlscert", &a.tlscert),
        ("tlskey", "tlskey", &a.tlskey),
    ] {
        if given(id) {
            let p = v.as_ref().map(|p| p.display().to_string());
            flags.push((key, p.unwrap_or_default()));
        }
    }
    if given("api_cors_header") {
        flags.push((
            "api-cors-header",
            a.api_cors_header.clone().unwrap_or_default(),
        ));
    }
    config::conflicts(&f, &flags)?;
    if let Some(v) = f.hosts {
        a.host = v;
    }
    if let Some(v) = f.data_root {
        a.data_root = v;
    }
    if let Some(v) = f.exec_root {
        a.exec_root = v;
    }
    if let Some(v) = f.pidfile {
        a.pidfile = Some(v);
    }
    if let Some(v) = f.log_level {
        a.log_level = v;
    }
    if let Some(v) = f.debug {
        a.debug = v;
    }
    if let Some(v) = f.experimental {
        a.experimental = v;
    }
    if let Some(v) = f.log_opts {
        a.log_opt = v.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    }
    if let Some(v) = f.insecure_registries {
        a.insecure_registry = v;
    }
    if let Some(v) = f.registry_mirrors {
        a.registry_mirror = v;
    }
    if let Some(v) = f.bridge {
        a.bridge = v;
    }
    if let Some(v) = f.bip {
        a.bip = Some(v);
    }
    if let Some(v) = f.default_address_pools {
        a.default_address_pool = v;
    }
    if let Some(v) = f.exec_opts {
        a.exec_opt = v;
    }
    if let Some(v) = f.default_cgroupns_mode {
        a.default_cgroupns_mode = Some(v);
    }
    if let Some(v) = f.registry_config_path {
        a.registry_config_path = v;
    }
    if let Some(v) = f.cri_socket {
        a.cri_socket = Some(v);
    }
    if let Some(v) = f.cni_conf_dir {
        a.cni_conf_dir = v;
    }
    if let Some(v) = f.cni_bin_dir {
        a.cni_bin_dir = v;
    }
    if let Some(v) = f.tls {
        a.tls = Some(v);
    }
    if let Some(v) = f.tlsverify {
        a.tlsverify = Some(v);
    }
    if let Some(v) = f.tlscacert {
        a.tlscacert = Some(v);
    }
    if let Some(v) = f.tlscert {
        a.tlscert = Some(v);
    }
    if let Some(v) = f.tlskey {
        a.tlskey = Some(v);
    }
    if let Some(v) = f.api_cors_header {
        a.api_cors_header = Some(v);
    }
    Ok(())
}

/// Sockets passed by systemd (`LISTEN_PID` is us, `LISTEN_FDS` of them from fd 3). The
/// variables are removed so that nothing the daemon starts inherits them. Called while the
/// process is still single-threaded.
fn take_activated_fds() -> Vec<i32> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if pid_ok && n > 0 {
        (3..3 + n).collect()
    } else {
        Vec::new()
    }
}

/// A non-root user's `berth daemon`: check the prerequisites (nothing is created when one is
/// missing), then run the real daemon inside a user namespace (`berth_runtime::rootless`).
fn rootless_outer(args: Vec<OsString>) -> i32 {
    use berth_runtime::rootless;
    let plan = match rootless::Plan::check() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth daemon: cannot run rootless: {e}");
            eprintln!("(`berth rootless check` lists every prerequisite)");
            return 1;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth daemon: cannot find own executable: {e}");
            return 1;
        }
    };
    // The one daemon flag the outer process needs (the daemon parses and checks it too).
    let mut net = Ok(rootless::NetDriver::Slirp4netns);
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--rootless-net=") {
            net = v.parse();
        } else if a == "--rootless-net" {
            net = it.next().unwrap_or_default().parse();
        }
    }
    let net = match net {
        Ok(n) => n,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 125;
        }
    };
    let mut inner = vec![OsString::from("daemon")];
    inner.extend(args.into_iter().skip(1));
    match rootless::run_outer(&plan, &exe, &inner, net) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth daemon: cannot run rootless: {e}");
            1
        }
    }
}

/// Rootless defaults: the user's places (`berth_runtime::rootless::Paths`) for whatever the
/// command line did not set.
fn apply_rootless_defaults(a: &mut DaemonArgs, m: &clap::ArgMatches) -> Result<(), String> {
    let p = berth_runtime::rootless::Paths::from_env().map_err(|e| e.to_string())?;
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    if !given("host") {
        a.host = vec![format!("unix://{}", p.socket.display())];
    }
    if !given("data_root") {
        a.data_root = p.data_root;
    }
    if !given("exec_root") {
        a.exec_root = p.exec_root;
    }
    if !given("config_file") {
        a.config_file = p.config_file;
    }
    Ok(())
}

fn daemon(args: Vec<OsString>) -> i32 {
    use clap::{CommandFactory, FromArgMatches};
    let activated_fds = take_activated_fds();
    let holder = std::env::var(berth_runtime::rootless::JOIN_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    if let Some(pid) = holder {
        if let Err(e) = berth_runtime::rootless::join_inner(pid) {
            eprintln!("berth daemon: cannot enter the rootless namespaces: {e}");
            return 1;
        }
    } else if !nix_is_root() && !is_info_only(&args) {
        return rootless_outer(args);
    }
    let parsed = DaemonArgs::command()
        .try_get_matches_from(args)
        .and_then(|m| DaemonArgs::from_arg_matches(&m).map(|a| (a, m)));
    let (mut a, matches) = match parsed {
        Ok(x) => x,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    if let Some(dir) = &a.tls_generate {
        return tls_generate(dir, &a.tls_san);
    }
    if berth_runtime::rootless::Mode::current().is_rootless() {
        if let Err(e) = apply_rootless_defaults(&mut a, &matches) {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    }
    let explicit_file =
        matches.value_source("config_file") == Some(clap::parser::ValueSource::CommandLine);
    if let Err(e) = apply_config_file(&mut a, &matches, explicit_file) {
        eprintln!(
            "unable to configure the Berth daemon with file {}: {e}",
            a.config_file.display()
        );
        return 1;
    }
    let level = if a.debug {
        "debug".to_string()
    } else {
        match a.log_level.as_str() {
            "fatal" => "error".to_string(),
            l @ ("debug" | "info" | "warn" | "error" | "trace") => l.to_string(),
            other => {
                eprintln!("berth daemon: invalid log level: {other}");
                return 125;
            }
        }
    };
    let mut log_opts = std::collections::BTreeMap::new();
    for o in &a.log_opt {
        match o.split_once('=') {
            Some((k, v)) => {
                log_opts.insert(k.to_string(), v.to_string());
            }
            None => {
                eprintln!("berth daemon: invalid log opt {o:?}: expected KEY=VALUE");
                return 125;
            }
        }
    }
    if let Err(e) = berth_daemon::config::validate_log_opts(&log_opts) {
        eprintln!("berth daemon: {e}");
        return 125;
    }
    let mut network = berth_daemon::NetConfig {
        bridge: a.bridge.clone(),
        ..Default::default()
    };
    if let Some(b) = &a.bip {
        match b.parse() {
            Ok(c) => network.bip = Some(c),
            Err(e) => {
                eprintln!("berth daemon: --bip: {e}");
                return 125;
            }
        }
    }
    if !a.default_address_pool.is_empty() {
        let mut pools = Vec::new();
        for p in &a.default_address_pool {
            match berth_daemon::parse_pool(p) {
                Ok(x) => pools.push(x),
                Err(e) => {
                    eprintln!("berth daemon: --default-address-pool: {e}");
                    return 125;
                }
            }
        }
        network.pools = pools;
    }
    let driver = match cgroup_driver(&a.exec_opt) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    let cgroupns = match default_cgroupns(a.default_cgroupns_mode.as_deref()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    if a.api_header_timeout.is_zero() || a.api_header_timeout > std::time::Duration::from_secs(60) {
        eprintln!("berth daemon: --api-header-timeout must be more than 0 and at most 60s");
        return 125;
    }
    if a.api_body_timeout.is_zero() {
        eprintln!("berth daemon: --api-body-timeout must be more than 0");
        return 125;
    }
    let (tls, tls_explicitly_off) = tls_settings(&a);
    if let Some(files) = &tls {
        // The files are read now so that --validate (and a typo) fails before anything starts.
        if let Err(e) = berth_daemon::tls::server_config(files) {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    }
    if let Err(e) = berth_daemon::config::validate_socket_paths(&a.host, a.cri_socket.as_deref()) {
        eprintln!("berth daemon: {e}");
        return 1;
    }
    if a.validate {
        println!("configuration OK");
        return 0;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "warn,berth={level},berth_daemon={level},berth_engine={level},berth_image={level},berth_runtime={level},berth_net={level},berth_cri={level}"
        )))
        .with_writer(std::io::stderr)
        .init();
    if berth_runtime::rootless::Mode::current().is_rootless() {
        // A holder started by an older daemon did not enable them; idempotent otherwise.
        berth_runtime::rootless::enable_controllers();
        let cg = berth_runtime::rootless::Cgroups::probe();
        match cg.warning() {
            Some(w) => tracing::warn!("WARNING: {w}"),
            None => tracing::info!(
                "rootless: cgroup controllers {} delegated: limits are applied",
                cg.controllers.join(" ")
            ),
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth daemon: cannot find own executable: {e}");
            return 1;
        }
    };
    let cri_socket = a
        .cri_socket
        .clone()
        .unwrap_or_else(|| format!("unix://{}/cri.sock", a.exec_root.display()));
    let opts = berth_daemon::DaemonOptions {
        network,
        hosts: a.host,
        pidfile: a.pidfile.unwrap_or_else(|| a.exec_root.join("berth.pid")),
        data_root: a.data_root,
        exec_root: a.exec_root,
        berth_exe: exe,
        insecure_registries: a.insecure_registry,
        registry_mirrors: a.registry_mirror,
        log_opts,
        activated_fds,
        experimental: a.experimental,
        cgroup_driver: driver,
        default_cgroupns: cgroupns,
        registry_config_path: a.registry_config_path,
        cri_socket,
        cni_conf_dir: a.cni_conf_dir,
        cni_bin_dirs: std::env::split_paths(&a.cni_bin_dir).collect(),
        tls,
        tls_explicitly_off,
        hygiene: berth_daemon::hygiene::Hygiene {
            header_timeout: a.api_header_timeout,
            body_timeout: a.api_body_timeout,
            cors: a.api_cors_header.clone().filter(|c| !c.is_empty()),
        },
    };
    release_memory_after_bursts();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    match rt.block_on(berth_daemon::run(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}

/// `berth rootless check`: every prerequisite of a rootless daemon for the calling user, with
/// the fix for each missing one. Exit 0 when everything is in place.
fn rootless_cmd(args: &[OsString]) -> i32 {
    let sub = args.first().and_then(|s| s.to_str()).unwrap_or("");
    let rest: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match sub {
        "check" => {
            let checks = berth_runtime::rootless::check_all();
            let mut missing = 0;
            for c in &checks {
                match &c.fix {
                    None => println!("[ok]      {}", c.what),
                    Some(fix) => {
                        missing += 1;
                        println!("[missing] {}\n          fix: {fix}", c.what);
                    }
                }
            }
            if missing == 0 {
                println!("rootless berth can run: start it with `berth daemon` as this user");
                0
            } else {
                println!("{missing} prerequisite(s) missing");
                1
            }
        }
        "setup" | "install" => rootless_setup::setup(&rest),
        "uninstall" => rootless_setup::uninstall(&rest),
        // The process that keeps the rootless namespaces; started by the outer daemon only.
        "holder" => berth_runtime::rootless::holder_main(),
        // The TCP port forwarder; started by the outer daemon only.
        "portd" => berth_runtime::portd::main(),
        // Started by `uninstall --purge` only.
        "purge-data" => berth_runtime::rootless::purge_data_main(),
        "-h" | "--help" | "" => {
            println!(
                "Usage: berth rootless COMMAND\n\n\
                 Commands:\n  \
                 check               Check the prerequisites of running `berth daemon` as this (non-root)\n                      user, and print the fix for each missing one\n  \
                 setup               Check, install the systemd user unit berth.service (enabled and\n                      started when a user systemd manager is reachable), make the docker CLI\n                      context \"rootless\", and print the DOCKER_HOST line\n  \
                 uninstall [--purge] Stop the daemon, its containers and namespaces; remove the unit and\n                      the context (--purge: the data too)"
            );
            i32::from(sub.is_empty())
        }
        other => {
            eprintln!("berth rootless: unknown command {other:?} (try `berth rootless --help`)");
            125
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `--help`, `--version`-like and file-only invocations need no namespaces.
fn is_info_only(args: &[OsString]) -> bool {
    args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == "-h" || a == "--help" || a == "--validate" || a.starts_with("--tls-generate")
    })
}

/// A long-lived daemon goes back to its idle size after a pull, push or load. glibc raises its
/// mmap threshold with each large free (up to 32 MiB), so a push's buffers end up on the heap
/// and stay there: about 9 MB of the idle RSS after pushing two small images. A fixed threshold
/// gives large buffers back on free, and a low trim threshold returns the heap's free top.
fn release_memory_after_bursts() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets the allocator's parameters (under its own locks).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let sub = args.get(1).and_then(|s| s.to_str()).unwrap_or("");
    let code = match sub {
        // The shim must stay single-threaded: dispatch before anything starts a runtime.
        "shim" => berth_runtime::shim::main(
            args[2..]
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
        ),
        // A pod's namespace holder: single-threaded too (it unshares and forks).
        "pod-infra" => berth_runtime::infra::main(
            args[2..]
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
        ),
        "registry" => berth_registry::main(
            args[2..]
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
        ),
        "rootless" => rootless_cmd(&args[2..]),
        "daemon" | "dockerd" => {
            let mut a = vec![OsString::from("berth daemon")];
            a.extend(args[2..].iter().cloned());
            daemon(a)
        }
        _ => berth_cli::run_with(args, full_command),
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }

    fn args(a: &[&str]) -> DaemonArgs {
        let mut v = vec!["berth daemon"];
        v.extend_from_slice(a);
        DaemonArgs::try_parse_from(v).expect("parse")
    }

    #[test]
    fn tls_rules_are_dockerds() {
        assert_eq!(tls_settings(&args(&[])), (None, false));
        assert_eq!(tls_settings(&args(&["--tls=false"])), (None, true));
        // --tls alone verifies clients too (dockerd: TLSVerify defaults to TLS).
        let (f, off) = tls_settings(&args(&["--tls", "--tlscacert", "/c/ca.pem"]));
        let f = f.expect("tls");
        assert!(f.verify_clients && !off);
        assert_eq!(f.ca, PathBuf::from("/c/ca.pem"));
        // --tlsverify=false: TLS, no client verification, and an explicit opt-out.
        let (f, off) = tls_settings(&args(&["--tlsverify=false"]));
        assert!(!f.expect("tls").verify_clients && off);
        let (f, _) = tls_settings(&args(&["--tls=false", "--tlsverify"]));
        assert!(f.expect("tlsverify turns TLS on").verify_clients);
    }
}
