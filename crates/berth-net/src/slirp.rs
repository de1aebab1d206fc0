//! Host port forwards through slirp4netns's API socket: a rootless daemon lives in a network
//! namespace of its own, so a published port must also be opened on the host, by slirp4netns,
//! towards the daemon's address on the slirp network; the daemon's DNAT does the rest.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Where forwards go: slirp4netns's API socket and the daemon's address on its network.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub api: PathBuf,
    pub guest: Ipv4Addr,
    /// TCP forwards go to this API instead when set: the rootless port forwarder, which
    /// speaks slirp4netns's API and connects to the guest port on the daemon's loopback.
    pub tcp_api: Option<PathBuf>,
}

static FORWARDER: OnceLock<Forwarder> = OnceLock::new();

/// Set once at startup by a rootless daemon whose network goes through slirp4netns. A
/// slirp4netns kept from the previous daemon still has that daemon's forwards: they are
/// removed here, and live restore adds those of the containers still running again.
pub fn set_forwarder(f: Forwarder) {
    for api in std::iter::once(&f.api).chain(f.tcp_api.as_ref()) {
        clear(api);
    }
    let _ = FORWARDER.set(f);
}

fn clear(api: &std::path::Path) {
    let list = call(api, &serde_json::json!({"execute": "list_hostfwd"}));
    match list {
        Ok(r) => {
            // slirp4netns 1.2 answers `{"entries": [...]}`; its manual shows a "return" around it.
            let entries = r.get("return").unwrap_or(&r)["entries"].as_array().cloned();
            for e in entries.into_iter().flatten() {
                if let Some(id) = e["id"].as_u64() {
                    drop(HostFwd {
                        api: api.to_path_buf(),
                        id,
                    });
                }
            }
        }
        Err(e) => tracing::warn!("{}: list_hostfwd: {e}", api.display()),
    }
}

pub(crate) fn forwarder() -> Option<&'static Forwarder> {
    FORWARDER.get()
}

/// One forward on the host, removed on drop.
#[derive(Debug)]
pub struct HostFwd {
    api: PathBuf,
    id: u64,
}

fn call(api: &std::path::Path, req: &serde_json::Value) -> std::io::Result<serde_json::Value> {
    let mut s = UnixStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(req.to_string().as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    serde_json::from_str(&body).map_err(|e| std::io::Error::other(format!("slirp4netns API: {e}")))
}

/// `add_hostfwd`: `host_ip:port` on the host to the daemon's `port`.
pub(crate) fn add(
    f: &Forwarder,
    proto: &str,
    host_ip: Option<Ipv4Addr>,
    port: u16,
) -> std::io::Result<HostFwd> {
    let req = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": proto,
            "host_addr": host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "host_port": port,
            "guest_addr": f.guest.to_string(),
            "guest_port": port,
        }
    });
    let api = match (&f.tcp_api, proto) {
        (Some(t), "tcp") => t,
        _ => &f.api,
    };
    let r = call(api, &req)?;
    match r["return"]["id"].as_u64() {
        Some(id) => Ok(HostFwd {
            api: api.clone(),
            id,
        }),
        // slirp4netns fails an add only when it cannot bind the host port.
        None => Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE)),
    }
}

/// Set at daemon shutdown: the forwards of running containers stay with slirp4netns, which
/// outlives the daemon, so published ports keep working until the next daemon takes them back.
static KEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Daemon shutdown: forwards dropped from now on stay open on the host.
pub fn keep_forwards() {
    KEEP.store(true, std::sync::atomic::Ordering::SeqCst);
}

impl Drop for HostFwd {
    fn drop(&mut self) {
        if KEEP.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let req = serde_json::json!({"execute": "remove_hostfwd", "arguments": {"id": self.id}});
        if let Err(e) = call(&self.api, &req) {
            tracing::warn!("slirp4netns: remove_hostfwd {}: {e}", self.id);
        }
    }
}
