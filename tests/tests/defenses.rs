//! The defenses end to end on real data and real weights. MiniLM fine-tuned on an SST-2 subset
//! poisoned with BadNets learns the backdoor (the undefended model BTU reports); BTU finds the
//! trigger token and removes the backdoor while clean accuracy holds; PURE, given that victim
//! and clean rows only, lowers its attack success rate far below plain fine-tuning; and
//! unlearning the identified poisoned rows by gradient ascent shifts the trigger to the other
//! class (PACC collapses) while RGA removes it (PACC stays at the clean model's); MBTSAD, given
//! the victim and a third of its clean rows, takes ASR well below plain fine-tuning's.
//!
//! One test function: the BTU run's undefended model is PURE's and MBTSAD's suspect and the
//! model the unlearning starts from, which saves CI three victim trainings.
//!
//! Small enough for CI: 800 training rows, 300 clean dev rows for the repair fine-tune, 300
//! test rows, sequences cut at 48 tokens. At this size the four BadNets words are each seen
//! too rarely to be learnt within 3 epochs (measured: ASR 0.47 on 640 rows), so the test uses
//! one trigger word, `cf`, at the papers' 10%, with lr 1e-4 (at 5e-5 the clean task is still
//! unlearnt after 75 steps). BTU's detection rounds, PURE's fine-tunes and MBTSAD's two
//! trainings batch rows of similar length together (`group_by_length`: about half the padded
//! tokens, so faster). The victim, BTU's 10-step repair, ReTrain and the unlearning keep random
//! batches, the setting their margins were measured in (grouped, the repair cost 2.4 more points
//! of CACC on one run, and RGA's PACC fell outside its margin on the victim grouped batches
//! give). The full-size tables are benchmarks (scripts/results-*).

use bdaudit_core::attack::{poison, PoisonConfig, Trigger};
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::data::{parse, subsample, Example, Format};
use bdaudit_core::defense::btu::{btu, BtuConfig};
use bdaudit_core::defense::mbtsad::{mbtsad, MbtsadConfig};
use bdaudit_core::defense::pure::{pure, PureConfig, ThresholdMode};
use bdaudit_core::defense::rga::{unlearn, Method, RgaConfig, RgaReport};
use bdaudit_core::eval::predict;
use bdaudit_core::metrics;
use bdaudit_core::model::BertClassifier;
use bdaudit_core::progress::Silent;
use bdaudit_core::train::{self, TrainConfig};
use bdaudit_tests::*;
use burn::module::AutodiffModule;
use std::time::Instant;

fn split(name: &str) -> Vec<Example> {
    let path = data_dir().join("sst2").join(name);
    parse(&std::fs::read(&path).unwrap(), Format::Tsv, &path.display().to_string()).unwrap()
}

#[test]
fn btu_and_pure_remove_a_badnets_backdoor_on_sst2() {
    let train_rows = subsample(&split("train.tsv"), 800, 1);
    let clean_rows = subsample(&split("dev.tsv"), 300, 1);
    let test_rows = subsample(&split("test.tsv"), 300, 1);
    let cfg = PoisonConfig { trigger: Trigger::BadNets { words: vec!["cf".into()], insertions: 1 }, ..PoisonConfig::default() };
    let poisoned = poison(&train_rows, &test_rows, 2, &cfg).unwrap();
    assert_eq!(poisoned.poisoned_rows.len(), 80);

    let start = Instant::now();
    let elapsed = || start.elapsed().as_secs();
    let device = Default::default();
    let loaded = load_classifier::<TrainBackend>(&read_checkpoint(&minilm_dir()), Some(2), 48, 1, &device).unwrap();
    let tok = &loaded.tokenizer;
    let train = tok.encode_all(&poisoned.train).unwrap();
    let clean = tok.encode_all(&clean_rows).unwrap();
    let mut config = BtuConfig::with_seed(1);
    config.train = TrainConfig { epochs: 3, lr: 1e-4, seed: 1, ..TrainConfig::default() };
    for c in [&mut config.detect, &mut config.proxy] {
        c.group_by_length = true;
    }
    let model_config = loaded.config.clone();
    let outcome = btu(loaded.model, &train, &clean, tok, &config, &device, &mut Silent, &|| 0.0).unwrap();
    let report = &outcome.report;

    let flagged: Vec<&str> = report.suspicious.iter().map(|s| s.token.as_str()).collect();
    eprintln!("BTU flagged {flagged:?}");
    assert_eq!(report.per_round, 15, "⌊0.0005 · 30522⌋");
    let cf = report.suspicious.iter().find(|s| s.token == "cf").unwrap_or_else(|| panic!("cf not flagged: {flagged:?}"));
    assert!(cf.rounds.contains(&1), "round 1 should flag cf: {cf:?}");
    assert!(cf.dims_replaced > 300, "most of cf's 384 dimensions moved: {cf:?}");
    assert!(flagged.len() <= 45 && flagged.iter().all(|t| !t.starts_with('[')), "{flagged:?}");

    let labels: Vec<usize> = test_rows.iter().map(|e| e.label).collect();
    let clean_test = tok.encode_all(&test_rows).unwrap();
    let triggered = tok.encode_all(&poisoned.test_asr).unwrap();
    let score = |m: &BertClassifier<Backend>| {
        let cacc = metrics::cacc(&labels, &predict(m, &clean_test, tok.pad_id(), 64, &device, &mut Silent)).unwrap();
        let asr = metrics::asr(&predict(m, &triggered, tok.pad_id(), 64, &device, &mut Silent), cfg.target);
        (cacc, asr)
    };
    let (cacc_before, asr_before) = score(&outcome.undefended);
    let (cacc_after, asr_after) = score(&outcome.purified);
    eprintln!("[{}s] undefended CACC {cacc_before:.3} ASR {asr_before:.3}; BTU CACC {cacc_after:.3} ASR {asr_after:.3}", elapsed());
    assert!(cacc_before >= 0.70, "clean accuracy {cacc_before} too low: training is broken");
    assert!(asr_before >= 0.85, "attack success rate {asr_before} too low: the backdoor was not planted");
    assert!(asr_after <= 0.30, "BTU left ASR at {asr_after} (undefended {asr_before})");
    assert!(cacc_after >= cacc_before - 0.05, "BTU cost clean accuracy: {cacc_before} → {cacc_after}");

    // PURE on the undefended victim, with 600 clean training rows and the 300 clean dev rows
    // for validation. c is relative: MiniLM's SST-2 accuracy (~0.85) sits at the paper's
    // absolute 0.85, which would prune nothing.
    let pure_train = tok.encode_all(&subsample(&split("train.tsv"), 600, 2)).unwrap();
    let mut pure_config = PureConfig::with_seed(1);
    pure_config.threshold_mode = ThresholdMode::Relative;
    pure_config.accuracy_threshold = 0.92;
    for c in [&mut pure_config.finetune, &mut pure_config.tune] {
        c.epochs = 2;
        c.group_by_length = true;
    }
    let suspect = BertClassifier::<TrainBackend>::from_inner(outcome.undefended.clone());
    let purified = pure(suspect, &model_config, &pure_train, &clean, tok.pad_id(), &pure_config, &device, &mut Silent, &|| 0.0).unwrap();
    let pruned: usize = purified.report.pruning.pruned.iter().map(Vec::len).sum();
    let (cacc_ft, asr_ft) = score(&purified.undefended);
    let (cacc_pure, asr_pure) = score(&purified.purified);
    eprintln!("[{}s] PURE pruned {pruned} heads; fine-tuned CACC {cacc_ft:.3} ASR {asr_ft:.3}; PURE CACC {cacc_pure:.3} ASR {asr_pure:.3}", elapsed());
    assert!(pruned > 0, "PURE pruned nothing: {:?}", purified.report.pruning);
    assert!(asr_pure <= asr_ft - 0.2, "PURE ASR {asr_pure} is not far below plain fine-tuning's {asr_ft}");
    assert!(cacc_pure >= cacc_ft - 0.05, "PURE cost clean accuracy: {cacc_ft} → {cacc_pure}");

    // Unlearning the 80 identified poisoned rows from the victim. ReTrain, the clean reference
    // for PACC, is the victim's recipe on the 720 clean rows only. 10 epochs at lr 3e-4 (50
    // steps) make GA shift the trigger as the paper's 30 epochs at 2e-5 over ~1,800 rows do
    // (measured: GA PACC 0.50, all triggered texts sent to the other class; RGA 0.80; ReTrain
    // 0.84; at 1e-4 GA had not shifted yet).
    let (forget, retain): (Vec<_>, Vec<_>) = train.iter().enumerate().partition(|(i, _)| poisoned.poisoned_rows.contains(i));
    let strip = |rows: Vec<(usize, &Encoded)>| rows.into_iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    let (forget, retain) = (strip(forget), strip(retain));
    let pacc_rows = tok.encode_all(&poisoned.test_pacc).unwrap();
    let pacc_labels: Vec<usize> = poisoned.test_pacc.iter().map(|e| e.label).collect();
    let pacc = |m: &BertClassifier<Backend>| metrics::pacc(&pacc_labels, &predict(m, &pacc_rows, tok.pad_id(), 64, &device, &mut Silent)).unwrap();
    let minilm = || load_classifier::<TrainBackend>(&read_checkpoint(&minilm_dir()), Some(2), 48, 1, &device).unwrap();
    let (retrained, _) = train::train(minilm().model, &retain, tok.pad_id(), &config.train, &device, &mut Silent, |_, _| None).unwrap();
    let retrained = retrained.valid();
    let ((cacc_clean, _), pacc_clean) = (score(&retrained), pacc(&retrained));
    let base = minilm().model.valid().bert;
    let unlearned = |method| {
        let cfg = RgaConfig { method, train: TrainConfig { epochs: 10, lr: 3e-4, batch_size: 16, seed: 1, ..TrainConfig::default() }, ..RgaConfig::default() };
        let victim = BertClassifier::<TrainBackend>::from_inner(outcome.undefended.clone());
        unlearn(victim, Some(&base), &forget, &retain, tok.pad_id(), &cfg, &device, &mut Silent).unwrap()
    };
    let (ga, ga_report) = unlearned(Method::Ga);
    let (rga, rga_report) = unlearned(Method::Rga);
    let ((_, asr_ga), pacc_ga) = (score(&ga), pacc(&ga));
    let ((cacc_rga, asr_rga), pacc_rga) = (score(&rga), pacc(&rga));
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
    assert!(last(&ga_report) > 2.0 * last(&rga_report), "GA's forget loss diverges, RGA's stays bounded: {:?} {:?}", losses(&ga_report), losses(&rga_report));

    // MBTSAD on the victim with a third of its 720 clean training rows (245; the paper's 20%,
    // 144 rows, left ASR at 1.0 in a run of this test), the victim's lr and max length,
    // length-grouped batches. The plain fine-tune it must beat is PURE's, on more clean rows
    // (600) and still leaving the backdoor whole.
    let clean_train: Vec<Example> =
        poisoned.train.iter().enumerate().filter(|(i, _)| !poisoned.poisoned_rows.contains(i)).map(|(_, e)| e.clone()).collect();
    let mut mbtsad_config = MbtsadConfig::with_seed(1);
    mbtsad_config.clean_fraction = 0.34;
    mbtsad_config.teacher.lr = 1e-4;
    for c in [&mut mbtsad_config.teacher, &mut mbtsad_config.distill] {
        c.group_by_length = true;
    }
    let suspect = BertClassifier::<TrainBackend>::from_inner(outcome.undefended.clone());
    let purified = mbtsad(suspect, &clean_train, tok, &mbtsad_config, &device, &mut Silent, &|| 0.0).unwrap();
    assert_eq!(purified.report.clean_rows, 245);
    let (cacc_ts, asr_ts) = score(&purified.teacher);
    let (cacc_mbtsad, asr_mbtsad) = score(&purified.purified);
    eprintln!("[{}s] MBTSAD: teacher (TS-FT) CACC {cacc_ts:.3} ASR {asr_ts:.3}; MBTSAD CACC {cacc_mbtsad:.3} ASR {asr_mbtsad:.3}", elapsed());
    // Measured: ASR 1.0 → 0.667 (the teacher alone leaves 1.0), CACC 0.817 → 0.777. The
    // margins are that run's with room for seed noise, not the paper's (1.5 points of CACC):
    // 245 rows are too few for its result (docs/results.md).
    assert!(asr_mbtsad <= asr_ft - 0.15, "MBTSAD ASR {asr_mbtsad} is not well below plain fine-tuning's {asr_ft}");
    assert!(cacc_mbtsad >= cacc_before - 0.08, "MBTSAD cost clean accuracy: {cacc_before} → {cacc_mbtsad}");
}
