//! Finding and loading `libonnxruntime.so` (load-dynamic): once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where `scripts/setup` puts the library, relative to the working directory.
pub const DEFAULT_LOCAL_PATH: &str = ".local/onnxruntime/lib/libonnxruntime.so";

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
static LOADED: OnceLock<PathBuf> = OnceLock::new();

/// The library ONNX Runtime was loaded from (once [`environment`] succeeded).
pub fn loaded_from() -> Option<&'static Path> {
    LOADED.get().map(PathBuf::as_path)
}

/// The loaded ONNX Runtime's version (`1.31.1`): from the library's file name
/// (`libonnxruntime.so` links to `libonnxruntime.so.1.31.1` in the wheels, images and
/// `scripts/setup`), else from its build string when that names a release branch.
pub fn version() -> String {
    let from_name = loaded_from()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            name.split_once(".so.").map(|(_, v)| v.to_string())
        });
    let info = ort::info();
    from_name
        .or_else(|| {
            info.split([',', ' '])
                .find_map(|part| part.strip_prefix("git-branch=rel-"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Candidates in order: `ORT_DYLIB_PATH`, the config's `runtime_path`, the setup
/// script's folder, then the system's `libonnxruntime.so`.
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        if !p.is_empty() {
            out.push(PathBuf::from(p));
        }
    }
    if let Some(p) = configured {
        out.push(p.to_path_buf());
    }
    out.push(PathBuf::from(DEFAULT_LOCAL_PATH));
    out
}

/// Initializes ONNX Runtime from the first candidate that exists (or the system
/// library), returning the process-wide environment.
pub fn environment(
    configured: Option<&Path>,
) -> Result<&'static ort::environment::Environment, String> {
    ENV.get_or_init(|| {
        let tried = candidates(configured);
        let path = tried
            .iter()
            .find(|p| p.exists())
            .cloned()
            .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
        let builder = ort::init_from(&path).map_err(|e| {
            let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            format!(
                "cannot load ONNX Runtime from {} ({e}); looked at [{}] and the system library. \
                 Run scripts/setup, or set ORT_DYLIB_PATH to libonnxruntime.so (version 1.31.x)",
                path.display(),
                list.join(", ")
            )
        })?;
        let _ = LOADED.set(path);
        builder
            .with_name("secondpass")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}
