//! Property-based fuzzing of the resolver and the extractor, with a corpus of escapes.
//!
//! Each property runs a few hundred cases in the normal test suite. For a long run, one test a
//! process: `FUZZ_CPU_SECONDS=600 TMPDIR=/dev/shm cargo test --release -p berth-fs --test fuzz
//! -- --ignored --nocapture --test-threads=1 resolver_long` (likewise `extractor_long`,
//! `extractor_garbage_long`): the property runs in batches with fresh random seeds until the
//! process has used that much CPU, and prints how many cases it ran. Figures: docs/fuzzing.md.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::PathBuf;

use berth_fs::{ExtractOptions, Whiteouts};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Names and link targets that try to leave a root.
const ESCAPES: &[&str] = &[
    "..",
    "../..",
    "../../..",
    "/",
    "/..",
    "../outside",
    "../../outside/secret",
    "/../outside",
    "a/../../..",
    "./../.",
    "//..//..//",
    "a/b/../../../outside",
    "/proc/self/root",
    "/proc/self/cwd/../outside",
];

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "etc", "x"]).prop_map(String::from),
        2 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just("".to_string()),
    ]
}

fn rel_path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(component(), 1..5).prop_map(|v| v.join("/")),
        2 => prop::sample::select(ESCAPES.to_vec()).prop_map(String::from),
        1 => (prop::sample::select(ESCAPES.to_vec()), component())
            .prop_map(|(e, c)| format!("{e}/{c}")),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => rel_path(),
        1 => rel_path().prop_map(|p| format!("/{p}")),
        1 => Just("OUTSIDE".to_string()), // replaced by the host path of outside/
    ]
}

#[derive(Clone, Debug)]
enum Node {
    Dir(String),
    File(String),
    Link(String, String),
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        2 => rel_path().prop_map(Node::Dir),
        1 => rel_path().prop_map(Node::File),
        3 => (rel_path(), target()).prop_map(|(p, t)| Node::Link(p, t)),
    ]
}

/// A sandbox: `root/` (the tree under test) and `outside/secret`, which nothing may reach.
struct Sandbox {
    _t: tempfile::TempDir,
    top: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let t = tempfile::tempdir().unwrap();
    let top = fs::canonicalize(t.path()).unwrap();
    let root = top.join("root");
    let outside = top.join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    Sandbox {
        _t: t,
        top,
        root,
        outside,
    }
}

impl Sandbox {
    fn target(&self, t: &str) -> String {
        if t == "OUTSIDE" {
            self.outside.display().to_string()
        } else {
            t.to_string()
        }
    }

    /// Builds the tree with plain (host) calls, below root only: creating it is not under test.
    fn build(&self, nodes: &[Node]) {
        for n in nodes {
            let (p, kind) = match n {
                Node::Dir(p) => (p, 0),
                Node::File(p) => (p, 1),
                Node::Link(p, _) => (p, 2),
            };
            let Ok(host) = berth_fs::secure_join(&self.root, p) else {
                continue;
            };
            if !host.starts_with(&self.root) || host == self.root {
                continue;
            }
            if let Some(parent) = host.parent() {
                if berth_fs::mkdir_in_root(&self.root, parent.strip_prefix(&self.root).unwrap())
                    .is_err()
                {
                    continue;
                }
            }
            let _ = match (kind, n) {
                (0, _) => fs::create_dir(&host),
                (1, _) => fs::write(&host, b"f"),
                (_, Node::Link(_, t)) => symlink(self.target(t), &host),
                _ => Ok(()),
            };
        }
    }

    fn assert_outside_untouched(&self) {
        let secret = self.outside.join("secret");
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        assert_eq!(fs::symlink_metadata(&secret).unwrap().nlink(), 1);
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        let mut top: Vec<_> = fs::read_dir(&self.top)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["outside", "root"]);
    }
}

fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

/// The resolver's properties on one tree and one path.
fn check_resolve(nodes: &[Node], path: &str) -> Result<(), TestCaseError> {
    let s = sandbox();
    s.build(nodes);
    let rootfd = fs::File::open(&s.root).unwrap();
    let rootfd = std::os::fd::OwnedFd::from(rootfd);
    let kernel = berth_fs::open_in_root(&s.root, path);
    let walked = berth_fs::root::walk_in_root(&rootfd, path.as_bytes());
    let resolved = berth_fs::resolve_in_root(&s.root, path);
    // The userspace walk is the kernel's RESOLVE_IN_ROOT.
    match (&kernel, &walked) {
        (Ok(a), Ok(b)) => prop_assert_eq!(
            a.as_ref().map(fd_path),
            b.as_ref().map(fd_path),
            "walk and openat2 differ on {:?}",
            path
        ),
        (Err(a), Err(b)) => prop_assert_eq!(a.raw_os_error(), b.raw_os_error()),
        _ => prop_assert!(false, "{path:?}: openat2 {kernel:?} vs walk {walked:?}"),
    }
    if let Ok(Some(fd)) = &kernel {
        let p = fd_path(fd);
        prop_assert!(
            p.starts_with(&s.root),
            "{path:?} opened {p:?}, outside the root"
        );
        // The path resolver agrees with the kernel wherever the target exists.
        let r = resolved.as_ref().expect("resolves where openat2 does");
        let joined = s.root.join(r.strip_prefix("/").unwrap());
        let (j, k) = (joined.to_string_lossy(), p.to_string_lossy());
        prop_assert_eq!(
            j.trim_end_matches('/'),
            k.trim_end_matches('/'),
            "{:?}",
            path
        );
    }
    if let Ok(r) = &resolved {
        prop_assert!(r.is_absolute());
        prop_assert!(!r.components().any(|c| c == std::path::Component::ParentDir));
    }
    s.assert_outside_untouched();
    Ok(())
}

#[derive(Clone, Debug)]
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    Fifo(String),
}

fn entry() -> impl Strategy<Value = Entry> {
    let name = prop_oneof![
        6 => rel_path(),
        1 => rel_path().prop_map(|p| format!("/{p}")),
        1 => (rel_path(), prop::sample::select(vec![".wh.", ".wh..wh..opq", ".wh..wh.x", ".wh..."]))
            .prop_map(|(p, w)| format!("{p}/{w}")),
        1 => Just("OUTSIDE/secret".to_string()),
    ];
    prop_oneof![
        3 => (name.clone(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(n, d)| Entry::File(n, d)),
        2 => name.clone().prop_map(Entry::Dir),
        3 => (name.clone(), target()).prop_map(|(n, t)| Entry::Symlink(n, t)),
        2 => (name.clone(), target()).prop_map(|(n, t)| Entry::Hardlink(n, t)),
        1 => name.prop_map(Entry::Fifo),
    ]
}

fn raw_header(kind: tar::EntryType, name: &str, link: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    // Raw names, so `..` and absolute paths reach the extractor (the tar crate refuses them).
    let n = &mut h.as_old_mut().name;
    n.fill(0);
    let b = name.as_bytes();
    n[..b.len().min(99)].copy_from_slice(&b[..b.len().min(99)]);
    let l = &mut h.as_old_mut().linkname;
    l.fill(0);
    let b = link.as_bytes();
    l[..b.len().min(99)].copy_from_slice(&b[..b.len().min(99)]);
    h.set_cksum();
    h
}

fn build_tar(s: &Sandbox, entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let fix = |n: &str| n.replace("OUTSIDE", &s.outside.display().to_string());
    for e in entries {
        let (h, data): (tar::Header, Vec<u8>) = match e {
            Entry::File(n, d) => (
                raw_header(tar::EntryType::Regular, &fix(n), "", d.len() as u64),
                d.clone(),
            ),
            Entry::Dir(n) => (
                raw_header(tar::EntryType::Directory, &fix(n), "", 0),
                vec![],
            ),
            Entry::Symlink(n, t) => (
                raw_header(tar::EntryType::Symlink, &fix(n), &s.target(t), 0),
                vec![],
            ),
            Entry::Hardlink(n, t) => (
                raw_header(tar::EntryType::Link, &fix(n), &s.target(t), 0),
                vec![],
            ),
            Entry::Fifo(n) => (raw_header(tar::EntryType::Fifo, &fix(n), "", 0), vec![]),
        };
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn options() -> impl Strategy<Value = ExtractOptions> {
    (
        prop::sample::select(vec![
            Whiteouts::Keep,
            Whiteouts::Overlay,
            Whiteouts::OverlayMerge,
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(whiteouts, same_owner, no_overwrite_dir_non_dir)| ExtractOptions {
                whiteouts,
                same_owner,
                no_overwrite_dir_non_dir,
                xattrs: true,
                rebase: None,
            },
        )
}

/// The extractor's property: whatever the archive, nothing outside the destination changes
/// (two archives in a row, so the second meets what the first planted).
fn check_extract(a: &[Entry], b: &[Entry], opts: &ExtractOptions) -> Result<(), TestCaseError> {
    let s = sandbox();
    for entries in [a, b] {
        let tar = build_tar(&s, entries);
        let _ = berth_fs::extract(&mut &tar[..], &s.root, opts);
        s.assert_outside_untouched();
    }
    Ok(())
}

fn check_garbage(bytes: &[u8]) -> Result<(), TestCaseError> {
    let s = sandbox();
    let _ = berth_fs::extract(&mut &bytes[..], &s.root, &ExtractOptions::default());
    s.assert_outside_untouched();
    Ok(())
}

/// Garbage: a valid archive with bytes flipped.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(entry(), 1..6),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..20),
    )
        .prop_map(|(entries, flips)| {
            let s = sandbox();
            let mut t = build_tar(&s, &entries);
            for (i, v) in flips {
                let k = i.index(t.len());
                t[k] = v;
            }
            t
        })
}

fn tree_and_path() -> impl Strategy<Value = (Vec<Node>, String)> {
    (
        prop::collection::vec(node(), 0..12),
        prop_oneof![3 => rel_path(), 1 => rel_path().prop_map(|p| format!("/{p}"))],
    )
}

fn archives() -> impl Strategy<Value = (Vec<Entry>, Vec<Entry>, ExtractOptions)> {
    (
        prop::collection::vec(entry(), 0..10),
        prop::collection::vec(entry(), 0..10),
        options(),
    )
}

proptest! {
    #![proptest_config(Config::with_cases(300))]

    #[test]
    fn resolver_never_leaves_the_root_and_matches_the_kernel((nodes, path) in tree_and_path()) {
        check_resolve(&nodes, &path)?;
    }

    #[test]
    fn extractor_never_writes_outside((a, b, opts) in archives()) {
        check_extract(&a, &b, &opts)?;
    }

    #[test]
    fn extractor_survives_garbage(bytes in garbage()) {
        check_garbage(&bytes)?;
    }
}

#[test]
fn escape_corpus() {
    // Every escape as a path, as a link target and as an archive entry.
    for e in ESCAPES {
        check_resolve(&[Node::Link("a".into(), e.to_string())], "a/secret").unwrap();
        check_resolve(&[], e).unwrap();
        let entries = vec![
            Entry::Symlink("l".into(), e.to_string()),
            Entry::File("l/secret".into(), b"pwned".to_vec()),
            Entry::Hardlink("h".into(), format!("{e}/secret")),
            Entry::File(format!("{e}/secret"), b"pwned".to_vec()),
            Entry::Dir(format!("{e}/d")),
        ];
        for w in [Whiteouts::Keep, Whiteouts::Overlay] {
            let opts = ExtractOptions {
                whiteouts: w,
                ..Default::default()
            };
            check_extract(&entries, &entries, &opts).unwrap();
        }
    }
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid out-buffer for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Runs `strategy`/`test` in batches with fresh seeds until this process has used
/// `FUZZ_CPU_SECONDS` of CPU (default 10), or `FUZZ_SECONDS` of wall time have passed (default:
/// no limit); prints the count (and a running count every 30 CPU-seconds). Run one such test
/// per process (`--test-threads=1`).
fn long_run<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<f64>().ok());
    let cpu_limit = env("FUZZ_CPU_SECONDS").unwrap_or(10.0);
    let wall_limit = env("FUZZ_SECONDS").unwrap_or(f64::MAX);
    let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
    let mut cases = 0u64;
    let mut last = c0;
    let mut failures = BTreeMap::new();
    while cpu_seconds() - c0 < cpu_limit && t0.elapsed().as_secs_f64() < wall_limit {
        let mut runner = TestRunner::new(Config {
            cases: 200,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, &test) {
            Ok(()) => {
                cases += 200;
                // A running count, so a run stopped early still has its figures.
                if cpu_seconds() - last >= 30.0 {
                    last = cpu_seconds();
                    println!(
                        "{name}: {cases} cases so far, {:.0} CPU-seconds, {:.0} s wall",
                        last - c0,
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                failures.insert(cases, format!("{e}"));
                break;
            }
        }
    }
    println!(
        "{name}: {cases} cases, {:.0} CPU-seconds, {:.0} s wall",
        cpu_seconds() - c0,
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
#[ignore]
fn resolver_long() {
    long_run("resolver", tree_and_path(), |(n, p)| check_resolve(&n, &p));
}

#[test]
#[ignore]
fn extractor_long() {
    long_run("extractor", archives(), |(a, b, o)| {
        check_extract(&a, &b, &o)
    });
}

#[test]
#[ignore]
fn extractor_garbage_long() {
    long_run("extractor (garbage)", garbage(), |b| check_garbage(&b));
}
