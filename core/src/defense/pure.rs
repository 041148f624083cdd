//! PURE: head pruning and attention normalisation (Zhao, Xu and Yuan, ICML 2024;
//! `../shared/papers/pure.txt`).
//!
//! For a downloaded model that may carry a backdoor; the defender has clean data only and no
//! knowledge of the trigger (Algorithm 1).
//! 1. Fine-tune the suspect model θ_p on the clean training rows → f_p.
//! 2. The variance score of every head of f_p on the validation rows
//!    ([`variance_scores`], eq. 2): heads a trigger hijacks score low on clean texts (§4.3).
//! 3. Greedy pruning ([`greedy_prune`], §5.1): prune the lowest-scoring heads while f_p's
//!    validation accuracy stays at least c.
//! 4. Prune those heads from θ_p — the suspect model, not f_p (Algorithm 1 line 10) — and
//!    fine-tune it with eq. 3, cross-entropy plus μ · Σ_l λ_l · Σ_h ‖A_h^l\[CLS\]‖₂
//!    ([`attention_norm_loss`], [`layer_weights`], §5.2), keeping the epoch with the best
//!    validation accuracy (§6.2) or, as the authors' code evaluates, the last ([`KeepEpoch`]).
//!
//! f_p fine-tuned earlier can be passed instead of fine-tuning it again ([`FineTuned::Given`]),
//! so that PURE, prune-only and norm-only, or several settings of step 4, share one step 1.
//!
//! Pruned heads are removed from the weights ([`prune_heads`]); for `transformers` ≥ 5, which
//! no longer implements head pruning, [`zero_pruned_heads`] writes the same model at full size.

use std::collections::BTreeMap;

use burn::module::{AutodiffModule, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::batch::Encoded;
use crate::eval::{predict, InferenceError};
use crate::metrics::cacc;
use crate::model::{BertClassifier, BertConfig, ConfigError, EncoderLayer, ForwardOptions};
use crate::probe::attention::{variance_scores, AttentionError, HeadScores};
use crate::progress::{Progress, Silent};
use crate::train::{check_examples, cross_entropy, fit, TrainConfig, TrainError, TrainLog};

/// Fewest validation rows PURE accepts. Pruning stops on a difference in validation accuracy;
/// with 20 rows one prediction already moves it by 5 points, and fewer make the stopping rule
/// a coin toss.
pub const MIN_VAL_ROWS: usize = 20;

/// A layer's mean variance is floored here before −log₂ (an exactly uniform layer has 0).
const MIN_VARIANCE: f64 = 1e-12;

#[derive(Debug, thiserror::Error)]
pub enum PureError {
    #[error("PURE setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error("the clean training data has only label {0}: PURE fine-tunes on it and needs at least two classes")]
    SingleClass(usize),
    #[error("every layer has a single attention head: PURE keeps one head per layer, so it can prune nothing")]
    OneHeadPerLayer,
    #[error("the validation split has {found} rows; PURE needs at least {MIN_VAL_ROWS} to tell whether pruning costs accuracy")]
    SmallValidation { found: usize },
    #[error("the model has {model} layers but its config gives {config}")]
    LayerCount { model: usize, config: usize },
    #[error("layer {layer} of the model has {model} heads but its config gives {config}")]
    HeadCount { layer: usize, model: usize, config: usize },
    #[error("pruned heads are given for {found} layers; the model has {layers}")]
    PruneLayers { found: usize, layers: usize },
    #[error("layer {layer} has no head {head} (it has {heads})")]
    PruneHead { layer: usize, head: usize, heads: usize },
    #[error("pruning would remove every head of layer {0}")]
    PruneAll(usize),
    #[error("the fine-tuned model given for step 1 differs from the suspect in {what}: it has {finetuned}, the suspect {suspect}")]
    FinetunedMismatch { what: String, finetuned: usize, suspect: usize },
    #[error(transparent)]
    Model(#[from] ConfigError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Attention(#[from] AttentionError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// A training stage blew the weights up: the model it left overflows float32.
    #[error("{stage} diverged: the model it left gives NaN or infinite outputs (validation row {}); lower the learning rate", .row + 1)]
    Diverged { stage: String, row: usize },
}

impl PureError {
    /// `stage`'s model overflows ([`PureError::Diverged`]), or could not be read back.
    fn diverged(stage: String, e: InferenceError) -> Self {
        match e {
            InferenceError::NonFinite { row } => PureError::Diverged { stage, row },
            other => other.into(),
        }
    }
}

/// What the accuracy threshold c is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ThresholdMode {
    /// Pruning stops when validation accuracy falls below c itself (the paper). The default.
    ///
    /// The paper's "we set the accuracy threshold c as 85%" (§6.2) and Algorithm 1's
    /// "if Acc < c", and the authors' code.
    Absolute,
    /// Pruning stops below c × the unpruned f_p's accuracy.
    ///
    /// For tasks and small models whose accuracy is near or under 0.85 (MiniLM reaches about
    /// that on SST-2), where the absolute rule would prune nothing.
    Relative,
}

/// How eq. 3's layer coefficients λ_l come from each layer's mean remaining head variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LayerWeights {
    /// λ_l = −log₂ mean_h var, min-max scaled to [0, 1] (§5.2 and §6.2). The default.
    Log2,
    /// 1 / mean_h var, min-max scaled: the authors' code.
    ///
    /// Their code takes a softmax over layers of −ln mean_h var, then min-max. The softmax of
    /// −ln v is proportional to 1/v, so this is min-max of 1/v: much more skewed, the
    /// lowest-variance layer gets 1 and the others little.
    Inverse,
    /// λ_l = 1 for every layer: the paper's ablation (§7, Figure 5).
    ///
    /// On BERT it costs clean accuracy against the weighted λ_l. It puts the penalty on the
    /// middle layers too, where both kinds above give λ near 0 on MiniLM.
    Uniform,
}

/// Which query rows of each head's attention eq. 3 penalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum AttentionRows {
    /// The `[CLS]` row, ‖A_h^l[CLS, :]‖₂: the paper's eq. 3. The default.
    #[default]
    Cls,
    /// The mean of ‖A_h^l[q, :]‖₂ over every real token q (not in the paper).
    ///
    /// A trigger can be read by the other tokens in a middle layer and reach \[CLS\] only later: on
    /// a MiniLM victim that PURE leaves at LFR 69 (docs/results.md, seed 3) a layer-3 head puts
    /// 0.75 of the average token's attention on the trigger, and 0.12 of \[CLS\]'s
    /// (`scripts/trigger-attention`). There this removes less than the \[CLS\] row (LFR 76 against
    /// 69), likely because averaging over the rows dilutes the last layer's \[CLS\] term.
    Every,
}

/// Which epoch of the eq. 3 fine-tune becomes the purified model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KeepEpoch {
    /// The best validation accuracy, the first on ties (the paper). The default.
    ///
    /// The paper's "the model with the best clean performance on the validation set" (§6.2).
    #[default]
    Best,
    /// The last epoch: what the authors' code evaluates.
    ///
    /// Validation accuracy then only chooses
    /// μ (with `mu_search`), by each μ's last epoch.
    Last,
}

/// PURE settings. Defaults are the paper's (§6.2, Appendix B) and its authors' code's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PureConfig {
    /// c, in (0, 1]: pruning keeps validation accuracy at or above it (paper: 0.85).
    pub accuracy_threshold: f64,
    /// Whether c is an accuracy or a share of the unpruned accuracy (paper: an accuracy).
    pub threshold_mode: ThresholdMode,
    /// Heads pruned per greedy step (authors' code: 10; the paper describes one at a time).
    /// A step that breaks the threshold is undone head by head.
    pub heads_per_step: usize,
    /// μ of eq. 3 (paper: 0.15 for rare-word triggers, 0.05 for syntax and style triggers).
    pub mu: f64,
    /// More μ values to try besides `mu` (default: none, the paper's fixed μ). The paper set μ
    /// "according to the model's clean performance on the validation set" (§6.2) without a
    /// rule; with candidates, step 4 runs once per μ and [`choose_mu`] keeps the largest μ
    /// whose validation accuracy stays within `mu_tolerance` of f_p's. The largest, because
    /// the defender cannot measure LFR and a stronger norm term is what lowered it on MiniLM
    /// (docs/results.md); clean accuracy is what bounds it.
    pub mu_search: Vec<f64>,
    /// Validation accuracy a μ from `mu_search` may cost against f_p's, in [0, 1]
    /// (default 0.01: one point, the cost against plain fine-tuning docs/results.md holds PURE to).
    pub mu_tolerance: f64,
    pub layer_weights: LayerWeights,
    pub attention_rows: AttentionRows,
    /// Step 1, fine-tuning θ_p into f_p (authors' code: 3 epochs, lr 2e-5, batch 32).
    pub finetune: TrainConfig,
    /// Step 4, the eq. 3 fine-tune of the pruned θ_p (paper: 3 epochs, lr 2e-5, batch 32).
    pub tune: TrainConfig,
    /// Batch size of the validation passes (inference only).
    pub eval_batch_size: usize,
    /// Run the greedy pruning (false: attention normalisation only, an ablation).
    pub prune: bool,
    /// Replace the suspect's classifier head with a new seeded one before step 1, so f_p and
    /// the step-4 model start from the encoder alone. The paper's defender downloads a
    /// pre-trained encoder and fine-tunes it under a new head (§3, "a user who downloads a
    /// pre-trained language model … and further fine-tunes"; its authors' code saves the
    /// poisoned encoder without its head). A suspect that is already a classifier keeps its
    /// head by default, and with it whatever of the backdoor lives there; a bare encoder gets
    /// a new head either way.
    pub fresh_head: bool,
    /// The epoch of step 4 kept (default: the best on validation, as the paper says).
    pub keep_epoch: KeepEpoch,
}

impl Default for PureConfig {
    fn default() -> Self {
        PureConfig::with_seed(42)
    }
}

impl PureConfig {
    /// The defaults with both fine-tunes seeded from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        PureConfig {
            accuracy_threshold: 0.85,
            threshold_mode: ThresholdMode::Absolute,
            heads_per_step: 10,
            mu: 0.15,
            mu_search: Vec::new(),
            mu_tolerance: 0.01,
            layer_weights: LayerWeights::Log2,
            attention_rows: AttentionRows::Cls,
            finetune: TrainConfig { seed, ..TrainConfig::default() },
            tune: TrainConfig { seed, ..TrainConfig::default() },
            eval_batch_size: 64,
            prune: true,
            fresh_head: false,
            keep_epoch: KeepEpoch::Best,
        }
    }

    pub fn validate(&self) -> Result<(), PureError> {
        let bad = |field, value: String, reason| Err(PureError::Config { field, value, reason });
        let c = self.accuracy_threshold;
        if !(c > 0.0 && c <= 1.0) {
            return bad("accuracy_threshold", c.to_string(), "must be in (0, 1]");
        }
        if self.heads_per_step == 0 {
            return bad("heads_per_step", "0".into(), "must be at least 1");
        }
        for mu in self.mu_candidates() {
            if !(mu >= 0.0 && mu.is_finite()) {
                return bad("mu", mu.to_string(), "must be a finite number ≥ 0");
            }
        }
        if !(0.0..=1.0).contains(&self.mu_tolerance) {
            return bad("mu_tolerance", self.mu_tolerance.to_string(), "must be in [0, 1]");
        }
        if self.eval_batch_size == 0 {
            return bad("eval_batch_size", "0".into(), "must be at least 1");
        }
        self.finetune.validate()?;
        self.tune.validate()?;
        Ok(())
    }

    /// `mu` and `mu_search`, ascending, without repeats.
    pub fn mu_candidates(&self) -> Vec<f64> {
        let mut mus: Vec<f64> = std::iter::once(self.mu).chain(self.mu_search.iter().copied()).collect();
        mus.sort_by(f64::total_cmp);
        mus.dedup();
        mus
    }
}

/// Step 4 with one μ: the epoch of its eq. 3 fine-tune that [`KeepEpoch`] keeps, and its
/// validation accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MuTrial {
    pub mu: f64,
    pub kept_epoch: usize,
    pub kept_accuracy: f64,
    pub seconds: f64,
}

/// The trial [`pure`] keeps: the largest μ whose validation accuracy is at least
/// `base_accuracy − tolerance` (f_p's accuracy less what the defender accepts to lose); when
/// none is, the most accurate trial (the smallest μ on ties). `None` for no trials.
pub fn choose_mu(trials: &[MuTrial], base_accuracy: f64, tolerance: f64) -> Option<usize> {
    let by_mu = |&a: &usize, &b: &usize| trials[a].mu.total_cmp(&trials[b].mu);
    let within = (0..trials.len()).filter(|&i| trials[i].kept_accuracy >= base_accuracy - tolerance).max_by(by_mu);
    within.or_else(|| (0..trials.len()).max_by(|a, b| trials[*a].kept_accuracy.total_cmp(&trials[*b].kept_accuracy).then(by_mu(b, a))))
}

/// One validation measurement during greedy pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneStep {
    /// Heads pruned when the accuracy was measured.
    pub pruned: usize,
    pub accuracy: f64,
    /// One head of a failed step restored, rather than a new step.
    pub backtrack: bool,
}

/// What greedy pruning decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pruning {
    /// Pruned heads of each layer, ascending, in the model's numbering.
    pub pruned: Vec<Vec<usize>>,
    /// Validation accuracy of the unpruned model.
    pub base_accuracy: f64,
    /// The accuracy pruning keeps: c, or c × `base_accuracy`.
    pub floor: f64,
    pub steps: Vec<PruneStep>,
}

/// Greedy head pruning (§5.1, with the authors' steps of several heads).
///
/// Heads are pruned in ascending score order, `heads_per_step` at a time, and `accuracy`
/// (the validation accuracy with the given heads pruned, per layer) measured after each step.
/// A layer's highest-scoring head is never a candidate, so every layer keeps a head. When a
/// step brings accuracy below the floor, its heads are restored one at a time, highest score
/// first, until accuracy is back at the floor; pruning ends there. If the unpruned model is
/// already below the floor, or `config.prune` is off, nothing is pruned.
pub fn greedy_prune<E>(
    scores: &HeadScores,
    config: &PureConfig,
    mut accuracy: impl FnMut(&[Vec<usize>]) -> Result<f64, E>,
) -> Result<Pruning, E> {
    let mut pruned: Vec<Vec<usize>> = vec![Vec::new(); scores.layers];
    let base_accuracy = accuracy(&pruned)?;
    let floor = match config.threshold_mode {
        ThresholdMode::Absolute => config.accuracy_threshold,
        ThresholdMode::Relative => config.accuracy_threshold * base_accuracy,
    };
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for (l, s) in scores.scores.iter().enumerate() {
        let top = (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b]));
        candidates.extend((0..s.len()).filter(|&h| Some(h) != top).map(|h| (l, h)));
    }
    let score = |&(l, h): &(usize, usize)| scores.scores[l][h];
    candidates.sort_by(|a, b| score(a).total_cmp(&score(b)).then(a.cmp(b)));

    let mut steps = Vec::new();
    let mut count = 0;
    if base_accuracy < floor || !config.prune {
        return Ok(Pruning { pruned, base_accuracy, floor, steps });
    }
    for chunk in candidates.chunks(config.heads_per_step) {
        for &(l, h) in chunk {
            pruned[l].push(h);
            pruned[l].sort_unstable();
        }
        count += chunk.len();
        let acc = accuracy(&pruned)?;
        steps.push(PruneStep { pruned: count, accuracy: acc, backtrack: false });
        if acc >= floor {
            continue;
        }
        for (k, &(l, h)) in chunk.iter().rev().enumerate() {
            pruned[l].retain(|&x| x != h);
            count -= 1;
            // With the whole step undone the heads are those of the last passing step.
            if k + 1 == chunk.len() {
                break;
            }
            let acc = accuracy(&pruned)?;
            steps.push(PruneStep { pruned: count, accuracy: acc, backtrack: true });
            if acc >= floor {
                break;
            }
        }
        break;
    }
    Ok(Pruning { pruned, base_accuracy, floor, steps })
}

/// Eq. 3's layer coefficients from each layer's mean remaining head variance, in [0, 1].
///
/// Both kinds end with min-max scaling, so the layer with the highest mean variance gets 0
/// (no normalisation) and the lowest gets 1. When every layer has the same mean (or there is
/// one layer) min-max is undefined and every λ_l is 1, the paper's unweighted variant (§7).
pub fn layer_weights(mean_variance: &[f32], kind: LayerWeights) -> Vec<f32> {
    let transform: fn(f64) -> f64 = match kind {
        LayerWeights::Uniform => return vec![1.0; mean_variance.len()],
        LayerWeights::Log2 => |v| -v.log2(),
        LayerWeights::Inverse => |v| 1.0 / v,
    };
    let raw: Vec<f64> = mean_variance.iter().map(|&v| transform((v as f64).max(MIN_VARIANCE))).collect();
    let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = max - min;
    if !(range > 0.0 && range.is_finite()) {
        return vec![1.0; raw.len()];
    }
    raw.iter().map(|x| ((x - min) / range) as f32).collect()
}

/// Eq. 3's regulariser, μ · Σ_l λ_l · Σ_h ‖A_h^l[CLS, :]‖₂, averaged over the batch; with
/// [`AttentionRows::Every`], each head's term is the mean norm over the text's real query rows
/// (`mask`, `[batch, seq]`, 1 at real tokens) instead of the \[CLS\] row's.
///
/// `attentions` are the per-layer probabilities a forward pass with `attentions: true`
/// returns. Each norm is computed as ‖a‖² / √(‖a‖² + ε): equal to ‖a‖ within a relative
/// 5·10⁻¹⁰ for a probability row (‖a‖² ≥ 1/n), and exactly 0 for a head silenced by a head
/// mask, whose gradient stays finite (through √ it would be 0 · ∞ = NaN and poison the
/// masked head's weights). Padding columns hold probability 0 and add nothing.
///
/// The authors' code differs: per head it takes √(Σ_batch ‖a‖²), one norm over the whole
/// batch, about √batch times the per-text mean at the same μ.
pub fn attention_norm_loss<B: Backend>(
    attentions: &[Tensor<B, 4>],
    mask: &Tensor<B, 2>,
    rows: AttentionRows,
    lambdas: &[f32],
    mu: f64,
) -> Tensor<B, 1> {
    let [batch, seq] = mask.dims();
    // Each text's weight on each query row, `[batch, 1, seq, 1]`, summing to 1 over its rows.
    let row_weights = match rows {
        AttentionRows::Cls => None,
        AttentionRows::Every => Some((mask.clone() / mask.clone().sum_dim(1)).reshape([batch, 1, seq, 1])),
    };
    attentions
        .iter()
        .zip(lambdas)
        .map(|(probs, &lambda)| {
            let [batch, heads, seq, _] = probs.dims();
            let norms = |r: Tensor<B, 4>| super::smooth_norm(r.powi_scalar(2).sum_dim(3));
            let per_head = match &row_weights {
                None => norms(probs.clone().slice([0..batch, 0..heads, 0..1, 0..seq])),
                Some(w) => (norms(probs.clone()) * w.clone()).sum_dim(2),
            };
            per_head.sum() * (lambda as f64 / batch as f64)
        })
        .reduce(|a, b| a + b)
        .expect("a BERT model has at least one layer")
        * mu
}

/// A `[layers, max heads]` head mask for [`ForwardOptions::head_mask`]: 0 at the pruned
/// heads, 1 elsewhere.
pub fn head_mask<B: Backend>(pruned: &[Vec<usize>], heads: &[usize], device: &B::Device) -> Tensor<B, 2> {
    let width = heads.iter().copied().max().unwrap_or(0);
    let mut values = vec![1.0f32; heads.len() * width];
    for (l, layer) in pruned.iter().enumerate() {
        for &h in layer {
            values[l * width + h] = 0.0;
        }
    }
    Tensor::from_data(TensorData::new(values, [heads.len(), width]), device)
}

/// Each layer's head indices in the original (unpruned) numbering, after checking that the
/// config describes the model.
fn original_heads<B: Backend>(model: &BertClassifier<B>, config: &BertConfig) -> Result<Vec<Vec<usize>>, PureError> {
    let layers = &model.bert.layers;
    if layers.len() != config.num_hidden_layers {
        return Err(PureError::LayerCount { model: layers.len(), config: config.num_hidden_layers });
    }
    layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let kept = config.heads_in_layer(l)?;
            if kept.len() != layer.heads {
                return Err(PureError::HeadCount { layer: l, model: layer.heads, config: kept.len() });
            }
            Ok(kept)
        })
        .collect()
}

fn index<B: Backend>(values: Vec<usize>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = values.len();
    let values: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// A parameter rebuilt by `f` as a new leaf (detached, so an autodiff model can train it).
fn remake<B: Backend, const D: usize>(p: &Param<Tensor<B, D>>, f: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(f(p.val()).detach())
}

/// Rewires a layer's heads: `source[k]` is the current head that becomes head k, `None` a
/// zero head. Selects query/key/value output columns and attention-output input rows.
fn rewire_heads<B: Backend>(layer: &mut EncoderLayer<B>, source: &[Option<usize>]) {
    let head_dim = layer.query.weight.dims()[1] / layer.heads;
    let width = layer.heads * head_dim;
    let device = layer.query.weight.device();
    // Index `width` points at a zero column/row appended before selecting.
    let cols = index::<B>(source.iter().flat_map(|s| (0..head_dim).map(move |d| s.map_or(width, |h| h * head_dim + d))).collect(), &device);
    let padded = source.iter().any(Option::is_none);
    let select = |t: Tensor<B, 2>, dim: usize| {
        let t = if padded {
            let mut shape = t.dims();
            shape[dim] = 1;
            Tensor::cat(vec![t, Tensor::zeros(shape, &device)], dim)
        } else {
            t
        };
        t.select(dim, cols.clone())
    };
    for linear in [&mut layer.query, &mut layer.key, &mut layer.value] {
        linear.weight = remake(&linear.weight, |w| select(w, 1));
        let bias = linear.bias.as_ref().map(|b| remake(b, |b| select(b.reshape([1, width]), 1).reshape([source.len() * head_dim])));
        linear.bias = bias;
    }
    layer.attention_output.weight = remake(&layer.attention_output.weight, |w| select(w, 0));
    layer.heads = source.len();
}

/// Removes heads from the weights: `pruned[l]` lists layer l's heads to remove in the model's
/// numbering (duplicates ignored). Returns the smaller model and `config` with
/// `pruned_heads` extended in the original numbering, as `transformers` 4 records pruning
/// (`{"3": [0, 5]}`); [`BertClassifier::from_source`] reads that layout back.
pub fn prune_heads<B: Backend>(
    model: BertClassifier<B>,
    config: &BertConfig,
    pruned: &[Vec<usize>],
) -> Result<(BertClassifier<B>, BertConfig), PureError> {
    let original = original_heads(&model, config)?;
    let mut model = model;
    let mut config = config.clone();
    if pruned.len() != model.bert.layers.len() {
        return Err(PureError::PruneLayers { found: pruned.len(), layers: model.bert.layers.len() });
    }
    for (l, (layer, drop)) in model.bert.layers.iter_mut().zip(pruned).enumerate() {
        if let Some(&head) = drop.iter().find(|&&h| h >= layer.heads) {
            return Err(PureError::PruneHead { layer: l, head, heads: layer.heads });
        }
        let keep: Vec<Option<usize>> = (0..layer.heads).filter(|h| !drop.contains(h)).map(Some).collect();
        if keep.is_empty() {
            return Err(PureError::PruneAll(l));
        }
        if keep.len() == layer.heads {
            continue;
        }
        rewire_heads(layer, &keep);
        let entry = config.pruned_heads.entry(l.to_string()).or_default();
        entry.extend(original[l].iter().enumerate().filter(|(h, _)| drop.contains(h)).map(|(_, &o)| o));
        entry.sort_unstable();
    }
    Ok((model, config))
}

/// The same function at full size: every layer gets `num_attention_heads` heads again, the
/// pruned ones with zero query/key/value weights and biases and zero attention-output rows,
/// and `pruned_heads` is cleared.
///
/// `transformers` 5 dropped head pruning: it ignores `config.pruned_heads`, builds full-size
/// layers and refuses the smaller tensors [`prune_heads`] writes. A zero head contributes
/// exactly nothing (its values are 0, and so are the output rows that read them), so this
/// layout gives the same logits in every `transformers` version and in bdaudit.
pub fn zero_pruned_heads<B: Backend>(model: BertClassifier<B>, config: &BertConfig) -> Result<(BertClassifier<B>, BertConfig), PureError> {
    let original = original_heads(&model, config)?;
    let mut model = model;
    let full = config.num_attention_heads;
    for (layer, kept) in model.bert.layers.iter_mut().zip(&original) {
        if kept.len() < full {
            let source: Vec<Option<usize>> = (0..full).map(|o| kept.iter().position(|&k| k == o)).collect();
            rewire_heads(layer, &source);
        }
    }
    let mut config = config.clone();
    config.pruned_heads.clear();
    Ok((model, config))
}

/// Validation accuracy through the one inference loop.
fn accuracy<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<f64, InferenceError> {
    let preds = predict(model, rows, pad_id, batch_size, device, progress)?;
    let labels: Vec<usize> = rows.iter().map(|r| r.label).collect();
    Ok(cacc(&labels, &preds).expect("predict returns one prediction per row"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PureReport {
    pub config: PureConfig,
    /// Variance scores of f_p's heads on the validation rows (eq. 2): the pruning order.
    pub scores: HeadScores,
    pub pruning: Pruning,
    /// The purified model's `config.json` `pruned_heads`: per layer, original head indices.
    pub pruned_heads: BTreeMap<String, Vec<usize>>,
    /// Mean variance of each layer's remaining heads (f_p pruned, validation rows), from
    /// which the λ_l come; the authors' code measures it the same way.
    pub remaining_variance: Vec<f32>,
    /// λ_l of eq. 3.
    pub lambdas: Vec<f32>,
    /// Step 1, fine-tuning θ_p into f_p; `None` when f_p was given.
    pub finetune_log: Option<TrainLog>,
    /// Step 4, the eq. 3 fine-tune with the μ kept; each epoch's `eval` is its validation
    /// accuracy.
    pub tune_log: TrainLog,
    /// The μ kept: `config.mu`, or the one [`choose_mu`] picked from the candidates.
    pub mu: f64,
    /// Step 4 once per candidate μ, ascending.
    pub mu_trials: Vec<MuTrial>,
    /// The epoch kept (`config.keep_epoch`) and its validation accuracy.
    pub kept_epoch: usize,
    pub kept_accuracy: f64,
    pub finetune_seconds: f64,
    pub score_seconds: f64,
    /// Greedy pruning and the λ_l.
    pub prune_seconds: f64,
    pub tune_seconds: f64,
}

/// Where f_p, step 1's fine-tuned suspect, comes from.
pub enum FineTuned<B: Backend> {
    /// Fine-tune the suspect on the clean training rows with `config.finetune` (step 1).
    Train,
    /// f_p fine-tuned before from the same suspect (under a new head if `config.fresh_head`) on
    /// the same rows with the same settings: the caller's duty, its weights carry no record of
    /// them. Step 1 is skipped and `config.finetune` unused. Fine-tuning with the same settings
    /// and seed gives the same f_p (bit for bit on the CPU: training reseeds), so this repeats
    /// such a run without its step 1.
    Given(Box<BertClassifier<B>>),
}

/// f_p (plain clean fine-tuning: what no defense gives) and the purified model.
pub struct PureOutcome<B: Backend> {
    pub undefended: BertClassifier<B>,
    /// θ_p with the pruned heads removed, fine-tuned with eq. 3 (the epoch `keep_epoch` keeps).
    pub purified: BertClassifier<B>,
    /// `model_config` with the purified model's `pruned_heads`.
    pub config: BertConfig,
    pub report: PureReport,
}

/// Runs PURE end to end on the suspect `model` (described by `model_config`) with clean
/// `train` and `val` rows. `now` reads a clock in seconds (the core has none).
#[allow(clippy::too_many_arguments)]
pub fn pure<B: AutodiffBackend>(
    model: BertClassifier<B>,
    finetuned: FineTuned<B::InnerBackend>,
    model_config: &BertConfig,
    train: &[Encoded],
    val: &[Encoded],
    pad_id: u32,
    config: &PureConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
    now: &dyn Fn() -> f64,
) -> Result<PureOutcome<B::InnerBackend>, PureError> {
    config.validate()?;
    original_heads(&model, model_config)?;
    if model.bert.layers.iter().all(|l| l.heads <= 1) {
        return Err(PureError::OneHeadPerLayer);
    }
    if let FineTuned::Given(given) = &finetuned {
        if let Some(d) = given.shape_difference(&model) {
            return Err(PureError::FinetunedMismatch { what: d.what, finetuned: d.this, suspect: d.other });
        }
    }
    if let Some(first) = train.first() {
        if train.iter().all(|e| e.label == first.label) {
            return Err(PureError::SingleClass(first.label));
        }
    }
    if val.len() < MIN_VAL_ROWS {
        return Err(PureError::SmallValidation { found: val.len() });
    }
    check_examples(val, model.num_labels(), model.vocab_size())?;
    let batch = config.eval_batch_size;
    let model = if config.fresh_head { model.with_new_head(config.finetune.seed, model_config.initializer_range) } else { model };
    let suspect = model.clone();

    let t = now();
    let (f_p, finetune_log) = match finetuned {
        FineTuned::Train => {
            let (tuned, log) = crate::train::train(model, train, pad_id, &config.finetune, device, progress, |_, _| None)?;
            (tuned.valid(), Some(log))
        }
        FineTuned::Given(given) => (*given, None),
    };
    let finetune_seconds = now() - t;

    let t = now();
    let scores = variance_scores(&f_p, val, pad_id, batch, device, progress)?;
    let score_seconds = now() - t;

    let t = now();
    // Pruned copies are evaluated rather than masked ones: fewer heads run faster, and the
    // one inference loop serves.
    let pruning = greedy_prune(&scores, config, |pruned| {
        let (m, _) = prune_heads(f_p.clone(), model_config, pruned)?;
        accuracy(&m, val, pad_id, batch, device, progress).map_err(|e| {
            // The unpruned model, scored first, is step 1's: training checks its loss before
            // each step, so the last step can still have overflowed the weights.
            if pruned.iter().all(Vec::is_empty) {
                PureError::diverged("the clean fine-tune (step 1)".into(), e)
            } else {
                e.into()
            }
        })
    })?;
    let (pruned_fp, _) = prune_heads(f_p.clone(), model_config, &pruning.pruned)?;
    let remaining_variance = variance_scores(&pruned_fp, val, pad_id, batch, device, progress)?.layer_means();
    let lambdas = layer_weights(&remaining_variance, config.layer_weights);
    let prune_seconds = now() - t;

    let (student, pruned_config) = prune_heads(suspect, model_config, &pruning.pruned)?;
    let options = ForwardOptions::with_attentions();
    let mut trials: Vec<MuTrial> = Vec::new();
    let mut kept = None;
    for mu in config.mu_candidates() {
        let t = now();
        let mut epoch_kept: Option<(usize, f64, BertClassifier<B::InnerBackend>)> = None;
        // The epoch callback cannot return an error: the first one waits here.
        let mut failed: Option<(usize, InferenceError)> = None;
        let (_, log) = fit(
            student.clone(),
            train,
            pad_id,
            &config.tune,
            device,
            progress,
            |m: &BertClassifier<B>, b, _| {
                let out = m.forward(b.input_ids.clone(), b.attention_mask.clone(), &options);
                cross_entropy(out.logits, b.labels.clone())
                    + attention_norm_loss(&out.encoder.attentions, &b.attention_mask, config.attention_rows, &lambdas, mu)
            },
            |epoch, m| {
                let acc = match accuracy(m, val, pad_id, batch, device, &mut Silent) {
                    Ok(acc) => acc,
                    Err(e) => {
                        failed.get_or_insert((epoch, e));
                        return None;
                    }
                };
                let better = epoch_kept.as_ref().is_none_or(|(_, kept_acc, _)| acc > *kept_acc);
                if better || config.keep_epoch == KeepEpoch::Last {
                    epoch_kept = Some((epoch, acc, m.clone()));
                }
                Some(acc)
            },
        )?;
        if let Some((epoch, source)) = failed {
            return Err(PureError::diverged(format!("the eq. 3 fine-tune with μ {mu} (epoch {epoch})"), source));
        }
        let (kept_epoch, kept_accuracy, model) = epoch_kept.expect("fit runs at least one epoch");
        trials.push(MuTrial { mu, kept_epoch, kept_accuracy, seconds: now() - t });
        // `choose_mu` over all trials is either its choice over those so far or a later trial,
        // so one model is kept at a time, not one per μ (four BERT-base copies are 1.7 GB).
        if choose_mu(&trials, pruning.base_accuracy, config.mu_tolerance) == Some(trials.len() - 1) {
            kept = Some((trials.len() - 1, model, log));
        }
    }
    let (chosen, purified, tune_log) = kept.expect("at least one μ");
    let trial = trials[chosen].clone();
    let tune_seconds: f64 = trials.iter().map(|t| t.seconds).sum();

    Ok(PureOutcome {
        undefended: f_p,
        purified,
        report: PureReport {
            config: config.clone(),
            scores,
            pruning,
            pruned_heads: pruned_config.pruned_heads.clone(),
            remaining_variance,
            lambdas,
            finetune_log,
            tune_log,
            mu: trial.mu,
            mu_trials: trials,
            kept_epoch: trial.kept_epoch,
            kept_accuracy: trial.kept_accuracy,
            finetune_seconds,
            score_seconds,
            prune_seconds,
            tune_seconds,
        },
        config: pruned_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{export_safetensors, RandomInit, SafetensorsSource};
    use burn::backend::{Autodiff, NdArray};
    use std::convert::Infallible;

    type B = NdArray;

    fn tiny_config() -> BertConfig {
        BertConfig::tiny(30)
    }

    fn tiny<T: Backend>(config: &BertConfig) -> BertClassifier<T> {
        BertClassifier::from_source(config, 2, &mut RandomInit::new(11, 0.2, &Default::default())).unwrap()
    }

    fn rows() -> Vec<Encoded> {
        (0..6)
            .map(|i| Encoded {
                ids: [vec![1], (0..i + 1).map(|k| 3 + ((k * 7 + i) % 25) as u32).collect(), vec![2]].concat(),
                label: i % 2,
            })
            .collect()
    }

    fn logits(model: &BertClassifier<B>, mask: Option<Tensor<B, 2>>) -> Vec<f32> {
        let batch = crate::data::batch::Batch::<B>::new(&rows().iter().collect::<Vec<_>>(), 0, &Default::default());
        let options = ForwardOptions { head_mask: mask, attentions: false, hidden_states: false };
        model.forward(batch.input_ids, batch.attention_mask, &options).logits.into_data().to_vec().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn masking_slicing_zeroing_and_reloading_give_the_same_logits() {
        let config = tiny_config();
        let model = tiny::<B>(&config);
        let pruned = vec![vec![1], vec![0, 3]];
        let masked = logits(&model, Some(head_mask(&pruned, &[4, 4], &Default::default())));
        assert!(max_diff(&masked, &logits(&model, None)) > 1e-4, "pruning must change something");

        let (sliced, sliced_config) = prune_heads(model.clone(), &config, &pruned).unwrap();
        assert_eq!(sliced.bert.layers.iter().map(|l| l.heads).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(sliced_config.pruned_heads, BTreeMap::from([("0".into(), vec![1]), ("1".into(), vec![0, 3])]));
        assert!(max_diff(&masked, &logits(&sliced, None)) < 1e-5);

        // Written and read back as bdaudit writes checkpoints: sliced tensors + pruned_heads.
        let json = serde_json::to_vec(&sliced_config.to_classifier_json(&["a".into(), "b".into()])).unwrap();
        let reread = BertConfig::from_json_bytes(&json).unwrap();
        let bytes = export_safetensors(&sliced).unwrap();
        let mut source = SafetensorsSource::<B>::new(&bytes, &Default::default()).unwrap();
        let loaded = BertClassifier::from_source(&reread, 2, &mut source).unwrap();
        assert!(max_diff(&masked, &logits(&loaded, None)) < 1e-5);

        let (zeroed, zeroed_config) = zero_pruned_heads(sliced, &sliced_config).unwrap();
        assert!(zeroed_config.pruned_heads.is_empty());
        assert_eq!(zeroed.bert.layers.iter().map(|l| l.heads).collect::<Vec<_>>(), vec![4, 4]);
        assert!(max_diff(&masked, &logits(&zeroed, None)) < 1e-5);
        let w: Vec<f32> = zeroed.bert.layers[1].attention_output.weight.val().into_data().to_vec().unwrap();
        assert!(w[..8 * 32].iter().all(|&x| x == 0.0), "head 0's output rows are zero");
    }

    #[test]
    fn pruning_a_pruned_model_records_original_head_indices() {
        let config = tiny_config();
        let (once, once_config) = prune_heads(tiny::<B>(&config), &config, &[vec![1], vec![0, 3]]).unwrap();
        // Layer 0 kept heads 0, 2, 3 and layer 1 kept 1, 2: their local head 0 is 0 and 1.
        let (twice, twice_config) = prune_heads(once, &once_config, &[vec![0], vec![0]]).unwrap();
        assert_eq!(twice_config.pruned_heads, BTreeMap::from([("0".into(), vec![0, 1]), ("1".into(), vec![0, 1, 3])]));
        assert_eq!(twice_config.heads_in_layer(1).unwrap(), vec![2]);
        assert_eq!(twice.bert.layers[1].heads, 1);
        assert!(matches!(prune_heads(twice.clone(), &twice_config, &[vec![], vec![0]]), Err(PureError::PruneAll(1))));
        assert!(matches!(
            prune_heads(twice.clone(), &twice_config, &[vec![2], vec![]]),
            Err(PureError::PruneHead { layer: 0, head: 2, heads: 2 })
        ));
        assert!(matches!(prune_heads(twice.clone(), &twice_config, &[vec![]]), Err(PureError::PruneLayers { .. })));
        assert!(matches!(prune_heads(twice, &config, &[vec![], vec![]]), Err(PureError::HeadCount { layer: 0, .. })));
    }

    fn scores(s: Vec<Vec<f32>>) -> HeadScores {
        HeadScores { layers: s.len(), heads: s.iter().map(Vec::len).collect(), scores: s }
    }

    /// Layer 0's heads all score lowest, yet its best head (0.4) is never a candidate. The
    /// candidates in order: (0,0) .1, (0,1) .2, (0,2) .3, (1,2) .5, (1,0) .6, (1,1) .7.
    /// Accuracy drops 1/32 per pruned head, c = 0.84: a step of 4 gives 0.875 (kept), the
    /// next 0.8125 with 6 pruned → restore (1,1): 0.84375, stop with 5 pruned.
    #[test]
    fn greedy_pruning_skips_each_layers_last_head_and_backtracks_head_by_head() {
        let s = scores(vec![vec![0.1, 0.2, 0.3, 0.4], vec![0.6, 0.7, 0.5, 0.9]]);
        let config = PureConfig { heads_per_step: 4, accuracy_threshold: 0.84, ..PureConfig::default() };
        let mut seen = Vec::new();
        let out = greedy_prune(&s, &config, |p| {
            seen.push(p.to_vec());
            let n: usize = p.iter().map(Vec::len).sum();
            Ok::<_, Infallible>(1.0 - n as f64 / 32.0)
        })
        .unwrap();
        assert_eq!(out.pruned, vec![vec![0, 1, 2], vec![0, 2]]);
        assert_eq!(out.base_accuracy, 1.0);
        assert_eq!(out.floor, 0.84);
        let measured: Vec<(usize, bool)> = out.steps.iter().map(|s| (s.pruned, s.backtrack)).collect();
        assert_eq!(measured, vec![(4, false), (6, false), (5, true)]);
        assert_eq!(seen[1], vec![vec![0, 1, 2], vec![2]]);
    }

    #[test]
    fn greedy_pruning_undoes_a_whole_failed_step_and_honours_a_relative_threshold() {
        let s = scores(vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]]);
        // Any pruning costs 0.2: the first step fails and is undone completely, with one
        // measurement per restored head except the last (that state passed already).
        let config = PureConfig { heads_per_step: 3, ..PureConfig::default() };
        let out = greedy_prune(&s, &config, |p| Ok::<_, Infallible>(if p.iter().all(Vec::is_empty) { 0.9 } else { 0.7 })).unwrap();
        assert_eq!(out.pruned, vec![Vec::<usize>::new(), vec![]]);
        assert_eq!(out.steps.len(), 3);
        // Base accuracy 0.6 is below the absolute 0.85: nothing is tried. Relative: 0.51.
        let flat = |_: &[Vec<usize>]| Ok::<_, Infallible>(0.6);
        assert!(greedy_prune(&s, &config, flat).unwrap().steps.is_empty());
        let off = PureConfig { prune: false, ..PureConfig::default() };
        assert!(greedy_prune(&s, &off, |_| Ok::<_, Infallible>(1.0)).unwrap().pruned.iter().all(Vec::is_empty));
        let relative = PureConfig { threshold_mode: ThresholdMode::Relative, heads_per_step: 1, ..PureConfig::default() };
        let out = greedy_prune(&s, &relative, flat).unwrap();
        assert!((out.floor - 0.51).abs() < 1e-12);
        assert_eq!(out.pruned, vec![vec![0, 1], vec![0, 1]]);
    }

    #[test]
    fn layer_weights_are_min_max_scaled() {
        // −log₂: 2, 4, 3 → 0, 1, 0.5. Inverse: 4, 16, 8 → 0, 1, 1/3.
        assert_eq!(layer_weights(&[0.25, 0.0625, 0.125], LayerWeights::Log2), vec![0.0, 1.0, 0.5]);
        let inv = layer_weights(&[0.25, 0.0625, 0.125], LayerWeights::Inverse);
        assert!(max_diff(&inv, &[0.0, 1.0, 1.0 / 3.0]) < 1e-6, "{inv:?}");
        assert_eq!(layer_weights(&[0.1, 0.1], LayerWeights::Log2), vec![1.0, 1.0]);
        assert_eq!(layer_weights(&[0.0, 0.5], LayerWeights::Log2), vec![1.0, 0.0]);
        assert_eq!(layer_weights(&[0.25, 0.0625, 0.125], LayerWeights::Uniform), vec![1.0; 3]);
    }

    #[test]
    fn norm_loss_is_the_cls_row_norm_and_a_masked_head_adds_nothing_and_no_nan() {
        type A = Autodiff<NdArray>;
        let d = Default::default();
        // One text of 4 tokens, 2 heads: head 0 uniform (‖a‖ = 1/2), head 1 masked (zeros).
        let mut values = vec![0.25f32; 16];
        values.extend(vec![0.0f32; 16]);
        let probs = Tensor::<A, 4>::from_data(TensorData::new(values, [1, 2, 4, 4]), &d).require_grad();
        let mask = Tensor::<A, 2>::ones([1, 4], &d);
        let loss = attention_norm_loss(std::slice::from_ref(&probs), &mask, AttentionRows::Cls, &[0.5], 0.15);
        let value: f32 = loss.clone().into_data().to_vec::<f32>().unwrap()[0];
        assert!((value - 0.15 * 0.5 * 0.5).abs() < 1e-7, "{value}");
        let grads = loss.backward();
        let g: Vec<f32> = probs.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert!(g.iter().all(|x| x.is_finite()));
        assert!(g[16..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn norm_loss_over_every_row_is_the_mean_over_real_queries() {
        let d = Default::default();
        // One head, 3 real tokens and a padding one: [CLS] uniform over the real tokens
        // (‖a‖ = 1/√3), the other two real rows one-hot (1), the padding row uniform over all
        // four (1/2, left out). A second text of 2 real tokens, both one-hot.
        let third = 1.0 / 3.0;
        #[rustfmt::skip]
        let values = vec![
            third, third, third, 0.0,  0.0, 1.0, 0.0, 0.0,  1.0, 0.0, 0.0, 0.0,  0.25, 0.25, 0.25, 0.25,
            1.0, 0.0, 0.0, 0.0,  0.0, 1.0, 0.0, 0.0,  0.5, 0.5, 0.0, 0.0,  0.5, 0.5, 0.0, 0.0,
        ];
        let probs = Tensor::<B, 4>::from_data(TensorData::new(values, [2, 1, 4, 4]), &d);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0], [2, 4]), &d);
        let loss = |rows| attention_norm_loss(std::slice::from_ref(&probs), &mask, rows, &[1.0], 1.0).into_scalar();
        let every = ((1.0 / 3f32.sqrt() + 2.0) / 3.0 + 1.0) / 2.0;
        assert!((loss(AttentionRows::Every) - every).abs() < 1e-6, "{}", loss(AttentionRows::Every));
        let cls = (1.0 / 3f32.sqrt() + 1.0) / 2.0;
        assert!((loss(AttentionRows::Cls) - cls).abs() < 1e-6, "{}", loss(AttentionRows::Cls));
    }

    #[test]
    fn settings_are_checked() {
        for c in [0.0, 1.01, -0.5, f64::NAN] {
            let config = PureConfig { accuracy_threshold: c, ..PureConfig::default() };
            assert!(matches!(config.validate(), Err(PureError::Config { field: "accuracy_threshold", .. })));
        }
        assert!(PureConfig { accuracy_threshold: 1.0, ..PureConfig::default() }.validate().is_ok());
        assert!(matches!(
            PureConfig { heads_per_step: 0, ..PureConfig::default() }.validate(),
            Err(PureError::Config { field: "heads_per_step", .. })
        ));
        assert!(matches!(PureConfig { mu: -0.1, ..PureConfig::default() }.validate(), Err(PureError::Config { field: "mu", .. })));
        let search = |mu_search: Vec<f64>, mu_tolerance| PureConfig { mu_search, mu_tolerance, ..PureConfig::default() }.validate();
        assert!(matches!(search(vec![0.5, f64::INFINITY], 0.01), Err(PureError::Config { field: "mu", .. })));
        assert!(matches!(search(vec![0.5], 1.5), Err(PureError::Config { field: "mu_tolerance", .. })));
        assert!(search(vec![1.0, 0.5, 0.15], 0.0).is_ok());
        assert_eq!(PureConfig { mu_search: vec![1.0, 0.5, 0.15], ..PureConfig::default() }.mu_candidates(), vec![0.15, 0.5, 1.0]);
    }

    #[test]
    fn choose_mu_keeps_the_largest_mu_within_tolerance_else_the_most_accurate() {
        let trial = |mu, kept_accuracy| MuTrial { mu, kept_epoch: 1, kept_accuracy, seconds: 0.0 };
        let trials = [trial(0.15, 0.84), trial(0.5, 0.835), trial(1.0, 0.80), trial(2.0, 0.70)];
        assert_eq!(choose_mu(&trials, 0.84, 0.01), Some(1));
        assert_eq!(choose_mu(&trials, 0.84, 0.05), Some(2));
        assert_eq!(choose_mu(&trials, 0.84, 0.0), Some(0));
        // Nothing within tolerance: the most accurate, the smaller μ on a tie.
        let low = [trial(0.15, 0.70), trial(0.5, 0.75), trial(1.0, 0.75)];
        assert_eq!(choose_mu(&low, 0.90, 0.01), Some(1));
        assert_eq!(choose_mu(&[], 0.9, 0.01), None);
    }

    /// `pure` keeps only the model of the trial `choose_mu` picks among those run so far; that
    /// must end on the choice over all trials, whichever order and accuracies they come in.
    #[test]
    fn keeping_the_choice_so_far_ends_on_the_overall_choice() {
        let trial = |mu, kept_accuracy| MuTrial { mu, kept_epoch: 1, kept_accuracy, seconds: 0.0 };
        let lists = [
            vec![trial(0.15, 0.84), trial(0.5, 0.835), trial(1.0, 0.80), trial(2.0, 0.70)],
            vec![trial(0.15, 0.70), trial(0.5, 0.75), trial(1.0, 0.75), trial(2.0, 0.84)],
            vec![trial(2.0, 0.84), trial(0.15, 0.70), trial(1.0, 0.85), trial(0.5, 0.75)],
            vec![trial(1.0, 0.60), trial(0.5, 0.60), trial(0.15, 0.65), trial(2.0, 0.65)],
        ];
        for trials in &lists {
            for (base, tolerance) in [(0.84, 0.01), (0.84, 0.0), (0.90, 0.01), (0.70, 0.2)] {
                // What pure() does: after each trial, keep that trial's model if it is the choice so far.
                let mut kept = None;
                for n in 1..=trials.len() {
                    if choose_mu(&trials[..n], base, tolerance) == Some(n - 1) {
                        kept = Some(n - 1);
                    }
                }
                assert_eq!(kept, choose_mu(trials, base, tolerance), "{trials:?} base {base} tolerance {tolerance}");
            }
        }
    }

    fn labelled(n: usize) -> Vec<Encoded> {
        (0..n)
            .map(|i| {
                let label = i % 2;
                // Label 1 rows carry token 20: an easy signal a tiny model can learn.
                let word = if label == 1 { 20 } else { 3 + (i % 10) as u32 };
                Encoded { ids: vec![1, word, 4 + (i % 5) as u32, 2], label }
            })
            .collect()
    }

    #[test]
    fn pure_rejects_what_it_cannot_defend() {
        type A = Autodiff<NdArray>;
        let d = Default::default();
        let config = tiny_config();
        let run = |model: BertClassifier<A>, model_config: &BertConfig, train: &[Encoded], val: &[Encoded]| {
            pure(model, FineTuned::Train, model_config, train, val, 0, &PureConfig::default(), &d, &mut Silent, &|| 0.0).err().unwrap()
        };
        let one_class: Vec<Encoded> = labelled(8).into_iter().map(|e| Encoded { label: 1, ..e }).collect();
        assert!(matches!(run(tiny(&config), &config, &one_class, &labelled(20)), PureError::SingleClass(1)));
        assert!(matches!(run(tiny(&config), &config, &labelled(8), &labelled(19)), PureError::SmallValidation { found: 19 }));
        let single = BertConfig { num_attention_heads: 1, ..tiny_config() };
        assert!(matches!(run(tiny(&single), &single, &labelled(8), &labelled(20)), PureError::OneHeadPerLayer));
    }

    #[test]
    fn a_stage_that_blows_the_weights_up_is_named() {
        let _guard = crate::train::one_training_at_a_time();
        type A = Autodiff<NdArray>;
        let d = Default::default();
        let model_config = tiny_config();
        // One step (8 rows, batch 8): its loss is finite, the weights after it are not usable.
        let wild = TrainConfig { epochs: 1, batch_size: 8, lr: 1e30, ..TrainConfig::default() };
        let tame = TrainConfig { epochs: 1, batch_size: 8, lr: 1e-3, ..TrainConfig::default() };
        let run = |finetune: &TrainConfig, tune: &TrainConfig| {
            let config = PureConfig { finetune: finetune.clone(), tune: tune.clone(), prune: false, ..PureConfig::default() };
            pure(
                tiny::<A>(&model_config),
                FineTuned::Train,
                &model_config,
                &labelled(8),
                &labelled(20),
                0,
                &config,
                &d,
                &mut Silent,
                &|| 0.0,
            )
            .err()
        };
        let err = run(&wild, &tame).expect("refused");
        assert!(matches!(&err, PureError::Diverged { stage, .. } if stage.contains("step 1")), "{err}");
        let err = run(&tame, &wild).expect("refused");
        assert!(matches!(&err, PureError::Diverged { stage, .. } if stage.contains("μ 0.15 (epoch 1)")), "{err}");
        assert!(err.to_string().contains("lower the learning rate"), "{err}");
    }

    #[test]
    fn a_fresh_head_replaces_the_classifier_alone_and_is_seeded() {
        let model = tiny::<B>(&tiny_config());
        let values = |m: &BertClassifier<B>| -> Vec<Vec<f32>> {
            let c = &m.classifier;
            let bias = c.bias.as_ref().unwrap().val();
            [c.weight.val().into_data(), bias.into_data(), m.bert.pooler.weight.val().into_data()]
                .into_iter()
                .map(|d| d.to_vec().unwrap())
                .collect()
        };
        let before = values(&model);
        let fresh = values(&model.clone().with_new_head(5, 0.02));
        assert_eq!(fresh[0].len(), before[0].len());
        assert_ne!(fresh[0], before[0]);
        assert!(fresh[1].iter().all(|b| *b == 0.0));
        assert_eq!(fresh[2], before[2], "the pooler is the encoder's");
        assert_eq!(fresh, values(&model.clone().with_new_head(5, 0.02)));
        assert_ne!(fresh[0], values(&model.with_new_head(6, 0.02))[0]);
    }

    /// PURE on the tiny model with 32 training and 20 validation rows.
    fn pure_on_tiny(finetuned: FineTuned<NdArray>, config: &PureConfig) -> Result<PureOutcome<NdArray>, PureError> {
        let model_config = tiny_config();
        let d = Default::default();
        pure(
            tiny::<Autodiff<NdArray>>(&model_config),
            finetuned,
            &model_config,
            &labelled(32),
            &labelled(20),
            0,
            config,
            &d,
            &mut Silent,
            &|| 0.0,
        )
    }

    #[test]
    fn pure_prunes_tunes_and_reports() {
        let _guard = crate::train::one_training_at_a_time();
        let d = Default::default();
        let tune = TrainConfig { epochs: 2, batch_size: 8, lr: 1e-3, ..TrainConfig::default() };
        let config = PureConfig {
            accuracy_threshold: 0.5,
            threshold_mode: ThresholdMode::Relative,
            heads_per_step: 2,
            finetune: tune.clone(),
            tune,
            ..PureConfig::default()
        };
        let out = pure_on_tiny(FineTuned::Train, &config).unwrap();
        let r = &out.report;
        let pruned: usize = r.pruning.pruned.iter().map(Vec::len).sum();
        assert!(pruned > 0, "{:?}", r.pruning);
        let heads: Vec<usize> = out.purified.bert.layers.iter().map(|l| l.heads).collect();
        assert_eq!(heads, (0..2).map(|l| out.config.heads_in_layer(l).unwrap().len()).collect::<Vec<_>>());
        assert_eq!(heads.iter().sum::<usize>(), 8 - pruned);
        assert_eq!(r.pruned_heads, out.config.pruned_heads);
        assert_eq!(r.lambdas.len(), 2);
        assert!(r.lambdas.iter().all(|l| (0.0..=1.0).contains(l)));
        assert_eq!(r.tune_log.epochs.len(), 2);
        let best = r.tune_log.epochs[r.kept_epoch - 1].eval.unwrap();
        assert_eq!(best, r.kept_accuracy);
        assert!(r.tune_log.epochs.iter().all(|e| e.eval.unwrap() <= best));
        assert_eq!(accuracy(&out.purified, &labelled(20), 0, 64, &d, &mut Silent).unwrap(), best);
        assert_eq!(r.scores.heads, vec![4, 4]);
        assert_eq!((r.mu, r.mu_trials.len()), (0.15, 1));
        assert!(r.finetune_log.is_some());

        // f_p given instead of fine-tuned: the same run without step 1, to the bit.
        let given = FineTuned::Given(Box::new(out.undefended.clone()));
        let again = pure_on_tiny(given, &config).unwrap();
        assert!(again.report.finetune_log.is_none());
        assert_eq!(again.report.pruning.pruned, r.pruning.pruned);
        assert_eq!(again.report.lambdas, r.lambdas);
        assert_eq!(max_diff(&logits(&again.purified, None), &logits(&out.purified, None)), 0.0);
        // One of another shape is refused before any work.
        let other = BertConfig { num_attention_heads: 2, ..tiny_config() };
        let given = FineTuned::Given(Box::new(tiny::<NdArray>(&other)));
        let err = pure_on_tiny(given, &config).err().unwrap();
        assert!(
            matches!(&err, PureError::FinetunedMismatch { what, finetuned: 2, suspect: 4 } if what == "attention heads of layer 0"),
            "{err}"
        );

        // A fresh head: f_p is fine-tuned from another starting point.
        let fresh = PureConfig { fresh_head: true, ..config.clone() };
        let fresh = pure_on_tiny(FineTuned::Train, &fresh).unwrap();
        assert!(max_diff(&logits(&fresh.undefended, None), &logits(&out.undefended, None)) > 1e-4);

        // The last epoch instead of the best: the same run otherwise, so the same per-epoch
        // accuracies.
        let last = PureConfig { keep_epoch: KeepEpoch::Last, ..config.clone() };
        let last = pure_on_tiny(FineTuned::Train, &last).unwrap();
        let l = &last.report;
        assert_eq!(
            l.tune_log.epochs.iter().map(|e| e.eval).collect::<Vec<_>>(),
            r.tune_log.epochs.iter().map(|e| e.eval).collect::<Vec<_>>()
        );
        assert_eq!((l.kept_epoch, Some(l.kept_accuracy)), (2, l.tune_log.epochs[1].eval));
        assert_eq!(accuracy(&last.purified, &labelled(20), 0, 64, &d, &mut Silent).unwrap(), l.kept_accuracy);

        let search = PureConfig { mu_search: vec![1.0, 0.0], mu_tolerance: 1.0, ..config };
        let out = pure_on_tiny(FineTuned::Train, &search).unwrap();
        let r = &out.report;
        let mus: Vec<f64> = r.mu_trials.iter().map(|t| t.mu).collect();
        assert_eq!(mus, vec![0.0, 0.15, 1.0]);
        // Any accuracy is within a tolerance of 1: the largest μ is kept, with its own run.
        assert_eq!(r.mu, 1.0);
        assert_eq!((r.kept_epoch, r.kept_accuracy), (r.mu_trials[2].kept_epoch, r.mu_trials[2].kept_accuracy));
        assert_eq!(r.tune_log.epochs[r.kept_epoch - 1].eval, Some(r.kept_accuracy));
    }
}
