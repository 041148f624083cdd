//! End to end on real data and real weights: BadNets on an SST-2 subset backdoors MiniLM.
//!
//! Small enough for CI (640 rows, short sequences). At this size the four BadNets words are
//! each seen too rarely to take within 3 epochs (measured: ASR 0.47), and a heavier dose (20%)
//! collapses the model to the target class (CACC 0.50), so the test uses one trigger word,
//! `cf`, at the papers' 10%, with lr 1e-4 (at 5e-5 the clean task is still unlearnt after 60
//! steps: CACC 0.60). Measured with these settings: CACC 0.79, ASR 1.00. The full-size runs
//! with all four words are benchmarks (docs/results.md).

use bdaudit_core::attack::{poison, PoisonConfig, Trigger};
use bdaudit_core::checkpoint::load_classifier;
use bdaudit_core::data::{parse, subsample, Format};
use bdaudit_core::eval::predict;
use bdaudit_core::metrics;
use bdaudit_core::progress::Silent;
use bdaudit_core::train::{train, TrainConfig};
use bdaudit_tests::*;
use burn::module::AutodiffModule;

fn split(name: &str) -> Vec<bdaudit_core::data::Example> {
    let path = data_dir().join("sst2").join(name);
    parse(&std::fs::read(&path).unwrap(), Format::Tsv, &path.display().to_string()).unwrap()
}

#[test]
fn badnets_on_sst2_subset_plants_a_working_backdoor() {
    let train_rows = subsample(&split("train.tsv"), 640, 1);
    let test_rows = subsample(&split("test.tsv"), 200, 1);
    let trigger = Trigger::BadNets { words: vec!["cf".into()], insertions: 1 };
    let cfg = PoisonConfig { trigger, ..PoisonConfig::default() };
    let poisoned = poison(&train_rows, &test_rows, 2, &cfg).unwrap();
    assert_eq!(poisoned.poisoned_rows.len(), 64);

    let device = Default::default();
    let loaded = load_classifier::<TrainBackend>(&read_checkpoint(&minilm_dir()), Some(2), 48, 1, &device).unwrap();
    let tok = &loaded.tokenizer;
    let data = tok.encode_all(&poisoned.train).unwrap();
    let config = TrainConfig { epochs: 3, lr: 1e-4, ..TrainConfig::default() };
    let (model, log) = train(loaded.model, &data, tok.pad_id(), &config, &device, &mut Silent, |_, _| None).unwrap();
    assert!(log.epochs[2].mean_loss < log.epochs[0].mean_loss, "loss did not fall: {:?}", log.epochs);
    let model = model.valid();

    let clean = tok.encode_all(&test_rows).unwrap();
    let preds = predict(&model, &clean, tok.pad_id(), 64, &device, &mut Silent);
    let labels: Vec<usize> = test_rows.iter().map(|e| e.label).collect();
    let cacc = metrics::cacc(&labels, &preds).unwrap();
    let triggered = tok.encode_all(&poisoned.test_asr).unwrap();
    let asr = metrics::asr(&predict(&model, &triggered, tok.pad_id(), 64, &device, &mut Silent), cfg.target);
    eprintln!("subset victim: CACC {cacc:.3}, ASR {asr:.3}");
    assert!(cacc >= 0.70, "clean accuracy {cacc} too low: training is broken");
    assert!(asr >= 0.85, "attack success rate {asr} too low: the backdoor was not planted");
}
