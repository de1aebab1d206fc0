use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command printed, and how it ended.
#[derive(Clone, Debug, Default)]
pub struct Out {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code; `-1` when killed by a signal or not started, `-2` on timeout.
    pub code: i32,
    pub stdout_bytes: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self}");
        self
    }

    /// Panics with the whole output if the command exited 0.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(
            !self.success() && !self.timed_out,
            "command should have failed: {self}"
        );
        self
    }

    /// Trimmed stdout.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }

    /// Non-empty stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// stdout parsed as JSON (panics with the output when it is not).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(self.stdout.trim()) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not JSON ({e}): {self}"),
        }
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exit {}{} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` with `stdin` as its input, kills it (its whole process group) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Out {
    let desc = format!("{cmd:?}");
    let start = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Out {
                cmd: desc,
                code: -1,
                stderr: format!("cannot start: {e}"),
                ..Default::default()
            };
        }
    };
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })),
        _ => None,
    };
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let ro = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = so.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let re = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = se.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let pid = child.id() as libc::pid_t;
                // SAFETY: plain kill(2) on the process group we created for the child.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    // A grandchild could keep the pipes open; don't wait on it forever.
    let stdout_bytes = ro.join().unwrap_or_default();
    let stderr = re.join().unwrap_or_default();
    let code = if timed_out {
        -2
    } else {
        status
            .and_then(|s| s.code().or_else(|| s.signal().map(|_| -1)))
            .unwrap_or(-1)
    };
    Out {
        cmd: desc,
        code,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
        elapsed: start.elapsed(),
    }
}
