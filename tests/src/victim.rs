//! The small BadNets victim setup shared by the real-data defense tests (`tests/defenses.rs`
//! and `tests/unlearning.rs`), so both train the same victim from the same rows.
//!
//! Small enough for CI: 800 SST-2 training rows, 300 clean dev rows, 300 test rows, sequences
//! cut at 48 tokens. At this size the four BadNets words are each seen too rarely to be learnt
//! within 3 epochs (measured: ASR 0.47 on 640 rows), so the victim learns one trigger word, `cf`,
//! at the papers' 10%, with lr 1e-4 (at 5e-5 the clean task is still unlearnt after 75 steps).

use bdaudit_core::attack::{poison, PoisonConfig, Poisoned, Trigger};
use bdaudit_core::checkpoint::{load_classifier, CheckpointFiles, TextTokenizer};
use bdaudit_core::data::batch::Encoded;
use bdaudit_core::data::{parse, subsample, Example, Format};
use bdaudit_core::eval::predict;
use bdaudit_core::metrics;
use bdaudit_core::model::{BertClassifier, BertConfig};
use bdaudit_core::progress::Silent;
use bdaudit_core::train::TrainConfig;

use crate::{data_dir, minilm_dir, read_checkpoint, Backend, TrainBackend};

/// Maximum sequence length of every model in the setup.
const MAX_LEN: usize = 48;
/// Seed of the classifier head, the subsets and the victim's training.
const SEED: u64 = 1;

pub struct SmallBadnets {
    pub attack: PoisonConfig,
    pub poisoned: Poisoned,
    pub tokenizer: TextTokenizer,
    pub model_config: BertConfig,
    /// The poisoned training rows, encoded.
    pub train: Vec<Encoded>,
    /// 300 clean dev rows, encoded (BTU's repair set, PURE's validation set).
    pub clean: Vec<Encoded>,
    /// The victim's recipe: 3 epochs at lr 1e-4, random batches of 16.
    pub victim_train: TrainConfig,
    /// MiniLM's files, read once: every model of the setup starts from them.
    minilm: CheckpointFiles,
    test_rows: Vec<Example>,
    clean_test: Vec<Encoded>,
    triggered: Vec<Encoded>,
    pacc_rows: Vec<Encoded>,
    pacc_labels: Vec<usize>,
}

/// A split of the real SST-2 data.
pub fn sst2(name: &str) -> Vec<Example> {
    let path = data_dir().join("sst2").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&bytes, Format::Tsv, &path.display().to_string()).unwrap()
}

impl SmallBadnets {
    pub fn new() -> Self {
        let train_rows = subsample(&sst2("train.tsv"), 800, SEED);
        let clean_rows = subsample(&sst2("dev.tsv"), 300, SEED);
        let test_rows = subsample(&sst2("test.tsv"), 300, SEED);
        let attack = PoisonConfig { trigger: Trigger::BadNets { words: vec!["cf".into()], insertions: 1 }, ..PoisonConfig::default() };
        let poisoned = poison(&train_rows, &test_rows, 2, &attack).unwrap();
        assert_eq!(poisoned.poisoned_rows.len(), 80);
        let minilm = read_checkpoint(&minilm_dir());
        let model_config = BertConfig::from_json_bytes(&minilm.config).unwrap();
        let tok = TextTokenizer::from_bytes(&minilm.tokenizer, MAX_LEN).unwrap();
        let encode = |rows: &[Example]| tok.encode_all(rows).unwrap();
        Self {
            train: encode(&poisoned.train),
            clean: encode(&clean_rows),
            clean_test: encode(&test_rows),
            triggered: encode(&poisoned.test_asr),
            pacc_rows: encode(&poisoned.test_pacc),
            pacc_labels: poisoned.test_pacc.iter().map(|e| e.label).collect(),
            test_rows,
            victim_train: TrainConfig { epochs: 3, lr: 1e-4, seed: SEED, ..TrainConfig::default() },
            model_config,
            minilm,
            tokenizer: tok,
            attack,
            poisoned,
        }
    }

    /// Pre-trained MiniLM with a fresh classifier head, seeded as every model of the setup is.
    pub fn minilm(&self) -> BertClassifier<TrainBackend> {
        load_classifier::<TrainBackend>(&self.minilm, Some(2), MAX_LEN, SEED, &Default::default()).unwrap().model
    }

    /// `n` clean test texts and `n` triggered ones, none cut at the setup's maximum length:
    /// what a checkpoint's logits are compared on.
    pub fn probe_texts(&self, n: usize) -> Vec<String> {
        let pick = |rows: &[Example], encoded: &[Encoded]| {
            rows.iter().zip(encoded).filter(|(_, e)| e.ids.len() < MAX_LEN).take(n).map(|(r, _)| r.text.clone()).collect::<Vec<_>>()
        };
        [pick(&self.test_rows, &self.clean_test), pick(&self.poisoned.test_asr, &self.triggered)].concat()
    }

    /// The clean test texts (300), with no trigger: probe texts for a scan.
    pub fn clean_test_texts(&self) -> Vec<String> {
        self.test_rows.iter().map(|r| r.text.clone()).collect()
    }

    /// The training rows outside the poisoned ones, as examples.
    pub fn clean_train(&self) -> Vec<Example> {
        self.split(&self.poisoned.train).1
    }

    /// The encoded training rows split into (poisoned, clean).
    pub fn forget_retain(&self) -> (Vec<Encoded>, Vec<Encoded>) {
        self.split(&self.train)
    }

    fn split<T: Clone>(&self, rows: &[T]) -> (Vec<T>, Vec<T>) {
        let (forget, retain): (Vec<_>, Vec<_>) = rows.iter().enumerate().partition(|(i, _)| self.poisoned.poisoned_rows.contains(i));
        let strip = |part: Vec<(usize, &T)>| part.into_iter().map(|(_, r)| r.clone()).collect();
        (strip(forget), strip(retain))
    }

    fn predict(&self, model: &BertClassifier<Backend>, rows: &[Encoded]) -> Vec<usize> {
        predict(model, rows, self.tokenizer.pad_id(), 64, &Default::default(), &mut Silent).unwrap()
    }

    /// (CACC on the clean test rows, ASR on the triggered non-target ones).
    pub fn score(&self, model: &BertClassifier<Backend>) -> (f64, f64) {
        let labels: Vec<usize> = self.test_rows.iter().map(|e| e.label).collect();
        let cacc = metrics::cacc(&labels, &self.predict(model, &self.clean_test)).unwrap();
        (cacc, metrics::asr(&self.predict(model, &self.triggered), self.attack.target))
    }

    /// PACC: accuracy on every test row triggered, true labels kept.
    pub fn pacc(&self, model: &BertClassifier<Backend>) -> f64 {
        metrics::pacc(&self.pacc_labels, &self.predict(model, &self.pacc_rows)).unwrap()
    }
}

impl Default for SmallBadnets {
    fn default() -> Self {
        Self::new()
    }
}
