//! A minimal HTTP/1.1 client over a unix socket, for poking at the Engine API directly.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::Error;

/// A complete HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(format!(
                "body is not JSON ({e}): {} {}",
                self.status,
                self.text()
            ))
        })
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, Error> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| Error::new(format!("connect {}: {e}", socket.display())))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-testkit\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    } else if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    // Head and body in one write, as buffered clients send them.
    let mut wire = req.into_bytes();
    wire.extend_from_slice(body.unwrap_or_default());
    // A server may answer (a 400, say) and close before reading the whole body; the write then
    // fails with EPIPE or ECONNRESET but the answer is already in our receive buffer.
    let sent = s.write_all(&wire);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        return Err(Error::new(format!(
            "no response to {method} {path}: send {sent:?}, read {read:?}"
        )));
    }
    parse(&raw, method == "HEAD")
}

fn parse(raw: &[u8], head: bool) -> Result<Response, Error> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            Error::new(format!(
                "incomplete response: {}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::new(format!("bad status line: {status_line}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if head || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(out);
        };
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| Error::new(format!("bad chunk size {size_hex:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        data = &data[take..];
        if data.len() >= 2 {
            data = &data[2..];
        }
    }
}

/// Splits a multiplexed attach/logs stream (8-byte frames) into (stdout, stderr).
pub fn demux(mut data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let take = len.min(data.len() - 8);
        let payload = &data[8..8 + take];
        if data[0] == 2 {
            e.extend_from_slice(payload);
        } else {
            o.extend_from_slice(payload);
        }
        data = &data[8 + take..];
    }
    (o, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.45\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse(raw, false).expect("parse");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.header("API-VERSION"), Some("1.45"));
    }

    #[test]
    fn parses_content_length_and_head() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(raw, false).expect("parse").body, b"{}");
        assert!(parse(raw, true).expect("parse").body.is_empty());
    }

    #[test]
    fn demuxes() {
        let mut d = vec![1, 0, 0, 0, 0, 0, 0, 2];
        d.extend_from_slice(b"hi");
        d.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 1, b'!']);
        assert_eq!(demux(&d), (b"hi".to_vec(), b"!".to_vec()));
    }
}
