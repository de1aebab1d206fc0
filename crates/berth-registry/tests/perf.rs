//! Rough timing of a push and a pull of a ~64 MB two-layer image through `berth registry serve`
//! (ignored: a measurement, not a test). `cargo test -p berth-registry --test perf -- --ignored --nocapture`

mod common;

use berth_image::{ImageStore, Reference};
use berth_registry::{pull, push, PullOptions, PushOptions};
use common::*;
use std::time::Instant;

#[test]
#[ignore]
fn pull_64mb() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let mut x: u64 = 88172645463325252;
    let mut noise = vec![0u8; 32 << 20];
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 56) as u8;
    }
    let l1 = layer_tar(&[("a", &noise[..16 << 20])]);
    let l2 = layer_tar(&[("b", &noise[16 << 20..]), ("c", &vec![0u8; 32 << 20][..])]);
    let i1 = s1.add_layer(None, &mut l1.as_slice()).unwrap();
    let i2 = s1
        .add_layer(Some(&i1.chain_id), &mut l2.as_slice())
        .unwrap();
    let name = format!("{host}/perf/app:v1");
    let config = serde_json::json!({
        "architecture": berth_image::config::host_architecture(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [i1.diff_id, i2.diff_id]},
    });
    s1.create_image(
        &serde_json::to_vec(&config).unwrap(),
        &[Reference::parse(&name).unwrap()],
    )
    .unwrap();
    let t = Instant::now();
    let (_l, mut cb) = collect();
    push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    println!("push: {:?}", t.elapsed());
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let t = Instant::now();
    let (_l, mut cb) = collect();
    pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap();
    println!("pull: {:?}", t.elapsed());
    rt.block_on(reg.shutdown());
}
