//! Helpers for the multi-process tests: start the primary, talk raw HTTP/1.1
//! to its sticky port, poll with deadlines. Loopback only; every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const HOST: &str = env!("CARGO_BIN_EXE_sio-cluster-host");

/// The test worker (`tests/support/worker.rs`, the example
/// `sio-cluster-test-worker`: an example so that `cargo install` leaves it
/// out), built once per test process with this test binary's profile and
/// target directory.
pub fn worker() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary sits in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory name");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // `--workspace`: the same feature resolution as the README's
        // `cargo test --workspace`, so this build is fresh there (with `-p`
        // cargo would rebuild wasmtime and the rest with other features).
        cmd.args(["build", "-q", "--locked", "--workspace"])
            .args(["--example", "sio-cluster-test-worker"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("cargo runs");
        assert!(
            status.success(),
            "building the test worker failed: {status}"
        );
        let path = profile_dir.join("examples").join("sio-cluster-test-worker");
        assert!(path.is_file(), "no test worker at {}", path.display());
        path.to_string_lossy().into_owned()
    })
}

pub fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros()
}

/// Polls `f` every 10 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh private scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "sio-hub-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}

/// Drains a child's pipe into a shared list of lines.
pub fn drain(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            out.lock().expect("lines lock").push(line);
        }
    });
    lines
}

/// A running `sio-cluster-host run`.
pub struct Primary {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Primary {
    pub fn start(
        workers: usize,
        balance: &str,
        worker_cmd: &[&str],
        env: &[(&str, &str)],
    ) -> Primary {
        Primary::start_with(workers, balance, &[], worker_cmd, env)
    }

    pub fn start_with(
        workers: usize,
        balance: &str,
        extra_args: &[&str],
        worker_cmd: &[&str],
        env: &[(&str, &str)],
    ) -> Primary {
        let mut cmd = Command::new(HOST);
        cmd.args([
            "run",
            "--workers",
            &workers.to_string(),
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--balance",
            balance,
            "--grace-period",
            "2000",
        ])
        .args(extra_args)
        .arg("--")
        .args(worker_cmd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn primary");
        let log = drain(child.stderr.take().expect("stderr"));
        let port = wait_for(Duration::from_secs(60), "primary listening", || {
            log.lock().expect("log").iter().find_map(|l| {
                let at = l.find("public_addr=127.0.0.1:")?;
                let rest = &l[at + "public_addr=127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().ok()
            })
        });
        Primary { child, port, log }
    }

    pub fn start_workers(workers: usize, balance: &str) -> Primary {
        Primary::start(workers, balance, &[worker()], &[])
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits until `n` workers attached (per the log).
    pub fn wait_attached(&self, n: usize) {
        wait_for(Duration::from_secs(10), "workers attached", || {
            let count = self
                .log
                .lock()
                .expect("log")
                .iter()
                .filter(|l| l.contains("worker attached"))
                .count();
            (count >= n).then_some(())
        });
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head, status line included.
    pub head: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection (keep-alive).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp).expect("read (timeout?)");
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    /// Reads one response with a Content-Length body (or none for 101/204/304).
    pub fn read_response(&mut self) -> Resp {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head_bytes = self.buf[..end + 4].to_vec();
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut headers);
                let status = r.parse(&head_bytes).expect("valid response head");
                assert!(status.is_complete());
                let code = r.code.expect("status code");
                let reason = r.reason.unwrap_or("").to_string();
                let hs: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..end + 4);
                let len = if code == 101 || code == 204 || code == 304 {
                    0
                } else {
                    hs.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.trim().parse::<usize>().expect("numeric content-length"))
                        .unwrap_or_else(|| panic!("response without content-length: {hs:?}"))
                };
                while self.buf.len() < len {
                    assert!(self.fill() > 0, "EOF inside body");
                }
                let body: Vec<u8> = self.buf.drain(..len).collect();
                return Resp {
                    status: code,
                    reason,
                    headers: hs,
                    body,
                    head: String::from_utf8_lossy(&head_bytes).into_owned(),
                };
            }
            assert!(self.fill() > 0, "EOF before response head");
        }
    }

    /// Reads exactly `n` raw bytes (after an upgrade).
    pub fn read_exact_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "EOF in tunnel");
        }
        self.buf.drain(..n).collect()
    }

    /// True once the server closed the connection (EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        matches!(self.stream.read(&mut tmp), Ok(0))
    }

    pub fn get(&mut self, path: &str) -> Resp {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.send_raw(req.as_bytes());
        self.read_response()
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Resp {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.send_raw(req.as_bytes());
        self.send_raw(body);
        self.read_response()
    }

    pub fn post_chunked(&mut self, path: &str, body: &[u8], chunk: usize) {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        self.send_raw(req.as_bytes());
        for c in body.chunks(chunk) {
            self.send_raw(format!("{:x}\r\n", c.len()).as_bytes());
            self.send_raw(c);
            self.send_raw(b"\r\n");
        }
        self.send_raw(b"0\r\n\r\n");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One-shot GET on a new connection.
pub fn get(port: u16, path: &str) -> Resp {
    Conn::open(port).get(path)
}

/// Opens a polling session; returns its sid.
pub fn handshake(port: u16) -> String {
    let r = get(port, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(r.status, 200, "handshake: {}", r.text());
    let t = r.text();
    let start = t.find("\"sid\":\"").expect("sid in handshake") + 7;
    let end = t[start..].find('"').expect("end of sid") + start;
    t[start..end].to_string()
}

/// `/ctl/info` of the worker owning `sid`: (worker index, pid, [(nsp, uid hex)]).
pub fn info(port: u16, sid: &str) -> (u32, u32, Vec<(String, String)>) {
    let r = get(port, &format!("/ctl/info?sid={sid}"));
    assert_eq!(r.status, 200);
    parse_info(&r.text())
}

pub fn parse_info(t: &str) -> (u32, u32, Vec<(String, String)>) {
    let mut worker = u32::MAX;
    let mut pid = 0;
    let mut uids = Vec::new();
    for part in t.split_whitespace() {
        if let Some(v) = part.strip_prefix("worker=") {
            worker = v.parse().expect("worker");
        } else if let Some(v) = part.strip_prefix("pid=") {
            pid = v.parse().expect("pid");
        } else if let Some(v) = part.strip_prefix("uids=") {
            for u in v.split(',') {
                let (n, h) = u.split_once('=').expect("nsp=uid");
                uids.push((n.to_string(), h.to_string()));
            }
        }
    }
    (worker, pid, uids)
}

/// The event lines of the worker owning `sid`.
pub fn events(port: u16, sid: &str) -> Vec<String> {
    let r = get(port, &format!("/ctl/events?sid={sid}"));
    assert_eq!(r.status, 200);
    r.text().lines().map(str::to_string).collect()
}

/// True when `pid` no longer runs (gone or a zombie).
pub fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.trim_start().starts_with('Z') || rest.trim_start().starts_with('X')
            })
            .unwrap_or(false),
    }
}

pub fn body_hash(b: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(b);
    format!("{:016x}", h.finish())
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
