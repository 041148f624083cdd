//! The model configuration, read from and written to Hugging Face's `config.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Errors in a model configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// serde's message, not its error as a source: printed with its causes, it would repeat.
    #[error("config.json is not valid JSON for a BERT config: {0}")]
    Json(String),
    #[error("config.json: {field} = {value} is invalid: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
    #[error("config.json: unsupported {field} {value:?} (bdaudit supports {supported})")]
    Unsupported { field: &'static str, value: String, supported: &'static str },
    #[error("config.json: {field} = {value} is larger than bdaudit's limit of {max}")]
    TooLarge { field: &'static str, value: usize, max: usize },
}

/// A BERT-family encoder configuration, field names as in Hugging Face `BertConfig`.
///
/// Unknown fields are kept in `extra` so that a written `config.json` carries them over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Class names by id (`{"0": "negative", ...}`); its length is the number of labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Heads removed from each layer (`{"3": [0, 5]}`), as `transformers` records pruning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_heads: BTreeMap<String, Vec<usize>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// serde_json reports a wrong type ("expected usize") with a line and column but not the field:
/// find the field whose value alone breaks a valid config and name it.
fn name_the_field(bytes: &[u8], err: serde_json::Error) -> serde_json::Error {
    if !err.is_data() {
        return err;
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) else {
        return err;
    };
    let Ok(valid) = serde_json::to_value(BertConfig::tiny(2)) else {
        return err;
    };
    for (key, value) in fields {
        let mut probe = valid.clone();
        probe[key.as_str()] = value;
        if serde_json::from_value::<BertConfig>(probe).is_err() {
            return serde::de::Error::custom(format!("field `{key}`: {err}"));
        }
    }
    err
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_init_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Parses and validates `config.json` bytes.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        // Editors on Windows may save JSON with a byte-order mark; serde_json refuses it.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // Another family's checkpoint (RoBERTa, DistilBERT, ELECTRA, …) would otherwise fail on
        // its first missing field or tensor name, which does not say why: its model_type does.
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) {
            if let Some(kind) = fields.get("model_type").and_then(|v| v.as_str()).filter(|&k| k != "bert") {
                return Err(ConfigError::Unsupported { field: "model_type", value: kind.into(), supported: "bert" });
            }
        }
        let config: BertConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(name_the_field(bytes, e).to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// A small configuration for unit tests and the demo.
    pub fn tiny(vocab_size: usize) -> Self {
        BertConfig {
            vocab_size,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 37,
            hidden_act: default_act(),
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.2,
            pad_token_id: 0,
            id2label: None,
            pruned_heads: BTreeMap::new(),
            extra: Default::default(),
        }
    }

    /// Checks the sizes and options this implementation supports.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Upper bounds far above real BERT-family encoders (XLM-R XXL: hidden 4096, 48 layers,
        // 32 heads, 16384 inner; 250k vocabularies; ModernBERT: 8192 positions). They must hold before
        // anything is sized from the config alone, ahead of the weights' shape checks: the head
        // lists below, LayerNorms, a seeded pooler of hidden² values.
        let sizes = [
            ("vocab_size", self.vocab_size, 1 << 20),
            ("hidden_size", self.hidden_size, 8192),
            ("num_hidden_layers", self.num_hidden_layers, 256),
            ("num_attention_heads", self.num_attention_heads, 256),
            ("intermediate_size", self.intermediate_size, 65_536),
            ("max_position_embeddings", self.max_position_embeddings, 1 << 17),
            ("type_vocab_size", self.type_vocab_size, 1024),
        ];
        for (field, value, max) in sizes {
            if value == 0 {
                return Err(ConfigError::Invalid { field, value: "0".into(), reason: "must be positive" });
            }
            if value > max {
                return Err(ConfigError::TooLarge { field, value, max });
            }
        }
        if self.max_position_embeddings < 3 {
            return Err(ConfigError::Invalid {
                field: "max_position_embeddings",
                value: self.max_position_embeddings.to_string(),
                reason: "must be at least 3 ([CLS], a token and [SEP])",
            });
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::Invalid {
                field: "hidden_size",
                value: self.hidden_size.to_string(),
                reason: "must be a multiple of num_attention_heads",
            });
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_python") {
            return Err(ConfigError::Unsupported { field: "hidden_act", value: self.hidden_act.clone(), supported: "gelu (erf)" });
        }
        if let Some(kind) = self.extra.get("position_embedding_type").and_then(|v| v.as_str()) {
            if kind != "absolute" {
                return Err(ConfigError::Unsupported { field: "position_embedding_type", value: kind.into(), supported: "absolute" });
            }
        }
        for (p, name) in
            [(self.hidden_dropout_prob, "hidden_dropout_prob"), (self.attention_probs_dropout_prob, "attention_probs_dropout_prob")]
        {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigError::Invalid { field: name, value: p.to_string(), reason: "must be in [0, 1)" });
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(ConfigError::Invalid {
                field: "layer_norm_eps",
                value: self.layer_norm_eps.to_string(),
                reason: "must be positive",
            });
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(ConfigError::Invalid {
                field: "pad_token_id",
                value: self.pad_token_id.to_string(),
                reason: "must be below vocab_size",
            });
        }
        // transformers keys pruned_heads by layer index: another key prunes nothing it can find.
        if let Some(key) = self.pruned_heads.keys().find(|k| !k.parse::<usize>().is_ok_and(|l| l < self.num_hidden_layers)) {
            return Err(ConfigError::Invalid { field: "pruned_heads", value: format!("layer {key:?}"), reason: "no such layer" });
        }
        for layer in 0..self.num_hidden_layers {
            self.heads_in_layer(layer)?;
        }
        if !(self.initializer_range.is_finite() && (0.0..=1.0).contains(&self.initializer_range)) {
            return Err(ConfigError::Invalid {
                field: "initializer_range",
                value: self.initializer_range.to_string(),
                reason: "must be in [0, 1] (BERT uses 0.02)",
            });
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Class names in id order, when `id2label` is complete (an empty map names nothing).
    pub fn label_names(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref().filter(|m| !m.is_empty())?;
        (0..map.len()).map(|i| map.get(&i.to_string()).cloned()).collect()
    }

    /// Indices of the heads a layer still has (those not listed in `pruned_heads`).
    pub fn heads_in_layer(&self, layer: usize) -> Result<Vec<usize>, ConfigError> {
        let pruned = self.pruned_heads.get(&layer.to_string()).map(Vec::as_slice).unwrap_or(&[]);
        // A mask, not `pruned.contains`: a long pruned list stays linear, not heads × list.
        let mut keep = vec![true; self.num_attention_heads];
        for &head in pruned {
            let Some(slot) = keep.get_mut(head) else {
                return Err(ConfigError::Invalid {
                    field: "pruned_heads",
                    value: format!("layer {layer} head {head}"),
                    reason: "head index out of range",
                });
            };
            *slot = false;
        }
        let kept: Vec<usize> = keep.iter().enumerate().filter(|(_, &k)| k).map(|(h, _)| h).collect();
        if kept.is_empty() {
            return Err(ConfigError::Invalid {
                field: "pruned_heads",
                value: format!("layer {layer}"),
                reason: "every head of a layer is pruned",
            });
        }
        Ok(kept)
    }

    /// The `config.json` a `BertForSequenceClassification` checkpoint carries.
    pub fn to_classifier_json(&self, label_names: &[String]) -> serde_json::Value {
        let mut config = self.clone();
        config.id2label = Some(label_names.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone())).collect());
        let label2id: serde_json::Map<String, serde_json::Value> =
            label_names.iter().enumerate().map(|(i, n)| (n.clone(), i.into())).collect();
        config.extra.insert("label2id".into(), label2id.into());
        config.extra.insert("num_labels".into(), label_names.len().into());
        config.extra.insert("architectures".into(), vec!["BertForSequenceClassification"].into());
        config.extra.insert("model_type".into(), "bert".into());
        serde_json::to_value(&config).expect("a BertConfig always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_head_split() {
        let mut c = BertConfig::tiny(50);
        c.num_attention_heads = 5;
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { field: "hidden_size", .. })));
    }

    #[test]
    fn rejects_malformed_json_and_unknown_activation() {
        assert!(matches!(BertConfig::from_json_bytes(b"{"), Err(ConfigError::Json(_))));
        let bom = [b"\xEF\xBB\xBF".as_slice(), &serde_json::to_vec(&BertConfig::tiny(30)).unwrap()].concat();
        assert_eq!(BertConfig::from_json_bytes(&bom).unwrap(), BertConfig::tiny(30));
        let mut v = serde_json::to_value(BertConfig::tiny(50)).unwrap();
        v["hidden_act"] = "relu".into();
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(matches!(BertConfig::from_json_bytes(&bytes), Err(ConfigError::Unsupported { field: "hidden_act", .. })));
    }

    #[test]
    fn another_model_type_is_named_before_its_fields_are_read() {
        let mut bert = serde_json::to_value(BertConfig::tiny(50)).unwrap();
        bert["model_type"] = "bert".into();
        assert!(BertConfig::from_json_bytes(&serde_json::to_vec(&bert).unwrap()).is_ok());
        let mut roberta = bert.clone();
        roberta["model_type"] = "roberta".into();
        // DistilBERT's config has none of BertConfig's size fields.
        let distilbert = serde_json::json!({"model_type": "distilbert", "dim": 768, "n_layers": 6, "n_heads": 12});
        for (config, kind) in [(roberta, "roberta"), (distilbert, "distilbert")] {
            let err = BertConfig::from_json_bytes(&serde_json::to_vec(&config).unwrap()).unwrap_err();
            assert!(matches!(&err, ConfigError::Unsupported { field: "model_type", value, .. } if value == kind), "{err}");
            assert_eq!(err.to_string(), format!("config.json: unsupported model_type {kind:?} (bdaudit supports bert)"));
        }
    }

    #[test]
    fn classifier_json_round_trips_labels_and_extra_fields() {
        let mut c = BertConfig::tiny(50);
        c.extra.insert("transformers_version".into(), "4.0".into());
        let v = c.to_classifier_json(&["neg".into(), "pos".into()]);
        let back: BertConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.label_names().unwrap(), vec!["neg", "pos"]);
        assert_eq!(v["num_labels"], 2);
        assert_eq!(v["transformers_version"], "4.0");
        assert_eq!(v["label2id"]["pos"], 1);
    }

    #[test]
    fn pruned_heads_are_checked() {
        let mut c = BertConfig::tiny(50);
        c.pruned_heads.insert("1".into(), vec![0, 2]);
        assert_eq!(c.heads_in_layer(1).unwrap(), vec![1, 3]);
        c.pruned_heads.insert("0".into(), vec![0, 1, 2, 3]);
        assert!(c.validate().is_err());
        c.pruned_heads.insert("0".into(), vec![1, 4]);
        let err = c.validate().unwrap_err();
        assert_eq!(err.to_string(), "config.json: pruned_heads = layer 0 head 4 is invalid: head index out of range");
        c.pruned_heads.remove("0");
        for key in ["2", "x", "-1"] {
            c.pruned_heads.insert(key.into(), vec![0]);
            let err = c.validate().unwrap_err();
            assert_eq!(err.to_string(), format!("config.json: pruned_heads = layer {key:?} is invalid: no such layer"));
            c.pruned_heads.remove(key);
        }
        assert!(c.validate().is_ok());
        for bad in [-0.1, 1e300, f64::NAN] {
            let c = BertConfig { initializer_range: bad, ..BertConfig::tiny(50) };
            assert!(matches!(c.validate(), Err(ConfigError::Invalid { field: "initializer_range", .. })), "{bad}");
        }
    }

    #[test]
    fn sizes_above_the_limits_are_refused() {
        let fields = [
            ("vocab_size", 1 << 20),
            ("hidden_size", 8192),
            ("num_hidden_layers", 256),
            ("num_attention_heads", 256),
            ("intermediate_size", 65_536),
            ("max_position_embeddings", 1 << 17),
            ("type_vocab_size", 1024),
        ];
        for (field, max) in fields {
            for value in [max + 1, u64::MAX as usize] {
                let mut v = serde_json::to_value(BertConfig::tiny(50)).unwrap();
                v[field] = value.into();
                let err = BertConfig::from_json_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
                assert!(
                    matches!(err, ConfigError::TooLarge { field: f, value: n, max: m } if f == field && n == value && m == max),
                    "{err:?}"
                );
                assert_eq!(err.to_string(), format!("config.json: {field} = {value} is larger than bdaudit's limit of {max}"));
            }
        }
    }
}
