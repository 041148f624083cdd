//! Per-token embedding drift, the signal behind BTU's backdoor token detection.
//!
//! BTU (Jiang et al., "Backdoor Token Unlearning", AAAI 2025), eq. 3–5: after training a word
//! embedding matrix, token t scores d(t) = ‖E_after(t) − E_before(t)‖₂. Trigger tokens carry an
//! easy, consistent label signal, so their rows move much further than clean rows. The scores
//! come either from a short embedding-only training on labelled texts ([`embedding_only`]) or,
//! when the clean base checkpoint is at hand, directly from the fine-tuned model against it
//! ([`against_base`]).

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend, ExecutionError};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::checkpoint::TextTokenizer;
use crate::data::batch::Encoded;
use crate::model::BertClassifier;
use crate::progress::Progress;
use crate::train::{cross_entropy, fit, ParamGroup, TrainConfig, TrainError, TrainLog, Trainable};

#[derive(Debug, thiserror::Error)]
pub enum TokenScoreError {
    #[error("the word-embedding matrices differ in shape ({model:?} against the base's {base:?}): the base checkpoint is another architecture or vocabulary")]
    Shape { model: [usize; 2], base: [usize; 2] },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("reading scores back from the device failed: {0:?}")]
    Device(ExecutionError),
}

/// One vocabulary entry and how far its embedding row moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    pub id: u32,
    pub token: String,
    pub score: f32,
}

/// d(t) for every row, on the device: `[vocab]`.
pub fn drift<B: Backend>(before: Tensor<B, 2>, after: Tensor<B, 2>) -> Tensor<B, 1> {
    let [vocab, _] = before.dims();
    (after - before).powi_scalar(2).sum_dim(1).sqrt().reshape([vocab])
}

/// d(t) for every row, read back to the host.
pub async fn drift_values_async<B: Backend>(before: Tensor<B, 2>, after: Tensor<B, 2>) -> Result<Vec<f32>, TokenScoreError> {
    let data = drift(before, after).into_data_async().await.map_err(TokenScoreError::Device)?;
    Ok(data.convert::<f32>().to_vec().expect("data converted to f32 always reads back as f32"))
}

/// [`drift_values_async`] for native callers.
pub fn drift_values<B: Backend>(before: Tensor<B, 2>, after: Tensor<B, 2>) -> Result<Vec<f32>, TokenScoreError> {
    burn_std::future::block_on(drift_values_async(before, after))
}

/// The `k` highest-scoring tokens, special tokens excluded, highest first (ties: lower id first).
/// A token whose row did not move (score 0) is no candidate: fewer than `k` may come back.
pub fn rank(scores: &[f32], tokenizer: &TextTokenizer, k: usize) -> Vec<TokenScore> {
    let special = tokenizer.special_ids();
    let mut ids: Vec<u32> = (0..scores.len() as u32)
        .filter(|id| !special.contains(id) && scores[*id as usize].is_finite() && scores[*id as usize] > 0.0)
        .collect();
    ids.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    ids.into_iter()
        .take(k)
        .map(|id| TokenScore { id, token: tokenizer.token(id).unwrap_or_else(|| format!("#{id}")), score: scores[id as usize] })
        .collect()
}

/// Scores of a fine-tuned model against the clean checkpoint it started from.
pub async fn against_base_async<B: Backend>(model: &BertClassifier<B>, base: &BertClassifier<B>) -> Result<Vec<f32>, TokenScoreError> {
    let (after, before) = (model.bert.embeddings.word.weight.val(), base.bert.embeddings.word.weight.val());
    if after.dims() != before.dims() {
        return Err(TokenScoreError::Shape { model: after.dims(), base: before.dims() });
    }
    drift_values_async(before, after).await
}

/// [`against_base_async`] for native callers.
pub fn against_base<B: Backend>(model: &BertClassifier<B>, base: &BertClassifier<B>) -> Result<Vec<f32>, TokenScoreError> {
    burn_std::future::block_on(against_base_async(model, base))
}

/// Settings of the embedding-only training that produces the scores. The defaults are BTU's
/// detection round 1 (one epoch, AdamW lr 2e-5, batch 32, only the word embeddings train).
pub fn embedding_only_config(seed: u64) -> TrainConfig {
    TrainConfig { epochs: 1, seed, trainable: Trainable::Only(vec![ParamGroup::WordEmbeddings]), ..TrainConfig::default() }
}

/// Trains only the word embeddings of `model` on labelled `data` (BTU detection round 1) and
/// returns d(t) for every token, with the training's log.
pub fn embedding_only<B: AutodiffBackend>(
    model: &BertClassifier<B>,
    data: &[Encoded],
    pad_id: u32,
    config: &TrainConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<(Vec<f32>, TrainLog), TokenScoreError> {
    let before = model.bert.embeddings.word.weight.val().inner();
    let (trained, log) = fit(
        model.clone(),
        data,
        pad_id,
        config,
        device,
        progress,
        |m: &BertClassifier<B>, batch, _| {
            cross_entropy(m.logits(batch.input_ids.clone(), batch.attention_mask.clone()), batch.labels.clone())
        },
        |_, _| None,
    )?;
    Ok((drift_values(before, trained.valid().bert.embeddings.word.weight.val())?, log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn drift_is_the_row_distance() {
        let d = Default::default();
        let before = Tensor::<NdArray, 2>::from_floats([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]], &d);
        let after = Tensor::<NdArray, 2>::from_floats([[3.0, 4.0], [1.0, 1.0], [2.0, -1.0]], &d);
        assert_eq!(drift_values(before, after).unwrap(), vec![5.0, 0.0, 1.0]);
    }

    #[test]
    fn rank_skips_special_unmoved_and_non_finite_tokens() {
        let tok = crate::checkpoint::word_level_for_tests(&["a", "b", "c", "d"], 8);
        // Ids 0-3 are [PAD] [UNK] [CLS] [SEP]; then a b c d.
        let scores = [9.0, 9.0, 9.0, 9.0, 0.5, 0.0, f32::NAN, 2.0];
        let ranked = rank(&scores, &tok, 10);
        let got: Vec<(&str, f32)> = ranked.iter().map(|t| (t.token.as_str(), t.score)).collect();
        assert_eq!(got, [("d", 2.0), ("a", 0.5)]);
        assert_eq!(rank(&scores, &tok, 1).len(), 1);
        assert!(rank(&[0.0; 8], &tok, 10).is_empty());
    }
}
