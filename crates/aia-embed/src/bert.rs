//! BERT encoder forward pass on candle's CPU backend, over *packed* batches.
//!
//! A batch is a run of sequences laid end to end, `(total_tokens, hidden)`, with no padding:
//! every dense layer works on real tokens only, and attention is computed per sequence, so no
//! token can see another sequence's tokens (what an attention mask achieves in a padded
//! batch, without the wasted work). Matmuls are candle's; the rest is fused in [`kernels`].

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::kernels::{
    Activation, BiasAct, BiasResidualNorm, EmbeddingTables, PackedAttention, PackedMatmul, PackedWeight,
};

/// The subset of a Hugging Face `config.json` that a BERT encoder needs.
#[derive(Debug, Deserialize)]
pub(crate) struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// Checks the fields this implementation relies on; the error text names the field.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.model_type.as_deref() {
            Some("bert") => {}
            other => return Err(format!("model_type is {other:?}, only \"bert\" is supported")),
        }
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.max_position_embeddings < 3 || self.type_vocab_size == 0 {
            return Err("max_position_embeddings < 3 or type_vocab_size = 0".to_owned());
        }
        self.activation().map(|_| ())
    }

    fn activation(&self) -> Result<Activation, String> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(format!("hidden_act {other:?} is not supported")),
        }
    }
}

/// A dense layer. The weight is kept twice (+42 MB for MiniLM): `(out, in)` row-major as
/// PyTorch stores it, for candle's gemm on batches, and packed for short inputs (one query).
#[derive(Debug)]
struct Dense {
    w: Tensor,
    packed: PackedWeight,
    /// Applied by the fused epilogue that follows the matmul.
    b: Vec<f32>,
}

/// Up to this many tokens in a batch, matmuls use [`PackedMatmul`] rather than candle's
/// gemm. Measured on a 2-core Zen 3: the packed kernel is ~1.5-2x faster at 11-64 rows
/// (gemm repacks the weights on every call, which dominates when there are few rows),
/// even at 256, and 5-20% slower from 1024 rows, where gemm's cache blocking pays off.
const PACKED_MAX_TOKENS: usize = 128;

impl Dense {
    /// `x @ w.T` (the bias is left to the fused epilogue).
    fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.dim(0)? <= PACKED_MAX_TOKENS {
            x.apply_op1_no_bwd(&PackedMatmul(&self.packed))
        } else {
            x.matmul(&self.w.t()?)
        }
    }
}

/// LayerNorm parameters.
#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// The fused `LayerNorm(y + bias + residual)` op with this norm and `bias`.
    fn after<'a>(&'a self, bias: &'a [f32]) -> BiasResidualNorm<'a> {
        BiasResidualNorm { bias, gamma: &self.gamma, beta: &self.beta, eps: self.eps }
    }
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value projections fused into one `(hidden, 3 * hidden)` matmul.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: Norm,
}

/// Shapes of the matrix multiplications one forward pass runs, for the benchmark's bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatmulShape {
    /// Rows of the left operand (tokens in the packed batch).
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
}

/// The loaded encoder: embeddings, layers, and the sizes needed to run them.
#[derive(Debug)]
pub(crate) struct BertEncoder {
    /// Word embeddings, `(vocab, hidden)` row-major.
    word: Vec<f32>,
    /// Position embeddings with the token-type-0 row already added (inputs are single
    /// sentences, so every `token_type_id` is 0), `(max_positions, hidden)` row-major.
    position_and_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    activation: Activation,
    max_positions: usize,
    vocab_size: usize,
}

/// Fetches one f32 tensor of an exact shape, with a message naming it when that fails.
fn take(weights: &HashMap<String, Tensor>, prefix: &str, name: &str, shape: &[usize]) -> Result<Tensor, String> {
    let full = format!("{prefix}{name}");
    let t = weights.get(&full).ok_or_else(|| format!("tensor {full:?} is missing"))?;
    if t.dims() != shape {
        return Err(format!("tensor {full:?} has shape {:?}, expected {shape:?}", t.dims()));
    }
    t.to_dtype(DType::F32).map_err(|e| format!("tensor {full:?}: {e}"))
}

/// Like [`take`], flattened into a plain vector.
fn take_vec(weights: &HashMap<String, Tensor>, prefix: &str, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    take(weights, prefix, name, shape)?.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| format!("{name}: {e}"))
}

/// A `Linear`'s weight `(out_dim, in_dim)` and bias.
fn linear(
    weights: &HashMap<String, Tensor>,
    prefix: &str,
    name: &str,
    in_dim: usize,
    out_dim: usize,
) -> Result<(Tensor, Vec<f32>), String> {
    let w = take(weights, prefix, &format!("{name}.weight"), &[out_dim, in_dim])?;
    Ok((w, take_vec(weights, prefix, &format!("{name}.bias"), &[out_dim])?))
}

impl Dense {
    fn new((w, b): (Tensor, Vec<f32>)) -> Result<Self, String> {
        let (n, k) = w.dims2().map_err(|e| e.to_string())?;
        let flat = w.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string())?;
        Ok(Self { packed: PackedWeight::new(&flat, n, k), w, b })
    }
}

fn dense(
    weights: &HashMap<String, Tensor>,
    prefix: &str,
    name: &str,
    in_dim: usize,
    out_dim: usize,
) -> Result<Dense, String> {
    Dense::new(linear(weights, prefix, name, in_dim, out_dim)?)
}

fn norm(weights: &HashMap<String, Tensor>, prefix: &str, name: &str, dim: usize, eps: f64) -> Result<Norm, String> {
    Ok(Norm {
        gamma: take_vec(weights, prefix, &format!("{name}.weight"), &[dim])?,
        beta: take_vec(weights, prefix, &format!("{name}.bias"), &[dim])?,
        eps: eps as f32,
    })
}

impl BertEncoder {
    /// Builds the encoder from the tensors of a safetensors file (names with or without a
    /// leading `bert.`); returns a message naming the offending tensor on mismatch.
    pub(crate) fn new(cfg: &BertConfig, weights: &HashMap<String, Tensor>) -> Result<Self, String> {
        cfg.validate()?;
        let prefix = if weights.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let h = cfg.hidden_size;
        let word = take_vec(weights, prefix, "embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
        let mut position_and_type =
            take_vec(weights, prefix, "embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?;
        let types = take_vec(weights, prefix, "embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?;
        for row in position_and_type.chunks_exact_mut(h) {
            row.iter_mut().zip(&types[..h]).for_each(|(p, t)| *p += t);
        }
        let embed_norm = norm(weights, prefix, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}.");
            let (qw, qb) = linear(weights, prefix, &format!("{p}attention.self.query"), h, h)?;
            let (kw, kb) = linear(weights, prefix, &format!("{p}attention.self.key"), h, h)?;
            let (vw, vb) = linear(weights, prefix, &format!("{p}attention.self.value"), h, h)?;
            let w = Tensor::cat(&[&qw, &kw, &vw], 0).map_err(|e| format!("{p}attention: {e}"))?;
            let qkv = Dense::new((w, [qb, kb, vb].concat()))?;
            layers.push(Layer {
                qkv,
                attn_out: dense(weights, prefix, &format!("{p}attention.output.dense"), h, h)?,
                attn_norm: norm(weights, prefix, &format!("{p}attention.output.LayerNorm"), h, cfg.layer_norm_eps)?,
                ffn_in: dense(weights, prefix, &format!("{p}intermediate.dense"), h, cfg.intermediate_size)?,
                ffn_out: dense(weights, prefix, &format!("{p}output.dense"), cfg.intermediate_size, h)?,
                ffn_norm: norm(weights, prefix, &format!("{p}output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word,
            position_and_type,
            embed_norm,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            activation: cfg.activation()?,
            max_positions: cfg.max_position_embeddings,
            vocab_size: cfg.vocab_size,
        })
    }

    /// Width of each token's output vector.
    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder over `seqs` packed end to end and returns the last hidden state,
    /// row-major `(total_tokens, hidden)`. Each sequence must be non-empty and no longer
    /// than `max_positions`; token ids must be below the vocabulary size.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut lens = Vec::with_capacity(seqs.len());
        for s in seqs {
            if s.is_empty() || s.len() > self.max_positions {
                candle_core::bail!("sequence length {} outside 1..={}", s.len(), self.max_positions);
            }
            if let Some(bad) = s.iter().find(|&&t| t as usize >= self.vocab_size) {
                candle_core::bail!("token id {bad} outside the vocabulary ({})", self.vocab_size);
            }
            ids.extend_from_slice(s);
            positions.extend(0..s.len() as u32);
            lens.push(s.len());
        }
        let tables = EmbeddingTables {
            word: &self.word,
            position_and_type: &self.position_and_type,
            gamma: &self.embed_norm.gamma,
            beta: &self.embed_norm.beta,
            eps: self.embed_norm.eps,
        };
        let x = tables.embed(&ids, &positions);
        let mut x = Tensor::from_vec(x, (total, self.hidden), &Device::Cpu)?;
        for layer in &self.layers {
            let attention = PackedAttention { bias: &layer.qkv.b, lens: &lens, heads: self.heads };
            let ctx = layer.qkv.matmul(&x)?.apply_op1_no_bwd(&attention)?;
            let x1 = layer.attn_out.matmul(&ctx)?.apply_op2_no_bwd(&x, &layer.attn_norm.after(&layer.attn_out.b))?;
            let act = BiasAct { bias: &layer.ffn_in.b, act: self.activation };
            let mid = layer.ffn_in.matmul(&x1)?.apply_op1_no_bwd(&act)?;
            x = layer.ffn_out.matmul(&mid)?.apply_op2_no_bwd(&x1, &layer.ffn_norm.after(&layer.ffn_out.b))?;
        }
        x.flatten_all()?.to_vec1::<f32>()
    }

    /// The matmul shapes [`forward`](Self::forward) runs for a packed batch of `tokens` tokens.
    pub(crate) fn matmul_shapes(&self, tokens: usize) -> Vec<MatmulShape> {
        let (h, i) = (self.hidden, self.intermediate);
        let per_layer = [
            MatmulShape { m: tokens, k: h, n: 3 * h },
            MatmulShape { m: tokens, k: h, n: h },
            MatmulShape { m: tokens, k: h, n: i },
            MatmulShape { m: tokens, k: i, n: h },
        ];
        (0..self.layers.len()).flat_map(|_| per_layer).collect()
    }
}
