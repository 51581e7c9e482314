use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secondpass::config::{Config, LogFormat};
use secondpass::{app, AppState, Server};

#[derive(Parser)]
#[command(name = "secondpass", version, about = "A reranking sidecar for Qdrant")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// TOML configuration file; every key can also be set as SECONDPASS__SECTION__KEY.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective settings.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Judge Qdrant's order and reranked orders against relevance judgements (qrels).
    Eval(secondpass::eval::Args),
    /// Load every local reranker on its device and score one batch: prints the
    /// execution provider, device, model, scores and times; exits 1 when one fails.
    Doctor {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// The log output and, with `[tracing] enabled`, the span exporter (built inside the
/// runtime, where its gRPC channel lives).
fn init_logging(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<secondpass::telemetry::Telemetry>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&cfg.log.level))
        .add_directive(secondpass::telemetry::log_directive());
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match cfg.log.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed(),
    };
    let _inside = rt.enter();
    let (spans, telemetry) = secondpass::telemetry::layer(&cfg.tracing)?.unzip();
    tracing_subscriber::registry().with(logs).with(spans).init();
    if telemetry.is_some() {
        tracing::info!(endpoint = %cfg.tracing.endpoint, "exporting traces over OTLP");
    }
    Ok(telemetry)
}

fn main() -> ExitCode {
    // Before any thread starts: the environment is read when ONNX Runtime loads.
    secondpass::rerank::onnx::runtime::keep_telemetry_off();
    let cli = Cli::parse();
    let config = match &cli.command {
        Command::Serve { config }
        | Command::CheckConfig { config }
        | Command::Doctor { config } => config,
        Command::Eval(args) => {
            return match secondpass::eval::main(args.clone()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(f) => {
                    eprintln!("secondpass eval: {}", f.message);
                    ExitCode::from(f.code)
                }
            };
        }
    };
    // Validated before anything is bound or loaded.
    let cfg = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("secondpass: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig { .. } = cli.command {
        println!("configuration is valid");
        for name in cfg.collections.keys() {
            println!("collection {name}: {:?}", cfg.collection(name));
        }
        return ExitCode::SUCCESS;
    }
    if let Command::Doctor { .. } = cli.command {
        return doctor(&cfg);
    }
    // Secrets named by the configuration are read now, before anything is bound.
    if let Some(Err(e)) = cfg.cache.redis.as_ref().map(|r| r.resolve_url()) {
        eprintln!("secondpass: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("secondpass: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Dropped (the last spans sent) before the runtime its channel runs on.
    let telemetry = match init_logging(&cfg, &rt) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("secondpass: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config_path = config.clone();
    let code = rt.block_on(async move {
        let mut state = match AppState::load(cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        state.config_path = config_path;
        if let Err(e) = state.restore_overrides() {
            tracing::error!(error = %e, "cannot restore run-time collection changes");
            return ExitCode::FAILURE;
        }
        let server = match Server::start(state).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind listeners");
                return ExitCode::FAILURE;
            }
        };
        // One machine-readable line for scripts and tests that start us on port 0.
        println!(
            "secondpass listening rest={} grpc={} admin={}",
            server.rest_addr, server.grpc_addr, server.admin_addr
        );
        app::reload_on_sighup(server.state.clone());
        app::shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    if let Some(t) = telemetry {
        t.shutdown();
    }
    code
}

fn doctor(cfg: &Config) -> ExitCode {
    if cfg.rerankers.is_empty() {
        eprintln!("secondpass doctor: no rerankers configured");
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    for check in secondpass::doctor::run(cfg) {
        match check.outcome {
            Ok(line) => println!("reranker {}: {line}", check.reranker),
            Err(e) => {
                failed += 1;
                eprintln!("reranker {}: FAILED: {e}", check.reranker);
            }
        }
    }
    if failed > 0 {
        eprintln!("secondpass doctor: {failed} reranker(s) cannot serve");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
