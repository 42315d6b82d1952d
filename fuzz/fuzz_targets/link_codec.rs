//! The hub link codec (`sio_cluster_host::link::ipc`), both directions:
//! the payload decoders (`ToHub::decode`, worker -> hub; `FromHub::decode`,
//! hub -> worker), the zero-copy headers the hub and the worker read first
//! (`RelayHeader::parse`, `parse_frame_header`), and the stream readers
//! (`FrameReader`, `read_frame`) over the input cut into arbitrary reads.
//!
//! Invariants: no panic; a decoded payload re-encodes to exactly its input
//! (one encoding per value); each zero-copy header agrees with the full
//! decoder; `FrameReader` (any read sizes) and `read_frame` yield the same
//! frames and stop at the same point as a plain reading of the stream, and
//! never hold a frame over the maximum.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sio_cluster_host::link::ipc::{
    self, CodecError, FrameReader, FromHub, ReadError, RelayHeader, ToHub,
};
use tokio::io::{AsyncRead, ReadBuf};

/// The input: 2 bytes of frame size cap (little endian, taken modulo
/// 4096), 1 byte `k`, `k` read sizes (0 is taken as 1; none: one read takes
/// all), then the stream. Plain bytes, so that seeds are the shared link
/// vectors (`host/node/test/vectors/link.json`) behind a 3-byte header.
struct Input<'a> {
    max: u16,
    reads: &'a [u8],
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Input<'a>> {
        let (head, rest) = bytes.split_at_checked(3)?;
        let k = head[2] as usize;
        let (reads, data) = rest.split_at_checked(k.min(rest.len()))?;
        Some(Input {
            max: u16::from_le_bytes([head[0], head[1]]),
            reads,
            data,
        })
    }
}

/// A stream that hands out `data` in reads of the given sizes.
struct Chunked<'a> {
    data: &'a [u8],
    reads: &'a [u8],
    turn: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.reads.get(self.turn % self.reads.len().max(1)) {
            Some(&s) => s.max(1) as usize,
            None => usize::MAX,
        };
        self.turn += 1;
        let n = size.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// How reading a stream ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Eof,
    Empty,
    TooLarge,
}

/// The stream read by hand: frames, then how it ends.
fn plain(data: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        if rest.len() < 4 {
            return (frames, End::Eof);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 {
            return (frames, End::Empty);
        }
        if len > max {
            return (frames, End::TooLarge);
        }
        if rest.len() - 4 < len {
            return (frames, End::Eof);
        }
        frames.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
}

fn end_of(e: &ReadError) -> End {
    match e {
        ReadError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => End::Eof,
        ReadError::Codec(CodecError::Empty) => End::Empty,
        ReadError::Codec(CodecError::TooLarge { .. }) => End::TooLarge,
        other => panic!("unexpected stream error {other:?}"),
    }
}

fn check_payload(p: &[u8]) {
    let prefixed = |p: &[u8]| {
        let mut v = (p.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(p);
        v
    };
    let to_hub = ToHub::decode(Bytes::copy_from_slice(p));
    if let Ok(v) = &to_hub {
        assert_eq!(
            v.encode().as_ref(),
            prefixed(p).as_slice(),
            "ToHub re-encodes to its input"
        );
    }
    match (RelayHeader::parse(p), &to_hub) {
        (Ok(Some(h)), Ok(ToHub::Publish { sender, nsp, frame })) => {
            assert_eq!((h.sender, h.target), (*sender, None));
            assert_eq!(&p[h.nsp.0..h.nsp.0 + h.nsp.1], nsp.as_bytes());
            assert_eq!(&p[h.body..], frame.as_ref());
        }
        (
            Ok(Some(h)),
            Ok(ToHub::Send {
                sender,
                target,
                nsp,
                frame,
            }),
        ) => {
            assert_eq!((h.sender, h.target), (*sender, Some(*target)));
            assert_eq!(&p[h.nsp.0..h.nsp.0 + h.nsp.1], nsp.as_bytes());
            assert_eq!(&p[h.body..], frame.as_ref());
        }
        (
            Ok(None),
            Ok(
                ToHub::Hello { .. }
                | ToHub::SessionOpened { .. }
                | ToHub::SessionClosed { .. }
                | ToHub::WorkerStats { .. },
            ),
        ) => {}
        (Ok(None), Err(_)) => {} // not relayed; the full decoder refuses it
        (Err(a), Err(b)) => assert_eq!(&a, b, "header and decoder refuse alike"),
        (h, d) => panic!("relay header {h:?} disagrees with the decoder {d:?}"),
    }
    let from_hub = FromHub::decode(Bytes::copy_from_slice(p));
    if let Ok(v) = &from_hub {
        assert_eq!(
            v.encode().as_ref(),
            prefixed(p).as_slice(),
            "FromHub re-encodes to its input"
        );
    }
    match (ipc::parse_frame_header(p), &from_hub) {
        (Ok(Some((from_, nsp_, at))), Ok(FromHub::Frame { from, nsp, frame })) => {
            assert_eq!((from_, nsp_), (*from, nsp.as_str()));
            assert_eq!(&p[at..], frame.as_ref());
        }
        (Ok(Some(_)), other) => panic!("frame header of {other:?}"),
        (Ok(None), Ok(FromHub::Frame { .. })) => panic!("no frame header for a Frame"),
        (Ok(None), _) => {}
        (Err(_), Ok(v)) => panic!("frame header refused what decodes as {v:?}"),
        (Err(_), Err(_)) => {}
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some(input) = Input::parse(bytes) else {
        return;
    };
    let max = input.max as usize % 4096;
    check_payload(input.data);
    let (want, want_end) = plain(input.data, max);
    for f in &want {
        check_payload(f);
    }
    runtime().block_on(async {
        // FrameReader, reads of the given sizes.
        let mut stream = Chunked {
            data: input.data,
            reads: input.reads,
            turn: 0,
        };
        let mut reader = FrameReader::new(max);
        let mut got = Vec::new();
        let end = loop {
            match reader.read_frame(&mut stream).await {
                Ok(Some(f)) => {
                    assert!(f.len() <= max, "a frame over the maximum");
                    got.push(f)
                }
                Ok(None) => break End::Clean,
                Err(e) => break end_of(&e),
            }
        };
        assert_eq!(got.len(), want.len(), "FrameReader frame count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.as_ref(), *w);
        }
        assert_eq!(end, want_end, "FrameReader ends as the stream");
        // read_frame, one frame at a time.
        let mut stream = Chunked {
            data: input.data,
            reads: input.reads,
            turn: 0,
        };
        let mut n = 0;
        let end = loop {
            match ipc::read_frame(&mut stream, max).await {
                Ok(Some(f)) => {
                    assert_eq!(Some(&f.as_ref()), want.get(n));
                    n += 1;
                }
                Ok(None) => break End::Clean,
                Err(e) => break end_of(&e),
            }
        };
        assert_eq!(
            (n, end),
            (want.len(), want_end),
            "read_frame ends as the stream"
        );
    });
});
