//! The one berth binary: `berth daemon`, `berth registry serve|garbage-collect`, the hidden
//! `berth shim`, and otherwise the CLI.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// berth daemon: serves the Docker Engine API.
#[derive(Parser, Debug)]
#[command(
    name = "berth daemon",
    about = "Run the Berth daemon (Docker Engine API server)"
)]
struct DaemonArgs {
    /// Daemon socket(s) to listen on
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/berth/berth.sock"
    )]
    host: Vec<String>,
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
    /// Registry reached over plain HTTP (repeatable; localhost and 127.0.0.0/8 always are)
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
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
}

fn daemon(args: Vec<OsString>) -> i32 {
    let a = match DaemonArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "warn,berth={level},berth_daemon={level},berth_engine={level},berth_image={level},berth_runtime={level},berth_net={level}"
        )))
        .with_writer(std::io::stderr)
        .init();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth daemon: cannot find own executable: {e}");
            return 1;
        }
    };
    let mut network = berth_daemon::NetConfig {
        bridge: a.bridge,
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
    let opts = berth_daemon::DaemonOptions {
        network,
        hosts: a.host,
        pidfile: a.pidfile.unwrap_or_else(|| a.exec_root.join("berth.pid")),
        data_root: a.data_root,
        exec_root: a.exec_root,
        berth_exe: exe,
        insecure_registries: a.insecure_registry,
        registry_mirrors: a.registry_mirror,
    };
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
        "registry" => berth_registry::main(
            args[2..]
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
        ),
        "daemon" | "dockerd" => {
            let mut a = vec![OsString::from("berth daemon")];
            a.extend(args[2..].iter().cloned());
            daemon(a)
        }
        _ => berth_cli::run(args),
    };
    std::process::exit(code);
}
