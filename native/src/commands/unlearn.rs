//! `bdaudit unlearn`: remove identified poisoned samples from a trained model (RGA, and the GA
//! and NPO baselines), and show whether the trigger was removed or only shifted (PACC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bdaudit_core::checkpoint::{load_classifier, save_classifier};
use bdaudit_core::defense::rga::{check_base, unlearn, Method, RgaConfig, UnlearnEpoch};
use bdaudit_core::metrics::{self, EvalMetrics};
use bdaudit_core::train::{check_examples, TrainConfig, TrainLog};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::bar::Bars;
use crate::commands::batching::BatchArgs;
use crate::commands::eval::{check_label_names, check_trained, evaluate_if, print_metrics, reference_pacc, test_sha256, SCORE_BATCH};
use crate::files::{read_checkpoint, read_examples, resolve_model, DataDir, OutputDir};
use crate::plot::{line_chart, Series};
use crate::provenance::{checkpoint_sha256, differences};

#[derive(Args, Debug)]
pub struct UnlearnArgs {
    #[arg(value_enum)]
    pub method: Method,
    /// The poisoned checkpoint directory (also the frozen reference of eq. 7).
    #[arg(long)]
    pub model: String,
    /// The identified poisoned training rows, with the labels they were trained on (TSV);
    /// `bdaudit attack` writes them as train-poisoned.tsv.
    #[arg(long)]
    pub forget: PathBuf,
    /// Clean training rows to keep (TSV); `bdaudit attack` writes train-clean.tsv.
    #[arg(long)]
    pub retain: PathBuf,
    /// The clean pre-trained encoder the model was fine-tuned from (`minilm` or a directory):
    /// RGA's L2 anchor. Required by `rga` unless --beta 0; refused by `ga` and `npo`, which
    /// do not use it.
    #[arg(long)]
    pub base: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    /// Optional test directory (test.tsv, test-asr.tsv, test-pacc.tsv from `bdaudit attack`)
    /// scored before and after.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// A model retrained on clean data only: its PACC gives ΔPACC before and after (needs --test).
    #[arg(long)]
    pub reference: Option<String>,
    /// Take the scores before unlearning (and the reference's PACC) from an earlier `bdaudit
    /// unlearn` report instead of computing them again: GA, NPO and RGA on one poisoned model
    /// share them (on AG News they are 28,500 rows of inference). Refused unless that run
    /// scored the same model, --test files, --reference and --max-len.
    #[arg(long, requires = "test")]
    pub before_from: Option<PathBuf>,
    /// Epochs over the forget set (paper: up to 30).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// rga: α of the adaptive weight λ = exp(−α·KL) [default: 2, the paper's].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// rga: β of the L2 anchor to --base [default: 0.01, the paper's].
    #[arg(long)]
    pub beta: Option<f64>,
    /// npo: its β [default: 1].
    #[arg(long)]
    pub npo_beta: Option<f64>,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// report.json of `bdaudit unlearn`; `bdaudit plot` reads it back.
#[derive(Serialize, Deserialize)]
pub struct UnlearnReport {
    pub method: Method,
    pub model: String,
    pub forget: String,
    pub retain: String,
    pub base: Option<String>,
    pub forget_rows: usize,
    pub retain_rows: usize,
    pub config: RgaConfig,
    /// Mean forget-set cross-entropy and λ per epoch (the curve RGA's Figure 2 plots).
    pub epochs: Vec<UnlearnEpoch>,
    pub log: TrainLog,
    pub metrics_before: Option<EvalMetrics>,
    /// What `metrics_before` and `reference_pacc` were computed from (absent without --test,
    /// and in reports of bdaudit before 2026-12-05).
    #[serde(default)]
    pub scored: Option<ScoreInputs>,
    /// The report they were copied from, when --before-from was given.
    #[serde(default)]
    pub before_from: Option<String>,
    pub metrics_after: Option<EvalMetrics>,
    pub reference_pacc: Option<f64>,
    pub delta_pacc_before: Option<f64>,
    pub delta_pacc_after: Option<f64>,
    pub seconds_unlearn: f64,
    /// What the checks of the written model found (also printed on stderr): a model that
    /// gives all of its first training rows one class has likely collapsed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub seconds_total: f64,
}

/// The inputs the scores before unlearning depend on; two runs with equal ones on the same
/// `--device` have equal scores (the inference is deterministic; another backend can differ on
/// a row at a decision boundary, so reuse also compares the report's `machine.device`).
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub struct ScoreInputs {
    /// Of the poisoned checkpoint's weights, config and tokenizer together.
    pub model_sha256: String,
    /// Of each test split scored.
    pub test_sha256: BTreeMap<String, String>,
    pub reference_sha256: Option<String>,
    pub max_len: usize,
}

impl ScoreInputs {
    /// `metrics_before` and `reference_pacc` of the report at `path`, refused unless it scored
    /// the same inputs as this run on the same device.
    fn reuse(&self, path: &Path) -> Result<(Option<EvalMetrics>, Option<f64>)> {
        let not_a_report = || format!("--before-from {} is not a report.json written by `bdaudit unlearn`", path.display());
        let value: serde_json::Value = serde_json::from_slice(&crate::files::read(path)?).with_context(not_a_report)?;
        let their_machine = value.get("machine").cloned().unwrap_or_default();
        let earlier: UnlearnReport = serde_json::from_value(value).with_context(not_a_report)?;
        let Some(theirs) = earlier.scored else {
            bail!(
                "--before-from {} does not record what it scored (no --test, or an older bdaudit): run without --before-from",
                path.display()
            );
        };
        let mut differ = differences(self, &serde_json::to_value(&theirs)?, "that report")?;
        differ.extend(differences(&serde_json::json!({ "device": crate::machine::device() }), &their_machine, "that report")?);
        if !differ.is_empty() {
            bail!(
                "--before-from {} scored other inputs than this run ({}); give the same --model, --test, --reference, --max-len and --device, or drop --before-from",
                path.display(),
                differ.join("; ")
            );
        }
        Ok((earlier.metrics_before, earlier.reference_pacc))
    }
}

pub fn run<B: AutodiffBackend>(args: UnlearnArgs, device: B::Device, json: bool) -> Result<()> {
    let start = Instant::now();
    // Settings of another method would be recorded in the report as if they had been used;
    // refused before any file is looked at, so the refusal is what a user sees.
    let name = args.method.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    if args.method != Method::Rga && (args.alpha.is_some() || args.beta.is_some()) {
        anyhow::bail!("--alpha and --beta are settings of rga, not of {name}");
    }
    if args.method != Method::Npo && args.npo_beta.is_some() {
        anyhow::bail!("--npo-beta is a setting of npo, not of {name}");
    }
    if args.method != Method::Rga && args.base.is_some() {
        anyhow::bail!("--base is rga's anchor; {name} does not use it");
    }
    let model_dir = resolve_model(&args.model)?;
    let base_dir = args.base.as_deref().map(resolve_model).transpose()?;
    let test = args.test.as_deref().map(DataDir::open).transpose()?;
    if args.reference.is_some() && test.is_none() {
        anyhow::bail!("--reference compares PACC on the test set: pass --test DIR too");
    }
    let reference_dir = args.reference.as_deref().map(resolve_model).transpose()?;
    let mut inputs: Vec<&Path> = vec![model_dir.as_path(), args.forget.as_path(), args.retain.as_path()];
    inputs.extend(base_dir.as_deref());
    inputs.extend(args.test.as_deref());
    inputs.extend(reference_dir.as_deref());
    inputs.extend(args.before_from.as_deref());
    let out = OutputDir::prepare(&args.out, args.force, &inputs)?;

    let defaults = RgaConfig::default();
    let mut config = RgaConfig {
        method: args.method,
        alpha: args.alpha.unwrap_or(defaults.alpha),
        beta: args.beta.unwrap_or(defaults.beta),
        npo_beta: args.npo_beta.unwrap_or(defaults.npo_beta),
        train: TrainConfig { epochs: args.epochs, lr: args.lr, seed: args.seed, ..TrainConfig::default() },
    };
    args.batch.apply([&mut config.train]);
    config.validate()?;
    let forget_rows = read_examples(&args.forget)?;
    let retain_rows = read_examples(&args.retain)?;

    let model_files = read_checkpoint(&model_dir)?;
    let loaded = load_classifier::<B>(&model_files, None, args.max_len, args.seed, &device)?;
    check_label_names(&test, &loaded.labels)?;
    let tokenizer = &loaded.tokenizer;
    let (num_labels, vocab) = (loaded.model.num_labels(), loaded.model.vocab_size());
    let forget = tokenizer.encode_all(&forget_rows)?;
    let retain = tokenizer.encode_all(&retain_rows)?;
    check_examples(&forget, num_labels, vocab).with_context(|| format!("forget set {}", args.forget.display()))?;
    check_examples(&retain, num_labels, vocab).with_context(|| format!("retain set {}", args.retain.display()))?;
    let base = match &base_dir {
        Some(dir) => {
            let b = load_classifier::<B::InnerBackend>(&read_checkpoint(dir)?, Some(num_labels), args.max_len, args.seed, &device)
                .with_context(|| format!("loading the base checkpoint {}", dir.display()))?;
            check_base(&loaded.config, tokenizer, &b.config, &b.tokenizer)?;
            Some(b.model.bert)
        }
        None => None,
    };

    let score = |model: &_| evaluate_if(test.as_ref(), model, tokenizer, &device, json);
    let reference_files = reference_dir.as_deref().map(read_checkpoint).transpose()?;
    let scored = test
        .as_ref()
        .map(|t| -> Result<ScoreInputs> {
            Ok(ScoreInputs {
                model_sha256: checkpoint_sha256(&model_files),
                test_sha256: test_sha256(t)?,
                reference_sha256: reference_files.as_ref().map(checkpoint_sha256),
                max_len: args.max_len,
            })
        })
        .transpose()?;
    let (metrics_before, reference_pacc) = match (&args.before_from, &scored) {
        (Some(path), Some(inputs)) => inputs.reuse(path)?,
        _ => {
            let reference_pacc = match (&reference_files, &test) {
                (Some(files), Some(t)) => {
                    let r = load_classifier::<B::InnerBackend>(files, Some(num_labels), args.max_len, 0, &device)?;
                    Some(reference_pacc(&r.model, &r.tokenizer, t, SCORE_BATCH, &device, json)?)
                }
                _ => None,
            };
            (score(&loaded.model.valid())?, reference_pacc)
        }
    };

    let clock = Instant::now();
    let (model, outcome) =
        unlearn(loaded.model, base.as_ref(), &forget, &retain, tokenizer.pad_id(), &config, &device, &mut Bars::new(json))?;
    let seconds_unlearn = clock.elapsed().as_secs_f64();
    let metrics_after = score(&model)?;
    let delta = |m: &Option<EvalMetrics>| reference_pacc.zip(m.as_ref().and_then(|m| m.pacc)).map(|(r, p)| metrics::delta_pacc(p, r));

    // On the retain rows: the forget rows all carry the target label, and a model that unlearned
    // them gives them all one other class, which would read as a collapse.
    let warnings = check_trained(&model, tokenizer, &retain_rows, &device)?;
    let written = save_classifier(&model, &loaded.config, tokenizer, &loaded.labels)?;
    let report = UnlearnReport {
        method: args.method,
        model: model_dir.display().to_string(),
        forget: args.forget.display().to_string(),
        retain: args.retain.display().to_string(),
        base: base_dir.map(|d| d.display().to_string()),
        forget_rows: forget.len(),
        retain_rows: retain.len(),
        config,
        epochs: outcome.epochs,
        log: outcome.log,
        delta_pacc_before: delta(&metrics_before),
        delta_pacc_after: delta(&metrics_after),
        metrics_before,
        scored,
        before_from: args.before_from.as_ref().map(|p| p.display().to_string()),
        metrics_after,
        reference_pacc,
        seconds_unlearn,
        warnings,
        seconds_total: start.elapsed().as_secs_f64(),
    };
    out.write("loss.svg", loss_chart(&[&report]).as_bytes())?;
    let dir = out.commit_checkpoint(&written, &report, json)?;
    if json {
        return Ok(());
    }
    for e in &report.epochs {
        println!("epoch {:>2}: forget loss {:.4}, λ {:.3}", e.epoch, e.forget_loss, e.lambda);
    }
    for (name, m, d) in
        [("before", &report.metrics_before, report.delta_pacc_before), ("after", &report.metrics_after, report.delta_pacc_after)]
    {
        if let Some(m) = m {
            println!("{name}:");
            print_metrics(m);
            if let Some(d) = d {
                println!("ΔPACC {:.2} points against the clean reference", 100.0 * d);
            }
        }
    }
    if report.metrics_after.is_none() {
        println!("(pass --test DIR to measure CACC, LFR and PACC before and after, --reference CLEAN for ΔPACC)");
    }
    println!("wrote {} ({:.0} s)", dir.display(), report.seconds_total);
    Ok(())
}

/// The forget-set loss per epoch of one or more unlearning runs: GA's climbs without bound,
/// RGA's levels off once λ fades.
pub fn loss_chart(reports: &[&UnlearnReport]) -> String {
    let series: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: format!("{:?}", r.method).to_uppercase(),
            points: r.epochs.iter().map(|e| (e.epoch as f64, e.forget_loss)).collect(),
        })
        .collect();
    line_chart("Forget-set cross-entropy per epoch", "epoch", "forget CE", &series)
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// report.json files written by `bdaudit unlearn`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `bdaudit plot`: one loss chart over several unlearning runs (e.g. GA, NPO and RGA).
pub fn plot(args: PlotArgs, json: bool) -> Result<()> {
    let reports = args
        .reports
        .iter()
        .map(|p| -> Result<UnlearnReport> {
            serde_json::from_slice(&crate::files::read(p)?)
                .with_context(|| format!("{} is not a report.json written by `bdaudit unlearn`", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&UnlearnReport> = reports.iter().collect();
    crate::files::write_file_atomic(&args.out, loss_chart(&refs).as_bytes(), args.force, &args.reports)?;
    if json {
        println!("{}", serde_json::json!({ "out": args.out, "reports": reports.len() }));
    } else {
        println!("wrote {}", args.out.display());
    }
    Ok(())
}
