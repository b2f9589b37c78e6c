//! `aia-bench embed`, `hybrid-tune` and `hybrid-retrieve`: the [semantic] figures of
//! BENCHMARKS.md — local embedding speed against the matmul bound, the fusion settings chosen
//! on the development files, and hybrid retrieval latency at scale.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aia_chat::knowledge::eval::{Judged, auroc, best, rank, report};
use aia_chat::knowledge::{KnowledgeEntry, KnowledgeIndex, dataset::Dataset};
use aia_chat::semantic::hybrid::Fusion;
use aia_chat::semantic::local::candle::{self as candle_core, Device, Tensor};
use aia_chat::semantic::vectors::{Field, Quantized, Similarities, VectorIndex, entry_texts};
use aia_chat::semantic::{Embedder, LocalModel, index_entries};
use anyhow::{Context, Result, ensure};
use clap::Args;
use serde_json::{Value, json};

/// The development files, in the README's order, with the README's best MiniLM top-1.
const FILES: [(&str, f64); 4] =
    [("clinc-oos-dev", 0.941), ("hwu64-faq-dev", 0.747), ("covidqa-faq-dev", 0.660), ("covidq-faq-dev", 0.546)];

/// `aia-bench embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// The model directory.
    #[arg(long)]
    model: PathBuf,
    /// The development files' directory (their queries are the texts).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Texts per `embed` call in the bulk pass.
    #[arg(long, default_value_t = 256)]
    chunk: usize,
    /// Single queries timed.
    #[arg(long, default_value_t = 400)]
    single: usize,
    /// Repeats of the bulk pass and of the bound (the best is kept: the machine is shared).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// `aia-bench hybrid-tune`.
#[derive(Args)]
pub struct TuneArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
}

/// `aia-bench hybrid-retrieve`.
#[derive(Args)]
pub struct HybridRetrieveArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Entries in all (the development FAQs plus synthetic ones).
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// `aia-bench embed-train`.
#[derive(Args)]
pub struct EmbedTrainArgs {
    #[arg(long)]
    model: PathBuf,
    /// Synthetic entries (question and answer each embedded).
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let d = sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn load(path: &Path) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Dataset::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Operands for the bound: one weight per matmul of a forward pass (distinct per layer, stored
/// `(n, k)` and used transposed, as the model does), and one input per inner dimension.
struct Operands {
    weights: Vec<Tensor>,
    inputs: Vec<(usize, Tensor)>,
}

impl Operands {
    fn new(per_pass: &[(usize, usize, usize)], max_m: usize) -> Result<Operands> {
        let weights = per_pass
            .iter()
            .map(|&(_, k, n)| Tensor::full(0.01f32, (n, k), &Device::Cpu))
            .collect::<candle_core::Result<_>>()?;
        let mut inputs: Vec<(usize, Tensor)> = Vec::new();
        for &(_, k, _) in per_pass {
            if !inputs.iter().any(|(kk, _)| *kk == k) {
                inputs.push((k, Tensor::full(0.5f32, (max_m, k), &Device::Cpu)?));
            }
        }
        Ok(Operands { weights, inputs })
    }

    /// Runs every matmul of `plan` once with candle.
    fn run(&self, plan: &[(usize, usize, usize)]) -> Result<Duration> {
        let t = Instant::now();
        for (i, &(m, k, _)) in plan.iter().enumerate() {
            let w = &self.weights[i % self.weights.len()];
            let x = &self.inputs.iter().find(|(kk, _)| *kk == k).context("input for k")?.1;
            std::hint::black_box(x.narrow(0, 0, m)?.matmul(&w.t()?)?);
        }
        Ok(t.elapsed())
    }
}

/// Bulk throughput on the development queries of at most 24 tokens, the candle matmuls of the
/// same batches (rounds alternate the two so that other load hits both alike), and single
/// query latency.
pub fn embed(args: EmbedArgs) -> Result<Value> {
    let started = Instant::now();
    let model = LocalModel::load(&args.model)?;
    let embedder = model.model();
    let load_s = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for (name, _) in FILES {
        all.extend(load(&args.data.join(format!("{name}.json")))?.queries.into_iter().map(|q| q.text));
    }
    let mut texts = Vec::new();
    let mut tokens = 0;
    for t in &all {
        let n = embedder.token_count(t)?;
        if n <= 24 {
            texts.push(t.as_str());
            tokens += n;
        }
    }
    ensure!(!texts.is_empty(), "no development queries in {}", args.data.display());
    embedder.embed(&texts[..64.min(texts.len())])?;
    let chunks: Vec<&[&str]> = texts.chunks(args.chunk.max(1)).collect();
    let plans = chunks.iter().map(|c| embedder.matmul_plan(c)).collect::<Result<Vec<_>, _>>()?;
    let per_pass = embedder.matmul_plan(&texts[..1])?;
    let max_m = plans.iter().flatten().map(|s| s.0).max().unwrap_or(1);
    let ops = Operands::new(&per_pass, max_m)?;
    let (mut best, mut bound) = (Duration::MAX, Duration::MAX);
    for _ in 0..args.rounds.max(1) {
        let t = Instant::now();
        for c in &chunks {
            std::hint::black_box(embedder.embed(c)?);
        }
        best = best.min(t.elapsed());
        let mut mm = Duration::ZERO;
        for p in &plans {
            mm += ops.run(p)?;
        }
        bound = bound.min(mm);
    }
    let step = (texts.len() / args.single.max(1)).max(1);
    let singles: Vec<&str> = texts.iter().step_by(step).take(args.single.max(1)).copied().collect();
    for q in singles.iter().take(20) {
        embedder.embed(&[q])?;
    }
    let mut lat = Vec::new();
    for q in &singles {
        let t = Instant::now();
        std::hint::black_box(embedder.embed(&[q])?);
        lat.push(t.elapsed());
    }
    lat.sort();
    let flops: f64 = plans.iter().flatten().map(|&(m, k, n)| 2.0 * (m * k * n) as f64).sum();
    Ok(json!({
        "model_load_s": (load_s * 100.0).round() / 100.0,
        "threads": candle_core::utils::get_num_threads(),
        "texts": texts.len(), "of_queries": all.len(), "mean_tokens": (tokens as f64 / texts.len() as f64 * 10.0).round() / 10.0,
        "texts_per_s": (texts.len() as f64 / best.as_secs_f64()).round(),
        "matmul_bound_s": (bound.as_secs_f64() * 1000.0).round() / 1000.0,
        "embed_s": (best.as_secs_f64() * 1000.0).round() / 1000.0,
        "embed_over_bound": (best.as_secs_f64() / bound.as_secs_f64() * 100.0).round() / 100.0,
        "matmul_gflops": (flops / bound.as_secs_f64() / 1e8).round() / 10.0,
        "single_p50_ms": percentile(&lat, 0.5), "single_p99_ms": percentile(&lat, 0.99),
        "single_max_ms": percentile(&lat, 1.0),
        "peak_rss_mib": crate::proc_value("/proc/self/status", "VmHWM:", "VmHWM:").map(|kb| (kb as f64 / 102.4).round() / 10.0),
    }))
}

/// One development file, embedded and scored once, so that fusion settings cost nothing to
/// try: per query its gold entry, full-text scores, full-text confidence of every entry and
/// its similarities.
struct Prepared {
    name: &'static str,
    readme_best: f64,
    queries: Vec<PreparedQuery>,
}

/// Gold entry, full-text scores, full-text confidences, similarities.
type PreparedQuery = (Option<usize>, Vec<f32>, Vec<f32>, Similarities);

async fn prepare(model: &LocalModel, data: &Path) -> Result<Vec<Prepared>> {
    let mut out = Vec::new();
    for (name, readme_best) in FILES {
        let dataset = load(&data.join(format!("{name}.json")))?;
        let index = KnowledgeIndex::build(dataset.entries(), "en")?;
        let vectors = index_entries(index.entries(), model).await?;
        let texts: Vec<String> = dataset.queries.iter().map(|q| q.text.clone()).collect();
        let query_vectors = model.embed(&texts).await?;
        let position: std::collections::HashMap<&str, usize> =
            dataset.faqs.iter().enumerate().map(|(i, f)| (f.id.as_str(), i)).collect();
        let mut queries = Vec::new();
        for (q, v) in dataset.queries.iter().zip(&query_vectors) {
            let gold = q.faq_id.as_deref().map(|id| position[id]);
            let text = index.scored(&q.text, None);
            let confidences = (0..index.entries().len()).map(|i| text.confidence(i)).collect();
            let sims = vectors.similarities(v).context("query vector")?;
            queries.push((gold, text.scores.clone(), confidences, sims));
        }
        eprintln!("aia-bench: {name}: {} queries prepared", queries.len());
        out.push(Prepared { name, readme_best, queries });
    }
    Ok(out)
}

/// Top-1 of `fusion` on a prepared file.
fn top1(p: &Prepared, fusion: &Fusion) -> f64 {
    let (mut hits, mut n) = (0, 0);
    for (gold, text, _, sims) in &p.queries {
        let Some(g) = gold else { continue };
        n += 1;
        hits += usize::from(rank(&fusion.fuse(text, sims), *g) == 1);
    }
    hits as f64 / n as f64
}

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// Grid over the fusion weights (top-1 on every file against the README's best MiniLM row),
/// then a logistic fit of the confidence on `clinc-oos-dev`.
pub async fn tune(args: TuneArgs) -> Result<()> {
    let model = LocalModel::load(&args.model)?;
    let files = prepare(&model, &args.data).await?;
    // The port's check: the model alone against the README's MiniLM rows.
    println!("| file | model alone | top-1 | recall@3 | MRR@10 |\n|---|---|---|---|---|");
    for p in &files {
        for (fields, answers) in [("question + variants", false), ("question + variants + answer", true)] {
            let judged: Vec<(Option<usize>, Judged)> = p
                .queries
                .iter()
                .map(|(gold, _, _, sims)| {
                    let scores = (0..sims.phrasing.len())
                        .map(|i| if answers { sims.phrasing[i].max(sims.answer[i]) } else { sims.phrasing[i] })
                        .collect();
                    (*gold, Judged { scores, confidence: 0.0 })
                })
                .collect();
            let r = report(&judged, 0.5);
            println!("| {} | {fields} | {:.3} | {:.3} | {:.3} |", p.name, r.top1, r.recall3, r.mrr10);
        }
    }
    let mut results = Vec::new();
    for vw in (12..=19).map(|i| i as f32 / 20.0) {
        for aw in [0.0, 0.9, 1.0, 1.1, 1.2, 1.3] {
            let fusion = Fusion { vector_weight: vw, answer_weight: aw, ..Fusion::SHIPPED };
            let margins: Vec<f64> = files.iter().map(|p| top1(p, &fusion) - p.readme_best).collect();
            results.push((fusion, margins));
        }
    }
    // Best: clears +1 point on the most files, never below; then the largest mean margin.
    let key = |m: &[f64]| {
        let above = m.iter().filter(|x| **x >= 0.00999).count();
        let min = m.iter().copied().fold(f64::MAX, f64::min);
        let mean = m.iter().sum::<f64>() / m.len() as f64;
        (usize::from(min >= -1e-9), above, (mean * 1e5).round() as i64)
    };
    results.sort_by_key(|r| std::cmp::Reverse(key(&r.1)));
    println!("| vector weight | answer weight | {} |", files.iter().map(|p| p.name).collect::<Vec<_>>().join(" | "));
    for (f, m) in results.iter().take(12) {
        let cells: Vec<String> =
            files.iter().zip(m).map(|(p, m)| format!("{:.3} ({m:+.3})", p.readme_best + m)).collect();
        println!("| {:.2} | {:.1} | {} |", f.vector_weight, f.answer_weight, cells.join(" | "));
    }
    let chosen = results[0].0;
    // The confidence: logistic regression of in-scope against out-of-scope on clinc.
    let clinc = &files[0];
    let rows: Vec<(f32, f32, bool)> = clinc
        .queries
        .iter()
        .map(|(gold, text, conf, sims)| {
            let fused = chosen.fuse(text, sims);
            let best = best(&fused).unwrap_or(0);
            (chosen.semantic(sims, best), conf[best], gold.is_some())
        })
        .collect();
    let (mut w, mut b) = ([0f64; 2], 0f64);
    for _ in 0..20_000 {
        let (mut g, mut gb) = ([0f64; 2], 0f64);
        for (x0, x1, y) in &rows {
            let z = w[0] * f64::from(*x0) + w[1] * f64::from(*x1) + b;
            let err = 1.0 / (1.0 + (-z).exp()) - f64::from(u8::from(*y));
            g[0] += err * f64::from(*x0);
            g[1] += err * f64::from(*x1);
            gb += err;
        }
        let n = rows.len() as f64;
        w[0] -= 2.0 * g[0] / n;
        w[1] -= 2.0 * g[1] / n;
        b -= 2.0 * gb / n;
    }
    let fitted =
        Fusion { confidence_cosine: w[0] as f32, confidence_text: w[1] as f32, confidence_bias: b as f32, ..chosen };
    let conf = |f: &Fusion| -> Vec<(f32, bool, bool)> {
        clinc
            .queries
            .iter()
            .map(|(gold, text, conf, sims)| {
                let fused = f.fuse(text, sims);
                let best = best(&fused).unwrap_or(0);
                (f.confidence(f.semantic(sims, best), conf[best]), gold.is_some(), *gold == Some(best))
            })
            .collect()
    };
    let judged = conf(&fitted);
    let pos: Vec<f32> = judged.iter().filter(|r| r.1).map(|r| r.0).collect();
    let neg: Vec<f32> = judged.iter().filter(|r| !r.1).map(|r| r.0).collect();
    println!(
        "confidence fit on clinc: cosine {:.3}, text {:.3}, bias {:.3}; AUROC {:.4}",
        w[0],
        w[1],
        b,
        auroc(&pos, &neg)
    );
    let figures = |rows: &[(f32, bool, bool)], t: f32| {
        let n_in = rows.iter().filter(|r| r.1).count() as f64;
        let n_out = rows.len() as f64 - n_in;
        let acc = rows.iter().filter(|r| r.2 && r.0 >= t).count() as f64 / n_in;
        let rec = rows.iter().filter(|r| !r.1 && r.0 < t).count() as f64 / n_out;
        (acc, rec)
    };
    let mut best = (0.5f32, f64::MIN);
    for t in (1..100).map(|i| i as f32 / 100.0) {
        let (acc, rec) = figures(&judged, t);
        if 0.5 * (acc + rec) > best.1 {
            best = (t, 0.5 * (acc + rec));
        }
    }
    let shipped = Fusion { confidence_bias: fitted.confidence_bias + logit(0.87) - logit(best.0), ..fitted };
    let (acc, rec) = figures(&conf(&shipped), 0.87);
    println!(
        "balanced optimum at {:.2}; bias shifted to {:.3} so that it sits at 0.87: in-scope accuracy {acc:.3}, no-answer recall {rec:.3}",
        best.0, shipped.confidence_bias
    );
    println!("chosen: {shipped:?}");
    Ok(())
}

/// Builds the full-text index and the vectors at `entries` entries (the development FAQs
/// embedded, synthetic entries with random unit vectors: search cost does not depend on what
/// the vectors say) and times hybrid `search(query, 5)` for every development query, the
/// query's embedding excluded (measured by `embed`).
pub async fn retrieve(args: HybridRetrieveArgs) -> Result<Value> {
    let model = LocalModel::load(&args.model)?;
    let mut entries: Vec<KnowledgeEntry> = Vec::new();
    let mut datasets = Vec::new();
    for (name, _) in FILES {
        let d = load(&args.data.join(format!("{name}.json")))?;
        entries.extend(d.entries());
        datasets.push(d);
    }
    let real = entries.len();
    for i in real..args.entries {
        entries.push(serde_json::from_value(crate::synthetic_entry(i, 0))?);
    }
    let started = Instant::now();
    let index = KnowledgeIndex::build(entries, "en")?;
    let build_s = started.elapsed().as_secs_f64();
    let mut vectors = VectorIndex::new(model.model().dim(), index.entries().len());
    let mut queries = Vec::new();
    let mut offset = 0;
    for d in &datasets {
        for (i, e) in d.entries().iter().enumerate() {
            let texts: Vec<(Field, &str)> = entry_texts(e).collect();
            let vs = model.model().embed(&texts.iter().map(|(_, t)| *t).collect::<Vec<_>>())?;
            for ((field, _), v) in texts.iter().zip(&vs) {
                vectors.push(offset + i, *field, &Quantized::new(v).context("vector")?);
            }
        }
        offset += d.faqs.len();
        let texts: Vec<&str> = d.queries.iter().map(|q| q.text.as_str()).collect();
        queries.extend(texts.iter().map(|t| t.to_string()).zip(model.model().embed(&texts)?));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let dim = vectors.dim();
    for i in real..index.entries().len() {
        for field in [Field::Phrasing, Field::Answer] {
            let v: Vec<f32> = (0..dim)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect();
            vectors.push(i, field, &Quantized::new(&v).context("vector")?);
        }
    }
    let fusion = Fusion::SHIPPED;
    let mut lat = Vec::new();
    for round in 0..args.rounds.max(2) {
        for (text, v) in &queries {
            let t = Instant::now();
            std::hint::black_box(fusion.search(&index, &vectors, text, v, 5));
            if round > 0 {
                lat.push(t.elapsed());
            }
        }
    }
    lat.sort();
    // The vector scan alone, and full-text alone, to see where the time goes.
    let (mut scan, mut text) = (Vec::new(), Vec::new());
    for (q, v) in &queries {
        let t = Instant::now();
        std::hint::black_box(vectors.similarities(v));
        scan.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(index.search(q, 5));
        text.push(t.elapsed());
    }
    scan.sort();
    text.sort();
    Ok(json!({
        "scan_p50_ms": percentile(&scan, 0.5), "scan_p99_ms": percentile(&scan, 0.99),
        "full_text_p50_ms": percentile(&text, 0.5), "full_text_p99_ms": percentile(&text, 0.99),
        "entries": index.entries().len(), "benchmark_faqs": real, "vectors": vectors.len(),
        "vector_mib": (vectors.heap_bytes() as f64 / 1048576.0 * 10.0).round() / 10.0,
        "searches": lat.len(), "index_build_s": (build_s * 100.0).round() / 100.0,
        "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "max_ms": percentile(&lat, 1.0),
        "peak_rss_mib": crate::proc_value("/proc/self/status", "VmHWM:", "VmHWM:").map(|kb| (kb as f64 / 102.4).round() / 10.0),
    }))
}

/// The embedding part of training at scale: `entries` synthetic entries synced into a fresh
/// SQLite store with the local model (every text embedded and stored), then synced again
/// unchanged (nothing embedded), then with 1 % of the answers changed.
pub async fn embed_train(args: EmbedTrainArgs) -> Result<Value> {
    let model = LocalModel::load(&args.model)?;
    let dir = tempfile_dir()?;
    let store = aia_chat::store::open(None, &dir).await?;
    let client = store.client_create("bench", aia_chat::ids::now_ms()).await?;
    let mut entries: Vec<KnowledgeEntry> =
        (0..args.entries).map(|i| serde_json::from_value(crate::synthetic_entry(i, 0))).collect::<Result<_, _>>()?;
    let run = |entries: Vec<KnowledgeEntry>| {
        let (store, model) = (store.clone(), model.clone());
        async move {
            let started = Instant::now();
            let mut last = Instant::now();
            let synced = aia_chat::semantic::sync::sync(store.as_ref(), client.id, &entries, &model, |n| {
                if last.elapsed() > Duration::from_secs(30) {
                    eprintln!("aia-bench: {n} texts embedded");
                    last = Instant::now();
                }
            })
            .await?;
            anyhow::Ok((started.elapsed().as_secs_f64(), synced))
        }
    };
    let (first_s, first) = run(entries.clone()).await?;
    let (again_s, again) = run(entries.clone()).await?;
    for e in entries.iter_mut().step_by(100) {
        e.answer.push_str(" (changed)");
    }
    let (changed_s, changed) = run(entries).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "entries": args.entries, "texts": first.embedded,
        "first_s": (first_s * 10.0).round() / 10.0, "texts_per_s": (first.embedded as f64 / first_s).round(),
        "unchanged_s": (again_s * 100.0).round() / 100.0, "unchanged_embedded": again.embedded,
        "changed_1pct_s": (changed_s * 100.0).round() / 100.0, "changed_embedded": changed.embedded, "changed_removed": changed.removed,
        "vectors": changed.index.len(), "vector_mib": (changed.index.heap_bytes() as f64 / 1048576.0 * 10.0).round() / 10.0,
        "peak_rss_mib": crate::proc_value("/proc/self/status", "VmHWM:", "VmHWM:").map(|kb| (kb as f64 / 102.4).round() / 10.0),
    }))
}

/// A fresh directory under the system's temporary one.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("aia-bench-{}-{}", std::process::id(), aia_chat::ids::now_ms()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
