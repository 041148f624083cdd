//! Hugging Face safetensors ⇄ [`BertClassifier`]: names, PyTorch layout, validation.

use std::collections::{BTreeSet, HashMap};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{
    tensor::{TensorInfo, TensorView},
    Dtype, SafeTensorError, SafeTensors,
};

use super::{CheckpointError, ParamKind, ParamSource, RandomInit};
use crate::model::BertClassifier;

/// Names `transformers` registers as buffers, not parameters: present in some files, never loaded.
const BUFFERS: &[&str] = &["embeddings.position_ids"];

/// Reads parameters from safetensors bytes with bare `BertModel` names or the `bert.`-prefixed
/// names of `BertForSequenceClassification`, checking presence, shape, dtype and finiteness.
pub struct SafetensorsSource<'a, B: Backend> {
    tensors: SafeTensors<'a>,
    prefix: &'static str,
    device: B::Device,
    used: BTreeSet<String>,
    /// Initialises the classifier (and a missing pooler) when the file has none: a base
    /// encoder being turned into a classifier.
    fallback: Option<RandomInit<B>>,
    initialised: Vec<String>,
}

impl<'a, B: Backend> SafetensorsSource<'a, B> {
    pub fn new(bytes: &'a [u8], device: &B::Device) -> Result<Self, CheckpointError> {
        let tensors = parse(bytes)?;
        let names: BTreeSet<&str> = tensors.names().into_iter().collect();
        let prefix = if names.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        Ok(SafetensorsSource { tensors, prefix, device: device.clone(), used: BTreeSet::new(), fallback: None, initialised: Vec::new() })
    }

    /// Allows a missing classifier head or pooler to be initialised from `init`.
    pub fn with_fallback(mut self, init: RandomInit<B>) -> Self {
        self.fallback = Some(init);
        self
    }

    /// The number of classes of the stored classifier (`[num_labels, hidden]`), if it has one.
    pub fn classifier_labels(&self) -> Result<Option<usize>, CheckpointError> {
        head_rows(&self.tensors)
    }

    /// `"bert."` when the file uses `BertForSequenceClassification` names, else `""`.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Parameters that were initialised rather than read.
    pub fn initialised(&self) -> &[String] {
        &self.initialised
    }

    /// Tensors of the file that the model did not use (buffers excluded).
    pub fn unused(&self) -> Vec<String> {
        self.tensors
            .names()
            .into_iter()
            .filter(|n| !self.used.contains(*n))
            .filter(|n| !BUFFERS.iter().any(|b| n.ends_with(b)))
            .map(str::to_string)
            .collect()
    }

    /// The stored name of a parameter: prefix, and old TF-converted LayerNorm names.
    fn find(&self, name: &str) -> Option<(String, TensorView<'a>)> {
        let full = if name.starts_with("classifier.") { name.to_string() } else { format!("{}{}", self.prefix, name) };
        let alias = full
            .strip_suffix("LayerNorm.weight")
            .map(|p| format!("{p}LayerNorm.gamma"))
            .or_else(|| full.strip_suffix("LayerNorm.bias").map(|p| format!("{p}LayerNorm.beta")));
        std::iter::once(full).chain(alias).find_map(|n| self.tensors.tensor(&n).ok().map(|v| (n, v)))
    }
}

impl<B: Backend> ParamSource<B> for SafetensorsSource<'_, B> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D], kind: ParamKind) -> Result<Tensor<B, D>, CheckpointError> {
        let Some((stored, view)) = self.find(name) else {
            let optional = name.starts_with("classifier.") || name.starts_with("pooler.");
            return match (&mut self.fallback, optional) {
                (Some(init), true) => {
                    self.initialised.push(name.to_string());
                    init.tensor(name, shape, kind)
                }
                _ => Err(CheckpointError::MissingTensor { name: format!("{}{}", self.prefix, name) }),
            };
        };
        let transpose = kind == ParamKind::LinearWeight;
        let mut expected = shape.to_vec();
        if transpose {
            expected.reverse();
        }
        if view.shape() != expected.as_slice() {
            return Err(CheckpointError::Shape { name: stored, expected, found: view.shape().to_vec() });
        }
        let mut values = to_f32(&stored, &view)?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(CheckpointError::NonFinite { name: stored, count: bad });
        }
        if transpose {
            values = transpose2(&values, expected[0], expected[1]);
        }
        self.used.insert(stored);
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }
}

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, CheckpointError> {
    let bytes = view.data();
    let values = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        other => return Err(CheckpointError::Dtype { name: name.to_string(), found: format!("{other:?}") }),
    };
    Ok(values)
}

/// IEEE 754 binary16 → binary32, subnormals included.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            let value = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -value } else { value };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
fn transpose2(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

struct Collected {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl Collected {
    fn push<B: Backend, const D: usize>(&mut self, name: String, tensor: Tensor<B, D>, kind: ParamKind) -> Result<(), CheckpointError> {
        let mut shape = tensor.dims().to_vec();
        let data = tensor.into_data().convert::<f32>();
        let mut values = data.to_vec::<f32>().map_err(|e| CheckpointError::Serialize(format!("{name}: {e:?}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(CheckpointError::NonFiniteExport { name });
        }
        if kind == ParamKind::LinearWeight {
            values = transpose2(&values, shape[0], shape[1]);
            shape.reverse();
        }
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name, shape, bytes));
        Ok(())
    }

    fn linear<B: Backend>(&mut self, prefix: &str, linear: &burn::nn::Linear<B>) -> Result<(), CheckpointError> {
        self.push(format!("{prefix}.weight"), linear.weight.val(), ParamKind::LinearWeight)?;
        if let Some(bias) = &linear.bias {
            self.push(format!("{prefix}.bias"), bias.val(), ParamKind::Bias)?;
        }
        Ok(())
    }

    fn layer_norm<B: Backend>(&mut self, prefix: &str, norm: &burn::nn::LayerNorm<B>) -> Result<(), CheckpointError> {
        self.push(format!("{prefix}.weight"), norm.gamma.val(), ParamKind::Scale)?;
        if let Some(beta) = &norm.beta {
            self.push(format!("{prefix}.bias"), beta.val(), ParamKind::Bias)?;
        }
        Ok(())
    }
}

/// Serialises a classifier in `BertForSequenceClassification` layout (`bert.` prefix,
/// PyTorch `[out, in]` Linear weights, `format: pt` metadata as `transformers` expects).
pub fn export_safetensors<B: Backend>(model: &BertClassifier<B>) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Collected { tensors: Vec::new() };
    let e = &model.bert.embeddings;
    out.push("bert.embeddings.word_embeddings.weight".into(), e.word.weight.val(), ParamKind::Embedding)?;
    out.push("bert.embeddings.position_embeddings.weight".into(), e.position.weight.val(), ParamKind::Embedding)?;
    out.push("bert.embeddings.token_type_embeddings.weight".into(), e.token_type.weight.val(), ParamKind::Embedding)?;
    out.layer_norm("bert.embeddings.LayerNorm", &e.layer_norm)?;
    for (i, layer) in model.bert.layers.iter().enumerate() {
        let p = format!("bert.encoder.layer.{i}");
        out.linear(&format!("{p}.attention.self.query"), &layer.query)?;
        out.linear(&format!("{p}.attention.self.key"), &layer.key)?;
        out.linear(&format!("{p}.attention.self.value"), &layer.value)?;
        out.linear(&format!("{p}.attention.output.dense"), &layer.attention_output)?;
        out.layer_norm(&format!("{p}.attention.output.LayerNorm"), &layer.attention_norm)?;
        out.linear(&format!("{p}.intermediate.dense"), &layer.intermediate)?;
        out.linear(&format!("{p}.output.dense"), &layer.output)?;
        out.layer_norm(&format!("{p}.output.LayerNorm"), &layer.output_norm)?;
    }
    out.linear("bert.pooler.dense", &model.bert.pooler)?;
    out.linear("classifier", &model.classifier)?;

    let views = out
        .tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| CheckpointError::Serialize(format!("{name}: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Serialize(format!("{e:?}")))
}

/// The file's header and tensor views (no copy).
pub(super) fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, CheckpointError> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        CheckpointError::Malformed(match e {
            SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidHeaderLength => {
                format!("{e} (the file is truncated or corrupted)")
            }
            SafeTensorError::TensorInvalidInfo => invalid_tensor_info(bytes).unwrap_or_else(|| e.to_string()),
            other => other.to_string(),
        })
    })
}

/// Which tensor's byte range disagrees with its shape and dtype, and by how much: safetensors'
/// own error for it (`TensorInvalidInfo`) names no tensor.
fn invalid_tensor_info(bytes: &[u8]) -> Option<String> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(bytes.get(8..len.checked_add(8)?)?).ok()?;
    let mut entries: Vec<_> = header.into_iter().filter(|(name, _)| name != "__metadata__").collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().find_map(|(name, info)| {
        let info: TensorInfo = serde_json::from_value(info).ok()?;
        let (start, end) = info.data_offsets;
        let held = end.checked_sub(start)?;
        let bits = info.shape.iter().try_fold(info.dtype.bitsize(), |n, &d| n.checked_mul(d))?;
        (held.checked_mul(8) != Some(bits)).then(|| {
            format!(
                "tensor `{name}`: shape {:?} of {:?} takes {} bytes, but its data_offsets [{start}, {end}] hold {held}",
                info.shape,
                info.dtype,
                bits.div_ceil(8)
            )
        })
    })
}

/// Rows of `classifier.weight`, if the file has one; a head of another rank is malformed
/// rather than absent (it would otherwise pass for a bare encoder and get a new head).
pub(super) fn head_rows(tensors: &SafeTensors<'_>) -> Result<Option<usize>, CheckpointError> {
    match tensors.tensor("classifier.weight") {
        Err(_) => Ok(None),
        Ok(t) => match t.shape() {
            &[rows, _] => Ok(Some(rows)),
            other => Err(CheckpointError::Malformed(format!("classifier.weight has shape {other:?}, expected [num_labels, hidden_size]"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn a_tensor_whose_bytes_disagree_with_its_shape_is_named() {
        let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,24]}}"#;
        let bytes = [&(header.len() as u64).to_le_bytes()[..], header, &[0u8; 24]].concat();
        let Err(CheckpointError::Malformed(message)) = parse(&bytes) else { panic!("not malformed") };
        assert_eq!(message, "tensor `w`: shape [2, 3] of F32 takes 24 bytes, but its data_offsets [8, 24] hold 16");
    }

    #[test]
    fn transpose_is_its_own_inverse() {
        let v: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let t = transpose2(&v, 2, 3);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose2(&t, 3, 2), v);
    }
}
