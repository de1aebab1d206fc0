//! Interop with registries and clients Berth did not write: Debian's `docker-registry`
//! (distribution 2.8) and `skopeo`. Each test skips, saying so, when the tool is absent.

mod common;

use berth_image::ImageStore;
use berth_registry::{pull, push, PullOptions, PushOptions};
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Distribution {
    child: Child,
    host: String,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_distribution(bin: &Path, dir: &Path) -> Distribution {
    let port = free_port();
    let storage = dir.join("distribution");
    std::fs::create_dir_all(&storage).unwrap();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = format!("127.0.0.1:{port}");
    let d = Distribution { child, host };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(&d.host).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn head_digest(rt: &tokio::runtime::Runtime, host: &str, repo: &str, tag: &str) -> String {
    rt.block_on(async {
        let r = reqwest::Client::new()
            .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "HEAD {host}/{repo}:{tag}: {}", r.status());
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string()
    })
}

#[test]
fn push_and_pull_with_distribution_registry() {
    let Some(bin) = which("docker-registry") else {
        println!("SKIP: docker-registry is not installed (apt-get install docker-registry)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dist = start_distribution(&bin, dir.path());
    let rt = rt();
    let berth = start_registry(&rt, dir.path(), None, false);
    let bhost = berth.addr.to_string();

    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{}/interop/app:v1", dist.host);
    let id = build_image(&s1, &name, "interop");
    let (log, mut cb) = collect();
    let pushed = push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    assert_eq!(
        statuses(&log)
            .iter()
            .filter(|s| s.ends_with(": Pushed"))
            .count(),
        2
    );
    assert_eq!(
        head_digest(&rt, &dist.host, "interop/app", "v1"),
        pushed.digest
    );

    // Pull back from distribution: same image, same digest.
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (log, mut cb) = collect();
    assert_eq!(
        pull(&s2, &name, &PullOptions::default(), &mut cb).unwrap(),
        id
    );
    assert!(statuses(&log).contains(&format!("Digest: {}", pushed.digest)));

    // The pulled copy pushed to Berth's registry gives the identical manifest digest.
    let bname = format!("{bhost}/interop/app:v1");
    s2.tag(&name, &bname).unwrap();
    let (_l, mut cb) = collect();
    let again = push(&s2, &bname, &PushOptions::default(), &mut cb).unwrap();
    assert_eq!(again.digest, pushed.digest);
    assert_eq!(again.size, pushed.size);

    // And a second push to distribution finds every layer.
    let (log, mut cb) = collect();
    push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();
    assert_eq!(
        statuses(&log)
            .iter()
            .filter(|s| s.ends_with("Layer already exists"))
            .count(),
        2
    );
    rt.block_on(berth.shutdown());
}

#[test]
fn skopeo_copies_through_berth_registry() {
    let Some(skopeo) = which("skopeo") else {
        println!("SKIP: skopeo is not installed (apt-get install skopeo)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let berth = start_registry(&rt, dir.path(), None, false);
    let bhost = berth.addr.to_string();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{bhost}/sk/app:v1");
    let id = build_image(&s1, &name, "skopeo");
    let (_l, mut cb) = collect();
    let pushed = push(&s1, &name, &PushOptions::default(), &mut cb).unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(&skopeo)
            .arg("--policy")
            .arg(&policy)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // skopeo reads what Berth pushed.
    let inspect = run(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{bhost}/sk/app:v1"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], pushed.digest);
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    // skopeo copies within the Berth registry (pull + push through the protocol), and to an
    // OCI layout and back into a new repository.
    run(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{bhost}/sk/app:v1"),
        &format!("docker://{bhost}/copied/app:v2"),
    ]);
    let layout = dir.path().join("layout");
    run(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{bhost}/sk/app:v1"),
        &format!("oci:{}:x", layout.display()),
    ]);
    run(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:x", layout.display()),
        &format!("docker://{bhost}/fromoci/app:v3"),
    ]);
    let inspect = run(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{bhost}/copied/app:v2"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], pushed.digest);
    // Between Berth's registry and distribution, both ways, bit-identical.
    if let Some(bin) = which("docker-registry") {
        let dist = start_distribution(&bin, dir.path());
        run(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{bhost}/sk/app:v1"),
            &format!("docker://{}/from-berth/app:v1", dist.host),
        ]);
        assert_eq!(
            head_digest(&rt, &dist.host, "from-berth/app", "v1"),
            pushed.digest
        );
        run(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}/from-berth/app:v1", dist.host),
            &format!("docker://{bhost}/back/app:v1"),
        ]);
        assert_eq!(head_digest(&rt, &bhost, "back/app", "v1"), pushed.digest);
    } else {
        println!("SKIP (part): docker-registry is not installed");
    }
    // Berth pulls both copies back. The docker->OCI conversion makes skopeo re-serialise the
    // config, so that copy has another id but the same layers.
    let layers = s1.image_layers(&id).unwrap();
    for (r, same_id) in [("copied/app:v2", true), ("fromoci/app:v3", false)] {
        let s = ImageStore::open(&dir.path().join(r.replace(['/', ':'], "_"))).unwrap();
        let (_l, mut cb) = collect();
        let got = pull(
            &s,
            &format!("{bhost}/{r}"),
            &PullOptions::default(),
            &mut cb,
        )
        .unwrap();
        assert_eq!(got == id, same_id, "{r}");
        assert_eq!(s.image_layers(&got).unwrap(), layers, "{r}");
    }
    rt.block_on(berth.shutdown());
}
