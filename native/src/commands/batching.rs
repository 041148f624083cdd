//! The batching options every training command shares.

use bdaudit_core::train::TrainConfig;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    #[arg(long, default_value_t = 32)]
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
