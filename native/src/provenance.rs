//! Fingerprints of a run's inputs, so work recorded by one run (a saved teacher or fine-tuned
//! model, scores before unlearning) is reused only by a run on the same inputs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bdaudit_core::checkpoint::CheckpointFiles;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One digest over a checkpoint's weights, config and tokenizer: all three decide its
/// predictions. Each file's length goes in before it, so bytes cannot move between files.
pub fn checkpoint_sha256(files: &CheckpointFiles) -> String {
    let mut digest = Sha256::new();
    for bytes in [&files.model, &files.config, &files.tokenizer] {
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    }
    hex(&digest.finalize())
}

/// `key: <recorded_as> <recorded value>, this run <ours>` for each field of `ours` whose value
/// `recorded` does not hold.
pub fn differences<T: Serialize>(ours: &T, recorded: &Value, recorded_as: &str) -> serde_json::Result<Vec<String>> {
    let ours = serde_json::to_value(ours)?;
    Ok(ours
        .as_object()
        .expect("a struct serialises to an object")
        .iter()
        .filter(|(key, value)| recorded.get(key.as_str()) != Some(value))
        .map(|(key, value)| format!("{key}: {recorded_as} {}, this run {value}", recorded.get(key.as_str()).unwrap_or(&Value::Null)))
        .collect())
}

/// The file in a saved model's directory (`--save-teacher`, `--save-finetuned`) that says what
/// it was made from.
pub const PROVENANCE: &str = "provenance.json";

/// Refuses the model in `dir`, given to stand in for one of this run's steps (`what`: "teacher"),
/// if its provenance.json records other inputs than `ours`, telling the user to `redo`; Ok(false),
/// with a warning, for a checkpoint without that file (not written by `saved_by`), whose inputs
/// cannot be checked.
pub fn check_provenance<T: Serialize>(ours: &T, dir: &Path, what: &str, saved_by: &str, redo: &str) -> Result<bool> {
    let path = dir.join(PROVENANCE);
    if !path.exists() {
        eprintln!(
            "warning: {what} {} has no {PROVENANCE} (not written by {saved_by}): what it was trained on is not checked",
            dir.display()
        );
        return Ok(false);
    }
    let recorded: Value = serde_json::from_slice(&crate::files::read(&path)?).with_context(|| format!("{} is not JSON", path.display()))?;
    let differ = differences(ours, &recorded, what)?;
    if !differ.is_empty() {
        bail!("{what} {} was made from other inputs than this run ({}); {redo}", dir.display(), differ.join("; "));
    }
    Ok(true)
}
