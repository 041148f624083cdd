//! `bdaudit scan`: look for signs of a backdoor without changing anything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use bdaudit_core::attack::Trigger;
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::{check_labels, demo, require_two_classes};
use bdaudit_core::probe::token_scores::{against_base, embedding_only, embedding_only_config, rank, TokenScore};
use bdaudit_core::report::Level;
use bdaudit_core::scan::{scan, ScanConfig, SCAN_HEAD_SEED, SCAN_MAX_LEN};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use serde::Serialize;

use crate::bar::Bars;
use crate::files::{classes_for, read_checkpoint, read_examples, resolve_model};

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Checkpoint directory to scan (or `minilm`).
    #[arg(long)]
    pub model: String,
    /// Only rank tokens by how far their embedding rows moved (BTU's drift score), against
    /// --base or from --data.
    #[arg(long)]
    pub token_scores: bool,
    /// The clean checkpoint the model was fine-tuned from: its tokens that drifted most
    /// become candidate triggers (with --token-scores: the drift against it).
    #[arg(long, conflicts_with = "data")]
    pub base: Option<String>,
    /// With --token-scores: labelled rows (TSV/CSV/JSONL), e.g. a data set you are about to
    /// train on; scores come from one epoch of embedding-only training on them.
    #[arg(long, requires = "token_scores")]
    pub data: Option<PathBuf>,
    /// Probe texts (TSV/CSV/JSONL; labels are ignored). Default: 200 built-in English
    /// movie-review sentences.
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// An extra candidate trigger word (repeatable).
    #[arg(long = "trigger")]
    pub triggers: Vec<String>,
    /// An extra candidate trigger sentence (repeatable).
    #[arg(long = "trigger-sentence")]
    pub sentences: Vec<String>,
    /// The scan: how many most-drifted tokens become candidates (default 10; each is screened
    /// on --screen-texts probe texts); with --token-scores: how many tokens to list (default 20).
    #[arg(long)]
    pub top: Option<usize>,
    /// Probe texts each candidate is screened on before it gets all of them (0: no screening).
    #[arg(long, default_value_t = ScanConfig::default().screen_texts)]
    pub screen_texts: usize,
    /// Longest input in tokens. The scan: 512, as in the browser; with --token-scores: 128,
    /// as `train`.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// The scan: which built-in probe texts and trigger positions (default 1, as in the
    /// browser); with --token-scores --data: the training seed (default 42, BTU's).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `--token-scores` defaults: BTU's round 1 as `train --defense btu` runs it.
const TOKEN_SCORES_TOP: usize = 20;
const TOKEN_SCORES_MAX_LEN: usize = 128;
const TOKEN_SCORES_SEED: u64 = 42;

#[derive(Serialize)]
struct TokenScanReport {
    model: String,
    /// `base` (drift against --base) or `embedding-only` (trained on --data).
    method: &'static str,
    reference: String,
    tokens: Vec<TokenScore>,
    seconds: f64,
}

/// Exit code 2 when the verdict is "suspicious", so scripts can gate on it.
pub fn run<B: AutodiffBackend>(args: ScanArgs, device: B::Device, json: bool) -> Result<ExitCode> {
    if args.token_scores {
        token_scores::<B>(args, device, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    // The page's defaults (ScanConfig, SCAN_MAX_LEN, SCAN_HEAD_SEED): the same checkpoint
    // gets the same probe texts, candidates and verdict here and in the browser.
    let defaults = ScanConfig::default();
    let seed = args.seed.unwrap_or(defaults.seed);
    let max_len = args.max_len.unwrap_or(SCAN_MAX_LEN);
    let model_dir = resolve_model(&args.model)?;
    let loaded = load_classifier::<B::InnerBackend>(&read_checkpoint(&model_dir)?, None, max_len, SCAN_HEAD_SEED, &device)?;
    let base = args
        .base
        .as_deref()
        .map(|b| -> Result<_> {
            let files = read_checkpoint(&resolve_model(b)?)?;
            Ok(load_classifier::<B::InnerBackend>(&files, Some(loaded.model.num_labels()), max_len, SCAN_HEAD_SEED, &device)?.model)
        })
        .transpose()?;
    let probe: Vec<String> = match &args.probe {
        Some(path) => read_examples(path)?.into_iter().map(|e| e.text).collect(),
        None => demo::sentiment(defaults.max_probe_texts, seed).into_iter().map(|e| e.text).collect(),
    };
    let mut config = ScanConfig { seed, top_tokens: args.top.unwrap_or(defaults.top_tokens), screen_texts: args.screen_texts, ..defaults };
    config.extra_triggers.extend(args.triggers.iter().map(|w| Trigger::BadNets { words: vec![w.clone()], insertions: 1 }));
    config.extra_triggers.extend(args.sentences.iter().map(|s| Trigger::AddSent { sentence: s.clone() }));
    let mut report = scan(&loaded.model, &loaded.tokenizer, &loaded.labels, &probe, base.as_ref(), &config, &device, &mut Bars::new(json))?;
    report.backend = std::any::type_name::<B::InnerBackend>().to_string();
    report.seconds = Some(start.elapsed().as_secs_f64());
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.verdict.summary);
        for e in report.verdict.evidence.iter().skip(1) {
            println!("  also: {e}");
        }
        println!("{:<28} {:>6} {:>6} {:>6}  to", "candidate", "ASR", "PACC", "long");
        for c in report.candidates.iter().take(8) {
            let to = c.shift.target.and_then(|k| report.labels.get(k)).map_or("-", String::as_str);
            let screened = if c.screened_out { "  (screened out)" } else { "" };
            // "-": not retried (under the suspicious share), or no long text left to try.
            let long = c.long_texts.filter(|l| l.texts > 0).map_or("-".into(), |l| format!("{:.1}%", 100.0 * l.asr));
            println!(
                "{:<28} {:>5.1}% {:>5.1}% {long:>6}  {to}{screened}",
                bdaudit_core::scan::trigger_text(&c.trigger),
                100.0 * c.shift.asr,
                100.0 * c.shift.pacc
            );
        }
        // On a clean verdict the strongest candidate's heads are noise, not evidence.
        if report.verdict.level != Level::Clean {
            for c in report.candidates.iter().filter(|c| !c.heads.is_empty()) {
                let heads: Vec<String> = c.heads.iter().map(|h| format!("L{}H{} ({:+.3})", h.layer, h.head, h.drift)).collect();
                println!("heads locking onto {}: {}", bdaudit_core::scan::trigger_text(&c.trigger), heads.join(", "));
            }
        }
        println!("({} probe texts, {:.1} s)", report.probe_texts.len(), report.seconds.unwrap_or(0.0));
    }
    Ok(if report.verdict.level == Level::Suspicious { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn token_scores<B: AutodiffBackend>(args: ScanArgs, device: B::Device, json: bool) -> Result<()> {
    let start = Instant::now();
    let max_len = args.max_len.unwrap_or(TOKEN_SCORES_MAX_LEN);
    let seed = args.seed.unwrap_or(TOKEN_SCORES_SEED);
    let model_dir = resolve_model(&args.model)?;
    let files = read_checkpoint(&model_dir)?;
    let (method, reference, tokenizer, scores) = match (&args.base, &args.data) {
        (Some(base), _) => {
            let base_dir = resolve_model(base)?;
            let loaded = load_classifier::<B::InnerBackend>(&files, None, max_len, seed, &device)?;
            let base =
                load_classifier::<B::InnerBackend>(&read_checkpoint(&base_dir)?, Some(loaded.model.num_labels()), max_len, seed, &device)?;
            let scores = against_base(&loaded.model, &base.model)?;
            ("base", base_dir.display().to_string(), loaded.tokenizer, scores)
        }
        (None, Some(path)) => {
            let rows = read_examples(path)?;
            let source = path.display().to_string();
            require_two_classes(&rows, &source)?;
            let num_labels = classes_for(&files, &rows)?;
            let loaded = load_classifier::<B>(&files, Some(num_labels), max_len, seed, &device)?;
            check_labels(&rows, loaded.model.num_labels(), &source)?;
            let encoded = loaded.tokenizer.encode_all(&rows)?;
            let config = embedding_only_config(seed);
            let (scores, _) = embedding_only(&loaded.model, &encoded, loaded.tokenizer.pad_id(), &config, &device, &mut Bars::new(json))?;
            ("embedding-only", source, loaded.tokenizer, scores)
        }
        (None, None) => bail!("--token-scores needs --base (the clean checkpoint) or --data (labelled rows)"),
    };
    let report = TokenScanReport {
        model: model_dir.display().to_string(),
        method,
        reference,
        tokens: rank(&scores, &tokenizer, args.top.unwrap_or(TOKEN_SCORES_TOP)),
        seconds: start.elapsed().as_secs_f64(),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if report.tokens.is_empty() {
            println!("no token's embedding moved ({method}, against {})", report.reference);
            return Ok(());
        }
        println!("tokens whose embeddings moved most ({method}, against {}):", report.reference);
        for (i, t) in report.tokens.iter().enumerate() {
            println!("{:>4}  {:<20} {:.5}", i + 1, t.token, t.score);
        }
    }
    Ok(())
}
