//! Token splitting, MBTSAD's augmentation (`../shared/papers/mbtsad.txt`, §III-B): split
//! words at a random character position ("beauty" → "be auty"). A rare-word trigger split
//! this way is no longer the token the backdoor keys on, while the sentence stays readable,
//! so a model retrained on split texts keeps its task and loses the trigger's shortcut.

use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::rng::Rng;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("token splitting setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error("row {row} has no word of two or more characters to split ({text:?}); token splitting needs real words")]
    NothingToSplit { row: usize, text: String },
}

/// How many variants and how many words per variant. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitConfig {
    /// Split variants made of each text (paper: N = 3).
    pub variants: usize,
    /// Words split per variant: max(`min_words`, ⌈`fraction`·n⌉), at most the splittable
    /// words of the text (paper: max(10, 0.3·n)).
    pub min_words: usize,
    pub fraction: f64,
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { variants: 3, min_words: 10, fraction: 0.3, seed: 1 }
    }
}

impl SplitConfig {
    pub fn validate(&self) -> Result<(), SplitError> {
        if self.variants == 0 {
            return Err(SplitError::Config { field: "variants", value: "0".into(), reason: "must be at least 1" });
        }
        if !(self.fraction >= 0.0 && self.fraction <= 1.0) {
            return Err(SplitError::Config { field: "fraction", value: self.fraction.to_string(), reason: "must be in [0, 1]" });
        }
        Ok(())
    }

    /// Words to split in a text of `n` words of which `splittable` can be split.
    pub fn words_to_split(&self, n: usize, splittable: usize) -> usize {
        let wanted = self.min_words.max((self.fraction * n as f64).ceil() as usize);
        wanted.min(splittable)
    }
}

/// One split variant of `text`: `k` distinct words of two or more characters, chosen at
/// random, each cut at a random inner character boundary. Words are re-joined with single
/// spaces.
pub fn split_text(text: &str, config: &SplitConfig, rng: &mut Rng) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let splittable: Vec<usize> = (0..words.len()).filter(|&i| words[i].chars().count() >= 2).collect();
    let k = config.words_to_split(words.len(), splittable.len());
    let chosen: Vec<usize> = rng.sample_indices(splittable.len(), k).into_iter().map(|i| splittable[i]).collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len() + k);
    for (i, word) in words.iter().enumerate() {
        if chosen.contains(&i) {
            let chars = word.chars().count();
            let at = 1 + rng.below(chars - 1);
            let byte = word.char_indices().nth(at).map_or(word.len(), |(b, _)| b);
            out.push(word[..byte].to_string());
            out.push(word[byte..].to_string());
        } else {
            out.push(word.to_string());
        }
    }
    out.join(" ")
}

/// Fails on the first text (rows numbered from 1) with no word that can be split: the
/// augmentation would only copy it.
pub fn check_splittable(examples: &[Example]) -> Result<(), SplitError> {
    match examples.iter().enumerate().find(|(_, e)| !e.text.split_whitespace().any(|w| w.chars().count() >= 2)) {
        Some((row, e)) => Err(SplitError::NothingToSplit { row: row + 1, text: e.text.chars().take(60).collect() }),
        None => Ok(()),
    }
}

/// `config.variants` split variants of every example, labels unchanged, seeded. Fails when
/// some text has no word that can be split ([`check_splittable`]).
pub fn augment(examples: &[Example], config: &SplitConfig) -> Result<Vec<Example>, SplitError> {
    config.validate()?;
    check_splittable(examples)?;
    let mut rng = Rng::new(config.seed);
    let mut out = Vec::with_capacity(examples.len() * config.variants);
    for e in examples {
        for _ in 0..config.variants {
            out.push(Example { text: split_text(&e.text, config, &mut rng), label: e.label });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: usize) -> Example {
        Example { text: text.into(), label }
    }

    #[test]
    fn splitting_keeps_every_character_in_order_and_adds_one_space_per_split_word() {
        let text = "the beauty of this film is in its quiet and patient storytelling , naïve or not";
        let config = SplitConfig::default();
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let out = split_text(text, &config, &mut rng);
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(squash(&out), squash(text), "{out}");
            let n = text.split_whitespace().count();
            let splittable = text.split_whitespace().filter(|w| w.chars().count() >= 2).count();
            // 16 words, 14 of two or more characters: max(10, ⌈4.8⌉) = 10 splits.
            assert_eq!(config.words_to_split(n, splittable), 10);
            assert_eq!(out.split_whitespace().count(), n + 10, "{out}");
        }
    }

    #[test]
    fn short_texts_split_every_splittable_word() {
        let mut rng = Rng::new(1);
        let out = split_text("a good film", &SplitConfig::default(), &mut rng);
        let parts: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(parts.len(), 5, "{out}");
        assert_eq!(parts[0], "a");
        assert_eq!(format!("{}{}", parts[1], parts[2]), "good");
        assert_eq!(format!("{}{}", parts[3], parts[4]), "film");
    }

    #[test]
    fn augment_makes_seeded_variants_with_labels_kept() {
        let data = vec![ex("a truly wonderful film", 1), ex("dull and lifeless", 0)];
        let config = SplitConfig::default();
        let out = augment(&data, &config).unwrap();
        assert_eq!(out.len(), 6);
        assert_eq!(out.iter().map(|e| e.label).collect::<Vec<_>>(), vec![1, 1, 1, 0, 0, 0]);
        assert_eq!(out, augment(&data, &config).unwrap(), "same seed, same variants");
        assert_ne!(out, augment(&data, &SplitConfig { seed: 2, ..config }).unwrap());
    }

    #[test]
    fn bad_input_is_refused() {
        let err = augment(&[ex("fine film", 1), ex("a b c", 0)], &SplitConfig::default()).unwrap_err();
        assert_eq!(err, SplitError::NothingToSplit { row: 2, text: "a b c".into() });
        assert!(matches!(
            augment(&[], &SplitConfig { variants: 0, ..SplitConfig::default() }),
            Err(SplitError::Config { field: "variants", .. })
        ));
        assert!(matches!(
            SplitConfig { fraction: 1.5, ..SplitConfig::default() }.validate(),
            Err(SplitError::Config { field: "fraction", .. })
        ));
    }
}
