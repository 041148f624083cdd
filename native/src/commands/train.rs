//! `bdaudit train`: fine-tune a checkpoint on a (possibly poisoned) data set and write a
//! Hugging Face classifier.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use bdaudit_core::checkpoint::{load_classifier, save_classifier, LoadReport};
use bdaudit_core::data::{check_labels, require_two_classes, subsample};
use bdaudit_core::eval::predict;
use bdaudit_core::metrics::{self, EvalMetrics};
use bdaudit_core::train::{train, TrainConfig, TrainLog};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use serde::Serialize;

use crate::bar::Bars;
use crate::commands::eval::{evaluate, print_metrics};
use crate::files::{read_checkpoint, resolve_model, DataDir, OutputDir};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// `minilm` (all-MiniLM-L6-v2, fetched by scripts/fetch-model) or a checkpoint directory.
    #[arg(long)]
    pub model: String,
    /// Data directory with train.tsv (and optionally dev.tsv, test*.tsv, labels.tsv).
    #[arg(long)]
    pub data: PathBuf,
    /// Output checkpoint directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on a seeded, stratified subset of this many rows (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize)]
pub struct TrainReport {
    pub base: String,
    pub data: String,
    pub train_rows: usize,
    pub config: TrainConfig,
    pub load: LoadReport,
    pub log: TrainLog,
    pub metrics: Option<EvalMetrics>,
    pub seconds_train: f64,
    pub seconds_total: f64,
}

pub fn run<B: AutodiffBackend>(args: TrainArgs, device: B::Device, json: bool) -> Result<TrainReport> {
    let start = Instant::now();
    let model_dir = resolve_model(&args.model)?;
    let data = DataDir::open(&args.data)?;
    let out = OutputDir::prepare(&args.out, args.force, &[model_dir.as_path(), args.data.as_path()])?;
    let mut train_rows = data.split("train.tsv")?;
    if let Some(n) = args.limit {
        train_rows = subsample(&train_rows, n, args.seed);
    }
    let dev_rows = data.optional("dev.tsv")?;
    let labels = data.labels(&[&train_rows])?;
    let source = data.file("train.tsv").display().to_string();
    check_labels(&train_rows, labels.len(), &source)?;
    require_two_classes(&train_rows, &source)?;

    let loaded = load_classifier::<B>(&read_checkpoint(&model_dir)?, Some(labels.len()), args.max_len, args.seed, &device)?;
    let tokenizer = &loaded.tokenizer;
    let encoded = tokenizer.encode_all(&train_rows)?;
    let dev = dev_rows.map(|rows| tokenizer.encode_all(&rows)).transpose()?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let pad = tokenizer.pad_id();
    let train_start = Instant::now();
    let (model, log) = train(loaded.model, &encoded, pad, &config, &device, &mut Bars::new(json), |_, m| {
        let dev = dev.as_ref()?;
        let preds = predict(m, dev, pad, 64, &device, &mut Bars::new(true));
        let labels: Vec<usize> = dev.iter().map(|e| e.label).collect();
        metrics::cacc(&labels, &preds).ok()
    })?;
    let seconds_train = train_start.elapsed().as_secs_f64();
    let model = model.valid();

    let has_test = ["test.tsv", "test-asr.tsv", "test-pacc.tsv"].iter().any(|f| data.has(f));
    let metrics = if has_test {
        Some(evaluate(&model, tokenizer, &data, 64, &device, json)?)
    } else {
        None
    };
    let files = save_classifier(&model, &loaded.config, tokenizer, &labels.names)?;
    let report = TrainReport {
        base: model_dir.display().to_string(),
        data: args.data.display().to_string(),
        train_rows: encoded.len(),
        config,
        load: loaded.report,
        log,
        metrics,
        seconds_train,
        seconds_total: start.elapsed().as_secs_f64(),
    };
    out.write("model.safetensors", &files.model)?;
    out.write("config.json", &files.config)?;
    out.write("tokenizer.json", &files.tokenizer)?;
    out.write_json("report.json", &report)?;
    let dir = out.commit()?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report, &dir);
    }
    Ok(report)
}

fn print_summary(report: &TrainReport, dir: &Path) {
    for e in &report.log.epochs {
        match e.eval {
            Some(acc) => println!("epoch {}: loss {:.4}, dev accuracy {:.2}%", e.epoch, e.mean_loss, 100.0 * acc),
            None => println!("epoch {}: loss {:.4}", e.epoch, e.mean_loss),
        }
    }
    if let Some(m) = &report.metrics {
        print_metrics(m);
    }
    println!("wrote {} ({:.0} s training, {:.0} s total)", dir.display(), report.seconds_train, report.seconds_total);
}
