//! The sticky primary's HTTP routing (`sio_cluster_host::primary::sticky`):
//! one client connection served by `serve_http` (hyper's HTTP/1 server, the
//! proxy `handle`, the session table) in front of a live upstream worker on
//! loopback, fed keep-alive sequences of requests built from structured
//! input (methods, Engine.IO queries with known and unknown session ids,
//! `Content-Length`, chunked bodies, broken and cut, upgrades) or raw bytes;
//! and the session id extraction on its own (`query_param`, `valid_sid`,
//! `sniff_sid`, `websocket_upgrade_sid`).
//!
//! Invariants: no panic; the connection ends within 5 s of the client's
//! end (no hang); no 5xx answer while the worker is up (a client's bad
//! request is the client's fault: 4xx or a close); every extracted
//! session id is a valid one and appears in the input.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use sio_cluster_host::primary::sticky::{
    self, Balance, Router, StickyConfig, query_param, sniff_sid, valid_sid, websocket_upgrade_sid,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The session ids the upstream hands out (a fixed set: the session table
/// stays small however long the run).
const SIDS: [&str; 4] = [
    "AAAAAAAAAAAAAAAAAAAA",
    "sid-one_1.2~x",
    "BBBBBBBBBBBBBBBBBBBB",
    "z",
];

struct World {
    rt: tokio::runtime::Runtime,
    router: Arc<Router>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let router = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(upstream(listener));
            let router = Router::new(
                vec![addr],
                StickyConfig {
                    balance: Balance::LeastConnection,
                    header_read_timeout: Duration::from_secs(1),
                    ..StickyConfig::default()
                },
            );
            router.worker_up(0, 1);
            router
        });
        World { rt, router }
    })
}

/// A stand-in worker: polling handshakes get a session id, bodies are read
/// (up to 1 MiB), WebSocket upgrades get `101` and a closed connection.
async fn upstream(listener: tokio::net::TcpListener) {
    let mut n = 0usize;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        n += 1;
        let svc = service_fn(move |req: Request<Incoming>| async move {
            let q = req.uri().query().map(str::to_string);
            let q = q.as_deref();
            if req.headers().contains_key(hyper::header::UPGRADE) {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                r.headers_mut()
                    .insert(hyper::header::UPGRADE, "websocket".parse().unwrap());
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
                return Ok::<_, Infallible>(r);
            }
            let body = if query_param(q, "sid").is_none()
                && query_param(q, "transport") == Some("polling")
            {
                let sid = SIDS[n % SIDS.len()];
                format!(
                    "0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000}}"
                )
            } else {
                let got = Limited::new(req.into_body(), 1 << 20).collect().await;
                format!("ok {}", got.map(|c| c.to_bytes().len()).unwrap_or(0))
            };
            Ok(Response::new(Full::new(Bytes::from(body))))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[derive(Arbitrary, Debug)]
enum QVal {
    Known(u8),
    Sid(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Hdr {
    Host,
    ContentLength(i8),
    ContentLengthText(String),
    Chunked,
    Connection(u8),
    Upgrade,
    WsKey,
    Expect,
    Other(String, String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    None,
    Bytes(Vec<u8>),
    /// Chunks, then an optional way to break the encoding.
    Chunks(Vec<Vec<u8>>, Option<u8>),
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: u8,
    path: u8,
    query: Vec<(u8, QVal)>,
    headers: Vec<Hdr>,
    body: Body,
    http10: bool,
    tail: Option<Vec<u8>>,
}

/// The input: a first byte with its low bit clear, then raw bytes sent as
/// they are (seeds: request heads of the tests); low bit set: the rest is
/// read as a structured sequence of [`Req`]s.
fn input_bytes(data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    match data.split_first() {
        None => {}
        Some((m, raw)) if m & 1 == 0 => bytes.extend_from_slice(&raw[..raw.len().min(1 << 16)]),
        Some((_, rest)) => {
            let u = arbitrary::Unstructured::new(rest);
            if let Ok(reqs) = <Vec<Req> as Arbitrary>::arbitrary_take_rest(u) {
                for r in reqs.iter().take(6) {
                    render(r, &mut bytes);
                }
            }
        }
    }
    bytes
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "get", "PRI",
];
const PATHS: [&str; 5] = ["/socket.io/", "/", "/x", "*", "http://h/socket.io/"];
const KEYS: [&str; 5] = ["EIO", "transport", "sid", "t", "b64"];
const VALS: [&str; 6] = ["4", "3", "polling", "websocket", "", "%20"];
const CONNS: [&str; 5] = [
    "close",
    "keep-alive",
    "upgrade",
    "Upgrade, keep-alive",
    "te, close",
];

fn render(req: &Req, out: &mut Vec<u8>) {
    let body: Vec<u8> = match &req.body {
        Body::None => Vec::new(),
        Body::Bytes(b) => b.clone(),
        Body::Chunks(chunks, broken) => {
            let mut b = Vec::new();
            for c in chunks.iter().take(8) {
                b.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                b.extend_from_slice(c);
                b.extend_from_slice(b"\r\n");
            }
            match broken.map(|k| k % 4) {
                None => b.extend_from_slice(b"0\r\n\r\n"),
                Some(0) => b.extend_from_slice(b"zz\r\n"),
                Some(1) => b.extend_from_slice(b"ffffffffffffffffff\r\n"),
                Some(2) => b.extend_from_slice(b"5\r\nab"),
                _ => b.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n"),
            }
            b
        }
    };
    let mut path = PATHS[req.path as usize % PATHS.len()].to_string();
    for (i, (k, v)) in req.query.iter().take(6).enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(KEYS[*k as usize % KEYS.len()]);
        path.push('=');
        match v {
            QVal::Known(i) => path.push_str(VALS[*i as usize % VALS.len()]),
            QVal::Sid(i) => path.push_str(SIDS[*i as usize % SIDS.len()]),
            QVal::Text(t) => path.extend(t.chars().take(40).filter(|c| !c.is_whitespace())),
        }
    }
    let method = METHODS[req.method as usize % METHODS.len()];
    let version = if req.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    out.extend_from_slice(format!("{method} {path} {version}\r\n").as_bytes());
    for h in req.headers.iter().take(8) {
        let line = match h {
            Hdr::Host => "Host: localhost".to_string(),
            Hdr::ContentLength(d) => {
                format!("Content-Length: {}", (body.len() as i64 + *d as i64).max(0))
            }
            Hdr::ContentLengthText(t) => {
                format!("Content-Length: {}", t.chars().take(24).collect::<String>())
            }
            Hdr::Chunked => "Transfer-Encoding: chunked".to_string(),
            Hdr::Connection(c) => format!("Connection: {}", CONNS[*c as usize % CONNS.len()]),
            Hdr::Upgrade => "Upgrade: websocket".to_string(),
            Hdr::WsKey => {
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
                    .to_string()
            }
            Hdr::Expect => "Expect: 100-continue".to_string(),
            Hdr::Other(k, v) => format!(
                "{}: {}",
                k.chars().take(24).collect::<String>(),
                v.chars().take(64).collect::<String>()
            ),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    if let Some(t) = &req.tail {
        out.extend_from_slice(&t[..t.len().min(64)]);
    }
}

/// The session id extraction alone.
fn check_extraction(bytes: &[u8]) {
    if let Some(sid) = sniff_sid(bytes) {
        assert!(valid_sid(sid), "sniffed an invalid sid {sid:?}");
    }
    if let Some(Some(sid)) = websocket_upgrade_sid(bytes) {
        assert!(valid_sid(&sid), "upgrade sid {sid:?} is not valid");
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.contains(&format!("sid={sid}")),
            "upgrade sid {sid:?} is not in the request"
        );
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(v) = query_param(Some(text), "sid")
    {
        assert!(text.contains(v));
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = input_bytes(data);
    if std::env::var_os("SIO_FUZZ_DEBUG").is_some() {
        eprintln!("request bytes: {:?}", String::from_utf8_lossy(&bytes));
    }
    check_extraction(&bytes);
    let w = world();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let answer = w.rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let serving = tokio::spawn(sticky::serve_http(w.router.clone(), server, peer));
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async {
            let _ = wr.write_all(&bytes).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let (_, out) =
            tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(write, read) })
                .await
                .expect("the proxy hung: no end within 5 s of the client's end");
        let _ = tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("serve_http did not return within 5 s of the connection's end");
        out
    });
    let text = String::from_utf8_lossy(&answer);
    if std::env::var_os("SIO_FUZZ_DEBUG").is_some() {
        eprintln!("answer: {text:?}");
    }
    for (i, _) in text.match_indices("HTTP/1.") {
        let status = text.get(i + 9..i + 12).unwrap_or("");
        assert!(
            !status.starts_with('5'),
            "a {status} answer with the worker up:\n{text}"
        );
    }
});
