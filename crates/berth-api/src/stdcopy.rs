//! Docker's multiplexed stream framing (attach/logs without a TTY).
//!
//! Each frame is an 8-byte header — stream id (0 stdin, 1 stdout, 2 stderr, 3 system error), three
//! zero bytes, payload length as big-endian u32 — followed by the payload.

use bytes::{Buf, Bytes, BytesMut};

/// Size of a frame header.
pub const HEADER_LEN: usize = 8;

/// Which stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// Docker's "systemErr": an error message from the daemon in the middle of a stream.
    SystemErr,
}

impl StreamKind {
    pub fn byte(self) -> u8 {
        match self {
            StreamKind::Stdin => 0,
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::SystemErr => 3,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::SystemErr),
            _ => None,
        }
    }
}

/// The 8-byte header for a payload of `len` bytes.
pub fn header(kind: StreamKind, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_be_bytes();
    [kind.byte(), 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// One frame, header and payload. Payloads above 4 GiB are split into several frames.
pub fn encode(kind: StreamKind, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + HEADER_LEN);
    if payload.is_empty() {
        out.extend_from_slice(&header(kind, 0));
    }
    for chunk in payload.chunks(u32::MAX as usize) {
        // chunks() bounds each chunk to u32::MAX, so the cast cannot truncate.
        out.extend_from_slice(&header(kind, chunk.len() as u32));
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

/// A frame whose stream byte is not 0..=3: the peer is not sending multiplexed data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStreamByte(pub u8);

/// Incremental demultiplexer: feed bytes as they arrive, take whole frames out.
#[derive(Debug, Default)]
pub struct Demuxer {
    buf: BytesMut,
}

impl Demuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<(StreamKind, Bytes)>, BadStreamByte> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = StreamKind::from_byte(self.buf[0]).ok_or(BadStreamByte(self.buf[0]))?;
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        // No reservation from the header's length: it comes from the peer, and a bogus one
        // would ask for gigabytes.
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some((kind, self.buf.split_to(len).freeze())))
    }

    /// Take the buffered bytes that were not returned as frames (for a raw-stream fallback).
    pub fn take_pending(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Bytes received but not yet returned as a frame (a truncated tail at end of stream).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        assert_eq!(
            header(StreamKind::Stderr, 0x0102_0304),
            [2, 0, 0, 0, 1, 2, 3, 4]
        );
        let f = encode(StreamKind::Stdout, b"hi\n");
        assert_eq!(&f[..], &[1, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }

    #[test]
    fn demux_byte_by_byte() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(StreamKind::Stdout, b"out"));
        wire.extend_from_slice(&encode(StreamKind::Stderr, b"err!"));
        wire.extend_from_slice(&encode(StreamKind::Stdout, b""));
        let mut d = Demuxer::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().expect("valid") {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                (StreamKind::Stdout, Bytes::from_static(b"out")),
                (StreamKind::Stderr, Bytes::from_static(b"err!")),
                (StreamKind::Stdout, Bytes::new()),
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn demux_many_frames_in_one_chunk_and_partial_tail() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(StreamKind::Stdout, b"a"));
        wire.extend_from_slice(&encode(StreamKind::Stdout, b"b"));
        wire.extend_from_slice(&encode(StreamKind::Stderr, b"ccc")[..5]);
        let mut d = Demuxer::new();
        d.push(&wire);
        assert_eq!(
            d.next_frame().expect("ok").map(|f| f.1),
            Some(Bytes::from_static(b"a"))
        );
        assert_eq!(
            d.next_frame().expect("ok").map(|f| f.1),
            Some(Bytes::from_static(b"b"))
        );
        assert_eq!(d.next_frame().expect("ok"), None);
        assert_eq!(d.pending(), 5);
    }

    #[test]
    fn rejects_raw_stream() {
        let mut d = Demuxer::new();
        d.push(b"hello world");
        assert_eq!(d.next_frame(), Err(BadStreamByte(b'h')));
    }
}
