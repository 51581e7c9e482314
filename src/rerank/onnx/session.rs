//! Building one ONNX Runtime session per worker: threads and execution device.
//!
//! Threads: each worker runs its own session on its own thread, so `workers`
//! sessions run at the same time; inside a session only intra-op threads work
//! (sequential execution, inter-op threads 1). With several workers,
//! `intra_threads = 0` splits the machine's cores between them instead of giving
//! every worker all of them.
//!
//! Device: `cuda` / `cuda:N` registers ONNX Runtime's CUDA execution provider and
//! fails the load when it cannot be registered; it never falls back to the CPU.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use ort::environment::Environment;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::AsPointer;

/// Where inference runs, from the reranker's `device` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(u32),
}

impl Device {
    /// `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("device `{s}`: use cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Intra-op threads for each of `workers` sessions: the configured number; for 0,
/// ONNX Runtime's own choice (one per physical core, returned as 0) when there is one
/// worker, else the `cores` shared out between the workers, at least one each (so
/// that workers do not each start a thread per core).
pub fn intra_threads(configured: usize, workers: usize, cores: usize) -> usize {
    if configured > 0 || workers <= 1 {
        return configured;
    }
    (cores / workers).max(1)
}

/// The cores this process may use (1 when that cannot be told).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One session on `device` with `intra` intra-op threads.
pub fn build(
    env: &Environment,
    model: &Path,
    device: Device,
    intra: usize,
) -> Result<Session, String> {
    let e = |e: ort::Error<SessionBuilder>| e.to_string();
    let mut builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_parallel_execution(false)
        .map_err(e)?
        .with_inter_threads(1)
        .map_err(e)?
        .with_intra_threads(intra)
        .map_err(e)?;
    if let Device::Cuda(id) = device {
        register_cuda(&mut builder, id).map_err(|why| {
            format!(
                "device `{device}`: cannot use CUDA: {why}. Install the CUDA build of ONNX \
                 Runtime 1.31 (the onnxruntime-gpu wheel's libonnxruntime.so, with \
                 libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so \
                 beside it) and point ORT_DYLIB_PATH or runtime_path at it, with the CUDA \
                 and cuDNN libraries it needs on the library path; or set device = \"cpu\""
            )
        })?;
    }
    builder
        .commit_from_file(model)
        .map_err(|err| format!("cannot load {} on {device}: {err}", model.display()))
}

/// Appends the CUDA execution provider for GPU `id`. Goes through ONNX Runtime's C
/// API (`ort`'s `ep::CUDA` needs its `cuda` feature; this needs nothing) and returns
/// ONNX Runtime's own reason when the provider is missing from the library.
fn register_cuda(builder: &mut SessionBuilder, id: u32) -> Result<(), String> {
    let providers = available_providers();
    if !providers.iter().any(|p| p == "CUDAExecutionProvider") {
        return Err(format!(
            "the loaded ONNX Runtime library has no CUDAExecutionProvider (it has: {})",
            providers.join(", ")
        ));
    }
    let api = ort::api();
    let mut options = std::ptr::null_mut();
    // SAFETY: plain C API calls on live objects; `options` is released on every path.
    unsafe {
        check_status((api.CreateCUDAProviderOptions)(&mut options))?;
        let key = CString::new("device_id").expect("no NUL");
        let value = CString::new(id.to_string()).expect("no NUL");
        let keys = [key.as_ptr()];
        let values = [value.as_ptr()];
        let result = check_status((api.UpdateCUDAProviderOptions)(
            options,
            keys.as_ptr(),
            values.as_ptr(),
            1,
        ))
        .and_then(|()| {
            check_status((api.SessionOptionsAppendExecutionProvider_CUDA_V2)(
                builder.ptr_mut(),
                options,
            ))
        });
        (api.ReleaseCUDAProviderOptions)(options);
        result
    }
}

/// Execution providers compiled into the loaded ONNX Runtime library.
pub fn available_providers() -> Vec<String> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut n: i32 = 0;
    // SAFETY: ONNX Runtime allocates the list; we copy the names and release it.
    unsafe {
        if check_status((api.GetAvailableProviders)(&mut list, &mut n)).is_err() || list.is_null() {
            return Vec::new();
        }
        let names = (0..n.max(0) as usize)
            .map(|i| CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned())
            .collect();
        let _ = check_status((api.ReleaseAvailableProviders)(list, n));
        names
    }
}

/// The execution provider a session on `device` was built with (CPU sessions have only
/// ONNX Runtime's default one; CUDA sessions fail to build without theirs).
pub fn provider(device: Device) -> &'static str {
    match device {
        Device::Cpu => "CPUExecutionProvider",
        Device::Cuda(_) => "CUDAExecutionProvider",
    }
}

/// Where the session takes each input, as ONNX Runtime placed the graph: `name` →
/// memory `Cpu`, `Cuda:0`, ... (an input read by a node on the GPU is wanted in GPU
/// memory).
pub fn input_placement(session: &Session) -> Result<Vec<(String, String)>, String> {
    let names: Vec<String> = session
        .inputs()
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let mut infos: Vec<*const ort::sys::OrtMemoryInfo> = vec![std::ptr::null(); names.len()];
    let api = ort::api();
    // SAFETY: ONNX Runtime fills `infos` with one pointer per input, owned by the
    // session (not released here), read while `session` is alive.
    unsafe {
        check_status((api.SessionGetMemoryInfoForInputs)(
            session.ptr(),
            infos.as_mut_ptr(),
            infos.len(),
        ))?;
        names
            .into_iter()
            .zip(infos)
            .map(|(name, info)| {
                if info.is_null() {
                    return Ok((name, "unknown".to_string()));
                }
                let mut dev: *const c_char = std::ptr::null();
                check_status((api.MemoryInfoGetName)(info, &mut dev))?;
                let mut id = 0;
                check_status((api.MemoryInfoGetId)(info, &mut id))?;
                let dev = if dev.is_null() {
                    "unknown".into()
                } else {
                    CStr::from_ptr(dev).to_string_lossy().into_owned()
                };
                Ok((
                    name,
                    if dev == "Cpu" {
                        dev
                    } else {
                        format!("{dev}:{id}")
                    },
                ))
            })
            .collect()
    }
}

/// `Ok` for a null status, else its message (the status is released).
///
/// # Safety
/// `status` must be null or a status returned by ONNX Runtime and not yet released.
pub(crate) unsafe fn check_status(status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    let msg = CStr::from_ptr((api.GetErrorMessage)(status.0))
        .to_string_lossy()
        .into_owned();
    (api.ReleaseStatus)(status.0);
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(Device::parse("cuda:3").unwrap(), Device::Cuda(3));
        assert!(Device::parse("cuda:x").is_err());
        assert!(Device::parse("gpu").is_err());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn intra_threads_share_the_cores() {
        // configured: taken as it is, whatever the cores and workers
        assert_eq!(intra_threads(3, 4, 16), 3);
        assert_eq!(intra_threads(3, 1, 2), 3);
        assert_eq!(intra_threads(64, 8, 2), 64);
        // 0 with one worker (or none): ONNX Runtime decides
        assert_eq!(intra_threads(0, 1, 16), 0);
        assert_eq!(intra_threads(0, 0, 16), 0);
        // 0 with several workers: the cores shared out, rounded down
        assert_eq!(intra_threads(0, 2, 16), 8);
        assert_eq!(intra_threads(0, 3, 16), 5);
        assert_eq!(intra_threads(0, 4, 2), 1);
        assert_eq!(intra_threads(0, 2, 2), 1);
        // never 0 (which would mean "one per core" to each worker)
        assert_eq!(intra_threads(0, 32, 16), 1);
        assert_eq!(intra_threads(0, 2, 1), 1);
        assert!(available_cores() >= 1);
    }
}
