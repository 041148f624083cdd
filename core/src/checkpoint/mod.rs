//! Bytes ⇄ model: Hugging Face safetensors names and layout, `config.json`, `tokenizer.json`.
//!
//! Everything here works on byte slices so the browser and the CLI share it; only the native
//! crate touches files.

mod bundle;
mod charsmap;
mod init;
mod safetensors;
mod tokenizer;

pub use bundle::{load_classifier, save_classifier, CheckpointFiles, LoadReport, Loaded};
pub use init::RandomInit;
pub use safetensors::{export_safetensors, SafetensorsSource};
#[cfg(test)]
pub(crate) use tokenizer::word_level_for_tests;
pub use tokenizer::{catching_panic, TextTokenizer, TokenizerError};

use burn::tensor::{backend::Backend, Tensor};

use crate::data::MAX_CLASSES;
use crate::model::ConfigError;

/// Why a checkpoint could not be read or written. Each variant names the offending tensor or file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("model.safetensors is malformed: {0}")]
    Malformed(String),
    #[error(
        "{file} is a Git LFS pointer{}, not the file itself: run `git lfs pull` in the model's repository, or download {file} directly",
        size.map(|n| format!(" to {n} bytes")).unwrap_or_default()
    )]
    LfsPointer { file: &'static str, size: Option<u64> },
    #[error(
        "model.safetensors has no tensor {name:?} (looked for BertModel names and the `bert.` prefix of BertForSequenceClassification)"
    )]
    MissingTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor {name:?} has dtype {found}, expected F32")]
    Dtype { name: String, found: String },
    #[error("tensor {name:?} contains {count} non-finite values (NaN or Inf)")]
    NonFinite { name: String, count: usize },
    #[error("tensor {name:?} is not part of the model config.json describes (does config.json belong to these weights?)")]
    Unexpected { name: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the checkpoint has no classifier head (classifier.weight): it is a pre-trained encoder, which must be fine-tuned on a task before it can be used here")]
    NoHead,
    #[error("the checkpoint has {found} labels, but {expected} were asked for")]
    Labels { expected: usize, found: usize },
    #[error(
        "config.json gives {names} classes (id2label, or num_labels), but classifier.weight has {rows} rows (does config.json belong to these weights?)"
    )]
    LabelNames { names: usize, rows: usize },
    #[error("a classifier needs at least 2 classes, got {0}")]
    TooFewClasses(usize),
    #[error("a classifier may have at most {max} classes, got {0}", max = MAX_CLASSES)]
    TooManyClasses(usize),
    #[error("the model has NaN or Inf in {name:?}; refusing to write it")]
    NonFiniteExport { name: String },
    #[error("could not serialise model.safetensors: {0}")]
    Serialize(String),
}

/// How a parameter is stored, so that sources can transpose and initialise it correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Embedding,
    /// Stored `[out, in]` by PyTorch, `[in, out]` in burn.
    LinearWeight,
    Bias,
    /// LayerNorm weight (gamma).
    Scale,
}

/// Where a model's parameters come from: a checkpoint, or a seeded initialiser.
///
/// Names are Hugging Face `BertForSequenceClassification` names without the `bert.` prefix;
/// shapes are burn's (Linear `[in, out]`).
pub trait ParamSource<B: Backend> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D], kind: ParamKind) -> Result<Tensor<B, D>, CheckpointError>;

    fn device(&self) -> B::Device;
}
