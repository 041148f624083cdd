//! Shared helpers of the integration tests: where real data and weights are, and fixtures.
//!
//! Real inputs are found through one setting each and a missing one fails loudly, never skips:
//! `BDAUDIT_DATA` (default `../shared/data` next to the repository) and `BDAUDIT_MODEL_DIR`
//! (default: where `scripts/fetch-model` puts all-MiniLM-L6-v2).

use std::path::{Path, PathBuf};

use bdaudit_core::checkpoint::CheckpointFiles;
use serde_json::{json, Value};

pub mod transformers;
pub mod victim;

pub type Backend = burn::backend::NdArray<f32>;
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The checkout the tests run in, found at run time. `env!("CARGO_MANIFEST_DIR")` would bake in
/// the checkout that built the binary, and cargo reuses the binary in another checkout sharing
/// the target directory (a clean clone beside the working copy): the tests would then read the
/// first checkout's scripts and fixtures. `cargo test` sets the variable when it runs a test;
/// `scripts/test` runs the unlearning binary itself, from `tests/` as cargo does.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("the working directory is readable"));
    let root = package.parent().expect("tests/ has a parent").to_path_buf();
    assert!(
        root.join("tests/fixtures").is_dir(),
        "{} is not the repository's tests/ directory: run the test binaries from there, or set CARGO_MANIFEST_DIR to it",
        package.display()
    );
    root
}

/// The real datasets (`sentence<TAB>label` TSV splits).
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("BDAUDIT_DATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/data"));
    assert!(
        dir.join("sst2/train.tsv").is_file(),
        "real data not found at {} (set BDAUDIT_DATA to the folder holding sst2/, olid/, …)",
        dir.display()
    );
    dir
}

/// Where the scripts keep models and the PyTorch venv: `BDAUDIT_CACHE`, default `~/.cache/bdaudit`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BDAUDIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/bdaudit"))
}

/// The real all-MiniLM-L6-v2 checkpoint fetched by `scripts/fetch-model`.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("BDAUDIT_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join(CheckpointFiles::MODEL).is_file(),
        "MiniLM weights not found at {} (run scripts/fetch-model, or set BDAUDIT_MODEL_DIR)",
        dir.display()
    );
    dir
}

pub fn read_checkpoint(dir: &Path) -> CheckpointFiles {
    let read = |name| std::fs::read(dir.join(name)).map_err(|e| format!("{}/{name}: {e}", dir.display()));
    CheckpointFiles::read_with(read).unwrap_or_else(|e| panic!("{e}"))
}

pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("tests/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("fixture is JSON")
}

/// Flattens a nested JSON array of numbers.
pub fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("not a number array: {other}"),
    }
}

/// Safetensors bytes from a fixture's `{"name": {"shape": [...], "data": [...]}}` map.
pub fn safetensors_from_json(tensors: &serde_json::Map<String, Value>) -> Vec<u8> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let bytes = flat(&t["data"]).iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape, bytes)
        })
        .collect();
    let views =
        owned.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()));
    safetensors::serialize(views, None).expect("serialise")
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A minimal WordLevel `tokenizer.json`: ids follow `specials` then `words`; a \[CLS\] … \[SEP\]
/// post-processor when both are present, with \[CLS\] given `cls_id` instead of its vocabulary id
/// when asked (to produce ids a model does not have); \[UNK\] (or the first token) as unknown.
pub fn word_level_tokenizer(specials: &[&str], words: &[&str], cls_id: Option<usize>) -> Vec<u8> {
    let vocab: serde_json::Map<String, Value> = specials.iter().chain(words).enumerate().map(|(i, w)| (w.to_string(), json!(i))).collect();
    let id = |t: &str| vocab.get(t).cloned().unwrap_or(json!(1));
    let post = if vocab.contains_key("[CLS]") && vocab.contains_key("[SEP]") {
        let cls = cls_id.map_or_else(|| id("[CLS]"), |c| json!(c));
        json!({"type": "BertProcessing", "sep": ["[SEP]", id("[SEP]")], "cls": ["[CLS]", cls]})
    } else {
        Value::Null
    };
    let unk = if vocab.contains_key("[UNK]") { "[UNK]" } else { specials.first().copied().unwrap_or("the") };
    serde_json::to_vec(&json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": post,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk}
    }))
    .expect("serialise")
}
