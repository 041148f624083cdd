//! The `transformers` round trip: a checkpoint bdaudit wrote, loaded by Hugging Face
//! `transformers` in PyTorch, must give the logits bdaudit computed (`scripts/check-transformers.py`,
//! and `scripts/check-pruned-heads.py` for the two layouts of a PURE-pruned model).
//!
//! The Python is the venv `scripts/py-ref-env` makes (pinned torch + transformers), found through
//! `BDAUDIT_PY_REF` (default: where that script puts it); `scripts/test` makes it first. A
//! missing venv fails loudly, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use bdaudit_core::checkpoint::{CheckpointFiles, TextTokenizer};
use bdaudit_core::eval::logits;
use bdaudit_core::model::BertClassifier;
use bdaudit_core::progress::Silent;
use serde_json::{json, Value};

use crate::{cache_dir, repo_root, Backend};

/// The reference venv's Python.
pub fn reference_python() -> PathBuf {
    let python = std::env::var_os("BDAUDIT_PY_REF").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("py-ref/bin/python"));
    assert!(
        python.is_file(),
        "the PyTorch reference venv is missing at {} (run scripts/py-ref-env, or set BDAUDIT_PY_REF to its python)",
        python.display()
    );
    python
}

/// Writes the three checkpoint files into `dir` (created; emptied first).
pub fn write_checkpoint(dir: &Path, files: &CheckpointFiles) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, bytes) in files.named() {
        std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()));
    }
}

/// Writes `{"texts", "logits"}` (bdaudit's logits of `model` on `texts`) to `path`, the
/// expected file of both checks. The texts must fit `tokenizer`'s maximum length untruncated:
/// the checks encode at up to 128 tokens.
pub fn write_expected(path: &Path, model: &BertClassifier<Backend>, tokenizer: &TextTokenizer, texts: &[String]) {
    let rows: Vec<_> = texts.iter().map(|t| bdaudit_core::data::batch::Encoded { ids: tokenizer.encode(t).unwrap(), label: 0 }).collect();
    assert!(rows.iter().all(|r| r.ids.len() < tokenizer.max_len()), "a probe text is cut at {} tokens", tokenizer.max_len());
    let scores = logits(model, &rows, tokenizer.pad_id(), 64, &Default::default(), &mut Silent).unwrap();
    let bytes = serde_json::to_vec(&json!({"texts": texts, "logits": scores})).unwrap();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Runs `scripts/<script>` with the reference Python on `args`; panics with its output unless
/// it succeeds. Returns the JSON line it prints.
pub fn check(script: &str, args: &[&Path]) -> Value {
    let path = repo_root().join("scripts").join(script);
    let out = Command::new(reference_python()).arg(&path).args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}):\n{stdout}"))
}
