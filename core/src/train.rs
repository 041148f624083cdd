//! The one training loop: AdamW with a linear schedule, global-norm gradient clipping, a
//! choice of trainable parameters, per-epoch evaluation and progress events.
//!
//! Defenses reuse it with their own loss through [`fit`]; plain fine-tuning is [`train`].

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{activation, backend::AutodiffBackend, backend::Backend, ElementConversion, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::batch::{batch_indices, length_grouped_batch_indices, Batch, Encoded};
use crate::model::BertClassifier;
use crate::progress::Progress;
use crate::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training examples")]
    Empty,
    #[error("invalid training setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error("label {label} is out of range for a model with {num_labels} labels")]
    Label { label: usize, num_labels: usize },
    #[error("token id {id} is out of range for a vocabulary of {vocab}")]
    TokenId { id: u32, vocab: usize },
    #[error("the loss became {0} at step {1}: training diverged")]
    Diverged(f64, usize),
}

/// Groups of parameters, to choose what trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamGroup {
    /// The word-embedding matrix only (BTU's detection round 1).
    WordEmbeddings,
    /// Word, position and token-type embeddings and their LayerNorm.
    Embeddings,
    Encoder,
    Pooler,
    Classifier,
}

/// Which parameters receive gradient updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trainable {
    All,
    Only(Vec<ParamGroup>),
    AllExcept(Vec<ParamGroup>),
}

/// Fine-tuning settings. Defaults are the common setting of the four papers (AdamW, lr 2e-5,
/// batch 32) and of `transformers`' Trainer (linear decay, no warm-up, max grad norm 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training rows (3).
    pub epochs: usize,
    /// Rows per optimiser step (32).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Share of the steps spent warming the rate up linearly from 0.
    pub warmup_ratio: f64,
    /// Decoupled weight decay (applied to every trained parameter).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; `None` disables clipping.
    pub max_grad_norm: Option<f64>,
    /// Seeds the batch order and dropout, so a run repeats exactly on the same backend.
    pub seed: u64,
    /// Which parameters train (all of them; BTU's detection rounds train only some).
    pub trainable: Trainable,
    /// Batch rows of similar length together ([`length_grouped_batch_indices`], `transformers`'
    /// `group_by_length`): about half the padded tokens on short-text data sets, so training is
    /// faster, at the price of batches less random than the papers' uniform ones (off).
    pub group_by_length: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 2e-5,
            warmup_ratio: 0.0,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            seed: 42,
            trainable: Trainable::All,
            group_by_length: false,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, value: String, reason| Err(TrainError::Config { field, value, reason });
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "must be positive");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", self.warmup_ratio.to_string(), "must be in [0, 1)");
        }
        if matches!(self.max_grad_norm, Some(n) if n.is_nan() || n <= 0.0) {
            return bad("max_grad_norm", format!("{:?}", self.max_grad_norm), "must be positive");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub mean_loss: f64,
    /// What the evaluation hook returned after this epoch (e.g. validation accuracy).
    pub eval: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainLog {
    pub epochs: Vec<EpochLog>,
    pub steps: usize,
}

struct RequireGrad(bool);

impl<B: Backend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(self.0)
    }
}

/// A model the training loop can train: the full classifier, or a defense's smaller proxy
/// (BTU's embeddings + head). It names its label count and vocabulary so examples are checked
/// before any tensor is built, and which of its parameters form each [`ParamGroup`].
pub trait TrainModel<B: AutodiffBackend>: AutodiffModule<B> {
    fn num_labels(&self) -> usize;
    fn vocab_size(&self) -> usize;
    /// Sets whether one group's parameters train; groups the model does not have are ignored.
    fn set_group(self, group: ParamGroup, on: bool) -> Self;
}

/// Sets every parameter of a module (or sub-module) trainable or frozen.
pub fn require_grad<B: Backend, M: Module<B>>(module: M, on: bool) -> M {
    module.map(&mut RequireGrad(on))
}

impl<B: AutodiffBackend> TrainModel<B> for BertClassifier<B> {
    fn num_labels(&self) -> usize {
        BertClassifier::num_labels(self)
    }

    fn vocab_size(&self) -> usize {
        BertClassifier::vocab_size(self)
    }

    fn set_group(self, group: ParamGroup, on: bool) -> Self {
        let mut m = self;
        match group {
            ParamGroup::WordEmbeddings => m.bert.embeddings.word = require_grad(m.bert.embeddings.word, on),
            ParamGroup::Embeddings => m.bert.embeddings = require_grad(m.bert.embeddings, on),
            ParamGroup::Encoder => m.bert.layers = require_grad(m.bert.layers, on),
            ParamGroup::Pooler => m.bert.pooler = require_grad(m.bert.pooler, on),
            ParamGroup::Classifier => m.classifier = require_grad(m.classifier, on),
        }
        m
    }
}

/// Marks exactly the chosen parameters as trainable; the others get no gradient and so stay
/// bit-for-bit unchanged.
pub fn set_trainable<B: AutodiffBackend, M: TrainModel<B>>(model: M, trainable: &Trainable) -> M {
    match trainable {
        Trainable::All => require_grad(model, true),
        Trainable::Only(groups) => groups.iter().fold(require_grad(model, false), |m, &g| m.set_group(g, true)),
        Trainable::AllExcept(groups) => groups.iter().fold(require_grad(model, true), |m, &g| m.set_group(g, false)),
    }
}

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels` `[batch]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    activation::log_softmax(logits, 1).gather(1, labels.reshape([batch, 1])).mean().neg()
}

/// Sum of squares of every gradient, then scale so the global norm is at most `max_norm`
/// (what `torch.nn.utils.clip_grad_norm_` does; burn's own clipping is per tensor).
struct GlobalNorm<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    sum_sq: f64,
    scale: Option<f64>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GlobalNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match self.scale {
            None => {
                if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                    self.sum_sq += g.powi_scalar(2).sum().into_scalar().elem::<f64>();
                }
            }
            Some(scale) => {
                if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                    self.grads.register(param.id, g * scale);
                }
            }
        }
    }
}

fn clip_global_norm<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &mut GradientsParams, max_norm: f64) {
    let mut v = GlobalNorm::<B> { grads, sum_sq: 0.0, scale: None, _b: Default::default() };
    model.visit(&mut v);
    let norm = v.sum_sq.sqrt();
    if norm > max_norm {
        v.scale = Some(max_norm / (norm + 1e-6));
        model.visit(&mut v);
    }
}

/// AdamW with a linear warm-up/decay schedule and global-norm clipping: one `step` per batch.
pub struct Stepper<B: AutodiffBackend, M: AutodiffModule<B>> {
    optimizer: burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B>,
    config: TrainConfig,
    step: usize,
    total_steps: usize,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Stepper<B, M> {
    pub fn new(config: &TrainConfig, total_steps: usize) -> Self {
        let optimizer = AdamWConfig::new().with_weight_decay(config.weight_decay as f32).with_epsilon(1e-8).init();
        Stepper { optimizer, config: config.clone(), step: 0, total_steps: total_steps.max(1) }
    }

    /// The learning rate of the current step (linear warm-up then linear decay to 0).
    pub fn lr(&self) -> f64 {
        let warmup = (self.config.warmup_ratio * self.total_steps as f64).round() as usize;
        let t = self.step as f64;
        let factor = if self.step < warmup {
            (t + 1.0) / warmup as f64
        } else {
            ((self.total_steps - self.step.min(self.total_steps)) as f64 / (self.total_steps - warmup).max(1) as f64).max(0.0)
        };
        self.config.lr * factor
    }

    /// Back-propagates `loss` and updates the trainable parameters; returns the loss value.
    pub fn step(&mut self, model: M, loss: Tensor<B, 1>) -> Result<(M, f64), TrainError> {
        let value: f64 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(TrainError::Diverged(value, self.step));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = self.config.max_grad_norm {
            clip_global_norm(&model, &mut grads, max_norm);
        }
        let lr = self.lr();
        let model = self.optimizer.step(lr, model, grads);
        self.step += 1;
        Ok((model, value))
    }
}

/// Checks that every example fits the model before any tensor is built (an id past the
/// vocabulary panics on some backends and reads garbage on others).
pub fn check_examples(data: &[Encoded], num_labels: usize, vocab: usize) -> Result<(), TrainError> {
    if data.is_empty() {
        return Err(TrainError::Empty);
    }
    for ex in data {
        if ex.label >= num_labels {
            return Err(TrainError::Label { label: ex.label, num_labels });
        }
        if let Some(&id) = ex.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(TrainError::TokenId { id, vocab });
        }
    }
    Ok(())
}

/// Trains `model` for `config.epochs` epochs over seeded shuffled batches with a custom loss.
///
/// `loss` gets the model, the batch and the batch's row indices into `data`. After each
/// epoch `eval` sees the model (inner backend, no dropout) and may return a score to log.
#[allow(clippy::too_many_arguments)]
pub fn fit<B, M, L, E>(
    model: M,
    data: &[Encoded],
    pad_id: u32,
    config: &TrainConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
    mut loss: L,
    mut eval: E,
) -> Result<(M, TrainLog), TrainError>
where
    B: AutodiffBackend,
    M: TrainModel<B>,
    L: FnMut(&M, &Batch<B>, &[usize]) -> Tensor<B, 1>,
    E: FnMut(usize, &M::InnerModule) -> Option<f64>,
{
    config.validate()?;
    check_examples(data, model.num_labels(), model.vocab_size())?;
    B::seed(device, config.seed);
    let mut rng = Rng::new(config.seed);
    let per_epoch = data.len().div_ceil(config.batch_size);
    // Saturating: an absurd --epochs runs until stopped rather than overflowing the schedule.
    let mut stepper = Stepper::new(config, per_epoch.saturating_mul(config.epochs));
    let mut model = set_trainable(model, &config.trainable);
    let mut log = TrainLog::default();
    let lengths: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
    for epoch in 1..=config.epochs {
        progress.start(&format!("epoch {epoch}/{}", config.epochs), per_epoch);
        let mut total = 0.0;
        let batches = match config.group_by_length {
            true => length_grouped_batch_indices(&lengths, config.batch_size, &mut rng),
            false => batch_indices(data.len(), config.batch_size, Some(&mut rng)),
        };
        for rows in batches {
            let refs: Vec<&Encoded> = rows.iter().map(|&i| &data[i]).collect();
            let batch = Batch::new(&refs, pad_id, device);
            let l = loss(&model, &batch, &rows);
            let (next, value) = stepper.step(model, l)?;
            model = next;
            total += value;
            progress.step(Some(value));
        }
        let mean_loss = total / per_epoch as f64;
        let score = eval(epoch, &model.valid());
        progress.finish(&match score {
            Some(s) => format!("loss {mean_loss:.4}, eval {s:.4}"),
            None => format!("loss {mean_loss:.4}"),
        });
        log.epochs.push(EpochLog { epoch, mean_loss, eval: score });
    }
    log.steps = stepper.step;
    Ok((set_trainable(model, &Trainable::All), log))
}

/// Plain fine-tuning with cross-entropy.
pub fn train<B, E>(
    model: BertClassifier<B>,
    data: &[Encoded],
    pad_id: u32,
    config: &TrainConfig,
    device: &B::Device,
    progress: &mut dyn Progress,
    eval: E,
) -> Result<(BertClassifier<B>, TrainLog), TrainError>
where
    B: AutodiffBackend,
    E: FnMut(usize, &BertClassifier<B::InnerBackend>) -> Option<f64>,
{
    fit(
        model,
        data,
        pad_id,
        config,
        device,
        progress,
        |m, batch, _| cross_entropy(m.logits(batch.input_ids.clone(), batch.attention_mask.clone()), batch.labels.clone()),
        eval,
    )
}

/// Dropout draws from burn's process-wide backend RNG, which `fit` reseeds: trainings in
/// parallel test threads would interleave draws, so the crate's unit tests that train hold this.
#[cfg(test)]
pub(crate) fn one_training_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RandomInit;
    use crate::model::BertConfig;
    use crate::progress::Silent;
    use burn::backend::{Autodiff, NdArray};

    type B = Autodiff<NdArray>;

    fn tiny() -> BertClassifier<B> {
        let mut config = BertConfig::tiny(50);
        config.hidden_dropout_prob = 0.1;
        BertClassifier::from_source(&config, 2, &mut RandomInit::new(5, 0.2, &Default::default())).unwrap()
    }

    /// The library's own checks (the CLI refuses most of these earlier, when it reads its options).
    #[test]
    fn a_config_out_of_range_names_its_field() {
        let cases = [
            (TrainConfig { epochs: 0, ..TrainConfig::default() }, "epochs"),
            (TrainConfig { batch_size: 0, ..TrainConfig::default() }, "batch_size"),
            (TrainConfig { lr: f64::NAN, ..TrainConfig::default() }, "lr"),
            (TrainConfig { warmup_ratio: 1.0, ..TrainConfig::default() }, "warmup_ratio"),
            (TrainConfig { max_grad_norm: Some(0.0), ..TrainConfig::default() }, "max_grad_norm"),
        ];
        for (config, name) in cases {
            assert!(matches!(config.validate(), Err(TrainError::Config { field, .. }) if field == name), "{name}");
        }
        TrainConfig::default().validate().unwrap();
    }

    fn rows() -> Vec<Encoded> {
        (0..12).map(|i| Encoded { ids: vec![1, 3 + i as u32, 10 + (i % 4) as u32, 2], label: i % 2 }).collect()
    }

    fn values<const D: usize>(t: Tensor<NdArray, D>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    fn run(trainable: Trainable) -> BertClassifier<NdArray> {
        let _guard = one_training_at_a_time();
        let config = TrainConfig { epochs: 2, batch_size: 4, lr: 1e-2, trainable, ..TrainConfig::default() };
        let (model, log) = train(tiny(), &rows(), 0, &config, &Default::default(), &mut Silent, |_, _| None).unwrap();
        assert_eq!(log.steps, 6);
        model.valid()
    }

    #[test]
    fn same_seed_gives_bit_identical_weights() {
        let (a, b) = (run(Trainable::All), run(Trainable::All));
        assert_eq!(values(a.bert.layers[1].query.weight.val()), values(b.bert.layers[1].query.weight.val()));
        assert_eq!(values(a.classifier.weight.val()), values(b.classifier.weight.val()));
        assert_ne!(values(a.classifier.weight.val()), values(tiny().valid().classifier.weight.val()));
    }

    #[test]
    fn only_chosen_parameters_move() {
        let before = tiny().valid();
        let after = run(Trainable::Only(vec![ParamGroup::WordEmbeddings]));
        assert_ne!(values(before.bert.embeddings.word.weight.val()), values(after.bert.embeddings.word.weight.val()));
        assert_eq!(values(before.bert.embeddings.position.weight.val()), values(after.bert.embeddings.position.weight.val()));
        assert_eq!(values(before.bert.layers[0].value.weight.val()), values(after.bert.layers[0].value.weight.val()));
        assert_eq!(values(before.classifier.weight.val()), values(after.classifier.weight.val()));
    }

    #[test]
    fn schedule_decays_linearly_to_zero() {
        let config = TrainConfig { lr: 1.0, warmup_ratio: 0.0, ..TrainConfig::default() };
        let mut s = Stepper::<B, BertClassifier<B>>::new(&config, 4);
        let lrs: Vec<f64> = (0..4)
            .map(|i| {
                s.step = i;
                s.lr()
            })
            .collect();
        assert_eq!(lrs, vec![1.0, 0.75, 0.5, 0.25]);
    }
}
