//! Fingerprints of a run's inputs, so work recorded by one run (a saved teacher, scores
//! before unlearning) is reused only by a run on the same inputs.

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
