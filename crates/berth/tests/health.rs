//! HEALTHCHECK: the first check runs promptly, status in ps and inspect, retries, start period,
//! health_status events.

mod common;
use common::*;

#[test]
fn healthy_promptly_then_unhealthy_after_retries() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("hc");
    let t0 = Instant::now();
    // A long interval: only a prompt first check can make it healthy within the deadline.
    let out = d.cli(&[
        "run",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        "test ! -e /tmp/sick && echo fine",
        "--health-interval",
        "1h",
        "--health-start-interval",
        "200ms",
        "--health-start-period",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(out.success(), "{out:?}");
    rm.add(&name);
    assert!(
        wait_until(Duration::from_secs(10), || fmt(
            d,
            &name,
            "{{.State.Health.Status}}"
        ) == "healthy"),
        "not healthy: {}",
        fmt(d, &name, "{{json .State.Health}}")
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let ps = d.cli(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(ps.stdout.contains("(healthy)"), "{}", ps.stdout);
    let log = d.inspect(&name).expect("inspect")["State"]["Health"]["Log"].clone();
    assert_eq!(log[0]["ExitCode"], 0);
    assert_eq!(log[0]["Output"], "fine\n");
    assert!(log[0]["Start"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        d.inspect(&name).expect("inspect")["Config"]["Healthcheck"]["Retries"],
        2
    );
}

#[test]
fn failing_check_becomes_unhealthy_with_an_event() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("hcu");
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    );
    let out = d.cli(&[
        "run",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(out.success(), "{out:?}");
    rm.add(&name);
    assert_eq!(fmt(d, &name, "{{.State.Health.Status}}"), "starting");
    assert!(wait_until(Duration::from_secs(10), || fmt(
        d,
        &name,
        "{{.State.Health.Status}}"
    ) == "unhealthy"));
    assert!(
        fmt(d, &name, "{{.State.Health.FailingStreak}}")
            .parse::<i64>()
            .unwrap_or(0)
            >= 2
    );
    let ps = d.cli(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(ps.stdout.contains("(unhealthy)"), "{}", ps.stdout);
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 1
    );
    let ev = d.cli(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={name}"),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.stdout.contains("health_status: unhealthy"), "{ev:?}");
    // A command that cannot run is a failure too (127), not a hang.
    let name2 = unique("hcn");
    assert!(d
        .cli(&[
            "run",
            "-d",
            "--name",
            &name2,
            "--health-cmd",
            "nosuchprobe",
            "--health-interval",
            "300ms",
            "--health-retries",
            "1",
            "busybox",
            "sleep",
            "300"
        ])
        .success());
    rm.add(&name2);
    assert!(wait_until(Duration::from_secs(10), || fmt(
        d,
        &name2,
        "{{.State.Health.Status}}"
    ) == "unhealthy"));
}
