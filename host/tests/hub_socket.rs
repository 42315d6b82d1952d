//! Tests of `sio-cluster-host hub --socket PATH`: private socket, token,
//! strangers refused, garbage from one link does not affect the others.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sio_cluster_host::link::ipc::{FromHub, PROTOCOL_VERSION, ToHub};

struct HubProc {
    child: Child,
    socket: PathBuf,
    token_file: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl HubProc {
    fn start(dir: &Path) -> HubProc {
        HubProc::start_with(dir, &[])
    }

    /// `hub --socket DIR/run/hub.sock EXTRA...`, ready once it printed its token file.
    fn start_with(dir: &Path, extra: &[&str]) -> HubProc {
        let socket = dir.join("run").join("hub.sock");
        let mut child = Command::new(HOST)
            .args(["hub", "--socket"])
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hub");
        let stdout = drain(child.stdout.take().expect("stdout"));
        let stderr = drain(child.stderr.take().expect("stderr"));
        let token_file = wait_for(Duration::from_secs(10), "hub ready", || {
            stdout
                .lock()
                .expect("out")
                .iter()
                .find_map(|l| l.strip_prefix("SIO_CLUSTER_TOKEN_FILE=").map(PathBuf::from))
        });
        HubProc {
            child,
            socket,
            token_file,
            stdout,
            stderr,
        }
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test worker attached by path; returns the child and its HTTP port.
fn attach_worker(hub: &HubProc, index: u32) -> (Child, u16) {
    let mut child = Command::new(worker())
        .env("SIO_CLUSTER_IPC", &hub.socket)
        .env("SIO_CLUSTER_TOKEN_FILE", &hub.token_file)
        .env("SIO_CLUSTER_WORKER", index.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    let out = drain(child.stdout.take().expect("stdout"));
    let port = wait_for(Duration::from_secs(10), "worker LISTEN line", || {
        out.lock().expect("out").iter().find_map(|l| {
            l.strip_prefix("LISTEN 127.0.0.1:")
                .and_then(|p| p.parse().ok())
        })
    });
    (child, port)
}

fn read_frame(s: &mut UnixStream) -> Option<FromHub> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut payload).ok()?;
    FromHub::decode(payload.into()).ok()
}

fn connect(hub: &HubProc) -> UnixStream {
    let s = UnixStream::connect(&hub.socket).expect("connect to hub");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn hello(token: &str) -> Vec<u8> {
    hello_as(9, token)
}

fn hello_as(worker: u32, token: &str) -> Vec<u8> {
    ToHub::Hello {
        version: PROTOCOL_VERSION,
        worker,
        pid: std::process::id(),
        token: token.to_string(),
    }
    .encode()
    .to_vec()
}

fn at_eof(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn socket_and_token_file_are_private() {
    let dir = scratch_dir("perm");
    let hub = HubProc::start(&dir);
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(hub.socket.parent().expect("dir")), 0o700);
    assert_eq!(mode(&hub.socket), 0o600);
    assert_eq!(mode(&hub.token_file), 0o600);
    let token = std::fs::read_to_string(&hub.token_file).expect("token");
    assert_eq!(token.trim().len(), 64);
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_shared_directory_is_refused_with_exit_code_5() {
    let dir = scratch_dir("open");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(HOST)
        .args(["hub", "--socket"])
        .arg(dir.join("hub.sock"))
        .stdin(Stdio::null())
        .output()
        .expect("run hub");
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be private"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn strangers_without_the_token_cannot_attach() {
    let dir = scratch_dir("stranger");
    let hub = HubProc::start(&dir);

    // Wrong token: refused, then closed.
    let mut s = connect(&hub);
    s.write_all(&hello("0000")).expect("write");
    match read_frame(&mut s) {
        Some(FromHub::Refused { reason }) => assert!(reason.contains("token"), "{reason}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(at_eof(&mut s));

    // Empty token: refused.
    let mut s = connect(&hub);
    s.write_all(&hello("")).expect("write");
    assert!(matches!(read_frame(&mut s), Some(FromHub::Refused { .. })));

    // Not a Hello at all: refused.
    let mut s = connect(&hub);
    s.write_all(
        &ToHub::Publish {
            sender: 1,
            nsp: "/".into(),
            frame: bytes::Bytes::from_static(b"x"),
        }
        .encode(),
    )
    .expect("write");
    assert!(matches!(read_frame(&mut s), Some(FromHub::Refused { .. })));

    // A worker with a wrong token exits with an error.
    let out = Command::new(worker())
        .env("SIO_CLUSTER_IPC", &hub.socket)
        .env("SIO_CLUSTER_TOKEN", "not-the-token")
        .stdin(Stdio::null())
        .output()
        .expect("run worker");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));

    // The right token: welcomed.
    let token = std::fs::read_to_string(&hub.token_file).expect("token");
    let mut s = connect(&hub);
    s.write_all(&hello(token.trim())).expect("write");
    assert!(matches!(
        read_frame(&mut s),
        Some(FromHub::Welcome { worker: 9, .. })
    ));

    let log = hub.stderr.lock().expect("log").join("\n");
    assert!(log.contains("wrong token"), "{log}");
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn garbage_from_one_link_leaves_the_others_working() {
    let dir = scratch_dir("garbage");
    let hub = HubProc::start(&dir);
    let (mut w0, port0) = attach_worker(&hub, 0);
    let (mut w1, port1) = attach_worker(&hub, 1);

    // A bad client that first announces a node, then sends an oversize frame.
    let token = std::fs::read_to_string(&hub.token_file).expect("token");
    let mut bad = connect(&hub);
    bad.write_all(&hello(token.trim())).expect("write");
    assert!(matches!(
        read_frame(&mut bad),
        Some(FromHub::Welcome { .. })
    ));
    bad.write_all(
        &ToHub::Publish {
            sender: 0xbad,
            nsp: "/".into(),
            frame: bytes::Bytes::from_static(b"bad-hello"),
        }
        .encode(),
    )
    .expect("write");
    for port in [port0, port1] {
        wait_for(Duration::from_secs(5), "bad client's frame", || {
            events(port, "x")
                .iter()
                .any(|l| l.contains("bad-hello"))
                .then_some(())
        });
    }
    bad.write_all(&u32::MAX.to_le_bytes()).expect("write");
    let _ = bad.write_all(&[0x02; 16]); // the hub may already have closed
    // The bad client is dropped; its node leaves at once.
    let dropped = wait_for(Duration::from_secs(5), "bad client dropped", || {
        let mut b = [0u8; 4096];
        loop {
            match bad.read(&mut b) {
                Ok(0) => return Some(true),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(true),
                Err(_) => return Some(false),
            }
        }
    });
    assert!(dropped, "the hub closed the bad link");
    for port in [port0, port1] {
        wait_for(Duration::from_secs(5), "NodeDown of the bad node", || {
            events(port, "x")
                .iter()
                .any(|l| l.contains("nodedown 0000000000000bad /"))
                .then_some(())
        });
    }

    // The two good workers still talk.
    let r = Conn::open(port0).post("/ctl/publish?nsp=/", b"still-works");
    assert_eq!(r.status, 200);
    wait_for(Duration::from_secs(5), "frame after the garbage", || {
        events(port1, "x")
            .iter()
            .any(|l| l.contains("still-works"))
            .then_some(())
    });
    let log = hub.stderr.lock().expect("log").join("\n");
    assert!(log.contains("exceeds the maximum"), "{log}");

    // Stopping the hub makes the attached workers exit (link-close policy).
    drop(hub);
    for w in [&mut w0, &mut w1] {
        let status = wait_for(Duration::from_secs(5), "worker exit after hub stop", || {
            w.try_wait().ok().flatten()
        });
        assert_eq!(status.code(), Some(75));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `GET /metrics` over a fresh TCP connection; the response body.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the sample `name{labels}` (labels as exposed, `""` for none).
fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    body.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn hub_metrics_count_what_its_links_did() {
    use sio_cluster_host::link::ipc::{WORKER_STATS_VERSION, WorkerStats};
    let dir = scratch_dir("metrics");
    let hub = HubProc::start_with(&dir, &["--metrics", "127.0.0.1:0"]);
    assert!(
        hub.stdout
            .lock()
            .expect("out")
            .iter()
            .any(|l| l == "SIO_CLUSTER_STATS_INTERVAL=5000"),
        "hub --metrics tells workers to report"
    );
    let addr = wait_for(Duration::from_secs(10), "metrics address", || {
        hub.stderr.lock().expect("log").iter().find_map(|l| {
            let at = l.find("metrics on http://")? + "metrics on http://".len();
            l[at..].split('/').next().map(str::to_string)
        })
    });
    let before = scrape(&addr);
    assert_eq!(
        sample(&before, "sio_hub_frames_relayed_total", "kind=\"publish\""),
        Some(0.0),
        "{before}"
    );

    let token = std::fs::read_to_string(&hub.token_file).expect("token");
    let attach = |worker: u32| {
        let mut s = connect(&hub);
        s.write_all(&hello_as(worker, token.trim())).expect("write");
        assert!(matches!(read_frame(&mut s), Some(FromHub::Welcome { .. })));
        s
    };
    let mut a = attach(1);
    let mut b = attach(2);
    for i in 0..5u8 {
        a.write_all(
            &ToHub::Publish {
                sender: 0xa,
                nsp: "/".into(),
                frame: bytes::Bytes::copy_from_slice(&[i; 3]),
            }
            .encode(),
        )
        .expect("write");
    }
    for i in 0..5u8 {
        match read_frame(&mut b) {
            Some(FromHub::Frame {
                from: 0xa, frame, ..
            }) => assert_eq!(frame.as_ref(), &[i; 3]),
            other => panic!("expected frame {i}, got {other:?}"),
        }
    }
    let stats = WorkerStats {
        namespaces: 2,
        nodes: 3,
        sockets: 41,
        rooms: 7,
        ..WorkerStats::default()
    };
    a.write_all(
        &ToHub::WorkerStats {
            version: WORKER_STATS_VERSION,
            values: stats.values().to_vec(),
        }
        .encode(),
    )
    .expect("write");
    // A link that sends garbage after its Hello: a protocol error.
    let mut bad = attach(3);
    bad.write_all(&[1, 0, 0, 0, 0x7f]).expect("write");

    let body = wait_for(Duration::from_secs(10), "the metrics of the links", || {
        let body = scrape(&addr);
        (sample(&body, "sio_worker_adapter_sockets", "worker=\"1\"") == Some(41.0)
            && sample(&body, "sio_hub_protocol_errors_total", "") == Some(1.0))
        .then_some(body)
    });
    assert_eq!(
        sample(&body, "sio_hub_frames_relayed_total", "kind=\"publish\""),
        Some(5.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sio_hub_frames_delivered_total", ""),
        Some(5.0)
    );
    assert_eq!(
        sample(&body, "sio_hub_worker_stats_reports_total", ""),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "sio_worker_adapter_rooms", "worker=\"1\""),
        Some(7.0)
    );
    assert_eq!(
        sample(&body, "sio_worker_adapter_namespaces", "worker=\"1\""),
        Some(2.0)
    );
    assert_eq!(sample(&body, "sio_hub_links_attached_total", ""), Some(3.0));
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}
