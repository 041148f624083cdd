//! A whole checkpoint directory's three files, as bytes, in and out.

use burn::tensor::backend::Backend;
use serde::Serialize;

use super::{export_safetensors, CheckpointError, RandomInit, SafetensorsSource, TextTokenizer};
use crate::model::{BertClassifier, BertConfig};

/// The files of a Hugging Face checkpoint directory bdaudit reads and writes.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub model: Vec<u8>,
    pub config: Vec<u8>,
    pub tokenizer: Vec<u8>,
}

/// What loading did besides reading tensors: a user should see initialised heads and
/// ignored tensors rather than have them pass silently.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `"bert."` for a `BertForSequenceClassification` file, `""` for a bare `BertModel`.
    pub prefix: String,
    /// Parameters absent from the file and freshly initialised (a new classifier head).
    pub initialised: Vec<String>,
    /// Tensors in the file the model does not use (e.g. a pre-training head).
    pub unused: Vec<String>,
    pub num_params: usize,
}

pub struct Loaded<B: Backend> {
    pub model: BertClassifier<B>,
    pub config: BertConfig,
    pub tokenizer: TextTokenizer,
    /// Class names, from `id2label` when it matches the head, else "0", "1", ….
    pub labels: Vec<String>,
    pub report: LoadReport,
}

/// Loads a classifier. A checkpoint without a classifier head (a pre-trained encoder) gets a
/// seeded new head of `num_labels` classes; one with a head must have that many classes.
pub fn load_classifier<B: Backend>(
    files: &CheckpointFiles,
    num_labels: Option<usize>,
    max_len: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Loaded<B>, CheckpointError> {
    let config = BertConfig::from_json_bytes(&files.config)?;
    let tokenizer = TextTokenizer::from_bytes(&files.tokenizer, max_len.min(config.max_position_embeddings))?;
    tokenizer.check_vocab(config.vocab_size)?;
    let mut source = SafetensorsSource::new(&files.model, device)?.with_fallback(RandomInit::new(seed, config.initializer_range, device));
    let labels_count = match (source.classifier_labels(), num_labels) {
        (Some(found), Some(expected)) if found != expected => return Err(CheckpointError::Labels { expected, found }),
        (Some(found), _) => found,
        (None, Some(expected)) => expected,
        (None, None) => {
            return Err(CheckpointError::MissingTensor {
                name: "classifier.weight (a pre-trained encoder needs a label count to get a new head)".into(),
            })
        }
    };
    let model = BertClassifier::from_source(&config, labels_count, &mut source)?;
    let labels = config
        .label_names()
        .filter(|names| names.len() == labels_count)
        .unwrap_or_else(|| (0..labels_count).map(|i| i.to_string()).collect());
    let report = LoadReport {
        prefix: source.prefix().to_string(),
        initialised: source.initialised().to_vec(),
        unused: source.unused(),
        num_params: burn::module::Module::num_params(&model),
    };
    Ok(Loaded { model, config, tokenizer, labels, report })
}

/// The three files of a `BertForSequenceClassification` checkpoint that `transformers` loads.
pub fn save_classifier<B: Backend>(
    model: &BertClassifier<B>,
    config: &BertConfig,
    tokenizer: &TextTokenizer,
    labels: &[String],
) -> Result<CheckpointFiles, CheckpointError> {
    if labels.len() != model.num_labels() {
        return Err(CheckpointError::Labels { expected: model.num_labels(), found: labels.len() });
    }
    let config_json = config.to_classifier_json(labels);
    Ok(CheckpointFiles {
        model: export_safetensors(model)?,
        config: serde_json::to_vec_pretty(&config_json).map_err(|e| CheckpointError::Serialize(e.to_string()))?,
        tokenizer: tokenizer.json_bytes().to_vec(),
    })
}
