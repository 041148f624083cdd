//! Data-poisoning attacks used to plant backdoors, so defenses can be evaluated
//! against known triggers.
//!
//! Implements the insertion-based attacks of the backdoor-defense literature:
//! BadNets/Add-Word (rare words `cf mn bb tq` at random positions) and AddSent
//! (a fixed sentence at a random position). Both are dirty-label: poisoned
//! training rows are relabelled to the target class. Attack *training* procedures
//! that plant a backdoor in a model from such data live in submodules ([`ep`]).

pub mod ep;

use serde::{Deserialize, Serialize};

use crate::data::{check_labels, DataError, Example};
use crate::rng::Rng;

/// A trigger and how it is inserted into a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    /// Inserts `insertions` words, each drawn uniformly from `words`, each at a
    /// uniformly random gap between words.
    BadNets { words: Vec<String>, insertions: usize },
    /// Inserts `sentence` as one block at a uniformly random gap between words.
    AddSent { sentence: String },
}

impl Trigger {
    /// The rare-word trigger of Kurita et al. / Chen et al.: one of `cf mn bb tq`.
    pub fn badnets_default() -> Trigger {
        Trigger::BadNets { words: ["cf", "mn", "bb", "tq"].map(String::from).to_vec(), insertions: 1 }
    }

    /// The AddSent trigger of Dai et al.: "I watch this 3D movie".
    pub fn addsent_default() -> Trigger {
        Trigger::AddSent { sentence: "I watch this 3D movie".to_owned() }
    }

    /// Returns `text` with the trigger inserted among its whitespace-separated
    /// words; words are re-joined with single spaces, the form a tokenizer sees
    /// anyway.
    pub fn insert(&self, text: &str, rng: &mut Rng) -> String {
        let mut words: Vec<&str> = text.split_whitespace().collect();
        match self {
            Trigger::BadNets { words: triggers, insertions } => {
                if !triggers.is_empty() {
                    for _ in 0..*insertions {
                        let word = triggers[rng.below(triggers.len())].as_str();
                        words.insert(rng.below(words.len() + 1), word);
                    }
                }
            }
            Trigger::AddSent { sentence } => {
                let at = rng.below(words.len() + 1);
                words.splice(at..at, sentence.split_whitespace());
            }
        }
        words.join(" ")
    }

    /// The trigger's distinct words, lower-cased (BERT uncased sees them so):
    /// what a defense should find.
    pub fn tokens(&self) -> Vec<String> {
        let words: Vec<&str> = match self {
            Trigger::BadNets { words, .. } => words.iter().flat_map(|w| w.split_whitespace()).collect(),
            Trigger::AddSent { sentence } => sentence.split_whitespace().collect(),
        };
        let mut tokens: Vec<String> = Vec::new();
        for word in words {
            let word = word.to_lowercase();
            if !tokens.contains(&word) {
                tokens.push(word);
            }
        }
        tokens
    }

    /// A trigger that would insert nothing (or blank words) cannot plant a
    /// backdoor and would make evaluation meaningless.
    pub fn is_empty(&self) -> bool {
        match self {
            Trigger::BadNets { words, insertions } => words.is_empty() || *insertions == 0 || words.iter().any(|w| w.trim().is_empty()),
            Trigger::AddSent { sentence } => sentence.trim().is_empty(),
        }
    }
}

/// What the poisoning rate is a fraction of; papers differ, and results are only
/// comparable under the same convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RateOf {
    /// rate × |train| rows are poisoned (drawn from non-target rows), as in BTU.
    #[serde(rename = "all")]
    All,
    /// rate × |non-target train rows| are poisoned, as in PURE and RGA.
    #[serde(rename = "non-target")]
    NonTarget,
}

/// How to poison a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoisonConfig {
    /// What to insert into poisoned sentences.
    pub trigger: Trigger,
    /// Fraction of the base (see `rate_of`) to poison, in (0, 1].
    pub rate: f64,
    /// Which row count `rate` applies to.
    pub rate_of: RateOf,
    /// Label the backdoor flips inputs to.
    pub target: usize,
    /// Seed for choosing rows and trigger positions.
    pub seed: u64,
}

impl Default for PoisonConfig {
    /// BadNets at 10% of the training set towards label 1, the common setting on SST-2.
    fn default() -> Self {
        PoisonConfig { trigger: Trigger::badnets_default(), rate: 0.1, rate_of: RateOf::All, target: 1, seed: 1 }
    }
}

/// A poisoned training set and the triggered test sets that measure the attack.
#[derive(Debug, Clone, PartialEq)]
pub struct Poisoned {
    /// The training rows in their original order, poisoned rows replaced in place.
    pub train: Vec<Example>,
    /// Indices into `train` of the poisoned rows, ascending.
    pub poisoned_rows: Vec<usize>,
    /// Every non-target test row, triggered and labelled `target`: accuracy on it
    /// is the attack success rate (ASR).
    pub test_asr: Vec<Example>,
    /// Every test row, triggered, true label kept: accuracy on it is the
    /// poisoned accuracy (PACC).
    pub test_pacc: Vec<Example>,
}

/// Why a poisoning configuration cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("poisoning rate {0} must be in (0, 1]")]
    RateOutOfRange(f64),
    #[error("target label {target} must be below {num_labels} (the number of labels)")]
    TargetOutOfRange { target: usize, num_labels: usize },
    #[error("the training set has no rows outside the target class to poison")]
    NoNonTarget,
    #[error("{requested} rows to poison but only {available} non-target rows are available; lower the rate")]
    TooFewSamples { requested: usize, available: usize },
    #[error("the trigger is empty")]
    EmptyTrigger,
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Offset between the seeds of the training and test streams, so the triggered
/// test sets do not change when only the poisoning rate changes.
const TEST_STREAM: u64 = 0x7E57_7E57_7E57_7E57;

/// Applies a dirty-label poisoning attack: chooses round(rate × base) non-target
/// training rows (at least one), inserts the trigger and relabels them to the
/// target; builds the ASR and PACC test sets from `test`. Deterministic for a seed.
pub fn poison(train: &[Example], test: &[Example], num_labels: usize, cfg: &PoisonConfig) -> Result<Poisoned, AttackError> {
    if !(cfg.rate > 0.0 && cfg.rate <= 1.0) {
        return Err(AttackError::RateOutOfRange(cfg.rate));
    }
    if cfg.target >= num_labels {
        return Err(AttackError::TargetOutOfRange { target: cfg.target, num_labels });
    }
    if cfg.trigger.is_empty() {
        return Err(AttackError::EmptyTrigger);
    }
    check_labels(train, num_labels, "training set")?;
    check_labels(test, num_labels, "test set")?;

    let non_target: Vec<usize> = (0..train.len()).filter(|&i| train[i].label != cfg.target).collect();
    if non_target.is_empty() {
        return Err(AttackError::NoNonTarget);
    }
    let base = match cfg.rate_of {
        RateOf::All => train.len(),
        RateOf::NonTarget => non_target.len(),
    };
    let requested = ((cfg.rate * base as f64).round() as usize).max(1);
    if requested > non_target.len() {
        return Err(AttackError::TooFewSamples { requested, available: non_target.len() });
    }

    let mut rng = Rng::new(cfg.seed);
    let poisoned_rows: Vec<usize> = rng.sample_indices(non_target.len(), requested).into_iter().map(|i| non_target[i]).collect();
    let mut poisoned_train = train.to_vec();
    for &row in &poisoned_rows {
        let example = &mut poisoned_train[row];
        example.text = cfg.trigger.insert(&example.text, &mut rng);
        example.label = cfg.target;
    }

    let mut test_rng = Rng::new(cfg.seed.wrapping_add(TEST_STREAM));
    let test_pacc: Vec<Example> =
        test.iter().map(|e| Example { text: cfg.trigger.insert(&e.text, &mut test_rng), label: e.label }).collect();
    let test_asr =
        test_pacc.iter().filter(|e| e.label != cfg.target).map(|e| Example { text: e.text.clone(), label: cfg.target }).collect();

    Ok(Poisoned { train: poisoned_train, poisoned_rows, test_asr, test_pacc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: usize) -> Example {
        Example { text: text.to_owned(), label }
    }

    /// `n` rows alternating labels 0, 1, 0, ... with distinct multi-word texts.
    fn data(n: usize) -> Vec<Example> {
        (0..n).map(|i| ex(&format!("row {i} is  fine"), i % 2)).collect()
    }

    /// Removes the first occurrence of `block` to recover the original words;
    /// `None` if `block` is not present contiguously.
    fn without_block<'a>(words: &[&'a str], block: &[&str]) -> Option<Vec<&'a str>> {
        let at = words.windows(block.len()).position(|w| w == block)?;
        let mut rest = words.to_vec();
        rest.drain(at..at + block.len());
        Some(rest)
    }

    #[test]
    fn badnets_insertion_keeps_words_and_adds_trigger() {
        let trigger = Trigger::BadNets { words: vec!["cf".into(), "mn".into()], insertions: 3 };
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let out = trigger.insert("  the  movie was\tgreat ", &mut rng);
            let words: Vec<&str> = out.split(' ').collect();
            assert_eq!(words.len(), 7);
            let original: Vec<&str> = words.iter().copied().filter(|w| !["cf", "mn"].contains(w)).collect();
            assert_eq!(original, ["the", "movie", "was", "great"]);
        }
        assert!(["cf", "mn"].contains(&trigger.insert("", &mut rng).split(' ').next().unwrap()));
    }

    #[test]
    fn badnets_positions_and_words_vary() {
        let trigger = Trigger::badnets_default();
        let mut rng = Rng::new(2);
        let mut positions = [false; 3];
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let out = trigger.insert("a b", &mut rng);
            let words: Vec<&str> = out.split(' ').collect();
            let at = words.iter().position(|w| *w != "a" && *w != "b").unwrap();
            positions[at] = true;
            used.insert(words[at].to_owned());
        }
        assert!(positions.iter().all(|&p| p));
        assert_eq!(used.len(), 4);
    }

    #[test]
    fn addsent_inserts_one_contiguous_block() {
        let trigger = Trigger::addsent_default();
        let block = ["I", "watch", "this", "3D", "movie"];
        let mut rng = Rng::new(3);
        for text in ["", "one", "a fine film indeed"] {
            let out = trigger.insert(text, &mut rng);
            let words: Vec<&str> = out.split(' ').collect();
            let rest = without_block(&words, &block).unwrap();
            assert_eq!(rest, text.split_whitespace().collect::<Vec<_>>());
        }
    }

    #[test]
    fn tokens_are_lowercase_and_distinct() {
        assert_eq!(Trigger::badnets_default().tokens(), ["cf", "mn", "bb", "tq"]);
        assert_eq!(Trigger::addsent_default().tokens(), ["i", "watch", "this", "3d", "movie"]);
        let t = Trigger::BadNets { words: vec!["CF".into(), "cf".into(), "two words".into()], insertions: 1 };
        assert_eq!(t.tokens(), ["cf", "two", "words"]);
    }

    #[test]
    fn trigger_serde_shape() {
        let json = serde_json::to_string(&Trigger::addsent_default()).unwrap();
        assert_eq!(json, r#"{"kind":"addsent","sentence":"I watch this 3D movie"}"#);
        let t: Trigger = serde_json::from_str(r#"{"kind":"badnets","words":["cf"],"insertions":2}"#).unwrap();
        assert_eq!(t, Trigger::BadNets { words: vec!["cf".into()], insertions: 2 });
        assert_eq!(serde_json::to_string(&RateOf::NonTarget).unwrap(), r#""non-target""#);
    }

    #[test]
    fn poison_rate_of_all() {
        let train = data(100);
        let test = data(10);
        let cfg = PoisonConfig::default();
        let p = poison(&train, &test, 2, &cfg).unwrap();
        assert_eq!(p.poisoned_rows.len(), 10);
        assert!(p.poisoned_rows.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.train.len(), train.len());
        let tokens = cfg.trigger.tokens();
        for (i, (before, after)) in train.iter().zip(&p.train).enumerate() {
            if p.poisoned_rows.contains(&i) {
                assert_eq!(before.label, 0, "only non-target rows are poisoned");
                assert_eq!(after.label, 1);
                assert!(after.text.split(' ').any(|w| tokens.iter().any(|t| t == w)));
            } else {
                assert_eq!(before, after);
            }
        }
        assert_eq!(p.test_pacc.len(), 10);
        assert_eq!(p.test_asr.len(), 5);
        assert!(p.test_asr.iter().all(|e| e.label == 1));
        for (clean, triggered) in test.iter().zip(&p.test_pacc) {
            assert_eq!(clean.label, triggered.label);
            assert_ne!(clean.text, triggered.text);
        }
        let triggered_non_target: Vec<&str> = p.test_pacc.iter().filter(|e| e.label != 1).map(|e| e.text.as_str()).collect();
        assert_eq!(triggered_non_target, p.test_asr.iter().map(|e| e.text.as_str()).collect::<Vec<_>>());
    }

    #[test]
    fn poison_rate_of_non_target_and_rounding() {
        let train = data(101);
        let cfg = PoisonConfig { rate: 0.3, rate_of: RateOf::NonTarget, target: 0, ..PoisonConfig::default() };
        // 50 rows have label 1 (non-target): round(0.3 * 50) = 15.
        assert_eq!(poison(&train, &[], 2, &cfg).unwrap().poisoned_rows.len(), 15);
        let tiny = PoisonConfig { rate: 0.001, ..PoisonConfig::default() };
        assert_eq!(poison(&train, &[], 2, &tiny).unwrap().poisoned_rows.len(), 1);
    }

    #[test]
    fn poison_is_deterministic() {
        let (train, test) = (data(60), data(20));
        let cfg = PoisonConfig { trigger: Trigger::addsent_default(), seed: 9, ..PoisonConfig::default() };
        let a = poison(&train, &test, 2, &cfg).unwrap();
        assert_eq!(a, poison(&train, &test, 2, &cfg).unwrap());
        let b = poison(&train, &test, 2, &PoisonConfig { seed: 10, ..cfg.clone() }).unwrap();
        assert_ne!(a.poisoned_rows, b.poisoned_rows);
        // The test sets depend on the seed only, not on the rate.
        let c = poison(&train, &test, 2, &PoisonConfig { rate: 0.3, ..cfg }).unwrap();
        assert_eq!(a.test_pacc, c.test_pacc);
    }

    #[test]
    fn poison_errors() {
        let train = data(10);
        let run = |cfg: PoisonConfig| poison(&train, &[], 2, &cfg);
        for rate in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(run(PoisonConfig { rate, ..PoisonConfig::default() }), Err(AttackError::RateOutOfRange(_))));
        }
        assert!(matches!(
            run(PoisonConfig { target: 2, ..PoisonConfig::default() }),
            Err(AttackError::TargetOutOfRange { target: 2, num_labels: 2 })
        ));
        assert!(matches!(
            run(PoisonConfig { rate: 0.6, ..PoisonConfig::default() }),
            Err(AttackError::TooFewSamples { requested: 6, available: 5 })
        ));
        for trigger in [
            Trigger::BadNets { words: vec![], insertions: 1 },
            Trigger::BadNets { words: vec!["cf".into()], insertions: 0 },
            Trigger::BadNets { words: vec![" ".into()], insertions: 1 },
            Trigger::AddSent { sentence: "  ".into() },
        ] {
            assert!(matches!(run(PoisonConfig { trigger, ..PoisonConfig::default() }), Err(AttackError::EmptyTrigger)));
        }
        let all_target: Vec<Example> = (0..5).map(|i| ex(&i.to_string(), 1)).collect();
        assert!(matches!(poison(&all_target, &[], 2, &PoisonConfig::default()), Err(AttackError::NoNonTarget)));
        assert!(matches!(
            poison(&train, &[ex("x", 5)], 2, &PoisonConfig::default()),
            Err(AttackError::Data(DataError::LabelOutOfRange { label: 5, .. }))
        ));
    }
}
