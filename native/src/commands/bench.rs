//! `bdaudit bench`: time a forward pass and a training step of a checkpoint on random token
//! ids, to compare backends and PyTorch (`scripts/bench` runs both on the same machine).

use std::time::Instant;

use anyhow::{bail, Result};
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::batch::{Batch, Encoded};
use bdaudit_core::rng::Rng;
use bdaudit_core::train::{cross_entropy, Stepper, TrainConfig};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use serde::Serialize;

use crate::commands::batching::batch_size;
use crate::files::{read_checkpoint, resolve_model};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "minilm")]
    pub model: String,
    #[arg(long, default_value_t = 32, value_parser = batch_size)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// Timed repetitions of each measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
}

#[derive(Serialize)]
struct Timing {
    best_ms: f64,
    median_ms: f64,
}

#[derive(Serialize)]
struct BenchReport {
    backend: String,
    batch: usize,
    seq: usize,
    forward: Timing,
    train_step: Timing,
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?;
    let mut ms = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing { best_ms: ms[0], median_ms: ms[ms.len() / 2] })
}

/// Reads a tensor back to the host so lazy backends finish their work inside the timing.
fn sync<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) {
    let _ = t.into_data();
}

pub fn run<B: AutodiffBackend>(args: BenchArgs, device: B::Device, json: bool) -> Result<()> {
    let files = read_checkpoint(&resolve_model(&args.model)?)?;
    let loaded = load_classifier::<B>(&files, Some(2), args.seq, 0, &device)?;
    let positions = loaded.config.max_position_embeddings;
    if !(3..=positions).contains(&args.seq) {
        bail!("--seq {} must be from 3 to the model's max_position_embeddings ({positions})", args.seq);
    }
    let mut rng = Rng::new(0);
    let vocab = loaded.model.vocab_size();
    // Skip the low ids, where BERT vocabularies keep special and unused tokens.
    let low = 1000.min(vocab / 2);
    let rows: Vec<Encoded> = (0..args.batch)
        .map(|i| Encoded { ids: (0..args.seq).map(|_| (low + rng.below(vocab - low)) as u32).collect(), label: i % 2 })
        .collect();
    let refs: Vec<&Encoded> = rows.iter().collect();
    let batch = Batch::<B>::new(&refs, 0, &device);
    let inner = Batch::<B::InnerBackend>::new(&refs, 0, &device);

    let eval_model = loaded.model.valid();
    let forward = time(args.iters, || {
        sync(eval_model.logits(inner.input_ids.clone(), inner.attention_mask.clone()));
        Ok(())
    })?;

    let config = TrainConfig::default();
    let mut stepper = Stepper::new(&config, 1000);
    let mut model = Some(loaded.model);
    let train_step = time(args.iters, || {
        let m = model.take().expect("model is put back after each step");
        let loss = cross_entropy(m.logits(batch.input_ids.clone(), batch.attention_mask.clone()), batch.labels.clone());
        let (next, _) = stepper.step(m, loss)?;
        sync(next.classifier.weight.val());
        model = Some(next);
        Ok(())
    })?;

    let report = BenchReport {
        backend: std::any::type_name::<B::InnerBackend>().to_string(),
        batch: args.batch,
        seq: args.seq,
        forward,
        train_step,
    };
    if json {
        println!("{}", crate::machine::stamped(&report)?);
    } else {
        println!("{}: batch {} x seq {}", report.backend, report.batch, report.seq);
        println!("forward     best {:.1} ms, median {:.1} ms", report.forward.best_ms, report.forward.median_ms);
        println!("train step  best {:.1} ms, median {:.1} ms", report.train_step.best_ms, report.train_step.median_ms);
    }
    Ok(())
}
