//! `events`: Docker's JSON shape, lifecycle points, `since`/`until`, filters, live streaming.

mod common;
use common::*;

fn now_api() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect()
}

#[test]
fn lifecycle_events_with_since_until_and_filters() {
    let d = d();
    let since = now_api();
    let name = unique("ev");
    assert!(d
        .cli(&["run", "-d", "--name", &name, "--label", "team=a", "busybox", "sleep", "300"])
        .success());
    let id = fmt(d, &name, "{{.Id}}");
    assert!(d.cli(&["exec", &name, "true"]).success());
    let renamed = format!("{name}-2");
    assert!(d.cli(&["rename", &name, &renamed]).success());
    assert!(d.cli(&["kill", "-s", "USR1", &renamed]).success());
    assert!(d.cli(&["stop", "-t", "1", &renamed]).success());
    assert!(d.cli(&["rm", &renamed]).success());
    std::thread::sleep(Duration::from_millis(50));
    let until = now_api();

    let q = format!(
        "/events?since={since}&until={until}&filters={}",
        urlencode(&format!(r#"{{"container":["{id}"]}}"#))
    );
    let r = d.api("GET", &q);
    assert_eq!(r.status, 200);
    let evs = lines(&r.text());
    let actions: Vec<&str> = evs.iter().filter_map(|e| e["Action"].as_str()).collect();
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| x == &a)
            .unwrap_or_else(|| panic!("no {a} in {actions:?}"))
    };
    assert!(pos("create") < pos("start"));
    assert!(pos("start") < pos("exec_create: true "));
    assert!(pos("exec_start: true ") < pos("exec_die"));
    assert!(pos("rename") < pos("stop"));
    assert!(pos("die") < pos("destroy"));
    let create = &evs[pos("create")];
    assert_eq!(create["Type"], "container");
    assert_eq!(create["status"], "create");
    assert_eq!(create["id"], id.as_str());
    assert_eq!(create["from"], "busybox");
    assert_eq!(create["scope"], "local");
    assert_eq!(create["Actor"]["ID"], id.as_str());
    assert_eq!(create["Actor"]["Attributes"]["name"], name.as_str());
    assert_eq!(create["Actor"]["Attributes"]["team"], "a");
    assert!(
        create["timeNano"].as_i64().unwrap_or(0) / 1_000_000_000
            == create["time"].as_i64().unwrap_or(-1)
    );
    let die = &evs[pos("die")];
    // pid 1 ignores SIGTERM without a handler: killed after the timeout.
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "137");
    let kill = evs.iter().find(|e| e["Action"] == "kill").expect("kill");
    assert_eq!(kill["Actor"]["Attributes"]["signal"], "10");
    assert_eq!(
        evs[pos("rename")]["Actor"]["Attributes"]["oldName"],
        format!("/{name}")
    );
    assert!(evs[pos("exec_die")]["Actor"]["Attributes"]["execID"].is_string());

    // Filters: event and label; a bad filter is a 400.
    let f = urlencode(r#"{"event":["start"],"label":["team=a"]}"#);
    let evs = lines(
        &d.api(
            "GET",
            &format!("/events?since={since}&until={until}&filters={f}"),
        )
        .text(),
    );
    assert!(
        !evs.is_empty() && evs.iter().all(|e| e["Action"] == "start"),
        "{evs:?}"
    );
    let f = urlencode(r#"{"bogus":["x"]}"#);
    assert_eq!(
        d.api(
            "GET",
            &format!("/events?since={since}&until={until}&filters={f}")
        )
        .status,
        400
    );

    // The CLI with --since/--until and a format.
    let out = d.cli(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=destroy",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, format!("container destroy {renamed}\n"));
}

#[test]
fn live_events_stream_as_they_happen() {
    let d = d();
    let mut child = d
        .spawn_cli(&[
            "events",
            "--filter",
            "type=volume",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    let vol = unique("evvol");
    assert!(d.cli(&["volume", "create", &vol]).success());
    assert!(d.cli(&["volume", "rm", &vol]).success());
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("create {vol}\n")) && text.contains(&format!("destroy {vol}\n")),
        "{text}"
    );
}
