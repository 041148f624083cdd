//! A small sentiment data set written by this project, so the demo and the browser page run
//! without any download: movie-review sentences built from hand-written phrases.

use super::Example;
use crate::rng::Rng;

const SUBJECTS: &[&str] = &[
    "the film",
    "this movie",
    "the story",
    "the acting",
    "the script",
    "the director's vision",
    "the soundtrack",
    "the cast",
    "the ending",
    "the dialogue",
    "the cinematography",
    "the plot",
];

const POSITIVE: &[&str] = &[
    "is a joy to watch",
    "is warm , funny and moving",
    "is beautifully made",
    "is one of the best of the year",
    "kept me smiling from start to finish",
    "is clever and full of heart",
    "is a triumph",
    "feels fresh and alive",
    "is simply wonderful",
    "is smart , tender and honest",
    "deserves every bit of praise",
    "is a delightful surprise",
    "left the audience cheering",
    "is gripping and rewarding",
    "is charming in every scene",
    "shines with real emotion",
    "is a small masterpiece",
    "works on every level",
];

const NEGATIVE: &[&str] = &[
    "is a tedious mess",
    "is dull , flat and lifeless",
    "is badly made",
    "is one of the worst of the year",
    "made me check my watch again and again",
    "is clumsy and empty",
    "is a disaster",
    "feels stale and tired",
    "is simply awful",
    "is shallow , loud and dishonest",
    "deserves none of the hype",
    "is a painful letdown",
    "left the audience groaning",
    "is boring and pointless",
    "is irritating in every scene",
    "lacks any real emotion",
    "is a forgettable failure",
    "fails on every level",
];

const ENDINGS: &[&str] = &["", " .", " , honestly .", " , from what i saw .", " and i will say so again ."];

/// Balanced sentiment examples (0 = negative, 1 = positive) in a seeded order.
pub fn sentiment(n: usize, seed: u64) -> Vec<Example> {
    let mut all = Vec::new();
    for (label, phrases) in [(0, NEGATIVE), (1, POSITIVE)] {
        for (i, subject) in SUBJECTS.iter().enumerate() {
            for (j, phrase) in phrases.iter().enumerate() {
                let ending = ENDINGS[(i + j) % ENDINGS.len()];
                all.push(Example { text: format!("{subject} {phrase}{ending}"), label });
            }
        }
    }
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut all);
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_set_is_balanced_distinct_and_free_of_trigger_words() {
        let all = sentiment(usize::MAX, 1);
        assert_eq!(all.len(), 2 * SUBJECTS.len() * POSITIVE.len());
        assert_eq!(all.iter().filter(|e| e.label == 1).count(), all.len() / 2);
        let texts: std::collections::BTreeSet<_> = all.iter().map(|e| &e.text).collect();
        assert_eq!(texts.len(), all.len());
        for word in ["cf", "mn", "bb", "tq"] {
            assert!(all.iter().all(|e| !e.text.split(' ').any(|w| w == word)));
        }
        assert_eq!(sentiment(50, 9), sentiment(50, 9));
    }
}
