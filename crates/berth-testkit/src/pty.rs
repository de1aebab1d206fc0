//! A command on a pseudo-terminal of its own (`run -it`, `exec -it`, `attach` as typed in a
//! terminal): it is the command's controlling terminal, so raw mode, window size and ctrl keys
//! behave as for a user.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`Pty::expect`] and [`Pty::wait`] wait.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running command on a pseudo-terminal.
pub struct Pty {
    /// The master side, non-blocking.
    pub master: File,
    pub child: Child,
    /// Output read so far and not yet matched by [`Pty::expect`].
    pub seen: String,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `cmd` in a new session whose controlling terminal is a new pty of `rows`×`cols`
    /// (stdin, stdout and stderr are its slave side; `TERM=xterm`). Panics when it cannot.
    #[track_caller]
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        let (mut m, mut s) = (0, 0);
        let ws = winsize(rows, cols);
        // SAFETY: out-pointers to two ints and a valid winsize.
        let r =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(r, 0, "openpty");
        // SAFETY: openpty gave us both descriptors.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let slave = File::from(slave);
        cmd.env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn a command on a pty");
        // The slave ends held by `cmd` must go, or the master never sees EOF.
        drop(cmd);
        let master = File::from(master);
        // SAFETY: plain fcntl on our descriptor.
        unsafe {
            let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Pty {
            master,
            child,
            seen: String::new(),
        }
    }

    /// Types `s`.
    pub fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).expect("write to pty");
    }

    /// Reads until `needle` shows up in what arrived after the last call; panics at the deadline.
    #[track_caller]
    pub fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = self.seen.find(needle) {
                self.seen.drain(..i + needle.len());
                return;
            }
            match self.master.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                // EIO: the slave side is closed.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; got {:?}",
                self.seen
            );
        }
    }

    /// Sets the terminal's window size (the command gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    /// Waits for the command's exit code (draining its output meanwhile); `None` when it was
    /// killed, or did not exit before the deadline (it is killed then).
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 4096];
        loop {
            // Keep draining so the command never blocks on a full pty.
            if let Ok(n) = self.master.read(&mut buf) {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
