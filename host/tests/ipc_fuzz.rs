//! Bulk robustness run of the hub link's frame parser (`sio_cluster_host::link::ipc`)
//! and of a live in-process hub.
//!
//! * `SIO_FUZZ_FRAMES` (default 200 000) random and mutated payloads into
//!   both decoders, and as many byte streams (1 to 4 frames each, mutated)
//!   through the stream reader. No input may panic.
//! * `SIO_FUZZ_LINKS` (default 300) links attach to a live hub, say Hello,
//!   then send a mutated stream. The hub must stay up: a well-behaved pair of
//!   workers keeps relaying, and every link that sent a bad frame was
//!   dropped and counted.
//!
//! The long run (documented in RELIABILITY.md):
//!
//! ```sh
//! SIO_FUZZ_FRAMES=10000000 SIO_FUZZ_LINKS=20000 cargo test -p sio-cluster-host --test ipc_fuzz -- --nocapture
//! ```

use std::time::Duration;

use bytes::Bytes;
use sio_cluster_host::link::ipc::{self, FromHub, PROTOCOL_VERSION, ReadError, ToHub};
use sio_cluster_host::link::worker::{Incoming, LinkOptions, WorkerLink};
use sio_cluster_host::primary::hub::{Attach, Hub, HubConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Valid encoded frames of both directions (length prefix included).
fn corpus() -> Vec<Bytes> {
    let nsp = "/chat".to_string();
    let frame = Bytes::from_static(b"\x01\x07\x05/chat\x02\x00[\"ev\",1]");
    vec![
        ToHub::Hello {
            version: PROTOCOL_VERSION,
            worker: 3,
            pid: 4242,
            token: "0123456789abcdef".into(),
        }
        .encode(),
        ToHub::Publish {
            sender: 0x1234_5678_9abc_def0,
            nsp: nsp.clone(),
            frame: frame.clone(),
        }
        .encode(),
        ToHub::Send {
            sender: 1,
            target: 2,
            nsp: nsp.clone(),
            frame: frame.clone(),
        }
        .encode(),
        ToHub::SessionOpened {
            sid: "AAAAAAAAAAAAAAAAAAAA".into(),
        }
        .encode(),
        ToHub::SessionClosed { sid: "x".into() }.encode(),
        FromHub::Welcome {
            version: PROTOCOL_VERSION,
            worker: 1,
        }
        .encode(),
        FromHub::Refused {
            reason: "wrong token".into(),
        }
        .encode(),
        FromHub::Frame {
            from: 9,
            nsp: nsp.clone(),
            frame,
        }
        .encode(),
        FromHub::NodeDown { uid: 9, nsp }.encode(),
    ]
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            0 => {
                let len = rng.below(64);
                f = (0..len).map(|_| rng.next() as u8).collect();
            }
            1 => f.truncate(rng.below(f.len() + 1)),
            2 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            3 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] = [0x00, 0x7f, 0x80, 0xff, 0x01, 0x83][rng.below(6)];
            }
            4 => {
                let i = rng.below(f.len() + 1);
                let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                f.splice(i..i, extra);
            }
            5 if f.len() > 4 => {
                // A string length or the frame length pointing far away.
                let i = rng.below(f.len() - 1);
                f[i] = 0xff;
                f[i + 1] = 0xff;
            }
            _ if !f.is_empty() => {
                let i = rng.below(f.len());
                let end = (i + 1 + rng.below(6)).min(f.len());
                f.drain(i..end);
            }
            _ => {}
        }
    }
    f
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    refused: u64,
}

#[test]
fn random_and_mutated_frames_never_panic_the_parser() {
    let n = count("SIO_FUZZ_FRAMES", 200_000);
    let corpus = corpus();
    let mut rng = Rng(0x51f1_5eed_0bad_cafe);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (mut to_hub, mut from_hub, mut streams) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut stream_frames = 0u64;
    for _ in 0..n {
        // One payload into both decoders (length prefix stripped or not).
        let base = &corpus[rng.below(corpus.len())];
        let mut m = mutate(&mut rng, base);
        if rng.below(2) == 0 && m.len() >= 4 {
            m.drain(..4);
        }
        let p = Bytes::from(m);
        match ToHub::decode(p.clone()) {
            Ok(_) => to_hub.accepted += 1,
            Err(_) => to_hub.refused += 1,
        }
        match FromHub::decode(p) {
            Ok(_) => from_hub.accepted += 1,
            Err(_) => from_hub.refused += 1,
        }

        // A stream of 1..4 frames, mutated as a whole, through the reader.
        let mut s = Vec::new();
        for _ in 0..1 + rng.below(4) {
            s.extend_from_slice(&corpus[rng.below(corpus.len())]);
        }
        let s = if rng.below(4) == 0 {
            s
        } else {
            mutate(&mut rng, &s)
        };
        let max = [16usize, 256, ipc::DEFAULT_MAX_FRAME][rng.below(3)];
        let ok = rt.block_on(async {
            let mut r = &s[..];
            loop {
                match ipc::read_frame(&mut r, max).await {
                    Ok(Some(p)) => {
                        assert!(p.len() <= max);
                        stream_frames += 1;
                        let _ = ToHub::decode(p);
                    }
                    Ok(None) => return true,
                    Err(ReadError::Io(_)) | Err(ReadError::Codec(_)) => return false,
                }
            }
        });
        if ok {
            streams.accepted += 1;
        } else {
            streams.refused += 1;
        }
    }
    assert_eq!(to_hub.accepted + to_hub.refused, n as u64);
    assert!(to_hub.refused > 0 && to_hub.accepted > 0, "{to_hub:?}");
    println!(
        "ipc fuzz: {n} payloads -> ToHub {} accepted / {} refused, FromHub {} accepted / {} refused; \
         {n} streams -> {} clean / {} refused ({stream_frames} frames read); 0 panics",
        to_hub.accepted,
        to_hub.refused,
        from_hub.accepted,
        from_hub.refused,
        streams.accepted,
        streams.refused
    );
}

/// Uid of the well-behaved worker (not in the corpus).
const GOOD_UID: u64 = 0x600d_600d_600d_600d;

fn link_opts() -> LinkOptions {
    LinkOptions {
        exit_on_close: false,
        ..LinkOptions::default()
    }
}

#[test]
fn mutated_streams_from_many_links_leave_the_hub_serving() {
    let n = count("SIO_FUZZ_LINKS", 300);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let hub = Hub::new(
            HubConfig {
                max_frame: 4096,
                ..HubConfig::default()
            },
            None,
        );
        let pair = |index: u32| {
            let hub = hub.clone();
            async move {
                let (a, b) = UnixStream::pair().expect("pair");
                hub.attach(a, Attach::Trusted { index });
                WorkerLink::connect_stream(b, index, "", 4096, link_opts())
                    .await
                    .expect("good link")
            }
        };
        let (good_tx, _good_rx) = pair(0).await;
        let (_peer_tx, mut peer_rx) = pair(1).await;

        let corpus: Vec<Bytes> = corpus().into_iter().take(5).collect(); // worker -> hub kinds
        let mut rng = Rng(0xdead_beef_f00d_0001);
        for i in 0..n {
            let (a, mut b) = UnixStream::pair().expect("pair");
            hub.attach(a, Attach::Trusted { index: 100 });
            b.write_all(
                &ToHub::Hello {
                    version: PROTOCOL_VERSION,
                    worker: 100,
                    pid: 1,
                    token: String::new(),
                }
                .encode(),
            )
            .await
            .expect("hello");
            let mut s = Vec::new();
            for _ in 0..1 + rng.below(4) {
                // Never a second Hello on purpose: it is a protocol error too,
                // but mutations produce plenty of other kinds.
                s.extend_from_slice(&corpus[1 + rng.below(corpus.len() - 1)]);
            }
            let s = mutate(&mut rng, &s);
            let _ = b.write_all(&s).await;
            // Half the links hang up at once; the others end their side and
            // read until the hub closes the link (at once after a bad frame,
            // after the EOF otherwise).
            if i % 2 == 0 {
                drop(b);
                continue;
            }
            let _ = b.shutdown().await;
            let mut buf = vec![0u8; 64 * 1024];
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match b.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
            })
            .await
            .expect("the hub closes every link that ended");
            // Relaying between the good workers keeps working.
            if i % 50 == 1 {
                good_tx
                    .publish(GOOD_UID, "/", format!("alive-{i}"))
                    .expect("publish");
                loop {
                    let msg = tokio::time::timeout(Duration::from_secs(5), peer_rx.recv())
                        .await
                        .expect("the hub still relays")
                        .expect("link open");
                    if let Incoming::Frame { frame, .. } = msg
                        && frame == format!("alive-{i}").as_bytes()
                    {
                        break;
                    }
                }
            }
        }
        let stats = hub.stats();
        assert!(stats.protocol_errors > 0, "{stats:?}");
        // Every link closed; only the two good ones remain.
        tokio::time::timeout(Duration::from_secs(10), async {
            while hub.attached_count() != 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every fuzzing link is gone");
        println!(
            "hub fuzz: {n} links, {} protocol errors, {} uid conflicts, {} frames relayed; hub still relaying",
            stats.protocol_errors, stats.uid_conflicts, stats.frames_out
        );
    });
}
