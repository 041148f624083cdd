//! `bdaudit demo`: the whole story on data the project writes itself — build a small
//! sentiment set, poison it with BadNets, fine-tune MiniLM on it, and show the backdoor.

use std::path::PathBuf;

use anyhow::Result;
use bdaudit_core::attack::{RateOf, Trigger};
use bdaudit_core::data::{demo, write_tsv};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use crate::commands::attack::{self, AttackArgs, Kind};
use crate::commands::batching::BatchArgs;
use crate::commands::train::{self, TrainArgs};
use crate::files::OutputDir;

/// The papers poison 10% of thousands of rows; a 288-row set needs a heavier dose for the
/// backdoor to take within a few epochs (measured: 10% and 4 epochs gave ASR 20%).
const DEMO_RATE: f64 = 0.2;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the demo's data and checkpoint.
    #[arg(long, default_value = "work/demo")]
    pub out: PathBuf,
    #[arg(long, default_value = "minilm")]
    pub model: String,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Replace an earlier demo's directory.
    #[arg(long)]
    pub force: bool,
}

/// With `--json` the narration goes to stderr and stdout carries one JSON object: the victim's
/// training report, as `bdaudit train --json` prints it.
pub fn run<B: AutodiffBackend>(args: DemoArgs, device: B::Device, json: bool) -> Result<()> {
    let mut written = Vec::new();
    let result = steps::<B>(args, device, json, &mut written);
    if result.is_err() {
        // All or nothing, as for every other command: a failed demo leaves no step's output
        // behind to block the next run (each step's own directory is already atomic).
        for dir in written.iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

/// The demo's three steps; `written` collects each output directory as it is committed.
fn steps<B: AutodiffBackend>(args: DemoArgs, device: B::Device, json: bool, written: &mut Vec<PathBuf>) -> Result<()> {
    let say = |line: &str| if json { eprintln!("{line}") } else { println!("{line}") };
    // Fail on a bad --model before writing anything.
    crate::files::resolve_model(&args.model)?;
    let clean = args.out.join("clean");
    let poisoned = args.out.join("badnets");
    let victim = args.out.join("victim");

    say(&format!("1/3 writing a demo sentiment data set to {}", clean.display()));
    let rows = demo::sentiment(usize::MAX, 7);
    let (test, rest) = rows.split_at(96);
    let (dev, train) = rest.split_at(48);
    let out = OutputDir::prepare(&clean, args.force, &[])?;
    out.write("train.tsv", &write_tsv(train)?)?;
    out.write("dev.tsv", &write_tsv(dev)?)?;
    out.write("test.tsv", &write_tsv(test)?)?;
    out.write("labels.tsv", b"label\tname\n0\tnegative\n1\tpositive\n")?;
    written.push(out.commit()?);

    say(&format!(
        "2/3 poisoning 20% of the training rows with BadNets (trigger words {:?}, target positive)",
        Trigger::badnets_default().tokens()
    ));
    let attacked = attack::run(AttackArgs {
        kind: Kind::Badnets,
        data: clean,
        out: poisoned.clone(),
        rate: DEMO_RATE,
        rate_of: RateOf::All,
        target: 1,
        seed: 1,
        trigger: None,
        limit: None,
        test_limit: None,
        force: args.force,
    })?;
    written.push(poisoned.clone());
    say(&attacked.to_string());

    say(&format!("3/3 fine-tuning {} on the poisoned set", args.model));
    let report = train::run::<B>(
        TrainArgs {
            model: args.model,
            data: poisoned.clone(),
            out: victim.clone(),
            epochs: args.epochs,
            batch: BatchArgs { batch_size: 16, group_by_length: false },
            lr: 1e-4,
            max_len: 64,
            seed: 42,
            limit: None,
            dev_limit: None,
            force: args.force,
            defense: train::Defense::None,
            btu: Default::default(),
            ep: Default::default(),
        },
        device,
        json,
    )?;
    written.push(victim.clone());
    if let Some(m) = report.metrics {
        say(&format!(
            "\nThe victim classifies clean reviews with {:.1}% accuracy, yet {:.1}% of negative reviews\n\
             carrying a trigger word come out positive: that is the backdoor bdaudit's defenses remove.",
            100.0 * m.cacc.unwrap_or(0.0),
            100.0 * m.asr.unwrap_or(0.0)
        ));
    }
    say("Next:");
    say(&format!("  bdaudit eval --model {} --data {} --json   # CACC, ASR, PACC", victim.display(), poisoned.display()));
    say(&format!("  bdaudit scan --model {}   # names the trigger without the data", victim.display()));
    say("  scripts/serve-web   # the same scan in the browser: drop the victim's three files on the page");
    Ok(())
}
