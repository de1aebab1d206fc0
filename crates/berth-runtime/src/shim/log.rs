//! Docker's json-file log driver: one JSON object per line, lines split at '\n' and at 16 KiB,
//! size-based rotation to `<log>.1` .. `<log>.N-1`. For a pod's container, the CRI log format
//! instead (`<RFC 3339 nano time> <stdout|stderr> <F|P> <line>`, `P` for a piece of a longer
//! line), at the path the kubelet gave, reopened when it asks (it rotates the files itself).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Docker's line buffer size: longer lines are logged in 16 KiB pieces.
const MAX_LINE: usize = 16 * 1024;

pub(crate) struct JsonLog {
    path: PathBuf,
    /// The CRI format rather than json-file.
    cri: bool,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_file: u32,
    /// Partial (unterminated) line per stream: [stdout, stderr].
    partial: [Vec<u8>; 2],
}

pub(crate) fn now_rfc3339_nano() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

impl JsonLog {
    /// A log in the CRI format, never rotated by us.
    pub(crate) fn open_cri(path: &Path) -> io::Result<JsonLog> {
        let mut l = JsonLog::open(path, 0, 1)?;
        l.cri = true;
        Ok(l)
    }

    /// Closes the file and opens `path` again (created if it was moved away).
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    pub(crate) fn open(path: &Path, max_size: u64, max_file: u32) -> io::Result<JsonLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_path_buf(),
            cri: false,
            file: Some(file),
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data` from stream 1 (stdout) or 2 (stderr). Errors are swallowed: a full disk
    /// must not stop the container's output from reaching attached clients.
    pub(crate) fn write(&mut self, stream: u8, data: &[u8]) {
        let idx = if stream == 2 { 1 } else { 0 };
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            let cut = match rest.iter().position(|&b| b == b'\n') {
                Some(nl) if nl < MAX_LINE => nl + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            let line = buf[start..start + cut].to_vec();
            self.record(idx, &line);
            start += cut;
        }
        buf.drain(..start);
        self.partial[idx] = buf;
    }

    /// Logs unterminated lines (at container exit); in the CRI format they end complete.
    pub(crate) fn flush_partial(&mut self) {
        for idx in 0..2 {
            let mut buf = std::mem::take(&mut self.partial[idx]);
            if !buf.is_empty() {
                if self.cri {
                    buf.push(b'\n');
                }
                self.record(idx, &buf);
            }
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }

    fn record(&mut self, idx: usize, line: &[u8]) {
        let stream = if idx == 0 { "stdout" } else { "stderr" };
        let rec = if self.cri {
            // A line the kubelet reads back: its trailing newline becomes the `F` tag.
            let (body, tag) = match line.strip_suffix(b"\n") {
                Some(b) => (b, "F"),
                None => (line, "P"),
            };
            let mut r = format!("{} {stream} {tag} ", now_rfc3339_nano()).into_bytes();
            r.extend_from_slice(body);
            r.push(b'\n');
            r
        } else {
            let text = String::from_utf8_lossy(line);
            let mut rec =
                serde_json::json!({ "log": text, "stream": stream, "time": now_rfc3339_nano() })
                    .to_string();
            rec.push('\n');
            rec.into_bytes()
        };
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&rec).is_ok() {
                self.size += rec.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_file > 1 {
            for n in (1..self.max_file - 1).rev() {
                let _ = fs::rename(name(n), name(n + 1));
            }
            let _ = fs::rename(&self.path, name(1));
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn splits_lines_and_long_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut log = JsonLog::open(&p, 0, 1).unwrap();
        log.write(1, b"hel");
        log.write(1, b"lo\nwor");
        log.write(2, b"err\n");
        log.write(1, &vec![b'x'; MAX_LINE + 10]);
        log.flush_partial();
        let l = lines(&p);
        assert_eq!(l[0]["log"], "hello\n");
        assert_eq!(l[0]["stream"], "stdout");
        assert_eq!(l[1]["log"], "err\n");
        assert_eq!(l[1]["stream"], "stderr");
        assert_eq!(l[2]["log"].as_str().unwrap().len(), MAX_LINE);
        assert!(l[2]["log"].as_str().unwrap().starts_with("worxx"));
        assert_eq!(l[3]["log"].as_str().unwrap().len(), 13);
        assert!(l[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn cri_format_tags_pieces_and_reopens() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = JsonLog::open_cri(&p).unwrap();
        log.write(1, b"hello World\n");
        log.write(2, b"oops\n");
        log.write(1, &vec![b'y'; MAX_LINE + 3]);
        log.flush_partial();
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
        assert!(chrono::DateTime::parse_from_rfc3339(lines[0][0]).is_ok());
        assert_eq!(lines[0][1..], ["stdout", "F", "hello World"]);
        assert_eq!(lines[1][1..], ["stderr", "F", "oops"]);
        assert_eq!((lines[2][2], lines[2][3].len()), ("P", MAX_LINE));
        assert_eq!((lines[3][2], lines[3][3]), ("F", "yyy"));
        fs::rename(&p, d.path().join("c.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(1, b"again\n");
        assert!(fs::read_to_string(&p)
            .unwrap()
            .ends_with(" stdout F again\n"));
        assert_eq!(fs::read_to_string(d.path().join("c.log.1")).unwrap(), text);
    }

    #[test]
    fn rotates_by_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut log = JsonLog::open(&p, 1000, 3).unwrap();
        for i in 0..100 {
            log.write(1, format!("line {i}\n").as_bytes());
        }
        let p1 = PathBuf::from(format!("{}.1", p.display()));
        let p2 = PathBuf::from(format!("{}.2", p.display()));
        let p3 = PathBuf::from(format!("{}.3", p.display()));
        assert!(p1.exists() && p2.exists() && !p3.exists());
        for f in [&p, &p1, &p2] {
            assert!(fs::metadata(f).unwrap().len() <= 1000);
        }
        assert_eq!(lines(&p).last().unwrap()["log"], "line 99\n");
    }
}
