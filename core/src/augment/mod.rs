//! Data augmentations used by defenses.

pub mod token_split;
