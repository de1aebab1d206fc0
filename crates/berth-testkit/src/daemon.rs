use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{self, Response};
use crate::image::{self, Image, SaveFormat};
use crate::{cleanup, run_with_timeout, wait_until, Error, Out};

/// How long the daemon gets to answer `/_ping` after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a CLI command.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// A `berth daemon` on its own temporary roots and socket.
///
/// Dropping it (or, for [`Daemon::shared`], the test process exiting) stops the daemon, kills
/// every shim and container process of it, unmounts everything under its temp dir and removes it.
pub struct Daemon {
    bin: PathBuf,
    root: PathBuf,
    sock: PathBuf,
    data_root: PathBuf,
    exec_root: PathBuf,
    log: PathBuf,
    cache: PathBuf,
    child: Mutex<Option<Child>>,
    loaded: Mutex<BTreeMap<&'static str, Result<String, String>>>,
    cleaned: AtomicBool,
    last_start: Mutex<Duration>,
    /// More `berth daemon` flags (e.g. `--registry-mirror`), kept across restarts.
    extra_args: Vec<String>,
    net: crate::netlease::NetLease,
    how: Startup,
    /// The listening socket handed to a [`Startup::SocketActivated`] daemon (kept across
    /// restarts, as a socket unit keeps it).
    activated: Mutex<Option<std::os::unix::net::UnixListener>>,
}

/// How a test daemon gets its settings and its socket.
#[derive(Clone, Debug, Default)]
pub enum Startup {
    /// Flags only (`-H`, `--data-root`, ...).
    #[default]
    Flags,
    /// Everything from a daemon.json in the temp root (`--config-file`), plus these keys.
    ConfigFile(serde_json::Map<String, Value>),
    /// As systemd's socket activation does it: the test binds the socket and hands it over as
    /// fd 3 with `LISTEN_FDS=1`, `LISTEN_PID`; the daemon is started with `-H fd://`.
    SocketActivated,
}

/// `<root>/<name>/<segments>`, exactly `len` bytes long; `None` when `root` is too long for that.
fn deep_path(root: &Path, name: &str, len: usize) -> Option<PathBuf> {
    let mut p = root.join(name);
    if p.as_os_str().len() + 2 > len {
        return None;
    }
    // Segments of at most 40 bytes ("/" and a name), the last one filling up to `len`; never
    // leaving a single byte to fill (a name needs two with its "/").
    while p.as_os_str().len() < len {
        let rem = len - p.as_os_str().len();
        let take = if rem <= 40 { rem - 1 } else { 39.min(rem - 3) };
        p.push(&"0123456789abcdefghijklmnopqrstuvwxyz0123"[..take]);
    }
    Some(p)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static BUSYBOX: OnceLock<Result<Image, Error>> = OnceLock::new();
static LAYERED: OnceLock<Result<Image, Error>> = OnceLock::new();

/// The busybox test image, built once per process.
pub fn busybox() -> Result<&'static Image, Error> {
    BUSYBOX
        .get_or_init(image::busybox_image)
        .as_ref()
        .map_err(Clone::clone)
}

/// The layered test image, built once per process.
pub fn layered() -> Result<&'static Image, Error> {
    LAYERED
        .get_or_init(image::layered_image)
        .as_ref()
        .map_err(Clone::clone)
}

static SHARED: OnceLock<Result<&'static Daemon, String>> = OnceLock::new();
static AT_EXIT: Mutex<Vec<&'static Daemon>> = Mutex::new(Vec::new());

extern "C" fn cleanup_at_exit() {
    let list: Vec<&'static Daemon> = std::mem::take(&mut *lock(&AT_EXIT));
    for d in list {
        d.cleanup();
    }
}

impl Daemon {
    /// Starts a daemon from the berth binary at `bin`; panics with its stderr when it does not
    /// answer `/_ping` within 10 s.
    #[track_caller]
    pub fn start(bin: impl AsRef<Path>) -> Daemon {
        match Self::try_start(bin) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// One daemon per test process, shared by its tests, cleaned up when the process exits. A
    /// failure to start is remembered, so every test fails fast with the same message.
    #[track_caller]
    pub fn shared(bin: impl AsRef<Path>) -> &'static Daemon {
        let r = SHARED.get_or_init(|| Ok(Self::try_start(bin)?.keep()));
        match r {
            Ok(d) => d,
            Err(e) => panic!("shared daemon did not start: {e}"),
        }
    }

    /// Keeps the daemon for the rest of the process (for tests sharing it); it is cleaned up
    /// when the process exits.
    pub fn keep(self) -> &'static Daemon {
        let d: &'static Daemon = Box::leak(Box::new(self));
        let mut list = lock(&AT_EXIT);
        if list.is_empty() {
            // SAFETY: registering a plain extern "C" fn with atexit(3).
            unsafe {
                libc::atexit(cleanup_at_exit);
            }
        }
        list.push(d);
        d
    }

    pub fn try_start(bin: impl AsRef<Path>) -> Result<Daemon, String> {
        Self::try_start_with(bin, Startup::Flags)
    }

    /// Starts a daemon with more `berth daemon` flags; panics like [`Daemon::start`].
    #[track_caller]
    pub fn start_with_args(bin: impl AsRef<Path>, extra_args: &[&str]) -> Daemon {
        match Self::try_start_with_args(bin, extra_args) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// A daemon started with flags and these more `berth daemon` flags.
    pub fn try_start_with_args(
        bin: impl AsRef<Path>,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        Self::try_start_full(bin, Startup::Flags, extra_args, None, None)
    }

    /// A daemon whose `--data-root` is `data_root` (a filesystem of the test's own, e.g. a
    /// small loop-mounted one) rather than a directory of its temp root. The test owns that
    /// directory: the daemon's cleanup stops its processes but leaves `data_root` alone.
    pub fn try_start_on(
        bin: impl AsRef<Path>,
        data_root: &Path,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        Self::try_start_full(
            bin,
            Startup::Flags,
            extra_args,
            None,
            Some(data_root.to_path_buf()),
        )
    }

    /// A daemon started as `how` says (see [`Startup`]).
    pub fn try_start_with(bin: impl AsRef<Path>, how: Startup) -> Result<Daemon, String> {
        Self::try_start_full(bin, how, &[], None, None)
    }

    /// A daemon whose `--exec-root` and `--data-root` are exactly `len` bytes long (deep
    /// directories in its temp root: beyond what a unix socket address holds once a container
    /// id is added); its API socket stays short.
    pub fn try_start_deep(bin: impl AsRef<Path>, len: usize) -> Result<Daemon, String> {
        Self::try_start_full(bin, Startup::Flags, &[], Some(len), None)
    }

    fn try_start_full(
        bin: impl AsRef<Path>,
        how: Startup,
        extra_args: &[&str],
        deep: Option<usize>,
        own_data_root: Option<PathBuf>,
    ) -> Result<Daemon, String> {
        let bin = bin.as_ref().to_path_buf();
        let base = std::env::var_os("BERTH_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("bt-")
            .tempdir_in(&base)
            .map_err(|e| format!("temp dir in {}: {e}", base.display()))?;
        let root = dir.keep();
        let root = root.canonicalize().unwrap_or(root);
        // BERTH_TEST_CACHE: for a read-only build tree (the test VM shares it read-only).
        let cache = std::env::var_os("BERTH_TEST_CACHE")
            .map(PathBuf::from)
            .or_else(|| bin.parent().map(|p| p.join("berth-testkit")))
            .unwrap_or_else(|| std::env::temp_dir().join("berth-testkit"));
        let net = match crate::netlease::NetLease::take() {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let (data_root, exec_root) = match deep {
            None => (root.join("data"), root.join("exec")),
            Some(len) => match (deep_path(&root, "data", len), deep_path(&root, "exec", len)) {
                (Some(d), Some(e)) => (d, e),
                _ => {
                    let _ = fs::remove_dir_all(&root);
                    return Err(format!(
                        "temp root {} too long for {len}-byte roots",
                        root.display()
                    ));
                }
            },
        };
        let d = Daemon {
            net,
            sock: root.join("berth.sock"),
            data_root: own_data_root.unwrap_or(data_root),
            exec_root,
            log: root.join("daemon.log"),
            root,
            bin,
            cache,
            child: Mutex::new(None),
            loaded: Mutex::new(BTreeMap::new()),
            cleaned: AtomicBool::new(false),
            last_start: Mutex::new(Duration::ZERO),
            how,
            activated: Mutex::new(None),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        if d.sock.as_os_str().len() > 100 {
            return Err(format!(
                "socket path too long: {} (set BERTH_TEST_TMPDIR)",
                d.sock.display()
            ));
        }
        // On error `d` is dropped, which cleans up.
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let started = Instant::now();
        let mut cmd = Command::new(&self.bin);
        match &self.how {
            Startup::Flags => {
                cmd.arg("daemon").arg("-H").arg(self.host());
                self.settings_as_flags(&mut cmd);
                cmd.args(&self.extra_args);
            }
            Startup::ConfigFile(extra) => {
                let file = self.root.join("daemon.json");
                let mut m = serde_json::Map::new();
                let pool = self.net.pool();
                let (base, size) = pool
                    .strip_prefix("base=")
                    .and_then(|p| p.split_once(",size="))
                    .ok_or_else(|| format!("pool {pool}"))?;
                let size: u64 = size.parse().map_err(|_| format!("pool {pool}"))?;
                for (k, v) in [
                    ("hosts", serde_json::json!([self.host()])),
                    (
                        "data-root",
                        Value::from(self.data_root.display().to_string()),
                    ),
                    (
                        "exec-root",
                        Value::from(self.exec_root.display().to_string()),
                    ),
                    ("log-level", Value::from("debug")),
                    ("bridge", Value::from(self.net.bridge())),
                    ("bip", Value::from(self.net.bip())),
                    (
                        "default-address-pools",
                        serde_json::json!([{ "base": base, "size": size }]),
                    ),
                ] {
                    m.insert(k.to_string(), v);
                }
                m.extend(extra.clone());
                fs::write(&file, Value::Object(m).to_string())
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
                cmd.arg("daemon").arg("--config-file").arg(&file);
            }
            Startup::SocketActivated => {
                if !self.sock.exists() {
                    let l = std::os::unix::net::UnixListener::bind(&self.sock)
                        .map_err(|e| format!("bind {}: {e}", self.sock.display()))?;
                    *lock(&self.activated) = Some(l);
                }
                let fd = lock(&self.activated)
                    .as_ref()
                    .map(std::os::fd::AsRawFd::as_raw_fd)
                    .ok_or("the activated socket is gone")?;
                // sh sets LISTEN_PID to its own pid, which `exec` hands to berth.
                cmd = Command::new("/bin/sh");
                cmd.arg("-c")
                    .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
                    .arg(&self.bin)
                    .args(["daemon", "-H", "fd://"]);
                self.settings_as_flags(&mut cmd);
                // SAFETY: dup2 is async-signal-safe; fd is a listener this process owns.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::dup2(fd, 3) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        cmd.env("RUST_BACKTRACE", "1")
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        *lock(&self.child) = Some(child);
        let deadline = started + crate::slow(START_TIMEOUT);
        loop {
            if let Some(status) = lock(&self.child)
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "berth daemon exited with {status} before answering /_ping; its output:\n{}",
                    self.log_text()
                ));
            }
            if self.ping() {
                *lock(&self.last_start) = started.elapsed();
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.signal(libc::SIGKILL);
                let _ = lock(&self.child).as_mut().map(|c| c.wait());
                return Err(format!(
                    "berth daemon did not answer /_ping on {} within {:?}; its output:\n{}",
                    self.sock.display(),
                    crate::slow(START_TIMEOUT),
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn settings_as_flags(&self, cmd: &mut Command) {
        // An empty configuration file of our own: a host's /etc/berth/daemon.json must not
        // change (or, by repeating a flag, refuse) a test daemon.
        let empty = self.root.join("empty-daemon.json");
        let _ = fs::write(&empty, "{}");
        cmd.arg("--config-file")
            .arg(&empty)
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .args(["--log-level", "debug"])
            .args(["--bridge", &self.net.bridge()])
            .args(["--bip", &self.net.bip()])
            .args(["--default-address-pool", &self.net.pool()]);
    }

    // ---- where things are

    /// `unix://<tmp>/berth.sock`
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }
    pub fn socket(&self) -> &Path {
        &self.sock
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }
    pub fn bin(&self) -> &Path {
        &self.bin
    }
    /// The default bridge's interface (unique per test daemon).
    pub fn bridge(&self) -> String {
        self.net.bridge()
    }
    /// The default bridge's gateway address (the host, as containers see it).
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.net.gateway()
    }
    /// This daemon's nftables table.
    pub fn nft_table(&self) -> String {
        self.net.table()
    }
    /// Where compiled fixtures and image tarballs are cached (next to the binary).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }
    /// How long the last start took until `/_ping` answered.
    pub fn start_duration(&self) -> Duration {
        *lock(&self.last_start)
    }
    /// The daemon's stdout+stderr so far (all its runs).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        const MAX: usize = 20_000;
        if s.len() > MAX {
            let cut = s.len() - MAX;
            let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s = format!("[...]{}", &s[cut..]);
        }
        s
    }
    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        let mut g = lock(&self.child);
        let c = g.as_mut()?;
        match c.try_wait() {
            Ok(None) => Some(c.id()),
            _ => None,
        }
    }
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    // ---- the API

    /// Whether `GET /_ping` answers 200.
    pub fn ping(&self) -> bool {
        http::request(
            &self.sock,
            "GET",
            "/_ping",
            &[],
            None,
            Duration::from_secs(2),
        )
        .map(|r| r.status == 200)
        .unwrap_or(false)
    }

    /// One raw API request; panics when the socket does not answer.
    #[track_caller]
    pub fn api(&self, method: &str, path: &str) -> Response {
        match http::request(&self.sock, method, path, &[], None, Duration::from_secs(60)) {
            Ok(r) => r,
            Err(e) => panic!("{method} {path}: {e}\ndaemon log:\n{}", self.log_text()),
        }
    }

    /// One raw API request with headers and a body.
    pub fn api_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, Error> {
        http::request(
            &self.sock,
            method,
            path,
            headers,
            body,
            Duration::from_secs(120),
        )
    }

    // ---- the CLI

    fn berth_cmd(&self, args: &[&str], with_host: bool) -> Command {
        let mut c = Command::new(&self.bin);
        if with_host {
            c.arg("-H").arg(self.host());
        }
        c.args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST")
            .env("NO_COLOR", "1");
        c
    }

    /// `berth -H unix://<sock> <args>`, 30 s deadline.
    pub fn cli(&self, args: &[&str]) -> Out {
        run_with_timeout(self.berth_cmd(args, true), None, crate::slow(CLI_TIMEOUT))
    }
    /// Same with a deadline of your own.
    pub fn cli_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        run_with_timeout(self.berth_cmd(args, true), None, timeout)
    }
    /// Same with bytes on stdin.
    pub fn cli_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_with_timeout(
            self.berth_cmd(args, true),
            Some(stdin.to_vec()),
            crate::slow(CLI_TIMEOUT),
        )
    }
    /// `berth <args>` without `-H`, with extra environment variables (e.g. `BERTH_HOST`).
    pub fn cli_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Out {
        let mut c = self.berth_cmd(args, false);
        c.envs(envs.iter().copied());
        run_with_timeout(c, None, crate::slow(CLI_TIMEOUT))
    }
    /// Starts `berth -H … <args>` in the background with piped stdout/stderr (e.g. `logs -f`).
    /// The caller must kill and wait it.
    pub fn spawn_cli(&self, args: &[&str]) -> std::io::Result<Child> {
        let mut c = self.berth_cmd(args, true);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        c.spawn()
    }

    /// The docker CLI with `DOCKER_HOST` at this daemon, or `None` when `docker` is not on PATH.
    pub fn docker(&self, args: &[&str]) -> Option<Out> {
        self.docker_in(args, None)
    }
    pub fn docker_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Option<Out> {
        let docker = crate::which("docker")?;
        let cfg = self.root.join("docker-config");
        let _ = fs::create_dir_all(&cfg);
        let mut c = Command::new(docker);
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &cfg)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        Some(run_with_timeout(
            c,
            stdin.map(|s| s.to_vec()),
            crate::slow(CLI_TIMEOUT),
        ))
    }

    // ---- images

    /// Writes `img` as a `docker save` tarball in the cache (once) and returns its path.
    pub fn image_tar(&self, img: &Image, format: SaveFormat) -> Result<PathBuf, Error> {
        let tags = img.repo_tags.join(",");
        let key = image::sha256_hex(format!("{}|{tags}|{format:?}", img.id()).as_bytes());
        let name = format!("image-{}.tar", &key[..24]);
        image::write_cached(&self.cache, &name, || Ok(img.save_tar(format)))
    }

    /// `berth load -i <tarball of img>`.
    pub fn load_image(&self, img: &Image, format: SaveFormat) -> Out {
        match self.image_tar(img, format) {
            Ok(p) => self.cli(&["load", "-i", &p.to_string_lossy()]),
            Err(e) => Out {
                cmd: "image_tar".into(),
                code: -1,
                stderr: e.to_string(),
                ..Default::default()
            },
        }
    }

    fn load_once(&self, key: &'static str, make: impl FnOnce() -> Result<Image, Error>) -> String {
        let mut g = lock(&self.loaded);
        let r = g
            .entry(key)
            .or_insert_with(|| {
                let img = make().map_err(|e| e.to_string())?;
                let out = self.load_image(&img, SaveFormat::Oci);
                if out.success() {
                    Ok(img.id())
                } else {
                    Err(format!("loading {key} failed: {out}"))
                }
            })
            .clone();
        drop(g);
        match r {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Loads `busybox:latest` (once per daemon) and returns its id.
    #[track_caller]
    pub fn load_busybox(&self) -> String {
        self.load_once("busybox", || busybox().cloned())
    }
    /// Loads `hello-world:latest` (once per daemon; compiles the hello program once) and returns its id.
    #[track_caller]
    pub fn load_hello(&self) -> String {
        let cache = self.cache.clone();
        self.load_once("hello-world", move || image::hello_image(&cache))
    }
    /// Loads `layered:latest` (once per daemon) and returns its id.
    #[track_caller]
    pub fn load_layered(&self) -> String {
        self.load_once("layered", || layered().cloned())
    }

    // ---- containers

    /// `inspect <name>` as JSON (the object, not the array); `None` when it fails.
    pub fn inspect(&self, name: &str) -> Option<Value> {
        let o = self.cli(&["inspect", "--type", "container", name]);
        if !o.success() {
            return None;
        }
        let v: Value = serde_json::from_str(o.out()).ok()?;
        v.get(0).cloned()
    }

    /// `inspect --format <fmt> <name>`, trimmed; empty on failure.
    pub fn fmt(&self, name: &str, fmt: &str) -> String {
        let o = self.cli(&["inspect", "--format", fmt, name]);
        if o.success() {
            o.out().to_string()
        } else {
            String::new()
        }
    }

    /// Polls `.State.Status` until it is `status` (deadline `timeout`).
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.fmt(name, "{{.State.Status}}") == status)
    }

    /// `rm -f` of each, ignoring failures.
    pub fn rm_f(&self, names: &[&str]) {
        for n in names {
            let _ = self.cli(&["rm", "-f", n]);
        }
    }

    // ---- daemon life

    fn signal(&self, sig: libc::c_int) -> bool {
        let Some(pid) = self.pid() else { return false };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
    }

    fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut g = lock(&self.child);
            let c = g.as_mut()?;
            match c.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => {}
                Err(_) => return None,
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits up to `timeout` for the daemon to exit; its exit status, or `None`
    /// when it did not exit in time (it is then SIGKILLed) or was not running.
    pub fn stop(&self, timeout: Duration) -> Option<ExitStatus> {
        if !self.signal(libc::SIGTERM) {
            return None;
        }
        let s = self.wait_exit(timeout);
        if s.is_none() {
            self.kill9();
        }
        s
    }

    /// `kill -9` the daemon (its shims and containers are left alone).
    pub fn kill9(&self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// Stops the daemon if it runs (SIGTERM), then starts it again on the same roots and socket.
    #[track_caller]
    pub fn restart(&self) {
        if self.is_running() {
            self.stop(Duration::from_secs(15));
        }
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Stops everything and removes the temp dir; idempotent.
    pub fn cleanup(&self) {
        if self.cleaned.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.is_running() && self.stop(Duration::from_secs(5)).is_none() {
            self.kill9();
        }
        cleanup::kill_processes_under(&self.root, &self.exec_root);
        cleanup::unmount_all_under(&self.root);
        self.net.release(Some(&self.data_root));
        cleanup::purge(&self.root, &self.exec_root);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cleanup();
    }
}
