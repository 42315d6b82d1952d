//! Frame codec of the hub link (worker <-> primary).
//!
//! Every frame on the Unix stream socket is
//! `u32 LE length | kind u8 | fields`, where `length` counts the kind byte and
//! the fields. Integers are little endian, strings are `u16 LE length | UTF-8`,
//! and an adapter frame is the rest of the frame (opaque bytes).
//!
//! | kind | direction | fields |
//! |---|---|---|
//! | `0x01` Hello | worker -> hub | `version u16, worker u32, pid u32, token str` |
//! | `0x02` Publish | worker -> hub | `sender u64, nsp str, frame..` |
//! | `0x03` Send | worker -> hub | `sender u64, target u64, nsp str, frame..` |
//! | `0x04` SessionOpened | worker -> hub | `sid str` |
//! | `0x05` SessionClosed | worker -> hub | `sid str` |
//! | `0x06` WorkerStats | worker -> hub | `version u16, count u16, count × u64` |
//! | `0x81` Welcome | hub -> worker | `version u16, worker u32` |
//! | `0x82` Refused | hub -> worker | `reason str` |
//! | `0x83` Frame | hub -> worker | `from u64, nsp str, frame..` |
//! | `0x84` NodeDown | hub -> worker | `uid u64, nsp str` |
//!
//! The first frame of a link is always Hello, answered by Welcome or Refused.
//!
//! **WorkerStats** (`0x06`, added after version 1 of the protocol, which it
//! leaves at 1): a worker's adapter figures, for the primary's metrics. Its
//! `count` u64 values are the fields of [`WorkerStats`] in their order
//! (`namespaces, nodes, sockets, rooms, pending_requests, frames_in,
//! frames_rejected, local_drops, instance_restarts, link_errors`; version
//! 2 appended `link_errors`); `version` is
//! [`WORKER_STATS_VERSION`]. It is additive: a later version only appends
//! fields, a reader takes the fields it knows and ignores the rest, and
//! fields a sender does not have read as 0. A worker sends it only when its
//! environment has `SIO_CLUSTER_STATS_INTERVAL` (set by a primary that reads
//! it, `run --metrics`), so a hub that predates it never receives it, and a
//! worker that never sends it attaches as before.
//! A frame whose length exceeds the configured maximum, an unknown kind, a
//! truncated field or invalid UTF-8 is a [`CodecError`]; the hub disconnects the
//! peer that sent it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Version of this frame protocol, carried in Hello and Welcome.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default maximum payload of one frame (kind byte + fields): 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Longest string field (namespace, sid, token, reason) in bytes.
pub const MAX_STR: usize = u16::MAX as usize;

/// Version of the [`WorkerStats`] fields this build writes.
pub const WORKER_STATS_VERSION: u16 = 2;

/// Most values a `WorkerStats` frame may carry, in any version: the encoder
/// writes at most this many and the decoder refuses more
/// ([`CodecError::TooManyFields`]), so that each value has one encoding.
pub const MAX_STATS_FIELDS: usize = 256;

/// A worker's adapter figures (`WorkerStats`, kind `0x06`), summed over the
/// namespaces (adapter instances) of the process. Counters count from the
/// worker's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Adapter instances (namespaces) in the process.
    pub namespaces: u64,
    /// Other live nodes each instance knows, summed over the instances.
    pub nodes: u64,
    /// Local sockets, summed over the namespaces.
    pub sockets: u64,
    /// Local rooms, summed over the namespaces.
    pub rooms: u64,
    /// Cluster requests waiting for answers (fetch-sockets, server-side
    /// emit, broadcasts with acks).
    pub pending_requests: u64,
    /// Adapter frames the instances accepted.
    pub frames_in: u64,
    /// Adapter frames refused (malformed, oversize).
    pub frames_rejected: u64,
    /// Packets the server refused for a local socket (buffer full, closing).
    pub local_drops: u64,
    /// Instances replaced after a trap.
    pub instance_restarts: u64,
    /// Adapter frames the worker could not hand to its hub link (the link's
    /// queue full, or the link closed); version 2.
    pub link_errors: u64,
}

impl WorkerStats {
    /// The values in wire order.
    pub fn values(&self) -> [u64; 10] {
        [
            self.namespaces,
            self.nodes,
            self.sockets,
            self.rooms,
            self.pending_requests,
            self.frames_in,
            self.frames_rejected,
            self.local_drops,
            self.instance_restarts,
            self.link_errors,
        ]
    }

    /// From values in wire order; missing ones are 0, extra ones ignored.
    pub fn from_values(v: &[u64]) -> WorkerStats {
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        WorkerStats {
            namespaces: at(0),
            nodes: at(1),
            sockets: at(2),
            rooms: at(3),
            pending_requests: at(4),
            frames_in: at(5),
            frames_rejected: at(6),
            local_drops: at(7),
            instance_restarts: at(8),
            link_errors: at(9),
        }
    }
}

const K_HELLO: u8 = 0x01;
const K_PUBLISH: u8 = 0x02;
const K_SEND: u8 = 0x03;
const K_SESSION_OPENED: u8 = 0x04;
const K_SESSION_CLOSED: u8 = 0x05;
const K_WORKER_STATS: u8 = 0x06;
const K_WELCOME: u8 = 0x81;
const K_REFUSED: u8 = 0x82;
const K_FRAME: u8 = 0x83;
const K_NODE_DOWN: u8 = 0x84;

/// A malformed frame or a frame the peer was not allowed to send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The length prefix exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A zero-length frame (no kind byte).
    #[error("empty frame")]
    Empty,
    /// The kind byte is not one this direction knows.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A field runs past the end of the frame.
    #[error("truncated frame")]
    Truncated,
    /// Bytes left over after the last field of a fixed-size frame.
    #[error("trailing bytes after the last field")]
    Trailing,
    /// A string field is not valid UTF-8.
    #[error("string field is not valid UTF-8")]
    BadUtf8,
    /// A string field is longer than [`MAX_STR`].
    #[error("string field of {0} bytes is too long")]
    StringTooLong(usize),
    /// A `WorkerStats` frame announces more than [`MAX_STATS_FIELDS`] values.
    #[error("{0} stats fields exceed the maximum of {MAX_STATS_FIELDS}")]
    TooManyFields(usize),
}

/// Error while reading one frame from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The underlying I/O failed (including EOF inside a frame).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame was rejected by the codec.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Frames a worker sends to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHub {
    /// First frame of a link.
    Hello {
        /// [`PROTOCOL_VERSION`] of the worker.
        version: u16,
        /// Worker index the worker believes it has (informational in `run` mode).
        worker: u32,
        /// Process id of the worker.
        pid: u32,
        /// Attach token (empty on a private socketpair).
        token: String,
    },
    /// Relay `frame` to every other worker.
    Publish {
        /// Adapter node uid of the sender.
        sender: u64,
        /// Namespace of the sending node.
        nsp: String,
        /// Opaque adapter frame.
        frame: Bytes,
    },
    /// Relay `frame` only to the worker hosting `target`.
    Send {
        /// Adapter node uid of the sender.
        sender: u64,
        /// Adapter node uid of the receiver.
        target: u64,
        /// Namespace of the sending node.
        nsp: String,
        /// Opaque adapter frame.
        frame: Bytes,
    },
    /// An Engine.IO session was opened on this worker.
    SessionOpened {
        /// Engine.IO session id.
        sid: String,
    },
    /// An Engine.IO session on this worker was closed.
    SessionClosed {
        /// Engine.IO session id.
        sid: String,
    },
    /// The worker's adapter figures (see the module docs).
    WorkerStats {
        /// Version of the sender's field list.
        version: u16,
        /// The values, in wire order (a later version may send more).
        values: Vec<u64>,
    },
}

/// Frames the hub sends to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromHub {
    /// Hello accepted.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the hub.
        version: u16,
        /// Worker index the hub assigned (or echoed).
        worker: u32,
    },
    /// Hello refused; the hub closes the link after this frame.
    Refused {
        /// Human-readable reason.
        reason: String,
    },
    /// An adapter frame from another node.
    Frame {
        /// Uid of the sending node.
        from: u64,
        /// Namespace of the sending node.
        nsp: String,
        /// Opaque adapter frame.
        frame: Bytes,
    },
    /// The node `uid` of namespace `nsp` is gone (its worker's link closed).
    NodeDown {
        /// Uid of the node that left.
        uid: u64,
        /// Its namespace.
        nsp: String,
    },
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Callers validate the length with `check_str` before encoding; clamp as a
    // last resort so the encoder itself never panics.
    let len = s.len().min(MAX_STR);
    buf.put_u16_le(len as u16);
    buf.put_slice(&s.as_bytes()[..len]);
}

/// Checks that `s` fits in a string field.
pub fn check_str(s: &str) -> Result<(), CodecError> {
    if s.len() > MAX_STR {
        Err(CodecError::StringTooLong(s.len()))
    } else {
        Ok(())
    }
}

fn start(kind: u8, capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(5 + capacity);
    buf.put_u32_le(0);
    buf.put_u8(kind);
    buf
}

fn finish(mut buf: BytesMut) -> Bytes {
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf.freeze()
}

fn get_u16(b: &mut Bytes) -> Result<u16, CodecError> {
    if b.remaining() < 2 {
        return Err(CodecError::Truncated);
    }
    Ok(b.get_u16_le())
}

fn get_u32(b: &mut Bytes) -> Result<u32, CodecError> {
    if b.remaining() < 4 {
        return Err(CodecError::Truncated);
    }
    Ok(b.get_u32_le())
}

fn get_u64(b: &mut Bytes) -> Result<u64, CodecError> {
    if b.remaining() < 8 {
        return Err(CodecError::Truncated);
    }
    Ok(b.get_u64_le())
}

fn get_str(b: &mut Bytes) -> Result<String, CodecError> {
    let len = get_u16(b)? as usize;
    if b.remaining() < len {
        return Err(CodecError::Truncated);
    }
    let raw = b.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| CodecError::BadUtf8)
}

fn end(b: &Bytes) -> Result<(), CodecError> {
    if b.has_remaining() {
        Err(CodecError::Trailing)
    } else {
        Ok(())
    }
}

fn split_kind(mut payload: Bytes) -> Result<(u8, Bytes), CodecError> {
    if payload.is_empty() {
        return Err(CodecError::Empty);
    }
    let kind = payload.get_u8();
    Ok((kind, payload))
}

impl ToHub {
    /// Encodes the frame, length prefix included.
    pub fn encode(&self) -> Bytes {
        match self {
            ToHub::Hello {
                version,
                worker,
                pid,
                token,
            } => {
                let mut b = start(K_HELLO, 12 + token.len());
                b.put_u16_le(*version);
                b.put_u32_le(*worker);
                b.put_u32_le(*pid);
                put_str(&mut b, token);
                finish(b)
            }
            ToHub::Publish { sender, nsp, frame } => {
                let mut b = start(K_PUBLISH, 10 + nsp.len() + frame.len());
                b.put_u64_le(*sender);
                put_str(&mut b, nsp);
                b.put_slice(frame);
                finish(b)
            }
            ToHub::Send {
                sender,
                target,
                nsp,
                frame,
            } => {
                let mut b = start(K_SEND, 18 + nsp.len() + frame.len());
                b.put_u64_le(*sender);
                b.put_u64_le(*target);
                put_str(&mut b, nsp);
                b.put_slice(frame);
                finish(b)
            }
            ToHub::SessionOpened { sid } => {
                let mut b = start(K_SESSION_OPENED, 2 + sid.len());
                put_str(&mut b, sid);
                finish(b)
            }
            ToHub::SessionClosed { sid } => {
                let mut b = start(K_SESSION_CLOSED, 2 + sid.len());
                put_str(&mut b, sid);
                finish(b)
            }
            ToHub::WorkerStats { version, values } => {
                let n = values.len().min(MAX_STATS_FIELDS);
                let mut b = start(K_WORKER_STATS, 4 + 8 * n);
                b.put_u16_le(*version);
                b.put_u16_le(n as u16);
                for v in &values[..n] {
                    b.put_u64_le(*v);
                }
                finish(b)
            }
        }
    }

    /// Decodes a payload (kind byte + fields, without the length prefix).
    pub fn decode(payload: Bytes) -> Result<ToHub, CodecError> {
        let (kind, mut b) = split_kind(payload)?;
        let msg = match kind {
            K_HELLO => {
                let version = get_u16(&mut b)?;
                let worker = get_u32(&mut b)?;
                let pid = get_u32(&mut b)?;
                let token = get_str(&mut b)?;
                end(&b)?;
                ToHub::Hello {
                    version,
                    worker,
                    pid,
                    token,
                }
            }
            K_PUBLISH => {
                let sender = get_u64(&mut b)?;
                let nsp = get_str(&mut b)?;
                ToHub::Publish {
                    sender,
                    nsp,
                    frame: b,
                }
            }
            K_SEND => {
                let sender = get_u64(&mut b)?;
                let target = get_u64(&mut b)?;
                let nsp = get_str(&mut b)?;
                ToHub::Send {
                    sender,
                    target,
                    nsp,
                    frame: b,
                }
            }
            K_SESSION_OPENED => {
                let sid = get_str(&mut b)?;
                end(&b)?;
                ToHub::SessionOpened { sid }
            }
            K_SESSION_CLOSED => {
                let sid = get_str(&mut b)?;
                end(&b)?;
                ToHub::SessionClosed { sid }
            }
            K_WORKER_STATS => {
                let version = get_u16(&mut b)?;
                let n = get_u16(&mut b)? as usize;
                if n > MAX_STATS_FIELDS {
                    return Err(CodecError::TooManyFields(n));
                }
                if b.remaining() < 8 * n {
                    return Err(CodecError::Truncated);
                }
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(get_u64(&mut b)?);
                }
                end(&b)?;
                ToHub::WorkerStats { version, values }
            }
            other => return Err(CodecError::UnknownKind(other)),
        };
        Ok(msg)
    }
}

impl FromHub {
    /// Encodes the frame, length prefix included.
    pub fn encode(&self) -> Bytes {
        match self {
            FromHub::Welcome { version, worker } => {
                let mut b = start(K_WELCOME, 6);
                b.put_u16_le(*version);
                b.put_u32_le(*worker);
                finish(b)
            }
            FromHub::Refused { reason } => {
                let mut b = start(K_REFUSED, 2 + reason.len());
                put_str(&mut b, reason);
                finish(b)
            }
            FromHub::Frame { from, nsp, frame } => {
                let mut b = start(K_FRAME, 10 + nsp.len() + frame.len());
                b.put_u64_le(*from);
                put_str(&mut b, nsp);
                b.put_slice(frame);
                finish(b)
            }
            FromHub::NodeDown { uid, nsp } => {
                let mut b = start(K_NODE_DOWN, 10 + nsp.len());
                b.put_u64_le(*uid);
                put_str(&mut b, nsp);
                finish(b)
            }
        }
    }

    /// Decodes a payload (kind byte + fields, without the length prefix).
    pub fn decode(payload: Bytes) -> Result<FromHub, CodecError> {
        let (kind, mut b) = split_kind(payload)?;
        let msg = match kind {
            K_WELCOME => {
                let version = get_u16(&mut b)?;
                let worker = get_u32(&mut b)?;
                end(&b)?;
                FromHub::Welcome { version, worker }
            }
            K_REFUSED => {
                let reason = get_str(&mut b)?;
                end(&b)?;
                FromHub::Refused { reason }
            }
            K_FRAME => {
                let from = get_u64(&mut b)?;
                let nsp = get_str(&mut b)?;
                FromHub::Frame {
                    from,
                    nsp,
                    frame: b,
                }
            }
            K_NODE_DOWN => {
                let uid = get_u64(&mut b)?;
                let nsp = get_str(&mut b)?;
                end(&b)?;
                FromHub::NodeDown { uid, nsp }
            }
            other => return Err(CodecError::UnknownKind(other)),
        };
        Ok(msg)
    }
}

/// Reads one frame payload (kind byte + fields).
///
/// Returns `Ok(None)` on a clean EOF between frames. The payload buffer grows
/// as bytes arrive, so an announced length alone cannot make it allocate more
/// than what the peer actually sent (bounded by `max`).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len_buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let len = u32::from_le_bytes(len_buf) as usize;
    if len == 0 {
        return Err(CodecError::Empty.into());
    }
    if len > max {
        return Err(CodecError::TooLarge { len, max }.into());
    }
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    let n = (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
    if n < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(Bytes::from(payload)))
}

/// Bytes [`FrameReader::fill`] asks the socket for at least, per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// Frames read from a stream in large chunks: one read may bring many
/// frames, which are then taken out of the buffer without further I/O.
///
/// The buffer grows only with the bytes the peer actually sent (at most
/// [`READ_CHUNK`] beyond them), never with an announced length alone.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    /// A reader that refuses frames whose payload exceeds `max`.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Length (prefix included) of the complete frame at the front of the
    /// buffer; `None` while more bytes are needed. An empty or oversize
    /// length prefix is an error as soon as its 4 bytes are in.
    pub fn frame_len(&self) -> Result<Option<usize>, CodecError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 {
            return Err(CodecError::Empty);
        }
        if len > self.max {
            return Err(CodecError::TooLarge { len, max: self.max });
        }
        if self.buf.len() - 4 < len {
            return Ok(None);
        }
        Ok(Some(4 + len))
    }

    /// The first `n` buffered bytes (a frame measured by [`Self::frame_len`]).
    pub fn peek_mut(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.buf.len());
        &mut self.buf[..n]
    }

    /// Drops the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
    }

    /// Takes the first `n` buffered bytes out without copying them.
    pub fn take(&mut self, n: usize) -> BytesMut {
        let n = n.min(self.buf.len());
        self.buf.split_to(n)
    }

    /// Reads whatever the stream has (up to the free space, at least
    /// [`READ_CHUNK`]). `Ok(false)` on EOF between frames; EOF inside a frame
    /// is an `UnexpectedEof` error.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK);
        }
        let n = r.read_buf(&mut self.buf).await?;
        if n == 0 {
            if self.buf.is_empty() {
                return Ok(false);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        Ok(true)
    }

    /// Reads one frame payload (kind byte + fields), as [`read_frame`] does.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(n) = self.frame_len()? {
                let mut frame = self.take(n);
                frame.advance(4);
                return Ok(Some(frame.freeze()));
            }
            if !self.fill(r).await? {
                return Ok(None);
            }
        }
    }
}

/// The routing header of a `Publish` or `Send` frame, read without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHeader {
    /// Adapter node uid of the sender.
    pub sender: u64,
    /// `Some(target)` for `Send`, `None` for `Publish`.
    pub target: Option<u64>,
    /// Offset and length of the namespace (valid UTF-8) in the payload.
    pub nsp: (usize, usize),
    /// Offset of the adapter frame in the payload.
    pub body: usize,
}

impl RelayHeader {
    /// Parses the header of a worker -> hub payload (kind byte + fields).
    /// `Ok(None)` for the kinds that are not relayed (decode those with
    /// [`ToHub::decode`]); errors as [`ToHub::decode`] gives them.
    pub fn parse(payload: &[u8]) -> Result<Option<RelayHeader>, CodecError> {
        let (&kind, rest) = payload.split_first().ok_or(CodecError::Empty)?;
        let fixed = match kind {
            K_PUBLISH => 8,
            K_SEND => 16,
            K_HELLO | K_SESSION_OPENED | K_SESSION_CLOSED | K_WORKER_STATS => return Ok(None),
            other => return Err(CodecError::UnknownKind(other)),
        };
        let head = rest.get(..fixed + 2).ok_or(CodecError::Truncated)?;
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let sender = word(0);
        let target = (kind == K_SEND).then(|| word(8));
        let nsp_len = u16::from_le_bytes([head[fixed], head[fixed + 1]]) as usize;
        let nsp_at = 1 + fixed + 2;
        let nsp = payload
            .get(nsp_at..nsp_at + nsp_len)
            .ok_or(CodecError::Truncated)?;
        std::str::from_utf8(nsp).map_err(|_| CodecError::BadUtf8)?;
        Ok(Some(RelayHeader {
            sender,
            target,
            nsp: (nsp_at, nsp_len),
            body: nsp_at + nsp_len,
        }))
    }
}

/// Appends an encoded `ToHub::Publish` (or `ToHub::Send` with a `target`)
/// to `buf`, the same bytes as [`ToHub::encode`]. The caller checks
/// `nsp` with [`check_str`] and the size with [`relay_len`].
pub fn put_relay<B: BufMut>(
    buf: &mut B,
    sender: u64,
    target: Option<u64>,
    nsp: &str,
    frame: &[u8],
) {
    let len = relay_len(target.is_some(), nsp.len(), frame.len());
    buf.put_u32_le(len as u32);
    match target {
        None => {
            buf.put_u8(K_PUBLISH);
            buf.put_u64_le(sender);
        }
        Some(t) => {
            buf.put_u8(K_SEND);
            buf.put_u64_le(sender);
            buf.put_u64_le(t);
        }
    }
    let nsp_len = nsp.len().min(MAX_STR);
    buf.put_u16_le(nsp_len as u16);
    buf.put_slice(&nsp.as_bytes()[..nsp_len]);
    buf.put_slice(frame);
}

/// Payload length (kind byte + fields) of a `Publish` (`send` false) or a
/// `Send` frame.
pub fn relay_len(send: bool, nsp_len: usize, frame_len: usize) -> usize {
    1 + 8 + if send { 8 } else { 0 } + 2 + nsp_len + frame_len
}

/// Kind byte of a hub -> worker `Frame`.
pub const FRAME_KIND: u8 = K_FRAME;

/// The header of a hub -> worker `Frame` payload, read without copying:
/// `Ok(Some((from, nsp, body offset)))`, `Ok(None)` for other kinds.
pub fn parse_frame_header(payload: &[u8]) -> Result<Option<(u64, &str, usize)>, CodecError> {
    let (&kind, rest) = payload.split_first().ok_or(CodecError::Empty)?;
    if kind != K_FRAME {
        return Ok(None);
    }
    let head = rest.get(..10).ok_or(CodecError::Truncated)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(&head[..8]);
    let from = u64::from_le_bytes(w);
    let nsp_len = u16::from_le_bytes([head[8], head[9]]) as usize;
    let nsp = payload.get(11..11 + nsp_len).ok_or(CodecError::Truncated)?;
    let nsp = std::str::from_utf8(nsp).map_err(|_| CodecError::BadUtf8)?;
    Ok(Some((from, nsp, 11 + nsp_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(encoded: Bytes) -> Bytes {
        let len = u32::from_le_bytes([encoded[0], encoded[1], encoded[2], encoded[3]]) as usize;
        assert_eq!(len, encoded.len() - 4);
        encoded.slice(4..)
    }

    #[test]
    fn to_hub_roundtrip() {
        let msgs = [
            ToHub::Hello {
                version: 1,
                worker: 7,
                pid: 42,
                token: "abc".into(),
            },
            ToHub::Publish {
                sender: u64::MAX,
                nsp: "/".into(),
                frame: Bytes::from_static(b"\x00\x01hello"),
            },
            ToHub::Send {
                sender: 1,
                target: 2,
                nsp: "/admin".into(),
                frame: Bytes::new(),
            },
            ToHub::SessionOpened { sid: "s1".into() },
            ToHub::SessionClosed { sid: "s1".into() },
            ToHub::WorkerStats {
                version: WORKER_STATS_VERSION,
                values: WorkerStats::default().values().to_vec(),
            },
            ToHub::WorkerStats {
                version: 9,
                values: vec![u64::MAX; 12],
            },
        ];
        for m in msgs {
            assert_eq!(ToHub::decode(payload(m.encode())).unwrap(), m);
        }
    }

    /// Found by `fuzz/run.sh` (link_codec, crash-62f95bc0): a WorkerStats
    /// frame is not relayed, and a count over the cap is refused so that a
    /// decoded frame re-encodes to its input.
    #[test]
    fn worker_stats_edges() {
        let empty = Bytes::from_static(&[0x06, 36, 0, 0, 0]);
        assert_eq!(RelayHeader::parse(&empty).unwrap(), None);
        let m = ToHub::decode(empty.clone()).unwrap();
        assert_eq!(
            m,
            ToHub::WorkerStats {
                version: 36,
                values: vec![]
            }
        );
        assert_eq!(payload(m.encode()), empty);
        let n = MAX_STATS_FIELDS + 1;
        let mut over = vec![0x06, 1, 0];
        over.extend_from_slice(&(n as u16).to_le_bytes());
        over.resize(over.len() + 8 * n, 0);
        assert_eq!(
            ToHub::decode(Bytes::from(over)),
            Err(CodecError::TooManyFields(n))
        );
        let at_cap = ToHub::WorkerStats {
            version: 1,
            values: vec![7; MAX_STATS_FIELDS],
        };
        assert_eq!(ToHub::decode(payload(at_cap.encode())).unwrap(), at_cap);
    }

    #[test]
    fn from_hub_roundtrip() {
        let msgs = [
            FromHub::Welcome {
                version: 1,
                worker: 3,
            },
            FromHub::Refused {
                reason: "bad token".into(),
            },
            FromHub::Frame {
                from: 9,
                nsp: "/".into(),
                frame: Bytes::from_static(&[0xff; 100]),
            },
            FromHub::NodeDown {
                uid: 5,
                nsp: "/x".into(),
            },
        ];
        for m in msgs {
            assert_eq!(FromHub::decode(payload(m.encode())).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(ToHub::decode(Bytes::new()), Err(CodecError::Empty));
        assert_eq!(
            ToHub::decode(Bytes::from_static(&[0x99])),
            Err(CodecError::UnknownKind(0x99))
        );
        assert_eq!(
            ToHub::decode(Bytes::from_static(&[K_PUBLISH, 1, 2])),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            ToHub::decode(Bytes::from_static(&[K_SESSION_OPENED, 2, 0, 0xff, 0xfe])),
            Err(CodecError::BadUtf8)
        );
        assert_eq!(
            ToHub::decode(Bytes::from_static(&[K_SESSION_OPENED, 0, 0, 1])),
            Err(CodecError::Trailing)
        );
        // A hub-only kind is unknown in the worker -> hub direction.
        assert_eq!(
            ToHub::decode(Bytes::from_static(&[K_WELCOME, 1, 0, 0, 0, 0, 0])),
            Err(CodecError::UnknownKind(K_WELCOME))
        );
    }

    #[tokio::test]
    async fn read_frame_limits() {
        let frame = ToHub::SessionOpened { sid: "x".into() }.encode();
        let mut two = frame.to_vec();
        two.extend_from_slice(&frame);
        let mut r = &two[..];
        assert!(read_frame(&mut r, 100).await.unwrap().is_some());
        assert!(read_frame(&mut r, 100).await.unwrap().is_some());
        assert!(read_frame(&mut r, 100).await.unwrap().is_none());

        let mut r = &frame[..];
        match read_frame(&mut r, 2).await {
            Err(ReadError::Codec(CodecError::TooLarge { len: 4, max: 2 })) => {}
            other => panic!("unexpected {other:?}"),
        }

        let mut r = &frame[..frame.len() - 1];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(ReadError::Io(_))
        ));
        let mut r = &frame[..2];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(ReadError::Io(_))
        ));
    }
}
