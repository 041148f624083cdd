//! Cheap signals that a checkpoint carries a backdoor; the browser scan runs them too.

pub mod attention;
pub mod token_scores;
pub mod trigger_shift;
