//! The CLI tells the truth in `--help` and uses its documented exit codes.

mod common;

use std::process::{Command, Stdio};

use common::HOST;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(HOST)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sio-cluster-host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_of_every_subcommand() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("run") && out.contains("hub") && out.contains("Exit codes"));

    let (code, out, _) = run(&["run", "--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--workers",
        "--port",
        "--balance",
        "least-connection",
        "round-robin",
        "random",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--grace-period",
        "--pid-file",
        "--start-timeout",
        "[default: 60000]",
        "SIO_CLUSTER_IPC",
        "[default: 3000]",
        "[default: 5000]",
        "[default: 10000]",
    ] {
        assert!(out.contains(flag), "run --help lacks {flag}:\n{out}");
    }

    let (code, out, _) = run(&["hub", "--help"]);
    assert_eq!(code, Some(0));
    for word in ["--socket", "0600", "token", "SIO_CLUSTER_TOKEN"] {
        assert!(out.contains(word), "hub --help lacks {word}:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["run"]).0, Some(2), "missing worker command");
    assert_eq!(run(&["run", "--balance", "nope", "--", "x"]).0, Some(2));
    assert_eq!(run(&["run", "--workers", "0", "--", "x"]).0, Some(2));
    assert_eq!(run(&["run", "--start-timeout", "0", "--", "x"]).0, Some(2));
    assert_eq!(run(&["hub"]).0, Some(2), "missing --socket");
}

#[test]
fn demo_cors_origin_is_documented_and_checked() {
    let (code, out, _) = run(&["demo", "--help"]);
    assert_eq!(code, Some(0));
    for word in [
        "--cors-origin",
        "SIO_DEMO_CORS_ORIGIN",
        "http://localhost:3000/",
    ] {
        assert!(out.contains(word), "demo --help lacks {word}:\n{out}");
    }
    for bad in ["localhost:8080", "http://localhost:8080/", "ftp://x"] {
        let (code, _, err) = run(&["demo", "--cors-origin", bad]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("invalid origin"), "{err}");
    }
}

#[test]
fn missing_worker_program_exits_4() {
    let (code, _, err) = run(&[
        "run",
        "--workers",
        "1",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--",
        "/nonexistent/worker-binary",
    ]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("cannot start worker command"));
}

#[test]
fn busy_port_exits_3() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let (code, _, err) = run(&[
        "run",
        "--workers",
        "1",
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--",
        "/bin/true",
    ]);
    assert_eq!(code, Some(3), "{err}");
}
