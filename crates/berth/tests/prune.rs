//! container/image/system prune and system df, each daemon its own (prune is global).

mod common;
use common::*;

#[test]
fn prune_and_df() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    assert!(d
        .cli(&[
            "run",
            "--name",
            "done1",
            "busybox",
            "sh",
            "-c",
            "echo x > /f"
        ])
        .success());
    assert!(d
        .cli(&["create", "--name", "made", "--label", "keep=1", "busybox"])
        .success());
    assert!(d
        .cli(&["run", "-d", "--name", "live", "busybox", "sleep", "300"])
        .success());
    assert!(d.cli(&["volume", "create", "v1"]).success());

    let out = d.cli(&["system", "df"]);
    assert!(out.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("TYPE"), "{}", out.stdout);
    let row = |t: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(t))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("Images")[1..3], ["1", "1"]);
    assert_eq!(row("Containers")[1..3], ["3", "1"]);
    assert_eq!(row("Local")[2..4], ["1", "0"]);
    let j = d.api("GET", "/system/df").json().expect("json");
    assert_eq!(j["Volumes"][0]["UsageData"]["RefCount"], 0);
    assert!(j["LayersSize"].as_i64().unwrap_or(0) > 0);

    // container prune honours label filters; running containers stay.
    let out = d.cli(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.starts_with("Deleted Containers:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Total reclaimed space:"));
    assert!(d.inspect("done1").is_none());
    assert!(d.inspect("made").is_some());
    assert!(d.inspect("live").is_some());
    // Without -f it asks; "n" keeps everything.
    let out = d.cli_in(&["container", "prune"], b"n\n");
    assert!(out
        .stdout
        .contains("Are you sure you want to continue? [y/N]"));
    assert!(d.inspect("made").is_some());

    // An image only a stopped container uses: image prune -a removes nothing in use.
    let out = d.cli(&["image", "prune", "-a", "-f"]);
    assert!(out.success(), "{out:?}");
    assert!(
        d.cli(&["image", "inspect", "busybox"]).success(),
        "used image was pruned"
    );

    // system prune -a --volumes: stopped containers, unused volumes (anonymous only), images.
    assert!(d.cli(&["stop", "-t", "0", "live"]).success());
    let out = d.cli(&["system", "prune", "-a", "-f", "--volumes"]);
    assert!(out.success(), "{out:?}");
    assert!(d.inspect("made").is_none() && d.inspect("live").is_none());
    assert!(
        !d.cli(&["image", "inspect", "busybox"]).success(),
        "unused image survived: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("untagged: busybox:latest"),
        "{}",
        out.stdout
    );
    // Named volumes survive without the all filter, as with Docker 23+.
    assert!(d.cli(&["volume", "inspect", "v1"]).success());
    let r = d.api(
        "POST",
        "/containers/prune?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
    );
    assert_eq!(r.status, 400);
    d.cleanup();
}
