//! Traces off (the default) start nothing: the running binary has no exporter thread;
//! on, it has one, and a collector that is down does not stop it from serving.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `secondpass serve` with the example configuration on port 0 and `env`, once it
/// listens.
fn serve(env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_secondpass"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--config", "config/secondpass.toml"])
        .env("SECONDPASS__SERVER__REST_LISTEN", "127.0.0.1:0")
        .env("SECONDPASS__SERVER__GRPC_LISTEN", "127.0.0.1:0")
        .env("SECONDPASS__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for var in ["OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("start secondpass");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Blocks until the line comes or the process ends (its stdout closes).
    let listening = lines.any(|l| l.is_ok_and(|l| l.contains("secondpass listening")));
    assert!(listening, "secondpass did not start: {:?}", child.wait());
    child
}

/// The names of the process's threads.
fn threads(child: &Child) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The SDK's batch exporter thread ("OpenTelemetry.Traces.BatchProcessor", cut to
/// the 15 bytes Linux keeps).
fn exporter(names: &[String]) -> bool {
    names.iter().any(|n| n.starts_with("OpenTelemetry"))
}

#[test]
fn traces_off_start_no_exporter_thread() {
    let child = serve(&[]);
    let names = threads(&child);
    stop(child);
    assert!(!exporter(&names), "{names:?}");
}

#[test]
fn traces_on_start_the_exporter_even_with_the_collector_down() {
    let child = serve(&[
        ("SECONDPASS__TRACING__ENABLED", "true"),
        // Nothing listens there: exports fail in the background, serving goes on.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
    ]);
    let names = threads(&child);
    stop(child);
    assert!(exporter(&names), "{names:?}");
}
