//! `aia-chat eval FILE.json`: loads a benchmark file (the `shared/data/README.md` format)
//! into a throwaway knowledge base, ranks every query and prints the retrieval figures at the
//! shipped "don't know" threshold.

use std::path::PathBuf;

use anyhow::Context;

use crate::assistant::Confidence;
use crate::knowledge::KnowledgeIndex;
use crate::knowledge::dataset::Dataset;
use crate::knowledge::eval::{Judged, Report, report, with_typo};
use rand::SeedableRng;

/// Arguments of `aia-chat eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The benchmark file.
    file: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Language of the texts (stemming and stop words).
    #[arg(long, default_value = "en")]
    language: String,
    /// Decide "no answer" at this confidence instead of the shipped threshold.
    #[arg(long)]
    threshold: Option<f32>,
    /// Judge the queries with one random typo each (one edit in one word), from this seed: the
    /// typo set of a benchmark file.
    #[arg(long, value_name = "SEED")]
    typos: Option<u64>,
    /// Also print the threshold that maximises balanced accuracy on this file (for tuning).
    #[arg(long)]
    sweep: bool,
}

/// Judges every query of a dataset against an index built from its FAQs.
pub fn judge(dataset: &Dataset, language: &str) -> anyhow::Result<Vec<(Option<usize>, Judged)>> {
    let index = KnowledgeIndex::build(dataset.entries(), language)?;
    let position: std::collections::HashMap<&str, usize> =
        dataset.faqs.iter().enumerate().map(|(i, f)| (f.id.as_str(), i)).collect();
    dataset
        .queries
        .iter()
        .map(|q| {
            let gold = match &q.faq_id {
                Some(id) => {
                    Some(*position.get(id.as_str()).with_context(|| format!("query names unknown FAQ '{id}'"))?)
                }
                None => None,
            };
            let (scores, confidence) = index.score_all(&q.text);
            Ok((gold, Judged { scores, confidence }))
        })
        .collect()
}

fn sweep(judged: &[(Option<usize>, Judged)]) -> (f32, Report) {
    let mut candidates: Vec<f32> = judged.iter().map(|(_, j)| j.confidence).collect();
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    let mut best = (0.0, report(judged, 0.0), f64::MIN);
    for t in candidates {
        let r = report(judged, t);
        let balanced = 0.5 * (r.in_scope_accuracy.unwrap_or(0.0) + r.no_answer_recall.unwrap_or(0.0));
        if balanced > best.2 {
            best = (t, r, balanced);
        }
    }
    (best.0, best.1)
}

fn print_table(name: &str, threshold: f32, r: &Report) {
    println!("{name}");
    println!("  top-1       {:.3}", r.top1);
    println!("  recall@3    {:.3}", r.recall3);
    println!("  MRR@10      {:.3}", r.mrr10);
    if let (Some(p), Some(rec), Some(f1), Some(acc), Some(auc)) =
        (r.no_answer_precision, r.no_answer_recall, r.no_answer_f1, r.in_scope_accuracy, r.auroc)
    {
        println!("  at threshold {threshold:.3}:");
        println!("    no-answer precision {p:.3}  recall {rec:.3}  F1 {f1:.3}");
        println!("    in-scope accuracy   {acc:.3}");
        println!("  AUROC       {auc:.3}");
    }
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut dataset = Dataset::parse(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    if let Some(seed) = args.typos {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for q in &mut dataset.queries {
            q.text = with_typo(&q.text, &mut rng);
        }
    }
    let judged = judge(&dataset, &args.language)?;
    let threshold = args.threshold.unwrap_or(Confidence::default().threshold);
    let r = report(&judged, threshold);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print_table(&dataset.name, threshold, &r);
    }
    if args.sweep {
        let (t, best) = sweep(&judged);
        eprintln!("balanced-accuracy optimum on this file: threshold {t:.3}: {}", serde_json::to_string(&best)?);
    }
    Ok(())
}
