//! BTU: Backdoor Token Unlearning (Jiang et al., AAAI 2025; `../shared/papers/btu.txt`).
//!
//! Training-time defense: the data set may be poisoned, the trigger is unknown.
//! 1. Detection, up to three rounds, each flagging the top α·|V| tokens by embedding drift
//!    ([`crate::probe::token_scores`], eq. 3–5): round 1 trains only the word embeddings of
//!    the full model; round 2 a shallow proxy (embeddings, mean-pool, head); round 3 the proxy
//!    again on the data with the round-2 tokens removed. T = T′ ∪ T″ ∪ T‴.
//! 2. The model is fine-tuned on the data as usual (it learns the backdoor).
//! 3. Dimensional fine-grained unlearning ([`unlearn`], eq. 6–7) on the fine-tuned model's
//!    word embeddings, against the pre-trained ones ([`Replacement`] says with what).
//! 4. A short fine-tune on a small clean split (never the test set: the authors' code uses
//!    the test set, a leak).
//!
//! Not in the paper, off by default: [`BtuConfig::spare_clean_movers`] leaves out of step 3
//! the tokens of T that also move on the clean split ([`spare`]).

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::checkpoint::TextTokenizer;
use crate::data::batch::{Batch, Encoded};
use crate::model::{BertClassifier, Embeddings};
use crate::probe::token_scores::{self, embedding_only, rank, TokenScore, TokenScoreError};
use crate::progress::Progress;
use crate::train::{cross_entropy, fit, require_grad, ParamGroup, TrainConfig, TrainError, TrainLog, TrainModel, Trainable};

#[derive(Debug, thiserror::Error)]
pub enum BtuError {
    #[error("BTU setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error("the training data is empty: BTU needs labelled rows to detect and train on")]
    NoTrainData,
    #[error("the training data has only label {0}: BTU needs at least two classes to detect a backdoor")]
    SingleClass(usize),
    #[error("the clean tuning split is empty: BTU needs a few hundred clean rows to repair the model after unlearning")]
    NoCleanData,
    #[error("every training row is empty once the round-2 tokens ({0}) are removed: nothing is left for detection round 3")]
    EmptyAfterRemoval(String),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Scores(#[from] TokenScoreError),
}

/// BTU settings. Defaults are the paper's and its authors' code's. The maximum text length
/// (128 tokens in the authors' code) is the tokenizer's, applied when the rows are encoded
/// before BTU sees them (the CLI's `--max-len`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BtuConfig {
    /// Share of the vocabulary flagged per detection round, in (0, 1). The authors' code uses
    /// 0.0005 (15 of BERT's 30,522 tokens); the paper's "α = 0.05" is that value in percent.
    pub alpha: f64,
    /// Detection rounds run, 1 to 3 (paper: 3).
    pub rounds: usize,
    /// Round 1: the full model with only its word embeddings training (1 epoch, lr 2e-5).
    pub detect: TrainConfig,
    /// Rounds 2 and 3: the embeddings + mean-pool + head proxy (1 epoch, lr 2e-5; the word
    /// embeddings and the head train).
    pub proxy: TrainConfig,
    /// The ordinary fine-tune on the (possibly poisoned) data (3 epochs, lr 2e-5, batch 32).
    pub train: TrainConfig,
    /// The repair fine-tune on clean data after unlearning (1 epoch, lr 2e-5, batch 32).
    pub tune: TrainConfig,
    /// The per-dimension threshold of eq. 7.
    pub threshold: Threshold,
    /// What a replaced dimension becomes in eq. 7 (paper: the \[PAD\] row's value).
    pub replacement: Replacement,
    /// Not in the paper (default off): train the round-2 proxy once more, on the clean split,
    /// and leave out of eq. 7 every token of T that it also ranks in its top ⌊α·|V|⌋. Such a
    /// token moves without any trigger in the data, so it belongs to the task (on OLID: `@ user`
    /// and the frequent function words rounds 2–3 pick up, docs/results.md), and replacing it
    /// costs clean accuracy, while a trigger is absent from clean data and does not move there.
    pub spare_clean_movers: bool,
}

/// The threshold a dimension's change must reach to be replaced (eq. 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Threshold {
    /// Eq. 6 as printed: d̄ = the mean row drift ‖E′(t) − E(t)‖₂ over the vocabulary.
    ///
    /// After a full fine-tune this is about as large as a trigger row's per-dimension change, so
    /// most of the row survives; measured on SST-2 (docs/results.md) it leaves the backdoor
    /// intact.
    MeanRowDrift,
    /// The authors' code: ‖E′ − E‖_F / |V|. The default.
    ///
    /// About √|V| times smaller than the mean row drift, so nearly every dimension that moved is
    /// replaced; it is what the authors' reported numbers used.
    Frobenius,
}

/// The value a suspicious token's replaced dimension takes in eq. 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Replacement {
    /// The paper's eq. 7: the fine-tuned `[PAD]` row's value E′ᵢ(p).
    #[default]
    Pad,
    /// Not in the paper, an ablation that keeps the backdoor (docs/results.md): the token's own
    /// pre-trained value Eᵢ(t).
    ///
    /// With [`Pad`](Self::Pad) every token of T ends up near one shared row that the repair can
    /// give a meaning to (AddSent's sentence reads as five \[PAD\] tokens), and clean class
    /// words in T lose theirs. This keeps T's tokens apart, but on OLID it kept the backdoor:
    /// the fine-tuned encoder reads a trigger's pre-trained row as the trigger, so the \[PAD\]
    /// row, which it treats as nothing, is what removes it.
    Pretrained,
}

impl Default for BtuConfig {
    fn default() -> Self {
        BtuConfig::with_seed(42)
    }
}

impl BtuConfig {
    /// The defaults with every stage seeded from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        BtuConfig {
            alpha: 0.0005,
            rounds: 3,
            detect: token_scores::embedding_only_config(seed),
            proxy: TrainConfig {
                epochs: 1,
                seed,
                trainable: Trainable::Only(vec![ParamGroup::WordEmbeddings, ParamGroup::Classifier]),
                ..TrainConfig::default()
            },
            train: TrainConfig { seed, ..TrainConfig::default() },
            tune: TrainConfig { epochs: 1, seed, ..TrainConfig::default() },
            threshold: Threshold::Frobenius,
            replacement: Replacement::Pad,
            spare_clean_movers: false,
        }
    }

    pub fn validate(&self) -> Result<(), BtuError> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(BtuError::Config { field: "alpha", value: self.alpha.to_string(), reason: "must be in (0, 1)" });
        }
        if !(1..=3).contains(&self.rounds) {
            return Err(BtuError::Config { field: "rounds", value: self.rounds.to_string(), reason: "must be 1, 2 or 3" });
        }
        for c in [&self.detect, &self.proxy, &self.train, &self.tune] {
            c.validate()?;
        }
        Ok(())
    }

    /// Tokens flagged per round: ⌊α·|V|⌋ as the authors' code, at least one.
    pub fn per_round(&self, vocab: usize) -> usize {
        ((self.alpha * vocab as f64).floor() as usize).max(1)
    }
}

/// Round 2/3 proxy: the embedding layer and the classification head with nothing between but
/// a mean over the real tokens. It learns the easy trigger shortcut and little else.
#[derive(Module, Debug)]
pub struct Proxy<B: Backend> {
    pub embeddings: Embeddings<B>,
    pub classifier: Linear<B>,
}

impl<B: Backend> Proxy<B> {
    pub fn from_classifier(model: &BertClassifier<B>) -> Self {
        Proxy { embeddings: model.bert.embeddings.clone(), classifier: model.classifier.clone() }
    }

    pub fn logits(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, seq] = attention_mask.dims();
        let x = self.embeddings.forward(input_ids);
        let mask = attention_mask.reshape([batch, seq, 1]);
        let sum = (x * mask.clone()).sum_dim(1).squeeze_dim::<2>(1);
        let count = mask.sum_dim(1).squeeze_dim::<2>(1);
        self.classifier.forward(sum / count)
    }
}

impl<B: AutodiffBackend> TrainModel<B> for Proxy<B> {
    fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    fn vocab_size(&self) -> usize {
        self.embeddings.word.weight.dims()[0]
    }

    fn set_group(self, group: ParamGroup, on: bool) -> Self {
        let mut p = self;
        match group {
            ParamGroup::WordEmbeddings => p.embeddings.word = require_grad(p.embeddings.word, on),
            ParamGroup::Embeddings => p.embeddings = require_grad(p.embeddings, on),
            ParamGroup::Classifier => p.classifier = require_grad(p.classifier, on),
            ParamGroup::Encoder | ParamGroup::Pooler => {}
        }
        p
    }
}

/// Result of eq. 6–7 on one embedding matrix.
#[derive(Debug, Clone)]
pub struct Unlearned<B: Backend> {
    /// The word-embedding matrix with the suspicious dimensions replaced.
    pub weights: Tensor<B, 2>,
    /// The threshold d̄ that was applied.
    pub threshold: f32,
    /// How many dimensions of each suspicious token were replaced, in the order given.
    pub replaced: Vec<usize>,
}

/// d̄ of eq. 6 for the chosen [`Threshold`].
pub fn threshold<B: Backend>(before: Tensor<B, 2>, after: Tensor<B, 2>, kind: Threshold) -> f32 {
    let [vocab, _] = before.dims();
    let drift = token_scores::drift(before, after);
    let value = match kind {
        Threshold::MeanRowDrift => drift.mean(),
        Threshold::Frobenius => drift.powi_scalar(2).sum().sqrt() / vocab as f64,
    };
    value.into_scalar().elem()
}

/// Dimensional fine-grained unlearning (BTU eq. 7).
///
/// For each suspicious token t, dimension i takes the \[PAD\] row's value E′ᵢ(p) when
/// |E′ᵢ(t) − Eᵢ(t)| ≥ d̄ and keeps E′ᵢ(t) otherwise (with [`Replacement::Pretrained`], t's own
/// pre-trained value Eᵢ(t) instead of E′ᵢ(p)). `before` is the pre-trained matrix E, `after` the
/// fine-tuned E′, `d_bar` the threshold from [`threshold`].
pub fn unlearn<B: Backend>(
    before: Tensor<B, 2>,
    after: Tensor<B, 2>,
    tokens: &[u32],
    pad_id: u32,
    d_bar: f32,
    replacement: Replacement,
) -> Unlearned<B> {
    let [_, hidden] = after.dims();
    let device = after.device();
    let row =
        |m: &Tensor<B, 2>, id: u32| m.clone().select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(vec![id as i64], [1]), &device));
    let pad_row = row(&after, pad_id);
    let mut weights = after.clone();
    let mut replaced = Vec::with_capacity(tokens.len());
    for &t in tokens {
        let trained = row(&after, t);
        let pretrained = row(&before, t);
        let moved = (trained.clone() - pretrained.clone()).abs().greater_equal_elem(d_bar);
        replaced.push(moved.clone().int().sum().into_scalar().elem::<i64>() as usize);
        let source = match replacement {
            Replacement::Pad => pad_row.clone(),
            Replacement::Pretrained => pretrained,
        };
        let fixed = trained.mask_where(moved, source);
        let t = t as usize;
        weights = weights.slice_assign([t..t + 1, 0..hidden], fixed);
    }
    Unlearned { weights, threshold: d_bar, replaced }
}

/// Marks the tokens of T that the proxy trained on the clean split flagged too as spared: they
/// move without a trigger, so they are the task's features ([`BtuConfig::spare_clean_movers`]).
pub fn spare(suspicious: &mut [Suspect], clean_flagged: &[TokenScore]) {
    for s in suspicious {
        s.spared = clean_flagged.iter().any(|c| c.id == s.id);
    }
}

/// Drops every occurrence of `tokens` from the rows (round 3 works on D with T″ removed).
/// Removes token ids, not substrings: the authors' `str.replace` also cut other words.
pub fn remove_tokens(data: &[Encoded], tokens: &[u32]) -> Vec<Encoded> {
    data.iter().map(|e| Encoded { ids: e.ids.iter().copied().filter(|id| !tokens.contains(id)).collect(), label: e.label }).collect()
}

/// The tokens one detection round flagged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    /// 1: full model, embeddings only; 2: proxy; 3: proxy without the round-2 tokens;
    /// 0: the proxy on the clean split ([`BtuConfig::spare_clean_movers`]).
    pub round: usize,
    pub flagged: Vec<TokenScore>,
    pub log: TrainLog,
    pub seconds: f64,
}

/// A token of the suspicious set T and what unlearning did to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suspect {
    pub id: u32,
    pub token: String,
    /// Rounds that flagged it.
    pub rounds: Vec<usize>,
    /// Its highest drift score over those rounds.
    pub score: f32,
    /// Dimensions replaced in eq. 7 (by the \[PAD\] row's, or with [`Replacement::Pretrained`]
    /// the token's own pre-trained ones), out of the hidden size.
    pub dims_replaced: usize,
    /// Left out of eq. 7 because the clean-split proxy flagged it too ([`spare`]).
    #[serde(default)]
    pub spared: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BtuReport {
    pub config: BtuConfig,
    /// Tokens flagged per round, ⌊α·|V|⌋.
    pub per_round: usize,
    pub rounds: Vec<Round>,
    /// The proxy trained on the clean split, when [`BtuConfig::spare_clean_movers`] is on.
    #[serde(default)]
    pub clean_round: Option<Round>,
    /// T, in order of first flagging.
    pub suspicious: Vec<Suspect>,
    /// The threshold d̄ applied in eq. 7.
    pub threshold: f32,
    pub hidden_size: usize,
    pub train_log: TrainLog,
    pub train_seconds: f64,
    pub tune_log: TrainLog,
    pub tune_seconds: f64,
    pub unlearn_seconds: f64,
}

/// The fine-tuned model before unlearning (what training without a defense gives) and the
/// purified one.
pub struct BtuOutcome<B: Backend> {
    pub undefended: BertClassifier<B>,
    pub purified: BertClassifier<B>,
    pub report: BtuReport,
}

fn ce<B: AutodiffBackend>(m: &Proxy<B>, batch: &Batch<B>) -> Tensor<B, 1> {
    cross_entropy(m.logits(batch.input_ids.clone(), batch.attention_mask.clone()), batch.labels.clone())
}

fn word_matrix<B: Backend>(model: &BertClassifier<B>) -> Tensor<B, 2> {
    model.bert.embeddings.word.weight.val()
}

/// Runs BTU end to end from the pre-trained `model` on the possibly poisoned `train` rows,
/// repairing with the `clean` rows. `now` reads a clock in seconds (the core has none).
#[allow(clippy::too_many_arguments)]
pub fn btu<B: AutodiffBackend>(
    model: BertClassifier<B>,
    train: &[Encoded],
    clean: &[Encoded],
    tokenizer: &TextTokenizer,
    config: &BtuConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
    now: &dyn Fn() -> f64,
) -> Result<BtuOutcome<B::InnerBackend>, BtuError> {
    config.validate()?;
    let first = train.first().ok_or(BtuError::NoTrainData)?;
    if train.iter().all(|e| e.label == first.label) {
        return Err(BtuError::SingleClass(first.label));
    }
    if clean.is_empty() {
        return Err(BtuError::NoCleanData);
    }
    let pad = tokenizer.pad_id();
    let k = config.per_round(model.vocab_size());
    let before = word_matrix(&model).inner();
    let mut rounds = Vec::new();
    // Rounds 2–3, and the clean split's round 0: the proxy trained on `data`, ranked by drift.
    let proxy_round = |data: &[Encoded], round: usize, progress: &mut dyn Progress| -> Result<Round, BtuError> {
        let t = now();
        let (proxy, log) =
            fit(Proxy::from_classifier(&model), data, pad, &config.proxy, device, progress, |m, b, _| ce(m, b), |_, _| None)?;
        let scores = token_scores::drift_values(before.clone(), proxy.valid().embeddings.word.weight.val())?;
        Ok(Round { round, flagged: rank(&scores, tokenizer, k), log, seconds: now() - t })
    };

    let t = now();
    let (scores, log) = embedding_only(&model, train, pad, &config.detect, device, progress)?;
    rounds.push(Round { round: 1, flagged: rank(&scores, tokenizer, k), log, seconds: now() - t });

    let mut round_data = train.to_vec();
    for round in 2..=config.rounds {
        if round == 3 {
            let removed: Vec<u32> = rounds[1].flagged.iter().map(|s| s.id).collect();
            round_data = remove_tokens(train, &removed);
            let special = tokenizer.special_ids();
            if round_data.iter().all(|e| e.ids.iter().all(|id| special.contains(id))) {
                let names: Vec<&str> = rounds[1].flagged.iter().map(|s| s.token.as_str()).collect();
                return Err(BtuError::EmptyAfterRemoval(names.join(" ")));
            }
        }
        rounds.push(proxy_round(&round_data, round, progress)?);
    }

    let mut suspicious: Vec<Suspect> = Vec::new();
    for r in &rounds {
        for s in &r.flagged {
            match suspicious.iter_mut().find(|x| x.id == s.id) {
                Some(x) => {
                    x.rounds.push(r.round);
                    x.score = x.score.max(s.score);
                }
                None => suspicious.push(Suspect {
                    id: s.id,
                    token: s.token.clone(),
                    rounds: vec![r.round],
                    score: s.score,
                    dims_replaced: 0,
                    spared: false,
                }),
            }
        }
    }

    let clean_round = if config.spare_clean_movers {
        let round = proxy_round(clean, 0, progress)?;
        spare(&mut suspicious, &round.flagged);
        Some(round)
    } else {
        None
    };

    let t = now();
    let (trained, train_log) = fit(
        model,
        train,
        pad,
        &config.train,
        device,
        progress,
        |m: &BertClassifier<B>, b, _| cross_entropy(m.logits(b.input_ids.clone(), b.attention_mask.clone()), b.labels.clone()),
        |_, _| None,
    )?;
    let train_seconds = now() - t;

    let t = now();
    let ids: Vec<u32> = suspicious.iter().filter(|s| !s.spared).map(|s| s.id).collect();
    let after = word_matrix(&trained).inner();
    let d_bar = threshold(before.clone(), after.clone(), config.threshold);
    let unlearned = unlearn(before, after, &ids, pad, d_bar, config.replacement);
    for (s, n) in suspicious.iter_mut().filter(|s| !s.spared).zip(&unlearned.replaced) {
        s.dims_replaced = *n;
    }
    let mut repaired = trained.clone();
    repaired.bert.embeddings.word.weight = Param::from_tensor(Tensor::from_inner(unlearned.weights));
    let unlearn_seconds = now() - t;

    let t = now();
    let (purified, tune_log) = fit(
        repaired,
        clean,
        pad,
        &config.tune,
        device,
        progress,
        |m: &BertClassifier<B>, b, _| cross_entropy(m.logits(b.input_ids.clone(), b.attention_mask.clone()), b.labels.clone()),
        |_, _| None,
    )?;
    let tune_seconds = now() - t;

    let hidden_size = word_matrix(&trained).dims()[1];
    Ok(BtuOutcome {
        undefended: trained.valid(),
        purified: purified.valid(),
        report: BtuReport {
            config: config.clone(),
            per_round: k,
            rounds,
            clean_round,
            suspicious,
            threshold: unlearned.threshold,
            hidden_size,
            train_log,
            train_seconds,
            tune_log,
            tune_seconds,
            unlearn_seconds,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{word_level_for_tests, RandomInit};
    use crate::model::BertConfig;
    use crate::progress::Silent;
    use burn::backend::{Autodiff, NdArray};

    fn values(t: Tensor<NdArray, 2>) -> Vec<Vec<f32>> {
        let [rows, cols] = t.dims();
        let v: Vec<f32> = t.into_data().to_vec().unwrap();
        (0..rows).map(|r| v[r * cols..(r + 1) * cols].to_vec()).collect()
    }

    /// Row 0 is \[PAD\]. Row drifts: 0, 0, 5 (3-4-0 triangle), 1 → d̄ = 6/4 = 1.5. Token 2 moved
    /// by 3 and 4 in its first two dimensions (≥ 1.5: replaced), 0 in the third (kept).
    #[test]
    fn eq7_replaces_exactly_the_dimensions_that_moved_at_least_the_mean_drift() {
        let d = Default::default();
        let before = Tensor::<NdArray, 2>::from_floats([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 7.0], [2.0, 2.0, 2.0]], &d);
        let after = Tensor::<NdArray, 2>::from_floats([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [3.0, -4.0, 7.0], [2.0, 2.0, 3.0]], &d);
        assert_eq!(threshold(before.clone(), after.clone(), Threshold::MeanRowDrift), 1.5);
        let out = unlearn(before, after, &[2, 3], 0, 1.5, Replacement::Pad);
        assert_eq!(out.replaced, vec![2, 0]);
        assert_eq!(values(out.weights), vec![vec![0.5, 0.5, 0.5], vec![1.0, 1.0, 1.0], vec![0.5, 0.5, 7.0], vec![2.0, 2.0, 3.0]]);
    }

    /// The threshold is inclusive (|Δ| ≥ d̄) and the replacement comes from the *trained* \[PAD\]
    /// row. Drifts 4, 0, 2, 2 → d̄ = 2; tokens 2 and 3 each moved exactly 2 in one dimension.
    #[test]
    fn eq7_threshold_is_inclusive_and_uses_the_trained_pad_row() {
        let d = Default::default();
        let before = Tensor::<NdArray, 2>::from_floats([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], &d);
        let after = Tensor::<NdArray, 2>::from_floats([[1.0, 5.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], &d);
        assert_eq!(threshold(before.clone(), after.clone(), Threshold::MeanRowDrift), 2.0);
        let out = unlearn(before, after, &[2, 3], 0, 2.0, Replacement::Pad);
        assert_eq!(out.replaced, vec![1, 1]);
        let w = values(out.weights);
        assert_eq!((w[2].clone(), w[3].clone()), (vec![1.0, 0.0], vec![0.0, 5.0]));
    }

    /// Same dimensions as with \[PAD\], but each takes the token's own pre-trained value, so two
    /// tokens that moved the same way do not end up with the same row.
    #[test]
    fn eq7_with_pretrained_replacement_restores_each_tokens_own_values() {
        let d = Default::default();
        let before = Tensor::<NdArray, 2>::from_floats([[9.0, 9.0], [0.0, 0.0], [1.0, -1.0], [-3.0, 3.0]], &d);
        let after = Tensor::<NdArray, 2>::from_floats([[9.0, 9.0], [0.0, 0.0], [5.0, -1.5], [1.0, 3.5]], &d);
        let out = unlearn(before, after, &[2, 3], 0, 2.0, Replacement::Pretrained);
        assert_eq!(out.replaced, vec![1, 1]);
        assert_eq!(values(out.weights), vec![vec![9.0, 9.0], vec![0.0, 0.0], vec![1.0, -1.5], vec![-3.0, 3.5]]);
    }

    /// Drifts 4, 0, 2, 2: ‖E′ − E‖_F = √24, over |V| = 4 rows.
    #[test]
    fn authors_threshold_is_the_frobenius_norm_over_the_vocabulary() {
        let d = Default::default();
        let before = Tensor::<NdArray, 2>::from_floats([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], &d);
        let after = Tensor::<NdArray, 2>::from_floats([[1.0, 5.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], &d);
        let t = threshold(before, after, Threshold::Frobenius);
        assert!((t - 24f32.sqrt() / 4.0).abs() < 1e-6, "{t}");
    }

    #[test]
    fn token_removal_drops_ids_not_rows() {
        let data = vec![Encoded { ids: vec![101, 5, 7, 5, 102], label: 1 }, Encoded { ids: vec![101, 5, 102], label: 0 }];
        let out = remove_tokens(&data, &[5]);
        assert_eq!(out[0].ids, vec![101, 7, 102]);
        assert_eq!(out[1].ids, vec![101, 102]);
        assert_eq!(out[1].label, 0);
    }

    #[test]
    fn tokens_the_clean_proxy_flags_are_spared_and_only_those() {
        let suspect = |id: u32| Suspect { id, token: format!("t{id}"), rounds: vec![1], score: 1.0, dims_replaced: 0, spared: true };
        let mut t = vec![suspect(7), suspect(9), suspect(11)];
        let clean = [TokenScore { id: 9, token: "t9".into(), score: 0.5 }, TokenScore { id: 4, token: "t4".into(), score: 0.4 }];
        spare(&mut t, &clean);
        assert_eq!(t.iter().map(|s| (s.id, s.spared)).collect::<Vec<_>>(), [(7, false), (9, true), (11, false)]);
    }

    #[test]
    fn alpha_and_rounds_are_checked() {
        for alpha in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(BtuConfig { alpha, ..BtuConfig::default() }.validate(), Err(BtuError::Config { field: "alpha", .. })));
        }
        assert!(matches!(BtuConfig { rounds: 4, ..BtuConfig::default() }.validate(), Err(BtuError::Config { field: "rounds", .. })));
        assert_eq!(BtuConfig::default().per_round(30_522), 15);
    }

    #[test]
    fn unusable_data_is_refused_before_any_training() {
        type A = Autodiff<NdArray>;
        let tok = word_level_for_tests(&["good", "bad"], 16);
        let run = |train: &[Encoded], clean: &[Encoded]| {
            let model =
                BertClassifier::<A>::from_source(&BertConfig::tiny(6), 2, &mut RandomInit::new(1, 0.2, &Default::default())).unwrap();
            btu(model, train, clean, &tok, &BtuConfig::default(), &Default::default(), &mut Silent, &|| 0.0).err()
        };
        let row = |label| Encoded { ids: vec![2, 4, 3], label };
        let both = [row(0), row(1)];
        assert!(matches!(run(&[], &both), Some(BtuError::NoTrainData)));
        assert!(matches!(run(&[row(1), row(1)], &both), Some(BtuError::SingleClass(1))));
        assert!(matches!(run(&both, &[]), Some(BtuError::NoCleanData)));
    }
}
