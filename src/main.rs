//! CLI → config → server. `anyhow`-style context lives only here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use keyway::auth::{keys, Role};
use keyway::reload::Overrides;
use keyway::{app, config, env::Env};

// The allocator (Cargo.toml, README: Performance): jemalloc by default, mimalloc when asked for,
// glibc's with neither feature.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (its `malloc_conf`, read before `main`; `_RJEM_MALLOC_CONF` in the
/// environment still overrides each). Pingora allocates a 64 KiB upstream body buffer per
/// request: with jemalloc's defaults that is above what a thread caches (32 KiB), so it goes to
/// the arena every time, and every 64 KiB allocated starts a cache collection that hands
/// small-object slabs back and takes them again. Caching up to 128 KiB and collecting every
/// 4 MiB measured 1.05x requests per CPU-second on JSON, same RSS (README, Performance).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8; 47] = b"tcache_max:131072,tcache_gc_incr_bytes:4194304\0";

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
    /// Admin API listen address [default: 127.0.0.1:8788, or the config's `[admin] listen`]
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// TOML config file (see conf/ for examples); without one keyway runs as an open gateway
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Proxy worker threads [default: number of CPUs, or the config's `threads`]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Validate the configuration, print a summary and exit (non-zero on error)
    #[arg(long)]
    check_config: bool,
    /// Take the listening sockets over from the running keyway, which hands them over when it
    /// gets SIGQUIT (zero-downtime upgrade; both use `[listener] upgrade_socket`)
    #[arg(short, long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage gateway API keys
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new gateway API key: prints the key once and the [[api_keys]] block to paste
    New {
        /// Workspace slug (a [workspaces.<slug>] of the config); without it, an organisation
        /// key: it manages every workspace over the admin API and carries no traffic
        #[arg(long, value_parser = parse_slug)]
        workspace: Option<String>,
        /// owner, admin or member
        #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Role>()))]
        role: Role,
        /// Name shown in logs [default: <workspace>-<role>-<unix time>]
        #[arg(long)]
        name: Option<String>,
    },
}

fn parse_slug(s: &str) -> Result<String, String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    match !s.is_empty() && s.bytes().all(ok) {
        true => Ok(s.to_owned()),
        false => Err(format!("workspace '{s}' must match ^[a-zA-Z0-9_-]+$")),
    }
}

/// `keyway keys new`: the key goes to stdout once; keyway itself keeps only the hash.
fn keys_new(workspace: Option<&str>, role: Role, name: Option<String>) -> ExitCode {
    let name = name.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let scope = workspace.unwrap_or("organisation");
        format!("{scope}-{role}-{}", now.map_or(0, |d| d.as_secs()))
    });
    if name.trim().is_empty() {
        eprintln!("keyway: --name must be non-empty");
        return ExitCode::from(2);
    }
    let (key, hash) = keys::new_key();
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    println!("New gateway API key (shown only now; keyway stores only its hash):\n\n    {key}\n");
    println!("Add to the config file:\n");
    println!(
        "[[api_keys]]\nname = {}\nhash = {}",
        quote(&name),
        quote(&hash)
    );
    if let Some(w) = workspace {
        println!("workspace = {}", quote(w));
    }
    println!("role = {}", quote(role.as_str()));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keys(KeysCommand::New {
        workspace,
        role,
        name,
    })) = cli.command
    {
        return keys_new(workspace.as_deref(), role, name);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let env = Env::from_process();
    let overrides = Overrides {
        listen: cli.listen,
        metrics_listen: cli.metrics_listen,
        threads: cli.threads,
        admin_listen: cli.admin_listen,
    };
    let loaded = config::parse(cli.config.as_deref()).and_then(|(file, text)| {
        let (mut c, _) = config::validate_merged(&file, Default::default(), &env)?;
        overrides.apply(&mut c)?;
        Ok((c, file, text))
    });
    let (cfg, file, text) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("keyway: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!(
            "keyway: config OK: listen {}, metrics {}, {} thread(s), {} provider override(s), {} credential(s), {} route(s), auth {}, {} gateway key(s), {} JWT validator(s), {} secret reference(s)",
            cfg.listen,
            cfg.metrics_listen,
            cfg.threads,
            cfg.providers.len(),
            cfg.credentials.len(),
            cfg.routes.len(),
            cfg.auth.mode.as_str(),
            cfg.auth.keys.len(),
            cfg.jwt.len(),
            cfg.secrets.references.len()
        );
        // One JSON line per secret reference, sensitive auth_config fields masked (seed 003).
        for r in &cfg.secrets.references {
            println!("secret_reference {}", r.shown);
        }
        return ExitCode::SUCCESS;
    }
    for r in &cfg.secrets.references {
        log::info!("secret reference {}", r.shown);
    }
    let (listen, metrics_listen, threads) =
        (cfg.listen.clone(), cfg.metrics_listen.clone(), cfg.threads);
    if let Some(t) = &cfg.tls {
        log::info!("keyway TLS listener on {} (ALPN h2: {})", t.listen, t.http2);
    }
    let server = match app::build(app::Launch {
        config: cfg,
        file,
        text,
        path: cli.config,
        env,
        overrides,
        upgrade: cli.upgrade,
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keyway: {e}");
            return ExitCode::from(2);
        }
    };
    log::info!("keyway listening on {listen} (metrics on {metrics_listen}), {threads} thread(s)");
    server.run_forever()
}
