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
    /// Some candidate moved a noticeable share, not a majority.
    Inconclusive,
    /// A candidate sends most texts of the other classes to one class.
    Suspicious,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    /// One sentence for a person.
    pub summary: String,
    /// One sentence per candidate past the threshold, strongest first.
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

/// A head whose [CLS] attention variance rises when the trigger is inserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadDrift {
    pub layer: usize,
    pub head: usize,
    /// Variance with the trigger minus variance without it.
    pub drift: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub trigger: Trigger,
    pub source: CandidateSource,
    pub shift: TriggerShift,
    /// Heads that lock onto it (computed for the strongest candidate only).
    pub heads: Vec<HeadDrift>,
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
    /// Per-head [CLS] variance on the clean probe texts (the heatmap).
    pub attention: Option<HeadScores>,
    /// Per-head variance with the strongest candidate inserted minus without (the drift map).
    pub drift: Option<HeadScores>,
    pub probe_texts: Vec<String>,
    /// What computed it ("cpu", "webgpu", …), filled by the caller.
    pub backend: String,
    /// Wall time, filled by the caller (the core has no clock).
    pub seconds: Option<f64>,
}
