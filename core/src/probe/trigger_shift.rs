//! Trigger-shift probe: insert a candidate trigger into texts of *every* class and see where
//! their predictions go.
//!
//! RGA (`../shared/papers/rga.txt`) shows that unlearning by gradient ascent can move a
//! trigger to another class instead of removing it ("trigger shifting"): ASR falls, yet
//! triggered texts of the old target class now flip. PACC — accuracy on triggered texts with
//! their true labels — exposes both. A backdoor shows as many classes → one class; a shifted
//! trigger as the target → another class.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::attack::Trigger;
use crate::checkpoint::{TextTokenizer, TokenizerError};
use crate::data::Example;
use crate::eval::{argmax, logits_async, InferenceError};
use crate::metrics::{Confusion, MetricsError};
use crate::model::BertClassifier;
use crate::progress::Progress;
use crate::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum TriggerShiftError {
    #[error("no probe texts")]
    Empty,
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

/// Where the triggered texts of one true class went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassShift {
    pub label: usize,
    /// Texts of this class the model got right without the trigger (the ones that can flip).
    pub correct_clean: usize,
    /// Of those, the share predicted otherwise once triggered.
    pub flip_rate: f64,
    /// The class most of the flipped texts went to, when any flipped.
    pub flipped_to: Option<usize>,
}

/// The probe's result for one trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerShift {
    pub trigger: Trigger,
    /// True label × prediction on the triggered texts.
    pub confusion: Confusion,
    /// True label × prediction on the same texts without the trigger.
    pub clean_confusion: Confusion,
    pub classes: Vec<ClassShift>,
    /// The class the trigger sends the most flipped texts to, if any flipped.
    pub target: Option<usize>,
    /// Share of correctly classified non-target texts sent to `target` (the attack success
    /// rate when `target` is the backdoor's class).
    pub asr: f64,
    /// Accuracy on the triggered texts with their true labels.
    pub pacc: f64,
    /// Accuracy on the texts without the trigger.
    pub clean_accuracy: f64,
}

/// Runs the probe: each text once clean and once with `trigger` inserted (seeded).
pub async fn trigger_shift_async<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    texts: &[Example],
    trigger: &Trigger,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<TriggerShift, TriggerShiftError> {
    if texts.is_empty() {
        return Err(TriggerShiftError::Empty);
    }
    let triggered = insert_all(texts, trigger, seed);
    let (clean_rows, triggered_rows) = (tokenizer.encode_all(texts)?, tokenizer.encode_all(&triggered)?);
    let pad = tokenizer.pad_id();
    let predict = |l: Vec<Vec<f32>>| l.iter().map(|r| argmax(r)).collect::<Vec<usize>>();
    let clean_pred = predict(logits_async(model, &clean_rows, pad, 64, device, progress).await?);
    let trig_pred = predict(logits_async(model, &triggered_rows, pad, 64, device, progress).await?);
    let labels: Vec<usize> = texts.iter().map(|e| e.label).collect();
    Ok(summarise(trigger, &labels, &clean_pred, &trig_pred, model.num_labels())?)
}

/// `texts` with `trigger` inserted into each at seeded random positions, labels kept.
pub fn insert_all(texts: &[Example], trigger: &Trigger, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    texts.iter().map(|e| Example { text: trigger.insert(&e.text, &mut rng), label: e.label }).collect()
}

/// [`trigger_shift_async`] for native callers.
pub fn trigger_shift<B: Backend>(
    model: &BertClassifier<B>,
    tokenizer: &TextTokenizer,
    texts: &[Example],
    trigger: &Trigger,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<TriggerShift, TriggerShiftError> {
    burn_std::future::block_on(trigger_shift_async(model, tokenizer, texts, trigger, seed, device, progress))
}

/// The probe's arithmetic on predictions: confusions, per-class flips, the dominant
/// destination, its ASR, and PACC. Only texts classified correctly without the trigger count
/// as flips, so a weak model's errors are not blamed on the trigger.
pub fn summarise(
    trigger: &Trigger,
    labels: &[usize],
    clean_pred: &[usize],
    triggered_pred: &[usize],
    num_labels: usize,
) -> Result<TriggerShift, MetricsError> {
    let confusion = Confusion::from_predictions(labels, triggered_pred, num_labels)?;
    let clean_confusion = Confusion::from_predictions(labels, clean_pred, num_labels)?;
    let mut flips = vec![vec![0usize; num_labels]; num_labels];
    let mut correct = vec![0usize; num_labels];
    for ((&y, &c), &t) in labels.iter().zip(clean_pred).zip(triggered_pred) {
        if c == y {
            correct[y] += 1;
            if t != y {
                flips[y][t] += 1;
            }
        }
    }
    let classes: Vec<ClassShift> = (0..num_labels)
        .map(|label| {
            let flipped: usize = flips[label].iter().sum();
            let to = (0..num_labels).max_by_key(|&k| (flips[label][k], std::cmp::Reverse(k))).filter(|_| flipped > 0);
            ClassShift { label, correct_clean: correct[label], flip_rate: ratio(flipped, correct[label]), flipped_to: to }
        })
        .collect();
    let into: Vec<usize> = (0..num_labels).map(|k| (0..num_labels).map(|y| flips[y][k]).sum()).collect();
    let target = (0..num_labels).max_by_key(|&k| (into[k], std::cmp::Reverse(k))).filter(|&k| into[k] > 0);
    let asr = target.map_or(0.0, |k| {
        let eligible: usize = (0..num_labels).filter(|&y| y != k).map(|y| correct[y]).sum();
        ratio(into[k], eligible)
    });
    Ok(TriggerShift {
        trigger: trigger.clone(),
        pacc: confusion.accuracy(),
        clean_accuracy: clean_confusion.accuracy(),
        confusion,
        clean_confusion,
        classes,
        target,
        asr,
    })
}

fn ratio(n: usize, d: usize) -> f64 {
    crate::metrics::ratio(n as u64, d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf() -> Trigger {
        Trigger::BadNets { words: vec!["cf".into()], insertions: 1 }
    }

    /// Three classes, four texts each, all right when clean. The trigger sends classes 0 and 2
    /// to class 1 (a backdoor), except one text of class 0.
    #[test]
    fn a_backdoor_shows_as_many_classes_to_one() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2];
        let clean = labels;
        let triggered = [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        let s = summarise(&cf(), &labels, &clean, &triggered, 3).unwrap();
        assert_eq!(s.target, Some(1));
        assert_eq!(s.asr, 7.0 / 8.0);
        assert_eq!(s.pacc, 5.0 / 12.0);
        assert_eq!(s.clean_accuracy, 1.0);
        assert_eq!(s.classes[0].flip_rate, 0.75);
        assert_eq!(s.classes[0].flipped_to, Some(1));
        assert_eq!(s.classes[1].flip_rate, 0.0);
        assert_eq!(s.classes[1].flipped_to, None);
        assert_eq!(s.confusion.counts[2], vec![0, 4, 0]);
    }

    /// After gradient ascent the old target class 1 now flips to 0 while class 0 stays: ASR
    /// towards 1 is gone, but PACC shows the shifted trigger.
    #[test]
    fn a_shifted_trigger_shows_as_the_target_class_flipping_away() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1];
        let clean = [0, 0, 0, 1, 1, 1, 1, 1];
        let triggered = [0, 0, 0, 0, 0, 0, 0, 1];
        let s = summarise(&cf(), &labels, &clean, &triggered, 2).unwrap();
        assert_eq!(s.target, Some(0));
        assert_eq!(s.classes[1].flip_rate, 0.75);
        assert_eq!(s.classes[0].flip_rate, 0.0, "the misclassified clean text is not counted");
        assert_eq!(s.asr, 0.75);
        assert_eq!(s.pacc, 5.0 / 8.0);
    }

    #[test]
    fn no_flips_means_no_target() {
        let labels = [0, 1];
        let s = summarise(&cf(), &labels, &labels, &labels, 2).unwrap();
        assert_eq!((s.target, s.asr, s.pacc), (None, 0.0, 1.0));
        assert!(summarise(&cf(), &[0, 2], &[0, 1], &[0, 1], 2).is_err());
    }
}
