//! `bdaudit scan`: look for signs of a backdoor without changing anything.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::{check_labels, require_two_classes};
use bdaudit_core::probe::token_scores::{against_base, embedding_only, embedding_only_config, rank, TokenScore};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use serde::Serialize;

use crate::bar::Bars;
use crate::files::{read_checkpoint, read_examples, resolve_model};

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Checkpoint directory to scan (or `minilm`).
    #[arg(long)]
    pub model: String,
    /// Rank tokens by how far their embedding rows moved (BTU's drift score).
    #[arg(long)]
    pub token_scores: bool,
    /// The clean checkpoint the model was fine-tuned from: scores are the drift against it.
    #[arg(long, conflicts_with = "data")]
    pub base: Option<String>,
    /// Labelled rows (TSV/CSV/JSONL), e.g. a data set you are about to train on: scores come
    /// from one epoch of embedding-only training on them (BTU detection round 1).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// How many tokens to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Serialize)]
struct TokenScanReport {
    model: String,
    /// `base` (drift against --base) or `embedding-only` (trained on --data).
    method: &'static str,
    reference: String,
    tokens: Vec<TokenScore>,
    seconds: f64,
}

pub fn run<B: AutodiffBackend>(args: ScanArgs, device: B::Device, json: bool) -> Result<()> {
    if !args.token_scores {
        bail!("choose a probe: --token-scores");
    }
    let start = Instant::now();
    let model_dir = resolve_model(&args.model)?;
    let files = read_checkpoint(&model_dir)?;
    let (method, reference, tokenizer, scores) = match (&args.base, &args.data) {
        (Some(base), _) => {
            let base_dir = resolve_model(base)?;
            let loaded = load_classifier::<B::InnerBackend>(&files, None, args.max_len, args.seed, &device)?;
            let base = load_classifier::<B::InnerBackend>(
                &read_checkpoint(&base_dir)?,
                Some(loaded.model.num_labels()),
                args.max_len,
                args.seed,
                &device,
            )?;
            let scores = against_base(&loaded.model, &base.model)?;
            ("base", base_dir.display().to_string(), loaded.tokenizer, scores)
        }
        (None, Some(path)) => {
            let rows = read_examples(path)?;
            let source = path.display().to_string();
            require_two_classes(&rows, &source)?;
            let num_labels = rows.iter().map(|r| r.label).max().unwrap_or(0) + 1;
            let loaded = load_classifier::<B>(&files, Some(num_labels), args.max_len, args.seed, &device)?;
            check_labels(&rows, loaded.model.num_labels(), &source)?;
            let encoded = loaded.tokenizer.encode_all(&rows)?;
            let config = embedding_only_config(args.seed);
            let scores = embedding_only(&loaded.model, &encoded, loaded.tokenizer.pad_id(), &config, &device, &mut Bars::new(json))?;
            ("embedding-only", source, loaded.tokenizer, scores)
        }
        (None, None) => bail!("--token-scores needs --base (the clean checkpoint) or --data (labelled rows)"),
    };
    let report = TokenScanReport {
        model: model_dir.display().to_string(),
        method,
        reference,
        tokens: rank(&scores, &tokenizer, args.top),
        seconds: start.elapsed().as_secs_f64(),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("tokens whose embeddings moved most ({method}, against {}):", report.reference);
        for (i, t) in report.tokens.iter().enumerate() {
            println!("{:>4}  {:<20} {:.5}", i + 1, t.token, t.score);
        }
    }
    Ok(())
}
