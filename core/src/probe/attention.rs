//! Per-head \[CLS\] attention variance, PURE's signal for heads a trigger can hijack.
//!
//! PURE (Zhao, Xu and Yuan, ICML 2024; `../shared/papers/pure.txt`), eq. 2: for layer l and
//! head h, Var(A_h^l\[CLS\]) = Σ_j (a_j − 1/n)² / (n − 1), the spread of the \[CLS\] query row
//! of the attention probabilities around the uniform 1/n. It is 0 when \[CLS\] attends to every
//! token equally and reaches its maximum 1/n when it attends to one token only. The variance
//! score of a head is its mean over texts (§4.3). Heads a trigger hijacks score low on clean
//! texts and high once the trigger is inserted ("attention focus drifting", §4.2–4.3).
//!
//! n counts the real tokens of each text: the authors' code takes the first 127 entries of
//! the row whatever the padding, so their score depends on how much padding a batch has.

use burn::tensor::backend::{Backend, ExecutionError};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::batch::{length_sorted_batches, Batch, Encoded};
use crate::model::{BertClassifier, ForwardOptions};
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum AttentionError {
    #[error("no texts to compute attention variance on")]
    Empty,
    #[error("the two score sets have different heads per layer ({0:?} against {1:?})")]
    Layout(Vec<usize>, Vec<usize>),
    #[error("reading attention scores back from the device failed: {0:?}")]
    Device(ExecutionError),
}

/// One number per attention head: `scores[l][h]` for layer l's head h (in the model's own
/// numbering, which skips physically pruned heads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadScores {
    pub layers: usize,
    /// Heads each layer has.
    pub heads: Vec<usize>,
    pub scores: Vec<Vec<f32>>,
}

impl HeadScores {
    /// Mean score of each layer's heads.
    pub fn layer_means(&self) -> Vec<f32> {
        self.scores.iter().map(|s| s.iter().sum::<f32>() / s.len().max(1) as f32).collect()
    }

    /// `self − other`, head by head.
    pub fn minus(&self, other: &HeadScores) -> Result<HeadScores, AttentionError> {
        if self.heads != other.heads {
            return Err(AttentionError::Layout(self.heads.clone(), other.heads.clone()));
        }
        let scores = self.scores.iter().zip(&other.scores).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect()).collect();
        Ok(HeadScores { layers: self.layers, heads: self.heads.clone(), scores })
    }
}

/// Eq. 2 for one layer: `probs` `[batch, heads, seq, seq]`, `attention_mask` `[batch, seq]`
/// (1 for real tokens) → `[batch, heads]`. Padding columns are left out and n is each text's
/// number of real tokens.
pub fn cls_variance<B: Backend>(probs: Tensor<B, 4>, attention_mask: Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, heads, seq, _] = probs.dims();
    let cls = probs.slice([0..batch, 0..heads, 0..1, 0..seq]).reshape([batch, heads, seq]);
    let mask = attention_mask.reshape([batch, 1, seq]);
    let n = mask.clone().sum_dim(2);
    let spread = (cls - n.clone().recip()) * mask;
    // A text of one token has no spread; max(n − 1, 1) keeps it at 0 instead of 0/0.
    (spread.powi_scalar(2).sum_dim(2) / (n - 1.0).clamp_min(1.0)).reshape([batch, heads])
}

/// Variance scores (mean of eq. 2 over `rows`) of every head of `model`, batched by length.
///
/// Pass an inference model (`model.valid()`): on an autodiff backend dropout would be active.
/// Async because a WebGPU buffer can only be read asynchronously in the browser; native
/// callers use [`variance_scores`].
pub async fn variance_scores_async<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<HeadScores, AttentionError> {
    if rows.is_empty() {
        return Err(AttentionError::Empty);
    }
    let heads: Vec<usize> = model.bert.layers.iter().map(|l| l.heads).collect();
    let batches = length_sorted_batches(rows, batch_size);
    let options = ForwardOptions::with_attentions();
    // Sums stay on the device and are read once at the end: one read-back per batch would
    // stall a GPU queue.
    let mut sums: Vec<Option<Tensor<B, 1>>> = vec![None; heads.len()];
    progress.start("attention variance", batches.len());
    for idx in batches {
        let refs: Vec<&Encoded> = idx.iter().map(|&i| &rows[i]).collect();
        let batch = Batch::<B>::new(&refs, pad_id, device);
        let out = model.forward(batch.input_ids, batch.attention_mask.clone(), &options);
        for ((sum, probs), &h) in sums.iter_mut().zip(out.encoder.attentions).zip(&heads) {
            let part = cls_variance(probs, batch.attention_mask.clone()).sum_dim(0).reshape([h]);
            *sum = Some(match sum.take() {
                Some(s) => s + part,
                None => part,
            });
        }
        progress.step(None);
    }
    let mut scores = Vec::with_capacity(heads.len());
    for sum in sums.into_iter().flatten() {
        let values: Vec<f32> = (sum / rows.len() as f64)
            .into_data_async()
            .await
            .map_err(AttentionError::Device)?
            .convert::<f32>()
            .to_vec()
            .expect("data converted to f32 always reads back as f32");
        scores.push(values);
    }
    progress.finish(&format!("{} rows", rows.len()));
    Ok(HeadScores { layers: heads.len(), heads, scores })
}

/// [`variance_scores_async`] for native callers (blocks until the device is done).
pub fn variance_scores<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<HeadScores, AttentionError> {
    burn_std::future::block_on(variance_scores_async(model, rows, pad_id, batch_size, device, progress))
}

/// Variance scores on clean texts, and how much each set of candidate triggers raises them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocusDrift {
    pub clean: HeadScores,
    /// One per triggered row set, in order: `triggered − clean`. A head that a trigger
    /// hijacks scores far higher with it (§4.3).
    pub differences: Vec<HeadScores>,
}

/// "Attention focus drifting" (§4.2–4.3): variance scores on `clean` rows and, for each entry
/// of `triggered` (the same texts with one candidate inserted by the caller), their
/// difference. The clean scores are computed once, however many candidates there are.
pub async fn focus_drift_async<B: Backend>(
    model: &BertClassifier<B>,
    clean: &[Encoded],
    triggered: &[Vec<Encoded>],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<FocusDrift, AttentionError> {
    let clean = variance_scores_async(model, clean, pad_id, batch_size, device, progress).await?;
    let mut differences = Vec::with_capacity(triggered.len());
    for rows in triggered {
        differences.push(variance_scores_async(model, rows, pad_id, batch_size, device, progress).await?.minus(&clean)?);
    }
    Ok(FocusDrift { clean, differences })
}

/// [`focus_drift_async`] for native callers.
pub fn focus_drift<B: Backend>(
    model: &BertClassifier<B>,
    clean: &[Encoded],
    triggered: &[Vec<Encoded>],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<FocusDrift, AttentionError> {
    burn_std::future::block_on(focus_drift_async(model, clean, triggered, pad_id, batch_size, device, progress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RandomInit;
    use crate::model::BertConfig;
    use crate::progress::Silent;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray;

    fn one_row(values: Vec<f32>, mask: Vec<f32>) -> f32 {
        let seq = values.len();
        let d = Default::default();
        // One text, one head: only the [CLS] row (row 0) matters; the others are noise.
        let mut all = values;
        all.extend((seq..seq * seq).map(|i| (i % 7) as f32 / 7.0));
        let probs = Tensor::<B, 4>::from_data(TensorData::new(all, [1, 1, seq, seq]), &d);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [1, seq]), &d);
        cls_variance(probs, mask).into_data().to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn uniform_row_has_zero_variance() {
        assert_eq!(one_row(vec![0.25; 4], vec![1.0; 4]), 0.0);
        // Uniform over the 3 real tokens, 0 at the padding.
        let v = one_row(vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0, 0.0], vec![1.0, 1.0, 1.0, 0.0, 0.0]);
        assert!(v.abs() < 1e-7, "{v}");
    }

    #[test]
    fn one_hot_row_reaches_the_maximum_one_over_n() {
        // Eq. 2 divides by n − 1: ((1 − 1/n)² + (n − 1)/n²) / (n − 1) = 1/n.
        let v = one_row(vec![0.0, 1.0, 0.0, 0.0], vec![1.0; 4]);
        assert!((v - 0.25).abs() < 1e-7, "{v}");
        let v = one_row(vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0], vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert!((v - 0.2).abs() < 1e-7, "{v}");
    }

    fn tiny() -> BertClassifier<B> {
        BertClassifier::from_source(&BertConfig::tiny(30), 2, &mut RandomInit::new(3, 0.2, &Default::default())).unwrap()
    }

    #[test]
    fn padding_does_not_change_the_score() {
        let model = tiny();
        let short = Encoded { ids: vec![1, 5, 9, 2], label: 0 };
        let long = Encoded { ids: vec![1, 5, 9, 7, 11, 13, 4, 8, 2], label: 1 };
        let d = Default::default();
        let alone = variance_scores(&model, std::slice::from_ref(&short), 0, 8, &d, &mut Silent).unwrap();
        // In one batch with the long row, the short one is padded by 5 tokens.
        let both = variance_scores(&model, &[short.clone(), long.clone()], 0, 8, &d, &mut Silent).unwrap();
        let long_alone = variance_scores(&model, &[long], 0, 8, &d, &mut Silent).unwrap();
        assert_eq!(alone.heads, vec![4, 4]);
        for l in 0..2 {
            for h in 0..4 {
                let mean = (alone.scores[l][h] + long_alone.scores[l][h]) / 2.0;
                assert!((both.scores[l][h] - mean).abs() < 1e-6, "layer {l} head {h}");
                assert!(alone.scores[l][h] > 0.0);
            }
        }
    }

    #[test]
    fn focus_drift_is_triggered_minus_clean_for_each_trigger() {
        let model = tiny();
        let clean = vec![Encoded { ids: vec![1, 5, 9, 2], label: 0 }, Encoded { ids: vec![1, 6, 2], label: 1 }];
        let insert = |token: u32| -> Vec<Encoded> {
            clean.iter().map(|e| Encoded { ids: [&[1, token][..], &e.ids[1..]].concat(), label: e.label }).collect()
        };
        let (a, b) = (insert(29), insert(17));
        let d = Default::default();
        let drift = focus_drift(&model, &clean, &[a.clone(), b.clone()], 0, 1, &d, &mut Silent).unwrap();
        assert_eq!(drift.differences.len(), 2);
        for (rows, diff) in [a, b].iter().zip(&drift.differences) {
            let triggered = variance_scores(&model, rows, 0, 1, &d, &mut Silent).unwrap();
            assert_eq!(diff, &triggered.minus(&drift.clean).unwrap());
            assert!(diff.scores.iter().flatten().any(|x| *x != 0.0));
        }
        assert_ne!(drift.differences[0], drift.differences[1]);
        assert!(focus_drift(&model, &clean, &[], 0, 1, &d, &mut Silent).unwrap().differences.is_empty());
        assert!(matches!(variance_scores(&model, &[], 0, 4, &d, &mut Silent), Err(AttentionError::Empty)));
    }
}
