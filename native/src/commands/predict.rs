//! `bdaudit predict`: labels and logits of a checkpoint for the rows of a data file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::eval::{argmax, logits};
use bdaudit_core::train::check_examples;
use burn::tensor::backend::Backend;
use clap::Args;
use serde::Serialize;

use crate::bar::Bars;
use crate::commands::batching::batch_size;
use crate::commands::eval::SCORE_BATCH;
use crate::files::{read_checkpoint, read_examples, resolve_model};

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub model: String,
    /// A TSV/CSV/JSONL file; its labels are ignored.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = batch_size)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
}

/// The shape `scripts/check-transformers` compares against PyTorch.
#[derive(Serialize)]
struct Predictions {
    texts: Vec<String>,
    labels: Vec<String>,
    logits: Vec<Vec<f32>>,
}

pub fn run<B: Backend>(args: PredictArgs, device: B::Device, json: bool) -> Result<()> {
    let loaded = load_classifier::<B>(&read_checkpoint(&resolve_model(&args.model)?)?, None, args.max_len, 0, &device)?;
    let rows = read_examples(&args.input)?;
    let encoded: Vec<Encoded> =
        rows.iter().map(|r| Ok(Encoded { ids: loaded.tokenizer.encode(&r.text)?, label: 0 })).collect::<Result<_>>()?;
    check_examples(&encoded, loaded.model.num_labels(), loaded.model.vocab_size())?;
    let scores = logits(&loaded.model, &encoded, loaded.tokenizer.pad_id(), args.batch_size, &device, &mut Bars::new(json))
        .with_context(|| format!("scoring {}", args.input.display()))?;
    let out = Predictions {
        labels: scores.iter().map(|s| loaded.labels[argmax(s)].clone()).collect(),
        texts: rows.into_iter().map(|r| r.text).collect(),
        logits: scores,
    };
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for (text, label) in out.texts.iter().zip(&out.labels) {
            // A tab or newline in a class name (config.json's id2label) would break the columns.
            let label = label.replace(char::is_control, " ");
            println!("{label}\t{text}");
        }
    }
    Ok(())
}
