//! The demo page and its HTTP route: what a browser gets from a demo worker
//! besides Socket.IO, and the CORS policy of the demo.
//!
//! * [`PageService`] answers every request socketioxide does not take (it is
//!   the inner service of `SocketIoBuilder::build_with_inner_svc`, so
//!   `/socket.io/` stays socketioxide's): `GET`/`HEAD` of `/` (also
//!   `/index.html`), `/app.js` and `/socket.io.min.js`, the official browser
//!   client from the `socket.io-client` npm package's `dist/` (version
//!   [`CLIENT_VERSION`], MIT, its licence header kept; committed so that the
//!   demo needs no npm at run time; `tests/browser/` checks that it is the
//!   pinned package's file byte for byte). The files live in `host/demo-page/`
//!   and are embedded in the binary; the Node demo worker serves the same
//!   files from there.
//! * Responses carry their `Content-Type`, `Content-Length`, a strong `ETag`
//!   (answered `304` on `If-None-Match`) and `Cache-Control: no-cache`, so a
//!   browser revalidates and never runs a stale page against a newer demo.
//!   Other paths: `404`; other methods: `405` with `Allow`.
//! * [`cors`] wraps the whole worker service (Socket.IO and page) in
//!   tower-http's CORS middleware with the origins of `demo --cors-origin`
//!   (passed to workers as [`CORS_ENV`]). Without it no origin is allowed: a
//!   page of another origin cannot use polling (WebSocket needs no CORS).

use std::convert::Infallible;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use sha2::Digest;
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors};

/// Version of the committed `socket.io.min.js` (the npm package
/// `socket.io-client`, pinned in `tests/browser/package-lock.json`).
pub const CLIENT_VERSION: &str = "4.8.4";

/// The environment variable carrying the allowed origins to the workers:
/// comma-separated origins, or `*` for any.
pub const CORS_ENV: &str = "SIO_DEMO_CORS_ORIGIN";

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// URL path it is served at.
    pub path: &'static str,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// The file's bytes (embedded).
    pub body: &'static [u8],
}

/// The page's files, embedded from `host/demo-page/`.
pub static ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../demo-page/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../demo-page/app.js"),
    },
    Asset {
        path: "/socket.io.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../demo-page/socket.io.min.js"),
    },
];

/// Strong ETags of [`ASSETS`] (same order): a quoted sha256 prefix.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = sha2::Sha256::digest(a.body);
            let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// The asset served at `path` (`/index.html` is `/`), with its index.
fn asset(path: &str) -> Option<(usize, &'static Asset)> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().enumerate().find(|(_, a)| a.path == path)
}

/// True when `If-None-Match` lists `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || etag.to_str().is_ok_and(|e| e == t))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// The response to a request for `path` that socketioxide did not take.
pub fn respond(method: &Method, path: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let Some((index, asset)) = asset(path) else {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let etag = ETAGS[index].clone();
    let fresh = not_modified(headers, &etag);
    let body = if fresh || method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(asset.body)
    };
    let mut resp = Response::new(Full::new(body));
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if fresh {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The inner service of the demo's Socket.IO service: serves the page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageService;

impl<B> tower_service::Service<Request<B>> for PageService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(respond(req.method(), req.uri().path(), req.headers())))
    }
}

/// Origins allowed to use the demo from another origin (`--cors-origin`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// None (the default): only pages of the cluster's own origin.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// These origins, exactly (`scheme://host[:port]`).
    List(Vec<String>),
}

/// Checks one `--cors-origin` value: `*` or `http(s)://host[:port]` without
/// path, query or trailing slash (what a browser sends as `Origin`).
pub fn parse_origin(value: &str) -> Result<String, String> {
    if value == "*" {
        return Ok(value.to_string());
    }
    let bad = |why: &str| {
        Err(format!(
            "invalid origin {value:?}: {why} (want scheme://host[:port], e.g. http://localhost:8080, or *)"
        ))
    };
    let Some((scheme, rest)) = value.split_once("://") else {
        return bad("no scheme");
    };
    if scheme != "http" && scheme != "https" {
        return bad("scheme must be http or https");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ',']) {
        return bad("an origin has no path, query, user or comma");
    }
    if HeaderValue::from_str(value).is_err() || value.chars().any(char::is_whitespace) {
        return bad("not a valid header value");
    }
    Ok(value.to_string())
}

impl CorsOrigins {
    /// From the values of `--cors-origin` (already checked by [`parse_origin`]).
    pub fn from_values(values: &[String]) -> CorsOrigins {
        if values.is_empty() {
            CorsOrigins::None
        } else if values.iter().any(|v| v == "*") {
            CorsOrigins::Any
        } else {
            CorsOrigins::List(values.to_vec())
        }
    }

    /// The value of [`CORS_ENV`] for the workers (`None` when no origin).
    pub fn to_env(&self) -> Option<String> {
        match self {
            CorsOrigins::None => None,
            CorsOrigins::Any => Some("*".to_string()),
            CorsOrigins::List(l) => Some(l.join(",")),
        }
    }

    /// Parses [`CORS_ENV`]'s value (empty: none).
    pub fn from_env_value(value: &str) -> Result<CorsOrigins, String> {
        let values = value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(parse_origin)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{CORS_ENV}: {e}"))?;
        Ok(CorsOrigins::from_values(&values))
    }

    /// From this process's environment ([`CORS_ENV`]).
    pub fn from_env() -> Result<CorsOrigins, String> {
        match std::env::var(CORS_ENV) {
            Ok(v) => CorsOrigins::from_env_value(&v),
            Err(std::env::VarError::NotPresent) => Ok(CorsOrigins::None),
            Err(e) => Err(format!("{CORS_ENV}: {e}")),
        }
    }
}

/// Wraps `svc` in the CORS policy of `origins`: preflights (`OPTIONS` with
/// `Access-Control-Request-Method`) are answered here for `GET` and `POST`
/// with the requested headers allowed (as the `cors` package socket.io uses
/// does by default); responses to an allowed origin carry
/// `Access-Control-Allow-Origin`; no credentials (the demo uses no cookies).
pub fn cors<S>(svc: S, origins: &CorsOrigins) -> Cors<S> {
    let allow = match origins {
        CorsOrigins::None => AllowOrigin::list([]),
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(l) => {
            AllowOrigin::list(l.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    Cors::new(svc)
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_with_types_and_etags() {
        let h = HeaderMap::new();
        let r = respond(&Method::GET, "/", &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let etag = r.headers()[header::ETAG].clone();
        let r = respond(&Method::GET, "/index.html", &h);
        assert_eq!(r.headers()[header::ETAG], etag);
        let r = respond(&Method::HEAD, "/socket.io.min.js", &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            ASSETS[2].body.len().to_string().as_str()
        );
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            respond(&Method::GET, "/", &h).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            respond(&Method::GET, "/app.js", &h).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&Method::GET, "/nope", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
        let r = respond(&Method::POST, "/", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn the_client_is_the_versioned_official_build() {
        let head = std::str::from_utf8(&ASSETS[2].body[..200]).unwrap_or("");
        assert!(
            head.contains(&format!("Socket.IO v{CLIENT_VERSION}")),
            "{head}"
        );
        assert!(head.contains("Released under the MIT License."), "{head}");
    }

    #[test]
    fn origins() {
        assert!(parse_origin("http://localhost:8080").is_ok());
        assert!(parse_origin("https://example.com").is_ok());
        assert!(parse_origin("*").is_ok());
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://x/",
            "http://x/path",
            "http://",
            "http://a b",
            "http://a,b",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CorsOrigins::from_env_value("http://a:1, http://b:2").unwrap(),
            CorsOrigins::List(vec!["http://a:1".into(), "http://b:2".into()])
        );
        assert_eq!(CorsOrigins::from_env_value("").unwrap(), CorsOrigins::None);
        assert_eq!(
            CorsOrigins::from_env_value("*,http://a:1").unwrap(),
            CorsOrigins::Any
        );
        assert!(CorsOrigins::from_env_value("http://a/").is_err());
        assert_eq!(
            CorsOrigins::from_values(&["http://a:1".into()]).to_env(),
            Some("http://a:1".into())
        );
    }
}
