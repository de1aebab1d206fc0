//! Rootless Berth with a real user: the test creates an ordinary user (`useradd`, a
//! subuid/subgid range of its own), runs `berth daemon` as that user, and drives it with the
//! berth CLI and the docker CLI. Also the misconfigurations: no subordinate ids, no
//! newuidmap, no XDG_RUNTIME_DIR — each a clear message naming the fix, and nothing created.

mod common;
use common::*;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const DOCKER: &str = "/usr/local/bin/docker";

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: cannot create a test user".into());
    }
    for t in [
        "/usr/sbin/useradd",
        "/usr/sbin/userdel",
        "/usr/sbin/runuser",
    ] {
        if !Path::new(t).exists() {
            return Some(format!("{t} missing"));
        }
    }
    if !Path::new("/usr/bin/newuidmap").exists() {
        return Some("newuidmap missing: apt-get install uidmap".into());
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIP rootless: {why}");
            return;
        }
    };
}

/// Serialises our edits of /etc/subuid and /etc/subgid between the tests of this file.
static SUBID_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A user made for one test: its home and runtime dir under a short /tmp root, optional
/// subordinate id lines; `Drop` removes the user, its files, and exactly the lines we added.
struct TestUser {
    name: String,
    uid: u32,
    root: PathBuf,
    home: PathBuf,
    runtime: PathBuf,
    lines: Vec<(&'static str, String)>,
}

impl TestUser {
    fn new(with_subids: bool) -> TestUser {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("brl{pid}x{n}");
        let root = PathBuf::from(format!("/tmp/rl.{pid}{n}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("test root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let home = root.join("h");
        // Short: the shims' sockets live under it (`berth/containers/<id>/shim.sock`).
        let runtime = PathBuf::from(format!("/tmp/rr{n}{}", pid % 1000));
        // No automatic subordinate ids: the test decides which lines exist.
        let out = Command::new("/usr/sbin/useradd")
            .args(["-m", "-d"])
            .arg(&home)
            .args([
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                "-s",
                "/bin/sh",
            ])
            .arg(&name)
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uid = String::from_utf8(
            Command::new("id")
                .args(["-u", &name])
                .output()
                .expect("id")
                .stdout,
        )
        .expect("utf8")
        .trim()
        .parse()
        .expect("uid");
        let mut u = TestUser {
            name,
            uid,
            root,
            home,
            runtime,
            lines: Vec::new(),
        };
        let _ = std::fs::remove_dir_all(&u.runtime);
        std::fs::create_dir(&u.runtime).expect("runtime dir");
        std::fs::set_permissions(&u.runtime, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        chown(&u.runtime, uid);
        if with_subids {
            // A range far above any range useradd gives (100000 + 65536·k).
            let start = 1_000_000_000u64 + u64::from(pid % 4000) * 262_144 + u64::from(n) * 65_536;
            let line = format!("{}:{start}:65536", u.name);
            let _g = SUBID_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            for f in ["/etc/subuid", "/etc/subgid"] {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(f)
                    .expect("open subid file");
                writeln!(file, "{line}").expect("append subid line");
                u.lines.push((f, line.clone()));
            }
        }
        u
    }

    fn socket(&self) -> PathBuf {
        self.runtime.join("berth/berth.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// `berth <args>` as this user, with a clean environment of its own.
    fn cmd(&self, program: &str, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("/usr/sbin/runuser");
        c.args(["-u", &self.name, "--", "env", "-i"]);
        c.arg(format!("HOME={}", self.home.display()));
        c.arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(program);
        c.current_dir("/");
        c
    }

    /// A berth (or docker) client command as this user against its daemon.
    fn client(&self, program: &str, args: &[&str]) -> Out {
        let mut c = self.cmd(program, &[("DOCKER_HOST", &self.host())]);
        c.args(args);
        berth_testkit::run_with_timeout(c, None, Duration::from_secs(60))
    }
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), None).expect("chown");
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Whatever the user still runs (a failed test's daemon) goes first, by pid: processes
        // of this test's own user only.
        for (pid, _, _) in processes_of(self.uid) {
            // SAFETY: kill by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        wait_until(Duration::from_secs(5), || processes_of(self.uid).is_empty());
        let _ = Command::new("/usr/sbin/userdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
        let _g = SUBID_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (f, line) in &self.lines {
            if let Ok(text) = std::fs::read_to_string(f) {
                if text.lines().any(|l| l == line) {
                    let kept: String = text
                        .lines()
                        .filter(|l| l != line)
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let tmp = format!("{f}.berth-test");
                    if std::fs::write(&tmp, kept).is_ok() {
                        let _ =
                            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644));
                        let _ = std::fs::rename(&tmp, f);
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.runtime);
    }
}

/// Grants one user read/write on /dev/net/tun with a POSIX ACL entry (what an administrator
/// would do instead of `chmod 0666`), and restores the device's ACL and mode on drop. `None`
/// when the file system refuses ACLs.
struct TunGrant {
    mode: u32,
    acl: Option<Vec<u8>>,
    // One grant at a time: a second would save the first's ACL mask as the device's mode.
    _one: std::sync::MutexGuard<'static, ()>,
}

static TUN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TUN: &str = "/dev/net/tun";
const ACL_XATTR: &str = "system.posix_acl_access";

fn xattr_get(path: &str, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 1024];
    // SAFETY: buf is writable for its length; both strings are NUL-terminated.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

impl TunGrant {
    fn new(uid: u32) -> Option<TunGrant> {
        use std::os::unix::fs::MetadataExt;
        let one = TUN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mode = std::fs::metadata(TUN).ok()?.mode() & 0o7777;
        let acl = xattr_get(TUN, ACL_XATTR);
        // posix_acl_xattr: version 2, then (tag, perm, id) entries in tag order.
        let entry = |tag: u16, perm: u32, id: u32| {
            let mut e = tag.to_le_bytes().to_vec();
            e.extend((perm as u16).to_le_bytes());
            e.extend(id.to_le_bytes());
            e
        };
        let mut v = 2u32.to_le_bytes().to_vec();
        v.extend(entry(0x01, (mode >> 6) & 7, u32::MAX)); // user::
        v.extend(entry(0x02, 6, uid)); // user:<uid>:rw-
        v.extend(entry(0x04, (mode >> 3) & 7, u32::MAX)); // group::
        v.extend(entry(0x10, 6, u32::MAX)); // mask::rw-
        v.extend(entry(0x20, mode & 7, u32::MAX)); // other::
        let p = std::ffi::CString::new(TUN).ok()?;
        let n = std::ffi::CString::new(ACL_XATTR).ok()?;
        // SAFETY: v is readable for its length; both strings are NUL-terminated.
        let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        (r == 0).then_some(TunGrant {
            mode,
            acl,
            _one: one,
        })
    }
}

impl Drop for TunGrant {
    fn drop(&mut self) {
        let (Ok(p), Ok(n)) = (
            std::ffi::CString::new(TUN),
            std::ffi::CString::new(ACL_XATTR),
        ) else {
            return;
        };
        // SAFETY: NUL-terminated strings; the old value, if any, is readable for its length.
        unsafe {
            match &self.acl {
                Some(v) => libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0),
                None => libc::removexattr(p.as_ptr(), n.as_ptr()),
            };
        }
        let _ = std::fs::set_permissions(TUN, std::fs::Permissions::from_mode(self.mode));
    }
}

/// This host's address towards the outside (no packet is sent), for a listener the containers
/// can reach through slirp4netns (which keeps them off the host's loopback).
fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.200:9")
        .or_else(|_| s.connect("8.8.8.8:53"))
        .ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The rootless daemon of a test user, stopped (SIGTERM to the outer process) on drop.
struct RootlessDaemon<'a> {
    user: &'a TestUser,
    child: Child,
    log: PathBuf,
}

impl<'a> RootlessDaemon<'a> {
    fn start(user: &'a TestUser, args: &[&str]) -> RootlessDaemon<'a> {
        Self::start_env(user, args, &[])
    }

    fn start_env(user: &'a TestUser, args: &[&str], env: &[(&str, &str)]) -> RootlessDaemon<'a> {
        let log = user.root.join("daemon.log");
        let f = std::fs::File::create(&log).expect("log file");
        let rt = user.runtime.display().to_string();
        let mut e = vec![("XDG_RUNTIME_DIR", rt.as_str())];
        e.extend_from_slice(env);
        let mut c = user.cmd(BIN, &e);
        c.arg("daemon")
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f);
        let child = c.spawn().expect("spawn rootless daemon");
        let d = RootlessDaemon { user, child, log };
        let sock = user.socket();
        let up = wait_until(Duration::from_secs(30), || {
            sock.exists() && user.client(BIN, &["version"]).success()
        });
        assert!(up, "rootless daemon did not come up:\n{}", d.log());
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        // runuser runs the daemon as its child; the daemon's outer process forwards the signal.
        let outer = outer_pid(self.user.uid);
        if let Some(p) = outer {
            // SAFETY: a process of our test user, by pid.
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RootlessDaemon<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The user's processes (pid, parent, command line).
fn processes_of(uid: u32) -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        };
        if field("Uid:").and_then(|u| u.parse::<u32>().ok()) != Some(uid) {
            continue;
        }
        if field("State:").as_deref() == Some("Z") {
            continue;
        }
        let ppid = field("PPid:").and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, ppid, cmd));
    }
    out
}

/// The outer `berth daemon` of the user: the one whose parent is not another berth daemon.
fn outer_pid(uid: u32) -> Option<i32> {
    let ps = processes_of(uid);
    let daemons: Vec<_> = ps.iter().filter(|p| p.2.contains(" daemon")).collect();
    daemons
        .iter()
        .find(|p| !daemons.iter().any(|q| q.0 == p.1))
        .map(|p| p.0)
}

fn field_of(pid: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[test]
fn rootless_daemon_runs_containers_as_the_user() {
    skip_unless_ready!();
    let user = TestUser::new(true);
    // The docker CLI drives the daemon (the berth CLI where docker is absent).
    let cli = if Path::new(DOCKER).exists() {
        DOCKER
    } else {
        eprintln!("SKIP docker CLI: {DOCKER} absent, the berth CLI drives the test");
        BIN
    };
    // The image, readable by the user, loaded through the API.
    let tar = user.root.join("busybox.tar");
    write_busybox_tar(&tar);

    // Networking needs /dev/net/tun (mode 0600 on some hosts): grant it to this user only.
    let tun = TunGrant::new(user.uid);
    if tun.is_none() {
        eprintln!("SKIP rootless networking part: cannot grant {TUN} to the test user");
    }
    // A registry on the host's own address: the daemon's network namespace reaches the host
    // through slirp4netns, which keeps it off the host's loopback.
    let reg = tun.as_ref().and(host_address()).map(Registry::start);

    let check = user.cmd(
        BIN,
        &[("XDG_RUNTIME_DIR", &user.runtime.display().to_string())],
    );
    let mut check = check;
    check.args(["rootless", "check"]);
    let c = berth_testkit::run_with_timeout(check, None, Duration::from_secs(30));
    assert!(
        c.stdout.contains("[ok]      subordinate uids") && c.stdout.contains("[ok]      newuidmap"),
        "{c}"
    );

    let daemon_args: Vec<String> = match &reg {
        Some(r) => vec!["--insecure-registry".into(), r.addr.clone()],
        None => Vec::new(),
    };
    let daemon_args: Vec<&str> = daemon_args.iter().map(String::as_str).collect();
    let mut d = RootlessDaemon::start(&user, &daemon_args);
    // The user's places.
    assert!(user.socket().exists());
    assert!(
        user.home.join(".local/share/berth/image").is_dir(),
        "{}",
        d.log()
    );
    assert!(
        d.log().contains("rootless mode without cgroups"),
        "{}",
        d.log()
    );

    // Without DOCKER_HOST the CLI of a non-root user finds its own daemon; /info says rootless.
    let mut info = user.cmd(
        BIN,
        &[("XDG_RUNTIME_DIR", &user.runtime.display().to_string())],
    );
    info.args([
        "info",
        "--format",
        "{{json .SecurityOptions}} {{.CgroupDriver}} {{.Warnings}}",
    ]);
    let info = berth_testkit::run_with_timeout(info, None, Duration::from_secs(30));
    assert!(info.ok().stdout.contains("name=rootless"), "{info}");
    assert!(info.stdout.contains(" none "), "{info}");
    assert!(info.stdout.contains("without cgroups"), "{info}");

    user.client(cli, &["load", "-i", &tar.display().to_string()])
        .ok();

    // uid 0 inside, mapped onto the user.
    let id = user.client(cli, &["run", "--rm", "busybox", "id"]);
    id.ok();
    assert!(id.stdout.starts_with("uid=0(root) gid=0(root)"), "{id}");
    let map = user.client(
        cli,
        &["run", "--rm", "busybox", "cat", "/proc/self/uid_map"],
    );
    let first: Vec<&str> = map.ok().stdout.split_whitespace().take(3).collect();
    assert_eq!(first, ["0", &user.uid.to_string(), "1"], "{map}");

    // --pid=host: the host's processes (this test's among them) under /proc, the host's
    // /proc bound (a new proc cannot be mounted for the host's pid namespace).
    let me = std::process::id();
    let hp = user.client(
        cli,
        &[
            "run",
            "--rm",
            "--pid=host",
            "busybox",
            "sh",
            "-c",
            &format!("test -d /proc/{me} && echo seen"),
        ],
    );
    assert_eq!(hp.ok().stdout, "seen\n", "{hp}");

    // A limit is discarded with a warning; the container still runs.
    let lim = user.client(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "sleeper",
            "-m",
            "64m",
            "busybox",
            "sh",
            "-c",
            "echo started; sleep 300",
        ],
    );
    lim.ok();
    assert!(
        lim.stderr
            .contains("WARNING: Your kernel does not support memory limit"),
        "{lim}"
    );

    // Seen from the host, the container's process is the user.
    let pid = user.client(cli, &["inspect", "-f", "{{.State.Pid}}", "sleeper"]);
    let pid = pid.ok().stdout.trim().to_string();
    assert_eq!(
        field_of(&pid, "Uid:").split_whitespace().nth(1),
        Some(user.uid.to_string().as_str()),
        "host view of {pid}"
    );

    // Without a cgroup of its own: top lists the container's pid namespace, update changes
    // the restart policy and discards limits with the warning, pause says why it cannot.
    let top = user.client(cli, &["top", "sleeper"]);
    assert!(top.ok().stdout.contains("sleep 300"), "{top}");
    let up = user.client(
        cli,
        &["update", "--restart", "on-failure", "-m", "32m", "sleeper"],
    );
    // The docker CLI prints an update's warnings on stdout.
    assert!(
        up.ok()
            .stdout
            .contains("Your kernel does not support memory limit"),
        "{up}"
    );
    let rp = user.client(
        cli,
        &[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}",
            "sleeper",
        ],
    );
    assert_eq!(rp.ok().stdout.trim(), "on-failure 0");
    let pause = user.client(cli, &["pause", "sleeper"]);
    assert_ne!(pause.code, 0, "{pause}");
    assert!(
        pause.stderr.contains("needs the container's cgroup"),
        "{pause}"
    );

    // exec, exec -it on a pseudo-terminal, logs.
    let ex = user.client(cli, &["exec", "sleeper", "id", "-u"]);
    assert_eq!(ex.ok().stdout.trim(), "0");
    // On a pty of the test's own, not under `script`: script types an EOF character when its
    // stdin ends, which the CLI forwards into the exec's terminal (echoed there as `^@`).
    let mut on_pty = user.cmd(cli, &[("DOCKER_HOST", &user.host())]);
    on_pty.args(["exec", "-it", "sleeper", "sh", "-c", "tty; id -u"]);
    let mut it = berth_testkit::pty::Pty::spawn(on_pty, 24, 80);
    let code = it.wait();
    assert_eq!(code, Some(0), "{:?}", it.seen);
    assert!(it.seen.contains("/dev/pts/"), "{:?}", it.seen);
    assert!(
        it.seen.contains("\r\n0\r\n"),
        "a terminal's line ends: {:?}",
        it.seen
    );
    assert!(wait_until(DEADLINE, || user
        .client(cli, &["logs", "sleeper"])
        .stdout
        .contains("started")));
    logs_follow(&user, cli);

    // A named volume: written by container root, owned by the user on the host.
    user.client(
        cli,
        &[
            "run",
            "--rm",
            "-v",
            "rlvol:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    )
    .ok();
    let back = user.client(
        cli,
        &[
            "run",
            "--rm",
            "-v",
            "rlvol:/data",
            "busybox",
            "cat",
            "/data/f",
        ],
    );
    assert_eq!(back.ok().stdout, "kept\n");
    let on_host = user.home.join(".local/share/berth/volumes/rlvol/_data/f");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&on_host)
            .expect("volume file on host")
            .uid(),
        user.uid
    );

    // A build: RUN steps are containers of the rootless daemon too.
    let ctx = user.root.join("ctx");
    std::fs::create_dir(&ctx).expect("ctx");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN id -u > /built\nCOPY f /f\n",
    )
    .expect("Dockerfile");
    std::fs::write(ctx.join("f"), "copied\n").expect("f");
    for f in ["", "Dockerfile", "f"] {
        let mode = if f.is_empty() { 0o755 } else { 0o644 };
        std::fs::set_permissions(ctx.join(f), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    user.client(cli, &["build", "-t", "rlbuilt", &ctx.display().to_string()])
        .ok();
    let built = user.client(cli, &["run", "--rm", "rlbuilt", "cat", "/built", "/f"]);
    assert_eq!(built.ok().stdout, "0\ncopied\n");

    // A user-defined network: name resolution between containers, inside the daemon's own
    // network namespace.
    user.client(cli, &["network", "create", "rlnet"]).ok();
    user.client(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "rlnet",
            "busybox",
            "sleep",
            "300",
        ],
    )
    .ok();
    let ping = user.client(
        cli,
        &[
            "run",
            "--rm",
            "--network",
            "rlnet",
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "srv",
        ],
    );
    assert!(ping.ok().stdout.contains("1 packets received"), "{ping}");

    let mut published = None;
    if tun.is_some() {
        assert!(c.stdout.contains("[ok]      /dev/net/tun"), "{c}");
        // Outbound: a listener on the host's own address, reached through slirp4netns.
        if let Some(ip) = host_address() {
            let l = std::net::TcpListener::bind((ip, 0)).expect("listener");
            let port = l.local_addr().expect("addr").port();
            let srv = std::thread::spawn(move || {
                let (mut s, _) = l.accept().expect("accept");
                s.write_all(b"hello-outside\n").expect("write");
            });
            let out = user.client(
                cli,
                &[
                    "run",
                    "--rm",
                    "busybox",
                    "nc",
                    "-w",
                    "10",
                    &ip.to_string(),
                    &port.to_string(),
                ],
            );
            assert_eq!(out.ok().stdout, "hello-outside\n", "{}", d.log());
            srv.join().expect("server");
        } else {
            eprintln!("SKIP rootless outbound part: no non-loopback host address");
        }
        // push and pull through a registry on the host.
        if let Some(r) = &reg {
            let name = format!("{}/rl/busybox:1", r.addr);
            user.client(cli, &["tag", "busybox", &name]).ok();
            user.client(cli, &["push", &name]).ok();
            user.client(cli, &["rmi", &name]).ok();
            let pull = user.client(cli, &["pull", &name]);
            assert!(
                pull.ok().stdout.contains("Downloaded newer image"),
                "{pull}"
            );
            let out = user.client(cli, &["run", "--rm", &name, "echo", "pulled"]);
            assert_eq!(out.ok().stdout, "pulled\n");
        }
        // -p: the host's 127.0.0.1:<port> reaches the container (slirp4netns's host forward,
        // then the daemon's DNAT).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        user.client(
            cli,
            &[
                "run",
                "-d",
                "--name",
                "web",
                "-p",
                &format!("{port}:80"),
                "busybox",
                "sh",
                "-c",
                "while true; do echo hello-published | nc -l -p 80; done",
            ],
        )
        .ok();
        assert!(reaches(port), "127.0.0.1:{port}\n{}", d.log());
        // TCP through Berth's own forwarder (rootlesskit's builtin driver in shape), not
        // slirp4netns's user-mode stack.
        let ps = processes_of(user.uid);
        assert!(ps.iter().any(|p| p.2.contains("rootless portd")), "{ps:?}");
        // A host port someone else holds fails the start with Docker's words.
        let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let tport = taken.local_addr().expect("addr").port();
        let clash = user.client(
            cli,
            &[
                "run",
                "--rm",
                "-p",
                &format!("{tport}:80"),
                "busybox",
                "true",
            ],
        );
        assert_ne!(clash.code, 0, "{clash}");
        assert!(
            clash.stderr.contains("port is already allocated"),
            "{clash}"
        );
        drop(taken);
        // Published and removed: the host forward goes with the container.
        let p2 = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        user.client(
            cli,
            &[
                "run",
                "-d",
                "--name",
                "web2",
                "-p",
                &format!("{p2}:80"),
                "busybox",
                "sh",
                "-c",
                "while true; do echo hello-published | nc -l -p 80; done",
            ],
        )
        .ok();
        assert!(reaches(p2), "127.0.0.1:{p2}");
        user.client(cli, &["rm", "-f", "web2"]).ok();
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect(("127.0.0.1", p2))
                .is_err()),
            "the host forward goes with the container"
        );
        published = Some(port);
    }

    let ps = user.client(cli, &["ps", "--format", "{{.Names}}"]);
    assert!(ps.ok().stdout.contains("sleeper"), "{ps}");

    // Live restore: the namespaces stay with their holder process, so stopping the daemon
    // leaves the containers running, and the next daemon joins them and takes them back.
    d.stop();
    assert!(!user.socket().exists(), "socket removed at shutdown");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the container outlives the daemon"
    );
    if let Some(port) = published {
        assert!(reaches(port), "the published port while no daemon runs");
    }
    let d2 = RootlessDaemon::start(&user, &daemon_args);
    let ps = user.client(cli, &["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(
        ps.ok().stdout.contains("sleeper running"),
        "{ps}\n{}",
        d2.log()
    );
    let again = user.client(cli, &["inspect", "-f", "{{.State.Pid}}", "sleeper"]);
    assert_eq!(again.ok().stdout.trim(), pid, "the same process");
    let ex = user.client(cli, &["exec", "sleeper", "cat", "/proc/1/cmdline"]);
    assert!(ex.ok().stdout.starts_with("sleep"), "{ex}");
    let ping = user.client(
        cli,
        &[
            "run",
            "--rm",
            "--network",
            "rlnet",
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "srv",
        ],
    );
    assert!(ping.ok().stdout.contains("1 packets received"), "{ping}");
    if let Some(port) = published {
        assert!(
            reaches(port),
            "127.0.0.1:{port} after the restart\n{}",
            d2.log()
        );
        user.client(cli, &["rm", "-f", "web"]).ok();
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_err()),
            "the restored forward goes with its container\n{}",
            d2.log()
        );
    }
    let again = user.client(
        cli,
        &[
            "run",
            "--rm",
            "-v",
            "rlvol:/data",
            "busybox",
            "cat",
            "/data/f",
        ],
    );
    assert_eq!(again.ok().stdout, "kept\n");
    user.client(cli, &["stop", "-t", "1", "sleeper"]).ok();
    assert!(
        wait_until(DEADLINE, || !Path::new(&format!("/proc/{pid}")).exists()),
        "stopped after the restart"
    );
}

/// Whether 127.0.0.1:`port` answers "hello-published" (within the deadline).
fn reaches(port: u16) -> bool {
    wait_until(DEADLINE, || {
        let mut got = String::new();
        std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                std::io::Read::read_to_string(&mut s, &mut got)
            })
            .is_ok()
            && got == "hello-published\n"
    })
}

/// `logs -f`: a line written after the follow started arrives, and the follow ends with the
/// container.
fn logs_follow(user: &TestUser, cli: &str) {
    user.client(
        cli,
        &[
            "run",
            "-d",
            "--name",
            "follow",
            "busybox",
            "sh",
            "-c",
            "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second",
        ],
    )
    .ok();
    let mut c = user.cmd(cli, &[("DOCKER_HOST", &user.host())]);
    c.args(["logs", "-f", "follow"]).stdout(Stdio::piped());
    let mut child = c.spawn().expect("logs -f");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let line = rx.recv_timeout(DEADLINE);
    assert_eq!(line.as_deref(), Ok("first"));
    user.client(cli, &["exec", "follow", "touch", "/tmp/go"])
        .ok();
    let line = rx.recv_timeout(DEADLINE);
    assert_eq!(line.as_deref(), Ok("second"));
    let ended = wait_until(DEADLINE, || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(ended, "logs -f ends when the container does");
    user.client(cli, &["rm", "follow"]).ok();
}

/// `berth registry serve` on `ip` (a free port), killed on drop.
struct Registry {
    addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(ip: std::net::IpAddr) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("{ip}:{port}");
        let child = Command::new(BIN)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("registry");
        let r = Registry {
            addr,
            child,
            _dir: dir,
        };
        assert!(wait_until(DEADLINE, || std::net::TcpStream::connect(
            &r.addr
        )
        .is_ok()));
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `berth daemon` as `user` with `env`, expecting a quick failure.
fn failing_daemon(user: &TestUser, env: &[(&str, &str)]) -> Out {
    let mut c = user.cmd(BIN, env);
    c.arg("daemon");
    let out = berth_testkit::run_with_timeout(c, None, Duration::from_secs(30));
    assert_eq!(out.code, 1, "{out}");
    out
}

fn assert_nothing_created(user: &TestUser) {
    assert!(!user.runtime.join("berth").exists(), "no runtime state");
    assert!(
        !user.home.join(".local/share/berth").exists(),
        "no data root"
    );
    assert!(processes_of(user.uid).is_empty(), "no process left");
}

#[test]
fn rootless_misconfigurations_name_the_fix() {
    skip_unless_ready!();
    let rt = |u: &TestUser| u.runtime.display().to_string();

    // No subordinate ids.
    let bare = TestUser::new(false);
    let out = failing_daemon(&bare, &[("XDG_RUNTIME_DIR", &rt(&bare))]);
    assert!(out.stderr.contains("no subordinate user ids"), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "usermod --add-subuids 100000-165535 {}",
            bare.name
        )),
        "{out}"
    );
    assert_nothing_created(&bare);
    let mut check = bare.cmd(BIN, &[("XDG_RUNTIME_DIR", &rt(&bare))]);
    check.args(["rootless", "check"]);
    let c = berth_testkit::run_with_timeout(check, None, Duration::from_secs(30));
    assert_eq!(c.code, 1, "{c}");
    assert!(c.stdout.contains("[missing] subordinate uids"), "{c}");
    assert!(
        c.stdout.contains("fix: as root: usermod --add-subgids"),
        "{c}"
    );

    // XDG_RUNTIME_DIR unset.
    let user = TestUser::new(true);
    let out = failing_daemon(&user, &[]);
    assert!(out.stderr.contains("XDG_RUNTIME_DIR is not set"), "{out}");
    assert!(out.stderr.contains("export XDG_RUNTIME_DIR="), "{out}");
    assert_nothing_created(&user);

    // No newuidmap on PATH.
    let empty = user.root.join("emptybin");
    std::fs::create_dir(&empty).expect("dir");
    let out = failing_daemon(
        &user,
        &[
            ("XDG_RUNTIME_DIR", &rt(&user)),
            ("PATH", &empty.display().to_string()),
        ],
    );
    assert!(out.stderr.contains("newuidmap not found"), "{out}");
    assert!(out.stderr.contains("apt-get install uidmap"), "{out}");
    assert_nothing_created(&user);

    // newuidmap refuses the mapping (as it does for a range the user is not granted): the
    // half-made namespace holder goes, and so do the directories this start created.
    let fake = user.root.join("fakebin");
    std::fs::create_dir(&fake).expect("dir");
    std::fs::write(
        fake.join("newuidmap"),
        "#!/bin/sh\necho 'newuidmap: uid range [1-65537) -> [7-65543) not allowed' >&2\nexit 1\n",
    )
    .expect("fake newuidmap");
    // Root-owned and setuid, as the real one (the kernel ignores the bit on a script).
    std::fs::set_permissions(
        fake.join("newuidmap"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
    let out = failing_daemon(
        &user,
        &[
            ("XDG_RUNTIME_DIR", &rt(&user)),
            ("PATH", &format!("{}:/usr/bin:/bin", fake.display())),
        ],
    );
    assert!(out.stderr.contains("newuidmap failed"), "{out}");
    assert!(out.stderr.contains("not allowed"), "{out}");
    assert!(out.stderr.contains("check that /etc/subuid"), "{out}");
    assert_nothing_created(&user);

    // No access to /dev/net/tun: the daemon runs, without outbound network, and says so.
    let mut check = user.cmd(BIN, &[("XDG_RUNTIME_DIR", &rt(&user))]);
    check.args(["rootless", "check"]);
    let c = berth_testkit::run_with_timeout(check, None, Duration::from_secs(30));
    if c.stdout.contains("[missing] /dev/net/tun") {
        assert!(
            c.stdout.contains("fix: as root: chmod 0666 /dev/net/tun"),
            "{c}"
        );
        let d = RootlessDaemon::start(&user, &[]);
        assert!(
            d.log()
                .contains("WARNING: rootless: containers have no outbound network"),
            "{}",
            d.log()
        );
        assert!(d.log().contains("chmod 0666 /dev/net/tun"), "{}", d.log());
    } else {
        eprintln!("SKIP no-tun part: /dev/net/tun is open to every user here");
    }
}

/// `berth <args>` as `user`, with its XDG_RUNTIME_DIR and no DOCKER_HOST.
fn as_user(user: &TestUser, program: &str, args: &[&str]) -> Out {
    let mut c = user.cmd(
        program,
        &[("XDG_RUNTIME_DIR", &user.runtime.display().to_string())],
    );
    c.args(args);
    berth_testkit::run_with_timeout(c, None, Duration::from_secs(60))
}

#[test]
fn rootless_setup_and_uninstall() {
    skip_unless_ready!();
    if !Path::new(DOCKER).exists() {
        eprintln!("SKIP rootless setup: {DOCKER} absent");
        return;
    }
    // A missing piece: what the administrator must run, and nothing installed.
    let bare = TestUser::new(false);
    let out = as_user(&bare, BIN, &["rootless", "setup"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains("[ERROR] Missing system requirements"),
        "{out}"
    );
    assert!(out.stdout.contains("usermod --add-subuids"), "{out}");
    assert!(out.stdout.contains("usermod --add-subgids"), "{out}");
    assert!(!bare.home.join(".config").exists(), "nothing installed");
    drop(bare);

    let user = TestUser::new(true);
    let out = as_user(&user, BIN, &["rootless", "setup"]);
    out.ok();
    let unit = user.home.join(".config/systemd/user/berth.service");
    let text = std::fs::read_to_string(&unit).expect("unit installed");
    for line in [
        format!("ExecStart={BIN} daemon"),
        format!(
            "Environment=PATH={}:/usr/local/bin",
            Path::new(BIN).parent().expect("dir").display()
        ),
        "KillMode=process".into(),
        "Delegate=yes".into(),
        "Restart=always".into(),
        "WantedBy=default.target".into(),
    ] {
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    // PID 1 is not systemd here: the no-systemd path.
    if !Path::new("/run/systemd/system").exists() {
        assert!(
            out.stdout.contains("No systemd user manager is reachable")
                && out
                    .stdout
                    .contains(&format!("start the daemon yourself: {BIN} daemon")),
            "{out}"
        );
    }
    assert!(
        out.stdout
            .contains(&format!("export DOCKER_HOST={}", user.host())),
        "{out}"
    );
    let ctx = as_user(
        &user,
        DOCKER,
        &[
            "context",
            "inspect",
            "rootless",
            "--format",
            "{{.Endpoints.docker.Host}}",
        ],
    );
    assert_eq!(ctx.ok().stdout.trim(), user.host());
    assert_eq!(
        as_user(&user, DOCKER, &["context", "show"])
            .ok()
            .stdout
            .trim(),
        "rootless"
    );
    let again = as_user(&user, BIN, &["rootless", "setup"]);
    assert!(
        again
            .ok()
            .stdout
            .contains("CLI context \"rootless\" already exists"),
        "{again}"
    );

    // The daemon as the unit starts it; the docker CLI reaches it through the context alone.
    let d = RootlessDaemon::start(&user, &[]);
    as_user(&user, DOCKER, &["load", "-i", &busybox_tar(&user)]).ok();
    as_user(
        &user,
        DOCKER,
        &["run", "-d", "--name", "s", "busybox", "sleep", "300"],
    )
    .ok();
    assert!(user.home.join(".local/share/berth").is_dir());

    // Uninstall: the daemon, its containers and namespaces stop; unit and context go; --purge
    // removes the data, files of subordinate ids included.
    let out = as_user(&user, BIN, &["rootless", "uninstall", "--purge"]);
    out.ok();
    for s in [
        "Stopped the daemon",
        "Stopped the rootless namespaces",
        "Removed CLI context \"rootless\"",
        "berth.service",
    ] {
        assert!(out.stdout.contains(s), "{s}: {out}");
    }
    assert!(
        wait_until(DEADLINE, || processes_of(user.uid).is_empty()),
        "left behind: {:?}",
        processes_of(user.uid)
    );
    assert!(!unit.exists(), "unit removed");
    assert!(
        !user.home.join(".local/share/berth").exists(),
        "data purged\n{out}"
    );
    let ctx = as_user(&user, DOCKER, &["context", "inspect", "rootless"]);
    assert_ne!(ctx.code, 0, "{ctx}");
    assert_eq!(
        as_user(&user, DOCKER, &["context", "show"])
            .ok()
            .stdout
            .trim(),
        "default"
    );
    drop(d);
}

/// busybox saved where `user` can read it.
fn busybox_tar(user: &TestUser) -> String {
    let tar = user.root.join("busybox.tar");
    write_busybox_tar(&tar);
    tar.display().to_string()
}

#[test]
fn rootless_pasta_by_flag() {
    skip_unless_ready!();
    if !Path::new("/usr/bin/pasta").exists() {
        eprintln!("SKIP rootless pasta: /usr/bin/pasta absent (apt-get install passt)");
        return;
    }
    let user = TestUser::new(true);
    let Some(_tun) = TunGrant::new(user.uid) else {
        eprintln!("SKIP rootless pasta: cannot grant {TUN} to the test user");
        return;
    };
    let bad = as_user(&user, BIN, &["daemon", "--rootless-net=x"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(
        bad.stderr.contains("slirp4netns (the default) or pasta"),
        "{bad}"
    );
    assert_nothing_created(&user);

    let pasta_pid = || {
        processes_of(user.uid)
            .into_iter()
            .find(|p| p.2.starts_with("pasta"))
            .map(|p| p.0)
    };
    let mut d = RootlessDaemon::start(&user, &["--rootless-net=pasta"]);
    let first = pasta_pid().expect("pasta runs");
    assert!(
        !processes_of(user.uid)
            .iter()
            .any(|p| p.2.contains("slirp4netns")),
        "no slirp4netns"
    );
    user.client(BIN, &["load", "-i", &busybox_tar(&user)]).ok();
    let outbound = |d: &RootlessDaemon| {
        let Some(ip) = host_address() else {
            eprintln!("SKIP rootless pasta outbound: no non-loopback host address");
            return;
        };
        let l = std::net::TcpListener::bind((ip, 0)).expect("listener");
        let port = l.local_addr().expect("addr").port();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            s.write_all(b"hello-outside\n").expect("write");
        });
        // Debian 12's pasta does not always pass the server's close on: the client stops by
        // itself after a few seconds; the bytes are what counts.
        let out = user.client(
            BIN,
            &[
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                &format!("timeout 5 nc {ip} {port}; true"),
            ],
        );
        // Debian 12's passt at times repeats the data before the close reaches the container
        // (its bug, seen only with pasta): what is tested here is that traffic gets out.
        let got = &out.ok().stdout;
        assert!(
            !got.is_empty() && got.lines().all(|l| l == "hello-outside"),
            "{got:?} {}",
            d.log()
        );
        srv.join().expect("server");
    };
    outbound(&d);
    // -p cannot be honoured through pasta: refused with the reason, nothing half-made.
    let p = user.client(BIN, &["run", "--rm", "-p", "28080:80", "busybox", "true"]);
    assert_ne!(p.code, 0, "{p}");
    assert!(p.stderr.contains("without --rootless-net=pasta"), "{p}");
    // A restart keeps the same pasta (its namespace is the holder's).
    d.stop();
    let d2 = RootlessDaemon::start(&user, &["--rootless-net=pasta"]);
    assert_eq!(pasta_pid(), Some(first), "the same pasta after a restart");
    outbound(&d2);
    drop(d2);
    // Back to the default: pasta goes, slirp4netns takes the namespace over.
    let d3 = RootlessDaemon::start(&user, &[]);
    assert_eq!(pasta_pid(), None, "pasta stopped");
    outbound(&d3);
}

/// Whether `addr` answers "hello-published" (within the deadline).
fn reaches_at(addr: std::net::SocketAddr) -> bool {
    wait_until(DEADLINE, || {
        let mut got = String::new();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                std::io::Read::read_to_string(&mut s, &mut got)
            })
            .is_ok()
            && got == "hello-published\n"
    })
}

/// A free port on every address of the host (for `proto`).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.local_addr())
            .expect("free udp port")
            .port()
    } else {
        std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }
}

/// The container's count of UDP datagrams that found no socket (`Udp: NoPorts` of its
/// /proc/net/snmp): busybox has no UDP server, so a datagram's arrival is seen there.
fn udp_noports(user: &TestUser, name: &str) -> u64 {
    let snmp = user.client(DOCKER, &["exec", name, "cat", "/proc/net/snmp"]);
    let udp: Vec<&str> = snmp
        .ok()
        .stdout
        .lines()
        .filter(|l| l.starts_with("Udp: "))
        .collect();
    let [names, values] = udp[..] else {
        panic!("no Udp lines: {snmp}");
    };
    let at = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .expect("NoPorts");
    values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .expect("NoPorts value")
}

#[test]
fn rootless_ports_published_at_one_address_and_udp() {
    skip_unless_ready!();
    if !Path::new(DOCKER).exists() {
        eprintln!("SKIP rootless ports: {DOCKER} absent");
        return;
    }
    let user = TestUser::new(true);
    let Some(_tun) = TunGrant::new(user.uid) else {
        eprintln!("SKIP rootless ports: cannot grant {TUN} to the test user");
        return;
    };
    let d = RootlessDaemon::start(&user, &[]);
    user.client(DOCKER, &["load", "-i", &busybox_tar(&user)])
        .ok();
    let serve = "while true; do echo hello-published | nc -l -p 80; done";
    let lo = std::net::Ipv4Addr::LOCALHOST;

    // -p 127.0.0.1:P:80 answers at 127.0.0.1 and not at the host's other address.
    let p1 = free_port(false);
    user.client(
        DOCKER,
        &[
            "run",
            "-d",
            "--name",
            "lo-only",
            "-p",
            &format!("127.0.0.1:{p1}:80"),
            "busybox",
            "sh",
            "-c",
            serve,
        ],
    )
    .ok();
    assert!(reaches_at((lo, p1).into()), "127.0.0.1:{p1}\n{}", d.log());
    let port = user.client(DOCKER, &["port", "lo-only", "80"]);
    assert_eq!(port.ok().stdout.trim(), format!("127.0.0.1:{p1}"));
    let other = host_address();
    if let Some(ip) = other {
        let c = std::net::TcpStream::connect_timeout(&(ip, p1).into(), Duration::from_secs(5));
        assert!(c.is_err(), "{ip}:{p1} must not answer");

        // -p <host address>:P:80: there, and not on the loopback.
        let p2 = free_port(false);
        user.client(
            DOCKER,
            &[
                "run",
                "-d",
                "--name",
                "addr-only",
                "-p",
                &format!("{ip}:{p2}:80"),
                "busybox",
                "sh",
                "-c",
                serve,
            ],
        )
        .ok();
        assert!(reaches_at((ip, p2).into()), "{ip}:{p2}\n{}", d.log());
        let c = std::net::TcpStream::connect_timeout(&(lo, p2).into(), Duration::from_secs(5));
        assert!(c.is_err(), "127.0.0.1:{p2} must not answer");
        user.client(DOCKER, &["rm", "-f", "addr-only"]).ok();
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect((ip, p2)).is_err()),
            "the forward at {ip} goes with its container"
        );
    } else {
        eprintln!("SKIP rootless ports at a host address: no non-loopback host address");
    }

    // UDP (slirp4netns's forwards): -p 127.0.0.1:P:53/udp brings datagrams to the container.
    let p3 = free_port(true);
    user.client(
        DOCKER,
        &[
            "run",
            "-d",
            "--name",
            "udp",
            "-p",
            &format!("127.0.0.1:{p3}:53/udp"),
            "busybox",
            "sleep",
            "300",
        ],
    )
    .ok();
    let port = user.client(DOCKER, &["port", "udp", "53/udp"]);
    assert_eq!(port.ok().stdout.trim(), format!("127.0.0.1:{p3}"));
    let before = udp_noports(&user, "udp");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let arrived = wait_until(DEADLINE, || {
        let _ = sock.send_to(b"hello-udp", (lo, p3));
        std::thread::sleep(Duration::from_millis(200));
        udp_noports(&user, "udp") > before
    });
    assert!(
        arrived,
        "a datagram to 127.0.0.1:{p3} reaches the container\n{}",
        d.log()
    );
    user.client(DOCKER, &["rm", "-f", "lo-only", "udp"]).ok();
    assert!(
        wait_until(DEADLINE, || std::net::TcpStream::connect((lo, p1)).is_err()),
        "the forward at 127.0.0.1 goes with its container"
    );
}
