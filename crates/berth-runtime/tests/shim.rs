//! Real containers through the shim (needs root, namespaces and cgroups).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime::shim::{self, ShimOptions, ShimStarted};
use berth_runtime::{build_spec, ContainerRunConfig, NetworkMode};

const SHIM: &str = env!("CARGO_BIN_EXE_berth-runtime-testshim");

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    opts: ShimOptions,
}

fn rootfs(root: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:root\nnogroup:x:65534:\n",
    )
    .unwrap();
}

fn unique_id(name: &str) -> String {
    format!("bt-{name}-{}", std::process::id())
}

fn config(env: &Env, args: &[&str]) -> ContainerRunConfig {
    ContainerRunConfig {
        id: env.opts.id.clone(),
        rootfs: env.root.clone(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: String::new(),
        user: String::new(),
        group_add: vec![],
        hostname: "testhost".into(),
        tty: env.opts.tty,
        readonly_rootfs: false,
        privileged: false,
        cap_add: vec![],
        cap_drop: vec![],
        no_new_privileges: false,
        resources: Default::default(),
        ulimits: vec![],
        mounts: vec![],
        cgroups_path: format!("/berth-test/{}", env.opts.id),
        network: NetworkMode::New,
        isolation: Default::default(),
        oom_score_adj: 0,
        seccomp: Default::default(),
        extras: Default::default(),
    }
}

fn setup(name: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    rootfs(&root);
    let id = unique_id(name);
    let opts = ShimOptions {
        id: id.clone(),
        bundle: dir.path().join("rt"),
        state_root: dir.path().join("state"),
        runtime_dir: dir.path().join("rt"),
        log_path: dir.path().join(format!("{id}-json.log")),
        log_max_size: 20 << 20,
        log_max_file: 5,
        tty: false,
        open_stdin: false,
        stdin_once: false,
        log_format: Default::default(),
        exec: None,
    };
    Env {
        _dir: dir,
        root,
        opts,
    }
}

fn spawn(env: &Env, cfg: &ContainerRunConfig) -> Result<ShimStarted, berth_runtime::RuntimeError> {
    let spec = build_spec(cfg)?;
    // BERTH_TEST_SHIM: run the shim through a wrapper (strace, perf) when investigating.
    let exe = std::env::var_os("BERTH_TEST_SHIM").map(PathBuf::from);
    shim::spawn_shim(exe.as_deref().unwrap_or(Path::new(SHIM)), &env.opts, &spec)
}

fn connect(env: &Env, req: &str) -> UnixStream {
    let mut s = UnixStream::connect(env.opts.runtime_dir.join("shim.sock")).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    s
}

fn call(env: &Env, req: &str) -> serde_json::Value {
    reply(connect(env, req))
}

/// The one-line answer to a request already sent on `s`.
fn reply(s: UnixStream) -> serde_json::Value {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Starts the process with a wait registered first, as the daemon does (once the process
/// has exited and its output is out, the shim takes no new connection), and returns the
/// wait's answer.
fn start_and_wait(env: &Env) -> serde_json::Value {
    let waiter = connect(env, r#"{"op":"wait"}"#);
    assert_eq!(call(env, r#"{"op":"start"}"#)["ok"], true);
    reply(waiter)
}

/// Reads the attach reply line, then every stdcopy frame until the shim closes.
fn read_attach(s: UnixStream) -> (Vec<u8>, Vec<u8>) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"ok":true}"#);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let mut hdr = [0u8; 8];
        if r.read_exact(&mut hdr).is_err() {
            break;
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).unwrap();
        match hdr[0] {
            1 => out.extend(buf),
            2 => err.extend(buf),
            s => panic!("bad stream {s}"),
        }
    }
    (out, err)
}

fn run_to_exit(env: &Env, cfg: &ContainerRunConfig) -> (i32, String, String) {
    spawn(env, cfg).unwrap();
    let att = connect(
        env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
    );
    let reader = std::thread::spawn(move || read_attach(att));
    let w = start_and_wait(env);
    let (out, err) = reader.join().unwrap();
    (
        w["exit_code"].as_i64().unwrap() as i32,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn wait_gone(env: &Env) {
    let t = Instant::now();
    while shim::shim_alive(&env.opts.runtime_dir) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn lifecycle_output_logs_and_exit_code() {
    let env = setup("life");
    let cfg = config(
        &env,
        &["sh", "-c", "echo hi; echo oops >&2; printf partial; exit 3"],
    );
    let started = spawn(&env, &cfg).unwrap();
    assert!(started.shim_pid > 0 && started.init_pid > 0);
    assert!(shim::shim_alive(&env.opts.runtime_dir));
    let st = call(&env, r#"{"op":"state"}"#);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], started.init_pid);
    let a1 = connect(
        &env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
    );
    let a2 = connect(
        &env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":false}"#,
    );
    let r1 = std::thread::spawn(move || read_attach(a1));
    let r2 = std::thread::spawn(move || read_attach(a2));
    let waiter = connect(&env, r#"{"op":"wait"}"#);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], true);
    let mut line = String::new();
    BufReader::new(waiter).read_line(&mut line).unwrap();
    let w: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(w["exit_code"], 3);
    assert_eq!(w["oom_killed"], false);
    assert!(w["finished_at"].as_str().unwrap().ends_with('Z'));
    let (o1, e1) = r1.join().unwrap();
    let (o2, e2) = r2.join().unwrap();
    assert_eq!(o1, b"hi\npartial");
    assert_eq!(e1, b"oops\n");
    assert_eq!(o2, b"hi\npartial");
    assert!(e2.is_empty());
    let ex = shim::read_exit(&env.opts.runtime_dir).unwrap();
    assert_eq!(ex.exit_code, 3);
    wait_gone(&env);
    assert!(!shim::shim_alive(&env.opts.runtime_dir));
    assert!(!env.opts.runtime_dir.join("shim.sock").exists());
    assert!(!env.opts.state_root.join(&env.opts.id).exists());
    let log = std::fs::read_to_string(&env.opts.log_path).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "{log}");
    assert!(recs
        .iter()
        .any(|r| r["log"] == "hi\n" && r["stream"] == "stdout"));
    assert!(recs
        .iter()
        .any(|r| r["log"] == "oops\n" && r["stream"] == "stderr"));
    assert!(recs.iter().any(|r| r["log"] == "partial"));
    assert!(!Path::new("/sys/fs/cgroup/memory/berth-test")
        .join(&env.opts.id)
        .exists());
}

#[test]
fn kill_gives_128_plus_signal() {
    let env = setup("kill");
    let cfg = config(&env, &["sleep", "100"]);
    let started = spawn(&env, &cfg).unwrap();
    assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], true);
    assert_eq!(call(&env, r#"{"op":"state"}"#)["status"], "running");
    let waiter = connect(&env, r#"{"op":"wait"}"#);
    // Clients that go away early must not make the shim spin.
    drop(connect(&env, r#"{"op":"wait"}"#));
    drop(UnixStream::connect(env.opts.runtime_dir.join("shim.sock")).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_ticks(started.shim_pid);
    std::thread::sleep(Duration::from_millis(500));
    let burned = cpu_ticks(started.shim_pid) - before;
    assert!(burned <= 2, "idle shim burned {burned} ticks in 500 ms");
    assert_eq!(call(&env, r#"{"op":"kill","signal":9}"#)["ok"], true);
    let mut line = String::new();
    BufReader::new(waiter).read_line(&mut line).unwrap();
    let w: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(w["exit_code"], 137);
    wait_gone(&env);
    assert_eq!(
        shim::read_exit(&env.opts.runtime_dir).unwrap().exit_code,
        137
    );
}

#[test]
fn missing_executable_fails_create() {
    let env = setup("nope");
    let err = spawn(&env, &config(&env, &["nope"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"exec: "nope": executable file not found in $PATH"#),
        "{err}"
    );
    let err = spawn(&env, &config(&env, &["/etc"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(r#"exec: "/etc": permission denied"#), "{err}");
    assert!(!env.opts.runtime_dir.join("shim.sock").exists());
    let mut cfg = config(&env, &["sh"]);
    cfg.user = "ghost".into();
    let err = spawn(&env, &cfg).unwrap_err().to_string();
    assert_eq!(
        err,
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn stdin_once_and_tty() {
    let mut env = setup("stdin");
    env.opts.open_stdin = true;
    env.opts.stdin_once = true;
    spawn(&env, &config(&env, &["cat"])).unwrap();
    let mut att = connect(
        &env,
        r#"{"op":"attach","stdin":true,"stdout":true,"stderr":true}"#,
    );
    att.write_all(b"hello stdin\n").unwrap();
    att.shutdown(std::net::Shutdown::Write).unwrap();
    let reader = std::thread::spawn(move || read_attach(att));
    assert_eq!(start_and_wait(&env)["exit_code"], 0);
    assert_eq!(reader.join().unwrap().0, b"hello stdin\n");

    let mut env = setup("tty");
    env.opts.tty = true;
    let cfg = config(&env, &["sh", "-c", "tty; stty size; echo $TERM"]);
    spawn(&env, &cfg).unwrap();
    assert_eq!(
        call(&env, r#"{"op":"resize","height":33,"width":101}"#)["ok"],
        true
    );
    let (code, out, err) = {
        let att = connect(
            &env,
            r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
        );
        let reader = std::thread::spawn(move || read_attach(att));
        let w = start_and_wait(&env);
        let (o, e) = reader.join().unwrap();
        (
            w["exit_code"].clone(),
            String::from_utf8_lossy(&o).into_owned(),
            e,
        )
    };
    assert_eq!(code, 0);
    assert!(err.is_empty());
    assert!(
        out.contains("/dev/pts/0") && out.contains("33 101") && out.contains("xterm"),
        "{out:?}"
    );
}

#[test]
fn docker_security_defaults_inside() {
    let env = setup("sec");
    let script = r#"
grep CapEff /proc/self/status
unshare -U true 2>/dev/null; echo "unshare=$?"
echo "keys=$(cat /proc/keys 2>/dev/null | wc -c)"
echo "timer=$(cat /proc/timer_list 2>/dev/null | wc -c)"
(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null; echo "procsys=$?"
mknod /tmp/sda b 8 0 && (head -c1 /tmp/sda >/dev/null 2>&1; echo "readsda=$?")
mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1; echo "readmem=$?")
echo "nofile=$(ulimit -n)"
grep -E '^Sig(Ign|Blk)' /proc/self/status
hostname
id
"#;
    let (code, out, err) = run_to_exit(&env, &config(&env, &["sh", "-c", script]));
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(out.contains("keys=0"), "{out}");
    assert!(out.contains("timer=0"), "{out}");
    assert!(out.contains("procsys=1"), "{out}");
    assert!(out.contains("readsda=1"), "{out}");
    assert!(out.contains("readmem=1"), "{out}");
    assert!(out.contains("testhost"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(
        out.contains("uid=0(root) gid=0(root) groups=10(wheel)"),
        "{out}"
    );
}

#[test]
fn cgroup_limits() {
    let env = setup("cg");
    let mut cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait; echo done",
        ],
    );
    cfg.resources.memory = 64 << 20;
    cfg.resources.pids_limit = Some(4);
    cfg.resources.nano_cpus = 500_000_000;
    cfg.resources.cpu_shares = 512;
    spawn(&env, &cfg).unwrap();
    let cpu = Path::new("/sys/fs/cgroup/cpu").join(cfg.cgroups_path.trim_start_matches('/'));
    if cpu.exists() {
        let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "50000");
        let shares = std::fs::read_to_string(cpu.join("cpu.shares")).unwrap();
        assert_eq!(shares.trim(), "512");
    }
    let v1 = Path::new("/sys/fs/cgroup/memory").join(cfg.cgroups_path.trim_start_matches('/'));
    let v2 = Path::new("/sys/fs/cgroup").join(cfg.cgroups_path.trim_start_matches('/'));
    let limit = std::fs::read_to_string(v1.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(v2.join("memory.max")))
        .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let att = connect(
        &env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
    );
    let reader = std::thread::spawn(move || read_attach(att));
    start_and_wait(&env);
    let (_, err) = reader.join().unwrap();
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "{err}"
    );
}

#[test]
fn log_rotation() {
    let mut env = setup("rot");
    env.opts.log_max_size = 4096;
    env.opts.log_max_file = 3;
    let cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    let (code, out, _) = run_to_exit(&env, &cfg);
    assert_eq!(code, 0);
    assert!(out.ends_with("line 299\n"));
    let p = |n: &str| PathBuf::from(format!("{}{n}", env.opts.log_path.display()));
    assert!(p(".1").exists() && p(".2").exists() && !p(".3").exists());
    let last = std::fs::read_to_string(p("")).unwrap();
    assert!(last.lines().last().unwrap().contains("line 299"));
}

#[test]
fn shim_rss_and_start_latency() {
    let env = setup("rss");
    let t = Instant::now();
    let started = spawn(&env, &config(&env, &["sleep", "30"])).unwrap();
    let created = t.elapsed();
    assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], true);
    let total = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    // Steady state: a few round trips through the poll loop first.
    for _ in 0..3 {
        assert_eq!(call(&env, r#"{"op":"state"}"#)["status"], "running");
    }
    std::thread::sleep(Duration::from_millis(100));
    let status = std::fs::read_to_string(format!("/proc/{}/status", started.shim_pid)).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();
    let pss = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", started.shim_pid))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .unwrap()
        .to_string();
    eprintln!("MEASURE create={created:?} create+start={total:?} shim {rss} {pss}");
    if std::env::var_os("BERTH_SMAPS").is_some() {
        let _ = std::fs::copy(
            format!("/proc/{}/smaps", started.shim_pid),
            "/tmp/berth-shim-smaps",
        );
    }
    assert_eq!(call(&env, r#"{"op":"kill","signal":15}"#)["ok"], true);
    // SIGTERM to a pid-1 sleep without handler is ignored: use KILL after.
    std::thread::sleep(Duration::from_millis(100));
    let _ = call(&env, r#"{"op":"kill","signal":9}"#);
    let w = call(&env, r#"{"op":"wait"}"#);
    assert_eq!(w["exit_code"], 137);
    wait_gone(&env);
    let k = {
        // kill after exit: socket is gone, exit.json tells the story
        shim::read_exit(&env.opts.runtime_dir).unwrap()
    };
    assert_eq!(k.exit_code, 137);
}

#[test]
fn kill_before_start_and_double_start() {
    let env = setup("killcreated");
    let started = spawn(&env, &config(&env, &["sleep", "100"])).unwrap();
    let waiter = connect(&env, r#"{"op":"wait"}"#);
    // Clients that go away early must not make the shim spin.
    drop(connect(&env, r#"{"op":"wait"}"#));
    drop(UnixStream::connect(env.opts.runtime_dir.join("shim.sock")).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", started.shim_pid)).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    assert!(ticks < 20, "shim burned {ticks} ticks");
    assert_eq!(call(&env, r#"{"op":"kill","signal":9}"#)["ok"], true);
    let mut line = String::new();
    BufReader::new(waiter).read_line(&mut line).unwrap();
    let w: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(w["exit_code"], 137);
    wait_gone(&env);
    assert!(!env.opts.state_root.join(&env.opts.id).exists());

    let env = setup("twice");
    spawn(&env, &config(&env, &["sleep", "100"])).unwrap();
    assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], true);
    assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], false);
    assert_eq!(call(&env, r#"{"op":"kill","signal":9}"#)["ok"], true);
    assert_eq!(call(&env, r#"{"op":"wait"}"#)["exit_code"], 137);
}

#[test]
fn slow_client_never_blocks_the_container() {
    let env = setup("slow");
    // ~12 MiB of output: far more than a stalled client may queue.
    let cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "head -c 12582912 /dev/zero | tr '\\0' x; echo; echo end",
        ],
    );
    spawn(&env, &cfg).unwrap();
    let stalled = connect(
        &env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
    );
    let good = connect(
        &env,
        r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#,
    );
    let reader = std::thread::spawn(move || read_attach(good));
    assert_eq!(start_and_wait(&env)["exit_code"], 0);
    let (out, _) = reader.join().unwrap();
    assert_eq!(out.len(), 12582912 + 1 + 4);
    assert!(out.ends_with(b"\nend\n"));
    drop(stalled);
    wait_gone(&env);
}

#[test]
fn create_failure_leaves_nothing_behind() {
    let env = setup("fail");
    let mut cfg = config(&env, &["true"]);
    cfg.network = NetworkMode::Path(PathBuf::from("/nonexistent/netns"));
    let err = spawn(&env, &cfg).unwrap_err().to_string();
    assert!(err.contains("OCI runtime create failed"), "{err}");
    assert!(!env.opts.runtime_dir.join("shim.sock").exists());
    assert!(!env.opts.runtime_dir.join("shim.pid").exists());
    assert!(!env.opts.state_root.join(&env.opts.id).exists());
    let rel = cfg.cgroups_path.trim_start_matches('/');
    assert!(!Path::new("/sys/fs/cgroup/memory").join(rel).exists());
    assert!(!Path::new("/sys/fs/cgroup/pids").join(rel).exists());
}

#[test]
fn shim_is_detached() {
    let env = setup("detach");
    let started = spawn(&env, &config(&env, &["sleep", "100"])).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", started.shim_pid)).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (ppid, sid): (i32, i32) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(ppid, std::process::id() as i32);
    assert_eq!(sid, started.shim_pid);
    assert_eq!(call(&env, r#"{"op":"kill","signal":9}"#)["ok"], true);
    assert_eq!(call(&env, r#"{"op":"wait"}"#)["exit_code"], 137);
    wait_gone(&env);
    let again = call_err(&env);
    assert!(again, "socket must be gone after exit");
    assert_eq!(
        shim::read_exit(&env.opts.runtime_dir).unwrap().exit_code,
        137
    );
    shim::cleanup(&env.opts.runtime_dir, &env.opts.state_root, &env.opts.id);
}

fn call_err(env: &Env) -> bool {
    UnixStream::connect(env.opts.runtime_dir.join("shim.sock")).is_err()
}

#[test]
fn oom_kill_is_reported() {
    let env = setup("oom");
    let mut cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived",
        ],
    );
    cfg.resources.memory = 16 << 20;
    cfg.resources.memory_swap = 16 << 20;
    spawn(&env, &cfg).unwrap();
    let w = start_and_wait(&env);
    assert_eq!(w["oom_killed"], true, "{w}");
    assert_ne!(w["exit_code"], 0, "{w}");
}

#[test]
fn privileged_gets_host_caps_devices_and_no_seccomp() {
    let env = setup("priv");
    let mut cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "grep CapEff /proc/self/status; unshare -U true; echo unshare=$?; ls /dev | wc -l",
        ],
    );
    cfg.privileged = true;
    let (code, out, err) = run_to_exit(&env, &cfg);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("a80425fb"), "{out}");
    assert!(out.contains("unshare=0"), "{out}{err}");
    let ndev: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(ndev > 15, "{out}");
}

#[test]
fn non_root_user_readonly_rootfs_and_cwd() {
    let env = setup("user");
    let mut cfg = config(
        &env,
        &[
            "sh",
            "-c",
            "id; pwd; grep CapEff /proc/self/status; touch /x 2>/dev/null; echo touch=$?",
        ],
    );
    cfg.user = "nobody:nogroup".into();
    cfg.readonly_rootfs = true;
    cfg.cwd = "/work/here".into();
    let (code, out, err) = run_to_exit(&env, &cfg);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    assert!(out.contains("/work/here"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("touch=1"), "{out}");
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn pid_live(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .unwrap()
                .1
                .trim_start()
                .starts_with(['Z', 'X'])
        })
        .unwrap_or(false)
}

/// A shim no longer reachable on its socket (as when its path could not be connected to) is
/// still ended by `abort`: its container's process, then the shim; created or running.
#[test]
fn abort_ends_a_shim_that_does_not_answer() {
    for start in [false, true] {
        let env = setup(if start { "abortrun" } else { "abortcreated" });
        let started = spawn(&env, &config(&env, &["sleep", "100"])).unwrap();
        if start {
            assert_eq!(call(&env, r#"{"op":"start"}"#)["ok"], true);
        }
        std::fs::remove_file(env.opts.runtime_dir.join("shim.sock")).unwrap();
        assert!(call_err(&env));
        assert!(pid_live(started.shim_pid) && pid_live(started.init_pid));
        shim::abort(&env.opts.runtime_dir, started);
        assert!(
            !pid_live(started.init_pid),
            "init {} survived",
            started.init_pid
        );
        assert!(
            !pid_live(started.shim_pid),
            "shim {} survived",
            started.shim_pid
        );
        assert!(!shim::shim_alive(&env.opts.runtime_dir));
        shim::cleanup(&env.opts.runtime_dir, &env.opts.state_root, &env.opts.id);
        assert!(!env.opts.state_root.join(&env.opts.id).exists());
    }
}

/// A runtime dir deeper than a socket address holds: the shim binds its sockets by relative
/// name (the console socket too, with a TTY) and a client reaches them through the directory.
#[test]
fn runtime_dir_longer_than_a_socket_address() {
    let mut env = setup("deep");
    let mut deep = env.opts.runtime_dir.clone();
    while deep.as_os_str().len() < 200 {
        deep.push("0123456789abcdef0123456789abcdef");
    }
    env.opts.runtime_dir = deep.clone();
    env.opts.bundle = deep;
    env.opts.tty = true;
    let cfg = config(&env, &["sh", "-c", "tty; echo deep"]);
    spawn(&env, &cfg).unwrap();
    let sock = env.opts.runtime_dir.join("shim.sock");
    assert!(sock.exists() && sock.as_os_str().len() > 107);
    let req = |r: &str| {
        let p = berth_fs::SocketPath::new(&sock).unwrap();
        let mut s = UnixStream::connect(p.as_path()).unwrap();
        s.write_all(r.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s
    };
    let attach = req(r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#);
    let mut line = String::new();
    let mut attach = BufReader::new(attach);
    attach.read_line(&mut line).unwrap();
    // The wait goes in before the start, as the daemon's does: once the process has exited
    // and its output is out, the shim takes no new connection.
    let wait = req(r#"{"op":"wait"}"#);
    let mut l2 = String::new();
    BufReader::new(req(r#"{"op":"start"}"#))
        .read_line(&mut l2)
        .unwrap();
    assert!(l2.contains("true"), "{l2}");
    let mut l3 = String::new();
    BufReader::new(wait).read_line(&mut l3).unwrap();
    assert!(l3.contains(r#""exit_code":0"#), "{l3}");
    let mut out = Vec::new();
    attach.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/") && out.contains("deep"), "{out:?}");
    wait_gone(&env);
}
