//! Pull/push round trips between `ImageStore`s through `berth registry serve`.

mod common;

use berth_image::ImageStore;
use berth_registry::{
    inspect_distribution, login, pull, push, PullOptions, PushOptions, RegistryAuth, RegistryError,
};
use common::*;

#[test]
fn push_pull_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/test/app:v1");
    let id = build_image(&s1, &name, "a");

    let (log, mut cb) = collect();
    let res = push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    let st = statuses(&log);
    assert_eq!(
        st[0],
        format!("The push refers to repository [{host}/test/app]")
    );
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Pushed")).count(),
        2,
        "{st:?}"
    );
    assert!(st.iter().any(|s| s.ends_with(": Preparing")));
    assert!(st.iter().any(|s| s.ends_with(": Pushing")));
    assert!(
        st.contains(&format!("v1: digest: {} size: {}", res.digest, res.size)),
        "{st:?}"
    );

    // Second push: every layer already exists.
    let (log, mut cb) = collect();
    let again = push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    assert_eq!(again.digest, res.digest);
    let st = statuses(&log);
    assert_eq!(
        st.iter()
            .filter(|s| s.ends_with("Layer already exists"))
            .count(),
        2,
        "{st:?}"
    );

    // Another repository of the same registry: cross-repository mount.
    let other = format!("{host}/other/app:v1");
    s1.tag(&name, &other).unwrap();
    let (log, mut cb) = collect();
    push(&s1, &other, &PushOptions::default(), &mut cb).unwrap();
    let st = statuses(&log);
    assert_eq!(
        st.iter()
            .filter(|s| s.ends_with("Mounted from test/app"))
            .count(),
        2,
        "{st:?}"
    );

    // A different image sharing one layer, into a third repository: that layer is mounted.
    let third = format!("{host}/third/app:v1");
    build_image(&s1, &third, "b");
    let (log, mut cb) = collect();
    push(&s1, &third, &PushOptions::default(), &mut cb).unwrap();
    let st = statuses(&log);
    assert_eq!(
        st.iter().filter(|s| s.contains(": Mounted from ")).count(),
        1,
        "{st:?}"
    );
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Pushed")).count(),
        1,
        "{st:?}"
    );

    // Pull into a fresh store.
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (log, mut cb) = collect();
    let pulled = pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap();
    assert_eq!(pulled, id);
    let st = statuses(&log);
    assert_eq!(st[0], "v1: Pulling from test/app");
    for s in [
        "Pulling fs layer",
        "Verifying Checksum",
        "Download complete",
        "Pull complete",
    ] {
        assert_eq!(
            st.iter().filter(|x| x.ends_with(s)).count(),
            2,
            "{s}: {st:?}"
        );
    }
    assert!(st.contains(&format!("Digest: {}", res.digest)));
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Downloaded newer image for {name}")
    );
    let img = s2.get(&name).unwrap();
    assert!(img
        .repo_digests
        .contains(&format!("{host}/test/app@{}", res.digest)));
    assert_eq!(s2.image_layers(&id).unwrap(), s1.image_layers(&id).unwrap());

    // Pulling again: up to date, nothing downloaded.
    let (log, mut cb) = collect();
    pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap();
    let st = statuses(&log);
    assert!(!st.iter().any(|s| s.contains("Downloading")));
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Image is up to date for {name}")
    );

    // By digest, into a third store.
    let s3 = ImageStore::open(&dir.path().join("s3")).unwrap();
    let by_digest = format!("{host}/test/app@{}", res.digest);
    let (_log, mut cb) = collect();
    assert_eq!(
        pull(&s3, &by_digest, &PullOptions::default(), &mut cb).unwrap(),
        id
    );

    // Through a multi-platform index.
    let m = manifest_of(&rt, &host, "test/app", "v1");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": m.1, "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 1,
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": m.1, "digest": res.digest, "size": m.0,
             "platform": {"os": "linux", "architecture": berth_image::config::host_architecture()}},
        ],
    });
    let body = serde_json::to_vec(&index).unwrap();
    let index_digest = berth_registry::storage::sha256_digest(&body);
    rt.block_on(async {
        let r = reqwest::Client::new()
            .put(format!("http://{host}/v2/test/app/manifests/multi"))
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "index child must exist");
    });
    // Replace the bogus child by the real one twice over.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": m.1, "digest": res.digest, "size": m.0,
             "platform": {"os": "linux", "architecture": "s390x-not"}},
            {"mediaType": m.1, "digest": res.digest, "size": m.0,
             "platform": {"os": "linux", "architecture": berth_image::config::host_architecture()}},
        ],
    });
    let body = serde_json::to_vec(&index).unwrap();
    let index_digest2 = berth_registry::storage::sha256_digest(&body);
    assert_ne!(index_digest, index_digest2);
    rt.block_on(async {
        let r = reqwest::Client::new()
            .put(format!("http://{host}/v2/test/app/manifests/multi"))
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let s4 = ImageStore::open(&dir.path().join("s4")).unwrap();
    let (log, mut cb) = collect();
    let multi = format!("{host}/test/app:multi");
    assert_eq!(
        pull(&s4, &multi, &PullOptions::default(), &mut cb).unwrap(),
        id
    );
    assert!(statuses(&log).contains(&format!("Digest: {index_digest2}")));
    let opts = PullOptions {
        platform: Some("linux/riscv-none".into()),
        ..Default::default()
    };
    let (_log, mut cb) = collect();
    let err = pull(&s4, &multi, &opts, &mut cb).unwrap_err();
    assert!(
        err.to_string()
            .contains("no matching manifest for linux/riscv-none"),
        "{err}"
    );

    // A single-platform image pulled for another platform: Docker's refusal.
    let opts = PullOptions {
        platform: Some("linux/s390x".into()),
        ..Default::default()
    };
    let (_log, mut cb) = collect();
    let err = pull(&s4, &name, &opts, &mut cb).unwrap_err();
    assert!(
        err.to_string()
            .contains("was found but does not match the specified platform: wanted linux/s390x"),
        "{err}"
    );

    // Distribution inspect.
    let di = inspect_distribution(&multi, &PullOptions::default()).unwrap();
    assert_eq!(di.descriptor.digest, index_digest2);
    assert_eq!(di.platforms.len(), 2);
    let di = inspect_distribution(&name, &PullOptions::default()).unwrap();
    assert_eq!(di.descriptor.digest, res.digest);
    assert_eq!(di.platforms[0].os, "linux");

    // Unknown tag: Docker's wording.
    let (_log, mut cb) = collect();
    let err = pull(
        &s4,
        &format!("{host}/test/app:nope"),
        &PullOptions::default(),
        &mut cb,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("manifest for {host}/test/app:nope not found: manifest unknown: manifest unknown")
    );
    rt.block_on(reg.shutdown());
}

/// (size, media type) of a manifest on the registry.
fn manifest_of(rt: &tokio::runtime::Runtime, host: &str, repo: &str, tag: &str) -> (u64, String) {
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("http://{host}/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        (r.bytes().await.unwrap().len() as u64, ct)
    })
}

#[test]
fn corrupted_blob_is_rejected_and_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/bad/app:v1");
    build_image(&s1, &name, "corrupt");
    let (_l, mut cb) = collect();
    push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    // Flip bytes of the biggest blob in the registry's storage.
    let blobs = dir.path().join("registry/blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut data = std::fs::read(&biggest).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    data[n / 2 + 1] ^= 0xff;
    std::fs::write(&biggest, &data).unwrap();

    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (_l, mut cb) = collect();
    let err = pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::DigestMismatch(_) | RegistryError::Image(_)
        ),
        "{err:?}"
    );
    assert!(s2.list().unwrap().is_empty(), "no partial image visible");
    rt.block_on(reg.shutdown());
}

#[test]
fn basic_auth_push_and_anonymous_pull() {
    let dir = tempfile::tempdir().unwrap();
    let ht = dir.path().join("htpasswd");
    std::fs::write(&ht, format!("bob:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), Some(ht), true);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/auth/app:v1");
    let id = build_image(&s1, &name, "auth");
    let (_l, mut cb) = collect();
    let err = push(&s1, &name, &PushOptions::default(), &mut cb).unwrap_err();
    assert!(err.to_string().contains("authentication required"), "{err}");
    let auth = RegistryAuth {
        username: "bob".into(),
        password: "pw".into(),
        ..Default::default()
    };
    let opts = PushOptions {
        auth: Some(auth.clone()),
        ..Default::default()
    };
    let (_l, mut cb) = collect();
    push(&s1, &name, &opts, &mut cb).unwrap();
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (_l, mut cb) = collect();
    assert_eq!(
        pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap(),
        id
    );

    assert_eq!(login(&host, &auth, &[]).unwrap(), "Login Succeeded");
    let bad = RegistryAuth {
        username: "bob".into(),
        password: "nope".into(),
        ..Default::default()
    };
    rt.block_on(reg.shutdown());
    // Without anonymous read the ping is challenged; a wrong password fails.
    let ht = dir.path().join("htpasswd");
    let reg = start_registry(&rt, dir.path(), Some(ht), false);
    let host = reg.addr.to_string();
    let err = login(&host, &bad, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("login attempt to http://{host}/v2/ failed with status: 401 Unauthorized")
    );
    assert_eq!(login(&host, &auth, &[]).unwrap(), "Login Succeeded");
    rt.block_on(reg.shutdown());
}

#[test]
fn pulls_zstd_and_uncompressed_oci_layers() {
    let zstd_ok = std::process::Command::new("zstd")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !zstd_ok {
        println!("SKIP: the zstd command is not installed (apt-get install zstd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let plain1 = layer_tar(&[("etc/zstd-one", b"one\n".as_slice())]);
    let plain2 = layer_tar(&[("etc/zstd-two", vec![7u8; 200_000].as_slice())]);
    let raw = dir.path().join("l2.tar");
    std::fs::write(&raw, &plain2).unwrap();
    let st = std::process::Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(dir.path().join("l2.tar.zst"))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let zst = std::fs::read(dir.path().join("l2.tar.zst")).unwrap();
    let d = berth_registry::storage::sha256_digest;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": berth_image::config::host_architecture(),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d(&plain1), d(&plain2)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(&config), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(&plain1), "size": plain1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d(&zst), "size": zst.len()},
        ],
    }))
    .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        for blob in [&plain1, &zst, &config] {
            let r = c
                .post(format!(
                    "http://{host}/v2/z/app/blobs/uploads/?digest={}",
                    d(blob)
                ))
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let r = c
            .put(format!("http://{host}/v2/z/app/manifests/v1"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let s = ImageStore::open(&dir.path().join("s")).unwrap();
    let (_l, mut cb) = collect();
    let id = pull(
        &s,
        &format!("{host}/z/app:v1"),
        &PullOptions::default(),
        &mut cb,
    )
    .unwrap();
    assert_eq!(id, d(&config));
    let layers = s.image_layers(&id).unwrap();
    assert_eq!(layers[1].diff_id, d(&plain2));
    rt.block_on(reg.shutdown());
}

#[test]
fn pull_reuses_a_layer_already_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let reg = start_registry(&rt, dir.path(), None, false);
    let host = reg.addr.to_string();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/reuse/app:v1");
    let id = build_image(&s1, &name, "reuse");
    let (_l, mut cb) = collect();
    push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();

    // The second store holds the first layer only (as an interrupted pull leaves it), no image.
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let l1 = layer_tar(&[("etc/hello", b"hello reuse\n".as_slice())]);
    let first = s2.add_layer(None, &mut l1.as_slice()).unwrap();
    let layers = s1.image_layers(&id).unwrap();
    assert_eq!(first.chain_id, layers[0].chain_id);
    assert!(s2.has_layer(&layers[0].chain_id));
    assert!(!s2.has_layer(&layers[1].chain_id));
    assert!(s2.list().unwrap().is_empty());

    let (log, mut cb) = collect();
    assert_eq!(
        pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap(),
        id
    );
    let st = statuses(&log);
    let exists: Vec<&String> = st
        .iter()
        .filter(|s| s.ends_with(": Already exists"))
        .collect();
    assert_eq!(exists.len(), 1, "{st:?}");
    assert_eq!(
        st.iter()
            .filter(|s| s.ends_with(": Pulling fs layer"))
            .count(),
        1,
        "{st:?}"
    );
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Pull complete")).count(),
        1,
        "{st:?}"
    );
    let exists_id = exists[0].split(':').next().unwrap_or_default().to_string();
    assert!(
        !st.iter()
            .any(|s| s.starts_with(&format!("{exists_id}: ")) && !s.ends_with("Already exists")),
        "the present layer was downloaded: {st:?}"
    );
    assert!(s2.has_layer(&layers[1].chain_id));
    rt.block_on(reg.shutdown());
}
