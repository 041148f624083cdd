//! The charsmap of a `Precompiled` normaliser (SentencePiece's normalisation rules, as T5,
//! XLM-R and other SentencePiece tokenizers ship them), checked before `tokenizers` uses it.
//!
//! `tokenizers` 0.23 reads the charsmap with `spm_precompiled` 0.1.4, which indexes its trie
//! and its replacement strings without bounds checks: a charsmap that parses but points
//! outside either panics on the first text that reaches the bad entry, and in wasm a panic is
//! a trap that kills the page's scan worker. [`check`] follows every lookup a text can make,
//! so such a file is refused when it is loaded, on every target.
//!
//! The layout: a little-endian u32 giving the trie's size in bytes, the trie as little-endian
//! u32 units of a darts-clone double array, then the replacement strings (UTF-8, each ended by
//! a NUL). A lookup walks the bytes of one grapheme (when it is under 6 bytes) or of one
//! character, from the root unit, stopping at a NUL byte; each leaf it passes holds the start
//! of a replacement string.

use std::collections::HashSet;

/// The longest key `tokenizers` looks up: a grapheme of fewer than 6 bytes (longer ones are
/// looked up a character, at most 4 bytes, at a time).
const MAX_KEY_BYTES: usize = 5;

/// Whether a unit has a leaf (a value) below it.
fn has_leaf(unit: u32) -> bool {
    unit & (1 << 8) != 0
}

/// A leaf's value: the byte offset of its replacement string.
fn value(unit: u32) -> usize {
    (unit & 0x7fff_ffff) as usize
}

/// The byte a unit is reached by; a leaf unit's bit 31 makes it match no byte.
fn label(unit: u32) -> u32 {
    unit & ((1 << 31) | 0xff)
}

/// Where a unit's children are (a child's index is this XOR its byte); bit 9 scales it by 256.
fn offset(unit: u32) -> usize {
    ((unit >> 10) as usize) << ((unit & (1 << 9)) >> 6)
}

/// Checks that every lookup of every key of up to [`MAX_KEY_BYTES`] bytes stays inside the
/// trie, and that every leaf it reaches starts a replacement string at a character boundary.
/// The message says what is wrong. A charsmap that does not parse at all is not checked here:
/// `tokenizers` refuses it itself.
pub(crate) fn check(charsmap: &[u8]) -> Result<(), String> {
    let Some((size, rest)) = charsmap.split_first_chunk::<4>() else {
        return Ok(());
    };
    // As spm_precompiled reads it: whole units, the bytes after them the strings.
    let units_len = (u32::from_le_bytes(*size) / 4) as usize;
    let Some((trie, strings)) = rest.split_at_checked(units_len * 4) else {
        return Ok(());
    };
    let Ok(strings) = std::str::from_utf8(strings) else {
        return Ok(());
    };
    let units: Vec<u32> = trie.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    let unit = |index: usize| units.get(index).copied().ok_or_else(|| format!("its trie points to unit {index} of {}", units.len()));
    let root = offset(unit(0)?);
    // Breadth first, each node once: where a walk can go on depends only on the node, and the
    // first visit is the shallowest, with the most bytes left.
    let mut seen = HashSet::from([root]);
    let mut level = vec![root];
    for _ in 0..MAX_KEY_BYTES {
        let mut next = Vec::new();
        for node in level {
            for byte in 1..=255u32 {
                let child = node ^ byte as usize;
                let child_unit = unit(child)?;
                if label(child_unit) != byte {
                    continue;
                }
                let below = child ^ offset(child_unit);
                if has_leaf(child_unit) {
                    let start = value(unit(below)?);
                    if !strings.is_char_boundary(start) {
                        return Err(format!(
                            "its trie points to byte {start} of its {}-byte replacement strings, not the start of a character",
                            strings.len()
                        ));
                    }
                }
                if seen.insert(below) {
                    next.push(below);
                }
            }
        }
        level = next;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A unit reached by `byte` whose children are at `offset` (under 2^21, unscaled).
    fn unit(byte: u8, offset: usize, leaf: bool) -> u32 {
        ((offset as u32) << 10) | (u32::from(leaf) << 8) | u32::from(byte)
    }

    /// A charsmap of one rule, `from` → the string at byte `start` of `strings` (one byte to a
    /// string), as darts-clone lays it out: the root's children in block 1, the leaf of `from`
    /// in block 2, three blocks of 256 units.
    pub(crate) fn rule(from: u8, start: u32, strings: &str) -> Vec<u8> {
        let mut units = vec![0u32; 768];
        units[0] = unit(0, 256, false);
        let child = 256 ^ from as usize;
        units[child] = unit(from, child ^ 512, true);
        units[512] = (1 << 31) | start; // the leaf: a label no byte matches
        charsmap(&units, strings)
    }

    /// `from` → `to`.
    pub(crate) fn one_rule(from: u8, to: &str) -> Vec<u8> {
        rule(from, 0, &format!("{to}\0"))
    }

    pub(crate) fn charsmap(units: &[u32], strings: &str) -> Vec<u8> {
        let size = (units.len() * 4) as u32;
        [&size.to_le_bytes()[..], &units.iter().flat_map(|u| u.to_le_bytes()).collect::<Vec<u8>>(), strings.as_bytes()].concat()
    }

    #[test]
    fn a_well_formed_trie_passes() {
        assert_eq!(check(&one_rule(b'x', "good")), Ok(()));
    }

    #[test]
    fn an_empty_trie_is_refused() {
        assert_eq!(check(&charsmap(&[], "")), Err("its trie points to unit 0 of 0".into()));
    }

    #[test]
    fn a_child_past_the_end_is_refused() {
        // The root's children block is not there: the first byte of any text reads past the end.
        let mut bytes = one_rule(b'x', "good");
        bytes.truncate(4 + 300 * 4);
        bytes[..4].copy_from_slice(&(300u32 * 4).to_le_bytes());
        let err = check(&bytes).unwrap_err();
        assert!(err.starts_with("its trie points to unit 3") && err.ends_with("of 300"), "{err}");
    }

    #[test]
    fn a_leaf_past_the_strings_or_inside_a_character_is_refused() {
        for (start, strings) in [(9, "good\0"), (1, "é\0")] {
            let err = check(&rule(b'x', start, strings)).unwrap_err();
            assert!(err.contains(&format!("byte {start} of its {}-byte", strings.len())), "{err}");
        }
    }

    #[test]
    fn a_leaf_unit_past_the_end_is_refused() {
        let mut units = vec![0u32; 768];
        units[0] = unit(0, 256, false);
        units[256 ^ b'x' as usize] = unit(b'x', 5000, true);
        let err = check(&charsmap(&units, "good\0")).unwrap_err();
        assert!(err.ends_with("of 768"), "{err}");
    }

    #[test]
    fn a_trie_that_loops_is_walked_once_per_node() {
        // Every byte leads back to the root's block: the walk must still end.
        let mut units = vec![0u32; 512];
        units[0] = unit(0, 256, false);
        for byte in 1..=255u8 {
            units[256 ^ byte as usize] = unit(byte, 256 ^ (256 ^ byte as usize), false);
        }
        assert_eq!(check(&charsmap(&units, "")), Ok(()));
    }
}
