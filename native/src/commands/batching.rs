//! The batching options every training command shares.

use bdaudit_core::train::TrainConfig;
use clap::Args;

/// Rows per batch past this are a typo, not a setting: refused before any work, rather than
/// ending in an allocation failure (a batch's attention scores alone are rows × heads × len²
/// floats: 3 GiB for 4,096 MiniLM rows of 128 tokens).
const MAX_BATCH: usize = 4096;

/// The parser of every `--batch-size`: 1 to [`MAX_BATCH`].
pub fn batch_size(value: &str) -> Result<usize, String> {
    let n: usize = value.parse().map_err(|e| format!("{e}"))?;
    if (1..=MAX_BATCH).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be from 1 to {MAX_BATCH}"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    #[arg(long, default_value_t = 32, value_parser = batch_size)]
    pub batch_size: usize,
    /// Batch training rows of similar length together (`transformers`' group_by_length): about
    /// half the padded tokens on short texts, so faster; off by default, as in the papers.
    #[arg(long)]
    pub group_by_length: bool,
}

impl BatchArgs {
    /// Sets the batching of each of `configs`.
    pub fn apply<'a>(&self, configs: impl IntoIterator<Item = &'a mut TrainConfig>) {
        for c in configs {
            c.batch_size = self.batch_size;
            c.group_by_length = self.group_by_length;
        }
    }
}
