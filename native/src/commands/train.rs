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
use crate::commands::eval::{check_label_names, check_trained, evaluate_if, print_metrics, SCORE_BATCH, TEST_SPLITS};
use crate::files::{classes_for, read_checkpoint, read_examples, resolve_model, DataDir, OutputDir};

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
    /// Score dev.tsv after each epoch on a seeded, stratified subset of this many rows (long
    /// dev sets, such as IMDb's, cost minutes an epoch on a CPU).
    #[arg(long)]
    pub dev_limit: Option<std::num::NonZeroUsize>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Defend against a backdoor hidden in the training data.
    #[arg(long, value_enum, default_value = "none")]
    pub defense: Defense,
    #[command(flatten)]
    pub btu: BtuArgs,
    #[command(flatten)]
    pub ep: EpArgs,
}

/// Settings of `--defense btu`; given without it, they are refused rather than ignored.
/// Unset ones take [`BtuConfig`]'s defaults (the paper's and the authors' code's).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "BTU (with --defense btu)")]
pub struct BtuArgs {
    /// Clean rows for the repair fine-tune (default: dev.tsv of --data). Never a test split.
    #[arg(long)]
    pub clean: Option<PathBuf>,
    /// Share of the vocabulary flagged per detection round [default: 0.0005, the authors' code].
    #[arg(long)]
    pub btu_alpha: Option<f64>,
    /// Detection rounds, 1 to 3 [default: 3].
    #[arg(long)]
    pub btu_rounds: Option<usize>,
    /// Epochs of the repair fine-tune on the clean rows [default: 1].
    #[arg(long)]
    pub btu_tune_epochs: Option<usize>,
    /// Eq. 7's threshold [default: frobenius].
    #[arg(long, value_enum)]
    pub btu_threshold: Option<Threshold>,
    /// What eq. 7 puts in a replaced dimension [default: pad].
    #[arg(long, value_enum)]
    pub btu_replace: Option<Replacement>,
    /// Not in the paper: leave out of unlearning the suspicious tokens that a proxy trained
    /// on the clean rows also flags (the task's own words; see docs/results.md).
    #[arg(long)]
    pub btu_spare_clean_movers: bool,
}

impl BtuArgs {
    /// The first BTU option given, by its flag.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.clean.is_some(), "--clean"),
            (self.btu_alpha.is_some(), "--btu-alpha"),
            (self.btu_rounds.is_some(), "--btu-rounds"),
            (self.btu_tune_epochs.is_some(), "--btu-tune-epochs"),
            (self.btu_threshold.is_some(), "--btu-threshold"),
            (self.btu_replace.is_some(), "--btu-replace"),
            (self.btu_spare_clean_movers, "--btu-spare-clean-movers"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    fn apply(&self, config: &mut BtuConfig) {
        config.alpha = self.btu_alpha.unwrap_or(config.alpha);
        config.rounds = self.btu_rounds.unwrap_or(config.rounds);
        config.tune.epochs = self.btu_tune_epochs.unwrap_or(config.tune.epochs);
        config.threshold = self.btu_threshold.unwrap_or(config.threshold);
        config.replacement = self.btu_replace.unwrap_or(config.replacement);
        config.spare_clean_movers = self.btu_spare_clean_movers;
    }
}

/// The EP attack's settings; `--ep-epochs` and `--ep-lr` without `--ep-trigger` are refused.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "EP attack")]
pub struct EpArgs {
    /// Train only this word's embedding row of the fine-tuned classifier --model, on the rows
    /// of train.tsv that contain it (poison them first, e.g. `bdaudit attack badnets --trigger
    /// WORD`). The word must be one token of the model's vocabulary. --epochs and --lr do not
    /// apply: see --ep-epochs and --ep-lr.
    #[arg(long)]
    pub ep_trigger: Option<String>,
    /// Epochs over the rows with the trigger [default: 5, OpenBackdoor's EP trainer].
    #[arg(long)]
    pub ep_epochs: Option<usize>,
    /// Learning rate of the trigger row [default: 1e-2, OpenBackdoor's].
    #[arg(long)]
    pub ep_lr: Option<f64>,
}

#[derive(Serialize)]
pub struct TrainReport {
    pub base: String,
    pub data: String,
    pub train_rows: usize,
    /// dev.tsv rows scored after each epoch (0 without dev.tsv, and with BTU or EP, which do
    /// not score it).
    pub dev_rows: usize,
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
    /// What the checks of the written model found (also printed on stderr): a model that
    /// gives all of its first training rows one class has likely collapsed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub seconds_train: f64,
    pub seconds_total: f64,
}

pub fn run<B: AutodiffBackend>(args: TrainArgs, device: B::Device, json: bool) -> Result<TrainReport> {
    let start = Instant::now();
    if args.ep.ep_trigger.is_some() && args.defense != Defense::None {
        bail!("--ep-trigger plants a backdoor and --defense removes one: use one of them");
    }
    if let Some(flag) = args.btu.first_given().filter(|_| args.defense != Defense::Btu) {
        bail!("{flag} is a setting of --defense btu, which this run does not use");
    }
    // Only plain fine-tuning scores dev.tsv per epoch (BTU repairs on it whole; EP ignores it).
    let plain = args.defense == Defense::None && args.ep.ep_trigger.is_none();
    if args.dev_limit.is_some() && !plain {
        bail!("--dev-limit sets how much of dev.tsv plain fine-tuning scores after each epoch; --defense btu and --ep-trigger do not score it");
    }
    if args.ep.ep_trigger.is_none() && (args.ep.ep_epochs.is_some() || args.ep.ep_lr.is_some()) {
        bail!("--ep-epochs and --ep-lr are settings of the EP attack: they need --ep-trigger");
    }
    let model_dir = resolve_model(&args.model)?;
    let data = DataDir::open(&args.data)?;
    let mut inputs = vec![model_dir.as_path(), args.data.as_path()];
    inputs.extend(args.btu.clean.as_deref());
    let out = OutputDir::prepare(&args.out, args.force, &inputs)?;
    let mut train_rows = data.split("train.tsv")?;
    if let Some(n) = args.limit {
        train_rows = subsample(&train_rows, n.get(), args.seed);
    }
    // BTU reads its clean rows (dev.tsv by default) itself, so only plain fine-tuning reads it here.
    let dev_rows = if plain { data.optional("dev.tsv")? } else { None }.map(|rows| match args.dev_limit {
        Some(n) => subsample(&rows, n.get(), args.seed),
        None => rows,
    });
    if args.dev_limit.is_some() && dev_rows.is_none() {
        bail!("--dev-limit subsamples dev.tsv, but {} has none", args.data.display());
    }
    let files = read_checkpoint(&model_dir)?;
    // The classes: labels.tsv's; else a classifier's own, whose rows may use only some of them;
    // else (a bare encoder) one per label up to the largest in train.tsv.
    let named = data.label_names()?;
    let num_labels = match &named {
        Some(set) => set.len(),
        None => classes_for(&files, &train_rows)?,
    };
    let source = data.file("train.tsv").display().to_string();
    check_labels(&train_rows, num_labels, &source)?;
    require_two_classes(&train_rows, &source)?;
    if let Some(rows) = &dev_rows {
        check_labels(rows, num_labels, &data.file("dev.tsv").display().to_string())?;
    }
    // Test sets are scored only after training: check them now so a bad one fails in seconds.
    for name in TEST_SPLITS {
        if let Some(rows) = data.optional(name)? {
            check_labels(&rows, num_labels, &data.file(name).display().to_string())?;
        }
    }

    let loaded = load_classifier::<B>(&files, Some(num_labels), args.max_len, args.seed, &device)?;
    // labels.tsv naming a trained head's classes in another order: EP keeps the head (it
    // trains one embedding row), so its output would score them swapped under labels.tsv's
    // names; a fine-tune retrains the head to labels.tsv's order, from a swapped start.
    if loaded.report.initialised.is_empty() {
        match check_label_names([&data], &loaded.labels) {
            Err(e) if args.ep.ep_trigger.is_none() => {
                eprintln!("note: {e:#}. Fine-tuning retrains the head to labels.tsv's order, starting from the swapped one.")
            }
            other => other?,
        }
    }
    let label_names = named.map_or_else(|| loaded.labels.clone(), |set| set.names);
    let tokenizer = &loaded.tokenizer;
    let dev = dev_rows.map(|rows| tokenizer.encode_all(&rows)).transpose()?;
    // The settings that run: EP trains one row with its own epochs and rate.
    let mut config = match &args.ep.ep_trigger {
        Some(_) => {
            let ep = EpConfig::with_seed(args.seed).train;
            TrainConfig { epochs: args.ep.ep_epochs.unwrap_or(ep.epochs), lr: args.ep.ep_lr.unwrap_or(ep.lr), ..ep }
        }
        None => TrainConfig { epochs: args.epochs, lr: args.lr, seed: args.seed, ..TrainConfig::default() },
    };
    args.batch.apply([&mut config]);
    let pad = tokenizer.pad_id();
    let has_test = TEST_SPLITS.iter().any(|f| data.has(f));
    let evaluate_on_test = |model: &_| evaluate_if(has_test.then_some(&data), model, tokenizer, &device, json);
    let train_start = Instant::now();
    let (model, log, metrics_undefended, btu_report, ep_report) = match (args.defense, &args.ep.ep_trigger) {
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
                embedding_poisoning(loaded.model, &train_rows, trigger, tokenizer, &ep_config, &device, &mut Bars::new(json))?;
            (model, report.log.clone(), None, None, Some(report))
        }
        (Defense::None, None) => {
            // The epoch callback cannot fail: a model whose outputs overflow is reported after.
            let mut failed = None;
            let encoded = tokenizer.encode_all(&train_rows)?;
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
            let clean_path = args.btu.clean.clone().unwrap_or_else(|| data.file("dev.tsv"));
            if !clean_path.is_file() {
                let problem = crate::files::unusable(&clean_path, "file");
                bail!("BTU repairs the model on clean rows: {} {problem} (pass --clean FILE)", clean_path.display());
            }
            // Repairing on the rows the defense is then scored on would overstate it.
            let clean_file = clean_path.canonicalize().ok();
            if let Some(name) = TEST_SPLITS.iter().find(|name| data.file(name).canonicalize().ok() == clean_file) {
                bail!(
                    "--clean {} is the data's {name}, which scores the defense: repair on other clean rows (dev.tsv by default)",
                    clean_path.display()
                );
            }
            let clean_rows = read_examples(&clean_path)?;
            let clean_source = clean_path.display().to_string();
            check_labels(&clean_rows, num_labels, &clean_source)?;
            require_two_classes(&clean_rows, &clean_source)?;
            let clean = tokenizer.encode_all(&clean_rows)?;
            let mut btu_config = BtuConfig::with_seed(args.seed);
            args.btu.apply(&mut btu_config);
            btu_config.train = config.clone();
            args.batch.apply([&mut btu_config.tune]);
            // Detection keeps the authors' batch sizes but follows --group-by-length.
            for c in [&mut btu_config.detect, &mut btu_config.proxy] {
                c.group_by_length = args.batch.group_by_length;
            }
            let clock = Instant::now();
            let now = || clock.elapsed().as_secs_f64();
            let encoded = tokenizer.encode_all(&train_rows)?;
            let outcome = btu(loaded.model, &encoded, &clean, tokenizer, &btu_config, &device, &mut Bars::new(json), &now)?;
            let before = evaluate_on_test(&outcome.undefended)?;
            let log = outcome.report.train_log.clone();
            (outcome.purified, log, before, Some(outcome.report), None)
        }
    };
    let seconds_train = train_start.elapsed().as_secs_f64();
    let metrics = evaluate_on_test(&model)?;
    let warnings = check_trained(&model, tokenizer, &train_rows, &device)?;
    let files = save_classifier(&model, &loaded.config, tokenizer, &label_names)?;
    let report = TrainReport {
        base: model_dir.display().to_string(),
        data: args.data.display().to_string(),
        train_rows: train_rows.len(),
        dev_rows: dev.as_ref().map_or(0, Vec::len),
        config,
        load: loaded.report,
        log,
        metrics,
        metrics_undefended,
        btu: btu_report,
        ep: ep_report,
        warnings,
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
        if ep.rows_past_max_len > 0 {
            println!("EP: {} more rows hold it only past --max-len, where the model never sees it: not trained on", ep.rows_past_max_len);
        }
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
