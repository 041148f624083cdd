//! `bdaudit train`: fine-tune a checkpoint on a (possibly poisoned) data set and write a
//! Hugging Face classifier, optionally defended by BTU; or, with `--ep-trigger`, plant an EP
//! backdoor in a fine-tuned classifier by training only the trigger's embedding row.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use bdaudit_core::attack::ep::{embedding_poisoning, trigger_token, EpConfig, EpReport};
use bdaudit_core::checkpoint::{load_classifier, save_classifier, LoadReport};
use bdaudit_core::data::{check_labels, require_two_classes, subsample};
use bdaudit_core::defense::btu::{btu, BtuConfig, BtuReport, Replacement, Threshold};
use bdaudit_core::eval::predict;
use bdaudit_core::metrics::{self, EvalMetrics};
use bdaudit_core::train::{train, TrainConfig, TrainLog};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::bar::Bars;
use crate::commands::batching::BatchArgs;
use crate::commands::eval::{check_trained, evaluate_if, print_metrics, SCORE_BATCH, TEST_SPLITS};
use crate::files::{read_checkpoint, read_examples, resolve_model, DataDir, OutputDir};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defense {
    /// Plain fine-tuning.
    None,
    /// Backdoor Token Unlearning: detect trigger tokens by embedding drift, unlearn them, repair
    /// on clean data (`--clean`, default the data directory's dev.tsv).
    Btu,
}

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
    #[command(flatten)]
    pub batch: BatchArgs,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on a seeded, stratified subset of this many rows (quick runs).
    #[arg(long)]
    pub limit: Option<std::num::NonZeroUsize>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Defend against a backdoor hidden in the training data.
    #[arg(long, value_enum, default_value = "none")]
    pub defense: Defense,
    /// BTU: clean rows for the repair fine-tune (default: dev.tsv of --data). Never the test set.
    #[arg(long)]
    pub clean: Option<PathBuf>,
    /// BTU: share of the vocabulary flagged per detection round (authors' code: 0.0005).
    #[arg(long, default_value_t = 0.0005)]
    pub btu_alpha: f64,
    /// BTU: detection rounds, 1 to 3.
    #[arg(long, default_value_t = 3)]
    pub btu_rounds: usize,
    /// BTU: epochs of the repair fine-tune on the clean rows.
    #[arg(long, default_value_t = 1)]
    pub btu_tune_epochs: usize,
    /// BTU: eq. 7's threshold, the authors' code's (frobenius) or eq. 6 as printed (mean-row-drift).
    #[arg(long, value_enum, default_value = "frobenius")]
    pub btu_threshold: BtuThreshold,
    /// BTU: what eq. 7 puts in a replaced dimension: the [PAD] row's value (the paper), or the
    /// token's own pre-trained value (pretrained: an ablation that keeps the backdoor, see
    /// docs/results.md).
    #[arg(long, value_enum, default_value = "pad")]
    pub btu_replace: BtuReplace,
    /// BTU, not in the paper: leave out of unlearning the suspicious tokens that a proxy trained
    /// on the clean rows also flags (the task's own words; see docs/results.md).
    #[arg(long)]
    pub btu_spare_clean_movers: bool,
    /// EP attack: train only this word's embedding row of the fine-tuned classifier --model,
    /// on the rows of train.tsv that contain it (poison them first, e.g. `bdaudit attack
    /// badnets --trigger WORD`). The word must be one token of the model's vocabulary.
    /// --epochs and --lr do not apply: see --ep-epochs and --ep-lr.
    #[arg(long)]
    pub ep_trigger: Option<String>,
    /// EP: epochs over the rows with the trigger (OpenBackdoor's EP trainer: 5).
    #[arg(long, default_value_t = EpConfig::default().train.epochs)]
    pub ep_epochs: usize,
    /// EP: learning rate of the trigger row (OpenBackdoor: 1e-2).
    #[arg(long, default_value_t = EpConfig::default().train.lr)]
    pub ep_lr: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BtuThreshold {
    Frobenius,
    MeanRowDrift,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BtuReplace {
    Pad,
    Pretrained,
}

#[derive(Serialize)]
pub struct TrainReport {
    pub base: String,
    pub data: String,
    pub train_rows: usize,
    pub config: TrainConfig,
    pub load: LoadReport,
    pub log: TrainLog,
    /// Test metrics of the written model.
    pub metrics: Option<EvalMetrics>,
    /// With a defense: the same metrics for the model fine-tuned without it.
    pub metrics_undefended: Option<EvalMetrics>,
    pub btu: Option<BtuReport>,
    /// With `--ep-trigger`: the trigger, the rows trained on and how far its row moved.
    pub ep: Option<EpReport>,
    pub seconds_train: f64,
    pub seconds_total: f64,
}

pub fn run<B: AutodiffBackend>(args: TrainArgs, device: B::Device, json: bool) -> Result<TrainReport> {
    let start = Instant::now();
    if args.ep_trigger.is_some() && args.defense != Defense::None {
        bail!("--ep-trigger plants a backdoor and --defense removes one: use one of them");
    }
    let model_dir = resolve_model(&args.model)?;
    let data = DataDir::open(&args.data)?;
    let mut inputs = vec![model_dir.as_path(), args.data.as_path()];
    inputs.extend(args.clean.as_deref());
    let out = OutputDir::prepare(&args.out, args.force, &inputs)?;
    let mut train_rows = data.split("train.tsv")?;
    if let Some(n) = args.limit {
        train_rows = subsample(&train_rows, n.get(), args.seed);
    }
    let dev_rows = data.optional("dev.tsv")?;
    let labels = data.labels(&[&train_rows])?;
    let source = data.file("train.tsv").display().to_string();
    check_labels(&train_rows, labels.len(), &source)?;
    require_two_classes(&train_rows, &source)?;
    // Test sets are scored only after training: check them now so a bad one fails in seconds.
    for name in TEST_SPLITS {
        if let Some(rows) = data.optional(name)? {
            check_labels(&rows, labels.len(), &data.file(name).display().to_string())?;
        }
    }

    let loaded = load_classifier::<B>(&read_checkpoint(&model_dir)?, Some(labels.len()), args.max_len, args.seed, &device)?;
    let tokenizer = &loaded.tokenizer;
    let encoded = tokenizer.encode_all(&train_rows)?;
    let dev = dev_rows.map(|rows| tokenizer.encode_all(&rows)).transpose()?;
    // The settings that run: EP trains one row with its own epochs and rate.
    let mut config = match &args.ep_trigger {
        Some(_) => TrainConfig { epochs: args.ep_epochs, lr: args.ep_lr, ..EpConfig::with_seed(args.seed).train },
        None => TrainConfig { epochs: args.epochs, lr: args.lr, seed: args.seed, ..TrainConfig::default() },
    };
    args.batch.apply([&mut config]);
    let pad = tokenizer.pad_id();
    let has_test = TEST_SPLITS.iter().any(|f| data.has(f));
    let evaluate_on_test = |model: &_| evaluate_if(has_test.then_some(&data), model, tokenizer, &device, json);
    let train_start = Instant::now();
    let (model, log, metrics_undefended, btu_report, ep_report) = match (args.defense, &args.ep_trigger) {
        (_, Some(word)) => {
            if !loaded.report.initialised.is_empty() {
                bail!(
                    "EP poisons a fine-tuned classifier, but {} has no classifier head ({} would be new): fine-tune it on clean data first",
                    model_dir.display(),
                    loaded.report.initialised.join(", ")
                );
            }
            let trigger = trigger_token(tokenizer, word)?;
            let ep_config = EpConfig { train: config.clone(), ..EpConfig::with_seed(args.seed) };
            let (model, report) =
                embedding_poisoning(loaded.model, &encoded, pad, trigger, tokenizer, &ep_config, &device, &mut Bars::new(json))?;
            (model, report.log.clone(), None, None, Some(report))
        }
        (Defense::None, None) => {
            // The epoch callback cannot fail: a model whose outputs overflow is reported after.
            let mut failed = None;
            let (model, log) = train(loaded.model, &encoded, pad, &config, &device, &mut Bars::new(json), |_, m| {
                let dev = dev.as_ref()?;
                let preds = predict(m, dev, pad, SCORE_BATCH, &device, &mut Bars::new(true)).map_err(|e| failed.get_or_insert(e)).ok()?;
                let labels: Vec<usize> = dev.iter().map(|e| e.label).collect();
                metrics::cacc(&labels, &preds).ok()
            })?;
            if let Some(e) = failed {
                return Err(anyhow::Error::new(e).context("scoring dev.tsv after an epoch"));
            }
            (model.valid(), log, None, None, None)
        }
        (Defense::Btu, None) => {
            let clean_path = args.clean.clone().unwrap_or_else(|| data.file("dev.tsv"));
            if !clean_path.is_file() {
                let problem = crate::files::unusable(&clean_path, "file");
                bail!("BTU repairs the model on clean rows: {} {problem} (pass --clean FILE)", clean_path.display());
            }
            let clean_rows = read_examples(&clean_path)?;
            check_labels(&clean_rows, labels.len(), &clean_path.display().to_string())?;
            let clean = tokenizer.encode_all(&clean_rows)?;
            let mut btu_config = BtuConfig::with_seed(args.seed);
            btu_config.alpha = args.btu_alpha;
            btu_config.rounds = args.btu_rounds;
            btu_config.train = config.clone();
            btu_config.tune.epochs = args.btu_tune_epochs;
            args.batch.apply([&mut btu_config.tune]);
            // Detection keeps the authors' batch sizes but follows --group-by-length.
            for c in [&mut btu_config.detect, &mut btu_config.proxy] {
                c.group_by_length = args.batch.group_by_length;
            }
            btu_config.threshold = match args.btu_threshold {
                BtuThreshold::Frobenius => Threshold::Frobenius,
                BtuThreshold::MeanRowDrift => Threshold::MeanRowDrift,
            };
            btu_config.replacement = match args.btu_replace {
                BtuReplace::Pad => Replacement::Pad,
                BtuReplace::Pretrained => Replacement::Pretrained,
            };
            btu_config.spare_clean_movers = args.btu_spare_clean_movers;
            let clock = Instant::now();
            let now = || clock.elapsed().as_secs_f64();
            let outcome = btu(loaded.model, &encoded, &clean, tokenizer, &btu_config, &device, &mut Bars::new(json), &now)?;
            let before = evaluate_on_test(&outcome.undefended)?;
            let log = outcome.report.train_log.clone();
            (outcome.purified, log, before, Some(outcome.report), None)
        }
    };
    let seconds_train = train_start.elapsed().as_secs_f64();
    let metrics = evaluate_on_test(&model)?;
    check_trained(&model, tokenizer, &train_rows, &device)?;
    let files = save_classifier(&model, &loaded.config, tokenizer, &labels.names)?;
    let report = TrainReport {
        base: model_dir.display().to_string(),
        data: args.data.display().to_string(),
        train_rows: encoded.len(),
        config,
        load: loaded.report,
        log,
        metrics,
        metrics_undefended,
        btu: btu_report,
        ep: ep_report,
        seconds_train,
        seconds_total: start.elapsed().as_secs_f64(),
    };
    let dir = out.commit_checkpoint(&files, &report, json)?;
    if !json {
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
    if let Some(b) = &report.btu {
        for r in &b.rounds {
            let tokens: Vec<&str> = r.flagged.iter().map(|s| s.token.as_str()).collect();
            println!("BTU round {} ({:.0} s): {}", r.round, r.seconds, tokens.join(" "));
        }
        let suspects: Vec<String> =
            b.suspicious.iter().filter(|s| !s.spared).map(|s| format!("{} ({}/{})", s.token, s.dims_replaced, b.hidden_size)).collect();
        println!("unlearned {} tokens (dimensions replaced): {}", suspects.len(), suspects.join(", "));
        if let Some(r) = &b.clean_round {
            let spared: Vec<&str> = b.suspicious.iter().filter(|s| s.spared).map(|s| s.token.as_str()).collect();
            println!("spared {} tokens the clean-split proxy also flagged ({:.0} s): {}", spared.len(), r.seconds, spared.join(" "));
        }
    }
    if let Some(ep) = &report.ep {
        let kept = if ep.config.keep_norm { " (norm kept)" } else { "" };
        println!(
            "EP: trained only the embedding row of {:?} (id {}) on {} rows with it; it moved by {:.4}, norm {:.4} → {:.4}{kept}",
            ep.trigger, ep.trigger_id, ep.rows, ep.shift, ep.norm_before, ep.norm_after
        );
    }
    if let Some(m) = &report.metrics_undefended {
        println!("without the defense:");
        print_metrics(m);
        println!("with the defense:");
    }
    if let Some(m) = &report.metrics {
        print_metrics(m);
    }
    println!("wrote {} ({:.0} s training, {:.0} s total)", dir.display(), report.seconds_train, report.seconds_total);
}
