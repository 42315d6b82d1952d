//! Bad HTTP on the sticky port, in bulk: `SIO_FUZZ_HTTP` (default 300)
//! connections each send a mutated request head (or noise, or an oversize
//! head) and hang up their sending side. Every answer must be a well-formed
//! HTTP response (a 4xx for what is not HTTP) or a plain close; the primary
//! must keep running and routing. The hand-picked cases are in
//! `cluster.rs::malformed_http_gets_400_and_the_primary_lives_on`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{Primary, handshake, info};

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

const BASES: &[&[u8]] = &[
    b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            0 => {
                let len = 1 + rng.below(200);
                f = (0..len).map(|_| rng.next() as u8).collect();
            }
            1 => f.truncate(rng.below(f.len() + 1)),
            2 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            3 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] = b"\r\n\0: \xff%?&="[rng.below(10)];
            }
            4 => {
                let i = rng.below(f.len() + 1);
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                f.splice(i..i, extra);
            }
            5 => {
                // An oversize header line.
                let i = f.len().min(20);
                let mut big = b"X-Big: ".to_vec();
                big.resize(512 * 1024, b'a');
                big.extend_from_slice(b"\r\n");
                f.splice(i..i, big);
            }
            6 => {
                // Conflicting or absurd lengths.
                let i = f.len().min(16);
                let h: &[u8] = [
                    &b"Content-Length: 99999999999999999999\r\n"[..],
                    &b"Content-Length: 5\r\nContent-Length: 6\r\n"[..],
                    &b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"[..],
                ][rng.below(3)];
                f.splice(i..i, h.iter().copied());
            }
            _ if !f.is_empty() => {
                let i = rng.below(f.len());
                let end = (i + 1 + rng.below(10)).min(f.len());
                f.drain(i..end);
            }
            _ => {}
        }
    }
    f
}

/// Sends `req`, half-closes, reads to EOF (bounded); returns the status of
/// the first response, if one came.
fn exchange(port: u16, req: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may answer and close before reading everything.
    let _ = s.write_all(req);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 1 << 20 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer and no close within 5 s: {e} for {req:?}"),
        }
    }
    if out.is_empty() {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(&out) {
        Ok(_) => r.code,
        Err(e) => panic!(
            "malformed response ({e}): {:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        ),
    }
}

#[test]
fn mutated_requests_never_crash_the_primary() {
    let n: usize = std::env::var("SIO_FUZZ_HTTP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut p = Primary::start_workers(2, "round-robin");
    p.wait_attached(2);
    let mut rng = Rng(0x7777_1234_abcd_0001);
    let mut by_class = [0u64; 6]; // none, 1xx, 2xx, 3xx, 4xx, 5xx
    for _ in 0..n {
        let base = BASES[rng.below(BASES.len())];
        let req = mutate(&mut rng, base);
        match exchange(p.port, &req) {
            None => by_class[0] += 1,
            Some(code) => {
                let class = (code / 100) as usize;
                assert!((1..=5).contains(&class), "status {code}");
                by_class[class] += 1;
            }
        }
    }
    assert!(
        p.child.try_wait().expect("try_wait").is_none(),
        "the primary is still running"
    );
    // Still routing.
    let sid = handshake(p.port);
    assert!(info(p.port, &sid).0 < 2);
    assert!(by_class[4] > 0, "{by_class:?}");
    // Bad input is the client's fault: never a 5xx (the workers are up).
    assert_eq!(by_class[5], 0, "{by_class:?}");
    println!(
        "sticky fuzz: {n} connections -> closed without answer {}, 1xx {}, 2xx {}, 3xx {}, 4xx {}, 5xx {}; primary alive",
        by_class[0], by_class[1], by_class[2], by_class[3], by_class[4], by_class[5]
    );
}
