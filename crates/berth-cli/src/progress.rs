//! Docker's rendering of a JSON-lines progress stream (pull, push, load): on a terminal each
//! layer id keeps one line that is rewritten in place (status and a bar); to a pipe only the
//! status lines are printed.

use std::collections::HashMap;

use berth_api::types::{JsonMessage, ProgressDetail};

use crate::format::human_size_prec;

pub struct Renderer {
    terminal: bool,
    width: u16,
    /// Line index of each id being updated in place, counted from the first of them; cleared by
    /// any line that is not such an update (as docker does, so a later operation starts fresh).
    ids: HashMap<String, usize>,
}

impl Renderer {
    pub fn new(terminal: bool, width: u16) -> Renderer {
        Renderer {
            terminal,
            width,
            ids: HashMap::new(),
        }
    }

    /// The bytes to write for `m` (empty when nothing is shown).
    pub fn render(&mut self, m: &JsonMessage) -> String {
        if let Some(s) = &m.stream {
            self.ids.clear();
            return s.clone();
        }
        let Some(status) = &m.status else {
            return String::new();
        };
        let id = m.id.as_deref().filter(|i| !i.is_empty());
        let is_update = m.progress_detail.is_some() || m.progress.is_some();
        let bar = m.progress_detail.as_ref().map(|p| bar(p, self.width));
        let has_bar = bar.as_deref().is_some_and(|b| !b.is_empty())
            || m.progress.as_deref().is_some_and(|p| !p.is_empty());
        if !self.terminal {
            // Progress bars are for terminals; a pipe gets the status lines only.
            if has_bar {
                return String::new();
            }
            return match id {
                Some(id) => format!("{id}: {status}\n"),
                None => format!("{status}\n"),
            };
        }
        let mut out = String::new();
        let mut diff = 0;
        match id {
            Some(id) if is_update => {
                let n = self.ids.len();
                let line = *self.ids.entry(id.to_string()).or_insert_with(|| {
                    out.push('\n');
                    n
                });
                diff = self.ids.len() - line;
                out.push_str(&format!("\x1b[{diff}A"));
            }
            _ => self.ids.clear(),
        }
        // Clear the line, then write it.
        out.push_str("\x1b[2K\r");
        if let Some(id) = id {
            out.push_str(id);
            out.push_str(": ");
        }
        if is_update {
            let bar = m
                .progress
                .clone()
                .filter(|p| !p.is_empty())
                .or(bar)
                .unwrap_or_default();
            if bar.is_empty() {
                out.push_str(status);
            } else {
                out.push_str(&format!("{status} {bar}"));
            }
            out.push('\r');
        } else {
            out.push_str(status);
            out.push('\n');
        }
        if diff > 0 {
            out.push_str(&format!("\x1b[{diff}B"));
        }
        out
    }
}

/// Docker's progress bar: `[=====>      ]  12.3MB/45.6MB`; the box only on terminals wider than
/// 110 columns.
pub fn bar(p: &ProgressDetail, width: u16) -> String {
    let cur = p.current.unwrap_or(0);
    let total = p.total.unwrap_or(0);
    if cur <= 0 && total <= 0 {
        return String::new();
    }
    let size = |n: i64| human_size_prec(n as f64, 4);
    if total <= 0 {
        return format!("{:>8}", size(cur));
    }
    let pct = ((cur as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    let mut s = String::new();
    if width > 110 {
        s.push_str(&format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct)));
    }
    if cur > total {
        s.push_str(&format!("{:>8}", size(cur)));
    } else {
        s.push_str(&format!("{:>8}/{}", size(cur), size(total)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(
        id: Option<&str>,
        status: &str,
        detail: Option<(i64, i64)>,
        update: bool,
    ) -> JsonMessage {
        JsonMessage {
            id: id.map(str::to_string),
            status: Some(status.into()),
            progress_detail: if let Some((c, t)) = detail {
                Some(ProgressDetail {
                    current: Some(c),
                    total: Some(t),
                })
            } else if update {
                Some(ProgressDetail::default())
            } else {
                None
            },
            ..Default::default()
        }
    }

    #[test]
    fn bar_matches_docker() {
        let p = |c, t| ProgressDetail {
            current: Some(c),
            total: Some(t),
        };
        assert_eq!(bar(&p(0, 0), 200), "");
        assert_eq!(bar(&p(1_081_000, 27_150_000), 80), " 1.081MB/27.15MB");
        assert_eq!(
            bar(&p(13_575_000, 27_150_000), 120),
            format!("[{}>{}]  13.57MB/27.15MB", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(bar(&p(500, 400), 80), "    500B");
        assert_eq!(bar(&p(5, -1), 80), "      5B", "no total: the count alone");
    }

    #[test]
    fn a_pipe_gets_status_lines_and_no_bars() {
        let mut r = Renderer::new(false, 80);
        assert_eq!(
            r.render(&msg(Some("latest"), "Pulling from library/x", None, false)),
            "latest: Pulling from library/x\n"
        );
        assert_eq!(
            r.render(&msg(Some("abc"), "Pulling fs layer", None, true)),
            "abc: Pulling fs layer\n"
        );
        assert_eq!(
            r.render(&msg(Some("abc"), "Downloading", Some((5, 10)), true)),
            ""
        );
        assert_eq!(
            r.render(&msg(
                None,
                "Status: Downloaded newer image for x",
                None,
                false
            )),
            "Status: Downloaded newer image for x\n"
        );
    }

    #[test]
    fn a_terminal_rewrites_each_layer_line_in_place() {
        let mut r = Renderer::new(true, 80);
        assert_eq!(
            r.render(&msg(Some("latest"), "Pulling from x", None, false)),
            "\x1b[2K\rlatest: Pulling from x\n"
        );
        // First sight of a layer opens a line and writes on it from below.
        assert_eq!(
            r.render(&msg(Some("aaa"), "Pulling fs layer", None, true)),
            "\n\x1b[1A\x1b[2K\raaa: Pulling fs layer\r\x1b[1B"
        );
        assert_eq!(
            r.render(&msg(Some("bbb"), "Pulling fs layer", None, true)),
            "\n\x1b[1A\x1b[2K\rbbb: Pulling fs layer\r\x1b[1B"
        );
        // The first layer's line is two up now.
        assert_eq!(
            r.render(&msg(Some("aaa"), "Downloading", Some((1000, 2000)), true)),
            "\x1b[2A\x1b[2K\raaa: Downloading      1kB/2kB\r\x1b[2B"
        );
        // A line without an id ends the in-place block.
        assert_eq!(
            r.render(&msg(None, "Digest: sha256:1", None, false)),
            "\x1b[2K\rDigest: sha256:1\n"
        );
        assert_eq!(
            r.render(&msg(Some("aaa"), "Pull complete", None, true)),
            "\n\x1b[1A\x1b[2K\raaa: Pull complete\r\x1b[1B"
        );
    }
}
