//! Berth as a Kubernetes node runtime: its CRI server driven by `crictl` (cri-tools v1.32, from
//! `$CRICTL` or PATH; each test prints one skip line without it), with pods networked by the
//! standard CNI plugins (a conf dir and bridge of the test's own) and images reached under their
//! real names through a per-registry mirror (`hosts.toml`) to a local `berth registry serve`.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_testkit::cri as images;

fn crictl_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRICTL") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/var/tmp/berth-tools/bin")])
        .map(|d| d.join("crictl"))
        .find(|p| p.is_file())
}

/// A daemon whose CRI server has a CNI network, a mirror for the stand-in images' registries,
/// and the images in the registry (not in the daemon).
struct Cri {
    d: Daemon,
    crictl: PathBuf,
    dir: tempfile::TempDir,
    bridge: String,
    registry: std::process::Child,
}

impl Drop for Cri {
    fn drop(&mut self) {
        self.d.cleanup();
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

impl Cri {
    /// `None` (after one skip line) when crictl is not there.
    fn start(test: &str) -> Option<Cri> {
        let Some(crictl) = crictl_bin() else {
            eprintln!("{test}: skipped (no crictl: set CRICTL or put cri-tools' crictl on PATH)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("bcri")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let registry = Command::new(BIN)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(root.join("registry"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn registry");
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect(&addr).is_ok()),
            "registry did not listen on {addr}"
        );
        images::write_hosts_toml(&root.join("certs.d"), &format!("http://{addr}")).expect("hosts");
        std::fs::create_dir_all(root.join("cni")).expect("cni dir");
        let certs = root.join("certs.d").display().to_string();
        let cni = root.join("cni").display().to_string();
        let d = Daemon::start_with_args(
            BIN,
            &[
                "--registry-config-path",
                &certs,
                "--cni-conf-dir",
                &cni,
                "--cni-bin-dir",
                "/usr/lib/cni",
            ],
        );
        // The pod network: the last /24 of the daemon's leased /20, a bridge of its own.
        let gw = d.gateway().octets();
        let bridge = format!("bcn{}_{}", gw[1], gw[2] / 16);
        let subnet = format!("10.{}.{}.0/24", gw[1], gw[2] + 15);
        std::fs::write(
            root.join("cni/10-pods.conflist"),
            json!({
                "cniVersion": "1.0.0",
                "name": "pods",
                "plugins": [
                    {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
                     "hairpinMode": true,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}],
                              "dataDir": root.join("ipam")}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )
        .expect("cni conf");
        let cri = Cri {
            d,
            crictl,
            dir,
            bridge,
            registry,
        };
        cri.push_images(&addr);
        Some(cri)
    }

    /// The stand-ins into the registry, through the daemon, which then forgets them.
    fn push_images(&self, addr: &str) {
        let all = images::images(self.d.cache_dir()).expect("stand-in images");
        let wanted = [
            images::BUSYBOX,
            "registry.k8s.io/e2e-test-images/nginx:1.14-2",
        ];
        let imgs: Vec<&Image> = all
            .iter()
            .filter(|i| i.repo_tags.iter().any(|t| wanted.contains(&t.as_str())))
            .collect();
        let tar = self.dir.path().join("images.tar");
        std::fs::write(&tar, berth_testkit::image::save_tar(&imgs, SaveFormat::Oci)).expect("tar");
        self.d.cli(&["load", "-i", &tar.display().to_string()]).ok();
        for name in wanted {
            let (_, path) = images::split_registry(name);
            let local = format!("{addr}/{path}");
            self.d.cli(&["tag", name, &local]).ok();
            self.d.cli(&["push", "-q", &local]).ok();
            self.d.cli(&["rmi", &local, name]).ok();
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}/cri.sock", self.d.exec_root().display())
    }

    fn crictl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.crictl);
        c.args(["--runtime-endpoint", &self.endpoint()])
            .args(["--image-endpoint", &self.endpoint()])
            .args(["--timeout", "60s"])
            .args(args)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY");
        c
    }

    #[track_caller]
    fn crictl(&self, args: &[&str]) -> String {
        let out = self.crictl_cmd(args).output().expect("run crictl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "crictl {args:?} failed: {stderr}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn file(&self, name: &str, v: Value) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, v.to_string()).expect("write json");
        p.display().to_string()
    }

    fn pod_config(&self, name: &str, extra: Value) -> String {
        let logs = self.dir.path().join(format!("logs-{name}"));
        std::fs::create_dir_all(&logs).expect("log dir");
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": unique("uid"), "attempt": 1},
            "log_directory": logs,
            "linux": {}
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        self.file(&format!("pod-{name}.json"), v)
    }

    fn log_dir(&self, pod: &str) -> PathBuf {
        self.dir.path().join(format!("logs-{pod}"))
    }
}

/// The CRI log lines' messages (`<time> <stream> <tag> <message>`).
fn cri_log_messages(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The walkthrough: a two-container pod (a web server and a client reaching it over
/// localhost), through `runp`, `create`, `start`, `ps`, `exec -it`, `logs -f`, `port-forward`,
/// `stats`, `inspectp`, `stopp` and `rmp`.
#[test]
fn crictl_two_container_pod_walkthrough() {
    let Some(c) = Cri::start("crictl_two_container_pod_walkthrough") else {
        return;
    };
    let host_port = free_port();
    let pod_cfg = c.pod_config(
        "web",
        json!({"hostname": "webpod", "port_mappings": [{"container_port": 80, "host_port": host_port}]}),
    );
    let pod = c.crictl(&["runp", &pod_cfg]);
    assert!(is_hex(&pod, 64), "runp prints the pod id: {pod}");
    let web = c.file(
        "web.json",
        json!({"metadata": {"name": "web"}, "image": {"image": "registry.k8s.io/e2e-test-images/nginx:1.14-2"},
               "log_path": "web.log", "linux": {}}),
    );
    let client = c.file(
        "client.json",
        json!({"metadata": {"name": "client"}, "image": {"image": images::BUSYBOX},
               "command": ["sh", "-c", "while true; do wget -qO- http://localhost/; sleep 1; done"],
               "log_path": "client.log", "linux": {}}),
    );
    // `create` pulls the images first (through the mirror: the daemon has none of them).
    let web_id = c.crictl(&["create", "--with-pull", &pod, &web, &pod_cfg]);
    let client_id = c.crictl(&["create", "--with-pull", &pod, &client, &pod_cfg]);
    c.crictl(&["start", &web_id, &client_id]);
    let ps = c.crictl(&["ps"]);
    assert!(
        ps.contains(&web_id[..13])
            && ps.contains(&client_id[..13])
            && ps.matches("Running").count() == 2,
        "{ps}"
    );

    // The client reaches the web server over the pod's localhost; its log is the kubelet's.
    let client_log = c.log_dir("web").join("client.log");
    assert!(
        wait_until(DEADLINE, || cri_log_messages(&client_log)
            .iter()
            .any(|m| m.contains("Welcome to nginx!"))),
        "client log: {:?}",
        std::fs::read_to_string(&client_log)
    );
    // logs -f follows it.
    let mut follow = c
        .crictl_cmd(&["logs", "-f", &client_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("logs -f");
    let mut out = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).matches("Welcome").count() >= 3 {
                let _ = tx.send(());
                return;
            }
        }
    });
    let followed = rx.recv_timeout(DEADLINE).is_ok();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(followed, "logs -f kept printing the client's requests");

    // exec -it: a terminal in the client (crictl wants one, `script` gives it).
    let cmd = format!(
        "{} --runtime-endpoint {ep} --image-endpoint {ep} exec -it {client_id} sh -c 'tty; hostname; echo $((6*7))'",
        c.crictl.display(),
        ep = c.endpoint()
    );
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("webpod") && text.contains("42"),
        "exec -it: {text}"
    );
    assert!(
        !text.contains('\u{1}'),
        "no stream framing in a terminal's output: {text:?}"
    );

    // The host port of the pod's mapping, and port-forward to the web container.
    assert!(
        wait_until(DEADLINE, || http_get(&format!("127.0.0.1:{host_port}"))
            .is_some_and(|b| b.contains("Welcome to nginx!"))),
        "host port {host_port} reaches the pod"
    );
    let local = free_port();
    let mut pf = c
        .crictl_cmd(&["port-forward", &pod, &format!("{local}:80")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("port-forward");
    let forwarded = wait_until(DEADLINE, || {
        http_get(&format!("127.0.0.1:{local}")).is_some_and(|b| b.contains("Welcome to nginx!"))
    });
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(forwarded, "port-forward {local}:80 reaches the web server");

    let stats = c.crictl(&["stats", "-o", "json"]);
    let v: Value = serde_json::from_str(&stats).expect("stats json");
    let ids: Vec<&str> = v["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .filter_map(|s| s["attributes"]["id"].as_str())
        .collect();
    assert!(
        ids.contains(&web_id.as_str()) && ids.contains(&client_id.as_str()),
        "{stats}"
    );
    assert!(
        v["stats"][0]["memory"]["workingSetBytes"]["value"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|b| b > 0),
        "{stats}"
    );

    let inspect: Value = serde_json::from_str(&c.crictl(&["inspectp", &pod])).expect("inspectp");
    assert_eq!(inspect["status"]["state"], "SANDBOX_READY");
    let ip = inspect["status"]["network"]["ip"].as_str().unwrap_or("");
    assert!(
        ip.starts_with("10."),
        "the pod's address from CNI: {inspect}"
    );
    assert!(
        http_get(&format!("{ip}:80")).is_some_and(|b| b.contains("Welcome to nginx!")),
        "the pod's address reaches it from the host"
    );

    c.crictl(&["stopp", &pod]);
    let pods = c.crictl(&["pods", "--id", &pod]);
    assert!(pods.contains("NotReady"), "{pods}");
    assert!(c.crictl(&["ps", "-a"]).matches("Exited").count() == 2);
    c.crictl(&["rmp", &pod]);
    assert!(!c.crictl(&["pods", "-q"]).contains(&pod));
    assert!(c.crictl(&["ps", "-a", "-q"]).is_empty());
    assert!(
        std::fs::read_dir(c.d.exec_root().join("pods"))
            .map(|mut r| r.next().is_none())
            .unwrap_or(true),
        "the pod's runtime files are gone"
    );
}

/// A daemon restart keeps pods Ready and their containers running and manageable.
#[test]
fn pods_survive_a_daemon_restart() {
    let Some(c) = Cri::start("pods_survive_a_daemon_restart") else {
        return;
    };
    let pod_cfg = c.pod_config("keep", json!({"hostname": "keeper"}));
    let pod = c.crictl(&["runp", &pod_cfg]);
    let ctr = c.file(
        "sleep.json",
        json!({"metadata": {"name": "sleeper"}, "image": {"image": images::BUSYBOX},
               "command": ["sleep", "3600"], "linux": {}}),
    );
    let id = c.crictl(&["create", "--with-pull", &pod, &ctr, &pod_cfg]);
    c.crictl(&["start", &id]);
    let pid_before = c.d.inspect(&id).expect("inspect")["State"]["Pid"].clone();

    c.d.restart();

    let pods = c.crictl(&["pods", "--id", &pod]);
    assert!(
        pods.contains("Ready") && !pods.contains("NotReady"),
        "{pods}"
    );
    let ps = c.crictl(&["ps", "--id", &id]);
    assert!(ps.contains("Running"), "{ps}");
    assert_eq!(
        c.d.inspect(&id).expect("inspect")["State"]["Pid"],
        pid_before
    );
    assert_eq!(c.crictl(&["exec", "-s", &id, "hostname"]), "keeper");
    c.crictl(&["stop", &id]);
    assert!(c.crictl(&["ps", "-a", "--id", &id]).contains("Exited"));
    c.crictl(&["stopp", &pod]);
    c.crictl(&["rmp", &pod]);
}

/// One image store for both APIs: a CRI pull is in `berth images`, a Docker API pull (through
/// the same per-registry mirror) is in `crictl images`; CRI containers stay out of Docker's
/// lists unless asked for by their pod label.
#[test]
fn images_are_shared_and_pod_containers_hidden_from_docker_lists() {
    let Some(c) = Cri::start("images_are_shared_and_pod_containers_hidden_from_docker_lists")
    else {
        return;
    };
    c.crictl(&["pull", images::BUSYBOX]);
    let listed = c.d.cli(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    listed.ok();
    assert!(listed.stdout.contains(images::BUSYBOX), "{listed}");
    // The Docker API's pull goes through registry.k8s.io's hosts.toml too.
    let nginx = "registry.k8s.io/e2e-test-images/nginx:1.14-2";
    c.d.cli(&["pull", nginx]).ok();
    let cri_images = c.crictl(&["images"]);
    assert!(
        cri_images.contains("registry.k8s.io/e2e-test-images/nginx"),
        "{cri_images}"
    );

    let pod_cfg = c.pod_config("hidden", json!({}));
    let pod = c.crictl(&["runp", &pod_cfg]);
    let ctr = c.file(
        "hidden.json",
        json!({"metadata": {"name": "h"}, "image": {"image": images::BUSYBOX},
               "command": ["sleep", "3600"], "linux": {}}),
    );
    let id = c.crictl(&["create", &pod, &ctr, &pod_cfg]);
    let ps = c.d.cli(&["ps", "-a", "-q", "--no-trunc"]);
    ps.ok();
    assert!(!ps.stdout.contains(&id), "{ps}");
    let shown = c.d.cli(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=io.berth.cri.pod={pod}"),
    ]);
    shown.ok();
    assert_eq!(shown.out(), id);
    c.crictl(&["rmp", "-f", &pod]);
}
