//! Token splitting, MBTSAD's augmentation (`../shared/papers/mbtsad.txt`, §III-B): split
//! words at a random character position ("beauty" → "be auty"). A rare-word trigger split
//! this way is no longer the token the backdoor keys on, while the sentence stays readable,
//! so a model retrained on split texts keeps its task and loses the trigger's shortcut.

use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::quote::excerpt;
use crate::rng::Rng;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("token splitting setting {field} = {value}: {reason}")]
    Config { field: &'static str, value: String, reason: &'static str },
    #[error(
        "none of the {rows} rows has a word of {min_chars} or more characters to split (e.g. {text:?}); token splitting needs real words"
    )]
    NothingToSplit { rows: usize, min_chars: usize, text: String },
}

/// Which words of a text are split, how many, and where they are cut.
///
/// The paper (§IV-A5) says it follows the settings of nlpaug (\[10\]) and also writes the count
/// as max(10, 0.3·n). nlpaug's `SplitAug` does not compute that: its defaults clamp ⌈0.3·n⌉ to
/// [1, 10] and skip words under 4 characters. The paper's own example (an SST-2 row, of which
/// it splits 4 of the first 9 words, each of 5 or more characters, and leaves "and" and "of"
/// whole) fits nlpaug; the formula would split 10 of that row's 15 words of 2 or more
/// characters, short ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SplitRule {
    /// nlpaug's `SplitAug` defaults, which the paper follows: ⌈fraction·n⌉ words (1 to 10) of 4
    /// or more characters.
    ///
    /// n counts every space-separated token (punctuation too); each cut leaves at least 2
    /// characters after it (`randint(1, len - 1)`, upper bound exclusive).
    Nlpaug,
    /// The paper's formula read literally: max(10, ⌈fraction·n⌉) words of 2 or more
    /// characters. The default.
    ///
    /// At most every such word, cut at any inner position: a row with at most 10 of them has
    /// every one split. The default because at the paper's size on SST-2 nlpaug's rule did no
    /// better (one seed, docs/results.md), and every other setting was chosen under this one.
    #[default]
    PaperText,
}

impl SplitRule {
    /// (fewest words split, most words split, shortest splittable word, fewest characters
    /// after the cut).
    fn limits(self) -> (usize, usize, usize, usize) {
        match self {
            SplitRule::Nlpaug => (1, 10, 4, 2),
            SplitRule::PaperText => (10, usize::MAX, 2, 1),
        }
    }

    /// Shortest word, in characters, this rule splits.
    pub fn min_chars(self) -> usize {
        self.limits().2
    }
}

/// Most split variants per text: the paper makes 3; the augmented set is held in memory, and
/// a mistyped count must fail here, not as an allocation of billions of rows.
const MAX_VARIANTS: usize = 100;

/// How many variants and how many words per variant. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitConfig {
    /// Split variants made of each text (paper: N = 3).
    pub variants: usize,
    /// Which words, how many and where cut (default: the paper's formula as written).
    pub rule: SplitRule,
    /// Share of a text's tokens split, before the rule's bounds (paper and nlpaug: 0.3).
    pub fraction: f64,
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { variants: 3, rule: SplitRule::default(), fraction: 0.3, seed: 1 }
    }
}

impl SplitConfig {
    pub fn validate(&self) -> Result<(), SplitError> {
        if !(1..=MAX_VARIANTS).contains(&self.variants) {
            return Err(SplitError::Config { field: "variants", value: self.variants.to_string(), reason: "must be from 1 to 100" });
        }
        if !(self.fraction >= 0.0 && self.fraction <= 1.0) {
            return Err(SplitError::Config { field: "fraction", value: self.fraction.to_string(), reason: "must be in [0, 1]" });
        }
        Ok(())
    }

    /// Words to split in a text of `n` tokens of which `splittable` can be split.
    pub fn words_to_split(&self, n: usize, splittable: usize) -> usize {
        let (fewest, most, _, _) = self.rule.limits();
        let wanted = ((self.fraction * n as f64).ceil() as usize).clamp(fewest, most);
        wanted.min(splittable)
    }

    fn splittable(&self, word: &str) -> bool {
        word.chars().count() >= self.rule.min_chars()
    }
}

/// One split variant of `text`: distinct splittable words chosen at random, each cut at a
/// random position the rule allows. Words are re-joined with single spaces; a text with no
/// splittable word comes back as it was (nlpaug does the same).
pub fn split_text(text: &str, config: &SplitConfig, rng: &mut Rng) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let splittable: Vec<usize> = (0..words.len()).filter(|&i| config.splittable(words[i])).collect();
    let k = config.words_to_split(words.len(), splittable.len());
    let chosen: Vec<usize> = rng.sample_indices(splittable.len(), k).into_iter().map(|i| splittable[i]).collect();
    let min_tail = config.rule.limits().3;
    let mut out: Vec<String> = Vec::with_capacity(words.len() + k);
    for (i, word) in words.iter().enumerate() {
        if chosen.contains(&i) {
            let chars = word.chars().count();
            let at = 1 + rng.below(chars - min_tail);
            let byte = word.char_indices().nth(at).map_or(word.len(), |(b, _)| b);
            out.push(word[..byte].to_string());
            out.push(word[byte..].to_string());
        } else {
            out.push(word.to_string());
        }
    }
    out.join(" ")
}

/// Rows of `examples` with no word the rule can split: their variants are copies.
pub fn unsplittable_rows(examples: &[Example], config: &SplitConfig) -> usize {
    examples.iter().filter(|e| !e.text.split_whitespace().any(|w| config.splittable(w))).count()
}

/// Fails when no row has a word the rule can split: the augmentation would only copy the data.
pub fn check_splittable(examples: &[Example], config: &SplitConfig) -> Result<(), SplitError> {
    if examples.is_empty() || unsplittable_rows(examples, config) < examples.len() {
        return Ok(());
    }
    Err(SplitError::NothingToSplit { rows: examples.len(), min_chars: config.rule.min_chars(), text: excerpt(&examples[0].text) })
}

/// `config.variants` split variants of every example, labels unchanged, seeded. Fails when no
/// text has a word that can be split ([`check_splittable`]).
pub fn augment(examples: &[Example], config: &SplitConfig) -> Result<Vec<Example>, SplitError> {
    config.validate()?;
    check_splittable(examples, config)?;
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

    const TEXT: &str = "the beauty of this film is in its quiet and patient storytelling , naïve or not";

    const PINNED: &str = "the beaut y o f this fi lm is i n its qui et a nd p atient storytelling , n aïve o r no t";

    fn nlpaug() -> SplitConfig {
        SplitConfig { rule: SplitRule::Nlpaug, ..SplitConfig::default() }
    }

    fn squash(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn nlpaug_rule_splits_three_tenths_of_the_tokens_and_only_long_words() {
        let config = nlpaug();
        let mut rng = Rng::new(7);
        let words: Vec<&str> = TEXT.split_whitespace().collect();
        // 16 tokens: ⌈4.8⌉ = 5 of the 7 words of 4 or more characters.
        assert_eq!(config.words_to_split(16, 7), 5);
        for _ in 0..50 {
            let out = split_text(TEXT, &config, &mut rng);
            assert_eq!(squash(&out), squash(TEXT), "{out}");
            let parts: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(parts.len(), words.len() + 5, "{out}");
            // Walk the original words: a split one is two parts, each cut leaving ≥ 2 characters.
            let mut p = 0;
            for w in &words {
                if parts[p] == *w {
                    p += 1;
                    continue;
                }
                assert!(w.chars().count() >= 4, "{w} split in {out}");
                assert_eq!(format!("{}{}", parts[p], parts[p + 1]), *w, "{out}");
                assert!(parts[p + 1].chars().count() >= 2, "{w} cut too late in {out}");
                p += 2;
            }
        }
    }

    #[test]
    fn nlpaug_rule_count_is_clamped_to_one_and_ten() {
        let config = nlpaug();
        assert_eq!(config.words_to_split(3, 2), 1, "⌈0.9⌉ = 1");
        assert_eq!(config.words_to_split(1, 1), 1);
        assert_eq!(config.words_to_split(100, 80), 10, "⌈30⌉ capped at 10");
        assert_eq!(config.words_to_split(100, 4), 4, "no more than can be split");
        let mut rng = Rng::new(1);
        assert_eq!(split_text("a good film", &config, &mut rng).split_whitespace().count(), 4);
        // A four-letter word has two cuts that leave two characters after them.
        let cuts: std::collections::BTreeSet<String> = (0..40).map(|_| split_text("good", &config, &mut rng)).collect();
        assert_eq!(cuts.into_iter().collect::<Vec<_>>(), ["g ood", "go od"]);
    }

    #[test]
    fn paper_text_rule_splits_at_least_ten_words_of_two_characters() {
        let config = SplitConfig::default();
        assert_eq!(config.rule, SplitRule::PaperText);
        let mut rng = Rng::new(7);
        // 16 tokens, 14 of two or more characters: max(10, ⌈4.8⌉) = 10 splits.
        assert_eq!(config.words_to_split(16, 14), 10);
        for _ in 0..20 {
            let out = split_text(TEXT, &config, &mut rng);
            assert_eq!(squash(&out), squash(TEXT), "{out}");
            assert_eq!(out.split_whitespace().count(), 16 + 10, "{out}");
        }
        let out = split_text("a good film", &config, &mut Rng::new(1));
        let parts: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(parts.len(), 5, "{out}");
        assert_eq!(parts[0], "a");
        assert_eq!(format!("{}{}", parts[1], parts[2]), "good");
        assert_eq!(format!("{}{}", parts[3], parts[4]), "film");
    }

    #[test]
    fn paper_text_rule_keeps_the_draws_of_earlier_runs() {
        // The rule docs/results.md's MBTSAD rows before `rule` existed were made with: the same
        // seed must give the same splits, or those rows could not be rerun.
        let out = augment(&[ex(TEXT, 1)], &SplitConfig { seed: 3, ..SplitConfig::default() }).unwrap();
        assert_eq!(out[0].text, PINNED);
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
    fn rows_without_a_splittable_word_are_copied_and_all_such_rows_refused() {
        let data = [ex("fine film", 1), ex("so bad .", 0)];
        let out = augment(&data, &nlpaug()).unwrap();
        assert_eq!(unsplittable_rows(&data, &nlpaug()), 1);
        assert!(out[3..].iter().all(|e| e.text == "so bad ."), "{out:?}");
        assert_eq!(unsplittable_rows(&data, &SplitConfig::default()), 0, "the paper's formula splits 2-letter words");

        let err = augment(&[ex("so bad .", 0), ex("a b c", 1)], &nlpaug()).unwrap_err();
        assert_eq!(err, SplitError::NothingToSplit { rows: 2, min_chars: 4, text: "so bad .".into() });
        assert!(err.to_string().contains("4 or more characters"), "{err}");
        let err = augment(&[ex("a b .", 0)], &SplitConfig::default()).unwrap_err();
        assert!(err.to_string().contains("none of the 1 rows has a word of 2 or more"), "{err}");
        assert!(matches!(
            augment(&[], &SplitConfig { variants: 0, ..SplitConfig::default() }),
            Err(SplitError::Config { field: "variants", .. })
        ));
        assert!(matches!(
            augment(&[ex("good film", 1)], &SplitConfig { variants: 1_000_000_000, ..SplitConfig::default() }),
            Err(SplitError::Config { field: "variants", .. })
        ));
        assert!(matches!(
            SplitConfig { fraction: 1.5, ..SplitConfig::default() }.validate(),
            Err(SplitError::Config { field: "fraction", .. })
        ));
    }

    #[test]
    fn rule_names_are_kebab_case() {
        assert_eq!(serde_json::to_string(&SplitRule::PaperText).unwrap(), "\"paper-text\"");
        assert_eq!(serde_json::from_str::<SplitRule>("\"nlpaug\"").unwrap(), SplitRule::Nlpaug);
    }
}
