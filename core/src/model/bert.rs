//! The BERT-family encoder and its sequence-classification head.
//!
//! Written by hand instead of burn's `TransformerEncoder` because the defenses need what it
//! hides: each layer's per-head attention probabilities (PURE, MBTSAD, the browser scan), a
//! head mask (PURE), and every layer's hidden state (MBTSAD's distillation loss).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{activation, backend::Backend, Int, Tensor};

use crate::checkpoint::{CheckpointError, ParamKind, ParamSource, RandomInit};
use crate::model::gelu::gelu;
use crate::model::BertConfig;

/// Added to attention scores at padding keys: large enough that softmax gives them exactly 0.
const MASKED_SCORE: f32 = -10_000.0;

#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    pub word: Embedding<B>,
    pub position: Embedding<B>,
    pub token_type: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub attention_output: Linear<B>,
    pub attention_norm: LayerNorm<B>,
    pub intermediate: Linear<B>,
    pub output: Linear<B>,
    pub output_norm: LayerNorm<B>,
    dropout: Dropout,
    attention_dropout: Dropout,
    /// Heads this layer has (fewer than the config's when heads were physically pruned).
    pub heads: usize,
    head_dim: usize,
}

#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: Embeddings<B>,
    pub layers: Vec<EncoderLayer<B>>,
    pub pooler: Linear<B>,
}

/// `BertForSequenceClassification`: encoder, pooler, dropout, linear classifier.
#[derive(Module, Debug)]
pub struct BertClassifier<B: Backend> {
    pub bert: BertModel<B>,
    pub classifier: Linear<B>,
    dropout: Dropout,
}

/// What a forward pass should return besides the logits.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions<B: Backend> {
    /// `[layers, heads]`, 1 keeps a head and 0 silences it, as `transformers`' `head_mask`
    /// (the mask multiplies the attention probabilities, so returned maps are masked too).
    pub head_mask: Option<Tensor<B, 2>>,
    pub attentions: bool,
    pub hidden_states: bool,
}

impl<B: Backend> ForwardOptions<B> {
    pub fn with_attentions() -> Self {
        ForwardOptions { head_mask: None, attentions: true, hidden_states: false }
    }
}

#[derive(Debug, Clone)]
pub struct EncoderOutput<B: Backend> {
    /// `[batch, seq, hidden]` output of the last layer.
    pub last_hidden: Tensor<B, 3>,
    /// Embedding output then each layer's output, when asked for.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// Per layer `[batch, heads, seq, seq]` attention probabilities, when asked for.
    pub attentions: Vec<Tensor<B, 4>>,
}

/// How two models' shapes differ ([`BertClassifier::shape_difference`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeDifference {
    pub what: String,
    /// This model's count, and the other's.
    pub this: usize,
    pub other: usize,
}

#[derive(Debug, Clone)]
pub struct ClassifierOutput<B: Backend> {
    /// `[batch, num_labels]` unnormalised scores.
    pub logits: Tensor<B, 2>,
    pub encoder: EncoderOutput<B>,
}

impl<B: Backend> Embeddings<B> {
    /// Word + position + token-type embeddings, normalised (dropout while training).
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let token_types = Tensor::<B, 2, Int>::zeros([batch, seq], &device);
        let x = self.word.forward(input_ids) + self.position.forward(positions) + self.token_type.forward(token_types);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

impl<B: Backend> EncoderLayer<B> {
    /// One transformer layer; returns its output and its attention probabilities.
    ///
    /// Dense layers run on `[batch·seq, hidden]` matrices: one large matmul is much faster on
    /// CPU backends than a broadcast batched matmul over `[batch, seq, hidden]`.
    fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>, head_mask: Option<Tensor<B, 1>>) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let [batch, seq, hidden] = x.dims();
        let x = x.reshape([batch * seq, hidden]);
        let split = |t: Tensor<B, 2>| t.reshape([batch, seq, self.heads, self.head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)) / (self.head_dim as f64).sqrt() + mask_bias;
        let mut probs = self.attention_dropout.forward(activation::softmax(scores, 3));
        if let Some(mask) = head_mask {
            probs = probs * mask.reshape([1, self.heads, 1, 1]);
        }
        let context = probs.clone().matmul(v).swap_dims(1, 2).reshape([batch * seq, self.heads * self.head_dim]);
        let attended = self.attention_norm.forward(self.dropout.forward(self.attention_output.forward(context)) + x);
        let inner = gelu(self.intermediate.forward(attended.clone()));
        let out = self.output_norm.forward(self.dropout.forward(self.output.forward(inner)) + attended);
        (out.reshape([batch, seq, hidden]), probs)
    }
}

impl<B: Backend> BertModel<B> {
    /// Runs the encoder. `attention_mask` is `[batch, seq]` with 1 for real tokens, 0 for padding.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2>, options: &ForwardOptions<B>) -> EncoderOutput<B> {
        let [batch, seq] = input_ids.dims();
        let mask_bias = (attention_mask.neg() + 1.0).reshape([batch, 1, 1, seq]) * MASKED_SCORE;
        let mut x = self.embeddings.forward(input_ids);
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if options.hidden_states {
                hidden_states.push(x.clone());
            }
            let head_mask = options.head_mask.as_ref().map(|m| m.clone().slice([i..i + 1, 0..layer.heads]).reshape([layer.heads]));
            let (out, probs) = layer.forward(x, mask_bias.clone(), head_mask);
            x = out;
            if options.attentions {
                attentions.push(probs);
            }
        }
        if options.hidden_states {
            hidden_states.push(x.clone());
        }
        EncoderOutput { last_hidden: x, hidden_states, attentions }
    }

    /// `tanh(W · h[CLS] + b)`, BERT's pooled sentence representation.
    pub fn pool(&self, last_hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, hidden] = last_hidden.dims();
        let cls = last_hidden.slice([0..batch, 0..1]).reshape([batch, hidden]);
        activation::tanh(self.pooler.forward(cls))
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

impl<B: Backend> BertClassifier<B> {
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2>, options: &ForwardOptions<B>) -> ClassifierOutput<B> {
        let encoder = self.bert.forward(input_ids, attention_mask, options);
        let pooled = self.bert.pool(encoder.last_hidden.clone());
        let logits = self.classifier.forward(self.dropout.forward(pooled));
        ClassifierOutput { logits, encoder }
    }

    /// Logits only: the common case, without keeping attention maps alive.
    pub fn logits(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(input_ids, attention_mask, &ForwardOptions::default()).logits
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// The same encoder and pooler under a new classifier head of as many classes, drawn as
    /// loading a bare encoder draws one (N(0, `std`) weights, zero biases, from `seed`): a
    /// fine-tuned checkpoint treated as the pre-trained encoder it was made from.
    pub fn with_new_head(self, seed: u64, std: f64) -> Self {
        let [hidden, classes] = self.classifier.weight.dims();
        let mut init = RandomInit::new(seed, std, &self.classifier.weight.device());
        let classifier = Linear {
            weight: Param::from_tensor(init.draw([hidden, classes], ParamKind::LinearWeight)),
            bias: Some(Param::from_tensor(init.draw([classes], ParamKind::Bias))),
        };
        BertClassifier { classifier, ..self }
    }

    pub fn vocab_size(&self) -> usize {
        self.bert.embeddings.word.weight.dims()[0]
    }

    /// The first way `other` differs from this model in shape, if any: layers, hidden size,
    /// heads per layer, vocabulary, position table or classes. Models of one shape read the same
    /// token ids and pair layer by layer (a defense that takes a model trained earlier in place
    /// of one of its steps checks this first).
    pub fn shape_difference<O: Backend>(&self, other: &BertClassifier<O>) -> Option<ShapeDifference> {
        let differ = |what: String, this: usize, other: usize| (this != other).then_some(ShapeDifference { what, this, other });
        let (a, b) = (&self.bert, &other.bert);
        differ("layers".into(), a.num_layers(), b.num_layers())
            .or_else(|| differ("hidden size".into(), a.embeddings.word.weight.dims()[1], b.embeddings.word.weight.dims()[1]))
            .or_else(|| {
                a.layers
                    .iter()
                    .zip(&b.layers)
                    .enumerate()
                    .find_map(|(l, (x, y))| differ(format!("attention heads of layer {l}"), x.heads, y.heads))
            })
            .or_else(|| differ("vocabulary size".into(), self.vocab_size(), other.vocab_size()))
            .or_else(|| {
                differ("max_position_embeddings".into(), a.embeddings.position.weight.dims()[0], b.embeddings.position.weight.dims()[0])
            })
            .or_else(|| differ("classes".into(), self.num_labels(), other.num_labels()))
    }

    /// Builds the model from named parameters in Hugging Face's naming and layout.
    pub fn from_source(config: &BertConfig, num_labels: usize, source: &mut impl ParamSource<B>) -> Result<Self, CheckpointError> {
        config.validate()?;
        let h = config.hidden_size;
        let embeddings = Embeddings {
            word: embedding(source, "embeddings.word_embeddings.weight", [config.vocab_size, h])?,
            position: embedding(source, "embeddings.position_embeddings.weight", [config.max_position_embeddings, h])?,
            token_type: embedding(source, "embeddings.token_type_embeddings.weight", [config.type_vocab_size, h])?,
            layer_norm: layer_norm(source, "embeddings.LayerNorm", h, config.layer_norm_eps)?,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let heads = config.heads_in_layer(i)?.len();
            let inner = heads * config.head_dim();
            let p = format!("encoder.layer.{i}");
            layers.push(EncoderLayer {
                query: linear(source, &format!("{p}.attention.self.query"), h, inner)?,
                key: linear(source, &format!("{p}.attention.self.key"), h, inner)?,
                value: linear(source, &format!("{p}.attention.self.value"), h, inner)?,
                attention_output: linear(source, &format!("{p}.attention.output.dense"), inner, h)?,
                attention_norm: layer_norm(source, &format!("{p}.attention.output.LayerNorm"), h, config.layer_norm_eps)?,
                intermediate: linear(source, &format!("{p}.intermediate.dense"), h, config.intermediate_size)?,
                output: linear(source, &format!("{p}.output.dense"), config.intermediate_size, h)?,
                output_norm: layer_norm(source, &format!("{p}.output.LayerNorm"), h, config.layer_norm_eps)?,
                dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
                attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                heads,
                head_dim: config.head_dim(),
            });
        }
        let bert = BertModel { embeddings, layers, pooler: linear(source, "pooler.dense", h, h)? };
        Ok(BertClassifier {
            bert,
            classifier: linear(source, "classifier", h, num_labels)?,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        })
    }
}

fn embedding<B: Backend>(source: &mut impl ParamSource<B>, name: &str, shape: [usize; 2]) -> Result<Embedding<B>, CheckpointError> {
    Ok(Embedding { weight: Param::from_tensor(source.tensor(name, shape, ParamKind::Embedding)?) })
}

/// Hugging Face stores Linear weights `[out, in]`; burn's `Linear` computes `x · W` with
/// `W: [in, out]`. The source transposes.
fn linear<B: Backend>(source: &mut impl ParamSource<B>, prefix: &str, d_in: usize, d_out: usize) -> Result<Linear<B>, CheckpointError> {
    Ok(Linear {
        weight: Param::from_tensor(source.tensor(&format!("{prefix}.weight"), [d_in, d_out], ParamKind::LinearWeight)?),
        bias: Some(Param::from_tensor(source.tensor(&format!("{prefix}.bias"), [d_out], ParamKind::Bias)?)),
    })
}

fn layer_norm<B: Backend>(source: &mut impl ParamSource<B>, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm<B>, CheckpointError> {
    let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(&source.device());
    norm.gamma = Param::from_tensor(source.tensor(&format!("{prefix}.weight"), [d], ParamKind::Scale)?);
    norm.beta = Some(Param::from_tensor(source.tensor(&format!("{prefix}.bias"), [d], ParamKind::Bias)?));
    Ok(norm)
}
