//! `bdaudit purify`: remove a backdoor from a downloaded checkpoint with clean data only.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bdaudit_core::augment::token_split::SplitRule;
use bdaudit_core::checkpoint::{load_classifier, save_classifier};
use bdaudit_core::data::{check_labels, require_two_classes, split_off, subsample, write_tsv};
use bdaudit_core::defense::mbtsad::{mbtsad, MbtsadConfig, MbtsadReport, Teacher};
use bdaudit_core::defense::pure::{
    pure, zero_pruned_heads, AttentionRows, FineTuned, KeepEpoch, LayerWeights, PureConfig, PureReport, ThresholdMode,
};
use bdaudit_core::metrics::EvalMetrics;
use bdaudit_core::model::BertClassifier;
use bdaudit_core::train::TrainConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::bar::Bars;
use crate::commands::batching::BatchArgs;
use crate::commands::eval::{check_label_names, check_trained, evaluate_if, print_metrics};
use crate::files::{read, read_checkpoint, resolve_model, DataDir, OutputDir};
use crate::provenance::{check_provenance, sha256_hex, PROVENANCE};

#[derive(Subcommand, Debug)]
pub enum Method {
    /// PURE: prune the attention heads a trigger hijacks, then fine-tune with attention
    /// normalisation (needs only clean data, no knowledge of the trigger).
    Pure(PureArgs),
    /// MBTSAD: retrain the suspect on token-split clean texts (the teacher), then distil the
    /// teacher's attention and hidden states into the suspect (a share of the clean training
    /// data, no pre-trained weights, no knowledge of the trigger).
    Mbtsad(MbtsadArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Layout {
    /// Full-size layers with the pruned heads' weights zeroed: loads in every `transformers`
    /// version (5 dropped head pruning) and gives identical logits.
    Zeroed,
    /// Pruned heads removed from the weights and listed in config.json's `pruned_heads`
    /// (`transformers` 4 and bdaudit load it).
    Sliced,
}

#[derive(Args, Debug)]
pub struct PureArgs {
    /// The suspect checkpoint directory.
    #[arg(long)]
    pub model: String,
    /// Clean data directory: train.tsv, and dev.tsv for validation (else 10% of train.tsv).
    #[arg(long)]
    pub clean: PathBuf,
    /// Optional test directory (test.tsv, test-asr.tsv, test-pacc.tsv from `bdaudit attack`)
    /// scored before and after.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// Accuracy threshold c of the greedy pruning, in (0, 1].
    #[arg(long, default_value_t = 0.85)]
    pub c: f64,
    #[arg(long, value_enum, default_value_t = PureConfig::default().threshold_mode)]
    pub threshold: ThresholdMode,
    /// Heads pruned per greedy step (authors' code: 10).
    #[arg(long, default_value_t = 10)]
    pub heads_per_step: usize,
    /// μ of the attention-normalisation loss (0: prune only).
    #[arg(long, default_value_t = 0.15)]
    pub mu: f64,
    /// More μ values to try, comma-separated (e.g. 0.5,1,2): the normalisation fine-tune runs
    /// once per μ and keeps the largest whose validation accuracy is within --mu-tolerance of
    /// the fine-tuned suspect's.
    // A list may start with a minus (`--mu-search -1,2`), which is not a number as a whole, so
    // main's negative-number rule does not cover it: the value reaches the setting's check.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub mu_search: Vec<f64>,
    /// Validation accuracy (a share, 0.01 = 1 point) a searched μ may cost.
    #[arg(long, default_value_t = PureConfig::default().mu_tolerance, requires = "mu_search")]
    pub mu_tolerance: f64,
    /// Skip pruning (normalisation only; an ablation). The pruning settings then do not apply.
    #[arg(long, conflicts_with_all = ["c", "threshold", "heads_per_step"])]
    pub no_prune: bool,
    /// Start from the suspect's encoder under a new, seeded classifier head, as the paper's
    /// defender does with a downloaded pre-trained model (default: keep a classifier's head).
    #[arg(long)]
    pub fresh_head: bool,
    /// How the normalisation loss weighs the layers.
    #[arg(long, value_enum, default_value_t = PureConfig::default().layer_weights)]
    pub layer_weights: LayerWeights,
    /// Which query rows of each head's attention the normalisation loss penalises.
    #[arg(long, value_enum, default_value_t = PureConfig::default().attention_rows)]
    pub attention_rows: AttentionRows,
    /// Which epoch of the normalisation fine-tune to keep.
    #[arg(long, value_enum, default_value_t = PureConfig::default().keep_epoch)]
    pub keep_epoch: KeepEpoch,
    /// f_p, step 1's fine-tuned suspect, from an earlier run instead of fine-tuning it again:
    /// the `finetuned/` that --save-finetuned wrote with the same suspect, clean data, --limit,
    /// --seed, --epochs, --lr, batching, --max-len and --fresh-head (PURE, prune-only and
    /// norm-only can so share one step 1). One written from other inputs is refused (its
    /// provenance.json); any other checkpoint is used with a warning.
    #[arg(long)]
    pub finetuned: Option<String>,
    /// Also write f_p to OUT/finetuned/ (a checkpoint, with a provenance.json naming what it
    /// was made from).
    #[arg(long)]
    pub save_finetuned: bool,
    /// Epochs of each of the two fine-tunes.
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
    /// Use a seeded, stratified subset of this many clean training rows.
    #[arg(long)]
    pub limit: Option<std::num::NonZeroUsize>,
    #[arg(long, value_enum, default_value = "zeroed")]
    pub layout: Layout,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct MbtsadArgs {
    /// The suspect checkpoint directory.
    #[arg(long)]
    pub model: String,
    /// Clean data directory: train.tsv, of which --clean-fraction is used.
    #[arg(long)]
    pub clean: PathBuf,
    /// Share of train.tsv the defender uses, in (0, 1]: a seeded, stratified subsample (the
    /// paper: 0.2).
    #[arg(long, default_value_t = MbtsadConfig::default().clean_fraction)]
    pub clean_fraction: f64,
    /// Optional test directory (test.tsv, test-asr.tsv, test-pacc.tsv from `bdaudit attack`):
    /// the suspect, the teacher and the purified model are scored on it.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// α, the weight of the classification loss in the distillation (the paper tunes it per
    /// attack and gives no value).
    #[arg(long, default_value_t = MbtsadConfig::default().alpha)]
    pub alpha: f64,
    /// β, the weight of the hidden-state loss in the distillation (likewise unpublished).
    #[arg(long, default_value_t = MbtsadConfig::default().beta)]
    pub beta: f64,
    /// Token-split variants made of each clean text (the paper: 3).
    #[arg(long, default_value_t = MbtsadConfig::default().split.variants)]
    pub variants: usize,
    /// Which words of a text are split and how many.
    #[arg(long, value_enum, default_value_t = MbtsadConfig::default().split.rule)]
    pub split_rule: SplitRule,
    /// A teacher checkpoint to distil from instead of retraining one, e.g. the `teacher/` that
    /// --save-teacher wrote in an earlier run on the same suspect, clean data, fraction and
    /// seed: compares distillation settings against one teacher. --epochs and --lr are unused.
    /// A teacher --save-teacher wrote is refused if it was made from other inputs (its
    /// provenance.json); any other checkpoint is used with a warning.
    #[arg(long, conflicts_with_all = ["epochs", "lr"])]
    pub teacher: Option<String>,
    /// Also write the teacher to OUT/teacher/ (a checkpoint like the purified one, with a
    /// provenance.json naming what it was made from).
    #[arg(long)]
    pub save_teacher: bool,
    /// Also write the split texts both steps trained on to OUT/splits.tsv.
    #[arg(long)]
    pub save_splits: bool,
    /// Epochs of retraining the suspect into the teacher.
    #[arg(long, default_value_t = MbtsadConfig::default().teacher.epochs)]
    pub epochs: usize,
    /// Learning rate of the teacher's retraining (the paper: 2e-5).
    #[arg(long, default_value_t = MbtsadConfig::default().teacher.lr)]
    pub lr: f64,
    /// Epochs of the distillation.
    #[arg(long, default_value_t = MbtsadConfig::default().distill.epochs)]
    pub distill_epochs: usize,
    /// Learning rate of the distillation (the paper: 5e-4).
    #[arg(long, default_value_t = MbtsadConfig::default().distill.lr)]
    pub distill_lr: f64,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Seeds the clean subsample, the splits and both trainings.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seeds the distillation's batch order and dropout alone (default: --seed). With
    /// --teacher, the same rows, splits and teacher distilled under several seeds show how much
    /// of a result the distillation's own randomness accounts for.
    #[arg(long)]
    pub distill_seed: Option<u64>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize)]
struct PurifyReport {
    method: &'static str,
    model: String,
    clean: String,
    train_rows: usize,
    val_rows: usize,
    /// The suspect model as downloaded.
    metrics_suspect: Option<EvalMetrics>,
    /// f_p's checkpoint when --finetuned gave one (else step 1 fine-tuned it here).
    finetuned: Option<String>,
    /// Whether a given f_p's provenance.json matched this run (false: it had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    finetuned_provenance_checked: Option<bool>,
    /// Plain fine-tuning on the clean rows (PURE's step 1; the "FT" baseline).
    metrics_finetuned: Option<EvalMetrics>,
    /// The purified model written to --out.
    metrics: Option<EvalMetrics>,
    pure: PureReport,
    /// What the checks of the written model found (also printed on stderr): a model that
    /// gives all of its first training rows one class has likely collapsed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    seconds_total: f64,
}

pub fn run<B: AutodiffBackend>(method: Method, device: B::Device, json: bool) -> Result<()> {
    match method {
        Method::Pure(args) => run_pure::<B>(args, device, json),
        Method::Mbtsad(args) => run_mbtsad::<B>(args, device, json),
    }
}

fn run_pure<B: AutodiffBackend>(args: PureArgs, device: B::Device, json: bool) -> Result<()> {
    let start = Instant::now();
    let model_dir = resolve_model(&args.model)?;
    let clean = DataDir::open(&args.clean)?;
    let test = args.test.as_deref().map(DataDir::open).transpose()?;
    let finetuned_dir = args.finetuned.as_deref().map(resolve_model).transpose()?;
    let mut inputs: Vec<&Path> = vec![model_dir.as_path(), args.clean.as_path()];
    inputs.extend(args.test.as_deref());
    inputs.extend(finetuned_dir.as_deref());
    let out = OutputDir::prepare(&args.out, args.force, &inputs)?;

    let mut train_rows = clean.split("train.tsv")?;
    if let Some(n) = args.limit {
        train_rows = subsample(&train_rows, n.get(), args.seed);
    }
    let (train_rows, val_rows) = match clean.optional("dev.tsv")? {
        Some(val) => (train_rows, val),
        None => split_off(train_rows, 0.1, args.seed),
    };
    let source = clean.file("train.tsv").display().to_string();
    require_two_classes(&train_rows, &source)?;
    let files = read_checkpoint(&model_dir)?;
    let loaded = load_classifier::<B>(&files, None, args.max_len, args.seed, &device)?;
    check_label_names(std::iter::once(&clean).chain(&test), &loaded.labels)?;
    let num_labels = loaded.model.num_labels();
    check_labels(&train_rows, num_labels, &source)?;
    check_labels(&val_rows, num_labels, "validation rows")?;
    let tokenizer = &loaded.tokenizer;
    let train = tokenizer.encode_all(&train_rows)?;
    let val = tokenizer.encode_all(&val_rows)?;

    let mut config = PureConfig::with_seed(args.seed);
    config.accuracy_threshold = args.c;
    config.threshold_mode = args.threshold;
    config.heads_per_step = args.heads_per_step;
    config.mu = args.mu;
    config.mu_search = args.mu_search;
    config.mu_tolerance = args.mu_tolerance;
    for c in [&mut config.finetune, &mut config.tune] {
        c.epochs = args.epochs;
        c.lr = args.lr;
    }
    args.batch.apply([&mut config.finetune, &mut config.tune]);
    config.prune = !args.no_prune;
    config.fresh_head = args.fresh_head;
    config.layer_weights = args.layer_weights;
    config.attention_rows = args.attention_rows;
    config.keep_epoch = args.keep_epoch;
    config.validate()?;

    // Hashing the inputs is needed only to check a given f_p or record a saved one.
    let provenance = (finetuned_dir.is_some() || args.save_finetuned)
        .then(|| -> Result<FinetuneProvenance> {
            Ok(FinetuneProvenance {
                suspect_sha256: sha256_hex(&files.model),
                clean_train_sha256: sha256_hex(&read(&clean.file("train.tsv"))?),
                limit: args.limit.map(|n| n.get()),
                fresh_head: config.fresh_head,
                max_len: args.max_len,
                finetune: config.finetune.clone(),
            })
        })
        .transpose()?;
    let (finetuned, finetuned_provenance_checked) = match finetuned_dir.as_deref().zip(provenance.as_ref()) {
        None => (FineTuned::Train, None),
        Some((dir, provenance)) => {
            let (given, checked) = load_saved(dir, &FINETUNED, provenance, &loaded.model, args.max_len, args.seed, &device)?;
            (FineTuned::Given(Box::new(given)), Some(checked))
        }
    };

    let score = |model: &_| evaluate_if(test.as_ref(), model, tokenizer, &device, json);
    let metrics_suspect = score(&burn::module::AutodiffModule::valid(&loaded.model))?;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64();
    let outcome =
        pure(loaded.model, finetuned, &loaded.config, &train, &val, tokenizer.pad_id(), &config, &device, &mut Bars::new(json), &now)?;
    let metrics_finetuned = score(&outcome.undefended)?;
    let metrics = score(&outcome.purified)?;
    if args.save_finetuned {
        out.write_checkpoint("finetuned", &save_classifier(&outcome.undefended, &loaded.config, tokenizer, &loaded.labels)?)?;
        out.write_json(&format!("finetuned/{PROVENANCE}"), &provenance)?;
    }

    let (model, model_config) = match args.layout {
        Layout::Zeroed => zero_pruned_heads(outcome.purified, &outcome.config)?,
        Layout::Sliced => (outcome.purified, outcome.config),
    };
    let warnings = check_trained(&model, tokenizer, &train_rows, &device)?;
    let written = save_classifier(&model, &model_config, tokenizer, &loaded.labels)?;
    let report = PurifyReport {
        method: "pure",
        model: model_dir.display().to_string(),
        clean: args.clean.display().to_string(),
        train_rows: train.len(),
        val_rows: val.len(),
        metrics_suspect,
        finetuned: finetuned_dir.map(|d| d.display().to_string()),
        finetuned_provenance_checked,
        metrics_finetuned,
        metrics,
        pure: outcome.report,
        warnings,
        seconds_total: start.elapsed().as_secs_f64(),
    };
    let dir = out.commit_checkpoint(&written, &report, json)?;
    if json {
        return Ok(());
    }
    let p = &report.pure;
    let pruned: usize = p.pruning.pruned.iter().map(Vec::len).sum();
    if let Some(dir) = &report.finetuned {
        println!("step 1 skipped: the fine-tuned model is {dir}");
    }
    println!("pruned {pruned} heads: {:?}", p.pruned_heads);
    if p.config.prune && p.pruning.base_accuracy < p.pruning.floor {
        println!(
            "(nothing could be pruned: the fine-tuned model's validation accuracy {:.2}% is already below the floor {:.2}%; lower --c, or pass --threshold relative)",
            100.0 * p.pruning.base_accuracy,
            100.0 * p.pruning.floor
        );
    }
    if p.mu_trials.len() > 1 {
        for t in &p.mu_trials {
            println!("μ {}: validation accuracy {:.2}% (epoch {})", t.mu, 100.0 * t.kept_accuracy, t.kept_epoch);
        }
    }
    println!(
        "validation accuracy: unpruned {:.2}%, after tuning with μ {} {:.2}% (epoch {}, the {} kept)",
        100.0 * p.pruning.base_accuracy,
        p.mu,
        100.0 * p.kept_accuracy,
        p.kept_epoch,
        match p.config.keep_epoch {
            KeepEpoch::Best => "best",
            KeepEpoch::Last => "last",
        }
    );
    for (name, m) in [("suspect", &report.metrics_suspect), ("fine-tuned", &report.metrics_finetuned), ("purified", &report.metrics)] {
        if let Some(m) = m {
            println!("{name}:");
            print_metrics(m);
        }
    }
    if report.metrics.is_none() {
        println!("(pass --test DIR with test.tsv / test-asr.tsv to measure CACC and LFR before and after)");
    }
    println!("wrote {} ({:.0} s)", dir.display(), report.seconds_total);
    Ok(())
}

#[derive(Serialize)]
struct MbtsadPurifyReport {
    method: &'static str,
    model: String,
    clean: String,
    /// The suspect model as downloaded.
    metrics_suspect: Option<EvalMetrics>,
    /// The teacher's checkpoint when --teacher gave one (else it was retrained here).
    teacher: Option<String>,
    /// Whether a given teacher's provenance.json matched this run (false: it had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    teacher_provenance_checked: Option<bool>,
    /// The teacher: the suspect retrained on the split texts (the paper's "TS-FT" baseline).
    metrics_teacher: Option<EvalMetrics>,
    /// The purified student written to --out.
    metrics: Option<EvalMetrics>,
    mbtsad: MbtsadReport,
    /// What the checks of the written model found (also printed on stderr): a model that
    /// gives all of its first training rows one class has likely collapsed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    seconds_total: f64,
}

/// A model an earlier run saved to stand in for one of a defense's steps.
struct Saved {
    what: &'static str,
    /// The option that saves one.
    saved_by: &'static str,
    /// What to do when its provenance does not match this run.
    redo: &'static str,
}

const TEACHER: Saved = Saved {
    what: "teacher",
    saved_by: "--save-teacher",
    redo: "give the same suspect, clean data, --clean-fraction, --seed, --split-rule, --variants and --max-len, or drop --teacher to retrain it",
};

const FINETUNED: Saved = Saved {
    what: "fine-tuned model",
    saved_by: "--save-finetuned",
    redo: "give the same suspect, clean data, --limit, --seed, --epochs, --lr, batching, --max-len and --fresh-head, or drop --finetuned to fine-tune again",
};

/// Loads the `saved` model in `dir`, refusing one whose shape differs from the `suspect`'s (it
/// is the suspect trained further) or whose provenance.json records other inputs than this
/// run's; the bool says whether it had a provenance to check. No head count is asked for: a
/// checkpoint without a classifier is refused, not given a random head.
fn load_saved<B: Backend, T: Serialize>(
    dir: &Path,
    saved: &Saved,
    provenance: &T,
    suspect: &BertClassifier<impl Backend>,
    max_len: usize,
    seed: u64,
    device: &B::Device,
) -> Result<(BertClassifier<B>, bool)> {
    let what = saved.what;
    let given =
        load_classifier::<B>(&read_checkpoint(dir)?, None, max_len, seed, device).with_context(|| format!("{what} {}", dir.display()))?;
    if let Some(d) = given.model.shape_difference(suspect) {
        bail!("{what} {} differs from the suspect in {}: it has {}, the suspect {}", dir.display(), d.what, d.this, d.other);
    }
    let checked = check_provenance(provenance, dir, what, saved.saved_by, saved.redo)?;
    Ok((given.model, checked))
}

/// What f_p was made from: PURE's step 1 gives the same model only for the same suspect (and
/// head), training rows and fine-tune settings.
#[derive(Serialize)]
struct FinetuneProvenance {
    suspect_sha256: String,
    clean_train_sha256: String,
    limit: Option<usize>,
    fresh_head: bool,
    max_len: usize,
    // Flat, so that a refusal names the one setting that differs (`seed`, `lr`).
    #[serde(flatten)]
    finetune: TrainConfig,
}

/// What a teacher was made from: distilling from it is the same experiment as retraining it
/// only for the same suspect, clean rows, subsample and splits (the distillation trains on the
/// splits it draws again from these).
#[derive(Serialize, Deserialize)]
struct TeacherProvenance {
    suspect_sha256: String,
    clean_train_sha256: String,
    clean_fraction: f64,
    seed: u64,
    split_rule: SplitRule,
    variants: usize,
    max_len: usize,
}

fn run_mbtsad<B: AutodiffBackend>(args: MbtsadArgs, device: B::Device, json: bool) -> Result<()> {
    let start = Instant::now();
    let model_dir = resolve_model(&args.model)?;
    let clean = DataDir::open(&args.clean)?;
    let test = args.test.as_deref().map(DataDir::open).transpose()?;
    let teacher_dir = args.teacher.as_deref().map(resolve_model).transpose()?;
    let mut inputs: Vec<&Path> = vec![model_dir.as_path(), args.clean.as_path()];
    inputs.extend(args.test.as_deref());
    inputs.extend(teacher_dir.as_deref());
    let out = OutputDir::prepare(&args.out, args.force, &inputs)?;

    let mut config = MbtsadConfig::with_seed(args.seed);
    config.clean_fraction = args.clean_fraction;
    config.alpha = args.alpha;
    config.beta = args.beta;
    config.split.variants = args.variants;
    config.split.rule = args.split_rule;
    config.teacher.epochs = args.epochs;
    config.teacher.lr = args.lr;
    config.distill.epochs = args.distill_epochs;
    config.distill.lr = args.distill_lr;
    config.distill.seed = args.distill_seed.unwrap_or(args.seed);
    args.batch.apply([&mut config.teacher, &mut config.distill]);
    config.validate()?;

    let rows = clean.split("train.tsv")?;
    let source = clean.file("train.tsv").display().to_string();
    require_two_classes(&rows, &source)?;
    let files = read_checkpoint(&model_dir)?;
    let loaded = load_classifier::<B>(&files, None, args.max_len, args.seed, &device)?;
    check_label_names(std::iter::once(&clean).chain(&test), &loaded.labels)?;
    check_labels(&rows, loaded.model.num_labels(), &source)?;
    let tokenizer = &loaded.tokenizer;
    // Hashing the inputs is needed only to check a given teacher or record a saved one.
    let provenance = (teacher_dir.is_some() || args.save_teacher)
        .then(|| -> Result<TeacherProvenance> {
            Ok(TeacherProvenance {
                suspect_sha256: sha256_hex(&files.model),
                clean_train_sha256: sha256_hex(&read(&clean.file("train.tsv"))?),
                clean_fraction: config.clean_fraction,
                seed: args.seed,
                split_rule: config.split.rule,
                variants: config.split.variants,
                max_len: args.max_len,
            })
        })
        .transpose()?;
    let (teacher, teacher_provenance_checked) = match teacher_dir.as_deref().zip(provenance.as_ref()) {
        None => (Teacher::Retrain, None),
        Some((dir, provenance)) => {
            let (given, checked) = load_saved(dir, &TEACHER, provenance, &loaded.model, args.max_len, args.seed, &device)?;
            (Teacher::Given(Box::new(given)), Some(checked))
        }
    };

    let score = |model: &_| evaluate_if(test.as_ref(), model, tokenizer, &device, json);
    let metrics_suspect = score(&burn::module::AutodiffModule::valid(&loaded.model))?;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64();
    let outcome = mbtsad(loaded.model, teacher, &rows, tokenizer, &config, &device, &mut Bars::new(json), &now)
        .with_context(|| format!("MBTSAD with {source}"))?;
    let metrics_teacher = score(&outcome.teacher)?;
    let metrics = score(&outcome.purified)?;

    if args.save_teacher {
        out.write_checkpoint("teacher", &save_classifier(&outcome.teacher, &loaded.config, tokenizer, &loaded.labels)?)?;
        out.write_json(&format!("teacher/{PROVENANCE}"), &provenance)?;
    }
    if args.save_splits {
        out.write("splits.tsv", &write_tsv(&outcome.splits)?)?;
    }
    let warnings = check_trained(&outcome.purified, tokenizer, &rows, &device)?;
    let written = save_classifier(&outcome.purified, &loaded.config, tokenizer, &loaded.labels)?;
    let report = MbtsadPurifyReport {
        method: "mbtsad",
        model: model_dir.display().to_string(),
        clean: args.clean.display().to_string(),
        teacher: teacher_dir.map(|d| d.display().to_string()),
        teacher_provenance_checked,
        metrics_suspect,
        metrics_teacher,
        metrics,
        mbtsad: outcome.report,
        warnings,
        seconds_total: start.elapsed().as_secs_f64(),
    };
    let dir = out.commit_checkpoint(&written, &report, json)?;
    if json {
        return Ok(());
    }
    let m = &report.mbtsad;
    println!(
        "{} of {} clean rows, {} split texts ({} rows with no word to split, copied)",
        m.clean_rows, m.available_rows, m.augmented_rows, m.unsplit_rows
    );
    // One of the two: a retrained teacher has a log, a given one a directory.
    for e in m.teacher_log.iter().flat_map(|log| &log.epochs) {
        println!("teacher epoch {}: loss {:.4}", e.epoch, e.mean_loss);
    }
    if let Some(dir) = &report.teacher {
        println!("teacher: {dir}");
    }
    for (e, total) in m.distill_epochs.iter().zip(&m.distill_log.epochs) {
        println!(
            "distillation epoch {}: loss {:.4} (L_a {:.4}, L_cls {:.4}, L_h {:.4})",
            e.epoch, total.mean_loss, e.attention_loss, e.cls_loss, e.hidden_loss
        );
    }
    for (name, m) in [("suspect", &report.metrics_suspect), ("teacher (TS-FT)", &report.metrics_teacher), ("purified", &report.metrics)] {
        if let Some(m) = m {
            println!("{name}:");
            print_metrics(m);
        }
    }
    if report.metrics.is_none() {
        println!("(pass --test DIR with test.tsv / test-asr.tsv to measure CACC and ASR before and after)");
    }
    println!("wrote {} ({:.0} s)", dir.display(), report.seconds_total);
    Ok(())
}
