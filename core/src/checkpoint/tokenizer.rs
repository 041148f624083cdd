//! `tokenizer.json` through the `tokenizers` crate, with the settings bdaudit relies on.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use super::charsmap;
use crate::data::{batch::Encoded, Example};
use crate::quote::excerpt;

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
    #[error("tokenizer.json's post-processor makes {len} ids of a text cut to {max}: more than the model can read")]
    TooLong { len: usize, max: usize },
    #[error("max length {0} is too small: it must hold [CLS], [SEP] and one token")]
    MaxLength(usize),
    #[error("{text:?} tokenizes to no ids at all (tokenizer.json's post-processor adds no [CLS] or [SEP]): the model has nothing to read")]
    NoIds { text: String },
}

/// A WordPiece (or other) tokenizer that truncates to `max_len` and never pads: batches pad
/// themselves to their longest row, which is faster than padding everything to 128.
pub struct TextTokenizer {
    inner: Tokenizer,
    untruncated: OnceLock<Tokenizer>,
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
        // A byte-order mark (as data files may have) is dropped, and not written back either.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        check_precompiled_normalizers(bytes)?;
        let mut inner = guarded(|| Tokenizer::from_bytes(bytes)).map_err(TokenizerError::Parse)?;
        check_template(inner.get_post_processor())?;
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
        Ok(TextTokenizer { inner, untruncated: OnceLock::new(), bytes: bytes.to_vec(), pad_id, special_ids, max_len })
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

    /// Ids of \[PAD\], \[UNK\], \[CLS\], \[SEP\], \[MASK\] and added special tokens: never trigger candidates.
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
        // empty text yields them (or nothing, without a post-processor: then only a text that
        // normalises to nothing is refused, by `encode`).
        if let Some(&id) = self.encode_any("")?.iter().find(|&&id| id as usize >= model_vocab) {
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

    /// Ids with \[CLS\] … \[SEP\], truncated to `max_len`. A text that yields no id is an error: a
    /// batch of such rows has no position to classify from (its `[CLS]` slice would be empty).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let ids = self.encode_any(text)?;
        if ids.is_empty() {
            return Err(TokenizerError::NoIds { text: excerpt(text) });
        }
        Ok(ids)
    }

    /// [`encode`](Self::encode) without its refusal of an empty result.
    fn encode_any(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let ids = guarded(|| self.inner.encode(text, true)).map_err(encode_error(text))?.get_ids().to_vec();
        // Truncation leaves room for the post-processor's own tokens only when they fit.
        if ids.len() > self.max_len {
            return Err(TokenizerError::TooLong { len: ids.len(), max: self.max_len });
        }
        Ok(ids)
    }

    /// [`encode`](Self::encode), and the text's own ids that truncation cut off: what a model
    /// never sees of a long text.
    ///
    /// Not read from the truncated encoding's overflowing windows: tokenizers 0.23 keeps only
    /// the first few ids of the rest there (a window of 4 ids for an IMDb review 872 ids over
    /// the limit, MiniLM's tokenizer), so EP counted triggers past the maximum length as
    /// absent. The text is encoded again without truncation instead.
    pub fn encode_with_cut(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>), TokenizerError> {
        let ids = self.encode(text)?;
        let whole = guarded(|| self.untruncated()?.encode(text, false)).map_err(encode_error(text))?;
        let cut = whole.get_ids().get(ids.len().saturating_sub(self.added_tokens())..).unwrap_or_default().to_vec();
        Ok((ids, cut))
    }

    /// How many ids the post-processor adds to a text (\[CLS\] and \[SEP\]: 2).
    pub fn added_tokens(&self) -> usize {
        self.inner.get_post_processor().map_or(0, |p| p.added_tokens(false))
    }

    /// The longest prefix of `text`, in whole whitespace-separated words, that leaves `room`
    /// word pieces free under the maximum length: the text itself when it fits. Whatever is
    /// inserted into a text that only truncation shortens is lost when it lands past the end
    /// (a trigger, in the scan). A first word too long for what is left is cut inside.
    pub fn fit(&self, text: &str, room: usize) -> Result<String, TokenizerError> {
        let pieces = self.max_len.saturating_sub(self.added_tokens() + room).max(1);
        let whole = guarded(|| self.untruncated()?.encode(text, false)).map_err(encode_error(text))?;
        // Byte offsets into `text` of the first word piece that does not fit.
        let Some(&(start, _)) = whole.get_offsets().get(pieces) else {
            return Ok(text.to_string());
        };
        let head = text.get(..start).unwrap_or(text);
        let words = match head.ends_with(char::is_whitespace) {
            true => head,
            false => head.rfind(char::is_whitespace).map_or("", |i| &head[..i]),
        };
        Ok(if words.trim().is_empty() { head } else { words.trim_end() }.to_string())
    }

    /// This tokenizer without truncation, made on first use (EP and the scan ask for it).
    fn untruncated(&self) -> tokenizers::Result<&Tokenizer> {
        if let Some(t) = self.untruncated.get() {
            return Ok(t);
        }
        let mut whole = self.inner.clone();
        whole.with_truncation(None)?;
        Ok(self.untruncated.get_or_init(|| whole))
    }

    /// Word-piece strings of a text, without special tokens.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        Ok(guarded(|| self.inner.encode(text, false)).map_err(encode_error(text))?.get_tokens().to_vec())
    }

    pub fn encode_all(&self, examples: &[Example]) -> Result<Vec<Encoded>, TokenizerError> {
        examples.iter().map(|ex| Ok(Encoded { ids: self.encode(&ex.text)?, label: ex.label })).collect()
    }
}

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs `tokenizers` under `guarded`: a panic there becomes a
/// [`TokenizerError`], so a panic hook need not print it.
pub fn catching_panic() -> bool {
    CATCHING.with(Cell::get)
}

/// Runs `tokenizers` with its panics turned into error messages. Its Oniguruma regex engine
/// panics when a `tokenizer.json` pattern backtracks past the engine's retry limit: a
/// pathological pattern in a downloaded checkpoint must give an error, not crash bdaudit.
/// (Where panics abort, as in wasm, this catches nothing: the web build's engine, fancy-regex,
/// does not panic, and the malformed files known to make `tokenizers` panic are refused at
/// load by [`check_precompiled_normalizers`] and [`check_template`].)
fn guarded<T>(f: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    match outcome {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("the tokenizer failed: {}", message.unwrap_or_else(|| "unknown error".into())))
        }
    }
}

fn encode_error(text: &str) -> impl FnOnce(String) -> TokenizerError + '_ {
    move |message| TokenizerError::Encode { text: excerpt(text), message }
}

/// `tokenizers` 0.23 panics (an `expect`, where every other normaliser returns its error) on
/// a `Precompiled` normaliser whose charsmap does not parse, and on texts that reach a bad
/// entry of one that parses ([`charsmap`]); in wasm a panic is a trap that kills the page's
/// scan worker. Each such normaliser, inside sequences too, is parsed and checked here first
/// so that either is a [`TokenizerError::Parse`] on every target.
fn check_precompiled_normalizers(bytes: &[u8]) -> Result<(), TokenizerError> {
    /// Only the normaliser is read: serde skips the rest (the vocabulary) without building it.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        normalizer: serde_json::Value,
    }
    fn check(node: &serde_json::Value) -> Result<(), TokenizerError> {
        if node.get("type").and_then(serde_json::Value::as_str) == Some("Precompiled") {
            let refuse = |e: String| TokenizerError::Parse(format!("its Precompiled normalizer: {e}"));
            // From text, as `tokenizers` parses it: the charsmap is read as a borrowed string.
            serde_json::from_str::<tokenizers::normalizers::Precompiled>(&node.to_string()).map_err(|e| refuse(e.to_string()))?;
            // It parsed, so the charsmap is a string of base64 that decodes.
            let encoded = node["precompiled_charsmap"].as_str().unwrap_or_default();
            return base64::decode(encoded).map_err(|e| refuse(e.to_string())).and_then(|bytes| charsmap::check(&bytes).map_err(refuse));
        }
        node.get("normalizers").and_then(serde_json::Value::as_array).into_iter().flatten().try_for_each(check)
    }
    // JSON that does not parse is left to `tokenizers`, whose message says where.
    serde_json::from_slice::<Head>(bytes).map_or(Ok(()), |head| check(&head.normalizer))
}

/// `tokenizers` reads a `TemplateProcessing` post-processor from JSON without the check its
/// builder makes, and panics on every text when the single-text template names a special
/// token that `special_tokens` does not define: the builder's check, run here, makes that a
/// [`TokenizerError::Parse`] on every target. (The pair template is not checked: bdaudit
/// encodes single texts only.)
fn check_template(processor: Option<&PostProcessorWrapper>) -> Result<(), TokenizerError> {
    match processor {
        Some(PostProcessorWrapper::Template(template)) => TemplateProcessing::builder()
            .single(template.single.clone())
            .special_tokens(template.get_special_tokens().clone())
            .build()
            .map(drop)
            .map_err(|e| TokenizerError::Parse(format!("its TemplateProcessing post-processor: {e}"))),
        Some(PostProcessorWrapper::Sequence(sequence)) => (0..).map_while(|i| sequence.get(i)).try_for_each(|p| check_template(Some(p))),
        _ => Ok(()),
    }
}

/// A WordLevel tokenizer for unit tests that need text: ids 0–3 are \[PAD\] \[UNK\] \[CLS\] \[SEP\],
/// then `words` in order; texts split on whitespace and get \[CLS\] … \[SEP\].
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

    /// Both post-processors BERT checkpoints use (MiniLM's is `TemplateProcessing`); the
    /// overflowing windows this replaced held \[CLS\] w6 w7 \[SEP\] of either.
    #[test]
    fn the_cut_is_every_id_past_the_maximum_length_under_either_post_processor() {
        let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut template = word_level_json(&refs);
        template["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}
        });
        let text = words.join(" ");
        for json in [word_level_json(&refs), template] {
            let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 8).unwrap();
            let (ids, cut) = tokenizer.encode_with_cut(&text).unwrap();
            // w0…w5 between [CLS] and [SEP]; w6…w19 (ids 10…23) cut.
            assert_eq!(ids, [2, 4, 5, 6, 7, 8, 9, 3]);
            assert_eq!(cut, (10..24).collect::<Vec<u32>>(), "{}", json["post_processor"]["type"]);
            assert_eq!(tokenizer.encode_with_cut("w1 w2").unwrap(), (vec![2, 5, 6, 3], vec![]));
        }
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
    fn a_post_processor_longer_than_max_len_is_an_error() {
        let mut json = word_level_json(&["good"]);
        let cls = serde_json::json!({"SpecialToken": {"id": "[CLS]", "type_id": 0}});
        let mut single = vec![cls; 20];
        single.push(serde_json::json!({"Sequence": {"id": "A", "type_id": 0}}));
        json["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing", "single": single, "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}}
        });
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        let err = tokenizer.encode("good").unwrap_err();
        assert!(matches!(err, TokenizerError::TooLong { len: 21, max: 16 }), "{err:?}");
        // Loading checks the empty text, so a checkpoint with such a tokenizer fails at once.
        assert!(matches!(tokenizer.check_vocab(6), Err(TokenizerError::TooLong { .. })));
    }

    /// Without a post-processor, a text the normaliser deletes (a zero-width space; BERT's
    /// normaliser drops format characters) has no ids: refused, where a batch of it panicked.
    #[test]
    fn a_text_with_no_ids_is_an_error() {
        let mut json = word_level_json(&["good"]);
        json["post_processor"] = serde_json::Value::Null;
        json["normalizer"] = serde_json::json!({"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true});
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        tokenizer.check_vocab(6).unwrap();
        assert_eq!(tokenizer.encode("good").unwrap(), [4]);
        for text in ["\u{200B}", ""] {
            let err = tokenizer.encode(text).unwrap_err();
            assert!(matches!(&err, TokenizerError::NoIds { text: t } if t == text), "{err:?}");
        }
    }

    /// `(a+)+$` on a long run of a's backtracks past Oniguruma's limit, where it panics.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_pathological_regex_is_an_error_not_a_panic() {
        let mut json = word_level_json(&["good"]);
        json["pre_tokenizer"] =
            serde_json::json!({"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false});
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        let err = tokenizer.encode(&format!("{}!", "a".repeat(40))).unwrap_err();
        assert!(matches!(&err, TokenizerError::Encode { message, .. } if message.starts_with("the tokenizer failed")), "{err:?}");
        assert!(!catching_panic(), "the flag is reset after the call");
        assert_eq!(tokenizer.encode("good").unwrap(), [2, 4, 3], "the tokenizer still works");
    }

    /// `tokenizers` itself panics on these while parsing (wasm: a trap).
    #[test]
    fn a_broken_precompiled_normalizer_is_a_parse_error() {
        let broken = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": ""});
        for normalizer in [broken.clone(), serde_json::json!({"type": "Sequence", "normalizers": [{"type": "Lowercase"}, broken]})] {
            let mut json = word_level_json(&["good"]);
            json["normalizer"] = normalizer;
            let err = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).err().expect("a broken charsmap was accepted");
            assert!(matches!(&err, TokenizerError::Parse(m) if m.contains("Precompiled") && m.contains("precompiled_charsmap")), "{err:?}");
        }
    }

    #[test]
    fn a_template_naming_an_undefined_special_token_is_a_parse_error() {
        let template = |special_tokens: serde_json::Value| {
            serde_json::json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                "special_tokens": special_tokens})
        };
        let defined = serde_json::json!({"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}});
        let mut json = word_level_json(&["good"]);
        json["post_processor"] = template(defined);
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        assert_eq!(tokenizer.encode("good").unwrap(), [2, 4], "a pair template without $B is no reason to refuse");
        for processor in
            [template(serde_json::json!({})), serde_json::json!({"type": "Sequence", "processors": [template(serde_json::json!({}))]})]
        {
            json["post_processor"] = processor;
            let err = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).err().expect("an undefined [CLS] was accepted");
            assert!(matches!(&err, TokenizerError::Parse(m) if m.contains("TemplateProcessing") && m.contains("[CLS]")), "{err:?}");
        }
    }

    fn precompiled(charsmap: &[u8]) -> serde_json::Value {
        serde_json::json!({"type": "Precompiled", "precompiled_charsmap": base64::encode(charsmap)})
    }

    /// A charsmap that parses but whose trie is empty, or points past its end or its strings,
    /// would load and then panic inside `tokenizers` (wasm: a trap) on the first text to reach
    /// the bad entry; a sound one normalises as its rules say.
    #[test]
    fn a_precompiled_charsmap_is_refused_where_a_lookup_would_leave_it() {
        let mut json = word_level_json(&["good"]);
        json["normalizer"] = precompiled(&charsmap::tests::one_rule(b'x', "good"));
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).unwrap();
        assert_eq!(tokenizer.encode("x").unwrap(), [2, 4, 3], "x is normalised to good");
        for (charsmap, says) in [
            (charsmap::tests::charsmap(&[], ""), "unit 0 of 0"),
            (charsmap::tests::rule(b'x', 1, "é\0"), "byte 1 of its 3-byte replacement strings"),
        ] {
            json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "Lowercase"}, precompiled(&charsmap)]});
            let err = TextTokenizer::from_bytes(json.to_string().as_bytes(), 16).err().expect("a broken charsmap was accepted");
            assert!(matches!(&err, TokenizerError::Parse(m) if m.contains("Precompiled") && m.contains(says)), "{err:?}");
        }
    }

    /// Room for two inserted pieces under a maximum length of 8 leaves 4 of the text's own.
    #[test]
    fn a_text_is_fitted_in_whole_words_to_leave_room() {
        let vocab: serde_json::Map<String, serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "long", "##er", "word", "."]
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i.into()))
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
            "decoder": null,
            "model": {"type": "WordPiece", "vocab": vocab, "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100}
        });
        let tokenizer = TextTokenizer::from_bytes(json.to_string().as_bytes(), 8).unwrap();
        assert_eq!(tokenizer.added_tokens(), 2);
        let fit = |text: &str, room| tokenizer.fit(text, room).unwrap();
        // The fifth piece is "." of "word.", or "##er" of "longer": the whole word goes.
        assert_eq!(fit("a longer word.", 2), "a longer");
        assert_eq!(fit("a a a longer", 2), "a a a");
        assert_eq!(fit("a a a a  a a", 2), "a a a a");
        assert_eq!(fit("a a longer", 2), "a a longer");
        assert_eq!(fit("a longer word.", 0), "a longer word.");
        // One piece left: a first word longer than that is cut inside rather than emptied.
        assert_eq!(fit("longer a", 5), "long");
        for text in ["a longer word.", "a a a a  a a", "longer a"] {
            for room in 0..6 {
                assert!(tokenizer.encode(&fit(text, room)).unwrap().len() + room <= 8, "{text:?} {room}");
            }
        }
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let json = word_level_json(&["good"]).to_string();
        let tokenizer = TextTokenizer::from_bytes(&[b"\xEF\xBB\xBF", json.as_bytes()].concat(), 16).unwrap();
        assert_eq!(tokenizer.json_bytes(), json.as_bytes());
    }

    #[test]
    fn the_largest_u32_id_does_not_overflow() {
        let mut json = word_level_json(&["good"]);
        json["model"]["vocab"]["good"] = u32::MAX.into();
        let err = vocab_err(&json, 6);
        assert!(matches!(err, TokenizerError::VocabMismatch { tokenizer: 4_294_967_296, model: 6 }), "{err:?}");
    }
}
