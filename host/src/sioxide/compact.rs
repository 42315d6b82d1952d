//! Handshake requests' URI and headers in their own small allocations.
//!
//! hyper parses a request head out of its connection's read buffer (8 KiB),
//! and the parsed URI and header values are slices of that buffer.
//! engineioxide keeps the handshake request's parts for the socket's whole
//! life (`socket.req_parts()`), so every connected client pinned one such
//! buffer: 8 192 B of the 32.3 KiB heap per idle client (heap profile in
//! BENCHMARKS.md). [`Compact`] copies the URI and the headers of each request
//! that can open a session (no `sid` in its query: an Engine.IO handshake, a
//! page request) into allocations of their own before Socket.IO sees it, so
//! the buffer is freed once the connection is upgraded or closed. Requests of
//! an existing session pass unchanged (their parts are not kept).

use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use tower_service::Service;

/// A service that hands its inner service handshake requests with copied
/// URI and headers (see the module docs).
#[derive(Debug, Clone)]
pub struct Compact<S> {
    inner: S,
}

impl<S> Compact<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Compact<S> {
        Compact { inner }
    }
}

impl<S, B> Service<Request<B>> for Compact<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(compact(req))
    }
}

/// True for a request of an existing Engine.IO session (`sid=` in the query).
fn of_a_session(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// Copies the URI and headers of a request that can open a session (see
/// the module docs); other requests are returned as they are. Method,
/// version, extensions (hyper's upgrade handle) and body are kept.
pub fn compact<B>(req: Request<B>) -> Request<B> {
    if of_a_session(req.uri()) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    // A URI that does not parse again (it did once) is kept as it was.
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    let mut name: Option<HeaderName> = None;
    for (n, value) in std::mem::take(&mut parts.headers) {
        // `into_iter` yields the name once per run of values.
        if let Some(n) = n {
            // A custom name is a slice of the buffer too; a standard one is static.
            name = HeaderName::from_bytes(n.as_str().as_bytes()).ok();
        }
        let (Some(n), Ok(v)) = (&name, HeaderValue::from_bytes(value.as_bytes())) else {
            continue;
        };
        let mut v = v;
        v.set_sensitive(value.is_sensitive());
        headers.append(n.clone(), v);
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn inside(buf: &Bytes, p: *const u8) -> bool {
        let r = buf.as_ptr_range();
        r.contains(&p)
    }

    /// A request whose URI and header values are slices of `buf`, as hyper
    /// builds them.
    fn parsed(buf: &Bytes, uri: &str) -> Request<()> {
        let at = |s: &str| {
            let i = buf
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .expect("in the buffer");
            buf.slice(i..i + s.len())
        };
        let mut req = Request::new(());
        *req.uri_mut() = Uri::from_maybe_shared(at(uri)).expect("uri");
        let h = req.headers_mut();
        h.insert(
            http::header::HOST,
            HeaderValue::from_maybe_shared(at("localhost:3000")).expect("value"),
        );
        h.append(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_maybe_shared(at("10.0.0.1")).expect("value"),
        );
        h.append(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_maybe_shared(at("10.0.0.2")).expect("value"),
        );
        req
    }

    const HEAD: &[u8] =
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost:3000\r\n\
        X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\
        GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n\r\n";

    #[test]
    fn a_handshake_no_longer_points_into_the_read_buffer() {
        let buf = Bytes::copy_from_slice(HEAD);
        let req = parsed(&buf, "/socket.io/?EIO=4&transport=websocket");
        assert!(inside(&buf, req.uri().path().as_ptr()));
        assert!(inside(&buf, req.headers()["host"].as_bytes().as_ptr()));

        let req = compact(req);
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.headers()["host"], "localhost:3000");
        let fwd: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(fwd, ["10.0.0.1", "10.0.0.2"]);
        assert!(!inside(&buf, req.uri().path().as_ptr()));
        for v in req.headers().values() {
            assert!(!inside(&buf, v.as_bytes().as_ptr()), "{v:?}");
        }
    }

    #[test]
    fn a_request_of_a_session_is_left_alone() {
        let buf = Bytes::copy_from_slice(HEAD);
        let req = compact(parsed(&buf, "/socket.io/?EIO=4&transport=polling&sid=abc"));
        assert!(inside(&buf, req.uri().path().as_ptr()));
        assert!(inside(&buf, req.headers()["host"].as_bytes().as_ptr()));
    }

    #[test]
    fn only_a_sid_parameter_marks_a_session() {
        let u = |s: &str| s.parse::<Uri>().expect("uri");
        assert!(of_a_session(&u("/socket.io/?sid=x&EIO=4")));
        assert!(of_a_session(&u("/socket.io/?EIO=4&sid=x")));
        assert!(!of_a_session(&u("/socket.io/?EIO=4&transport=polling")));
        assert!(!of_a_session(&u("/socket.io/?xsid=1")));
        assert!(!of_a_session(&u("/")));
    }
}
