//! Property tests of the hub link's frame codec (`sio_cluster_host::link::ipc`):
//! every valid frame round-trips, through `encode`/`decode` and through the
//! stream reader; random and mutated frames never panic the decoder or the
//! reader, and the reader never allocates past what it was sent.

use bytes::Bytes;
use proptest::prelude::*;
use sio_cluster_host::link::ipc::{self, CodecError, FromHub, ReadError, ToHub};

fn small_str() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_string()),
        "[a-z/]{1,12}",
        "\\PC{0,24}",
    ]
}

fn frame_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn to_hub() -> impl Strategy<Value = ToHub> {
    prop_oneof![
        (any::<u16>(), any::<u32>(), any::<u32>(), small_str()).prop_map(
            |(version, worker, pid, token)| ToHub::Hello {
                version,
                worker,
                pid,
                token
            }
        ),
        (any::<u64>(), small_str(), frame_bytes())
            .prop_map(|(sender, nsp, frame)| ToHub::Publish { sender, nsp, frame }),
        (any::<u64>(), any::<u64>(), small_str(), frame_bytes()).prop_map(
            |(sender, target, nsp, frame)| ToHub::Send {
                sender,
                target,
                nsp,
                frame
            }
        ),
        small_str().prop_map(|sid| ToHub::SessionOpened { sid }),
        small_str().prop_map(|sid| ToHub::SessionClosed { sid }),
    ]
}

fn from_hub() -> impl Strategy<Value = FromHub> {
    prop_oneof![
        (any::<u16>(), any::<u32>())
            .prop_map(|(version, worker)| FromHub::Welcome { version, worker }),
        small_str().prop_map(|reason| FromHub::Refused { reason }),
        (any::<u64>(), small_str(), frame_bytes()).prop_map(|(from, nsp, frame)| FromHub::Frame {
            from,
            nsp,
            frame
        }),
        (any::<u64>(), small_str()).prop_map(|(uid, nsp)| FromHub::NodeDown { uid, nsp }),
    ]
}

/// The payload of an encoded frame (length prefix checked and removed).
fn payload(encoded: &Bytes) -> Bytes {
    assert!(encoded.len() >= 5, "a frame has a prefix and a kind byte");
    let len = u32::from_le_bytes([encoded[0], encoded[1], encoded[2], encoded[3]]) as usize;
    assert_eq!(len, encoded.len() - 4, "length prefix counts the payload");
    encoded.slice(4..)
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(base: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut f = base.to_vec();
    for m in muts {
        match m {
            Mutation::Truncate(n) => f.truncate(n % (f.len() + 1)),
            Mutation::Flip(i, b) if !f.is_empty() => {
                let i = i % f.len();
                f[i] ^= 1 << b;
            }
            Mutation::Set(i, v) if !f.is_empty() => {
                let i = i % f.len();
                f[i] = *v;
            }
            Mutation::Insert(i, v) => {
                let i = i % (f.len() + 1);
                f.splice(i..i, v.iter().copied());
            }
            Mutation::Remove(i, n) if !f.is_empty() => {
                let i = i % f.len();
                let end = (i + n).min(f.len());
                f.drain(i..end);
            }
            _ => {}
        }
    }
    f
}

/// Reads every frame of `stream` with the real reader; returns the payloads
/// and how the stream ended.
fn read_all(stream: &[u8], max: usize) -> (Vec<Bytes>, Option<ReadError>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = stream;
        let mut out = Vec::new();
        loop {
            match ipc::read_frame(&mut r, max).await {
                Ok(Some(p)) => {
                    assert!(p.len() <= max, "payload over the maximum");
                    out.push(p);
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Worker -> hub frames round-trip through the codec.
    #[test]
    fn to_hub_round_trips(msg in to_hub()) {
        let enc = msg.encode();
        prop_assert_eq!(ToHub::decode(payload(&enc)), Ok(msg));
    }

    /// Hub -> worker frames round-trip through the codec.
    #[test]
    fn from_hub_round_trips(msg in from_hub()) {
        let enc = msg.encode();
        prop_assert_eq!(FromHub::decode(payload(&enc)), Ok(msg));
    }

    /// A stream of valid frames comes out of the reader frame by frame, then
    /// a clean end.
    #[test]
    fn streams_of_frames_round_trip(msgs in prop::collection::vec(to_hub(), 0..12)) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.encode());
        }
        let (payloads, end) = read_all(&stream, ipc::DEFAULT_MAX_FRAME);
        prop_assert!(end.is_none(), "clean end expected, got {:?}", end);
        prop_assert_eq!(payloads.len(), msgs.len());
        for (p, m) in payloads.into_iter().zip(msgs) {
            prop_assert_eq!(ToHub::decode(p), Ok(m));
        }
    }

    /// Mutated frames (both directions) decode to a value or to an error,
    /// never a panic; a value re-encodes to exactly the mutated payload (the
    /// codec has one encoding per value).
    #[test]
    fn mutated_frames_never_panic(
        to in to_hub(),
        from in from_hub(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        let bad = apply(&payload(&to.encode()), &muts);
        if let Ok(m) = ToHub::decode(Bytes::from(bad.clone())) {
            prop_assert_eq!(&payload(&m.encode())[..], &bad[..]);
        }
        let bad = apply(&payload(&from.encode()), &muts);
        if let Ok(m) = FromHub::decode(Bytes::from(bad.clone())) {
            prop_assert_eq!(&payload(&m.encode())[..], &bad[..]);
        }
    }

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn random_payloads_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ToHub::decode(Bytes::from(bytes.clone()));
        let _ = FromHub::decode(Bytes::from(bytes));
    }

    /// Arbitrary and mutated streams never panic the reader; a length prefix
    /// over the maximum is refused before any payload is read.
    #[test]
    fn random_streams_never_panic(
        msgs in prop::collection::vec(to_hub(), 1..6),
        muts in prop::collection::vec(mutation(), 0..5),
        max in 1usize..512,
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.encode());
        }
        let stream = apply(&stream, &muts);
        let (payloads, end) = read_all(&stream, max);
        for p in payloads {
            let _ = ToHub::decode(p);
        }
        if let Some(ReadError::Codec(CodecError::TooLarge { len, max: m })) = end {
            prop_assert!(len > m);
            prop_assert_eq!(m, max);
        }
    }
}

#[test]
fn oversize_prefix_is_refused_without_reading_on() {
    // 4 GiB announced, nothing behind it: refused from the prefix alone.
    let stream = u32::MAX.to_le_bytes();
    let (payloads, end) = read_all(&stream, 1024);
    assert!(payloads.is_empty());
    assert!(matches!(
        end,
        Some(ReadError::Codec(CodecError::TooLarge { max: 1024, .. }))
    ));
    // Announced within the limit but never sent: an EOF error, not a hang.
    let mut stream = 1000u32.to_le_bytes().to_vec();
    stream.extend_from_slice(&[0x02; 10]);
    let (_, end) = read_all(&stream, 1024);
    assert!(matches!(end, Some(ReadError::Io(_))));
}

/// Reads every frame of `stream` with [`ipc::FrameReader`], the stream
/// arriving `chunk` bytes per read.
fn read_all_buffered(stream: &[u8], max: usize, chunk: usize) -> (Vec<Bytes>, Option<ReadError>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = tokio_test_reader(stream, chunk);
        let mut fr = ipc::FrameReader::new(max);
        let mut out = Vec::new();
        loop {
            match fr.read_frame(&mut r).await {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    })
}

/// A reader that hands out at most `chunk` bytes per read.
fn tokio_test_reader(stream: &[u8], chunk: usize) -> impl tokio::io::AsyncRead + Unpin + '_ {
    struct Chunked<'a>(&'a [u8], usize);
    impl tokio::io::AsyncRead for Chunked<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.0.len().min(self.1).min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }
    Chunked(stream, chunk.max(1))
}

fn same_end(a: &Option<ReadError>, b: &Option<ReadError>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(ReadError::Io(x)), Some(ReadError::Io(y))) => x.kind() == y.kind(),
        (Some(ReadError::Codec(x)), Some(ReadError::Codec(y))) => x == y,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The buffered reader (the hub's and the worker's) reads the same
    /// frames and ends the same way as `read_frame`, however the bytes
    /// arrive.
    #[test]
    fn buffered_reader_matches_read_frame(
        msgs in prop::collection::vec(to_hub(), 1..6),
        muts in prop::collection::vec(mutation(), 0..5),
        max in 1usize..512,
        chunk in 1usize..300,
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.encode());
        }
        let stream = apply(&stream, &muts);
        let (want, want_end) = read_all(&stream, max);
        let (got, got_end) = read_all_buffered(&stream, max, chunk);
        prop_assert_eq!(got, want);
        prop_assert!(same_end(&got_end, &want_end), "{:?} vs {:?}", got_end, want_end);
    }

    /// The hub's routing header agrees with the full decoder on valid and
    /// mutated payloads: same fields, same errors.
    #[test]
    fn relay_header_agrees_with_decode(
        msg in to_hub(),
        muts in prop::collection::vec(mutation(), 0..4),
    ) {
        let p = apply(&payload(&msg.encode()), &muts);
        let header = ipc::RelayHeader::parse(&p);
        match ToHub::decode(Bytes::from(p.clone())) {
            Ok(ToHub::Publish { sender, nsp, frame }) => {
                let h = header.expect("parsed").expect("relayed");
                prop_assert_eq!((h.sender, h.target), (sender, None));
                prop_assert_eq!(&p[h.nsp.0..h.nsp.0 + h.nsp.1], nsp.as_bytes());
                prop_assert_eq!(&p[h.body..], &frame[..]);
            }
            Ok(ToHub::Send { sender, target, nsp, frame }) => {
                let h = header.expect("parsed").expect("relayed");
                prop_assert_eq!((h.sender, h.target), (sender, Some(target)));
                prop_assert_eq!(&p[h.nsp.0..h.nsp.0 + h.nsp.1], nsp.as_bytes());
                prop_assert_eq!(&p[h.body..], &frame[..]);
            }
            Ok(_) => prop_assert_eq!(header, Ok(None)),
            Err(e) => {
                // Non-relayed kinds are decoded in full by the hub.
                if header != Ok(None) {
                    prop_assert_eq!(header, Err(e));
                }
            }
        }
    }

    /// `put_relay` writes exactly what `ToHub::encode` does, and the worker's
    /// header reader agrees with `FromHub::decode` on the relayed frame.
    #[test]
    fn put_relay_matches_encode(
        sender in any::<u64>(),
        target in proptest::option::of(any::<u64>()),
        nsp in small_str(),
        frame in frame_bytes(),
    ) {
        let msg = match target {
            None => ToHub::Publish { sender, nsp: nsp.clone(), frame: frame.clone() },
            Some(target) => ToHub::Send { sender, target, nsp: nsp.clone(), frame: frame.clone() },
        };
        let mut buf = Vec::new();
        ipc::put_relay(&mut buf, sender, target, &nsp, &frame);
        prop_assert_eq!(&buf[..], &msg.encode()[..]);
        prop_assert_eq!(ipc::relay_len(target.is_some(), nsp.len(), frame.len()), buf.len() - 4);

        let out = FromHub::Frame { from: sender, nsp: nsp.clone(), frame: frame.clone() }.encode();
        let p = payload(&out);
        let (from, n, body) = ipc::parse_frame_header(&p).expect("valid").expect("a frame");
        prop_assert_eq!((from, n), (sender, nsp.as_str()));
        prop_assert_eq!(&p[body..], &frame[..]);
    }
}
