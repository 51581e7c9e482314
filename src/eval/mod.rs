//! `secondpass eval`: judges Qdrant's order and reranked orders against qrels, on the
//! team's own queries, through the proxy's own planning and rerank code.
//!
//! Pure parts (metrics, statistics, report building) are unit tested apart from the
//! I/O in [`run`].

pub mod html;
pub mod input;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod run;
pub mod stats;

use std::path::PathBuf;

use crate::config::Config;
use report::System;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TOML configuration file (the proxy's): upstream, rerankers, collection settings.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The Qdrant collection to search.
    #[arg(long)]
    pub collection: String,
    /// Queries, JSONL: {"id": ..., "text": "...", "search": {Query API body}}.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Judgements in TREC format: `qid 0 docid grade` (ids: integers or UUIDs).
    #[arg(long)]
    pub qrels: PathBuf,
    /// Pool sizes to rerank, comma separated (default: the collection's `pool`).
    #[arg(long, value_delimiter = ',')]
    pub pools: Vec<usize>,
    /// Rerankers from the configuration, comma separated (default: the collection's).
    #[arg(long, value_delimiter = ',')]
    pub rerankers: Vec<String>,
    /// Cut-off for nDCG, MRR and Recall.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Judge a shadow-mode log (JSONL) instead of running queries; with --queries,
    /// log entries are matched to query ids by their text.
    #[arg(long)]
    pub shadow_log: Option<PathBuf>,
    /// No progress bar on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// A failure with its exit status: 2 for bad input or configuration, 1 otherwise.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

/// Runs `secondpass eval`; prints the report and writes `--report`.
pub fn main(args: Args) -> Result<(), Failure> {
    if args.k == 0 {
        return Err(bad("--k must be at least 1"));
    }
    if args.pools.contains(&0) {
        return Err(bad("--pools: a pool must be at least 1"));
    }
    let qrels = input::load_qrels(&args.qrels).map_err(bad)?;
    let report = match &args.shadow_log {
        Some(log) => shadow_report(&args, log, &qrels)?,
        None => live_report(&args, &qrels)?,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("json serializes")
        );
    } else {
        print!("{}", report::text(&report));
    }
    if let Some(path) = &args.report {
        std::fs::write(path, html::page(&report)).map_err(|e| Failure {
            code: 1,
            message: format!("{}: cannot write the report: {e}", path.display()),
        })?;
    }
    Ok(())
}

fn live_report(args: &Args, qrels: &input::Qrels) -> Result<report::Report, Failure> {
    let cfg = Config::load(args.config.as_deref()).map_err(|e| bad(e.to_string()))?;
    let queries_path = args
        .queries
        .as_ref()
        .ok_or_else(|| bad("--queries is required (or --shadow-log)"))?;
    let queries = input::load_queries(queries_path).map_err(bad)?;
    let settings = cfg.collection(&args.collection);
    let pools = if args.pools.is_empty() {
        vec![settings.pool]
    } else {
        args.pools.clone()
    };
    let rerankers = if args.rerankers.is_empty() {
        vec![settings.chain()[0].to_string()]
    } else {
        args.rerankers.clone()
    };
    for r in &rerankers {
        if !cfg.rerankers.contains_key(r) {
            let known: Vec<&String> = cfg.rerankers.keys().collect();
            return Err(bad(format!(
                "--rerankers: no reranker `{r}` in the configuration (known: {known:?})"
            )));
        }
    }
    let mut check = run::check_queries(&queries, qrels);
    let opts = run::Options {
        collection: args.collection.clone(),
        pools,
        rerankers,
        k: args.k,
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| Failure {
        code: 1,
        message: format!("cannot start the runtime: {e}"),
    })?;
    let out = rt.block_on(async {
        let state = crate::AppState::load(cfg)
            .await
            .map_err(|e| format!("cannot load the rerankers: {e}"))?;
        run::check_points(&state, &args.collection, qrels, &mut check).await?;
        let mut progress = progress::Progress::new(!args.quiet);
        run::run(&state, &opts, &queries, qrels, &mut progress).await
    });
    let out = out.map_err(|message| Failure { code: 1, message })?;
    let mut systems = vec![System {
        name: "qdrant".into(),
        reranker: None,
        pool: None,
        rankings: out.qdrant,
        latencies: Vec::new(),
        not_reranked: 0,
    }];
    for c in out.configs {
        systems.push(System {
            name: format!("{}@{}", c.reranker, c.pool),
            reranker: Some(c.reranker),
            pool: Some(c.pool),
            rankings: c.rankings,
            latencies: c.latencies,
            not_reranked: c.not_reranked.len(),
        });
    }
    Ok(report::build(
        &args.collection,
        args.k,
        &out.queries,
        qrels,
        &systems,
        check,
    ))
}

/// Judges a shadow log: Qdrant's page against the page reranking would have served.
fn shadow_report(
    args: &Args,
    log: &std::path::Path,
    qrels: &input::Qrels,
) -> Result<report::Report, Failure> {
    let entries = input::load_shadow_log(log).map_err(bad)?;
    let by_text = match &args.queries {
        Some(p) => Some(input::ids_by_text(&input::load_queries(p).map_err(bad)?)),
        None => None,
    };
    let mut check = run::InputCheck {
        queries_in_file: entries.len(),
        ..Default::default()
    };
    let (mut ids, mut qdrant, mut shadow, mut lat) = (vec![], vec![], vec![], vec![]);
    for e in entries {
        let id = match &by_text {
            Some(m) => m.get(e.query.trim()).cloned(),
            None => Some(e.query.clone()),
        };
        match id.filter(|id| qrels.contains_key(id)) {
            Some(id) => {
                ids.push(id);
                qdrant.push(e.qdrant);
                shadow.push(e.reranked);
                lat.extend(e.rerank_ms.map(|ms| ms / 1e3));
            }
            None => check.queries_without_qrels += 1,
        }
    }
    let systems = [
        System {
            name: "qdrant".into(),
            reranker: None,
            pool: None,
            rankings: qdrant,
            latencies: Vec::new(),
            not_reranked: 0,
        },
        System {
            name: "shadow".into(),
            reranker: None,
            pool: None,
            rankings: shadow,
            latencies: lat,
            not_reranked: 0,
        },
    ];
    Ok(report::build(
        &args.collection,
        args.k,
        &ids,
        qrels,
        &systems,
        check,
    ))
}
