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

/// Turns ONNX Runtime's own telemetry off unless the operator chose otherwise.
///
/// Microsoft's builds (the PyPI wheels included) start a 1DS uploader when the library
/// loads: the Linux 1.31 library writes a device id and an event database under
/// `$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime` and resolves
/// mobile.events.data.microsoft.com about every 40 s. Only the environment stops it
/// before it starts (read when the library initializes; the C API's
/// `DisableTelemetryEvents` comes too late): `ORT_DISABLE_TELEMETRY` in 1.31,
/// `ORT_TELEMETRY_DISABLED` in later sources. A sidecar beside a database makes no
/// calls its operator did not configure, so both are set to `1` here unless the
/// operator set either (set both to `0` to keep Microsoft's default).
///
/// `main` calls this before any other thread starts; [`environment`] calls it again
/// (a no-op then) for programs that embed the library.
pub fn keep_telemetry_off() {
    const VARS: [&str; 2] = ["ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"];
    if VARS.iter().all(|v| std::env::var_os(v).is_none()) {
        for v in VARS {
            std::env::set_var(v, "1");
        }
    }
}

/// Initializes ONNX Runtime from the first candidate that exists (or the system
/// library), returning the process-wide environment.
pub fn environment(
    configured: Option<&Path>,
) -> Result<&'static ort::environment::Environment, String> {
    ENV.get_or_init(|| {
        keep_telemetry_off();
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
        // Also off through the API (Windows builds report through ETW).
        builder
            .with_name("secondpass")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}
