//! `bdaudit attack`: poison a data set to build backdoored victims for evaluating defenses.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bdaudit_core::attack::{poison, PoisonConfig, RateOf, Trigger};
use bdaudit_core::data::{subsample, write_tsv, Example};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::files::{read, DataDir, OutputDir};

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    /// Rare words (`cf mn bb tq`) inserted at random positions.
    Badnets,
    /// The sentence "I watch this 3D movie" inserted at a random position.
    Addsent,
}

#[derive(Args, Debug)]
pub struct AttackArgs {
    pub kind: Kind,
    /// Clean data directory with train.tsv, dev.tsv and test.tsv (e.g. ../shared/data/sst2).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0.1)]
    pub rate: f64,
    #[arg(long, value_enum, default_value = "all")]
    pub rate_of: RateOf,
    #[arg(long, default_value_t = 1)]
    pub target: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Poison a seeded, stratified subset of this many training rows (the written train.tsv
    /// is that subset, so its poisoned and clean parts stay consistent with it).
    #[arg(long)]
    pub limit: Option<std::num::NonZeroUsize>,
    /// Score on a stratified subset of this many test rows (test.tsv, and the triggered sets
    /// made from it): the same rows whatever --seed, so seeds differ by their training alone.
    /// For long-text sets on a CPU, where scoring all of IMDb's 10,000 test rows at every step
    /// costs more than the defense.
    #[arg(long)]
    pub test_limit: Option<std::num::NonZeroUsize>,
    /// Trigger words (BadNets, space-separated) or sentence (AddSent) instead of the default.
    #[arg(long)]
    pub trigger: Option<String>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `--test-limit`'s subset is drawn with this seed, not `--seed`, so every seed of a table is
/// scored on the same test rows.
const TEST_SUBSET_SEED: u64 = 0;

#[derive(Serialize)]
struct AttackReport<'a> {
    source: String,
    config: &'a PoisonConfig,
    poisoned_rows: &'a [usize],
    train_rows: usize,
    test_rows: usize,
    test_asr_rows: usize,
    test_pacc_rows: usize,
}

/// The rows at `indices`, and all other rows, each in their original order.
fn split_rows(rows: &[Example], indices: &[usize]) -> (Vec<Example>, Vec<Example>) {
    let picked: std::collections::HashSet<usize> = indices.iter().copied().collect();
    let (a, b): (Vec<_>, Vec<_>) = rows.iter().enumerate().partition(|(i, _)| picked.contains(i));
    let strip = |v: Vec<(usize, &Example)>| v.into_iter().map(|(_, e)| e.clone()).collect();
    (strip(a), strip(b))
}

/// What `bdaudit attack` wrote; `print` says it as one JSON object (`--json`) or one sentence.
pub struct Written {
    pub dir: PathBuf,
    pub poisoned: usize,
    pub train_rows: usize,
    pub target_name: String,
}

impl Written {
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::json!({"out": self.dir, "poisoned": self.poisoned, "train_rows": self.train_rows}));
        } else {
            println!("{self}");
        }
    }
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, rows, target, dir) = (self.poisoned, self.train_rows, &self.target_name, self.dir.display());
        write!(f, "poisoned {n} of {rows} training rows (target {target}); wrote {dir}")
    }
}

pub fn run(args: AttackArgs) -> Result<Written> {
    let data = DataDir::open(&args.data)?;
    let out = OutputDir::prepare(&args.out, args.force, &[&args.data])?;
    let mut train = data.split("train.tsv")?;
    if let Some(n) = args.limit {
        train = subsample(&train, n.get(), args.seed);
    }
    let mut test = data.split("test.tsv")?;
    if let Some(n) = args.test_limit {
        test = subsample(&test, n.get(), TEST_SUBSET_SEED);
    }
    let labels = data.labels(&[&train, &test])?;
    let trigger = match (args.kind, args.trigger) {
        (Kind::Badnets, None) => Trigger::badnets_default(),
        (Kind::Badnets, Some(words)) => Trigger::BadNets { words: words.split_whitespace().map(str::to_string).collect(), insertions: 1 },
        (Kind::Addsent, None) => Trigger::addsent_default(),
        (Kind::Addsent, Some(sentence)) => Trigger::AddSent { sentence },
    };
    let config = PoisonConfig { trigger, rate: args.rate, rate_of: args.rate_of, target: args.target, seed: args.seed };
    let poisoned = poison(&train, &test, labels.len(), &config)?;
    if poisoned.test_asr.is_empty() {
        // Every command that scores the set would refuse an empty test-asr.tsv.
        bail!("no test row is outside the target class {}, so there is nothing to measure ASR on (a larger --test-limit?)", args.target);
    }
    out.write("train.tsv", &write_tsv(&poisoned.train)?)?;
    // The poisoned rows and the rest, apart: the forget and retain sets of `bdaudit unlearn`.
    let (forget, retain) = split_rows(&poisoned.train, &poisoned.poisoned_rows);
    out.write("train-poisoned.tsv", &write_tsv(&forget)?)?;
    out.write("train-clean.tsv", &write_tsv(&retain)?)?;
    out.write("test.tsv", &write_tsv(&test)?)?;
    out.write("test-asr.tsv", &write_tsv(&poisoned.test_asr)?)?;
    out.write("test-pacc.tsv", &write_tsv(&poisoned.test_pacc)?)?;
    for extra in ["dev.tsv", "labels.tsv"] {
        if data.has(extra) {
            out.write(extra, &read(&data.file(extra)).context("copying clean split")?)?;
        }
    }
    let report = AttackReport {
        source: args.data.display().to_string(),
        config: &config,
        poisoned_rows: &poisoned.poisoned_rows,
        train_rows: poisoned.train.len(),
        test_rows: test.len(),
        test_asr_rows: poisoned.test_asr.len(),
        test_pacc_rows: poisoned.test_pacc.len(),
    };
    out.write_json("attack.json", &report)?;
    Ok(Written {
        dir: out.commit()?,
        poisoned: poisoned.poisoned_rows.len(),
        train_rows: report.train_rows,
        target_name: labels.name(args.target).unwrap_or("?").to_string(),
    })
}
