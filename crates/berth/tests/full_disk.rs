//! A full data root (issue 15): the daemon runs with `--data-root` on a real 64 MB ext4 image,
//! loop-mounted (`mkfs -m 0`, ext4's reserved clusters set to 0, so it can really be filled),
//! which the test fills to ENOSPC — asserted by a write that fails, not by free bytes. `stop`, `kill` and `rm -f` of running
//! containers succeed; a `rename` fails cleanly (the old name stays, the new one is not live);
//! the records on disk agree with the API and with the processes' real liveness, before and
//! after a daemon restart on the still-full disk; the daemon reports the condition (`/info`
//! Warnings, a `daemon` event); freeing the space makes everything writable again.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small ext4 filesystem in an image file, loop-mounted at a short temp path. Dropping it
/// unmounts everything under the mount point, detaches the loop device and removes the image,
/// also when the test failed.
struct LoopFs {
    dir: PathBuf,
    mnt: PathBuf,
    img: PathBuf,
    dev: Option<String>,
}

impl LoopFs {
    fn make(mb: u64) -> Result<LoopFs, String> {
        let dir = tempfile::Builder::new()
            .prefix("x.")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        let mut fs = LoopFs {
            mnt: dir.join("d"),
            img: dir.join("img"),
            dir,
            dev: None,
        };
        std::fs::create_dir(&fs.mnt).map_err(|e| format!("mkdir: {e}"))?;
        let sh = |cmd: &mut Command| -> Result<String, String> {
            let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        sh(Command::new("truncate")
            .arg("-s")
            .arg(format!("{mb}M"))
            .arg(&fs.img))?;
        // `-m 0`: no blocks kept for root, so filling as root really fills it.
        sh(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&fs.img))?;
        let dev = sh(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&fs.img))?;
        fs.dev = Some(dev.clone());
        sh(Command::new("mount").arg(&dev).arg(&fs.mnt))?;
        // Nor the clusters ext4 keeps back from everyone (min(2%, 4096)), which statvfs counts
        // as free though no write may have them.
        let base = dev.rsplit('/').next().unwrap_or(&dev);
        let resv = format!("/sys/fs/ext4/{base}/reserved_clusters");
        if Path::new(&resv).exists() {
            std::fs::write(&resv, "0").map_err(|e| format!("{resv}: {e}"))?;
        }
        Ok(fs)
    }

    /// Writes zeros into `name` on the filesystem until it is full (dd ends with ENOSPC), then
    /// into `name.tailN` by blocks, for the blocks the big writes' reservations gave back,
    /// until a round gets none.
    fn fill(&self, name: &str) {
        let dd = |file: String, bs: &str| {
            let p = self.mnt.join(file);
            let _ = Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", p.display()))
                .arg(format!("bs={bs}"))
                .arg("status=none")
                .status();
            let _ = Command::new("sync").arg("-f").arg(&self.mnt).status();
            std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
        };
        dd(name.to_string(), "1M");
        for i in 0..8 {
            if dd(format!("{name}.tail{i}"), "4k") == 0 {
                break;
            }
        }
    }

    /// Whether the filesystem is full: a small new file cannot be written (ENOSPC).
    fn is_full(&self) -> Result<bool, String> {
        use std::io::Write;
        let p = self.mnt.join("full-check");
        let r = std::fs::File::create(&p).and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&p);
        match r {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Ok(true),
            Err(e) => Err(format!("writing {}: {e}", p.display())),
        }
    }

    fn remove_fill(&self, name: &str) {
        let _ = std::fs::remove_file(self.mnt.join(name));
        for i in 0..8 {
            let _ = std::fs::remove_file(self.mnt.join(format!("{name}.tail{i}")));
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        berth_testkit::cleanup::unmount_all_under(&self.mnt);
        if let Some(dev) = &self.dev {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
        let _ = std::fs::remove_file(&self.img);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pid_alive(pid: i64) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].trim_start().chars().next())
                    != Some('Z')
            })
            .unwrap_or(false)
}

/// Every container the API lists: its record on disk says what the API says, and the API's
/// "running" is the process's real liveness. Returns (name, status) pairs.
#[track_caller]
fn records_match(d: &Daemon, data_root: &Path) -> Vec<(String, String)> {
    let r = d.api("GET", "/containers/json?all=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let list: Value = serde_json::from_str(&r.text()).expect("json");
    let mut seen = Vec::new();
    for c in list.as_array().expect("array") {
        let id = c["Id"].as_str().expect("id");
        let ins = d.inspect(id).expect("inspect");
        let st = &ins["State"];
        let status = st["Status"].as_str().expect("status").to_string();
        let pid = st["Pid"].as_i64().unwrap_or(0);
        let running = st["Running"].as_bool().unwrap_or(false);
        let file = data_root.join("containers").join(id).join("container.json");
        let disk: Value =
            serde_json::from_slice(&std::fs::read(&file).expect("record on disk")).expect("json");
        let name = ins["Name"].as_str().unwrap_or("").trim_start_matches('/');
        assert_eq!(
            disk["state"]["status"].as_str(),
            Some(status.as_str()),
            "{name}: the record on disk says {}, the API {status}",
            disk["state"]
        );
        assert_eq!(disk["name"].as_str(), Some(name), "{name}: name on disk");
        assert_eq!(
            disk["state"]["pid"].as_i64(),
            Some(pid),
            "{name}: pid on disk"
        );
        if running {
            assert!(
                pid_alive(pid),
                "{name}: shown running, process {pid} is dead"
            );
        } else {
            assert_eq!(pid, 0, "{name}: not running but a pid");
        }
        seen.push((name.to_string(), status));
    }
    seen.sort();
    seen
}

fn daemon_events(d: &Daemon) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let r = d.api(
        "GET",
        &format!("/events?since=0&until={now}&filters=%7B%22type%22%3A%5B%22daemon%22%5D%7D"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["Action"].as_str().map(str::to_string))
        .collect()
}

fn info_warnings(d: &Daemon) -> Vec<String> {
    let r = d.api("GET", "/info");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.text()).expect("json");
    v["Warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn out_of_space(d: &Daemon) -> bool {
    info_warnings(d).iter().any(|w| w.contains("out of space"))
}

#[test]
fn stop_kill_and_rm_work_on_a_full_data_root_and_state_stays_true() {
    let fs = match LoopFs::make(64) {
        Ok(fs) => fs,
        Err(e) => {
            println!("SKIP full_disk: no loop-mounted filesystem here ({e})");
            return;
        }
    };
    let d = Daemon::try_start_on(BIN, &fs.mnt, &[]).expect("daemon");
    d.load_busybox();
    assert_eq!(fs.is_full(), Ok(false), "room at first");
    let loop_cmd = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    for n in ["a", "b", "c", "p", "r"] {
        run_d(&d, &["--name", n, "busybox", "sh", "-c", loop_cmd]);
    }
    let pid = |n: &str| -> i64 { fmt(&d, n, "{{.State.Pid}}").parse().expect("pid") };
    let (pa, pb, pc, pp, pr) = (pid("a"), pid("b"), pid("c"), pid("p"), pid("r"));
    assert!(!out_of_space(&d), "{:?}", info_warnings(&d));

    fs.fill("filler");
    assert_eq!(fs.is_full(), Ok(true), "the filesystem is full");

    // A change asked for fails, and changes nothing: the old name stays, the new is not live.
    let o = d.cli(&["rename", "r", "r2"]);
    assert!(!o.success(), "rename on a full disk: {o}");
    assert!(o.stderr.contains("No space left"), "a clear error: {o}");
    assert_eq!(fmt(&d, "r", "{{.Name}}"), "/r");
    assert!(!d.cli(&["inspect", "r2"]).success(), "r2 is not live");

    // The write that met ENOSPC made the daemon report the full disk.
    assert!(
        out_of_space(&d),
        "no warning in /info on a full data root: {:?}",
        info_warnings(&d)
    );
    assert!(
        wait_until(Duration::from_secs(5), || daemon_events(&d)
            .iter()
            .any(|a| a == "disk-full")),
        "no disk-full event: {:?}",
        daemon_events(&d)
    );

    // Signals are delivered.
    d.cli(&["stop", "-t", "5", "a"]).ok();
    d.cli(&["kill", "b"]).ok();
    let cid = fmt(&d, "c", "{{.Id}}");
    d.cli(&["rm", "-f", "c"]).ok();
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pa)
            && !pid_alive(pb)
            && !pid_alive(pc)),
        "processes still alive"
    );
    // By its full id: a bare "c" could be another container's id prefix.
    assert!(!d.cli(&["inspect", &cid]).success(), "c is gone");
    assert_eq!(fmt(&d, "a", "{{.State.Status}}"), "exited");
    assert!(wait_until(Duration::from_secs(5), || fmt(
        &d,
        "b",
        "{{.State.Status}}"
    ) == "exited"));
    let before = records_match(&d, &fs.mnt);
    assert_eq!(
        before
            .iter()
            .map(|(n, s)| format!("{n}={s}"))
            .collect::<Vec<_>>(),
        ["a=exited", "b=exited", "p=running", "r=running"]
    );

    // Whatever the reserve gave back is taken too, and the daemon restarts on the full disk.
    fs.fill("filler2");
    assert_eq!(fs.is_full(), Ok(true), "full again");
    d.restart();
    // Whatever the restart found free (the startup probe may have had its block) is taken too.
    fs.fill("filler3");
    assert_eq!(fs.is_full(), Ok(true), "full after the restart");
    let after = records_match(&d, &fs.mnt);
    assert_eq!(after, before, "the same state after a restart");
    assert_eq!(pid("p"), pp);
    assert_eq!(pid("r"), pr);
    // And a signal still goes through after the restart; its record write meets ENOSPC,
    // which the daemon reports.
    d.cli(&["kill", "p"]).ok();
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(pp)));
    assert!(wait_until(Duration::from_secs(5), || fmt(
        &d,
        "p",
        "{{.State.Status}}"
    ) == "exited"));
    assert!(
        wait_until(Duration::from_secs(5), || out_of_space(&d)),
        "no warning after the restart: {:?}",
        info_warnings(&d)
    );

    // Space again: the warning goes, the records catch up, and changes work.
    fs.remove_fill("filler");
    fs.remove_fill("filler2");
    fs.remove_fill("filler3");
    assert_eq!(fs.is_full(), Ok(false), "space again");
    assert!(
        wait_until(Duration::from_secs(15), || !out_of_space(&d)),
        "the warning stays: {:?}",
        info_warnings(&d)
    );
    assert!(
        wait_until(Duration::from_secs(5), || daemon_events(&d)
            .iter()
            .any(|a| a == "disk-space-available")),
        "no disk-space-available event: {:?}",
        daemon_events(&d)
    );
    records_match(&d, &fs.mnt);
    d.cli(&["rename", "r", "r2"]).ok();
    assert_eq!(fmt(&d, "r2", "{{.Name}}"), "/r2");
    d.cli(&["start", "a"]).ok();
    expect_status(&d, "a", "running");
    run_d(&d, &["--name", "fresh", "busybox", "sh", "-c", loop_cmd]);
    let now = records_match(&d, &fs.mnt);
    assert_eq!(
        now.iter()
            .map(|(n, s)| format!("{n}={s}"))
            .collect::<Vec<_>>(),
        [
            "a=running",
            "b=exited",
            "fresh=running",
            "p=exited",
            "r2=running"
        ]
    );
    for n in ["a", "b", "fresh", "p", "r2"] {
        d.cli(&["rm", "-f", n]).ok();
    }
    drop(d);
}
