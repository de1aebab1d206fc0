//! `logs`: reads the json-file log the shim writes (with its rotated files), filters it and, with
//! `follow`, keeps reading until the container stops.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::stdcopy::{self, StreamKind};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::Engine;

#[derive(Clone, Debug, Default)]
pub struct LogsOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    /// Unix time in seconds (fractions allowed); entries before it are skipped.
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// Only the last N entries ("all" = None).
    pub tail: Option<usize>,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

struct Entry {
    stream: StreamKind,
    time: String,
    ts: f64,
    log: String,
}

fn parse_line(l: &str) -> Option<Entry> {
    let line: Line = serde_json::from_str(l).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(&line.time).ok()?;
    let ts = t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9;
    Some(Entry {
        stream: if line.stream == "stderr" {
            StreamKind::Stderr
        } else {
            StreamKind::Stdout
        },
        time: line.time,
        ts,
        log: line.log,
    })
}

/// Parses Docker's `since`/`until` query values: "1700000000", "1700000000.5".
pub fn parse_timestamp(s: &str) -> Result<Option<f64>> {
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    s.parse::<f64>()
        .map(Some)
        .map_err(|_| EngineError::InvalidParameter(format!("invalid timestamp: {s}")))
}

fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{n}", log.display()));
        if p.exists() {
            files.push(p);
        }
    }
    files.push(log.to_path_buf());
    files
}

struct Emitter {
    opts: LogsOptions,
    tty: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Emitter {
    fn wanted(&self, e: &Entry) -> bool {
        let stream_ok = match e.stream {
            StreamKind::Stderr => self.opts.stderr,
            _ => self.opts.stdout,
        };
        stream_ok
            && self.opts.since.map(|s| e.ts >= s).unwrap_or(true)
            && self.opts.until.map(|u| e.ts <= u).unwrap_or(true)
    }

    fn encode(&self, e: &Entry) -> Bytes {
        let mut payload = Vec::with_capacity(e.log.len() + 32);
        if self.opts.timestamps {
            payload.extend_from_slice(e.time.as_bytes());
            payload.push(b' ');
        }
        payload.extend_from_slice(e.log.as_bytes());
        if self.tty {
            Bytes::from(payload)
        } else {
            stdcopy::encode(e.stream, &payload)
        }
    }

    /// False when the client went away.
    async fn send(&self, e: &Entry) -> bool {
        if !self.wanted(e) {
            return true;
        }
        self.tx.send(self.encode(e)).await.is_ok()
    }
}

impl Engine {
    pub async fn logs(
        &self,
        name: &str,
        opts: LogsOptions,
    ) -> Result<(bool, mpsc::Receiver<Bytes>)> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        let tty = rec.config.tty;
        let log_path = PathBuf::from(&rec.log_path);
        let (tx, rx) = mpsc::channel(64);
        let mut signal = c.signal.subscribe();
        let em = Emitter { opts, tty, tx };
        tokio::spawn(async move {
            // History: read every file; `tail` keeps only the last N wanted entries.
            let path = log_path.clone();
            let tail = em.opts.tail;
            let hist = tokio::task::spawn_blocking(move || read_history(&path)).await;
            let (entries, mut pos) = match hist {
                Ok(h) => h,
                Err(_) => return,
            };
            let wanted: Vec<&Entry> = entries.iter().filter(|e| em.wanted(e)).collect();
            let skip = match tail {
                Some(n) => wanted.len().saturating_sub(n),
                None => 0,
            };
            for e in wanted.into_iter().skip(skip) {
                if !em.send(e).await {
                    return;
                }
            }
            if !em.opts.follow {
                return;
            }
            loop {
                let running = signal.borrow_and_update().running;
                let path = log_path.clone();
                let p = pos.clone();
                let more = tokio::task::spawn_blocking(move || read_from(&path, p)).await;
                let (new, newpos) = match more {
                    Ok(m) => m,
                    Err(_) => return,
                };
                pos = newpos;
                for e in &new {
                    if !em.send(e).await {
                        return;
                    }
                }
                if !running && new.is_empty() {
                    return;
                }
                if signal.borrow().removed {
                    return;
                }
                tokio::select! {
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = em.tx.closed() => return,
                }
            }
        });
        Ok((tty, rx))
    }
}

/// Where the follower is in the live log: its inode and offset.
#[derive(Clone, Default)]
struct Pos {
    ino: u64,
    offset: u64,
}

fn read_entries(f: &mut File, from: u64) -> (Vec<Entry>, u64) {
    let mut out = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() {
        return (out, from);
    }
    let mut r = BufReader::new(f);
    let mut off = from;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // A line still being written has no newline yet: leave it for the next read.
                if !line.ends_with('\n') {
                    break;
                }
                off += n as u64;
                if let Some(e) = parse_line(line.trim_end()) {
                    out.push(e);
                }
            }
        }
    }
    (out, off)
}

fn read_history(log: &Path) -> (Vec<Entry>, Pos) {
    let mut all = Vec::new();
    let mut pos = Pos::default();
    for p in rotated_files(log) {
        if let Ok(mut f) = File::open(&p) {
            let (mut es, off) = read_entries(&mut f, 0);
            all.append(&mut es);
            if p == log {
                pos = Pos {
                    ino: f.metadata().map(|m| m.ino()).unwrap_or(0),
                    offset: off,
                };
            }
        }
    }
    (all, pos)
}

fn read_from(log: &Path, pos: Pos) -> (Vec<Entry>, Pos) {
    let mut out = Vec::new();
    let cur_ino = std::fs::metadata(log).map(|m| m.ino()).unwrap_or(0);
    if cur_ino != pos.ino && pos.ino != 0 {
        // Rotated: finish the old file (now `.1`), then start the new one from its beginning.
        let old = PathBuf::from(format!("{}.1", log.display()));
        if let Ok(mut f) = File::open(&old) {
            if f.metadata().map(|m| m.ino()).unwrap_or(0) == pos.ino {
                let (mut es, _) = read_entries(&mut f, pos.offset);
                out.append(&mut es);
            }
        }
        let mut pos2 = Pos {
            ino: cur_ino,
            offset: 0,
        };
        if let Ok(mut f) = File::open(log) {
            let (mut es, off) = read_entries(&mut f, 0);
            out.append(&mut es);
            pos2.offset = off;
        }
        return (out, pos2);
    }
    match File::open(log) {
        Ok(mut f) => {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            let (es, off) = read_entries(&mut f, pos.offset);
            (es, Pos { ino, offset: off })
        }
        Err(_) => (out, pos),
    }
}
