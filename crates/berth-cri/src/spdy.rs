//! SPDY/3.1, the server side, as Kubernetes' streaming clients speak it (client-go's
//! `remotecommand` and `portforward` over `moby/spdystream`): after an HTTP upgrade the client
//! opens streams (SYN_STREAM with headers such as `streamtype: stdout`), which the server
//! accepts with SYN_REPLY; both send DATA frames, FIN ends a direction. Header blocks are zlib
//! streams with the protocol's dictionary, one compression context per direction for the whole
//! connection. The clients never send WINDOW_UPDATE, so there is no flow control to honour.
//!
//! [`accept`] splits a connection into a reader task (frames in: new streams, data, pings) and
//! a writer task (frames out); the caller receives each new [`Stream`] from a channel.

use std::collections::HashMap;
use std::io;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream was cancelled.
const CANCEL: u32 = 5;
/// A frame's payload we accept (SPDY allows 2^24 - 1; clients send far less).
const MAX_FRAME: usize = 1 << 24;
/// Outgoing DATA frames carry at most this much.
const DATA_CHUNK: usize = 32 << 10;

/// The words of SPDY/3's header compression dictionary (each written with a 4-byte length)
/// and the text that ends it, as the protocol's specification gives them.
const DICT_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICT_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1424);
    for w in DICT_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICT_TAIL.as_bytes());
    d
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The decompressing side of the header blocks the client sends.
struct Inflater {
    z: Decompress,
    dict: Vec<u8>,
}

impl Inflater {
    fn new(dict: Vec<u8>) -> Self {
        Inflater {
            z: Decompress::new(true),
            dict,
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            out.reserve(4096);
            let (before_in, before_out) = (self.z.total_in(), out.len());
            let r = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&self.dict)
                        .map_err(|e| bad(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(bad(format!("header block: {e}"))),
                Ok(_) => {
                    // Everything taken and the output was not cut short by its buffer.
                    if input.is_empty() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                    if used == 0 && out.len() == before_out {
                        return Err(bad("header block: no progress"));
                    }
                }
            }
            if out.len() > MAX_FRAME {
                return Err(bad("header block too large"));
            }
        }
    }
}

/// The compressing side of the header blocks we send.
struct Deflater {
    z: Compress,
}

impl Deflater {
    fn new(dict: &[u8]) -> io::Result<Self> {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(dict)
            .map_err(|e| bad(format!("header dictionary: {e}")))?;
        Ok(Deflater { z })
    }

    fn deflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before_in = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| bad(format!("header block: {e}")))?;
            input = &input[(self.z.total_in() - before_in) as usize..];
            // Done when all input is taken and the flush did not fill the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Encodes a header block (before compression): count, then each name and value.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (k, v) in headers {
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// Decodes a header block; names are lower-case, a value keeps its first part (SPDY separates
/// multiple values with NUL).
fn parse_header_block(b: &[u8]) -> io::Result<HashMap<String, String>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
        if b.len() < n {
            return Err(bad("truncated header block"));
        }
        let (x, rest) = b.split_at(n);
        *b = rest;
        Ok(x)
    }
    fn u32_of(b: &mut &[u8]) -> io::Result<usize> {
        let x = take(b, 4)?;
        Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
    }
    let mut b = b;
    let n = u32_of(&mut b)?;
    let mut h = HashMap::new();
    for _ in 0..n {
        let kl = u32_of(&mut b)?;
        let k = String::from_utf8_lossy(take(&mut b, kl)?).to_ascii_lowercase();
        let vl = u32_of(&mut b)?;
        let v = take(&mut b, vl)?;
        let v = v.split(|c| *c == 0).next().unwrap_or_default();
        h.insert(k, String::from_utf8_lossy(v).into_owned());
    }
    Ok(h)
}

enum Out {
    Reply(u32),
    Data(u32, Bytes, bool),
    Reset(u32),
    Ping(u32),
    GoAway,
}

fn control(typ: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&typ.to_be_bytes());
    f.extend_from_slice(&((flags as u32) << 24 | payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn data_frame(id: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&((flags as u32) << 24 | payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A handle for sending frames on the connection.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Out>,
}

impl Writer {
    fn send(&self, o: Out) -> io::Result<()> {
        self.tx
            .send(o)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }

    /// GOAWAY, then the connection's write side is closed.
    pub fn go_away(&self) {
        let _ = self.send(Out::GoAway);
    }
}

/// One stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: HashMap<String, String>,
    data: mpsc::UnboundedReceiver<Bytes>,
    tx: StreamSender,
}

impl Stream {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The next piece of what the client sent; `None` once it finished (or the connection
    /// went away).
    pub async fn read(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }

    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.tx.write(data)
    }

    /// Our side is done (DATA with FIN).
    pub fn close(&self) {
        self.tx.close()
    }

    pub fn reset(&self) {
        let _ = self.tx.out.send(Out::Reset(self.id));
    }

    /// Splits off the sending side, for a task of its own.
    pub fn sender(&self) -> StreamSender {
        self.tx.clone()
    }
}

/// The sending side of a stream.
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    out: Writer,
}

impl StreamSender {
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(DATA_CHUNK) {
            self.out
                .send(Out::Data(self.id, Bytes::copy_from_slice(chunk), false))?;
        }
        Ok(())
    }

    pub fn close(&self) {
        let _ = self.out.send(Out::Data(self.id, Bytes::new(), true));
    }
}

/// Serves SPDY on an upgraded connection: new streams arrive on the returned receiver (it ends
/// when the connection does); the writer sends GOAWAY at the end.
pub fn accept<IO>(io: IO) -> (mpsc::UnboundedReceiver<Stream>, Writer)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (new_tx, new_rx) = mpsc::unbounded_channel();
    let writer = Writer { tx: out_tx };
    let dict = dictionary();
    let d2 = dict.clone();
    tokio::spawn(async move {
        if let Err(e) = write_loop(wr, out_rx, &d2).await {
            tracing::debug!("spdy: write side ended: {e}");
        }
    });
    let w = writer.clone();
    tokio::spawn(async move {
        if let Err(e) = read_loop(rd, new_tx, w, dict).await {
            tracing::debug!("spdy: read side ended: {e}");
        }
    });
    (new_rx, writer)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    dict: &[u8],
) -> io::Result<()> {
    let mut deflater = Deflater::new(dict)?;
    while let Some(o) = rx.recv().await {
        let frame = match o {
            Out::Reply(id) => {
                let block = deflater.deflate(&header_block(&[]))?;
                let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&block);
                control(SYN_REPLY, 0, &p)
            }
            Out::Data(id, d, fin) => data_frame(id, if fin { FLAG_FIN } else { 0 }, &d),
            Out::Reset(id) => {
                let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&CANCEL.to_be_bytes());
                control(RST_STREAM, 0, &p)
            }
            Out::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Out::GoAway => {
                let mut p = 0u32.to_be_bytes().to_vec();
                p.extend_from_slice(&0u32.to_be_bytes());
                wr.write_all(&control(GOAWAY, 0, &p)).await?;
                wr.flush().await?;
                break;
            }
        };
        wr.write_all(&frame).await?;
        // Batch what is queued already into one flush.
        if rx.is_empty() {
            wr.flush().await?;
        }
    }
    wr.shutdown().await
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    new_streams: mpsc::UnboundedSender<Stream>,
    out: Writer,
    dict: Vec<u8>,
) -> io::Result<()> {
    let mut inflater = Inflater::new(dict);
    let mut streams: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    let mut head = [0u8; 8];
    let mut buf = BytesMut::new();
    loop {
        if let Err(e) = rd.read_exact(&mut head).await {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(bad("frame too large"));
        }
        buf.resize(len, 0);
        rd.read_exact(&mut buf).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if let Some(tx) = streams.get(&id) {
                if !buf.is_empty() {
                    let _ = tx.send(buf.split().freeze());
                }
            }
            if flags & FLAG_FIN != 0 {
                streams.remove(&id);
            }
            continue;
        }
        let typ = u16::from_be_bytes([head[2], head[3]]);
        let id_at = |b: &[u8]| -> io::Result<u32> {
            b.get(0..4)
                .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) & 0x7fff_ffff)
                .ok_or_else(|| bad("short control frame"))
        };
        match typ {
            SYN_STREAM => {
                let id = id_at(&buf)?;
                if buf.len() < 10 {
                    return Err(bad("short SYN_STREAM"));
                }
                let headers = parse_header_block(&inflater.inflate(&buf[10..])?)?;
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    streams.insert(id, tx);
                }
                out.send(Out::Reply(id))?;
                let s = Stream {
                    id,
                    headers,
                    data: rx,
                    tx: StreamSender {
                        id,
                        out: out.clone(),
                    },
                };
                if new_streams.send(s).is_err() {
                    // Nobody takes streams any more.
                    out.send(Out::Reset(id))?;
                }
            }
            RST_STREAM => {
                streams.remove(&id_at(&buf)?);
            }
            PING => out.send(Out::Ping(id_at(&buf)?))?,
            GOAWAY => return Ok(()),
            // SYN_REPLY and HEADERS carry header blocks: keep the inflater in step.
            SYN_REPLY | 8 if buf.len() > 4 => {
                inflater.inflate(&buf[4..])?;
            }
            // SETTINGS, WINDOW_UPDATE, NOOP: nothing for us to do.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(d: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for x in d {
            a = (a + *x as u32) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn the_dictionary_is_the_protocols() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(adler32(&d), 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_through_one_compression_context() {
        let dict = dictionary();
        let mut def = Deflater::new(&dict).unwrap();
        let mut inf = Inflater::new(dict);
        for (i, hs) in [
            vec![("streamType", "error")],
            vec![("streamtype", "data"), ("port", "80"), ("requestID", "0")],
            vec![],
        ]
        .iter()
        .enumerate()
        {
            let z = def.deflate(&header_block(hs)).unwrap();
            let h = parse_header_block(&inf.inflate(&z).unwrap()).unwrap();
            assert_eq!(h.len(), hs.len(), "block {i}");
            for (k, v) in hs {
                assert_eq!(h[&k.to_ascii_lowercase()], *v);
            }
        }
        assert!(parse_header_block(&[0, 0, 0, 2, 0, 0]).is_err());
    }

    /// A client's side of the wire, written out by hand.
    fn syn_stream(def: &mut Deflater, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&def.deflate(&header_block(headers)).unwrap());
        control(SYN_STREAM, 0, &p)
    }

    #[tokio::test]
    async fn streams_data_fin_and_pings() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut new, w) = accept(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut def = Deflater::new(&dictionary()).unwrap();
        cwr.write_all(&syn_stream(&mut def, 1, &[("streamtype", "stdin")]))
            .await
            .unwrap();
        cwr.write_all(&control(PING, 0, &7u32.to_be_bytes()))
            .await
            .unwrap();
        cwr.write_all(&data_frame(1, 0, b"hello")).await.unwrap();
        cwr.write_all(&data_frame(1, FLAG_FIN, b"")).await.unwrap();
        let mut s = new.recv().await.unwrap();
        assert_eq!((s.id, s.header("streamtype")), (1, "stdin"));
        assert_eq!(&s.read().await.unwrap()[..], b"hello");
        assert!(s.read().await.is_none());
        s.write(b"out").unwrap();
        s.close();
        w.go_away();
        let mut got = Vec::new();
        crd.read_to_end(&mut got).await.unwrap();
        // SYN_REPLY, PING echo, DATA "out", DATA FIN, GOAWAY.
        assert_eq!(u16::from_be_bytes([got[2], got[3]]), SYN_REPLY);
        let mut inf = Inflater::new(dictionary());
        let len = u32::from_be_bytes([0, got[5], got[6], got[7]]) as usize;
        assert!(parse_header_block(&inf.inflate(&got[12..8 + len]).unwrap())
            .unwrap()
            .is_empty());
        let rest = &got[8 + len..];
        assert_eq!(&rest[..8], &control(PING, 0, &7u32.to_be_bytes())[..8]);
        assert_eq!(&rest[12..23], &data_frame(1, 0, b"out")[..]);
        assert_eq!(&rest[23..31], &data_frame(1, FLAG_FIN, b"")[..]);
        assert_eq!(u16::from_be_bytes([rest[33], rest[34]]), GOAWAY);
        assert_eq!(rest.len(), 31 + 16);
    }
}
