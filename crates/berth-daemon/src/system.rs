//! /_ping, /version, /info.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_api::types::{ComponentVersion, PlatformName, SystemInfo, SystemVersion};

use crate::server::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
}

async fn ping() -> Response<Body> {
    let mut r = Response::new(Body::from("OK"));
    let h = r.headers_mut();
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    // The legacy builder ("1"): the docker CLI then sends builds to POST /build as Docker 1.x did.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version(State(st): State<AppState>) -> Json<SystemVersion> {
    let v = env!("CARGO_PKG_VERSION").to_string();
    Json(SystemVersion {
        platform: PlatformName {
            name: format!("Berth Engine {v}"),
        },
        components: Some(vec![ComponentVersion {
            name: "Engine".into(),
            version: v.clone(),
            details: None,
        }]),
        version: v,
        api_version: berth_api::API_VERSION.into(),
        min_api_version: berth_api::MIN_API_VERSION.into(),
        git_commit: option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown").into(),
        go_version: "n/a (Rust)".into(),
        os: "linux".into(),
        arch: arch().into(),
        kernel_version: kernel_version(),
        experimental: st.engine.config().experimental,
        build_time: String::new(),
    })
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn cgroup_version() -> &'static str {
    // A pure v2 host has cgroup.controllers at the root of /sys/fs/cgroup.
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

async fn info(State(st): State<AppState>) -> Json<SystemInfo> {
    let (total, running, paused, stopped) = st.engine.counts();
    let images = st
        .engine
        .images()
        .list()
        .map(|l| l.len() as i64)
        .unwrap_or(0);
    let cfg = st.engine.config();
    let mut info = SystemInfo {
        id: st.engine.id().to_string(),
        containers: total,
        containers_running: running,
        containers_paused: paused,
        containers_stopped: stopped,
        images,
        driver: "overlay2".into(),
        driver_status: Some(vec![["Backing Filesystem".into(), "extfs".into()]]),
        docker_root_dir: cfg.data_root.display().to_string(),
        memory_limit: true,
        swap_limit: true,
        cpu_cfs_period: true,
        cpu_cfs_quota: true,
        cpu_shares: true,
        cpu_set: true,
        pids_limit: true,
        oom_kill_disable: true,
        system_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        logging_driver: "json-file".into(),
        cgroup_driver: cfg.cgroup_driver.to_string(),
        cgroup_version: cgroup_version().into(),
        kernel_version: kernel_version(),
        operating_system: os_name(),
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1),
        mem_total: mem_total(),
        index_server_address: "https://index.docker.io/v1/".into(),
        name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        default_runtime: "berth".into(),
        live_restore_enabled: true,
        experimental_build: cfg.experimental,
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        // A full data root (`berth_engine::disk`): the docker CLI prints these under `info`.
        warnings: st.engine.disk_warning().map(|w| vec![w]),
        ..Default::default()
    };
    if st.engine.rootless() {
        rootless_info(&mut info);
    }
    Json(info)
}

/// What dockerd reports rootless: `name=rootless` (clients such as testcontainers look for
/// it), the limits the delegated cgroup controllers support (none on a v1 host or without a
/// delegated subtree), the cgroup version of the host, and a warning for the rest.
fn rootless_info(info: &mut SystemInfo) {
    if let Some(o) = info.security_options.as_mut() {
        o.push("name=rootless".into());
    }
    let cg = berth_engine::RootlessCgroups::probe();
    info.memory_limit = cg.has("memory");
    info.swap_limit = info.swap_limit && cg.has("memory");
    info.cpu_cfs_period = cg.has("cpu");
    info.cpu_cfs_quota = cg.has("cpu");
    info.cpu_shares = cg.has("cpu");
    info.cpu_set = cg.has("cpuset");
    info.pids_limit = cg.has("pids");
    info.oom_kill_disable = false;
    info.cgroup_driver = cg.driver().into();
    info.cgroup_version = if cg.v2 { "2" } else { "1" }.into();
    if let Some(w) = cg.warning() {
        info.warnings
            .get_or_insert_with(Vec::new)
            .push(format!("WARNING: {w}"));
    }
}
