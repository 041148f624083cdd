//! MBTSAD: token splitting and attention distillation (Ding, Niu and Yi;
//! `../shared/papers/mbtsad.txt`).
//!
//! For a downloaded model that may carry a backdoor, when the defender has a small share of
//! the clean training data (20% in the paper) and no pre-trained weights (§I).
//! 1. Token splitting ([`crate::augment::token_split`], §IV-A5): N = 3 split variants of each
//!    clean text. A split rare-word trigger is no longer the token the backdoor keys on, and
//!    the split texts are out of distribution for the backdoored model (§III-C).
//! 2. Retrain the suspect M_b on the split texts (lr 2e-5) → the teacher M_p. This alone is
//!    the paper's "TS-FT" baseline (Table II).
//! 3. Attention distillation: the student is the original suspect M_b, trained on the same
//!    split texts with eq. 1, L = L_a + α·L_cls + β·L_h ([`attention_loss`], [`hidden_loss`],
//!    cross-entropy), the teacher frozen (lr 5e-4 in the paper).
//!
//! A teacher retrained earlier can be passed instead of retraining one ([`Teacher::Given`]), so
//! several distillation settings are compared against one teacher.
//!
//! No public code exists; where the paper is silent (epochs, batch size, α and β, averaging
//! over a batch, padding) the choice is documented at the item.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::augment::token_split::{augment, check_splittable, unsplittable_rows, SplitConfig, SplitError};
use crate::checkpoint::{TextTokenizer, TokenizerError};
use crate::data::batch::{Batch, Encoded};
use crate::data::{subsample, Example};
use crate::model::{BertClassifier, ForwardOptions};
use crate::progress::Progress;
use crate::train::{cross_entropy, fit, train, TrainConfig, TrainError, TrainLog};

/// Floor of ‖AE‖₂ before dividing by it (as `torch.nn.functional.normalize`): a real query
/// row sums to 1 in every head, so the floor only guards an all-padding map.
const NORM_FLOOR: f64 = 1e-12;

#[derive(Debug, thiserror::Error)]
pub enum MbtsadError {
    #[error("MBTSAD setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error("no clean rows: MBTSAD retrains the suspect model on clean data")]
    NoCleanData,
    #[error("the clean subsample ({rows} rows) has only label {label}: MBTSAD retrains on it and needs at least two classes (raise the clean fraction)")]
    SingleClass { label: usize, rows: usize },
    #[error("teacher and student differ in {what}: the teacher has {teacher}, the student {student}")]
    Mismatch { what: String, teacher: usize, student: usize },
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// MBTSAD settings. Defaults are the paper's (§IV-A); where it gives none, the field says so.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MbtsadConfig {
    /// Share of the clean training rows the defender has, in (0, 1] (paper: r = 0.2, §IV-A2),
    /// taken as a seeded stratified subsample (seeded by `split.seed`).
    pub clean_fraction: f64,
    /// Token splitting (paper: N = 3 variants per text, max(10, 0.3·n) words split per text as
    /// written, or the nlpaug rule it cites: [`crate::augment::token_split::SplitRule`]).
    pub split: SplitConfig,
    /// Step 1, retraining the suspect on the split texts into the teacher (paper: lr 2e-5;
    /// epochs and batch size not given: 3 and 32, the setting the four papers share).
    pub teacher: TrainConfig,
    /// Step 2, the distillation (paper: lr 5e-4; epochs and batch size not given: 1 and 32).
    /// One epoch was chosen on SST-2 dev with MiniLM-L6 (docs/results.md): from the 2e-5
    /// teacher, dev ASR was 21.50 after one epoch and 41.82 after two (from a 1e-4 teacher,
    /// 32.71 after one and 40.42 after three). 5e-4 is 25 times the usual BERT
    /// fine-tuning rate; it is kept because the paper's results were obtained with it.
    pub distill: TrainConfig,
    /// α of eq. 1, the weight of L_cls. The paper tunes α per attack and publishes no value;
    /// 1 weighs the three terms equally, as TinyBERT's unweighted sum that MBTSAD builds on.
    pub alpha: f64,
    /// β of eq. 1, the weight of L_h (paper: tuned per attack, unpublished; 1 as `alpha`).
    pub beta: f64,
}

impl Default for MbtsadConfig {
    fn default() -> Self {
        MbtsadConfig::with_seed(42)
    }
}

impl MbtsadConfig {
    /// The defaults with the subsample, the splits and both trainings seeded from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        MbtsadConfig {
            clean_fraction: 0.2,
            split: SplitConfig { seed, ..SplitConfig::default() },
            teacher: TrainConfig { seed, ..TrainConfig::default() },
            distill: TrainConfig { epochs: 1, lr: 5e-4, seed, ..TrainConfig::default() },
            alpha: 1.0,
            beta: 1.0,
        }
    }

    pub fn validate(&self) -> Result<(), MbtsadError> {
        let f = self.clean_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(MbtsadError::Config { field: "clean_fraction", value: f.to_string(), reason: "must be in (0, 1]" });
        }
        for (field, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(MbtsadError::Config { field, value: v.to_string(), reason: "must be a finite number ≥ 0" });
            }
        }
        self.split.validate()?;
        self.teacher.validate()?;
        self.distill.validate()?;
        Ok(())
    }

    /// Rows of the clean subsample out of `available`: round(r · n), at least one.
    pub fn clean_rows(&self, available: usize) -> usize {
        ((self.clean_fraction * available as f64).round() as usize).clamp(available.min(1), available)
    }
}

/// Attention Enhancement, eq. 3: AE(a) = Σ_heads |a_head|², `[batch, heads, seq, seq]` →
/// `[batch, seq, seq]`. Squaring stresses the strongly attended pairs.
pub fn attention_energy<B: Backend>(attention: Tensor<B, 4>) -> Tensor<B, 3> {
    attention.powi_scalar(2).sum_dim(1).squeeze_dim::<3>(1)
}

/// L_a, eq. 2 and 4: Σ_layers ‖AE(a_t)/‖AE(a_t)‖₂ − AE(a_s)/‖AE(a_s)‖₂‖₂, averaged over the
/// batch (the paper writes it for one text).
///
/// `teacher` and `student` are per-layer attention probabilities of the same batch, and
/// `mask` its `[batch, seq]` attention mask. Each text's l×l map is restricted to its real
/// tokens before it is normalised, so padding changes nothing: padding keys already get
/// probability 0, and the rows of padding queries (which do attend) are zeroed. The outer norm
/// is computed as ‖d‖²/√(‖d‖² + ε): exactly 0 for identical maps, with a finite gradient
/// there (√'s would be NaN), and within a relative ε/(2‖d‖²) of ‖d‖ elsewhere, below f32
/// precision once ‖d‖ ≥ 0.003.
///
/// # Panics
/// When the two models have different layer counts ([`check_compatible`] refuses them first).
pub fn attention_loss<B: Backend>(teacher: &[Tensor<B, 4>], student: &[Tensor<B, 4>], mask: Tensor<B, 2>) -> Tensor<B, 1> {
    assert_eq!(teacher.len(), student.len(), "teacher and student attention maps per layer");
    let [batch, seq] = mask.dims();
    let pairs = mask.clone().reshape([batch, seq, 1]) * mask.reshape([batch, 1, seq]);
    let unit = |a: &Tensor<B, 4>| {
        let energy = (attention_energy(a.clone()) * pairs.clone()).reshape([batch, seq * seq]);
        let norm = energy.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(NORM_FLOOR);
        energy / norm
    };
    teacher
        .iter()
        .zip(student)
        .map(|(t, s)| {
            let squared = (unit(t) - unit(s)).powi_scalar(2).sum_dim(1);
            super::smooth_norm(squared).mean()
        })
        .reduce(|a, b| a + b)
        .expect("a BERT model has at least one layer")
}

/// L_h, eq. 5 and 6: Σ_{n=0..L} MSE(h_t^n, h_s^n) over the embedding output and every layer's
/// output, the mean taken over the real tokens' values (padding positions are left out, as
/// in [`attention_loss`]).
///
/// # Panics
/// When the two models have different layer counts ([`check_compatible`] refuses them first).
pub fn hidden_loss<B: Backend>(teacher: &[Tensor<B, 3>], student: &[Tensor<B, 3>], mask: Tensor<B, 2>) -> Tensor<B, 1> {
    assert_eq!(teacher.len(), student.len(), "teacher and student hidden states per layer");
    let [batch, seq] = mask.dims();
    let mask = mask.reshape([batch, seq, 1]);
    teacher
        .iter()
        .zip(student)
        .map(|(t, s)| {
            let hidden = t.dims()[2];
            let values = mask.clone().sum() * hidden as f64;
            ((t.clone() - s.clone()).powi_scalar(2) * mask.clone()).sum() / values
        })
        .reduce(|a, b| a + b)
        .expect("a BERT model has at least one hidden state")
}

/// The three terms of eq. 1 for one batch, each a one-element tensor.
pub struct DistillLosses<B: Backend> {
    /// L_a (eq. 2), with gradient to the student.
    pub attention: Tensor<B, 1>,
    /// L_cls (eq. 7): the student's cross-entropy against the true labels.
    pub cls: Tensor<B, 1>,
    /// L_h (eq. 6).
    pub hidden: Tensor<B, 1>,
}

fn with_internals<B: Backend>() -> ForwardOptions<B> {
    ForwardOptions { head_mask: None, attentions: true, hidden_states: true }
}

/// Eq. 1's terms for `batch`: the frozen `teacher` runs on the inner backend (no graph, no
/// dropout), the `student` with gradient.
pub fn distillation_losses<B: AutodiffBackend>(
    teacher: &BertClassifier<B::InnerBackend>,
    student: &BertClassifier<B>,
    batch: &Batch<B>,
) -> DistillLosses<B> {
    let s = student.forward(batch.input_ids.clone(), batch.attention_mask.clone(), &with_internals());
    let t = teacher.forward(batch.input_ids.clone().inner(), batch.attention_mask.clone().inner(), &with_internals());
    let attentions: Vec<Tensor<B, 4>> = t.encoder.attentions.into_iter().map(Tensor::from_inner).collect();
    let hidden: Vec<Tensor<B, 3>> = t.encoder.hidden_states.into_iter().map(Tensor::from_inner).collect();
    DistillLosses {
        attention: attention_loss(&attentions, &s.encoder.attentions, batch.attention_mask.clone()),
        cls: cross_entropy(s.logits, batch.labels.clone()),
        hidden: hidden_loss(&hidden, &s.encoder.hidden_states, batch.attention_mask.clone()),
    }
}

/// Refuses a teacher and student whose attention maps or hidden states cannot be compared
/// one to one (eq. 2 and 6 pair them layer by layer), or whose vocabularies or position tables
/// differ (both read the same token ids, padded to the same length).
pub fn check_compatible<T: Backend, S: Backend>(teacher: &BertClassifier<T>, student: &BertClassifier<S>) -> Result<(), MbtsadError> {
    match teacher.shape_difference(student) {
        None => Ok(()),
        Some(d) => Err(MbtsadError::Mismatch { what: d.what, teacher: d.this, student: d.other }),
    }
}

/// Mean of each eq. 1 term over one distillation epoch's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillEpoch {
    pub epoch: usize,
    /// L_a.
    pub attention_loss: f64,
    /// L_cls.
    pub cls_loss: f64,
    /// L_h.
    pub hidden_loss: f64,
}

/// The distilled student and how its training went.
pub struct Distilled<B: Backend> {
    pub student: BertClassifier<B>,
    /// Each epoch's `mean_loss` is the weighted total of eq. 1.
    pub log: TrainLog,
    pub epochs: Vec<DistillEpoch>,
}

/// Step 2: trains `student` on `data` with eq. 1 against the frozen `teacher`
/// (`config.distill`, `config.alpha`, `config.beta`).
pub fn distill<B: AutodiffBackend>(
    teacher: &BertClassifier<B::InnerBackend>,
    student: BertClassifier<B>,
    data: &[Encoded],
    pad_id: u32,
    config: &MbtsadConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Distilled<B::InnerBackend>, MbtsadError> {
    config.validate()?;
    check_compatible(teacher, &student)?;
    let mut terms: Vec<[f64; 3]> = Vec::new();
    let (student, log) = fit(
        student,
        data,
        pad_id,
        &config.distill,
        device,
        progress,
        |m: &BertClassifier<B>, batch: &Batch<B>, _| {
            let l = distillation_losses(teacher, m, batch);
            // One read-back for the three terms: each is a device sync on a GPU.
            let values: Vec<f64> = Tensor::cat(vec![l.attention.clone(), l.cls.clone(), l.hidden.clone()], 0)
                .into_data()
                .convert::<f64>()
                .to_vec()
                .expect("data converted to f64 reads back as f64");
            terms.push([values[0], values[1], values[2]]);
            l.attention + l.cls * config.alpha + l.hidden * config.beta
        },
        |_, _| None,
    )?;
    let per_epoch = data.len().div_ceil(config.distill.batch_size);
    let epochs = terms
        .chunks(per_epoch)
        .enumerate()
        .map(|(i, c)| {
            let mean = |k: usize| c.iter().map(|v| v[k]).sum::<f64>() / c.len() as f64;
            DistillEpoch { epoch: i + 1, attention_loss: mean(0), cls_loss: mean(1), hidden_loss: mean(2) }
        })
        .collect();
    Ok(Distilled { student: student.valid(), log, epochs })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MbtsadReport {
    pub config: MbtsadConfig,
    /// Clean rows given, and those the clean fraction kept.
    pub available_rows: usize,
    pub clean_rows: usize,
    /// Split variants trained on (`clean_rows` × N).
    pub augmented_rows: usize,
    /// Clean rows with no word the split rule can cut: their variants are copies.
    pub unsplit_rows: usize,
    /// Step 1, the teacher (TS-FT); `None` when the teacher was given.
    pub teacher_log: Option<TrainLog>,
    /// Step 2; each epoch's `mean_loss` is eq. 1's total.
    pub distill_log: TrainLog,
    /// Step 2's terms per epoch.
    pub distill_epochs: Vec<DistillEpoch>,
    /// Subsampling, splitting and tokenising.
    pub augment_seconds: f64,
    pub teacher_seconds: f64,
    pub distill_seconds: f64,
}

/// Where the teacher M_p comes from.
pub enum Teacher<B: Backend> {
    /// Retrain the suspect on the split texts with `config.teacher` (the paper's step 1).
    Retrain,
    /// A teacher retrained before, from the same suspect on the same clean rows and splits
    /// (the caller's duty: its weights carry no record of them). Step 1 is skipped and
    /// `config.teacher` unused. Retraining with the same settings and seed gives the same
    /// teacher (bit for bit on the CPU), so this repeats such a run without its step 1.
    Given(Box<BertClassifier<B>>),
}

/// The teacher (the suspect retrained on split texts: the "TS-FT" baseline) and the purified
/// student.
pub struct MbtsadOutcome<B: Backend> {
    pub teacher: BertClassifier<B>,
    pub purified: BertClassifier<B>,
    /// The split texts both steps trained on, for a reader to inspect.
    pub splits: Vec<Example>,
    pub report: MbtsadReport,
}

/// Runs MBTSAD end to end on the suspect `model` with the defender's `clean` rows, of which
/// `config.clean_fraction` is used. Rows with no word to split are trained on as they are; some
/// row of `clean` must have one. `now` reads a clock in seconds (the core has none).
#[allow(clippy::too_many_arguments)]
pub fn mbtsad<B: AutodiffBackend>(
    model: BertClassifier<B>,
    teacher: Teacher<B::InnerBackend>,
    clean: &[Example],
    tokenizer: &TextTokenizer,
    config: &MbtsadConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
    now: &dyn Fn() -> f64,
) -> Result<MbtsadOutcome<B::InnerBackend>, MbtsadError> {
    config.validate()?;
    if let Teacher::Given(given) = &teacher {
        check_compatible(given, &model)?;
    }
    check_splittable(clean, &config.split)?;
    let t = now();
    let rows = subsample(clean, config.clean_rows(clean.len()), config.split.seed);
    let first = rows.first().ok_or(MbtsadError::NoCleanData)?;
    if rows.iter().all(|e| e.label == first.label) {
        return Err(MbtsadError::SingleClass { label: first.label, rows: rows.len() });
    }
    let splits = augment(&rows, &config.split)?;
    let augmented = tokenizer.encode_all(&splits)?;
    let augment_seconds = now() - t;
    let pad = tokenizer.pad_id();

    let t = now();
    let (teacher, teacher_log) = match teacher {
        Teacher::Retrain => {
            let (trained, log) = train(model.clone(), &augmented, pad, &config.teacher, device, progress, |_, _| None)?;
            (trained.valid(), Some(log))
        }
        Teacher::Given(given) => (*given, None),
    };
    let teacher_seconds = now() - t;

    let t = now();
    let distilled = distill(&teacher, model, &augmented, pad, config, device, progress)?;
    let distill_seconds = now() - t;

    Ok(MbtsadOutcome {
        teacher,
        purified: distilled.student,
        splits,
        report: MbtsadReport {
            config: config.clone(),
            available_rows: clean.len(),
            clean_rows: rows.len(),
            augmented_rows: augmented.len(),
            unsplit_rows: unsplittable_rows(&rows, &config.split),
            teacher_log,
            distill_log: distilled.log,
            distill_epochs: distilled.epochs,
            augment_seconds,
            teacher_seconds,
            distill_seconds,
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
    use burn::tensor::{ElementConversion, TensorData};

    type B = NdArray;
    type A = Autodiff<NdArray>;

    fn value(t: Tensor<B, 1>) -> f64 {
        t.into_scalar().elem()
    }

    fn maps(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn mask(values: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    #[test]
    fn attention_energy_sums_squared_heads() {
        let a = maps(vec![0.6, 0.4, 0.3, 0.7, 1.0, 0.0, 0.5, 0.5], [1, 2, 2, 2]);
        let ae: Vec<f32> = attention_energy(a).into_data().to_vec().unwrap();
        let expected = [0.36 + 1.0, 0.16, 0.09 + 0.25, 0.49 + 0.25];
        assert_eq!(ae.len(), 4);
        assert!(ae.iter().zip(expected).all(|(x, y)| (x - y).abs() < 1e-6), "{ae:?}");
    }

    #[test]
    fn attention_loss_is_zero_for_identical_maps_and_known_for_a_hand_made_pair() {
        let diagonal = maps(vec![1.0, 0.0, 0.0, 1.0], [1, 1, 2, 2]);
        let uniform = maps(vec![0.5; 4], [1, 1, 2, 2]);
        let m = mask(vec![1.0, 1.0], [1, 2]);
        let same = value(attention_loss(&[uniform.clone(), diagonal.clone()], &[uniform.clone(), diagonal.clone()], m.clone()));
        assert_eq!(same, 0.0);
        // Unit maps u = (1, 0, 0, 1)/√2 and v = (1, 1, 1, 1)/2: ‖u − v‖² = 2 − 2u·v = 2 − √2.
        let expected = (2.0 - 2f64.sqrt()).sqrt();
        let one_layer = value(attention_loss(std::slice::from_ref(&diagonal), std::slice::from_ref(&uniform), m.clone()));
        assert!((one_layer - expected).abs() < 1e-6, "{one_layer} vs {expected}");
        let two_layers = value(attention_loss(&[diagonal.clone(), uniform.clone()], &[uniform.clone(), diagonal], m));
        assert!((two_layers - 2.0 * expected).abs() < 1e-6, "summed over layers: {two_layers}");
        // AE squares the maps: a scaled copy of the same pattern gives the same unit map.
        let scaled = maps(vec![0.25; 4], [1, 1, 2, 2]);
        assert!(value(attention_loss(&[scaled], &[uniform], mask(vec![1.0, 1.0], [1, 2]))) < 1e-6);
    }

    #[test]
    fn padding_rows_and_columns_do_not_change_the_attention_loss() {
        // The same two texts of 2 tokens, padded to 3: padding keys have probability 0 (as the
        // encoder gives them), padding queries attend anywhere, differently in teacher and student.
        let t = maps(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 0.3, 0.5], [1, 1, 3, 3]);
        let s = maps(vec![0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.9, 0.1, 0.0], [1, 1, 3, 3]);
        let padded = value(attention_loss(&[t], &[s], mask(vec![1.0, 1.0, 0.0], [1, 3])));
        assert!((padded - (2.0 - 2f64.sqrt()).sqrt()).abs() < 1e-6, "{padded}");
    }

    #[test]
    fn attention_loss_has_a_finite_gradient_at_zero() {
        let d = Default::default();
        let a = Tensor::<A, 4>::from_data(TensorData::new(vec![0.5f32; 4], [1, 1, 2, 2]), &d).require_grad();
        let fixed = Tensor::<A, 4>::from_data(TensorData::new(vec![0.5f32; 4], [1, 1, 2, 2]), &d);
        let loss = attention_loss(&[fixed], std::slice::from_ref(&a), Tensor::ones([1, 2], &d));
        let grads = loss.backward();
        let g: Vec<f32> = a.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    }

    #[test]
    fn hidden_loss_is_the_mse_over_real_tokens_summed_over_states() {
        let d = Default::default();
        let zeros = Tensor::<B, 3>::zeros([1, 2, 4], &d);
        let ones = Tensor::<B, 3>::ones([1, 2, 4], &d);
        let both = mask(vec![1.0, 1.0], [1, 2]);
        assert_eq!(value(hidden_loss(&[ones.clone(), zeros.clone()], &[ones.clone(), zeros.clone()], both.clone())), 0.0);
        assert!((value(hidden_loss(&[zeros.clone(), zeros.clone()], &[ones.clone(), ones.clone()], both)) - 2.0).abs() < 1e-6);
        // Only the second (padding) position differs.
        let second = Tensor::<B, 3>::from_data(TensorData::new(vec![0.0f32, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0], [1, 2, 4]), &d);
        assert_eq!(value(hidden_loss(std::slice::from_ref(&zeros), std::slice::from_ref(&second), mask(vec![1.0, 0.0], [1, 2]))), 0.0);
        assert!((value(hidden_loss(&[zeros], &[second], mask(vec![1.0, 1.0], [1, 2]))) - 4.5).abs() < 1e-6);
    }

    fn tiny<T: Backend>(config: &BertConfig, seed: u64) -> BertClassifier<T> {
        BertClassifier::from_source(config, 2, &mut RandomInit::new(seed, 0.2, &Default::default())).unwrap()
    }

    #[test]
    fn a_model_distilled_from_itself_has_zero_attention_and_hidden_loss() {
        let model = tiny::<A>(&BertConfig::tiny(30), 3);
        let rows = [Encoded { ids: vec![2, 5, 6, 7, 3], label: 1 }, Encoded { ids: vec![2, 8, 3], label: 0 }];
        let batch = Batch::<A>::new(&rows.iter().collect::<Vec<_>>(), 0, &Default::default());
        let l = distillation_losses(&model.valid(), &model, &batch);
        assert!(value(l.attention.inner()).abs() < 1e-6);
        assert!(value(l.hidden.inner()).abs() < 1e-9);
        assert!(value(l.cls.inner()) > 0.0);
        let other = tiny::<A>(&BertConfig::tiny(30), 4);
        let l = distillation_losses(&other.valid(), &model, &batch);
        assert!(value(l.attention.inner()) > 1e-3);
        assert!(value(l.hidden.inner()) > 1e-3);
    }

    #[test]
    fn teacher_and_student_of_different_shapes_are_named() {
        let base = BertConfig::tiny(30);
        let student = tiny::<B>(&base, 1);
        let cases = [
            (BertConfig { num_hidden_layers: 3, ..base.clone() }, "layers"),
            (BertConfig { hidden_size: 16, ..base.clone() }, "hidden size"),
            (BertConfig { num_attention_heads: 2, ..base.clone() }, "attention heads of layer 0"),
            (BertConfig::tiny(31), "vocabulary size"),
            (BertConfig { max_position_embeddings: base.max_position_embeddings / 2, ..base.clone() }, "max_position_embeddings"),
        ];
        for (config, what) in cases {
            let err = check_compatible(&tiny::<B>(&config, 1), &student).unwrap_err();
            assert!(matches!(&err, MbtsadError::Mismatch { what: w, .. } if w == what), "{err}");
        }
        check_compatible(&tiny::<B>(&base, 2), &student).unwrap();
    }

    const WORDS: [&str; 12] = ["good", "great", "fine", "bad", "dull", "poor", "go", "od", "gre", "at", "ba", "d"];

    /// Texts whose label the first word decides; the tokenizer knows some split halves.
    fn clean(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| {
                let label = i % 2;
                let words = if label == 1 { ["good", "great", "fine"] } else { ["bad", "dull", "poor"] };
                Example { text: format!("{} {} film", words[i % 3], words[(i / 2) % 3]), label }
            })
            .collect()
    }

    #[test]
    fn mbtsad_trains_a_teacher_then_lowers_the_distillation_loss() {
        let _guard = crate::train::one_training_at_a_time();
        let tokenizer = word_level_for_tests(&WORDS, 16);
        let model = tiny::<A>(&BertConfig::tiny(30), 7);
        let stage = TrainConfig { epochs: 3, batch_size: 8, lr: 1e-3, ..TrainConfig::default() };
        let config = MbtsadConfig { clean_fraction: 0.5, teacher: stage.clone(), distill: stage, ..MbtsadConfig::with_seed(3) };
        // A clock that ticks once per reading: every stage lasts exactly one second.
        let clock = std::cell::Cell::new(0.0);
        let now = || {
            clock.set(clock.get() + 1.0);
            clock.get()
        };
        let out = mbtsad(model, Teacher::Retrain, &clean(32), &tokenizer, &config, &Default::default(), &mut Silent, &now).unwrap();
        let r = &out.report;
        assert_eq!((r.available_rows, r.clean_rows, r.augmented_rows, r.unsplit_rows), (32, 16, 48, 0));
        assert_eq!(r.teacher_log.as_ref().map(|l| l.epochs.len()), Some(3));
        assert_eq!(r.distill_epochs.len(), 3);
        assert_eq!((r.augment_seconds, r.teacher_seconds, r.distill_seconds), (1.0, 1.0, 1.0));
        let total = |e: &DistillEpoch| e.attention_loss + config.alpha * e.cls_loss + config.beta * e.hidden_loss;
        for (e, logged) in r.distill_epochs.iter().zip(&r.distill_log.epochs) {
            assert!(e.attention_loss > 0.0 && e.cls_loss > 0.0 && e.hidden_loss > 0.0, "{e:?}");
            assert!((total(e) - logged.mean_loss).abs() < 1e-4 * logged.mean_loss, "{e:?} vs {logged:?}");
        }
        let (first, last) = (&r.distill_log.epochs[0], &r.distill_log.epochs[2]);
        assert!(last.mean_loss < first.mean_loss, "{:?}", r.distill_epochs);
        check_compatible(&out.teacher, &out.purified).unwrap();

        // The same teacher given back: step 1 is skipped and the distillation repeats exactly.
        let again = mbtsad(
            tiny::<A>(&BertConfig::tiny(30), 7),
            Teacher::Given(Box::new(out.teacher.clone())),
            &clean(32),
            &tokenizer,
            &config,
            &Default::default(),
            &mut Silent,
            &|| 0.0,
        )
        .unwrap();
        assert!(again.report.teacher_log.is_none());
        assert_eq!(again.report.distill_epochs, out.report.distill_epochs);
        let weights = |m: &BertClassifier<B>| m.bert.embeddings.word.weight.val().into_data().to_vec::<f32>().unwrap();
        assert_eq!(weights(&again.purified), weights(&out.purified));
    }

    #[test]
    fn bad_input_is_refused() {
        let tokenizer = word_level_for_tests(&WORDS, 16);
        let d = Default::default();
        let run = |config: &MbtsadConfig, rows: &[Example]| {
            mbtsad(tiny::<A>(&BertConfig::tiny(30), 1), Teacher::Retrain, rows, &tokenizer, config, &d, &mut Silent, &|| 0.0).err().unwrap()
        };
        for f in [0.0, 1.5, -0.2, f64::NAN] {
            let config = MbtsadConfig { clean_fraction: f, ..MbtsadConfig::default() };
            let err = run(&config, &clean(10));
            assert!(matches!(err, MbtsadError::Config { field: "clean_fraction", .. }), "{err}");
            assert!(err.to_string().contains("(0, 1]"), "{err}");
        }
        assert!(MbtsadConfig { clean_fraction: 1.0, ..MbtsadConfig::default() }.validate().is_ok());
        let negative = MbtsadConfig { beta: -1.0, ..MbtsadConfig::default() };
        assert!(matches!(run(&negative, &clean(10)), MbtsadError::Config { field: "beta", .. }));

        let rows: Vec<Example> = clean(10).into_iter().map(|e| Example { text: "a b .".into(), ..e }).collect();
        let err = run(&MbtsadConfig::default(), &rows);
        assert!(matches!(&err, MbtsadError::Split(SplitError::NothingToSplit { rows: 10, .. })), "{err}");
        assert!(err.to_string().contains("none of the 10 rows"), "{err}");

        assert!(matches!(run(&MbtsadConfig::default(), &[]), MbtsadError::NoCleanData));
        let one_class: Vec<Example> = clean(10).into_iter().map(|e| Example { label: 0, ..e }).collect();
        assert!(matches!(run(&MbtsadConfig::default(), &one_class), MbtsadError::SingleClass { label: 0, rows: 2 }));

        // A given teacher of another shape is refused before any work.
        let deeper = tiny::<B>(&BertConfig { num_hidden_layers: 3, ..BertConfig::tiny(30) }, 1);
        let given = Teacher::Given(Box::new(deeper));
        let err =
            mbtsad(tiny::<A>(&BertConfig::tiny(30), 1), given, &clean(10), &tokenizer, &MbtsadConfig::default(), &d, &mut Silent, &|| 0.0);
        assert!(matches!(err.err().unwrap(), MbtsadError::Mismatch { what, .. } if what == "layers"));
    }

    #[test]
    fn the_clean_fraction_keeps_at_least_one_row() {
        let config = MbtsadConfig::default();
        assert_eq!(config.clean_rows(6920), 1384);
        assert_eq!(config.clean_rows(2), 1);
        assert_eq!(config.clean_rows(0), 0);
        assert_eq!(MbtsadConfig { clean_fraction: 1.0, ..config }.clean_rows(7), 7);
    }
}
