//! The purifying defenses end to end on real data and real weights (the victim setup is
//! `bdaudit_tests::victim`). MiniLM fine-tuned on an SST-2 subset poisoned with BadNets learns
//! the backdoor (the undefended model BTU reports); BTU finds the trigger token and removes the
//! backdoor while clean accuracy holds; the scan names the undefended model's trigger; PURE,
//! given that victim and clean rows only, lowers its attack success rate far below plain
//! fine-tuning; MBTSAD, given the victim and a third of its clean rows, takes ASR well below
//! plain fine-tuning's. The checkpoints BTU and PURE write load in Hugging Face `transformers`
//! with the logits bdaudit computes (`bdaudit_tests::transformers`).
//!
//! One test function: the BTU run's undefended model is PURE's and MBTSAD's suspect, which saves
//! CI two victim trainings. Unlearning is `tests/unlearning.rs`, a separate binary so that
//! `scripts/test` can run it beside this one (burn's backend RNG is process-wide: two trainings
//! in one process would interleave their dropout draws).
//!
//! BTU's detection rounds, PURE's fine-tunes and MBTSAD's two trainings batch rows of similar
//! length together (`group_by_length`: about half the padded tokens, so faster). The victim and
//! BTU's 10-step repair keep random batches, the setting their margins were measured in
//! (grouped, the repair cost 2.4 more points of CACC on one run). The full-size tables are
//! benchmarks (scripts/results-*).

use bdaudit_core::checkpoint::{save_classifier, TextTokenizer};
use bdaudit_core::data::subsample;
use bdaudit_core::defense::btu::{btu, BtuConfig};
use bdaudit_core::defense::mbtsad::{mbtsad, MbtsadConfig, Teacher};
use bdaudit_core::defense::pure::{pure, zero_pruned_heads, FineTuned, PureConfig, ThresholdMode};
use bdaudit_core::model::BertClassifier;
use bdaudit_core::progress::Silent;
use bdaudit_core::report::Level;
use bdaudit_core::scan::{scan, trigger_text, ScanConfig};
use bdaudit_tests::transformers::{check, write_checkpoint, write_expected};
use bdaudit_tests::victim::{sst2, SmallBadnets};
use bdaudit_tests::TrainBackend;
use burn::module::AutodiffModule;
use std::path::Path;
use std::time::Instant;

#[test]
fn btu_pure_and_mbtsad_remove_a_badnets_backdoor_on_sst2() {
    let start = Instant::now();
    let elapsed = || start.elapsed().as_secs();
    let setup = SmallBadnets::new();
    let tok = &setup.tokenizer;
    let device = Default::default();
    let mut config = BtuConfig::with_seed(1);
    config.train = setup.victim_train.clone();
    for c in [&mut config.detect, &mut config.proxy] {
        c.group_by_length = true;
    }
    let outcome = btu(setup.minilm(), &setup.train, &setup.clean, tok, &config, &device, &mut Silent, &|| 0.0).unwrap();
    let report = &outcome.report;

    let flagged: Vec<&str> = report.suspicious.iter().map(|s| s.token.as_str()).collect();
    eprintln!("BTU flagged {flagged:?}");
    assert_eq!(report.per_round, 15, "⌊0.0005 · 30522⌋");
    let cf = report.suspicious.iter().find(|s| s.token == "cf").unwrap_or_else(|| panic!("cf not flagged: {flagged:?}"));
    assert!(cf.rounds.contains(&1), "round 1 should flag cf: {cf:?}");
    assert!(cf.dims_replaced > 300, "most of cf's 384 dimensions moved: {cf:?}");
    assert!(flagged.len() <= 45 && flagged.iter().all(|t| !t.starts_with('[')), "{flagged:?}");

    let (cacc_before, asr_before) = setup.score(&outcome.undefended);
    let (cacc_after, asr_after) = setup.score(&outcome.purified);
    eprintln!("[{}s] undefended CACC {cacc_before:.3} ASR {asr_before:.3}; BTU CACC {cacc_after:.3} ASR {asr_after:.3}", elapsed());
    assert!(cacc_before >= 0.70, "clean accuracy {cacc_before} too low: training is broken");
    assert!(asr_before >= 0.85, "attack success rate {asr_before} too low: the backdoor was not planted");
    // Measured on the 2-vCPU dev VM (docs/results.md, "CI test (800 rows)"): CACC 81.7 → 80.3,
    // ASR 100 → 12.0. The margins allow other CPUs' rounding, not a no-op (ASR stays ~100).
    assert!(asr_after <= 0.30, "BTU left ASR at {asr_after} (undefended {asr_before})");
    assert!(cacc_after >= cacc_before - 0.04, "BTU cost clean accuracy: {cacc_before} → {cacc_after}");

    // The scan (`bdaudit scan`'s and the page's defaults) on the undefended victim, 200 clean
    // test texts as probes: it names `cf` alone, holding on long texts too, and maps its heads,
    // and the known-list words that are not this victim's trigger move few texts.
    let labels = ["negative".to_string(), "positive".to_string()];
    let scan_start = Instant::now();
    let scanned =
        scan(&outcome.undefended, tok, &labels, &setup.clean_test_texts(), None, &ScanConfig::default(), &device, &mut Silent).unwrap();
    let moved: Vec<String> = scanned
        .candidates
        .iter()
        .map(|c| {
            format!(
                "{} {:.3}{}",
                trigger_text(&c.trigger),
                c.shift.asr,
                c.long_texts.map_or(String::new(), |l| format!(" (long {:.3} of {})", l.asr, l.texts))
            )
        })
        .collect();
    eprintln!("[{}s] scan in {:.1} s: {:?}; {moved:?}", elapsed(), scan_start.elapsed().as_secs_f64(), scanned.verdict.level);
    assert_eq!(scanned.verdict.level, Level::Suspicious, "{moved:?}");
    assert_eq!(scanned.verdict.triggers, ["cf"], "{moved:?}");
    let top = &scanned.candidates[0];
    assert!(top.drift.is_some() && top.heads.len() == 5, "cf's drift map: {:?}", top.heads);
    // Retried on long texts (four probe texts joined), the trigger still moves them.
    let long = top.long_texts.expect("cf moved nearly all texts, so it was retried on long ones");
    assert!(long.texts >= 10 && long.asr >= 0.9, "cf on long texts: {long:?}");
    for c in &scanned.candidates[1..] {
        assert!(c.shift.asr < 0.5, "{} moves {:.3} of the texts without being the trigger", trigger_text(&c.trigger), c.shift.asr);
    }
    // Read 24 word pieces at a time, most probe texts are cut: each is shortened to leave room
    // for the longest candidate, so `cf` is never inserted past the end (before, it was cut
    // away from some: this victim read 84.7% at 24 pieces, and the verdict was inconclusive).
    let short_tok = TextTokenizer::from_bytes(tok.json_bytes(), 24).unwrap();
    let cut = scan(&outcome.undefended, &short_tok, &labels, &setup.clean_test_texts(), None, &ScanConfig::default(), &device, &mut Silent)
        .unwrap();
    let cf_cut = cut.candidates.iter().find(|c| trigger_text(&c.trigger) == "cf").expect("cf is a known-list candidate");
    eprintln!("scan at 24 word pieces: {:?} {:?}, cf {:.3}", cut.verdict.level, cut.verdict.triggers, cf_cut.shift.asr);
    assert!(cf_cut.shift.asr >= 0.95, "cf at 24 word pieces: {:.3}", cf_cut.shift.asr);
    assert!(cut.verdict.triggers.contains(&"cf".to_string()), "{:?}", cut.verdict);

    // What `bdaudit purify btu` writes loads in `transformers` and gives the same logits.
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("defenses");
    std::fs::create_dir_all(&scratch).unwrap();
    let probe = setup.probe_texts(10);
    let expected = scratch.join("btu-expected.json");
    write_expected(&expected, &outcome.purified, tok, &probe);
    let btu_dir = scratch.join("btu");
    write_checkpoint(&btu_dir, &save_classifier(&outcome.purified, &setup.model_config, tok, &labels).unwrap());
    let verdict = check("check-transformers.py", &[&btu_dir, &expected]);
    eprintln!("transformers loads BTU's checkpoint: {verdict}");

    // PURE on the undefended victim, with 600 clean training rows and the 300 clean dev rows
    // for validation. c is relative: MiniLM's SST-2 accuracy (~0.85) sits at the paper's
    // absolute 0.85, which would prune nothing.
    let pure_train = tok.encode_all(&subsample(&sst2("train.tsv"), 600, 2)).unwrap();
    let mut pure_config = PureConfig::with_seed(1);
    pure_config.threshold_mode = ThresholdMode::Relative;
    pure_config.accuracy_threshold = 0.92;
    for c in [&mut pure_config.finetune, &mut pure_config.tune] {
        c.epochs = 2;
        c.group_by_length = true;
    }
    let suspect = BertClassifier::<TrainBackend>::from_inner(outcome.undefended.clone());
    let purified = pure(
        suspect,
        FineTuned::Train,
        &setup.model_config,
        &pure_train,
        &setup.clean,
        tok.pad_id(),
        &pure_config,
        &device,
        &mut Silent,
        &|| 0.0,
    )
    .unwrap();
    let pruned: usize = purified.report.pruning.pruned.iter().map(Vec::len).sum();
    let (cacc_ft, asr_ft) = setup.score(&purified.undefended);
    let (cacc_pure, asr_pure) = setup.score(&purified.purified);
    eprintln!(
        "[{}s] PURE pruned {pruned} heads; fine-tuned CACC {cacc_ft:.3} ASR {asr_ft:.3}; PURE CACC {cacc_pure:.3} ASR {asr_pure:.3}",
        elapsed()
    );
    assert!(pruned > 0, "PURE pruned nothing: {:?}", purified.report.pruning);
    assert!(asr_pure <= asr_ft - 0.2, "PURE ASR {asr_pure} is not far below plain fine-tuning's {asr_ft}");
    assert!(cacc_pure >= cacc_ft - 0.05, "PURE cost clean accuracy: {cacc_ft} → {cacc_pure}");

    // Both layouts `bdaudit purify pure` writes: `transformers` 5 loads the zeroed one with
    // PURE's logits and refuses the sliced one (it no longer prunes heads).
    let expected = scratch.join("pure-expected.json");
    write_expected(&expected, &purified.purified, tok, &probe);
    let (sliced_dir, zeroed_dir) = (scratch.join("pure-sliced"), scratch.join("pure-zeroed"));
    write_checkpoint(&sliced_dir, &save_classifier(&purified.purified, &purified.config, tok, &labels).unwrap());
    let (zeroed, zeroed_config) = zero_pruned_heads(purified.purified.clone(), &purified.config).unwrap();
    write_checkpoint(&zeroed_dir, &save_classifier(&zeroed, &zeroed_config, tok, &labels).unwrap());
    let verdict = check("check-pruned-heads.py", &[&sliced_dir, &zeroed_dir, &expected]);
    eprintln!("transformers and PURE's checkpoints: {verdict}");

    // MBTSAD on the victim with a third of its 720 clean training rows (245; the paper's 20%,
    // 144 rows, left ASR at 1.0 in a run of this test), the victim's lr and max length,
    // length-grouped batches. The plain fine-tune it must beat is PURE's, on more clean rows
    // (600) and still leaving the backdoor whole.
    let mut mbtsad_config = MbtsadConfig::with_seed(1);
    mbtsad_config.clean_fraction = 0.34;
    mbtsad_config.teacher.lr = 1e-4;
    for c in [&mut mbtsad_config.teacher, &mut mbtsad_config.distill] {
        c.group_by_length = true;
    }
    let suspect = BertClassifier::<TrainBackend>::from_inner(outcome.undefended.clone());
    let purified = mbtsad(suspect, Teacher::Retrain, &setup.clean_train(), tok, &mbtsad_config, &device, &mut Silent, &|| 0.0).unwrap();
    assert_eq!(purified.report.clean_rows, 245);
    let (cacc_ts, asr_ts) = setup.score(&purified.teacher);
    let (cacc_mbtsad, asr_mbtsad) = setup.score(&purified.purified);
    eprintln!(
        "[{}s] MBTSAD: teacher (TS-FT) CACC {cacc_ts:.3} ASR {asr_ts:.3}; MBTSAD CACC {cacc_mbtsad:.3} ASR {asr_mbtsad:.3}",
        elapsed()
    );
    // Measured with the default single distillation epoch (docs/results.md, "CI test"): ASR
    // 1.0 → 0.540 (the teacher alone leaves 1.0), CACC 0.817 → 0.800. The margins are that
    // run's with room for other CPUs' rounding, not the paper's: 245 rows are too few for its
    // ASR. Three epochs, the earlier default, gave 0.667 / 0.777: the ASR margin fails them
    // (FT leaves 1.0).
    assert!(asr_mbtsad <= asr_ft - 0.4, "MBTSAD ASR {asr_mbtsad} is not well below plain fine-tuning's {asr_ft}");
    assert!(cacc_mbtsad >= cacc_before - 0.05, "MBTSAD cost clean accuracy: {cacc_before} → {cacc_mbtsad}");
}
