//! `device = "cuda"` either runs on CUDA or fails the load with a message naming the
//! device and what to install; it never runs on the CPU instead. On a machine whose
//! ONNX Runtime has no CUDA provider (the PyPI CPU build from scripts/setup) the load
//! must fail. Needs `scripts/setup` (ONNX Runtime) and the shared model folder.

use std::path::PathBuf;

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::{session, Device, OnnxReranker};

fn config(device: &str) -> OnnxConfig {
    let shared = std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    OnnxConfig {
        model_dir: shared.join("models/cranfield-minilm-l6-ce"),
        model_file: Some("model_int8.onnx".into()),
        max_length: 128,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(8),
        intra_threads: 1,
        workers: 1,
        queue_capacity: 4,
        runtime_path: None,
        max_batch_tokens: Some(8192),
        device: device.into(),
        ..OnnxConfig::new("")
    }
}

#[test]
fn cuda_without_a_cuda_runtime_fails_clearly() {
    for device in ["cuda", "cuda:1"] {
        match OnnxReranker::load(&config(device)) {
            Ok(r) => {
                // Only a CUDA build of ONNX Runtime on a GPU machine gets here.
                assert!(session::available_providers().contains(&"CUDAExecutionProvider".into()));
                let want = Device::parse(device).unwrap();
                assert_eq!(r.device, want);
                assert_eq!(r.execution.provider, "CUDAExecutionProvider");
                // Really on the device, not a CUDA session that takes its inputs in CPU
                // memory: the token ids feed the embedding lookup, a GPU node.
                let Device::Cuda(n) = want else {
                    unreachable!()
                };
                let placed = &r.execution.inputs_on;
                println!("{device}: inputs on {placed:?}");
                assert_eq!(
                    placed.get("input_ids").map(String::as_str),
                    Some(format!("Cuda:{n}").as_str()),
                    "{placed:?}"
                );
            }
            Err(e) => {
                println!("{device}: {e}");
                let name = Device::parse(device).unwrap().to_string();
                assert!(
                    e.contains(&format!("device `{name}`")) || e.contains(&name),
                    "{e}"
                );
                assert!(e.contains("CUDA"), "{e}");
                if !session::available_providers().contains(&"CUDAExecutionProvider".into()) {
                    assert!(
                        e.contains("onnxruntime-gpu") && e.contains("ORT_DYLIB_PATH"),
                        "the message says what to install: {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn cpu_loads_and_unknown_devices_are_refused() {
    let r = OnnxReranker::load(&config("cpu")).expect("cpu loads");
    assert_eq!(r.device, Device::Cpu);
    let e = OnnxReranker::load(&config("tpu"))
        .err()
        .expect("tpu is refused");
    assert!(e.contains("tpu"), "{e}");
}
