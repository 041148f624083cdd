//! One loaded checkpoint on one backend. Everything here is generic over `B: Backend`: the
//! WebGPU and CPU paths are the same code with a different type parameter.

use bdaudit_core::checkpoint::{load_classifier, CheckpointFiles, Loaded};
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::eval::{argmax, logits_async};
use bdaudit_core::progress::{Progress, Silent};
use bdaudit_core::report::ScanReport;
use bdaudit_core::scan::{scan_async, ScanConfig};
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::WebError;

/// Longest input in tokens, [CLS] and [SEP] included; loading clamps it to the model's
/// `max_position_embeddings`.
pub const MAX_LEN: usize = 512;
/// Rows per forward pass. Rows are length-sorted first, so padding stays small.
pub const BATCH_SIZE: usize = 16;
/// Seed of the new classifier head of a checkpoint that has none (a bare pre-trained encoder).
pub const HEAD_SEED: u64 = 0;

/// One classified text, as `classify` returns it to JS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub text: String,
    /// The name of the most probable class (`id2label`, or "0", "1", …).
    pub label: String,
    /// Softmax probabilities, one per class, in label order.
    pub probs: Vec<f32>,
}

pub struct Session<B: Backend> {
    pub loaded: Loaded<B>,
    pub device: B::Device,
}

impl<B: Backend> Session<B> {
    pub fn load(files: &CheckpointFiles, num_labels: Option<usize>, device: B::Device) -> Result<Self, WebError> {
        let loaded = load_classifier::<B>(files, num_labels, MAX_LEN, HEAD_SEED, &device)?;
        Ok(Session { loaded, device })
    }

    /// Class probabilities of every text, in input order (core's async inference: the only
    /// way to read a WebGPU buffer in the browser).
    pub async fn classify(&self, texts: Vec<String>) -> Result<Vec<Prediction>, WebError> {
        let Loaded { model, tokenizer, labels, .. } = &self.loaded;
        let rows = texts.iter().map(|text| Ok(Encoded { ids: tokenizer.encode(text)?, label: 0 })).collect::<Result<Vec<_>, WebError>>()?;
        let logits = logits_async(model, &rows, tokenizer.pad_id(), BATCH_SIZE, &self.device, &mut Silent)
            .await
            .map_err(|e| WebError::Execution(e.to_string()))?;
        let probs = logits.iter().map(|row| softmax(row));
        Ok(texts.into_iter().zip(probs).map(|(text, probs)| Prediction { label: labels[argmax(&probs)].clone(), text, probs }).collect())
    }
}

impl<B: Backend> Session<B> {
    /// The combined scan (core `scan`): candidate triggers, trigger-shift probes, attention
    /// variance and drift, and the verdict. `base`, when given, is the clean checkpoint on the
    /// same backend, for token scores.
    pub async fn scan(
        &self,
        probe_texts: &[String],
        base: Option<&Session<B>>,
        config: &ScanConfig,
        progress: &mut dyn Progress,
    ) -> Result<ScanReport, WebError> {
        let Loaded { model, tokenizer, labels, .. } = &self.loaded;
        let base = base.map(|b| &b.loaded.model);
        Ok(scan_async(model, tokenizer, labels, probe_texts, base, config, &self.device, progress).await?)
    }
}

/// Softmax of one row of logits (a handful of classes: done on the host).
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
