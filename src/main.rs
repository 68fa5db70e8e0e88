//! CLI → config → server. `anyhow`-style context lives only here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use keyway::{app, config, env::Env};

/// A high-throughput gateway for LLM APIs (Portkey-compatible), on Pingora.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Proxy listen address [default: 127.0.0.1:8787, or the config's `listen`]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Metrics/health listen address [default: 127.0.0.1:9787, or the config's `metrics_listen`]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// TOML config file (see conf/ for examples); without one keyway runs as an open gateway
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Proxy worker threads [default: number of CPUs, or the config's `threads`]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Validate the configuration, print a summary and exit (non-zero on error)
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let env = Env::from_process();
    let mut cfg = match config::load(cli.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = cli.listen {
        cfg.listen = l;
    }
    if let Some(m) = cli.metrics_listen {
        cfg.metrics_listen = m;
    }
    if let Some(t) = cli.threads {
        cfg.threads = t;
    }
    if let Err(e) = config::check_overrides(&cfg) {
        eprintln!("keyway: {e}");
        return ExitCode::from(2);
    }
    if cli.check_config {
        println!(
            "keyway: config OK: listen {}, metrics {}, {} thread(s), {} provider override(s), {} credential(s), {} route(s)",
            cfg.listen,
            cfg.metrics_listen,
            cfg.threads,
            cfg.providers.len(),
            cfg.credentials.len(),
            cfg.routes.len()
        );
        return ExitCode::SUCCESS;
    }
    let server = match app::build(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keyway: {e}");
            return ExitCode::from(2);
        }
    };
    log::info!(
        "keyway listening on {} (metrics on {}), {} thread(s)",
        cfg.listen,
        cfg.metrics_listen,
        cfg.threads
    );
    server.run_forever()
}
