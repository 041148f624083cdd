//! Unlearning identified poisoned rows end to end on real data and real weights: gradient ascent
//! shifts the trigger to the other class (PACC collapses) while RGA removes it (PACC stays at the
//! clean model's). The victim is `tests/defenses.rs`'s (`bdaudit_tests::victim`), trained here
//! again by the same recipe; a separate binary so that `scripts/test` runs it beside that one.
//!
//! ReTrain, the clean reference for PACC, is the victim's recipe on the 720 clean rows only.
//! The victim, ReTrain and the unlearning keep random batches, the setting the margins were
//! measured in (RGA's PACC fell outside its margin on the victim grouped batches give).

use bdaudit_core::data::batch::Encoded;
use bdaudit_core::defense::rga::{unlearn, Method, RgaConfig, RgaReport};
use bdaudit_core::model::BertClassifier;
use bdaudit_core::progress::Silent;
use bdaudit_core::train::{self, TrainConfig};
use bdaudit_tests::victim::SmallBadnets;
use bdaudit_tests::TrainBackend;
use burn::module::AutodiffModule;
use std::time::Instant;

#[test]
fn unlearning_by_ga_shifts_the_trigger_and_rga_removes_it() {
    let start = Instant::now();
    let elapsed = || start.elapsed().as_secs();
    let setup = SmallBadnets::new();
    let pad = setup.tokenizer.pad_id();
    let device = Default::default();
    let fit = |rows: &[Encoded]| {
        train::train(setup.minilm(), rows, pad, &setup.victim_train, &device, &mut Silent, |_, _| None).unwrap().0.valid()
    };
    let victim = fit(&setup.train);
    let (cacc_before, asr_before) = setup.score(&victim);
    eprintln!("[{}s] victim CACC {cacc_before:.3} ASR {asr_before:.3}", elapsed());
    assert!(asr_before >= 0.85, "attack success rate {asr_before} too low: the backdoor was not planted");

    // 10 epochs at lr 3e-4 over the 80 poisoned rows (50 steps) make GA shift the trigger as the
    // paper's 30 epochs at 2e-5 over full SST-2's 1,655 do (measured: GA PACC 0.50, all triggered texts
    // sent to the other class; ReTrain 0.84; at 1e-4 GA had not shifted yet).
    let (forget, retain) = setup.forget_retain();
    let retrained = fit(&retain);
    let ((cacc_clean, _), pacc_clean) = (setup.score(&retrained), setup.pacc(&retrained));
    let base = setup.minilm().valid().bert;
    let unlearned = |method, seed| {
        let cfg = RgaConfig {
            method,
            train: TrainConfig { epochs: 10, lr: 3e-4, batch_size: 16, seed, ..TrainConfig::default() },
            ..RgaConfig::default()
        };
        unlearn(BertClassifier::<TrainBackend>::from_inner(victim.clone()), Some(&base), &forget, &retain, pad, &cfg, &device, &mut Silent)
            .unwrap()
    };
    eprintln!("[{}s] ReTrain CACC {cacc_clean:.3} PACC {pacc_clean:.3}", elapsed());
    assert!(pacc_clean >= 0.70, "the clean reference's PACC {pacc_clean} is too low: training is broken");
    // Every seed is measured before any is judged, so one failing seed shows the whole spread.
    let runs: Vec<Run> = unlearning_seeds()
        .into_iter()
        .map(|seed| {
            let (ga, ga_report) = unlearned(Method::Ga, seed);
            let (rga, rga_report) = unlearned(Method::Rga, seed);
            let ((_, asr_ga), (cacc_rga, asr_rga)) = (setup.score(&ga), setup.score(&rga));
            let (pacc_ga, pacc_rga) = (setup.pacc(&ga), setup.pacc(&rga));
            eprintln!(
                "[{}s] seed {seed}: GA ASR {asr_ga:.3} PACC {pacc_ga:.3}; RGA CACC {cacc_rga:.3} ASR {asr_rga:.3} PACC {pacc_rga:.3}; forget loss per epoch: GA {:?}, RGA {:?}",
                elapsed(),
                losses(&ga_report),
                losses(&rga_report)
            );
            Run { seed, asr_ga, pacc_ga, cacc_rga, asr_rga, pacc_rga, ga_report, rga_report }
        })
        .collect();
    for Run { seed, asr_ga, pacc_ga, cacc_rga, asr_rga, pacc_rga, ga_report, rga_report } in runs {
        assert!(asr_ga <= 0.2, "seed {seed}: GA did not even remove the backdoor: ASR {asr_ga}");
        assert!(pacc_ga <= pacc_clean - 0.1, "seed {seed}: GA should shift the trigger (PACC {pacc_ga} vs ReTrain {pacc_clean})");
        // RGA's PACC varies with the unlearning seed on 80 forget rows: 0.650–0.803 over seeds
        // 1–4, against GA's 0.500–0.510 and ReTrain's 0.840 (docs/architecture.md, GELU). What
        // held for every seed is the paper's point: well above GA's collapse, near ReTrain.
        assert!(pacc_rga >= pacc_ga + 0.1, "seed {seed}: RGA shifted the trigger like GA (PACC {pacc_rga} vs GA {pacc_ga})");
        assert!(pacc_rga >= pacc_clean - 0.22, "seed {seed}: RGA's PACC {pacc_rga} strays from ReTrain's {pacc_clean}");
        assert!(asr_rga <= 0.3, "seed {seed}: RGA left ASR at {asr_rga}");
        // Measured: 0.817 → 0.760–0.833 over seeds 1–4. lr 3e-4 on the retain batches costs clean accuracy that the
        // paper's 2e-5 does not; the margin is that measurement's, not the paper's 1 point.
        assert!(cacc_rga >= cacc_before - 0.08, "seed {seed}: RGA cost clean accuracy: {cacc_before} → {cacc_rga}");
        let last = |r: &RgaReport| r.epochs.last().unwrap().forget_loss;
        assert!(
            last(&ga_report) > 2.0 * last(&rga_report),
            "seed {seed}: GA's forget loss diverges, RGA's stays bounded: {:?} {:?}",
            losses(&ga_report),
            losses(&rga_report)
        );
    }
}

/// One unlearning seed's GA and RGA scores and reports.
struct Run {
    seed: u64,
    asr_ga: f64,
    pacc_ga: f64,
    cacc_rga: f64,
    asr_rga: f64,
    pacc_rga: f64,
    ga_report: RgaReport,
    rga_report: RgaReport,
}

fn losses(report: &RgaReport) -> Vec<f64> {
    report.epochs.iter().map(|e| (e.forget_loss * 100.0).round() / 100.0).collect()
}

/// The unlearning seeds to run: `BDAUDIT_RGA_SEEDS` (space-separated), 1 by default. CI runs
/// seed 1; `BDAUDIT_RGA_SEEDS="1 2 3 4"` reruns the assertions over the seeds the margins were
/// set from (docs/results.md, RGA).
fn unlearning_seeds() -> Vec<u64> {
    let seeds = std::env::var("BDAUDIT_RGA_SEEDS").unwrap_or_else(|_| "1".into());
    let parsed: Vec<u64> =
        seeds.split_whitespace().map(|s| s.parse().unwrap_or_else(|_| panic!("BDAUDIT_RGA_SEEDS: {s:?} is not a seed"))).collect();
    assert!(!parsed.is_empty(), "BDAUDIT_RGA_SEEDS names no seed");
    parsed
}
