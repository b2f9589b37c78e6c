//! Speed of the local embedder on this machine: (a) bulk throughput on short texts,
//! (b) single-query latency, (c) how the full pass compares with the bare matmuls it runs.
//!
//! Usage: `bench [MODEL_DIR] [DATA_DIR]`. Env: `BENCH_CHUNK` (texts per `embed` call in (a),
//! default 256), `BENCH_BATCH_TOKENS` (internal token cap per batch), `BENCH_SINGLE` (number
//! of single queries in (b), default 400), `BENCH_ROUNDS` (repeats of (a) and (c), default 3).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use proto_embed::local::LocalEmbedder;
use proto_embed::tools::{model_dir, pin_rayon_threads};
use serde::Deserialize;

#[derive(Deserialize)]
struct Query {
    text: String,
}

#[derive(Deserialize)]
struct DevFile {
    queries: Vec<Query>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Operands for the bound: one weight per matmul position in a forward pass (distinct per
/// layer, `(n, k)` row-major and used transposed, as the model stores and uses them), and
/// one input per inner dimension, at least `max_m` rows, narrowed to each call's `m`.
struct Operands {
    weights: Vec<Tensor>,
    inputs: Vec<(usize, Tensor)>,
}

impl Operands {
    fn new(per_pass: &[(usize, usize, usize)], max_m: usize) -> Self {
        let dev = Device::Cpu;
        let weights = per_pass.iter().map(|&(_, k, n)| Tensor::full(0.01f32, (n, k), &dev).expect("weight")).collect();
        let mut inputs: Vec<(usize, Tensor)> = Vec::new();
        for &(_, k, _) in per_pass {
            if !inputs.iter().any(|(kk, _)| *kk == k) {
                inputs.push((k, Tensor::full(0.5f32, (max_m, k), &dev).expect("input")));
            }
        }
        Self { weights, inputs }
    }

    /// Runs every matmul of `plan` once with candle; returns the elapsed time.
    fn run(&self, plan: &[(usize, usize, usize)]) -> Duration {
        let t = Instant::now();
        for (i, &(m, k, _)) in plan.iter().enumerate() {
            let w = &self.weights[i % self.weights.len()];
            let x = &self.inputs.iter().find(|(kk, _)| *kk == k).expect("input for k").1;
            let x = x.narrow(0, 0, m).expect("narrow");
            std::hint::black_box(x.matmul(&w.t().expect("t")).expect("matmul"));
        }
        t.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    pin_rayon_threads();
    let mut args = std::env::args().skip(1);
    let dir = model_dir(args.next());
    let data = PathBuf::from(args.next().unwrap_or_else(|| "/work/shared/data".to_owned()));
    let chunk = env_usize("BENCH_CHUNK", 256);
    let n_single = env_usize("BENCH_SINGLE", 400);
    let rounds = env_usize("BENCH_ROUNDS", 3);

    let t = Instant::now();
    let mut embedder = LocalEmbedder::load(&dir).unwrap_or_else(|e| panic!("load: {e}"));
    if let Ok(v) = std::env::var("BENCH_BATCH_TOKENS") {
        embedder = embedder.with_batch_tokens(v.parse().expect("BENCH_BATCH_TOKENS is a number"));
    }
    println!("load: {:.2?}; candle threads: {}; {embedder:?}", t.elapsed(), candle_core::utils::get_num_threads());

    let mut texts: Vec<String> = Vec::new();
    for name in ["clinc-oos-dev", "hwu64-faq-dev", "covidqa-faq-dev", "covidq-faq-dev"] {
        let bytes = std::fs::read(data.join(format!("{name}.json"))).expect("read dev file");
        let file: DevFile = serde_json::from_slice(&bytes).expect("parse dev file");
        texts.extend(file.queries.into_iter().map(|q| q.text));
    }
    let all = texts.len();
    let texts: Vec<&str> =
        texts.iter().map(String::as_str).filter(|t| embedder.token_count(t).expect("tokenize") <= 24).collect();
    let tokens: usize = texts.iter().map(|t| embedder.token_count(t).unwrap()).sum();
    println!(
        "texts: {} of {all} dev queries have <= 24 tokens; mean {:.1} tokens (specials included)",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );

    // Warm-up (thread pools, allocator).
    embedder.embed(&texts[..64.min(texts.len())]).expect("embed");

    // (a) Bulk throughput, in chunks of `chunk` texts per call, and (c) the candle matmuls
    // of the same batches. Rounds alternate the two, so that load from other processes
    // (this machine is shared) hits both alike; the best round of each is kept.
    let chunks: Vec<&[&str]> = texts.chunks(chunk).collect();
    let plans: Vec<Vec<(usize, usize, usize)>> =
        chunks.iter().map(|c| embedder.matmul_plan(c).expect("plan")).collect();
    let per_pass = embedder.matmul_plan(&texts[..1]).expect("plan");
    let max_m = plans.iter().flatten().map(|s| s.0).max().unwrap_or(1);
    let ops = Operands::new(&per_pass, max_m);
    let (mut best, mut mm_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        for c in &chunks {
            std::hint::black_box(embedder.embed(c).expect("embed"));
        }
        best = best.min(t.elapsed());
        mm_best = mm_best.min(plans.iter().map(|p| ops.run(p)).sum());
    }
    println!(
        "(a) throughput: {} texts in {:.3}s (best of {rounds}) = {:.0} texts/s, {:.0} tokens/s (chunk {chunk})",
        texts.len(),
        best.as_secs_f64(),
        texts.len() as f64 / best.as_secs_f64(),
        tokens as f64 / best.as_secs_f64()
    );
    let flops: f64 = plans.iter().flatten().map(|&(m, k, n)| 2.0 * (m * k * n) as f64).sum();
    println!(
        "(c) matmul bound: {:.3}s for {} matmuls ({:.1} GFLOP/s); full embed / bound = {:.2}x",
        mm_best.as_secs_f64(),
        plans.iter().map(Vec::len).sum::<usize>(),
        flops / mm_best.as_secs_f64() / 1e9,
        best.as_secs_f64() / mm_best.as_secs_f64()
    );

    // (b) One query at a time.
    let step = (texts.len() / n_single).max(1);
    let singles: Vec<&str> = texts.iter().step_by(step).take(n_single).copied().collect();
    for q in singles.iter().take(20) {
        embedder.embed(&[q]).expect("embed");
    }
    let mut lat: Vec<Duration> = singles
        .iter()
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(embedder.embed(&[q]).expect("embed"));
            t.elapsed()
        })
        .collect();
    lat.sort();
    let mut single_mm: Vec<Duration> =
        singles.iter().map(|q| ops.run(&embedder.matmul_plan(&[q]).expect("plan"))).collect();
    single_mm.sort();
    println!(
        "(b) single query ({} queries): p50 {:.2?}, p99 {:.2?}, max {:.2?}; candle-matmul-only p50 {:.2?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        percentile(&single_mm, 0.5),
    );
}
