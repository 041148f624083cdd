//! `bdaudit eval`: CACC, ASR and PACC of a checkpoint on a data set directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bdaudit_core::checkpoint::{load_classifier, TextTokenizer};
use bdaudit_core::data::Example;
use bdaudit_core::eval::{argmax, predict};
use bdaudit_core::metrics::{self, Confusion, EvalMetrics};
use bdaudit_core::model::BertClassifier;
use burn::tensor::backend::Backend;
use clap::Args;
use serde::Serialize;

use crate::bar::Bars;
use crate::commands::batching::batch_size;
use crate::files::{read, read_checkpoint, resolve_model, DataDir};
use crate::provenance::sha256_hex;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (model.safetensors, config.json, tokenizer.json).
    #[arg(long)]
    pub model: String,
    /// Data directory: test.tsv (CACC), and test-asr.tsv / test-pacc.tsv from `bdaudit attack`.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = SCORE_BATCH, value_parser = batch_size)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// A model retrained on clean data only: reports its PACC and ΔPACC = |PACC(model) −
    /// PACC(reference)| (RGA's trigger-shifting measure).
    #[arg(long)]
    pub reference: Option<String>,
}

#[derive(Serialize)]
struct EvalReport {
    model: String,
    data: String,
    #[serde(flatten)]
    metrics: EvalMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_pacc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta_pacc: Option<f64>,
    seconds: f64,
}

/// True labels and predictions on one test split.
fn predict_split<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    rows: &[Example],
    batch_size: usize,
    device: &B::Device,
    quiet: bool,
) -> Result<(Vec<usize>, Vec<usize>)> {
    bdaudit_core::data::check_labels(rows, model.num_labels(), "test set")?;
    let encoded = tokenizer.encode_all(rows)?;
    // An id past the embedding matrix (a tokenizer that does not belong to the model)
    // would panic inside the backend: refuse it with the id named.
    bdaudit_core::train::check_examples(&encoded, model.num_labels(), model.vocab_size())?;
    let preds = predict(model, &encoded, tokenizer.pad_id(), batch_size, device, &mut Bars::new(quiet))?;
    Ok((rows.iter().map(|r| r.label).collect(), preds))
}

/// Rows [`check_trained`] scores: enough to catch a model that overflows on most inputs.
const CHECK_ROWS: usize = 32;

/// Training checks its loss before each step, so a last step that blows the weights up (a
/// huge learning rate) would leave a model whose outputs overflow, written with exit 0 when
/// no test set is scored: its first training rows are scored before it is written. A model
/// that gives them all one class is written too (the run may have taken hours), with a warning,
/// printed on stderr and returned for the report.
pub fn check_trained<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    rows: &[Example],
    device: &B::Device,
) -> Result<Vec<String>> {
    let checked = &rows[..rows.len().min(CHECK_ROWS)];
    let encoded = tokenizer.encode_all(checked)?;
    let logits = bdaudit_core::eval::logits(model, &encoded, tokenizer.pad_id(), CHECK_ROWS, device, &mut Bars::new(true))
        .context("training diverged: the trained model cannot be used (a lower learning rate?)")?;
    let preds: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
    let labels: Vec<usize> = checked.iter().map(|r| r.label).collect();
    let warnings: Vec<String> = one_class(&preds, &labels)
        .map(|(class, others)| {
            format!(
                "the trained model gives class {class} to all {} of the first training rows, {others} of them labelled otherwise: \
                 it has likely collapsed to a constant (a lower learning rate?)",
                preds.len()
            )
        })
        .into_iter()
        .collect();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(warnings)
}

/// The class every row was given and how many rows are labelled otherwise, when one class was
/// given to all and at least a quarter are labelled otherwise: a model that fits its own
/// training rows that badly has collapsed (MBTSAD's distillation did at the paper's rate on one
/// IMDb seed, docs/results.md), where a healthy one trained on skewed rows may still give them
/// one class.
fn one_class(preds: &[usize], labels: &[usize]) -> Option<(usize, usize)> {
    let class = *preds.first()?;
    let others = labels.iter().filter(|&&l| l != class).count();
    (preds.iter().all(|&p| p == class) && others > 0 && 4 * others >= labels.len()).then_some((class, others))
}

/// The test splits `bdaudit attack` writes and [`evaluate`] scores, whichever of them a
/// directory holds.
pub const TEST_SPLITS: [&str; 3] = ["test.tsv", "test-asr.tsv", "test-pacc.tsv"];

/// The SHA-256 of each test split the directory holds: scores computed on it are reusable
/// only while these are unchanged.
pub fn test_sha256(data: &DataDir) -> Result<BTreeMap<String, String>> {
    TEST_SPLITS.iter().filter(|name| data.has(name)).map(|name| Ok((name.to_string(), sha256_hex(&read(&data.file(name))?)))).collect()
}

/// Rows per inference batch when a command scores test sets: inference keeps no autodiff
/// graph, so it batches more rows than training's 32.
pub const SCORE_BATCH: usize = 64;

/// [`evaluate`] at [`SCORE_BATCH`] when a test directory was given: the scores train, purify
/// and unlearn report before and after.
pub fn evaluate_if<B: Backend>(
    test: Option<&DataDir>,
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    device: &B::Device,
    quiet: bool,
) -> Result<Option<EvalMetrics>> {
    test.map(|t| evaluate(model, tokenizer, t, SCORE_BATCH, device, quiet)).transpose()
}

/// Scores a model on whichever of the clean and triggered test sets the directory holds.
pub fn evaluate<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    data: &DataDir,
    batch_size: usize,
    device: &B::Device,
    quiet: bool,
) -> Result<EvalMetrics> {
    let run = |rows: &[Example]| predict_split(model, tokenizer, rows, batch_size, device, quiet);
    let num_labels = model.num_labels();
    let mut m = EvalMetrics::default();
    if let Some(rows) = data.optional("test.tsv")? {
        let (labels, preds) = run(&rows)?;
        m.cacc = Some(metrics::cacc(&labels, &preds)?);
        m.confusion = Some(Confusion::from_predictions(&labels, &preds, num_labels)?);
        m.n_clean = rows.len();
    }
    if let Some(rows) = data.optional("test-asr.tsv")? {
        let target = rows.first().map(|r| r.label).unwrap_or(0);
        if rows.iter().any(|r| r.label != target) {
            bail!("test-asr.tsv must label every row with the attack's target class");
        }
        let (_, preds) = run(&rows)?;
        m.asr = Some(metrics::asr(&preds, target));
        m.asr_without_trigger = m.confusion.as_ref().map(|c| c.flip_rate_to(target));
        m.n_asr = rows.len();
    }
    if let Some(rows) = data.optional("test-pacc.tsv")? {
        let (labels, preds) = run(&rows)?;
        m.pacc = Some(metrics::pacc(&labels, &preds)?);
        m.confusion_pacc = Some(Confusion::from_predictions(&labels, &preds, num_labels)?);
        m.n_pacc = rows.len();
    }
    if m.n_clean + m.n_asr + m.n_pacc == 0 {
        bail!("{} has none of {}", data.path.display(), TEST_SPLITS.join(", "));
    }
    Ok(m)
}

/// PACC of the clean reference model (ReTrain), the other side of ΔPACC. Only the
/// triggered-with-true-labels split is scored: the reference's CACC and LFR are not reported,
/// and skipping them saves two thirds of its inference (on AG News, 13,300 of 20,900 rows).
pub fn reference_pacc<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    data: &DataDir,
    batch_size: usize,
    device: &B::Device,
    quiet: bool,
) -> Result<f64> {
    let rows = data
        .optional("test-pacc.tsv")?
        .with_context(|| format!("--reference compares PACC: {} has no test-pacc.tsv", data.path.display()))?;
    let (labels, preds) = predict_split(model, tokenizer, &rows, batch_size, device, quiet)?;
    Ok(metrics::pacc(&labels, &preds)?)
}

/// The data's `labels.tsv` against the model's class names: another number of classes is
/// another task, and a name the model gives another class would score rows against the wrong
/// class (both refused); other names are worth a note only (`LABEL_0`, "neg"). Numbered
/// names ("0", "LABEL_0") say nothing and match anything.
fn compare_label_names(data: &DataDir, model: &[String]) -> Result<Option<String>> {
    let Some(set) = data.label_names()? else { return Ok(None) };
    let path = data.file("labels.tsv");
    if set.len() != model.len() {
        bail!("{} names {} classes, but the model has {}: is this data for this model?", path.display(), set.len(), model.len());
    }
    let key = |name: &str| name.trim().to_lowercase();
    let numbered = |name: &str, i: usize| key(name) == i.to_string() || key(name) == format!("label_{i}");
    let differ: Vec<usize> = (0..model.len())
        .filter(|&i| !numbered(&model[i], i) && !numbered(&set.names[i], i) && key(&model[i]) != key(&set.names[i]))
        .collect();
    let Some(&first) = differ.first() else { return Ok(None) };
    // One name the model gives another class is enough: with the rest renamed, say, the rows
    // of that class would still be scored against the wrong one.
    let elsewhere = |i: usize| (0..model.len()).find(|&j| !numbered(&model[j], j) && key(&model[j]) == key(&set.names[i])).map(|j| (i, j));
    if let Some((i, j)) = differ.iter().find_map(|&i| elsewhere(i)) {
        bail!(
            "{} calls class {i} {:?}, which the model calls class {j}: the model's classes in another order would score rows against the wrong one",
            path.display(),
            set.names[i]
        );
    }
    Ok(Some(format!("{} calls class {first} {:?}, the model {:?}", path.display(), set.names[first], model[first])))
}

/// [`compare_label_names`] for each data directory a command reads with a model; notes go
/// to stderr.
pub fn check_label_names<'a>(dirs: impl IntoIterator<Item = &'a DataDir>, model: &[String]) -> Result<()> {
    for dir in dirs {
        if let Some(note) = compare_label_names(dir, model)? {
            eprintln!("note: {note}");
        }
    }
    Ok(())
}

pub fn print_metrics(m: &EvalMetrics) {
    let pct = |v: Option<f64>| v.map(|x| format!("{:.2}%", 100.0 * x)).unwrap_or_else(|| "-".into());
    println!("CACC {}  (clean test, {} rows)", pct(m.cacc), m.n_clean);
    println!("ASR  {}  (triggered non-target test, {} rows)", pct(m.asr), m.n_asr);
    if m.asr.is_some() {
        println!("     {}  of the same rows without the trigger", pct(m.asr_without_trigger));
    }
    println!("PACC {}  (triggered test with true labels, {} rows)", pct(m.pacc), m.n_pacc);
}

pub fn run<B: Backend>(args: EvalArgs, device: B::Device, json: bool) -> Result<()> {
    let start = Instant::now();
    let dir = resolve_model(&args.model)?;
    let data = DataDir::open(&args.data)?;
    let loaded = load_classifier::<B>(&read_checkpoint(&dir)?, None, args.max_len, 0, &device)?;
    check_label_names([&data], &loaded.labels)?;
    let metrics = evaluate(&loaded.model, &loaded.tokenizer, &data, args.batch_size, &device, json)?;
    let reference_pacc = match &args.reference {
        Some(reference) => {
            let r = load_classifier::<B>(&read_checkpoint(&resolve_model(reference)?)?, None, args.max_len, 0, &device)?;
            Some(reference_pacc(&r.model, &r.tokenizer, &data, args.batch_size, &device, json)?)
        }
        None => None,
    };
    let delta_pacc = reference_pacc.zip(metrics.pacc).map(|(r, p)| metrics::delta_pacc(p, r));
    let report = EvalReport {
        model: dir.display().to_string(),
        data: args.data.display().to_string(),
        metrics,
        reference_pacc,
        delta_pacc,
        seconds: start.elapsed().as_secs_f64(),
    };
    if json {
        println!("{}", crate::machine::stamped(&report)?);
    } else {
        print_metrics(&report.metrics);
        if let (Some(r), Some(d)) = (report.reference_pacc, report.delta_pacc) {
            println!("ΔPACC {:.2} points (reference PACC {:.2}%)", 100.0 * d, 100.0 * r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_class;

    #[test]
    fn one_class_is_named_only_when_a_quarter_of_the_rows_say_otherwise() {
        assert_eq!(one_class(&[1, 1, 1, 1], &[0, 1, 0, 1]), Some((1, 2)));
        assert_eq!(one_class(&[1, 1, 1, 1], &[0, 1, 1, 1]), Some((1, 1)), "a quarter is enough");
        assert_eq!(one_class(&[1; 8], &[0, 1, 1, 1, 1, 1, 1, 1]), None, "one row in eight: skewed rows, not a collapse");
        assert_eq!(one_class(&[1, 1, 1, 1], &[1, 1, 1, 1]), None, "rows of one label");
        assert_eq!(one_class(&[0, 1, 0, 1], &[0, 1, 0, 1]), None, "two classes given");
        assert_eq!(one_class(&[], &[]), None);
    }
}
