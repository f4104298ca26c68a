//! `ferrozk`: the server, and (as they land) the shell, the benchmark and the file tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod tools;
use ferrozk_server::{Server, ServerBuilder, ServerConfig};

#[derive(Parser)]
#[command(name = "ferrozk", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a server from a ZooKeeper zoo.cfg, or from the embedded default (port 2181, data in
    /// ./ferrozk-data) when no file is given.
    Server {
        /// Path to zoo.cfg.
        config: Option<PathBuf>,
    },
    /// Load-tests a ZooKeeper-protocol server (ferrozk or Apache ZooKeeper).
    Bench(bench::BenchArgs),
    /// Summarises a snapshot file, or dumps its tree (like zkSnapShotToolkit.sh).
    Snapshot {
        file: PathBuf,
        /// Print every node with its Stat and data length.
        #[arg(long)]
        dump: bool,
    },
    /// Prints the transactions of a log segment, one a line (like zkTxnLogToolkit.sh).
    Log { file: PathBuf },
    /// Imports an Apache ZooKeeper data directory (its snapshots and transaction logs) into
    /// ferrozk's data beside it, as `ferrozk server` does at its first start on it. Given a
    /// zoo.cfg, its dataDir and dataLogDir; given a directory, that one. ZooKeeper's files are
    /// only read.
    Import {
        source: PathBuf,
        /// Only read and report: nothing is written.
        #[arg(long)]
        dry_run: bool,
        /// Print every session and znode imported (data, ACL, Stat), one JSON object a line.
        #[arg(long)]
        dump: bool,
    },
    /// Writes ferrozk's data as an Apache ZooKeeper snapshot in DIR/version-2, which ZooKeeper
    /// 3.6-3.9 loads (for a move back): the tree, sessions and ACLs, sealed, with ZooKeeper's
    /// digest; its zxid is ferrozk's last. ferrozk's data is found through the zoo.cfg, as
    /// `ferrozk server` finds it; stop the server first.
    Export {
        /// The ZooKeeper dataDir to write into.
        #[arg(long = "zookeeper", value_name = "DIR")]
        zookeeper: PathBuf,
        config: Option<PathBuf>,
    },
    /// A zkCli.sh-compatible shell: ferrozk cli [-server host:port[/chroot]] [-timeout ms] [command args...]
    #[command(disable_help_flag = true)]
    Cli {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // openraft narrates every election step at info, and warns for each write whose
            // answer channel ferrozk leaves unread (answers go through the state machine).
            tracing_subscriber::EnvFilter::try_from_env("FERROZK_LOG")
                .unwrap_or_else(|_| "info,openraft=warn,openraft::raft::responder=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server { config } => run_server(config),
        Command::Bench(args) => run_bench(args),
        Command::Snapshot { file, dump } => tools::snapshot(&file, dump),
        Command::Log { file } => tools::log(&file),
        Command::Import { source, dry_run, dump } => tools::import(&source, dry_run, dump),
        Command::Export { zookeeper, config } => tools::export_zookeeper(&zookeeper, config.as_deref()),
        Command::Cli { args } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            ExitCode::from(rt.block_on(ferrozk_cli::run(args)).clamp(0, 255) as u8)
        }
    }
}

fn run_server(path: Option<PathBuf>) -> ExitCode {
    let config = match &path {
        Some(p) => ServerConfig::from_file(p),
        None => ServerConfig::parse(ferrozk_server::config::EMBEDDED_DEFAULT, "embedded default"),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrozk: {e}");
            return ExitCode::from(2);
        }
    };
    if !config.unused_keys.is_empty() {
        tracing::warn!("zoo.cfg keys accepted but not used by this version: {}", config.unused_keys.join(", "));
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Half the cores run connections, consensus and the state machine; the rest are left to
    // the log thread, the kernel's network and disk work, and whatever shares the machine.
    // On 2 cores one worker took 20-35% less CPU a request than two, at equal or higher
    // throughput (bench/README.md). TOKIO_WORKER_THREADS still overrides it.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads((cores / 2).max(1));
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrozk: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match ServerBuilder::from_config(config).start().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ferrozk: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        Server::shutdown(server).await;
        ExitCode::SUCCESS
    })
}

fn run_bench(args: bench::BenchArgs) -> ExitCode {
    let json = args.json;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match rt.block_on(bench::run(args)) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrozk bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
