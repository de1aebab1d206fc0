#![allow(dead_code)]

use berth_image::{ImageStore, Reference};
use berth_registry::server::{spawn, Registry, ServerConfig};
use berth_registry::Progress;

pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A two-layer image tagged `tag`; `salt` makes its content unique.
pub fn build_image(store: &ImageStore, tag: &str, salt: &str) -> String {
    let l1 = layer_tar(&[("etc/hello", format!("hello {salt}\n").as_bytes())]);
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let l2 = layer_tar(&[
        ("bin/app", b"#!/bin/sh\necho hi\n".as_slice()),
        ("data/big", big.as_slice()),
    ]);
    let i1 = store.add_layer(None, &mut l1.as_slice()).unwrap();
    let i2 = store
        .add_layer(Some(&i1.chain_id), &mut l2.as_slice())
        .unwrap();
    let config = serde_json::json!({
        "architecture": berth_image::config::host_architecture(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/app"], "Env": [format!("SALT={salt}")]},
        "rootfs": {"type": "layers", "diff_ids": [i1.diff_id, i2.diff_id]},
        "history": [{"created_by": "layer 1"}, {"created_by": "layer 2"}],
    });
    store
        .create_image(
            &serde_json::to_vec(&config).unwrap(),
            &[Reference::parse(tag).unwrap()],
        )
        .unwrap()
}

pub fn start_registry(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    htpasswd: Option<std::path::PathBuf>,
    anonymous_read: bool,
) -> Registry {
    let cfg = ServerConfig {
        storage: dir.join("registry"),
        htpasswd,
        anonymous_read,
    };
    rt.block_on(spawn(&cfg, "127.0.0.1:0", None)).unwrap()
}

pub fn collect() -> (
    std::sync::Arc<std::sync::Mutex<Vec<Progress>>>,
    impl FnMut(Progress),
) {
    let v = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let v2 = v.clone();
    (v, move |p: Progress| v2.lock().unwrap().push(p))
}

pub fn statuses(v: &std::sync::Mutex<Vec<Progress>>) -> Vec<String> {
    v.lock()
        .unwrap()
        .iter()
        .map(|p| match &p.id {
            Some(id) => format!("{id}: {}", p.status),
            None => p.status.clone(),
        })
        .collect()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
