//! The model directory (ONNX file, tokenizer, config) and the graph's inputs and
//! outputs.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};

/// What the model directory told us.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub model_path: PathBuf,
    pub tokenizer_path: PathBuf,
    /// Longest sequence the position embeddings allow.
    pub max_positions: Option<usize>,
    pub pad_token_id: Option<i64>,
}

/// Finds the ONNX file and tokenizer in a flat directory (`model.onnx`) or the
/// Hugging Face layout (`onnx/model.onnx`).
pub fn locate(dir: &Path, model_file: Option<&Path>) -> Result<ModelInfo, String> {
    if !dir.is_dir() {
        return Err(format!(
            "model directory {} does not exist (run scripts/setup, or set model_dir)",
            dir.display()
        ));
    }
    let model_path = match model_file {
        Some(f) => dir.join(f),
        None => ["model.onnx", "onnx/model.onnx"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .unwrap_or_else(|| dir.join("model.onnx")),
    };
    if !model_path.is_file() {
        return Err(format!(
            "no ONNX model at {} (expected model.onnx or onnx/model.onnx)",
            model_path.display()
        ));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(format!("no tokenizer.json in {}", dir.display()));
    }
    let (mut max_positions, mut pad_token_id) = (None, None);
    if let Ok(text) = std::fs::read_to_string(dir.join("config.json")) {
        let cfg: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}/config.json is not JSON: {e}", dir.display()))?;
        let model_type = cfg["model_type"].as_str().unwrap_or_default();
        // RoBERTa-family position ids start after the padding index: two fewer usable.
        let offset = if model_type.contains("roberta") { 2 } else { 0 };
        max_positions = cfg["max_position_embeddings"]
            .as_u64()
            .map(|n| (n as usize).saturating_sub(offset));
        pad_token_id = cfg["pad_token_id"].as_i64();
    }
    let mut name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "onnx".into());
    if let Some(f) = model_file {
        name = format!("{name}/{}", f.display());
    }
    Ok(ModelInfo {
        name,
        model_path,
        tokenizer_path,
        max_positions,
        pad_token_id,
    })
}

/// Inputs the graph takes, read from the model itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs {
    pub token_type_ids: bool,
}

pub(crate) fn inspect(session: &Session) -> Result<Inputs, String> {
    let has = |name: &str| session.inputs().iter().any(|i| i.name() == name);
    if !has("input_ids") || !has("attention_mask") {
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        return Err(format!(
            "model inputs are [{}]; a cross-encoder needs input_ids and attention_mask",
            names.join(", ")
        ));
    }
    for i in session.inputs() {
        if let ValueType::Tensor { ty, .. } = i.dtype() {
            if *ty != TensorElementType::Int64 {
                return Err(format!(
                    "model input {} is {ty:?}; only int64 inputs are supported",
                    i.name()
                ));
            }
        }
    }
    Ok(Inputs {
        token_type_ids: has("token_type_ids"),
    })
}

/// One raw score (log-odds) per row from logits `[B]`, `[B,1]` or `[B,2]`
/// (two classes: positive minus negative, whose sigmoid is the softmax probability).
pub fn scores_from_logits(shape: &[i64], data: &[f32], rows: usize) -> Result<Vec<f32>, String> {
    match shape {
        [b] | [b, 1] if *b as usize == rows => Ok(data[..rows].to_vec()),
        [b, 2] if *b as usize == rows => Ok(data.chunks(2).map(|c| c[1] - c[0]).collect()),
        _ => Err(format!(
            "unexpected logits shape {shape:?} for {rows} pairs (expected [B], [B,1] or [B,2])"
        )),
    }
}

/// One raw score per row from the model's first output, float32 or float16 (an fp16
/// graph converted without keeping float32 outputs).
pub(crate) fn scores_from_output(out: &DynValue, rows: usize) -> Result<Vec<f32>, String> {
    let (shape, data) = output_floats(out)?;
    scores_from_logits(&shape, &data, rows)
}

/// A float32 or float16 output tensor as its shape and float32 values.
pub(crate) fn output_floats(out: &DynValue) -> Result<(Vec<i64>, Vec<f32>), String> {
    let ValueType::Tensor { ty, .. } = out.dtype() else {
        return Err("model output is not a tensor".into());
    };
    match ty {
        TensorElementType::Float32 => {
            let (shape, data) = out
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("cannot read the model output: {e}"))?;
            Ok((shape.iter().copied().collect(), data.to_vec()))
        }
        TensorElementType::Float16 => {
            let (shape, bits) = f16_bits(out)?;
            Ok((shape, bits.into_iter().map(f16_to_f32).collect()))
        }
        other => Err(format!(
            "model output is {other:?}; expected float32 or float16 logits"
        )),
    }
}

/// The raw 16-bit words of a float16 output tensor in CPU memory (`ort`'s typed
/// extraction of f16 needs its `half` feature; the bits are all we need).
fn f16_bits(out: &DynValue) -> Result<(Vec<i64>, Vec<u16>), String> {
    let ValueType::Tensor { shape, .. } = out.dtype() else {
        return Err("model output is not a tensor".into());
    };
    let shape: Vec<i64> = shape.iter().copied().collect();
    let n: usize = shape.iter().map(|&d| d.max(0) as usize).product();
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `out` is a live tensor value owned by the session outputs; ONNX Runtime
    // returns a pointer to its buffer of `n` float16 elements, which session outputs
    // keep in CPU memory (outputs are copied back from a GPU). We copy them out before
    // `out` can be dropped.
    unsafe {
        let api = ort::api();
        let status = (api.GetTensorMutableData)(ort::AsPointer::ptr(out).cast_mut(), &mut data);
        super::session::check_status(status)?;
        if n == 0 {
            return Ok((shape, Vec::new()));
        }
        if data.is_null() {
            return Err("model output has no data".into());
        }
        Ok((
            shape,
            std::slice::from_raw_parts(data.cast::<u16>(), n).to_vec(),
        ))
    }
}

/// IEEE 754 half → single precision (exact: every f16 is representable as f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f × 2^-24; normalise it.
            let shift = f.leading_zeros() - 21; // bring the top bit to bit 10
            let f = (f << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_shapes() {
        assert_eq!(
            scores_from_logits(&[2, 1], &[0.5, -1.0], 2).unwrap(),
            vec![0.5, -1.0]
        );
        assert_eq!(
            scores_from_logits(&[2], &[0.5, -1.0], 2).unwrap(),
            vec![0.5, -1.0]
        );
        assert_eq!(
            scores_from_logits(&[2, 2], &[1.0, 3.0, 2.0, 0.0], 2).unwrap(),
            vec![2.0, -2.0]
        );
        assert!(scores_from_logits(&[2, 3], &[0.0; 6], 2).is_err());
        assert!(scores_from_logits(&[3, 1], &[0.0; 3], 2).is_err());
    }

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn locate_reports_missing_pieces() {
        let dir = std::env::temp_dir().join(format!("sp-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("onnx")).unwrap();
        let e = locate(&dir, None).unwrap_err();
        assert!(e.contains("no ONNX model"), "{e}");
        std::fs::write(dir.join("onnx/model.onnx"), b"x").unwrap();
        let e = locate(&dir, None).unwrap_err();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
        std::fs::write(
            dir.join("config.json"),
            br#"{"model_type":"xlm-roberta","max_position_embeddings":514,"pad_token_id":1}"#,
        )
        .unwrap();
        let info = locate(&dir, None).unwrap();
        assert!(info.model_path.ends_with("onnx/model.onnx"));
        assert_eq!(info.max_positions, Some(512));
        assert_eq!(info.pad_token_id, Some(1));
        assert!(locate(&dir.join("missing"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
