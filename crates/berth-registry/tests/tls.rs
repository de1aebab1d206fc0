//! `berth registry serve --tls-cert/--tls-key`, and the client trusting a per-registry CA
//! from `<certs_dir>/<host:port>/ca.crt` (Docker's `certs.d` layout).

mod common;

use berth_image::ImageStore;
use berth_registry::server::{spawn, tls_config, ServerConfig};
use berth_registry::{pull, push, PullOptions, PushOptions};
use common::*;
use std::process::Command;

#[test]
fn tls_registry_with_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (cert, key, ca) = (p("cert.pem"), p("key.pem"), p("ca.pem"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "2", "-subj", "/CN=berth test CA"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout".into(), p("ca.key").display().to_string()])
        .chain(["-out".into(), ca.display().to_string()])
        .collect(),
        [&["req"][..], &ec[..], &["-subj", "/CN=localhost"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain(["-keyout".into(), key.display().to_string()])
            .chain(["-out".into(), p("leaf.csr").display().to_string()])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial"]
            .iter()
            .map(|s| s.to_string())
            .chain(["-in".into(), p("leaf.csr").display().to_string()])
            .chain(["-CA".into(), ca.display().to_string()])
            .chain(["-CAkey".into(), p("ca.key").display().to_string()])
            .chain(["-extfile".into(), p("ext.cnf").display().to_string()])
            .chain(["-out".into(), cert.display().to_string()])
            .collect(),
    ];
    for args in steps {
        match Command::new("openssl").args(&args).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(_) => {
                println!("SKIP: openssl is not installed");
                return;
            }
        }
    }
    let rt = rt();
    let tls = tls_config(&cert, &key).unwrap();
    let cfg = ServerConfig {
        storage: dir.path().join("registry"),
        ..Default::default()
    };
    let reg = rt.block_on(spawn(&cfg, "127.0.0.1:0", Some(tls))).unwrap();
    let host = format!("localhost:{}", reg.addr.port());
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&host)).unwrap();
    std::fs::copy(&ca, certs.join(&host).join("ca.crt")).unwrap();

    let s1 = ImageStore::open(&dir.path().join("s1")).unwrap();
    let name = format!("{host}/tls/app:v1");
    let id = build_image(&s1, &name, "tls");
    let (_l, mut cb) = collect();
    let opts = PushOptions {
        certs_dir: Some(certs.clone()),
        ..Default::default()
    };
    push(&s1, &name, &opts, &mut cb).unwrap();
    let s2 = ImageStore::open(&dir.path().join("s2")).unwrap();
    let (_l, mut cb) = collect();
    let opts = PullOptions {
        certs_dir: Some(certs),
        ..Default::default()
    };
    assert_eq!(pull(&s2, &name, &opts, &mut cb).unwrap(), id);

    // Without the CA the certificate is refused (and the plain-HTTP fallback finds TLS).
    let s3 = ImageStore::open(&dir.path().join("s3")).unwrap();
    let (_l, mut cb) = collect();
    let opts = PullOptions {
        certs_dir: Some(dir.path().join("none")),
        ..Default::default()
    };
    assert!(pull(&s3, &name, &opts, &mut cb).is_err());
    rt.block_on(reg.shutdown());
}
