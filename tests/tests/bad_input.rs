//! Bad input gets a typed error that names the problem, never a panic: corrupted checkpoints,
//! configs, tokenizers, data files and training settings, through the public `bdaudit_core` API.
//!
//! Valid inputs are built from the tiny `transformers` fixture (vocab 99, hidden 32, 3 labels)
//! with a hand-written WordLevel tokenizer, then broken one way at a time; each test first
//! checks that the unbroken input loads, so an error can only come from the corruption.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Once, OnceLock};

use bdaudit_core::checkpoint::{load_classifier, CheckpointError, CheckpointFiles, Loaded, TextTokenizer, TokenizerError};
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::data::{check_labels, parse, require_two_classes, DataError, Example, Format};
use bdaudit_core::model::ConfigError;
use bdaudit_core::progress::Progress;
use bdaudit_core::train::{check_examples, train, TrainConfig, TrainError};
use bdaudit_tests::*;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::Dtype;
use serde_json::{json, Value};

const MAX_LEN: usize = 32;

// ---------------------------------------------------------------------------------------------
// Building valid inputs

/// One tensor of a checkpoint being built: name, dtype, shape and raw little-endian bytes.
#[derive(Clone)]
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Shape and f32 values of each tensor, by name.
type Values = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The tiny fixture's tensors as f32 values, by name.
fn tiny_values() -> &'static Values {
    static VALUES: OnceLock<Values> = OnceLock::new();
    VALUES.get_or_init(|| {
        let fx = fixture("tiny-bert.json");
        fx["tensors"]
            .as_object()
            .expect("tensors")
            .iter()
            .map(|(name, t)| {
                let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (name.clone(), (shape, flat(&t["data"])))
            })
            .collect()
    })
}

fn tiny_fixture() -> &'static Value {
    static FX: OnceLock<Value> = OnceLock::new();
    FX.get_or_init(|| fixture("tiny-bert.json"))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The tiny fixture's tensors, F32.
fn tiny_raw() -> BTreeMap<String, Raw> {
    tiny_values().iter().map(|(n, (s, v))| (n.clone(), Raw { dtype: Dtype::F32, shape: s.clone(), bytes: f32_bytes(v) })).collect()
}

fn serialize(tensors: &BTreeMap<String, Raw>) -> Vec<u8> {
    let views = tensors.iter().map(|(n, t)| {
        (n.clone(), safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("consistent test tensor"))
    });
    safetensors::serialize(views, None).expect("serialise")
}

/// The tiny fixture's config.json (vocab 99, hidden 32, 4 heads, id2label of 3 classes).
fn tiny_config() -> Value {
    tiny_fixture()["config"].clone()
}

/// Words of the hand-written tokenizer; ids follow the five BERT special tokens.
const WORDS: &[&str] = &["the", "a", "movie", "film", "was", "is", "good", "great", "fun", "bad", "awful", "boring", "not", "very", "plot"];

const SPECIALS: &[&str] = &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

fn tiny_tokenizer() -> Vec<u8> {
    word_level_tokenizer(SPECIALS, WORDS, None)
}

fn tiny_files() -> CheckpointFiles {
    CheckpointFiles { model: serialize(&tiny_raw()), config: serde_json::to_vec(&tiny_config()).unwrap(), tokenizer: tiny_tokenizer() }
}

fn with_model(bytes: Vec<u8>) -> CheckpointFiles {
    CheckpointFiles { model: bytes, ..tiny_files() }
}

fn with_config(config: &Value) -> CheckpointFiles {
    CheckpointFiles { config: serde_json::to_vec(config).unwrap(), ..tiny_files() }
}

fn with_tokenizer(bytes: Vec<u8>) -> CheckpointFiles {
    CheckpointFiles { tokenizer: bytes, ..tiny_files() }
}

fn load(files: &CheckpointFiles, labels: Option<usize>) -> Result<Loaded<Backend>, CheckpointError> {
    load_classifier::<Backend>(files, labels, MAX_LEN, 0, &Default::default())
}

/// The error loading must give; panics (failing the test) when loading succeeds.
fn load_err(files: &CheckpointFiles, labels: Option<usize>) -> CheckpointError {
    match load(files, labels) {
        Ok(_) => panic!("loading succeeded but should have failed"),
        Err(e) => e,
    }
}

/// Asserts that `message` mentions every one of `needles`.
fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(message.contains(needle), "message {message:?} does not mention {needle:?}");
    }
}

#[test]
fn the_unbroken_tiny_checkpoint_loads() {
    let loaded = load(&tiny_files(), Some(3)).expect("the valid tiny checkpoint loads");
    assert_eq!(loaded.model.num_labels(), 3);
    assert_eq!(loaded.model.vocab_size(), 99);
    assert!(loaded.report.initialised.is_empty());
    assert!(loaded.report.unused.is_empty(), "{:?}", loaded.report.unused);
    assert_eq!(loaded.labels, vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
    assert_eq!(loaded.tokenizer.encode("the movie was great").unwrap(), vec![2, 5, 7, 9, 12, 3]);
}

// ---------------------------------------------------------------------------------------------
// model.safetensors framing

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

fn malformed(files: &CheckpointFiles) -> String {
    match load_err(files, Some(3)) {
        CheckpointError::Malformed(m) => m,
        other => panic!("expected CheckpointError::Malformed, got {other:?}"),
    }
}

#[test]
fn truncated_safetensors_is_malformed() {
    let valid = tiny_files().model;
    let n = header_len(&valid);
    // Cut inside the tensor data: the header promises more bytes than the file has.
    let cut = with_model(valid[..valid.len() - 100].to_vec());
    let message = malformed(&cut);
    assert_mentions(&message.to_lowercase(), &["incomplete", "truncated"]);
    assert!(load_err(&cut, Some(3)).to_string().starts_with("model.safetensors is malformed"));
    // Cut inside the JSON header.
    let message = malformed(&with_model(valid[..8 + n / 2].to_vec()));
    assert_mentions(&message.to_lowercase().replace(['_', ' '], ""), &["headerlength"]);
    // Shorter than the 8-byte length prefix, and empty.
    for len in [5, 0] {
        let message = malformed(&with_model(valid[..len].to_vec()));
        assert_mentions(&message.to_lowercase().replace(['_', ' '], ""), &["headertoosmall"]);
    }
}

#[test]
fn header_length_larger_than_the_file_is_malformed() {
    let mut bytes = tiny_files().model;
    let claimed = bytes.len() as u64; // 8 + claimed > file length
    bytes[..8].copy_from_slice(&claimed.to_le_bytes());
    let message = malformed(&with_model(bytes));
    assert_mentions(&message.to_lowercase().replace(['_', ' '], ""), &["invalidheaderlength", "truncated"]);
}

#[test]
fn oversized_header_is_malformed() {
    for claimed in [200u64 << 20, u64::MAX] {
        let mut bytes = tiny_files().model;
        bytes[..8].copy_from_slice(&claimed.to_le_bytes());
        let message = malformed(&with_model(bytes));
        assert_mentions(&message.to_lowercase().replace(['_', ' '], ""), &["headertoolarge"]);
    }
}

#[test]
fn header_that_is_not_json_is_malformed() {
    let valid = tiny_files().model;
    let n = header_len(&valid);
    let mut bytes = valid.clone();
    bytes[8..8 + n].fill(b'x');
    let message = malformed(&with_model(bytes));
    assert_mentions(&message.to_lowercase().replace(['_', ' '], ""), &["json"]);
    // Not even UTF-8.
    let mut bytes = valid;
    bytes[8..8 + n].fill(0xff);
    let message = malformed(&with_model(bytes));
    assert_mentions(&message.to_lowercase().replace(['_', ' ', '-'], ""), &["utf8"]);
}

// ---------------------------------------------------------------------------------------------
// Tensors

const QUERY: &str = "bert.encoder.layer.1.attention.self.query.weight";

#[test]
fn wrong_dtype_is_rejected_with_its_name() {
    for (dtype, size, found) in [(Dtype::I64, 8, "I64"), (Dtype::F64, 8, "F64"), (Dtype::I32, 4, "I32")] {
        let mut tensors = tiny_raw();
        let t = tensors.get_mut(QUERY).unwrap();
        let n: usize = t.shape.iter().product();
        t.dtype = dtype;
        t.bytes = vec![0; n * size];
        match load_err(&with_model(serialize(&tensors)), Some(3)) {
            CheckpointError::Dtype { name, found: f } => {
                assert_eq!(name, QUERY);
                assert_eq!(f, found);
            }
            other => panic!("{found}: expected CheckpointError::Dtype, got {other:?}"),
        }
        let message = load_err(&with_model(serialize(&tensors)), Some(3)).to_string();
        assert_mentions(&message, &[QUERY, found, "F32"]);
    }
}

#[test]
fn wrong_shape_is_rejected_with_its_name() {
    let name = "bert.encoder.layer.0.intermediate.dense.weight"; // [37, 32]
    let mut tensors = tiny_raw();
    tensors.get_mut(name).unwrap().shape = vec![32, 37]; // same bytes, transposed shape
    match load_err(&with_model(serialize(&tensors)), Some(3)) {
        CheckpointError::Shape { name: n, expected, found } => {
            assert_eq!(n, name);
            assert_eq!(expected, vec![37, 32]);
            assert_eq!(found, vec![32, 37]);
        }
        other => panic!("expected CheckpointError::Shape, got {other:?}"),
    }
    assert_mentions(&load_err(&with_model(serialize(&tensors)), Some(3)).to_string(), &[name, "[37, 32]", "[32, 37]"]);

    // A config that disagrees with the weights (vocab 98 against a [99, 32] embedding).
    let mut config = tiny_config();
    config["vocab_size"] = json!(98);
    match load_err(&with_config(&config), Some(3)) {
        CheckpointError::Shape { name, expected, found } => {
            assert_eq!(name, "bert.embeddings.word_embeddings.weight");
            assert_eq!((expected, found), (vec![98, 32], vec![99, 32]));
        }
        other => panic!("expected CheckpointError::Shape, got {other:?}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let name = "bert.encoder.layer.1.output.dense.weight";
    let mut tensors = tiny_raw();
    tensors.remove(name);
    let err = load_err(&with_model(serialize(&tensors)), Some(3));
    assert!(matches!(&err, CheckpointError::MissingTensor { name: n } if n == name), "{err:?}");
    assert_mentions(&err.to_string(), &[name]);

    // Without the word embeddings the file is read as a bare BertModel: the name has no prefix.
    let mut tensors = tiny_raw();
    tensors.remove("bert.embeddings.word_embeddings.weight");
    let err = load_err(&with_model(serialize(&tensors)), Some(3));
    assert!(matches!(&err, CheckpointError::MissingTensor { name } if name == "embeddings.word_embeddings.weight"), "{err:?}");
}

#[test]
fn nan_and_inf_in_a_weight_are_counted_and_named() {
    let name = "bert.encoder.layer.0.attention.output.dense.weight";
    let (shape, values) = &tiny_values()[name];
    let mut bad = values.clone();
    bad[0] = f32::NAN;
    bad[7] = f32::NAN;
    bad[100] = f32::INFINITY;
    bad[200] = f32::NEG_INFINITY;
    let mut tensors = tiny_raw();
    tensors.insert(name.into(), Raw { dtype: Dtype::F32, shape: shape.clone(), bytes: f32_bytes(&bad) });
    let err = load_err(&with_model(serialize(&tensors)), Some(3));
    assert!(matches!(&err, CheckpointError::NonFinite { name: n, count: 4 } if n == name), "{err:?}");
    assert_mentions(&err.to_string(), &[name, "4 non-finite"]);

    // Only Inf, in a bias.
    let bias = "bert.pooler.dense.bias";
    let (shape, values) = &tiny_values()[bias];
    let mut bad = values.clone();
    bad[3] = f32::INFINITY;
    let mut tensors = tiny_raw();
    tensors.insert(bias.into(), Raw { dtype: Dtype::F32, shape: shape.clone(), bytes: f32_bytes(&bad) });
    let err = load_err(&with_model(serialize(&tensors)), Some(3));
    assert!(matches!(&err, CheckpointError::NonFinite { name: n, count: 1 } if n == bias), "{err:?}");

    // NaN stored as F16 (0x7e00) is found after conversion too.
    let mut tensors = to_half(&tiny_raw(), Dtype::F16);
    tensors.get_mut(name).unwrap().bytes[10..12].copy_from_slice(&0x7e00u16.to_le_bytes());
    let err = load_err(&with_model(serialize(&tensors)), Some(3));
    assert!(matches!(&err, CheckpointError::NonFinite { name: n, count: 1 } if n == name), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// F16 / BF16

/// f32 → IEEE half, round to nearest even (subnormals included).
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let round = |value: u32, shift: u32| {
        let rem = value & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let r = value >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r + 1
        } else {
            r
        }
    };
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        return sign | round(mant | 0x80_0000, (14 - e) as u32) as u16;
    }
    sign | round(((e as u32) << 23) | mant, 13) as u16
}

/// f32 → bfloat16, round to nearest even.
fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn to_half(tensors: &BTreeMap<String, Raw>, dtype: Dtype) -> BTreeMap<String, Raw> {
    let convert = match dtype {
        Dtype::F16 => f32_to_f16,
        Dtype::BF16 => f32_to_bf16,
        other => panic!("{other:?} is not a half type"),
    };
    tensors
        .iter()
        .map(|(n, t)| {
            let bytes = t.bytes.chunks_exact(4).flat_map(|b| convert(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()).collect();
            (n.clone(), Raw { dtype, shape: t.shape.clone(), bytes })
        })
        .collect()
}

fn fixture_logits(loaded: &Loaded<Backend>) -> Vec<f32> {
    let fx = tiny_fixture();
    let ids: Vec<i64> = flat(&fx["input_ids"]).iter().map(|&x| x as i64).collect();
    let mask = flat(&fx["attention_mask"]);
    let ids = Tensor::<Backend, 2, Int>::from_data(TensorData::new(ids, [3, 7]), &Default::default());
    let mask = Tensor::<Backend, 2>::from_data(TensorData::new(mask, [3, 7]), &Default::default());
    loaded.model.logits(ids, mask).into_data().to_vec().unwrap()
}

#[test]
fn half_precision_converter_is_right() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-2.0), 0xc000);
    assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
    assert_eq!(f32_to_f16(65504.0), 0x7bff);
    assert_eq!(f32_to_f16(1e6), 0x7c00);
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    assert_eq!(f32_to_bf16(-2.0), 0xc000);
}

#[test]
fn f16_and_bf16_weights_load_and_give_close_logits() {
    let reference = fixture_logits(&load(&tiny_files(), Some(3)).unwrap());
    let expected = flat(&tiny_fixture()["logits"]);
    assert!(max_abs_diff(&reference, &expected) <= 1e-4, "the F32 load does not match transformers");
    for (dtype, tol) in [(Dtype::F16, 5e-3), (Dtype::BF16, 3e-2)] {
        let loaded = load(&with_model(serialize(&to_half(&tiny_raw(), dtype))), Some(3))
            .unwrap_or_else(|e| panic!("{dtype:?} checkpoint failed to load: {e}"));
        let logits = fixture_logits(&loaded);
        let d = max_abs_diff(&logits, &reference);
        assert!(d <= tol, "{dtype:?} logits differ from F32 by {d}");
        // The values really went through the half type (rounding changes them a little).
        assert!(d > 0.0, "{dtype:?} logits are bit-identical to F32: was the conversion skipped?");
    }
}

// ---------------------------------------------------------------------------------------------
// config.json

fn config_err(files: &CheckpointFiles) -> ConfigError {
    match load_err(files, Some(3)) {
        CheckpointError::Config(e) => e,
        other => panic!("expected CheckpointError::Config, got {other:?}"),
    }
}

#[test]
fn malformed_config_json() {
    for bytes in [&b"{"[..], b"", b"not json", b"[1, 2]"] {
        let files = CheckpointFiles { config: bytes.to_vec(), ..tiny_files() };
        let err = config_err(&files);
        assert!(matches!(err, ConfigError::Json(_)), "{:?}: {err:?}", String::from_utf8_lossy(bytes));
        assert_mentions(&err.to_string(), &["config.json"]);
    }
}

#[test]
fn config_with_wrong_types_or_missing_fields() {
    let mut config = tiny_config();
    config["hidden_size"] = json!("32");
    let err = config_err(&with_config(&config));
    assert!(matches!(err, ConfigError::Json(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["config.json", "hidden_size", "\"32\""]);

    let mut config = tiny_config();
    config["num_hidden_layers"] = json!(-2);
    let err = config_err(&with_config(&config));
    assert!(matches!(err, ConfigError::Json(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["num_hidden_layers", "-2"]);

    let mut config = tiny_config();
    config.as_object_mut().unwrap().remove("num_attention_heads");
    let err = config_err(&with_config(&config));
    assert!(matches!(err, ConfigError::Json(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["num_attention_heads"]);
}

#[test]
fn config_with_hidden_size_not_divisible_by_heads() {
    let mut config = tiny_config();
    config["num_attention_heads"] = json!(5);
    let err = config_err(&with_config(&config));
    assert!(matches!(err, ConfigError::Invalid { field: "hidden_size", .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["hidden_size", "32", "num_attention_heads"]);

    // Zero heads is reported as such, not as a division by zero.
    config["num_attention_heads"] = json!(0);
    let err = config_err(&with_config(&config));
    assert!(matches!(err, ConfigError::Invalid { field: "num_attention_heads", .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

fn tokenizer_err(files: &CheckpointFiles) -> TokenizerError {
    match load_err(files, Some(3)) {
        CheckpointError::Tokenizer(e) => e,
        other => panic!("expected CheckpointError::Tokenizer, got {other:?}"),
    }
}

#[test]
fn malformed_tokenizer_json() {
    for bytes in [&b"{"[..], b"", b"{\"model\": 3}"] {
        let err = tokenizer_err(&with_tokenizer(bytes.to_vec()));
        assert!(matches!(err, TokenizerError::Parse(_)), "{err:?}");
        assert_mentions(&err.to_string(), &["tokenizer.json"]);
    }
}

#[test]
fn tokenizer_without_pad_token() {
    let bytes = word_level_tokenizer(&["[UNK]", "[CLS]", "[SEP]", "[MASK]"], WORDS, None);
    assert!(TextTokenizer::from_bytes(&tiny_tokenizer(), MAX_LEN).is_ok());
    let err = tokenizer_err(&with_tokenizer(bytes));
    assert!(matches!(err, TokenizerError::MissingSpecial("[PAD]")), "{err:?}");
    assert_mentions(&err.to_string(), &["[PAD]"]);
}

#[test]
fn tokenizer_larger_than_the_model_vocabulary() {
    // 120 words + 5 specials = 125 tokens against vocab_size 99.
    let many: Vec<String> = (0..120).map(|i| format!("w{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = tokenizer_err(&with_tokenizer(word_level_tokenizer(SPECIALS, &many, None)));
    assert!(matches!(err, TokenizerError::VocabMismatch { tokenizer: 125, model: 99 }), "{err:?}");
    assert_mentions(&err.to_string(), &["125", "99"]);
}

#[test]
fn minilm_tokenizer_does_not_fit_the_tiny_model() {
    let minilm = read_checkpoint(&minilm_dir());
    let err = tokenizer_err(&with_tokenizer(minilm.tokenizer));
    assert!(matches!(err, TokenizerError::VocabMismatch { tokenizer: 30522, model: 99 }), "{err:?}");
}

#[test]
fn max_len_too_small_for_special_tokens() {
    let err = match TextTokenizer::from_bytes(&tiny_tokenizer(), 2) {
        Ok(_) => panic!("max_len 2 accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, TokenizerError::MaxLength(2)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Labels

#[test]
fn three_label_head_asked_for_two_labels() {
    let err = load_err(&tiny_files(), Some(2));
    assert!(matches!(err, CheckpointError::Labels { expected: 2, found: 3 }), "{err:?}");
    assert_mentions(&err.to_string(), &["3 labels", "2 were asked"]);
}

#[test]
fn minilm_with_a_three_label_head_asked_for_two() {
    // The real checkpoint gets a new 3-label head, is saved, then reloaded asking for 2.
    let minilm = read_checkpoint(&minilm_dir());
    let loaded = load_classifier::<Backend>(&minilm, Some(3), 128, 0, &Default::default()).unwrap();
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let saved = bdaudit_core::checkpoint::save_classifier(&loaded.model, &loaded.config, &loaded.tokenizer, &names).unwrap();
    let err = match load_classifier::<Backend>(&saved, Some(2), 128, 0, &Default::default()) {
        Ok(_) => panic!("a 3-label MiniLM loaded as 2 labels"),
        Err(e) => e,
    };
    assert!(matches!(err, CheckpointError::Labels { expected: 2, found: 3 }), "{err:?}");
    // Saving with a label list of the wrong length is refused too.
    let err = match bdaudit_core::checkpoint::save_classifier(&loaded.model, &loaded.config, &loaded.tokenizer, &names[..2]) {
        Ok(_) => panic!("saved a 3-label model with 2 names"),
        Err(e) => e,
    };
    assert!(matches!(err, CheckpointError::Labels { expected: 3, found: 2 }), "{err:?}");
}

#[test]
fn headless_checkpoint_without_a_label_count() {
    let mut tensors = tiny_raw();
    tensors.remove("classifier.weight");
    tensors.remove("classifier.bias");
    let files = with_model(serialize(&tensors));
    let err = load_err(&files, None);
    assert!(matches!(&err, CheckpointError::NoHead), "{err:?}");
    assert!(err.to_string().starts_with("the checkpoint has no classifier head (classifier.weight): it is a pre-trained encoder"), "{err}");
    // With a label count it gets a new head.
    let loaded = load(&files, Some(2)).unwrap();
    assert_eq!(loaded.report.initialised, vec!["classifier.weight", "classifier.bias"]);
}

// ---------------------------------------------------------------------------------------------
// Data files

fn tsv(bytes: &[u8]) -> Result<Vec<Example>, DataError> {
    parse(bytes, Format::Tsv, "train.tsv")
}

#[test]
fn non_utf8_tsv() {
    let err = tsv(b"sentence\tlabel\ngood movie\t1\nbad \xe9 film\t0\n").unwrap_err();
    assert!(matches!(err, DataError::NotUtf8 { line: 3, .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["train.tsv", "line 3", "UTF-8"]);
}

#[test]
fn empty_tsv() {
    for bytes in [&b"sentence\tlabel\n"[..], b"sentence\tlabel\n\n  \n", b""] {
        let err = tsv(bytes).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert_mentions(&err.to_string(), &["train.tsv", "no data rows"]);
    }
}

#[test]
fn tsv_without_header() {
    let err = tsv(b"good movie\t1\nbad film\t0\n").unwrap_err();
    assert!(matches!(&err, DataError::MissingHeader { found, .. } if found == "good movie\t1"), "{err:?}");
    assert_mentions(&err.to_string(), &["missing header", "sentence<TAB>label"]);
}

#[test]
fn label_that_is_not_an_integer() {
    for (label, value) in [("positive", "positive"), ("1.0", "1.0"), ("-1", "-1"), ("", "")] {
        let err = tsv(format!("sentence\tlabel\ngood\t1\nbad film\t{label}\n").as_bytes()).unwrap_err();
        assert!(matches!(&err, DataError::BadLabel { line: 3, value: v, .. } if v == value), "{label}: {err:?}");
    }
    let err = tsv(b"sentence\tlabel\nbad film\tneg\n").unwrap_err();
    assert_mentions(&err.to_string(), &["line 2", "\"neg\"", "not a non-negative integer"]);
}

#[test]
fn label_out_of_range() {
    let examples = tsv(b"sentence\tlabel\ngood\t1\nbad\t0\nodd\t2\n").unwrap();
    assert!(check_labels(&examples, 3, "train.tsv").is_ok());
    let err = check_labels(&examples, 2, "train.tsv").unwrap_err();
    assert!(matches!(err, DataError::LabelOutOfRange { label: 2, num_labels: 2, .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["train.tsv", "label 2", "below 2"]);
}

#[test]
fn single_class_data() {
    let examples = tsv(b"sentence\tlabel\ngood\t1\ngreat\t1\nfun\t1\n").unwrap();
    let err = require_two_classes(&examples, "train.tsv").unwrap_err();
    assert!(matches!(err, DataError::SingleClass { label: 1, .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["label 1", "two classes"]);
    let two = tsv(b"sentence\tlabel\ngood\t1\nbad\t0\n").unwrap();
    assert!(require_two_classes(&two, "train.tsv").is_ok());
}

#[test]
fn malformed_jsonl() {
    let err = parse(b"{\"text\": \"good\", \"label\": 1}\n{\"text\": \"bad\", \"label\": 0\n", Format::Jsonl, "d.jsonl").unwrap_err();
    assert!(matches!(err, DataError::Json { line: 2, .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["d.jsonl", "line 2", "invalid JSON"]);
    let err = parse(b"{\"text\": \"good\", \"label\": \"1\"}\n", Format::Jsonl, "d.jsonl").unwrap_err();
    assert!(matches!(err, DataError::BadLabel { line: 1, .. }), "{err:?}");
}

#[test]
fn csv_with_unterminated_quote() {
    let err = parse(b"text,label\n\"good, fun\",1\n\"bad film,0\nboring,0\n", Format::Csv, "d.csv").unwrap_err();
    assert!(matches!(&err, DataError::BadRow { line: 3, reason, .. } if reason.contains("unterminated")), "{err:?}");
    assert_mentions(&err.to_string(), &["d.csv", "line 3", "unterminated quoted field"]);
}

/// Every byte of a small valid file of each format replaced by each of a set of troublesome
/// bytes, and the file cut at every byte: parsing, the label checks and tokenising what parsed
/// return, never panic (a panic is caught and counted as in the sweeps below).
#[test]
fn no_byte_of_a_data_file_makes_reading_panic() {
    let files: [(&[u8], Format); 3] = [
        (b"sentence\tlabel\r\ngood \"fun\" film\t1\nbad\tone\t0\n", Format::Tsv),
        (b"text,label\n\"good, \"\"fun\"\"\",1\r\nbad \xc3\xa9,0\n", Format::Csv),
        (b"{\"text\": \"good \\u00e9\", \"label\": 1}\n{\"sentence\": \"bad\", \"label\": 0}\n", Format::Jsonl),
    ];
    let tokenizer = TextTokenizer::from_bytes(&tiny_tokenizer(), MAX_LEN).unwrap();
    let read = |bytes: &[u8], format: Format| {
        let examples = parse(bytes, format, "data")?;
        check_labels(&examples, 2, "data")?;
        require_two_classes(&examples, "data")?;
        let _ = tokenizer.encode_all(&examples);
        Ok::<_, DataError>(())
    };
    let mut tried = 0;
    let mut panics = Vec::new();
    for (valid, format) in files {
        read(valid, format).unwrap_or_else(|e| panic!("the valid {format:?} file: {e}"));
        for at in 0..valid.len() {
            let replaced = [b'\t', b'\n', b'\r', b'"', b',', b'{', b'\\', b'\0', b'-', b'9', 0xc3, 0xff].map(|byte| {
                let mut bytes = valid.to_vec();
                bytes[at] = byte;
                (format!("byte {at} = {byte:#04x}"), bytes)
            });
            for (what, bytes) in replaced.into_iter().chain([(format!("cut at {at}"), valid[..at].to_vec())]) {
                tried += 1;
                if let Err(panic) = unless_panic(|| read(&bytes, format)) {
                    panics.push(format!("{format:?}, {what}: {panic}"));
                }
            }
        }
    }
    assert_no_panics("data files", &panics, tried);
}

// ---------------------------------------------------------------------------------------------
// Training

struct Quiet;
impl Progress for Quiet {
    fn start(&mut self, _: &str, _: usize) {}
    fn step(&mut self, _: Option<f64>) {}
    fn finish(&mut self, _: &str) {}
}

fn encoded(ids: &[u32], label: usize) -> Encoded {
    Encoded { ids: ids.to_vec(), label }
}

#[test]
fn check_examples_rejects_ids_and_labels_out_of_range() {
    let good = vec![encoded(&[2, 5, 3], 0), encoded(&[2, 98, 3], 1)];
    assert!(check_examples(&good, 2, 99).is_ok());
    let bad_id = vec![encoded(&[2, 5, 3], 0), encoded(&[2, 99, 3], 1)];
    let err = check_examples(&bad_id, 2, 99).unwrap_err();
    assert!(matches!(err, TrainError::TokenId { id: 99, vocab: 99 }), "{err:?}");
    assert_mentions(&err.to_string(), &["token id 99", "vocabulary of 99"]);
    let bad_label = vec![encoded(&[2, 5, 3], 0), encoded(&[2, 6, 3], 2)];
    let err = check_examples(&bad_label, 2, 99).unwrap_err();
    assert!(matches!(err, TrainError::Label { label: 2, num_labels: 2 }), "{err:?}");
    assert_mentions(&err.to_string(), &["label 2", "2 labels"]);
    assert!(matches!(check_examples(&[], 2, 99), Err(TrainError::Empty)));
}

#[test]
fn train_config_validation() {
    assert!(TrainConfig::default().validate().is_ok());
    let err = TrainConfig { epochs: 0, ..TrainConfig::default() }.validate().unwrap_err();
    assert!(matches!(err, TrainError::Config { field: "epochs", .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["epochs", "0"]);
    for lr in [-1e-5, 0.0, f64::NAN, f64::INFINITY] {
        let err = TrainConfig { lr, ..TrainConfig::default() }.validate().unwrap_err();
        assert!(matches!(err, TrainError::Config { field: "lr", .. }), "lr {lr}: {err:?}");
    }
    let err = TrainConfig { lr: -1e-5, ..TrainConfig::default() }.validate().unwrap_err();
    assert_mentions(&err.to_string(), &["lr", "-0.00001"]);
    let err = TrainConfig { batch_size: 0, ..TrainConfig::default() }.validate().unwrap_err();
    assert!(matches!(err, TrainError::Config { field: "batch_size", .. }), "{err:?}");
}

#[test]
fn train_returns_errors_instead_of_panicking() {
    let device = Default::default();
    let model = || load_classifier::<TrainBackend>(&tiny_files(), Some(3), MAX_LEN, 0, &device).unwrap().model;
    let config = TrainConfig { epochs: 1, batch_size: 2, lr: 1e-3, ..TrainConfig::default() };
    let good = vec![encoded(&[2, 5, 3], 0), encoded(&[2, 6, 7, 3], 1), encoded(&[2, 8, 3], 2)];
    let (_, log) = train(model(), &good, 0, &config, &device, &mut Quiet, |_, _| None).expect("valid data trains");
    assert_eq!(log.steps, 2);

    let bad_id = vec![encoded(&[2, 5, 3], 0), encoded(&[2, 150, 3], 1)];
    let err = train(model(), &bad_id, 0, &config, &device, &mut Quiet, |_, _| None).map(|_| ()).unwrap_err();
    assert!(matches!(err, TrainError::TokenId { id: 150, vocab: 99 }), "{err:?}");

    let bad_label = vec![encoded(&[2, 5, 3], 3)];
    let err = train(model(), &bad_label, 0, &config, &device, &mut Quiet, |_, _| None).map(|_| ()).unwrap_err();
    assert!(matches!(err, TrainError::Label { label: 3, num_labels: 3 }), "{err:?}");

    let zero_epochs = TrainConfig { epochs: 0, ..config.clone() };
    let err = train(model(), &good, 0, &zero_epochs, &device, &mut Quiet, |_, _| None).map(|_| ()).unwrap_err();
    assert!(matches!(err, TrainError::Config { field: "epochs", .. }), "{err:?}");

    let negative_lr = TrainConfig { lr: -0.1, ..config };
    let err = train(model(), &good, 0, &negative_lr, &device, &mut Quiet, |_, _| None).map(|_| ()).unwrap_err();
    assert!(matches!(err, TrainError::Config { field: "lr", .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Sweeps: every field of each file broken in turn
//
// The tests above break one field at a time by hand, with the message each must give. These
// break every field of config.json, of the safetensors header and of a BERT tokenizer.json,
// each in every way below, and ask only that loading (and then using the model) returns,
// never panics: a panic kills the CLI with a backtrace and traps the browser's worker.

/// Values a field of a downloaded JSON file might hold instead of the right one.
fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(1),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e300),
        json!(0.5),
        json!(""),
        json!("x"),
        json!([]),
        json!([1, -1]),
        json!({}),
        json!({"type": "x"}),
    ]
}

/// JSON pointers of every field and element under `node`, not descending into keys in `skip`.
fn pointers(node: &Value, path: &str, skip: &[&str], out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match node {
        Value::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => return,
    };
    for (key, child) in children {
        let pointer = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
        out.push(pointer.clone());
        if !skip.contains(&key.as_str()) {
            pointers(child, &pointer, skip, out);
        }
    }
}

/// Every copy of `root` with one field or element replaced by a hostile value (one it does not
/// already hold) or removed, named for what was done.
fn one_field_broken(root: &Value, skip: &[&str]) -> Vec<(String, Value)> {
    let mut paths = Vec::new();
    pointers(root, "", skip, &mut paths);
    let mut variants = Vec::new();
    for path in paths {
        for value in hostile_values() {
            if root.pointer(&path) == Some(&value) {
                continue;
            }
            let mut doc = root.clone();
            *doc.pointer_mut(&path).expect("a pointer just listed") = value.clone();
            variants.push((format!("{path} = {value}"), doc));
        }
        let (parent, key) = path.rsplit_once('/').expect("pointers start with /");
        let mut doc = root.clone();
        match doc.pointer_mut(parent).expect("the parent of a listed pointer") {
            Value::Object(fields) => drop(fields.remove(&key.replace("~1", "/").replace("~0", "~"))),
            Value::Array(items) => drop(items.remove(key.parse::<usize>().expect("an index"))),
            _ => unreachable!("only objects and arrays have children"),
        }
        variants.push((format!("{path} removed"), doc));
    }
    variants
}

thread_local! {
    /// The message of the last panic on this thread, caught or not.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `f`'s result, or the message of a panic inside it, including one that `f` itself caught:
/// bdaudit catches the `tokenizers` panics it knows of, but only where panics unwind, and in
/// wasm every panic is a trap.
fn unless_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            previous(info);
        }));
    });
    LAST_PANIC.with(|last| last.borrow_mut().take());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    match LAST_PANIC.with(|last| last.borrow_mut().take()) {
        Some(panic) => Err(panic),
        None => Ok(outcome.expect("a panic sets LAST_PANIC")),
    }
}

/// Fails naming every variant that panicked.
fn assert_no_panics(what: &str, panics: &[String], tried: usize) {
    assert!(panics.is_empty(), "{} of {tried} broken {what} panicked:\n{}", panics.len(), panics.join("\n"));
}

/// Loads `files` as the CLI does (the label count from config.json), then runs the model on the
/// fixture's ids and tokenises texts that reach truncation, unknown words and special tokens.
fn load_and_use(files: &CheckpointFiles) -> Result<(), CheckpointError> {
    let loaded = load(files, None)?;
    fixture_logits(&loaded);
    let long = "the movie ".repeat(40);
    for text in ["", "The MOVIE was great", "unheard-of words [CLS] [SEP] [PAD]", &long, "é 中文 😀 \u{0}\t"] {
        let _ = loaded.tokenizer.encode(text);
    }
    Ok(())
}

#[test]
fn no_field_of_config_json_makes_loading_panic() {
    let mut config = tiny_config();
    // Optional fields bdaudit reads, present so that they are broken too.
    for (key, value) in [("model_type", json!("bert")), ("position_embedding_type", json!("absolute")), ("hidden_act", json!("gelu"))] {
        config[key] = value;
    }
    load_and_use(&with_config(&config)).expect("the unbroken config loads");
    let variants = one_field_broken(&config, &[]);
    let panics: Vec<String> = variants
        .iter()
        .filter_map(|(what, doc)| unless_panic(|| load_and_use(&with_config(doc))).err().map(|p| format!("{what}: {p}")))
        .collect();
    assert_no_panics("config.json files", &panics, variants.len());
}

/// `model`'s safetensors file with its JSON header replaced by `header` (the data kept).
fn with_header(model: &[u8], header: &Value) -> Vec<u8> {
    let data = &model[8 + header_len(model)..];
    let json = serde_json::to_vec(header).expect("serialise");
    [&(json.len() as u64).to_le_bytes()[..], &json, data].concat()
}

#[test]
fn no_field_of_the_safetensors_header_makes_loading_panic() {
    let model = tiny_files().model;
    let header: Value = serde_json::from_slice(&model[8..8 + header_len(&model)]).expect("the header is JSON");
    load_and_use(&with_model(with_header(&model, &header))).expect("the rewritten header loads");
    let variants = one_field_broken(&header, &[]);
    let mut panics = Vec::new();
    for (what, doc) in &variants {
        match unless_panic(|| load_and_use(&with_model(with_header(&model, doc)))) {
            Err(panic) => panics.push(format!("{what}: {panic}")),
            // Every tensor is read, so only the metadata may change without an error.
            Ok(Ok(())) => assert!(what.starts_with("/__metadata__"), "{what}: loaded without an error"),
            Ok(Err(_)) => {}
        }
    }
    assert_no_panics("safetensors headers", &panics, variants.len());
}

/// MiniLM's own tokenizer.json (BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing,
/// truncation, padding, added tokens) with the tiny model's vocabulary and ids.
fn bert_tokenizer_for_the_tiny_model() -> Value {
    let mut tokenizer: Value = serde_json::from_slice(&read_checkpoint(&minilm_dir()).tokenizer).expect("MiniLM's tokenizer.json");
    let tiny: Value = serde_json::from_slice(&tiny_tokenizer()).expect("the tiny tokenizer");
    let vocab = tiny["model"]["vocab"].clone();
    let id = |token: &str| vocab[token].clone();
    for added in tokenizer["added_tokens"].as_array_mut().expect("added_tokens") {
        added["id"] = id(added["content"].as_str().expect("content"));
    }
    for (name, special) in tokenizer["post_processor"]["special_tokens"].as_object_mut().expect("special_tokens") {
        special["ids"] = json!([id(name)]);
    }
    tokenizer["padding"]["pad_id"] = id("[PAD]");
    tokenizer["model"]["vocab"] = vocab;
    tokenizer
}

#[test]
fn no_field_of_tokenizer_json_makes_loading_or_tokenising_panic() {
    let tokenizer = bert_tokenizer_for_the_tiny_model();
    let bytes = |doc: &Value| serde_json::to_vec(doc).expect("serialise");
    load_and_use(&with_tokenizer(bytes(&tokenizer))).expect("the tiny BERT tokenizer loads");
    // The vocabulary's entries are each one more token: the map as a whole is broken instead.
    let mut variants = one_field_broken(&tokenizer, &["vocab"]);
    // SentencePiece normalisation rules (a trie) that parse but lead lookups out of bounds: an
    // empty trie, a root whose children lie past the end.
    for charsmap in ["AAAAAA==", "BAAAAP///38="] {
        let mut doc = tokenizer.clone();
        doc["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": charsmap});
        variants.push((format!("/normalizer = Precompiled {charsmap}"), doc));
    }
    let panics: Vec<String> = variants
        .iter()
        .filter_map(|(what, doc)| unless_panic(|| load_and_use(&with_tokenizer(bytes(doc)))).err().map(|p| format!("{what}: {p}")))
        .collect();
    assert_no_panics("tokenizer.json files", &panics, variants.len());
}
