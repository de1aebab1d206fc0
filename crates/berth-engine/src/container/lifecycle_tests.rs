//! Exit handling, restart policies and recovery, against the fake runtime: no root, no
//! processes. The container records are made by hand (no image, no rootfs), so a restart the
//! policy asks for is seen as an attempt: `restart_count` goes up and the start, without a
//! rootfs to mount, records its failure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_api::types::{ContainerConfig, HostConfig, RestartPolicy};

use crate::container::{ContainerRecord, Entry, StateRecord, Status};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::ExitReply;
use crate::{Engine, EngineConfig, WaitCondition};

struct Env {
    _tmp: tempfile::TempDir,
    engine: Engine,
    fake: Arc<FakeRuntime>,
}

async fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = EngineConfig {
        data_root: tmp.path().join("data"),
        exec_root: tmp.path().join("exec"),
        berth_exe: PathBuf::from("/nonexistent/berth"),
        registry: Default::default(),
        network: crate::network::NetConfig {
            bridge: "none".into(),
            ..Default::default()
        },
        log_opts: Default::default(),
        experimental: false,
        cgroup_driver: Default::default(),
        default_cgroupns: crate::CgroupnsMode::Host,
        cni: Default::default(),
    };
    let fake = Arc::new(FakeRuntime::default());
    let engine = Engine::open_with(cfg, fake.clone()).await.expect("open");
    Env {
        _tmp: tmp,
        engine,
        fake,
    }
}

/// A container record as a running (or other) container has it, saved and indexed.
fn record(id: &str, status: Status, policy: &str, max: i64) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        name: format!("c{}", &id[..4]),
        created: crate::util::now_rfc3339(),
        path: "sh".into(),
        args: vec![],
        config: ContainerConfig::default(),
        host_config: HostConfig {
            restart_policy: RestartPolicy {
                name: policy.into(),
                maximum_retry_count: max,
            },
            ..Default::default()
        },
        image_id: "sha256:0".into(),
        state: StateRecord {
            status,
            pid: if status.is_running() { 42 } else { 0 },
            started_at: crate::util::now_rfc3339(),
            ..Default::default()
        },
        restart_count: 0,
        manually_stopped: false,
        log_path: String::new(),
        hostname_path: String::new(),
        hosts_path: String::new(),
        resolv_conf_path: String::new(),
        mount_points: vec![],
        build_step: false,
        pod: None,
    }
}

fn add(e: &Engine, rec: ContainerRecord) -> Arc<Entry> {
    let dir = e.container_dir(&rec.id);
    std::fs::create_dir_all(&dir).expect("dir");
    rec.save(&dir).expect("save");
    let c = Arc::new(e.new_entry(rec.clone(), dir));
    let mut idx = e.write_index();
    idx.names.insert(rec.name.clone(), rec.id.clone());
    idx.by_id.insert(rec.id.clone(), c.clone());
    c
}

fn exit(code: i64) -> Option<ExitReply> {
    Some(ExitReply {
        exit_code: code,
        finished_at: "2026-01-01T00:00:00Z".into(),
        oom_killed: false,
    })
}

/// Polls `f` until it holds (a restart happens after Docker's 100 ms backoff).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

fn id(n: u8) -> String {
    format!("{n:x}").repeat(64)
}

#[tokio::test]
async fn the_monitor_records_an_exit_and_tells_waiters() {
    let t = env().await;
    let c = add(&t.engine, record(&id(1), Status::Running, "", 0));
    let waiter = t
        .engine
        .wait(&c.id, WaitCondition::NotRunning)
        .await
        .expect("wait");
    t.engine.spawn_monitor(c.clone());
    let dir = t.engine.runtime_dir(&c.id);
    eventually("the monitor waits", || {
        t.fake.calls().contains(&format!("wait {}", dir.display()))
    })
    .await;
    t.fake.exit(&dir, exit(3));
    assert_eq!(waiter.await, 3);
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Exited);
    assert_eq!((rec.state.exit_code, rec.state.pid), (3, 0));
    assert_eq!(rec.state.finished_at, "2026-01-01T00:00:00Z");
    // Persisted (not an --rm container), and the runtime's leftovers cleaned.
    let disk = ContainerRecord::load(&c.dir).expect("load");
    assert_eq!(disk.state.status, Status::Exited);
    eventually("the runtime's leftovers are cleaned", || {
        t.fake
            .calls()
            .contains(&format!("cleanup {}", dir.display()))
    })
    .await;
}

#[tokio::test]
async fn a_shim_that_vanished_without_a_word_is_exit_255() {
    let t = env().await;
    let c = add(&t.engine, record(&id(2), Status::Running, "", 0));
    t.engine.handle_exit(c.clone(), None).await;
    assert_eq!(c.snapshot().state.exit_code, 255);
    assert_eq!(c.snapshot().state.status, Status::Exited);
}

#[tokio::test]
async fn on_failure_restarts_a_failed_exit_up_to_its_maximum() {
    let t = env().await;
    let c = add(&t.engine, record(&id(3), Status::Running, "on-failure", 2));
    // Success: no restart.
    t.engine.handle_exit(c.clone(), exit(0)).await;
    assert_eq!(c.snapshot().state.status, Status::Exited);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.snapshot().restart_count, 0);
    // Failure: Restarting at once, then a start after the backoff.
    c.update(|r| r.state.status = Status::Running)
        .expect("update");
    t.engine.handle_exit(c.clone(), exit(1)).await;
    assert_eq!(c.snapshot().state.status, Status::Restarting);
    eventually("the restart is attempted", || {
        c.snapshot().restart_count == 1
    })
    .await;
    eventually("the failed start is recorded", || {
        !c.snapshot().state.error.is_empty()
    })
    .await;
    // At the maximum (2 of 2): no more.
    c.update(|r| {
        r.restart_count = 2;
        r.state.status = Status::Running;
    })
    .expect("update");
    t.engine.handle_exit(c.clone(), exit(1)).await;
    assert_eq!(c.snapshot().state.status, Status::Exited);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.snapshot().restart_count, 2);
}

#[tokio::test]
async fn always_restarts_any_exit_but_not_a_manual_stop() {
    let t = env().await;
    let c = add(&t.engine, record(&id(4), Status::Running, "always", 0));
    t.engine.handle_exit(c.clone(), exit(0)).await;
    assert_eq!(c.snapshot().state.status, Status::Restarting);
    eventually("the restart is attempted", || {
        c.snapshot().restart_count == 1
    })
    .await;
    let d = add(&t.engine, record(&id(5), Status::Running, "always", 0));
    d.update(|r| r.manually_stopped = true).expect("update");
    t.engine.handle_exit(d.clone(), exit(0)).await;
    assert_eq!(d.snapshot().state.status, Status::Exited);
    // A stop during the backoff cancels the restart.
    let e = add(
        &t.engine,
        record(&id(6), Status::Running, "unless-stopped", 0),
    );
    t.engine.handle_exit(e.clone(), exit(2)).await;
    assert_eq!(e.snapshot().state.status, Status::Restarting);
    t.engine.stop(&e.id, None, None).await.expect("stop");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.snapshot().restart_count, 0);
    assert_eq!(e.snapshot().state.status, Status::Exited);
    assert!(e.snapshot().manually_stopped);
}

#[test]
fn restart_policy_decisions() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = env().await;
        let d = |policy: &str, max: i64, count: i64, stopped: bool, code: i64| {
            let mut r = record(&id(7), Status::Exited, policy, max);
            r.restart_count = count;
            r.manually_stopped = stopped;
            t.engine.should_restart(&r, code)
        };
        assert!(!d("", 0, 0, false, 1));
        assert!(!d("no", 0, 0, false, 1));
        assert!(d("always", 0, 0, false, 0));
        assert!(d("unless-stopped", 0, 0, false, 0));
        assert!(!d("always", 0, 0, true, 0));
        assert!(d("on-failure", 0, 99, false, 1), "0: no maximum");
        assert!(!d("on-failure", 0, 0, false, 0));
        assert!(d("on-failure", 3, 2, false, 1));
        assert!(!d("on-failure", 3, 3, false, 1));
    });
}

#[tokio::test]
async fn recovery_readopts_a_live_shim() {
    let t = env().await;
    let c = add(&t.engine, record(&id(8), Status::Running, "", 0));
    let dir = t.engine.runtime_dir(&c.id);
    t.fake.alive.lock().expect("lock").push(dir.clone());
    t.engine.recover(c.clone()).await;
    assert_eq!(c.snapshot().state.status, Status::Running);
    eventually("a monitor waits on the shim", || {
        t.fake.calls().contains(&format!("wait {}", dir.display()))
    })
    .await;
    t.fake.exit(&dir, exit(0));
    eventually("the exit is recorded", || {
        c.snapshot().state.status == Status::Exited
    })
    .await;
}

#[tokio::test]
async fn recovery_records_what_happened_while_no_daemon_watched() {
    let t = env().await;
    // The shim wrote its exit.json and went.
    let c = add(&t.engine, record(&id(9), Status::Running, "", 0));
    let dir = t.engine.runtime_dir(&c.id);
    t.fake
        .exit_files
        .lock()
        .expect("lock")
        .insert(dir.clone(), exit(7).expect("exit"));
    t.engine.recover(c.clone()).await;
    assert_eq!(c.snapshot().state.status, Status::Exited);
    assert_eq!(c.snapshot().state.exit_code, 7);
    // Nothing left at all: 255, as Docker reports a container whose shim vanished.
    let d = add(&t.engine, record(&id(10), Status::Paused, "", 0));
    t.engine.recover(d.clone()).await;
    assert_eq!(d.snapshot().state.exit_code, 255);
    // A restart the policy had scheduled when the daemon died still happens, and counts.
    let e = add(
        &t.engine,
        record(&id(11), Status::Restarting, "on-failure", 0),
    );
    t.engine.recover(e.clone()).await;
    eventually("the scheduled restart is attempted", || {
        e.snapshot().restart_count == 1
    })
    .await;
    // Stopped containers stay stopped, unless `always`.
    let f = add(&t.engine, record(&id(12), Status::Exited, "on-failure", 0));
    t.engine.recover(f.clone()).await;
    let g = add(&t.engine, record(&id(13), Status::Exited, "always", 0));
    g.update(|r| r.manually_stopped = true).expect("update");
    t.engine.recover(g.clone()).await;
    eventually("`always` comes back at daemon start", || {
        !g.snapshot().state.error.is_empty()
    })
    .await;
    assert!(f.snapshot().state.error.is_empty(), "not started");
}

/// A record writer that fails with ENOSPC while `full` is set, as a full data root does;
/// it notes whether each write was asked to be durable.
#[derive(Default)]
struct FullDisk {
    full: std::sync::atomic::AtomicBool,
    durable: std::sync::Mutex<Vec<bool>>,
}

impl FullDisk {
    fn set(&self, full: bool) {
        self.full.store(full, std::sync::atomic::Ordering::SeqCst);
    }
}

impl crate::disk::RecordWriter for FullDisk {
    fn write(
        &self,
        path: &std::path::Path,
        data: &[u8],
        _critical: bool,
        durable: bool,
    ) -> std::io::Result<()> {
        self.durable.lock().expect("lock").push(durable);
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        crate::util::write_atomic(path, data)
    }
}

/// `add`, with the record written through `w`.
fn add_with(e: &Engine, rec: ContainerRecord, w: Arc<FullDisk>) -> Arc<Entry> {
    let dir = e.container_dir(&rec.id);
    std::fs::create_dir_all(&dir).expect("dir");
    rec.save(&dir).expect("save");
    let c = Arc::new(Entry::new(rec.clone(), dir, w));
    let mut idx = e.write_index();
    idx.names.insert(rec.name.clone(), rec.id.clone());
    idx.by_id.insert(rec.id.clone(), c.clone());
    c
}

fn on_disk(c: &Entry) -> ContainerRecord {
    ContainerRecord::load(&c.dir).expect("load")
}

#[tokio::test]
async fn a_change_that_cannot_be_written_changes_nothing() {
    let t = env().await;
    let disk = Arc::new(FullDisk::default());
    let c = add_with(
        &t.engine,
        record(&id(14), Status::Exited, "", 0),
        disk.clone(),
    );
    let mut rx = c.signal.subscribe();
    rx.borrow_and_update();
    disk.set(true);
    let err = c
        .update(|r| {
            r.state.status = Status::Running;
            r.config.hostname = "changed".into();
        })
        .expect_err("the write fails");
    assert_eq!(err.raw_os_error(), None, "wrapped with context: {err}");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(c.snapshot().state.status, Status::Exited);
    assert_eq!(c.snapshot().config.hostname, "");
    assert!(!rx.has_changed().expect("watch"), "nobody was told of it");
    assert_eq!(on_disk(&c).state.status, Status::Exited);
    assert!(!c.is_dirty());
    // Space again: the same change goes through, memory and disk alike.
    disk.set(false);
    c.update(|r| r.config.hostname = "changed".into())
        .expect("update");
    assert_eq!(on_disk(&c).config.hostname, "changed");
    assert_eq!(c.snapshot().config.hostname, "changed");
}

#[tokio::test]
async fn a_rename_that_cannot_be_written_keeps_the_old_name() {
    let t = env().await;
    let disk = Arc::new(FullDisk::default());
    let c = add_with(
        &t.engine,
        record(&id(15), Status::Running, "", 0),
        disk.clone(),
    );
    let old = c.snapshot().name;
    disk.set(true);
    let err = t
        .engine
        .rename(&old, "newname")
        .await
        .expect_err("the write fails");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(
        t.engine.lookup("newname").is_err(),
        "the new name is not live"
    );
    assert_eq!(t.engine.lookup(&old).expect("old name").id, c.id);
    assert_eq!(c.snapshot().name, old);
    assert_eq!(on_disk(&c).name, old);
    disk.set(false);
    t.engine.rename(&old, "newname").await.expect("rename");
    assert!(t.engine.lookup(&old).is_err(), "the old name is free");
    assert_eq!(on_disk(&c).name, "newname");
}

#[tokio::test]
async fn kill_and_exit_on_a_full_disk_are_kept_and_written_later() {
    let t = env().await;
    let disk = Arc::new(FullDisk::default());
    let c = add_with(
        &t.engine,
        record(&id(16), Status::Running, "always", 0),
        disk.clone(),
    );
    disk.set(true);
    // The signal is delivered and the stop remembered, though the disk refuses the record.
    t.engine.kill(&c.id, Some("TERM")).await.expect("kill");
    let dir = t.engine.runtime_dir(&c.id);
    assert!(t
        .fake
        .calls()
        .contains(&format!("kill {} 15", dir.display())));
    assert!(c.snapshot().manually_stopped);
    assert!(c.is_dirty());
    assert!(!on_disk(&c).manually_stopped);
    // The exit is published (never a dead process shown running) and the policy respects
    // the stop that only memory holds.
    t.engine.handle_exit(c.clone(), exit(143)).await;
    assert_eq!(c.snapshot().state.status, Status::Exited);
    assert_eq!(on_disk(&c).state.status, Status::Running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.snapshot().restart_count, 0, "not restarted");
    // Space again: the watcher's flush writes what memory held.
    disk.set(false);
    assert!(t.engine.flush_records());
    let d = on_disk(&c);
    assert_eq!(d.state.status, Status::Exited);
    assert_eq!(d.state.exit_code, 143);
    assert!(d.manually_stopped);
    assert!(!c.is_dirty());
}

#[tokio::test]
async fn a_build_steps_changes_are_not_fsynced_a_users_are() {
    let t = env().await;
    let disk = Arc::new(FullDisk::default());
    let user = add_with(
        &t.engine,
        record(&id(7), Status::Created, "", 0),
        disk.clone(),
    );
    let mut step_rec = record(&id(8), Status::Created, "", 0);
    step_rec.build_step = true;
    let step = add_with(&t.engine, step_rec, disk.clone());
    user.update(|r| r.state.status = Status::Running)
        .expect("update");
    user.record(|r| r.state.status = Status::Exited);
    assert_eq!(*disk.durable.lock().expect("lock"), vec![true, true]);
    disk.durable.lock().expect("lock").clear();
    step.update(|r| r.state.status = Status::Running)
        .expect("update");
    step.record(|r| r.state.status = Status::Exited);
    assert_eq!(*disk.durable.lock().expect("lock"), vec![false, false]);
    // Written all the same: a daemon restart reads what happened.
    assert_eq!(on_disk(&step).state.status, Status::Exited);
}
