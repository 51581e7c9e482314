//! The binary: configuration is validated (file + environment) before anything starts.

use std::process::Command;

fn secondpass() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_secondpass"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn example_config_checks() {
    let out = secondpass()
        .args(["check-config", "--config", "config/secondpass.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("collection default"));
}

#[test]
fn invalid_file_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("sp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[collections.docs]\npool = 0\n").unwrap();
    let out = secondpass()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collections.docs.pool"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn environment_overrides_the_file_and_is_validated() {
    let out = secondpass()
        .args(["check-config", "--config", "config/secondpass.toml"])
        .env("SECONDPASS__UPSTREAM__URL", "ftp://qdrant")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream.url"));

    let out = secondpass()
        .args(["check-config", "--config", "config/secondpass.toml"])
        .env("SECONDPASS__COLLECTIONS__DOCS__ENABLED", "true")
        .env("SECONDPASS__COLLECTIONS__DOCS__POOL", "40")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("collection docs") && stdout.contains("pool: 40"),
        "{stdout}"
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let out = secondpass()
        .args(["serve", "--config", "/nonexistent/secondpass.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn unloadable_model_stops_startup() {
    let out = secondpass()
        .args(["serve", "--config", "config/secondpass.toml"])
        .env(
            "SECONDPASS__RERANKERS__LOCAL__MODEL_DIR",
            "/nonexistent/model",
        )
        .env("SECONDPASS__SERVER__REST_LISTEN", "127.0.0.1:0")
        .env("SECONDPASS__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("/nonexistent/model"), "{all}");
    assert!(
        !all.contains("secondpass listening"),
        "must not listen without a model"
    );
}

/// A configuration whose only reranker is the shared model, on `device`.
fn doctor_config(tag: &str) -> std::path::PathBuf {
    let shared = std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared").into());
    let dir = std::env::temp_dir().join(format!("sp-doctor-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("doctor.toml");
    let model = shared.join("models/cranfield-minilm-l6-ce");
    std::fs::write(
        &file,
        format!(
            "[rerankers.local]\nkind = \"onnx\"\nmodel_dir = \"{}\"\nmodel_file = \"model_int8.onnx\"\nmax_length = 128\n",
            model.display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn doctor_loads_the_model_and_scores_one_batch() {
    let file = doctor_config("cpu");
    let out = secondpass()
        .args(["doctor", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "reranker local: ok",
        "provider CPUExecutionProvider",
        "device cpu",
        "input_ids=Cpu",
        "model_int8.onnx",
        "relevant first: yes",
    ] {
        assert!(stdout.contains(want), "no `{want}` in {stdout}");
    }
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn doctor_fails_clearly_when_cuda_cannot_load() {
    let file = doctor_config("cuda");
    let out = secondpass()
        .args(["doctor", "--config"])
        .arg(&file)
        .env("SECONDPASS__RERANKERS__LOCAL__DEVICE", "cuda")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    // On a host with a working CUDA build of ONNX Runtime this passes instead, with
    // the inputs in GPU memory (the token ids feed the embedding lookup, a GPU node).
    if out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        for want in [
            "reranker local: ok",
            "provider CUDAExecutionProvider",
            "device cuda:0",
            "input_ids=Cuda:0",
        ] {
            assert!(stdout.contains(want), "no `{want}` in {stdout}");
        }
    } else {
        assert_eq!(out.status.code(), Some(1));
        for want in [
            "reranker local: FAILED",
            "device `cuda:0`: cannot use CUDA",
            "or set device = \"cpu\"",
            "1 reranker(s) cannot serve",
        ] {
            assert!(stderr.contains(want), "no `{want}` in {stderr}");
        }
    }
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}
