//! The BERT-family encoder classifier every defense and probe runs on.

mod bert;
mod config;
mod gelu;

pub use bert::{BertClassifier, BertModel, ClassifierOutput, Embeddings, EncoderLayer, EncoderOutput, ForwardOptions, ShapeDifference};
pub use config::{BertConfig, ConfigError};
