//! Unlearning identified poisoned samples: RGA, and the GA and NPO baselines (Robust Gradient
//! Ascent; `../shared/papers/rga.txt`).
//!
//! Plain gradient ascent (GA) on the poisoned "forget" samples removes the trigger → target
//! link but keeps pushing until the trigger sends texts to *another* class (trigger
//! shifting, visible in PACC). RGA, eq. 6:
//! L = −λ·CE(forget) + CE(retain) + β·Σ_tensors ‖θ − θ_base‖₂, with
//! λ = exp(−α·KL(f_θ(·|x_p) ‖ f_θp(·|x_p))) computed without gradient against the frozen
//! poisoned model (eq. 7): once the model has moved away from the poisoned predictions, the
//! ascent fades. θ_base is the clean pre-trained encoder; the classifier is not in the L2 term
//! (it has no pre-trained value). NPO (Zhang et al. 2024) replaces −CE(forget) with
//! (2/β_npo)·log(1 + (π_θ(y|x)/π_ref(y|x))^β_npo).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{activation, ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::checkpoint::TextTokenizer;
use crate::data::batch::{Batch, Encoded};
use crate::model::{BertClassifier, BertConfig, BertModel};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::train::{cross_entropy, fit, TrainConfig, TrainError, TrainLog};

#[derive(Debug, thiserror::Error)]
pub enum RgaError {
    #[error("the forget set is empty: give the poisoned samples to unlearn")]
    EmptyForget,
    #[error("the retain set is empty: unlearning needs clean samples to keep the task")]
    EmptyRetain,
    #[error("a row has label {label}, but the model has {num_labels} labels")]
    Labels { label: usize, num_labels: usize },
    #[error("the forget set has labels {forget:?} but the retain set only {retain:?}: both must come from the model's training data")]
    LabelSets { forget: Vec<usize>, retain: Vec<usize> },
    #[error("the base checkpoint does not match the model: {0}")]
    Base(String),
    #[error("RGA's L2 term anchors the model to its clean pre-trained encoder, and none was given (--base)")]
    NoBase,
    #[error("unlearning setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Inference(#[from] crate::eval::InferenceError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    /// Robust gradient ascent (eq. 6–7): ascent weighted by λ = exp(−α·KL), anchored to the
    /// clean pre-trained encoder.
    Rga,
    /// Plain gradient ascent on the forget set: λ ≡ 1, no L2 anchor (a baseline; it shifts the
    /// trigger).
    Ga,
    /// Negative preference optimisation on the forget set, CE on the retain set (a baseline).
    Npo,
}

/// Unlearning settings; defaults are the RGA paper's for BERT (§5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RgaConfig {
    pub method: Method,
    /// α of eq. 7 (paper: 2).
    pub alpha: f64,
    /// β of eq. 6 (paper: 1e-2 for BERT; the authors' code uses 0.05).
    pub beta: f64,
    /// NPO's β (NPO paper: 1; used by `Method::Npo` only).
    pub npo_beta: f64,
    /// Epochs over the forget set (paper: up to 30), lr 2e-5, batch 32.
    pub train: TrainConfig,
}

impl Default for RgaConfig {
    fn default() -> Self {
        RgaConfig {
            method: Method::Rga,
            alpha: 2.0,
            beta: 1e-2,
            npo_beta: 1.0,
            train: TrainConfig { epochs: 30, ..TrainConfig::default() },
        }
    }
}

impl RgaConfig {
    pub fn validate(&self) -> Result<(), RgaError> {
        for (field, v) in [("alpha", self.alpha), ("beta", self.beta), ("npo_beta", self.npo_beta)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(RgaError::Config { field, value: v.to_string(), reason: "must be a finite number ≥ 0" });
            }
        }
        if self.method == Method::Npo && self.npo_beta == 0.0 {
            return Err(RgaError::Config { field: "npo_beta", value: "0".into(), reason: "NPO divides by it" });
        }
        Ok(self.train.validate()?)
    }
}

/// Checks that `base` is the pre-trained encoder the model was fine-tuned from: same
/// architecture and same vocabulary, so that eq. 6's θ − θ_base compares like with like.
/// Names the first mismatch.
pub fn check_base(
    model: &BertConfig,
    model_tokenizer: &TextTokenizer,
    base: &BertConfig,
    base_tokenizer: &TextTokenizer,
) -> Result<(), RgaError> {
    let fields = [
        ("vocab_size", model.vocab_size, base.vocab_size),
        ("hidden_size", model.hidden_size, base.hidden_size),
        ("num_hidden_layers", model.num_hidden_layers, base.num_hidden_layers),
        ("num_attention_heads", model.num_attention_heads, base.num_attention_heads),
        ("intermediate_size", model.intermediate_size, base.intermediate_size),
        ("max_position_embeddings", model.max_position_embeddings, base.max_position_embeddings),
        ("type_vocab_size", model.type_vocab_size, base.type_vocab_size),
    ];
    if let Some((field, m, b)) = fields.into_iter().find(|(_, m, b)| m != b) {
        return Err(RgaError::Base(format!("{field} is {m} in the model but {b} in the base: another architecture")));
    }
    if !model.pruned_heads.is_empty() {
        return Err(RgaError::Base("the model has pruned heads; the L2 anchor needs the full architecture".into()));
    }
    let (m, b) = (model_tokenizer.vocab_size(), base_tokenizer.vocab_size());
    if m != b {
        return Err(RgaError::Base(format!("the model's tokenizer has {m} tokens, the base's {b}: another vocabulary")));
    }
    let differs = (0..m as u32).find(|&id| model_tokenizer.token(id) != base_tokenizer.token(id));
    if let Some(id) = differs {
        let show = |t: Option<String>| t.unwrap_or_else(|| "(none)".into());
        return Err(RgaError::Base(format!(
            "token id {id} is {:?} in the model's vocabulary but {:?} in the base's: another vocabulary",
            show(model_tokenizer.token(id)),
            show(base_tokenizer.token(id))
        )));
    }
    Ok(())
}

/// Batch-mean KL(p ‖ q) of the softmax distributions of two `[batch, classes]` logit tensors.
pub fn kl_divergence<B: Backend>(logits_p: Tensor<B, 2>, logits_q: Tensor<B, 2>) -> f64 {
    let log_p = activation::log_softmax(logits_p, 1);
    let log_q = activation::log_softmax(logits_q, 1);
    let kl = (log_p.clone().exp() * (log_p - log_q)).sum_dim(1).mean();
    kl.into_scalar().elem()
}

/// λ of eq. 7: 1 while the model still predicts like the poisoned one, fading as it departs.
pub fn adaptive_weight(alpha: f64, kl: f64) -> f64 {
    (-alpha * kl.max(0.0)).exp()
}

/// Σ over the encoder's tensors of ‖θ − θ_base‖₂ (eq. 6's anchor), with gradient to `model`.
pub fn distance_to_base<B: Backend>(model: &BertModel<B>, base: &BertModel<B>) -> Result<Tensor<B, 1>, RgaError> {
    let (a, b) = (flatten(model), flatten(base));
    if a.len() != b.len() {
        return Err(RgaError::Base(format!("{} tensors against the base's {}", a.len(), b.len())));
    }
    let device = model.embeddings.word.weight.device();
    let mut total = Tensor::<B, 1>::zeros([1], &device);
    for (i, (x, y)) in a.into_iter().zip(b).enumerate() {
        if x.dims() != y.dims() {
            return Err(RgaError::Base(format!("tensor {i} has {} values against the base's {}", x.dims()[0], y.dims()[0])));
        }
        total = total + super::smooth_norm((x - y).powi_scalar(2).sum());
    }
    Ok(total)
}

struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

fn flatten<B: Backend>(model: &BertModel<B>) -> Vec<Tensor<B, 1>> {
    let mut v = Flatten(Vec::new());
    model.visit(&mut v);
    v.0
}

/// NPO's forget loss: (2/β)·mean log(1 + (π_θ(y|x)/π_ref(y|x))^β), y the poisoned label.
pub fn npo_loss<B: Backend>(
    logits: Tensor<B, 2>,
    reference_logits: Tensor<B, 2>,
    labels: Tensor<B, 1, burn::tensor::Int>,
    beta: f64,
) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let idx = labels.reshape([batch, 1]);
    let log_pi = activation::log_softmax(logits, 1).gather(1, idx.clone()).reshape([batch]);
    let log_ref = activation::log_softmax(reference_logits, 1).gather(1, idx).reshape([batch]);
    // log(1 + e^{β·Δ}) = softplus(β·Δ), written stably.
    let z = (log_pi - log_ref) * beta;
    let softplus = z.clone().clamp_min(0.0) + (z.abs().neg().exp() + 1.0).log();
    softplus.mean() * (2.0 / beta)
}

/// Per epoch: the mean forget CE (the "poisoned loss" the paper plots) and the mean λ.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnlearnEpoch {
    pub epoch: usize,
    pub forget_loss: f64,
    pub lambda: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RgaReport {
    pub config: RgaConfig,
    pub log: TrainLog,
    pub epochs: Vec<UnlearnEpoch>,
}

/// Unlearns the `forget` rows from `model` (the poisoned model, also the frozen reference),
/// pairing each forget batch with a random `retain` batch. `base` is the clean pre-trained
/// encoder on the inner backend (RGA's anchor; unused by GA and NPO).
#[allow(clippy::too_many_arguments)]
pub fn unlearn<B: AutodiffBackend>(
    model: BertClassifier<B>,
    base: Option<&BertModel<B::InnerBackend>>,
    forget: &[Encoded],
    retain: &[Encoded],
    pad_id: u32,
    config: &RgaConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<(BertClassifier<B::InnerBackend>, RgaReport), RgaError> {
    use burn::module::AutodiffModule;
    config.validate()?;
    if forget.is_empty() {
        return Err(RgaError::EmptyForget);
    }
    if retain.is_empty() {
        return Err(RgaError::EmptyRetain);
    }
    let num_labels = model.num_labels();
    if let Some(e) = forget.iter().chain(retain).find(|e| e.label >= num_labels) {
        return Err(RgaError::Labels { label: e.label, num_labels });
    }
    let label_set = |rows: &[Encoded]| rows.iter().map(|e| e.label).collect::<std::collections::BTreeSet<_>>();
    let (forget_labels, retain_labels) = (label_set(forget), label_set(retain));
    if !forget_labels.is_subset(&retain_labels) {
        return Err(RgaError::LabelSets { forget: forget_labels.into_iter().collect(), retain: retain_labels.into_iter().collect() });
    }
    let base = match (config.method, base) {
        (Method::Rga, None) if config.beta > 0.0 => return Err(RgaError::NoBase),
        (Method::Rga, Some(b)) => {
            let anchor = BertModel::<B>::from_inner(b.clone());
            distance_to_base(&model.bert, &anchor)?; // shapes checked before any training
            Some(anchor)
        }
        _ => None,
    };
    // The frozen model's logits on each forget row, computed once: they do not change, and
    // recomputing them every step cost a forward pass per batch for all 30 epochs. GA has no
    // reference term.
    let reference: Vec<f32> = match config.method {
        Method::Ga => Vec::new(),
        Method::Rga | Method::Npo => {
            crate::eval::logits(&model.valid(), forget, pad_id, config.train.batch_size, device, progress)?.concat()
        }
    };
    let mut rng = Rng::new(config.train.seed ^ 0x5eed);
    let per_epoch = forget.len().div_ceil(config.train.batch_size);
    let mut stats: Vec<(f64, f64)> = Vec::new();
    let (trained, log) = fit(
        model,
        forget,
        pad_id,
        &config.train,
        device,
        progress,
        |m: &BertClassifier<B>, batch: &Batch<B>, rows: &[usize]| {
            let logits = m.logits(batch.input_ids.clone(), batch.attention_mask.clone());
            let reference = || {
                let values: Vec<f32> = rows.iter().flat_map(|&i| &reference[i * num_labels..(i + 1) * num_labels]).copied().collect();
                Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(values, [rows.len(), num_labels]), device)
            };
            let forget_ce = cross_entropy(logits.clone(), batch.labels.clone());
            let ce_value: f64 = forget_ce.clone().into_scalar().elem();
            let (forget_term, lambda) = match config.method {
                Method::Ga => (forget_ce.neg(), 1.0),
                Method::Rga => {
                    let lambda = adaptive_weight(config.alpha, kl_divergence(logits.clone().inner(), reference()));
                    (forget_ce.neg() * lambda, lambda)
                }
                Method::Npo => (npo_loss(logits, Tensor::from_inner(reference()), batch.labels.clone(), config.npo_beta), 1.0),
            };
            stats.push((ce_value, lambda));
            let rows: Vec<&Encoded> = (0..config.train.batch_size.min(retain.len())).map(|_| &retain[rng.below(retain.len())]).collect();
            let r = Batch::<B>::new(&rows, pad_id, device);
            let mut loss = forget_term + cross_entropy(m.logits(r.input_ids, r.attention_mask), r.labels);
            if let Some(anchor) = &base {
                if config.beta > 0.0 {
                    let d = distance_to_base(&m.bert, anchor).expect("shapes checked before training");
                    loss = loss + d * config.beta;
                }
            }
            loss
        },
        |_, _| None,
    )?;
    let epochs = stats
        .chunks(per_epoch)
        .enumerate()
        .map(|(i, c)| UnlearnEpoch {
            epoch: i + 1,
            forget_loss: c.iter().map(|s| s.0).sum::<f64>() / c.len() as f64,
            lambda: c.iter().map(|s| s.1).sum::<f64>() / c.len() as f64,
        })
        .collect();
    Ok((trained.valid(), RgaReport { config: config.clone(), log, epochs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RandomInit;
    use crate::model::BertConfig;
    use crate::progress::Silent;
    use burn::backend::{Autodiff, NdArray};

    type B = NdArray;

    #[test]
    fn lambda_is_one_for_the_frozen_model_and_falls_as_kl_grows() {
        let d = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[2.0, -1.0], [0.5, 0.3]], &d);
        let kl = kl_divergence(logits.clone(), logits.clone());
        assert!(kl.abs() < 1e-7, "{kl}");
        assert_eq!(adaptive_weight(2.0, kl.max(0.0)), 1.0);
        let moved = Tensor::<B, 2>::from_floats([[-1.0, 2.0], [0.5, 0.3]], &d);
        let far = Tensor::<B, 2>::from_floats([[-4.0, 4.0], [0.5, 0.3]], &d);
        let (k1, k2) = (kl_divergence(moved, logits.clone()), kl_divergence(far, logits));
        assert!(0.0 < k1 && k1 < k2, "{k1} {k2}");
        assert!(1.0 > adaptive_weight(2.0, k1) && adaptive_weight(2.0, k1) > adaptive_weight(2.0, k2));
        assert!((adaptive_weight(2.0, 0.5) - (-1.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn npo_loss_is_2_ln2_over_beta_at_the_reference() {
        let d = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 3.0]], &d);
        let labels = Tensor::<B, 1, burn::tensor::Int>::from_ints([1, 1], &d);
        let v: f64 = npo_loss(logits.clone(), logits, labels, 1.0).into_scalar().elem();
        assert!((v - 2.0 * 2f64.ln()).abs() < 1e-6, "{v}");
    }

    fn tiny(seed: u64) -> BertClassifier<Autodiff<B>> {
        BertClassifier::from_source(&BertConfig::tiny(30), 2, &mut RandomInit::new(seed, 0.2, &Default::default())).unwrap()
    }

    #[test]
    fn distance_to_base_is_zero_for_the_same_encoder_and_checks_shapes() {
        use burn::module::AutodiffModule;
        let m = tiny(1).valid();
        let v: f64 = distance_to_base(&m.bert, &m.bert).unwrap().into_scalar().elem();
        assert_eq!(v, 0.0);
        let other = tiny(2).valid();
        let v: f64 = distance_to_base(&m.bert, &other.bert).unwrap().into_scalar().elem();
        assert!(v > 0.0);
        let bigger = BertClassifier::<B>::from_source(&BertConfig::tiny(31), 2, &mut RandomInit::new(1, 0.2, &Default::default())).unwrap();
        assert!(matches!(distance_to_base(&m.bert, &bigger.bert), Err(RgaError::Base(_))));
    }

    fn rows(label: usize) -> Vec<Encoded> {
        (0..8).map(|i| Encoded { ids: vec![1, 3 + i as u32, 12, 2], label }).collect()
    }

    /// Clean rows of both classes, as a retain set is.
    fn retain() -> Vec<Encoded> {
        let mut r = rows(0);
        r.extend((0..8).map(|i| Encoded { ids: vec![1, 14 + i as u32, 2], label: 1 }));
        r
    }

    #[test]
    fn ga_raises_the_forget_loss_and_rga_weights_it_by_lambda() {
        use burn::module::AutodiffModule;
        let _guard = crate::train::one_training_at_a_time();
        let train = TrainConfig { epochs: 3, batch_size: 4, lr: 5e-3, ..TrainConfig::default() };
        let ga = RgaConfig { method: Method::Ga, train: train.clone(), ..RgaConfig::default() };
        let (_, report) = unlearn(tiny(3), None, &rows(1), &retain(), 0, &ga, &Default::default(), &mut Silent).unwrap();
        assert_eq!(report.epochs.len(), 3);
        assert!(report.epochs[2].forget_loss > report.epochs[0].forget_loss, "{:?}", report.epochs);
        assert!(report.epochs.iter().all(|e| e.lambda == 1.0));

        let base = tiny(3).valid().bert;
        let rga = RgaConfig { train, ..RgaConfig::default() };
        let (_, report) = unlearn(tiny(3), Some(&base), &rows(1), &retain(), 0, &rga, &Default::default(), &mut Silent).unwrap();
        assert!(report.epochs[0].lambda > report.epochs[2].lambda, "λ fades as the model departs: {:?}", report.epochs);
        assert!(report.epochs.iter().all(|e| e.lambda <= 1.0 && e.lambda > 0.0));
    }

    /// λ compares each forget row with the frozen model's logits for that same row, computed
    /// before training: while the model has not moved, λ is 1 in every (shuffled) batch.
    #[test]
    fn lambda_is_one_until_the_model_moves() {
        use burn::module::AutodiffModule;
        let _guard = crate::train::one_training_at_a_time();
        let train = TrainConfig { epochs: 2, batch_size: 3, lr: 1e-12, ..TrainConfig::default() };
        let rga = RgaConfig { train, ..RgaConfig::default() };
        let base = tiny(4).valid().bert;
        let (_, report) = unlearn(tiny(4), Some(&base), &rows(1), &retain(), 0, &rga, &Default::default(), &mut Silent).unwrap();
        assert!(report.epochs.iter().all(|e| (1.0 - e.lambda).abs() < 1e-6), "{:?}", report.epochs);
    }

    #[test]
    fn bad_input_is_refused() {
        let config = RgaConfig::default();
        let d = Default::default();
        assert!(matches!(unlearn(tiny(1), None, &[], &rows(0), 0, &config, &d, &mut Silent), Err(RgaError::EmptyForget)));
        assert!(matches!(unlearn(tiny(1), None, &rows(1), &[], 0, &config, &d, &mut Silent), Err(RgaError::EmptyRetain)));
        assert!(matches!(unlearn(tiny(1), None, &rows(1), &retain(), 0, &config, &d, &mut Silent), Err(RgaError::NoBase)));
        assert!(matches!(unlearn(tiny(1), None, &rows(3), &retain(), 0, &config, &d, &mut Silent), Err(RgaError::Labels { label: 3, .. })));
        let ga = RgaConfig { method: Method::Ga, ..RgaConfig::default() };
        match unlearn(tiny(1), None, &rows(1), &rows(0), 0, &ga, &d, &mut Silent) {
            Err(RgaError::LabelSets { forget, retain }) => assert_eq!((forget, retain), (vec![1], vec![0])),
            other => panic!("expected a label-set mismatch, got {:?}", other.map(|_| ())),
        }
        let bad = RgaConfig { alpha: f64::NAN, ..RgaConfig::default() };
        assert!(matches!(bad.validate(), Err(RgaError::Config { field: "alpha", .. })));
    }

    #[test]
    fn check_base_names_the_architecture_or_vocabulary_mismatch() {
        let config = BertConfig::tiny(30);
        let word_level = |words: &[&str]| crate::checkpoint::word_level_for_tests(words, 16);
        let tok = word_level(&["good", "bad"]);
        check_base(&config, &tok, &config, &word_level(&["good", "bad"])).unwrap();
        let wider = BertConfig { hidden_size: 64, ..config.clone() };
        let err = check_base(&config, &tok, &wider, &tok).unwrap_err().to_string();
        assert!(err.contains("hidden_size is 32 in the model but 64"), "{err}");
        let err = check_base(&config, &tok, &config, &word_level(&["good", "ugly"])).unwrap_err().to_string();
        assert!(err.contains("token id 5 is \"bad\"") && err.contains("\"ugly\""), "{err}");
        let err = check_base(&config, &tok, &config, &word_level(&["good"])).unwrap_err().to_string();
        assert!(err.contains("6 tokens, the base's 5"), "{err}");
    }
}
