//! The hub link codec against the vectors shared with the Node host
//! (`host/node/test/vectors/link.json`, also read by
//! `host/node/test/link.test.mjs`): both codecs read every vector the same
//! way, through the plain reader and the buffered one, whole and in small
//! chunks.

use bytes::Bytes;
use serde_json::Value;
use sio_cluster_host::link::ipc::{
    CodecError, DEFAULT_MAX_FRAME, FrameReader, FromHub, ReadError, ToHub, read_frame,
};

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn variant(e: &CodecError) -> &'static str {
    match e {
        CodecError::TooLarge { .. } => "TooLarge",
        CodecError::Empty => "Empty",
        CodecError::UnknownKind(_) => "UnknownKind",
        CodecError::Truncated => "Truncated",
        CodecError::Trailing => "Trailing",
        CodecError::BadUtf8 => "BadUtf8",
        CodecError::StringTooLong(_) => "StringTooLong",
        CodecError::TooManyFields(_) => "TooManyFields",
    }
}

/// What reading one vector gives: the variant name of its error, or the
/// frame re-encoded after a decode.
fn outcome(read: Result<Option<Bytes>, ReadError>, to_hub: bool) -> Result<Bytes, String> {
    match read {
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("UnexpectedEof".into())
        }
        Err(ReadError::Io(e)) => Err(format!("io: {e}")),
        Err(ReadError::Codec(e)) => Err(variant(&e).into()),
        Ok(None) => Err("no frame".into()),
        Ok(Some(payload)) => {
            if to_hub {
                ToHub::decode(payload)
                    .map(|m| m.encode())
                    .map_err(|e| variant(&e).into())
            } else {
                FromHub::decode(payload)
                    .map(|m| m.encode())
                    .map_err(|e| variant(&e).into())
            }
        }
    }
}

/// A reader that hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl tokio::io::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn both_codecs_read_the_shared_vectors_alike() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/node/test/vectors/link.json");
    let text = std::fs::read_to_string(path).expect("the shared vectors");
    let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
    assert_eq!(
        doc["default_max_frame"].as_u64(),
        Some(DEFAULT_MAX_FRAME as u64)
    );
    let vectors = doc["vectors"].as_array().expect("a vector list");
    assert!(vectors.len() >= 20, "only {} vectors", vectors.len());
    let (mut valid, mut invalid) = (0, 0);
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let bytes = hex(v["hex"].as_str().expect("hex"));
        let max = v["max_frame"]
            .as_u64()
            .map_or(DEFAULT_MAX_FRAME, |m| m as usize);
        let to_hub = match v["direction"].as_str() {
            Some("to-hub") => true,
            Some("from-hub") => false,
            other => panic!("{name}: direction {other:?}"),
        };
        let want: Result<Bytes, String> = match v["error"].as_str() {
            Some(e) => {
                invalid += 1;
                Err(e.to_string())
            }
            None => {
                valid += 1;
                // A valid frame encodes back to exactly its bytes.
                Ok(Bytes::from(bytes.clone()))
            }
        };
        let mut plain = &bytes[..];
        assert_eq!(
            outcome(read_frame(&mut plain, max).await, to_hub),
            want,
            "{name} (read_frame)"
        );
        for chunk in [bytes.len().max(1), 1, 3] {
            let mut r = Chunked {
                data: &bytes,
                chunk,
            };
            let got = FrameReader::new(max).read_frame(&mut r).await;
            assert_eq!(
                outcome(got, to_hub),
                want,
                "{name} (FrameReader, {chunk}-byte reads)"
            );
        }
    }
    assert!(valid > 0 && invalid > 0, "{valid} valid, {invalid} invalid");
}
