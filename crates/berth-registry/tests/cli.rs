//! `berth registry serve` as the binary runs it (the thread is left serving; the test process
//! ends it).

use std::time::{Duration, Instant};

#[test]
fn serve_command_serves() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage = dir.path().join("s");
    let args = vec![
        "serve".to_string(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--storage".into(),
        storage.display().to_string(),
    ];
    std::thread::spawn(move || berth_registry::main(args));
    let deadline = Instant::now() + Duration::from_secs(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    loop {
        let r = rt.block_on(
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/v2/"))
                .send(),
        );
        if let Ok(r) = r {
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers()["docker-distribution-api-version"],
                "registry/2.0"
            );
            break;
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(storage.join("blobs/sha256").is_dir());
}
