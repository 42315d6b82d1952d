//! A user's own adapter component (`run --component`, `SIO_CLUSTER_COMPONENT`)
//! and the component compiled once by the primary for its workers
//! (`SIO_CLUSTER_COMPILED`): a usable file runs, anything else stops the
//! primary before any worker starts (exit code 6), and a corrupt or foreign
//! compiled artifact is refused with a logged reason, then compiled.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{HOST, Primary, get, handshake, scratch_dir, wait_for, worker};
use sio_cluster_host::adapter::{Config, RoomOwner};
use sio_cluster_host::runtime::artifact::{
    ENV_COMPILED, Loaded, WorkerComponent, compile_for_workers, sha256_hex,
};
use sio_cluster_host::{AdapterNode, DEFAULT_COMPONENT, EngineOptions, Limits};

/// An empty core module: WebAssembly, but not a component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A valid component exporting another interface than the adapter's.
const OTHER_WORLD: &str = r#"
(component
  (core module $m (func (export "f") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func $f (result u32) (canon lift (core func $i "f")))
  (instance $e (export "f" (func $f)))
  (export "acme:other/api@1.0.0" (instance $e)))
"#;

/// A component that imports an interface nobody provides.
const FOREIGN_IMPORT: &str = r#"
(component
  (import "acme:db/query@1.0.0" (instance (export "run" (func)))))
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write fixture");
    p
}

/// Runs `sio-cluster-host run --component FILE -- <test worker>` to its end.
fn run_with(component: &Path) -> (Option<i32>, String) {
    let out = Command::new(HOST)
        .args([
            "run",
            "--workers",
            "1",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .arg("--component")
        .arg(component)
        .arg("--")
        .arg(worker())
        .env("SIO_TEST_ADAPTER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run sio-cluster-host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(file: &Path, (code, log): (Option<i32>, String), what: &str) {
    assert_eq!(code, Some(6), "{log}");
    assert!(
        log.contains(&file.display().to_string()),
        "the message names the file:\n{log}"
    );
    assert!(log.contains(what), "the message says {what:?}:\n{log}");
    assert!(
        !log.contains("worker started"),
        "no worker may start with a bad component:\n{log}"
    );
}

#[test]
fn unusable_components_stop_the_primary_before_any_worker() {
    let dir = scratch_dir("components");
    let garbage = write(&dir, "garbage.wasm", b"this is not webassembly at all");
    assert_refused(
        &garbage,
        run_with(&garbage),
        "is not a WebAssembly component",
    );

    let core = write(&dir, "core.wasm", CORE_MODULE);
    assert_refused(&core, run_with(&core), "core WebAssembly module");

    let other = write(
        &dir,
        "other.wasm",
        &wat::parse_str(OTHER_WORLD).expect("fixture wat"),
    );
    assert_refused(
        &other,
        run_with(&other),
        "does not implement socketio:cluster/cluster-adapter@0.1.0",
    );

    let importing = write(
        &dir,
        "imports.wasm",
        &wat::parse_str(FOREIGN_IMPORT).expect("fixture wat"),
    );
    assert_refused(&importing, run_with(&importing), "acme:db/query@1.0.0");

    let missing = dir.join("missing.wasm");
    assert_refused(&missing, run_with(&missing), "cannot read");

    // `component --check` says the same, with the same exit code.
    for file in [&garbage, &core, &other, &importing, &missing] {
        let out = Command::new(HOST)
            .arg("component")
            .arg("--check")
            .arg(file)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(6), "{}", file.display());
    }
}

#[test]
fn the_embedded_component_as_a_file_serves_every_worker_precompiled() {
    let dir = scratch_dir("component-ok");
    let file = dir.join("adapter.wasm");
    let out = Command::new(HOST)
        .args(["component", "--out"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(std::fs::read(&file).expect("written"), DEFAULT_COMPONENT);
    let sha = Command::new(HOST)
        .args(["component", "--sha256"])
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&sha.stdout).trim(),
        sha256_hex(DEFAULT_COMPONENT)
    );
    let check = Command::new(HOST)
        .args(["component", "--check"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(check.status.code(), Some(0));

    let file_arg = file.to_string_lossy().into_owned();
    let p = Primary::start_with(
        2,
        "round-robin",
        &["--component", &file_arg],
        &[worker()],
        &[("SIO_TEST_ADAPTER", "1")],
    );
    p.wait_attached(2);
    for _ in 0..2 {
        let sid = handshake(p.port);
        let info = wait_for(Duration::from_secs(30), "worker info", || {
            let r = get(p.port, &format!("/ctl/info?sid={sid}"));
            (r.status == 200).then(|| r.text())
        });
        assert!(
            info.contains("component=precompiled"),
            "each worker loads the primary's artifact: {info}"
        );
    }
    assert!(p.log_text().contains(&file_arg), "{}", p.log_text());
}

#[test]
fn a_corrupt_artifact_is_refused_then_compiled_after_kill_9() {
    let p = Primary::start_with(
        1,
        "round-robin",
        &[],
        &[worker()],
        &[("SIO_TEST_ADAPTER", "1")],
    );
    let artifact = wait_for(Duration::from_secs(10), "artifact path", || {
        let log = p.log_text();
        let at = log.find("artifact=")?;
        let path: String = log[at + "artifact=".len()..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        Some(PathBuf::from(path))
    });
    p.wait_attached(1);
    let sid = handshake(p.port);
    let info = get(p.port, &format!("/ctl/info?sid={sid}")).text();
    assert!(info.contains("component=precompiled"), "{info}");
    let (_, pid, _) = common::parse_info(&info);

    // Truncate the artifact, then crash the worker: the new one must notice.
    let bytes = std::fs::read(&artifact).expect("artifact readable");
    std::fs::write(&artifact, &bytes[..bytes.len() / 2]).expect("truncate");
    // SAFETY: plain kill(2) of the test's own child worker.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let info = wait_for(Duration::from_secs(30), "respawned worker", || {
        // 503 while no worker is up: keep polling.
        let h = get(p.port, "/socket.io/?EIO=4&transport=polling");
        if h.status != 200 {
            return None;
        }
        let t = h.text();
        let start = t.find("\"sid\":\"")? + 7;
        let sid = &t[start..start + t[start..].find('"')?];
        let r = get(p.port, &format!("/ctl/info?sid={sid}"));
        let t = r.text();
        (r.status == 200 && !t.contains(&format!("pid={pid} "))).then_some(t)
    });
    assert!(
        info.contains("component=fallback:its_sha256_is"),
        "a truncated artifact is refused and the component compiled: {info}"
    );
}

fn node_works(engine: &sio_cluster_host::AdapterEngine) {
    let mut node = engine
        .instantiate(Config::new(7, "/", RoomOwner::Component), Limits::default())
        .expect("instantiate");
    let effects = node.init(0).expect("init");
    assert!(!effects.is_empty(), "init announces the node");
}

#[test]
fn artifacts_are_checked_before_they_are_loaded() {
    let dir = scratch_dir("artifacts");
    let env = compile_for_workers(None, &dir).expect("prepare");
    let artifact = PathBuf::from(
        &env.iter()
            .find(|(k, _)| k == ENV_COMPILED)
            .expect("the artifact's path")
            .1,
    );
    let good = std::fs::read(&artifact).expect("artifact");
    let sha = sha256_hex(&good);
    let component_sha = sha256_hex(DEFAULT_COMPONENT);
    let load = |path: &Path, sha: &str, for_sha: &str| {
        let (engine, loaded) = WorkerComponent {
            component: None,
            compiled: Some((path.to_path_buf(), sha.to_string(), for_sha.to_string())),
        }
        .load(EngineOptions::default())
        .expect("the worker always gets an engine");
        node_works(&engine);
        loaded
    };

    assert_eq!(load(&artifact, &sha, &component_sha), Loaded::Precompiled);

    let fallback = |l: Loaded| match l {
        Loaded::Fallback(reason) => reason,
        other => panic!("expected a fallback, got {other:?}"),
    };

    // Truncated: the sha256 differs.
    let truncated = write(&dir, "truncated.cwasm", &good[..good.len() / 3]);
    let reason = fallback(load(&truncated, &sha, &component_sha));
    assert!(reason.contains("sha256"), "{reason}");

    // Garbage whose sha256 the "primary" vouched for: wasmtime refuses it.
    let garbage = write(&dir, "garbage.cwasm", b"\x7fELF not really");
    let reason = fallback(load(
        &garbage,
        &sha256_hex(b"\x7fELF not really"),
        &component_sha,
    ));
    assert!(reason.contains("wasmtime refused it"), "{reason}");

    // Foreign: a real artifact, compiled with other engine settings.
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(false);
    let other_engine = wasmtime::Engine::new(&config).expect("engine");
    let foreign_bytes = wasmtime::component::Component::new(&other_engine, DEFAULT_COMPONENT)
        .expect("compile")
        .serialize()
        .expect("serialize");
    let foreign = write(&dir, "foreign.cwasm", &foreign_bytes);
    let reason = fallback(load(&foreign, &sha256_hex(&foreign_bytes), &component_sha));
    assert!(reason.contains("wasmtime refused it"), "{reason}");

    // Compiled from another component than the one this worker loads.
    let reason = fallback(load(&artifact, &sha, &"0".repeat(64)));
    assert!(reason.contains("compiled from component"), "{reason}");

    // Missing file.
    let reason = fallback(load(&dir.join("nope.cwasm"), &sha, &component_sha));
    assert!(reason.contains("cannot read"), "{reason}");
}
