//! A whole checkpoint directory's three files, as bytes, in and out.

use burn::tensor::backend::Backend;
use serde::Serialize;

use super::{export_safetensors, CheckpointError, RandomInit, SafetensorsSource, TextTokenizer};
use crate::data::MAX_CLASSES;
use crate::model::{BertClassifier, BertConfig};

/// The files of a Hugging Face checkpoint directory bdaudit reads and writes.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub model: Vec<u8>,
    pub config: Vec<u8>,
    pub tokenizer: Vec<u8>,
}

impl CheckpointFiles {
    /// The weights' file name in a checkpoint directory; the one the others are found beside.
    pub const MODEL: &'static str = "model.safetensors";
    pub const CONFIG: &'static str = "config.json";
    pub const TOKENIZER: &'static str = "tokenizer.json";

    /// Reads the three files by their names in a checkpoint directory; the core has no
    /// filesystem, so the caller brings `read` and its error type.
    pub fn read_with<E>(mut read: impl FnMut(&'static str) -> Result<Vec<u8>, E>) -> Result<Self, E> {
        Ok(Self { model: read(Self::MODEL)?, config: read(Self::CONFIG)?, tokenizer: read(Self::TOKENIZER)? })
    }

    /// The number of classes of the stored classifier head; `None` for a bare encoder. Reads
    /// only the weights' header, so a command can size its labels before loading.
    pub fn head_classes(&self) -> Result<Option<usize>, CheckpointError> {
        self.refuse_lfs_pointers()?;
        super::safetensors::head_rows(&super::safetensors::parse(&self.model)?)
    }

    /// Cloning a Hugging Face repository without git-lfs leaves small text pointers where the
    /// weights (and sometimes tokenizer.json) should be; each format's parser would call one
    /// "malformed" without saying what to do.
    fn refuse_lfs_pointers(&self) -> Result<(), CheckpointError> {
        for (file, bytes) in self.named() {
            let Some(text) = bytes.strip_prefix(b"version https://git-lfs.github.com/spec/") else { continue };
            let size = String::from_utf8_lossy(text).lines().find_map(|l| l.strip_prefix("size ")?.trim().parse().ok());
            return Err(CheckpointError::LfsPointer { file, size });
        }
        Ok(())
    }

    /// The three files with the names `transformers` looks for, for writing.
    pub fn named(&self) -> [(&'static str, &[u8]); 3] {
        [(Self::MODEL, &self.model), (Self::CONFIG, &self.config), (Self::TOKENIZER, &self.tokenizer)]
    }
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
    let num_labels = num_labels.map(check_classes).transpose()?;
    files.refuse_lfs_pointers()?;
    let config = BertConfig::from_json_bytes(&files.config)?;
    let tokenizer = TextTokenizer::from_bytes(&files.tokenizer, max_len.min(config.max_position_embeddings))?;
    tokenizer.check_vocab(config.vocab_size)?;
    let mut source = SafetensorsSource::new(&files.model, device)?.with_fallback(RandomInit::new(seed, config.initializer_range, device));
    let head = source.classifier_labels()?;
    let labels_count = match (head.map(check_classes).transpose()?, num_labels) {
        (Some(found), Some(expected)) if found != expected => return Err(CheckpointError::Labels { expected, found }),
        (Some(found), _) => found,
        (None, Some(expected)) => expected,
        (None, None) => return Err(CheckpointError::NoHead),
    };
    let has_head = head.is_some();
    // `transformers` sizes the head from config.json and refuses weights of another size: a
    // config naming other classes than the head has belongs to another model.
    // (`num_labels` alone, without `id2label`, sizes it the same way.)
    let named = config.label_names().map(|n| n.len()).or_else(|| config.extra.get("num_labels")?.as_u64().map(|n| n as usize));
    if let (Some(rows), Some(names)) = (head, named) {
        if names != rows {
            return Err(CheckpointError::LabelNames { names, rows });
        }
    }
    let model = BertClassifier::from_source(&config, labels_count, &mut source)?;
    // Only a bare encoder gets new weights (its head, and a pooler if it has none, as
    // `transformers` does): a trained classifier without its pooler would predict at random.
    if let Some(name) = source.initialised().first().filter(|_| has_head) {
        return Err(CheckpointError::MissingTensor { name: format!("{}{name}", source.prefix()) });
    }
    // A tensor of the model's own modules left unread means config.json describes a smaller
    // model than the file holds (fewer layers, say): running it would silently drop weights.
    // Other extras (a pre-training head such as `cls.*`) are reported, not refused.
    let unused = source.unused();
    if let Some(name) = unused.iter().find(|n| {
        let bare = n.strip_prefix(source.prefix()).unwrap_or(n);
        ["embeddings.", "encoder.", "pooler.", "classifier."].iter().any(|m| bare.starts_with(m))
    }) {
        return Err(CheckpointError::Unexpected { name: name.clone() });
    }
    let labels = config
        .label_names()
        .filter(|names| names.len() == labels_count)
        .unwrap_or_else(|| (0..labels_count).map(|i| i.to_string()).collect());
    let report = LoadReport {
        prefix: source.prefix().to_string(),
        initialised: source.initialised().to_vec(),
        unused,
        num_params: burn::module::Module::num_params(&model),
    };
    Ok(Loaded { model, config, tokenizer, labels, report })
}

/// Downstream code takes an argmax over the classes and names it: fewer than 2 cannot work.
fn check_classes(count: usize) -> Result<usize, CheckpointError> {
    match count {
        0 | 1 => Err(CheckpointError::TooFewClasses(count)),
        n if n > MAX_CLASSES => Err(CheckpointError::TooManyClasses(n)),
        n => Ok(n),
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::backend::NdArray;
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};

    use super::*;
    use crate::checkpoint::word_level_for_tests;
    use crate::model::ConfigError;

    type B = NdArray;

    /// A saved tiny `BertForSequenceClassification` (hidden 32) with `classes` classes.
    fn tiny_files(classes: usize) -> CheckpointFiles {
        let config = BertConfig::tiny(30);
        let model = BertClassifier::<B>::from_source(&config, classes, &mut RandomInit::new(1, 0.2, &Default::default())).unwrap();
        let labels: Vec<String> = (0..classes).map(|i| format!("c{i}")).collect();
        save_classifier(&model, &config, &word_level_for_tests(&["good", "bad"], 16), &labels).unwrap()
    }

    /// `files` with its F32 tensors edited: `(shape, little-endian bytes)` by name.
    fn edit_tensors(files: &CheckpointFiles, edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<u8>)>)) -> CheckpointFiles {
        let read = SafeTensors::deserialize(&files.model).unwrap();
        let mut tensors: BTreeMap<_, _> = read.tensors().into_iter().map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec()))).collect();
        edit(&mut tensors);
        let views = tensors.iter().map(|(n, (shape, bytes))| (n.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()));
        CheckpointFiles { model: safetensors::serialize(views, None).unwrap(), ..files.clone() }
    }

    fn load_err(files: &CheckpointFiles, num_labels: Option<usize>) -> CheckpointError {
        match load_classifier::<B>(files, num_labels, 16, 0, &Default::default()) {
            Ok(_) => panic!("loading succeeded but should have failed"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_new_head_needs_two_to_max_classes() {
        let headless = edit_tensors(&tiny_files(2), |t| {
            t.retain(|name, _| !name.starts_with("classifier."));
        });
        for classes in [0, 1] {
            let err = load_err(&headless, Some(classes));
            assert!(matches!(err, CheckpointError::TooFewClasses(n) if n == classes), "{err:?}");
            assert_eq!(err.to_string(), format!("a classifier needs at least 2 classes, got {classes}"));
        }
        // A negative number from JavaScript, wrapped to u32.
        let err = load_err(&headless, Some(u32::MAX as usize));
        assert!(matches!(err, CheckpointError::TooManyClasses(4_294_967_295)), "{err:?}");
        assert_eq!(err.to_string(), "a classifier may have at most 1000 classes, got 4294967295");
        let loaded = load_classifier::<B>(&headless, Some(2), 16, 0, &Default::default()).unwrap();
        assert_eq!(loaded.report.initialised, ["classifier.weight", "classifier.bias"]);
    }

    #[test]
    fn a_stored_head_needs_two_classes() {
        let empty = edit_tensors(&tiny_files(2), |t| {
            t.insert("classifier.weight".into(), (vec![0, 32], vec![]));
            t.insert("classifier.bias".into(), (vec![0], vec![]));
        });
        for asked in [None, Some(2)] {
            let err = load_err(&empty, asked);
            assert!(matches!(err, CheckpointError::TooFewClasses(0)), "{asked:?}: {err:?}");
            assert_eq!(err.to_string(), "a classifier needs at least 2 classes, got 0");
        }
        let err = load_err(&tiny_files(1), None);
        assert!(matches!(err, CheckpointError::TooFewClasses(1)), "{err:?}");
    }

    #[test]
    fn a_classifier_without_its_pooler_is_refused_but_a_bare_encoder_gets_one() {
        let no_pooler = edit_tensors(&tiny_files(2), |t| t.retain(|name, _| !name.contains("pooler.")));
        let err = load_err(&no_pooler, None);
        assert!(matches!(&err, CheckpointError::MissingTensor { name } if name == "bert.pooler.dense.weight"), "{err:?}");
        let bare = edit_tensors(&no_pooler, |t| t.retain(|name, _| !name.starts_with("classifier.")));
        let loaded = load_classifier::<B>(&bare, Some(2), 16, 0, &Default::default()).unwrap();
        assert_eq!(loaded.report.initialised, ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"]);
    }

    #[test]
    fn weights_of_layers_config_json_does_not_have_are_refused() {
        let files = tiny_files(2);
        let mut fewer = files.clone();
        let mut config: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
        let layers = config["num_hidden_layers"].as_u64().unwrap();
        config["num_hidden_layers"] = (layers - 1).into();
        fewer.config = serde_json::to_vec(&config).unwrap();
        let err = load_err(&fewer, None);
        assert!(
            matches!(&err, CheckpointError::Unexpected { name } if name.starts_with(&format!("bert.encoder.layer.{}.", layers - 1))),
            "{err:?}"
        );
        assert!(err.to_string().contains("does config.json belong to these weights?"), "{err}");
        // Tensors outside the model (a pre-training head) are reported, not refused.
        let extra = edit_tensors(&files, |t| {
            t.insert("cls.predictions.bias".into(), (vec![1], 0f32.to_le_bytes().to_vec()));
        });
        let loaded = load_classifier::<B>(&extra, None, 16, 0, &Default::default()).unwrap();
        assert_eq!(loaded.report.unused, ["cls.predictions.bias"]);
    }

    #[test]
    fn empty_id2label_falls_back_to_numbered_labels() {
        let mut files = tiny_files(2);
        let mut config: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
        config["id2label"] = serde_json::json!({});
        files.config = serde_json::to_vec(&config).unwrap();
        let loaded = load_classifier::<B>(&files, None, 16, 0, &Default::default()).unwrap();
        assert_eq!(loaded.labels, ["0", "1"]);
    }

    #[test]
    fn a_config_naming_other_classes_than_the_head_is_refused() {
        let mut files = tiny_files(2);
        let mut config: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
        config["id2label"] = serde_json::json!({"0": "a", "1": "b", "2": "c"});
        files.config = serde_json::to_vec(&config).unwrap();
        let err = load_err(&files, None);
        assert!(matches!(err, CheckpointError::LabelNames { names: 3, rows: 2 }), "{err:?}");
        // A bare encoder's id2label says nothing of the head it will get.
        let bare = edit_tensors(&files, |t| {
            t.remove("classifier.weight");
            t.remove("classifier.bias");
        });
        assert_eq!(load_classifier::<B>(&bare, Some(2), 16, 0, &Default::default()).unwrap().labels, ["0", "1"]);
        // `num_labels` without `id2label` counts the same.
        config.as_object_mut().unwrap().remove("id2label");
        config["num_labels"] = 5.into();
        files.config = serde_json::to_vec(&config).unwrap();
        assert!(matches!(load_err(&files, None), CheckpointError::LabelNames { names: 5, rows: 2 }));
        config["num_labels"] = 2.into();
        files.config = serde_json::to_vec(&config).unwrap();
        assert_eq!(load_classifier::<B>(&files, None, 16, 0, &Default::default()).unwrap().labels, ["0", "1"]);
    }

    #[test]
    fn a_head_of_another_rank_is_malformed_not_absent() {
        let files = tiny_files(2);
        assert_eq!(files.head_classes().unwrap(), Some(2));
        let scalar = edit_tensors(&files, |t| {
            t.insert("classifier.weight".into(), (vec![], 0f32.to_le_bytes().to_vec()));
        });
        for err in [scalar.head_classes().unwrap_err(), load_err(&scalar, Some(2))] {
            assert!(err.to_string().contains("classifier.weight has shape [], expected [num_labels, hidden_size]"), "{err}");
        }
    }

    #[test]
    fn git_lfs_pointers_are_named_with_what_to_do() {
        let pointer = |size: &str| format!("version https://git-lfs.github.com/spec/v1\noid sha256:4f1c\nsize {size}\n").into_bytes();
        let weights = CheckpointFiles { model: pointer("90868376"), ..tiny_files(2) };
        for err in [load_err(&weights, None), weights.head_classes().unwrap_err()] {
            assert!(matches!(err, CheckpointError::LfsPointer { file: "model.safetensors", size: Some(90_868_376) }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "model.safetensors is a Git LFS pointer to 90868376 bytes, not the file itself: run `git lfs pull` in the model's \
                 repository, or download model.safetensors directly"
            );
        }
        let tokenizer = CheckpointFiles { tokenizer: pointer("not a number"), ..tiny_files(2) };
        assert!(matches!(load_err(&tokenizer, None), CheckpointError::LfsPointer { file: "tokenizer.json", size: None }));
        let config = CheckpointFiles { config: pointer("612"), ..tiny_files(2) };
        assert!(matches!(load_err(&config, None), CheckpointError::LfsPointer { file: "config.json", size: Some(612) }));
    }

    #[test]
    fn huge_config_sizes_are_refused_before_the_weights_are_read() {
        let mut files = tiny_files(2);
        let mut config: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
        config["hidden_size"] = (1u64 << 31).into();
        config["num_attention_heads"] = (1u64 << 31).into();
        files.config = serde_json::to_vec(&config).unwrap();
        let err = load_err(&files, None);
        assert!(
            matches!(err, CheckpointError::Config(ConfigError::TooLarge { field: "hidden_size", value: 2_147_483_648, max: 8192 })),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "config.json: hidden_size = 2147483648 is larger than bdaudit's limit of 8192");
    }
}
