//! `aia-chat eval FILE.json`: loads a benchmark file (the `shared/data/README.md` format)
//! into a throwaway knowledge base, ranks every query and prints the retrieval figures at the
//! shipped "don't know" threshold. With an embedding model (in-process or an endpoint), the
//! hybrid ranking's figures, with the same keys.

use std::path::PathBuf;

use anyhow::Context;

use crate::assistant::Confidence;
use crate::knowledge::KnowledgeIndex;
use crate::knowledge::dataset::Dataset;
use crate::knowledge::eval::{Judged, Report, report, with_typo};
use crate::semantic::hybrid::Fusion;
use crate::semantic::{Embedder, LocalModel, endpoint::EmbeddingEndpoint, index_entries};
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
    /// Rank hybrid, with this local sentence-embedding model directory (BERT family, as
    /// sentence-transformers saves it).
    #[arg(long, value_name = "DIR", conflicts_with = "embedding_url")]
    embedding_model: Option<PathBuf>,
    /// Rank hybrid, with embeddings from this OpenAI-compatible endpoint (base URL or full
    /// `/embeddings` URL); its token, if any, from `AIA_EMBEDDING_TOKEN`.
    #[arg(long, value_name = "URL")]
    embedding_url: Option<String>,
    /// The endpoint's model name.
    #[arg(long, value_name = "NAME", default_value = "text-embedding-3-small", requires = "embedding_url")]
    embedding_model_name: String,
}

impl EvalArgs {
    /// The embedder the arguments ask for, if any.
    fn embedder(&self) -> anyhow::Result<Option<Box<dyn Embedder>>> {
        if let Some(dir) = &self.embedding_model {
            return Ok(Some(Box::new(LocalModel::load(dir)?)));
        }
        let Some(url) = &self.embedding_url else { return Ok(None) };
        let token = std::env::var("AIA_EMBEDDING_TOKEN").unwrap_or_default();
        let http =
            crate::outbound::client(crate::clients::UpstreamPolicy::default(), std::time::Duration::from_secs(60));
        Ok(Some(Box::new(EmbeddingEndpoint::new(http, url, &token, &self.embedding_model_name)?)))
    }
}

/// Judges every query of a dataset against an index built from its FAQs: full-text alone, or
/// hybrid when an embedder is given.
pub async fn judge(
    dataset: &Dataset,
    language: &str,
    embedder: Option<&dyn Embedder>,
) -> anyhow::Result<Vec<(Option<usize>, Judged)>> {
    let index = KnowledgeIndex::build(dataset.entries(), language)?;
    let position: std::collections::HashMap<&str, usize> =
        dataset.faqs.iter().enumerate().map(|(i, f)| (f.id.as_str(), i)).collect();
    let golds = dataset
        .queries
        .iter()
        .map(|q| match &q.faq_id {
            Some(id) => {
                Ok(Some(*position.get(id.as_str()).with_context(|| format!("query names unknown FAQ '{id}'"))?))
            }
            None => Ok(None),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(embedder) = embedder else {
        return Ok(golds
            .into_iter()
            .zip(&dataset.queries)
            .map(|(gold, q)| {
                let (scores, confidence) = index.score_all(&q.text);
                (gold, Judged { scores, confidence })
            })
            .collect());
    };
    let vectors = index_entries(index.entries(), embedder).await.context("embedding the FAQ")?;
    let texts: Vec<String> = dataset.queries.iter().map(|q| q.text.clone()).collect();
    let queries = embedder.embed(&texts).await.context("embedding the queries")?;
    let fusion = Fusion::SHIPPED;
    Ok(golds
        .into_iter()
        .zip(dataset.queries.iter().zip(queries))
        .map(|(gold, (q, v))| {
            let text = index.scored(&q.text, None);
            let (scores, confidence) = match vectors.similarities(&v) {
                Some(sims) => fusion.judge(&text, &sims),
                None => index.score_all(&q.text),
            };
            (gold, Judged { scores, confidence })
        })
        .collect())
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
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut dataset = Dataset::parse(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    if let Some(seed) = args.typos {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for q in &mut dataset.queries {
            q.text = with_typo(&q.text, &mut rng);
        }
    }
    let embedder = args.embedder()?;
    let judged = judge(&dataset, &args.language, embedder.as_deref()).await?;
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
