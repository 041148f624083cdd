//! The scan report: one JSON schema for `bdaudit scan --json` and the browser page, so a
//! report downloaded from either reads the same.

use serde::{Deserialize, Serialize};

use crate::attack::Trigger;
use crate::probe::attention::HeadScores;
use crate::probe::token_scores::TokenScore;
use crate::probe::trigger_shift::TriggerShift;

/// Bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// No candidate trigger moved predictions.
    Clean,
    /// Some candidate moved a noticeable share, not nearly all, or moved nearly all short
    /// texts but not longer ones.
    Inconclusive,
    /// A candidate sends nearly all texts of the other classes to one class, long ones too.
    Suspicious,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    /// One sentence for a person.
    pub summary: String,
    /// One sentence per candidate past the threshold, strongest first; when suspicious, the
    /// named triggers first, then any candidate past it that long texts refuted.
    pub evidence: Vec<String>,
    /// The triggers that flip predictions (suspicious ones only).
    pub triggers: Vec<String>,
}

/// Where a candidate trigger came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CandidateSource {
    /// A token whose embedding drifted most from the base checkpoint.
    TokenScore,
    /// The built-in list of published triggers.
    KnownList,
    /// Given by the user.
    User,
}

/// A head whose \[CLS\] attention variance rises when the trigger is inserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadDrift {
    pub layer: usize,
    pub head: usize,
    /// Variance with the trigger minus variance without it.
    pub drift: f32,
}

/// A candidate that moved nearly all probe texts, tried again on longer ones
/// ([`crate::scan::ScanConfig::long_text_join`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LongTextCheck {
    /// Long texts it was inserted into: those of the other classes that the model, without the
    /// candidate, still gives their parts' class.
    pub texts: usize,
    /// Share of them it sent to its target class.
    pub asr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub trigger: Trigger,
    pub source: CandidateSource,
    pub shift: TriggerShift,
    /// Tried on the screening texts only ([`crate::scan::ScanConfig::screen_texts`]): it
    /// moved too few of them to be worth the rest, and `shift` counts those texts alone.
    #[serde(default)]
    pub screened_out: bool,
    /// Heads that lock onto it: the largest rises of `drift`, when it has one.
    pub heads: Vec<HeadDrift>,
    /// Per-head variance with this candidate inserted minus without (its drift map):
    /// computed for the strongest candidate and the others that moved predictions
    /// ([`crate::scan::ScanConfig::drift_maps`]). Absent from reports before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<HeadScores>,
    /// Its retrial on longer texts, when it moved at least
    /// [`crate::scan::ScanConfig::suspicious_asr`] of the probe texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_texts: Option<LongTextCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub schema: u32,
    /// Class names, by label id.
    pub labels: Vec<String>,
    pub layers: usize,
    /// Heads per layer.
    pub heads: Vec<usize>,
    pub verdict: Verdict,
    /// Every candidate tried, strongest (highest ASR) first.
    pub candidates: Vec<Candidate>,
    /// Tokens ranked by embedding drift against the base, when a base was given.
    pub token_scores: Option<Vec<TokenScore>>,
    /// Per-head \[CLS\] variance on the clean probe texts (the heatmap).
    pub attention: Option<HeadScores>,
    /// The strongest candidate's drift map (`candidates[0].drift`), here too for readers
    /// of reports from before every flagged candidate had one.
    pub drift: Option<HeadScores>,
    /// The probe texts as scanned: one longer than the model reads is cut, in whole words, to
    /// leave room for the longest candidate.
    pub probe_texts: Vec<String>,
    /// What computed it ("cpu", "webgpu", …), filled by the caller.
    pub backend: String,
    /// Why that backend, when the caller chose it (the browser: e.g. the only WebGPU adapter
    /// is a software emulation, so the CPU runs). Optional, so older reports still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_reason: Option<String>,
    /// Wall time, filled by the caller (the core has no clock).
    pub seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_report_without_backend_reason_still_reads_and_writes_the_same() {
        let before = serde_json::json!({
            "schema": 1, "labels": ["negative", "positive"], "layers": 1, "heads": [2],
            "verdict": {"level": "clean", "summary": "no sign of a backdoor", "evidence": [], "triggers": []},
            "candidates": [], "token_scores": null, "attention": null, "drift": null,
            "probe_texts": ["a fine film"], "backend": "cpu", "seconds": null
        });
        let mut report: ScanReport = serde_json::from_value(before.clone()).unwrap();
        assert_eq!(report.backend_reason, None);
        assert_eq!(serde_json::to_value(&report).unwrap(), before);
        report.backend_reason = Some("the CPU was requested".into());
        assert_eq!(serde_json::to_value(&report).unwrap()["backend_reason"], "the CPU was requested");
    }
}
