//! `tokenizer.json` through the `tokenizers` crate, with the settings bdaudit relies on.

use tokenizers::{Tokenizer, TruncationParams};

use crate::data::{batch::Encoded, Example};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.json could not be parsed: {0}")]
    Parse(String),
    #[error("tokenizer.json has no {0} token")]
    MissingSpecial(&'static str),
    /// `tokenizer` is the largest id plus one: a u64, as u32::MAX + 1 overflows a wasm32 usize.
    #[error("tokenizer ids go up to {tokenizer} but the model's vocab_size is {model}: they do not belong together")]
    VocabMismatch { tokenizer: u64, model: usize },
    #[error("tokenizer.json's post-processor adds token id {id}, past the model's vocab_size of {model}")]
    PostProcessorId { id: u32, model: usize },
    #[error("could not tokenise {text:?}: {message}")]
    Encode { text: String, message: String },
    #[error("max length {0} is too small: it must hold [CLS], [SEP] and one token")]
    MaxLength(usize),
}

/// A WordPiece (or other) tokenizer that truncates to `max_len` and never pads: batches pad
/// themselves to their longest row, which is faster than padding everything to 128.
pub struct TextTokenizer {
    inner: Tokenizer,
    bytes: Vec<u8>,
    pad_id: u32,
    special_ids: Vec<u32>,
    max_len: usize,
}

impl TextTokenizer {
    pub fn from_bytes(bytes: &[u8], max_len: usize) -> Result<Self, TokenizerError> {
        if max_len < 3 {
            return Err(TokenizerError::MaxLength(max_len));
        }
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Parse(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| TokenizerError::Parse(e.to_string()))?;
        let pad_id = inner.token_to_id("[PAD]").ok_or(TokenizerError::MissingSpecial("[PAD]"))?;
        let special_ids = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .chain(inner.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id))
            .collect();
        Ok(TextTokenizer { inner, bytes: bytes.to_vec(), pad_id, special_ids, max_len })
    }

    /// The original `tokenizer.json`, written unchanged next to purified weights.
    pub fn json_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Ids of [PAD], [UNK], [CLS], [SEP], [MASK] and added special tokens: never trigger candidates.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Fails when the tokenizer can produce ids the model has no embedding for. The largest
    /// id counts, not the number of tokens: vocabularies may have gaps.
    pub fn check_vocab(&self, model_vocab: usize) -> Result<(), TokenizerError> {
        let needed = self.inner.get_vocab(true).into_values().max().map_or(0, |id| u64::from(id) + 1);
        if needed > model_vocab as u64 {
            return Err(TokenizerError::VocabMismatch { tokenizer: needed, model: model_vocab });
        }
        // The post-processor adds [CLS] and [SEP] by ids of its own, not the vocabulary's: an
        // empty text yields them.
        if let Some(&id) = self.encode("")?.iter().find(|&&id| id as usize >= model_vocab) {
            return Err(TokenizerError::PostProcessorId { id, model: model_vocab });
        }
        Ok(())
    }

    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids with [CLS] … [SEP], truncated to `max_len`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode { text: text.chars().take(60).collect(), message: e.to_string() })
    }

    /// Word-piece strings of a text, without special tokens.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_tokens().to_vec())
            .map_err(|e| TokenizerError::Encode { text: text.chars().take(60).collect(), message: e.to_string() })
    }

    pub fn encode_all(&self, examples: &[Example]) -> Result<Vec<Encoded>, TokenizerError> {
        examples.iter().map(|ex| Ok(Encoded { ids: self.encode(&ex.text)?, label: ex.label })).collect()
    }
}

/// A WordLevel tokenizer for unit tests that need text: ids 0–3 are [PAD] [UNK] [CLS] [SEP],
/// then `words` in order; texts split on whitespace and get [CLS] … [SEP].
#[cfg(test)]
pub(crate) fn word_level_for_tests(words: &[&str], max_len: usize) -> TextTokenizer {
    TextTokenizer::from_bytes(word_level_json(words).to_string().as_bytes(), max_len).expect("a valid tokenizer.json")
}

/// The `tokenizer.json` of [`word_level_for_tests`].
#[cfg(test)]
fn word_level_json(words: &[&str]) -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].iter().chain(words).enumerate().map(|(i, w)| (w.to_string(), i.into())).collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab_err(json: &serde_json::Value, model_vocab: usize) -> TokenizerError {
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        tokenizer.check_vocab(model_vocab).unwrap_err()
    }

    #[test]
    fn post_processor_ids_must_fit_the_model() {
        let mut json = word_level_json(&["good", "bad"]);
        assert!(TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap().check_vocab(6).is_ok());
        json["post_processor"]["cls"] = serde_json::json!(["[CLS]", 500]);
        let err = vocab_err(&json, 6);
        assert!(matches!(err, TokenizerError::PostProcessorId { id: 500, model: 6 }), "{err:?}");
        assert_eq!(err.to_string(), "tokenizer.json's post-processor adds token id 500, past the model's vocab_size of 6");
    }

    #[test]
    fn the_largest_u32_id_does_not_overflow() {
        let mut json = word_level_json(&["good"]);
        json["model"]["vocab"]["good"] = u32::MAX.into();
        let err = vocab_err(&json, 6);
        assert!(matches!(err, TokenizerError::VocabMismatch { tokenizer: 4_294_967_296, model: 6 }), "{err:?}");
    }
}
