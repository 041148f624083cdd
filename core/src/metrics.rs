//! Evaluation metrics of the backdoor-defense papers.
//!
//! All rates are fractions in `[0, 1]`, never NaN: an empty evaluation set yields
//! 0.0 so reports and JSON stay well-formed.

use serde::{Deserialize, Serialize};

/// Why predictions could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("{labels} labels but {preds} predictions")]
    LengthMismatch { labels: usize, preds: usize },
    #[error("row {index}: label {label} must be below {num_labels} (the number of labels)")]
    LabelOutOfRange { index: usize, label: usize, num_labels: usize },
    #[error("row {index}: prediction {pred} must be below {num_labels} (the number of labels)")]
    PredictionOutOfRange { index: usize, pred: usize, num_labels: usize },
}

/// Confusion matrix, `counts[true_label][predicted_label]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub num_labels: usize,
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An all-zero `n × n` matrix.
    pub fn new(num_labels: usize) -> Confusion {
        Confusion { num_labels, counts: vec![vec![0; num_labels]; num_labels] }
    }

    /// Tallies paired labels and predictions; both must be `< num_labels`.
    pub fn from_predictions(labels: &[usize], preds: &[usize], num_labels: usize) -> Result<Confusion, MetricsError> {
        check_lengths(labels, preds)?;
        let mut confusion = Confusion::new(num_labels);
        for (index, (&label, &pred)) in labels.iter().zip(preds).enumerate() {
            if label >= num_labels {
                return Err(MetricsError::LabelOutOfRange { index, label, num_labels });
            }
            if pred >= num_labels {
                return Err(MetricsError::PredictionOutOfRange { index, pred, num_labels });
            }
            confusion.counts[label][pred] += 1;
        }
        Ok(confusion)
    }

    /// Number of scored rows.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of rows predicted correctly; 0.0 when empty.
    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.counts.len()).map(|i| self.cell(i, i)).sum();
        ratio(correct, self.total())
    }

    /// Share of rows whose true label is not `target` that were predicted as
    /// `target`: the label flip rate a backdoor aims to maximise. 0.0 when there
    /// are no such rows.
    pub fn flip_rate_to(&self, target: usize) -> f64 {
        let (flipped, non_target) = self
            .counts
            .iter()
            .enumerate()
            .filter(|&(label, _)| label != target)
            .fold((0, 0), |(flipped, n), (label, row)| (flipped + self.cell(label, target), n + row.iter().sum::<u64>()));
        ratio(flipped, non_target)
    }

    /// Recall of each true class (index = label); 0.0 for a class with no rows.
    /// A backdoor shows up as low recall on the non-target classes of a
    /// triggered test set.
    pub fn per_class_recall(&self) -> Vec<f64> {
        self.counts.iter().enumerate().map(|(label, row)| ratio(self.cell(label, label), row.iter().sum())).collect()
    }

    /// `counts[label][pred]`, 0 when out of bounds (the fields are public and may
    /// come from JSON, so the matrix is not trusted to be square).
    fn cell(&self, label: usize, pred: usize) -> u64 {
        self.counts.get(label).and_then(|row| row.get(pred)).copied().unwrap_or(0)
    }
}

/// Clean accuracy (CACC): accuracy on the clean test set; a defense must keep it
/// close to the undefended model's.
pub fn cacc(labels: &[usize], preds: &[usize]) -> Result<f64, MetricsError> {
    accuracy(labels, preds)
}

/// Attack success rate (ASR), also called label flip rate (LFR): the share of
/// triggered non-target test inputs predicted as `target`. A defense should drive
/// it towards the clean model's rate.
pub fn asr(preds_on_triggered_non_target: &[usize], target: usize) -> f64 {
    let hits = preds_on_triggered_non_target.iter().filter(|&&p| p == target).count();
    ratio(hits as u64, preds_on_triggered_non_target.len() as u64)
}

/// Poisoned accuracy (PACC): accuracy against the true labels on triggered test
/// inputs; high when the model ignores the trigger.
pub fn pacc(labels: &[usize], preds: &[usize]) -> Result<f64, MetricsError> {
    accuracy(labels, preds)
}

/// ΔPACC: absolute difference between a model's PACC and that of a model
/// retrained on clean data; near 0 means the trigger no longer matters.
pub fn delta_pacc(pacc_model: f64, pacc_clean_retrained: f64) -> f64 {
    (pacc_model - pacc_clean_retrained).abs()
}

/// Metrics of one evaluation run, as written to reports; a metric whose test set
/// was not evaluated is `None` and left out of the JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr: Option<f64>,
    /// ASR's rows without their trigger: the share of the clean test set's non-target rows
    /// predicted as the target ([`Confusion::flip_rate_to`]; `bdaudit attack` builds the ASR
    /// rows from exactly these). ASR counts these clean mistakes too; ASR minus this is what
    /// the trigger itself adds, about 0 for a model without a backdoor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr_without_trigger: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacc: Option<f64>,
    /// The clean test set's confusion matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
    /// The triggered test set's, against the true labels: a backdoor sends every class to the
    /// target; a shifted trigger (RGA) sends the target class to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion_pacc: Option<Confusion>,
    /// Rows in the clean test set.
    pub n_clean: usize,
    /// Rows in the triggered non-target test set (ASR).
    pub n_asr: usize,
    /// Rows in the triggered test set with true labels (PACC).
    pub n_pacc: usize,
}

fn check_lengths(labels: &[usize], preds: &[usize]) -> Result<(), MetricsError> {
    if labels.len() != preds.len() {
        return Err(MetricsError::LengthMismatch { labels: labels.len(), preds: preds.len() });
    }
    Ok(())
}

fn accuracy(labels: &[usize], preds: &[usize]) -> Result<f64, MetricsError> {
    check_lengths(labels, preds)?;
    let correct = labels.iter().zip(preds).filter(|(l, p)| l == p).count();
    Ok(ratio(correct as u64, labels.len() as u64))
}

/// `num / den`, or 0.0 when `den` is 0 so no metric is ever NaN.
pub(crate) fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_and_rates() {
        let labels = [0, 0, 0, 1, 1, 2, 2, 2];
        let preds = [0, 1, 1, 1, 1, 2, 1, 0];
        let c = Confusion::from_predictions(&labels, &preds, 3).unwrap();
        assert_eq!(c.counts, vec![vec![1, 2, 0], vec![0, 2, 0], vec![1, 1, 1]]);
        assert_eq!(c.total(), 8);
        assert_eq!(c.accuracy(), 4.0 / 8.0);
        // Non-target (≠1) rows: 6, of which predicted 1: 2 + 1.
        assert_eq!(c.flip_rate_to(1), 3.0 / 6.0);
        assert_eq!(c.flip_rate_to(9), 0.0);
        assert_eq!(c.per_class_recall(), vec![1.0 / 3.0, 1.0, 1.0 / 3.0]);
    }

    #[test]
    fn empty_is_zero_not_nan() {
        let c = Confusion::new(2);
        assert_eq!(c.total(), 0);
        assert_eq!(c.accuracy(), 0.0);
        assert_eq!(c.flip_rate_to(1), 0.0);
        assert_eq!(c.per_class_recall(), vec![0.0, 0.0]);
        assert_eq!(cacc(&[], &[]).unwrap(), 0.0);
        assert_eq!(asr(&[], 1), 0.0);
    }

    #[test]
    fn malformed_matrix_does_not_panic() {
        let c: Confusion = serde_json::from_str(r#"{"num_labels":3,"counts":[[1],[0,2,5]]}"#).unwrap();
        assert_eq!(c.accuracy(), 3.0 / 8.0);
        assert_eq!(c.flip_rate_to(0), 0.0);
        assert_eq!(c.per_class_recall(), vec![1.0, 2.0 / 7.0]);
    }

    #[test]
    fn confusion_errors() {
        assert_eq!(Confusion::from_predictions(&[0, 1], &[0], 2), Err(MetricsError::LengthMismatch { labels: 2, preds: 1 }));
        assert_eq!(
            Confusion::from_predictions(&[0, 2], &[0, 0], 2),
            Err(MetricsError::LabelOutOfRange { index: 1, label: 2, num_labels: 2 })
        );
        assert_eq!(
            Confusion::from_predictions(&[0, 1], &[3, 0], 2),
            Err(MetricsError::PredictionOutOfRange { index: 0, pred: 3, num_labels: 2 })
        );
        assert!(cacc(&[1], &[]).is_err());
        assert!(pacc(&[], &[1]).is_err());
    }

    #[test]
    fn paper_metrics() {
        assert_eq!(cacc(&[0, 1, 1, 0], &[0, 1, 0, 0]).unwrap(), 0.75);
        assert_eq!(pacc(&[0, 1], &[1, 1]).unwrap(), 0.5);
        assert_eq!(asr(&[1, 1, 0, 1], 1), 0.75);
        assert!((delta_pacc(0.52, 0.9) - 0.38).abs() < 1e-12);
        assert_eq!(delta_pacc(0.9, 0.52), delta_pacc(0.52, 0.9));
    }

    #[test]
    fn eval_metrics_json_skips_missing() {
        let m = EvalMetrics { cacc: Some(0.9), n_clean: 10, ..EvalMetrics::default() };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"cacc":0.9,"n_clean":10,"n_asr":0,"n_pacc":0}"#);
        let back: EvalMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cacc, Some(0.9));
        assert_eq!(back.asr, None);
    }
}
