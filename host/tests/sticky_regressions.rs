//! Inputs the coverage-guided fuzz target `fuzz/fuzz_targets/sticky_http.rs`
//! found, kept as tests: one client connection served by
//! `sticky::serve_http` in front of a stand-in worker on loopback.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sio_cluster_host::primary::sticky::{self, Router, StickyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn worker() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

/// Sends `request` on one connection, keeps it open, and returns what came
/// back before the proxy closed it (or after 3 s).
async fn exchange(request: &[u8]) -> String {
    let router = Router::new(vec![worker().await], StickyConfig::default());
    router.worker_up(0, 1);
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(sticky::serve_http(
        router,
        server,
        "127.0.0.1:9".parse().unwrap(),
    ));
    let (mut rd, mut wr) = tokio::io::split(client);
    wr.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `OPTIONS * HTTP/1.1` (the asterisk form, legal HTTP) was forwarded to
/// `http://<worker addr>*`, which parses as an authority with a bad port:
/// the connect failed and the client got `502 Bad Gateway`, counted and
/// logged as a worker failure. It is the client's request: `400`.
#[tokio::test]
async fn asterisk_form_request_is_a_400_not_a_502() {
    let answer = exchange(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "answer: {answer:?}");
    // A normal request still goes through.
    let answer =
        exchange(b"GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer:?}");
}
