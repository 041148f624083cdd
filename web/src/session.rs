//! One loaded checkpoint on one backend. Everything here is generic over `B: Backend`: the
//! WebGPU and CPU paths are the same code with a different type parameter.

use bdaudit_core::attack::Trigger;
use bdaudit_core::checkpoint::{load_classifier, CheckpointFiles, Loaded};
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::data::Example;
use bdaudit_core::eval::{argmax, logits_async};
use bdaudit_core::probe::attention::{variance_scores_async, HeadScores};
use bdaudit_core::probe::token_scores::{against_base_async, rank, TokenScore};
use bdaudit_core::probe::trigger_shift::{insert_all, summarise, TriggerShift, TriggerShiftError};
use bdaudit_core::progress::{Progress, Silent};
use bdaudit_core::report::ScanReport;
use bdaudit_core::scan::{scan_async, ScanConfig, SCAN_HEAD_SEED, SCAN_MAX_LEN};
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::WebError;

/// Rows per forward pass. Rows are length-sorted first, so padding stays small.
pub const BATCH_SIZE: usize = 16;

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
        let loaded = load_classifier::<B>(files, num_labels, SCAN_MAX_LEN, SCAN_HEAD_SEED, &device)?;
        Ok(Session { loaded, device })
    }

    /// Class probabilities of every text, in input order (core's async inference: the only
    /// way to read a WebGPU buffer in the browser).
    pub async fn classify(&self, texts: Vec<String>) -> Result<Vec<Prediction>, WebError> {
        let logits = self.logits(&texts, &mut Silent).await?;
        let labels = &self.loaded.labels;
        let probs = logits.iter().map(|row| softmax(row));
        Ok(texts.into_iter().zip(probs).map(|(text, probs)| Prediction { label: labels[argmax(&probs)].clone(), text, probs }).collect())
    }

    /// PURE's attention-variance probe alone: the `[CLS]` attention variance (eq. 2) of every
    /// head, averaged over `texts`.
    pub async fn attention_variance(&self, texts: &[String], progress: &mut dyn Progress) -> Result<HeadScores, WebError> {
        let rows = self.encode(texts)?;
        Ok(variance_scores_async(&self.loaded.model, &rows, self.loaded.tokenizer.pad_id(), BATCH_SIZE, &self.device, progress).await?)
    }

    /// The trigger-shift probe alone: where inserting `trigger` sends `texts`, each labelled
    /// with the model's own clean prediction, as the scan labels its probe texts.
    pub async fn trigger_shift(
        &self,
        texts: &[String],
        trigger: &Trigger,
        seed: u64,
        progress: &mut dyn Progress,
    ) -> Result<TriggerShift, WebError> {
        if texts.is_empty() {
            return Err(TriggerShiftError::Empty.into());
        }
        // The clean predictions are the labels too, so one clean pass serves both (as in the
        // scan), not a labelling pass and then the probe's own.
        let clean: Vec<usize> = self.logits(texts, progress).await?.iter().map(|l| argmax(l)).collect();
        let labelled: Vec<Example> = texts.iter().zip(&clean).map(|(t, &label)| Example { text: t.clone(), label }).collect();
        let triggered: Vec<String> = insert_all(&labelled, trigger, seed).into_iter().map(|e| e.text).collect();
        let flipped: Vec<usize> = self.logits(&triggered, progress).await?.iter().map(|l| argmax(l)).collect();
        Ok(summarise(trigger, &clean, &clean, &flipped, self.loaded.model.num_labels()).map_err(TriggerShiftError::from)?)
    }

    /// BTU's token scores alone: the `top` tokens whose embedding rows moved most from `base`.
    pub async fn token_scores(&self, base: &Session<B>, top: usize) -> Result<Vec<TokenScore>, WebError> {
        let scores = against_base_async(&self.loaded.model, &base.loaded.model).await?;
        Ok(rank(&scores, &self.loaded.tokenizer, top))
    }

    fn encode(&self, texts: &[String]) -> Result<Vec<Encoded>, WebError> {
        let tokenizer = &self.loaded.tokenizer;
        texts.iter().map(|text| Ok(Encoded { ids: tokenizer.encode(text)?, label: 0 })).collect()
    }

    async fn logits(&self, texts: &[String], progress: &mut dyn Progress) -> Result<Vec<Vec<f32>>, WebError> {
        let rows = self.encode(texts)?;
        logits_async(&self.loaded.model, &rows, self.loaded.tokenizer.pad_id(), BATCH_SIZE, &self.device, progress)
            .await
            .map_err(WebError::from)
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
