//! `ea-bench`: the benchmarks of `docs/benchmarks.md` (see `scripts/bench`).

use std::process::ExitCode;

use bench::suite::SuiteOptions;
use clap::{Parser, Subcommand};
use endpoint_analytics::config::Settings;
use endpoint_analytics::db::Db;

#[derive(Parser)]
#[command(name = "ea-bench", about = "Benchmarks that print figures (use a release build)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time a full re-model of generated endpoints in a fresh database.
    Remodel {
        #[arg(long, default_value_t = 100_000)]
        endpoints: usize,
        /// The database to fill (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Time a full Defender sync (and an unchanged re-sync) of a simulated tenant.
    Sync {
        #[arg(long, default_value_t = 100_000)]
        machines: usize,
        /// The database to fill (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
        /// Port for the simulator process (default: a free one).
        #[arg(long)]
        simulator_port: Option<u16>,
        /// Only the full import (no unchanged re-sync).
        #[arg(long)]
        full_only: bool,
        /// Deliver the events to a webhook (a loopback receiver in this process) while the sync
        /// runs, and report how long until every event is delivered.
        #[arg(long)]
        with_webhook: bool,
    },
    /// Every performance figure beside its baseline, measured in one run; prints one table.
    /// Exits non-zero on errors (failed sync, 429s, page errors), never on timings.
    All {
        /// The small, fast CI variant: 5,000 machines, 2-second load runs.
        #[arg(long)]
        smoke: bool,
        /// Defender machines (and network endpoints); default 100,000 (5,000 with --smoke).
        #[arg(long)]
        machines: Option<usize>,
        /// Seconds of each wrk run (default 8; 2 with --smoke).
        #[arg(long)]
        load_secs: Option<u64>,
        /// Extra full imports, each in a fresh process, for the memory figure, e.g. 50000,200000.
        #[arg(long, value_delimiter = ',')]
        memory_series: Vec<usize>,
        /// Keep the product's database (and its master key) afterwards and print its folder, to
        /// look into a figure with `serve` or `sqlite3` on the same data.
        #[arg(long)]
        keep_data: bool,
        /// Run on a fresh database created on this PostgreSQL server (and dropped afterwards
        /// unless --keep-data) instead of SQLite, e.g. postgres://postgres@127.0.0.1:5432/postgres.
        #[arg(long, value_name = "SERVER_URL")]
        postgres: Option<String>,
        /// Endpoints in the database of the start-up figure (default 1,000,000; 5,000 with --smoke).
        #[arg(long)]
        startup_endpoints: Option<usize>,
        /// Neither the simulator nor the product's client keeps Defender's documented rate
        /// limits: a million machines' fetch without the hour it takes at those limits, for the
        /// page-during-import figure at that size (the API-call rows' 429 counts then mean nothing).
        #[arg(long)]
        no_rate_limits: bool,
    },
    /// The size of the risk history: endpoints recorded daily while some change level each day.
    History {
        #[arg(long, default_value_t = 100_000)]
        endpoints: usize,
        #[arg(long, default_value_t = 365)]
        days: i32,
        /// Share of the endpoints whose level changes each day.
        #[arg(long, default_value_t = 1.0)]
        percent: f64,
        /// The database to fill (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The whole-inventory passes (risk history snapshot, coverage refresh) on N endpoints: time
    /// and memory of each.
    Passes {
        #[arg(long, default_value_t = 1_000_000)]
        endpoints: usize,
        /// The database to fill, or to use as it is when it holds N endpoints already (default: a
        /// new SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Start-up to the first served page with N endpoints in the database, beside an empty one.
    Startup {
        #[arg(long, default_value_t = 1_000_000)]
        endpoints: usize,
        /// Run on fresh databases created on this PostgreSQL server instead of SQLite files.
        #[arg(long, value_name = "SERVER_URL")]
        postgres: Option<String>,
    },
    /// The Defender simulator, as the benchmarks start it in a process of its own.
    #[command(hide = true)]
    Simulate(Box<defender_sim::SimulateArgs>),
    /// The product, as `startup` starts it in a process of its own (settings from the
    /// environment, as `endpoint-analytics serve` reads them).
    #[command(hide = true)]
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _logs = endpoint_analytics::logging::init(&settings);
    let result = match cli.command {
        Command::Simulate(args) => block_on(defender_sim::run(*args)),
        Command::Serve => block_on(async {
            let app = endpoint_analytics::app::Application::build(settings).await?;
            app.run_until_stopped().await
        }),
        Command::Startup { endpoints, postgres } => block_on(bench::startup::run(endpoints, postgres.as_deref())),
        Command::History { endpoints, days, percent, database_url } => {
            with_bench_db(database_url, |db| block_on(bench::history(db, endpoints, days, percent)))
        }
        Command::Passes { endpoints, database_url } => {
            with_bench_db(database_url, |db| block_on(bench::passes(db, endpoints)))
        }
        Command::Remodel { endpoints, database_url } => {
            with_bench_db(database_url, |db| block_on(bench::remodel(db, endpoints)).map(|_| ()))
        }
        Command::Sync { machines, database_url, simulator_port, full_only, with_webhook } => {
            with_bench_db(database_url, |db| {
                block_on(bench::sync(db, machines, simulator_port, full_only, with_webhook))
            })
        }
        Command::All {
            smoke,
            machines,
            load_secs,
            memory_series,
            keep_data,
            postgres,
            startup_endpoints,
            no_rate_limits,
        } => {
            let mut opts = if smoke { SuiteOptions::smoke() } else { SuiteOptions::full() };
            opts.machines = machines.unwrap_or(opts.machines);
            opts.load_secs = load_secs.unwrap_or(opts.load_secs);
            opts.memory_series = memory_series;
            opts.keep_data = keep_data;
            opts.postgres = postgres;
            opts.startup_endpoints = startup_endpoints.unwrap_or(opts.startup_endpoints);
            opts.rate_limits = !no_rate_limits;
            match block_on(bench::suite::run(opts)) {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!("the benchmark saw errors (listed above)")),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    actix_web::rt::System::new().block_on(fut)
}

/// Runs a benchmark on the given database, or on a fresh SQLite file that is removed afterwards.
fn with_bench_db(database_url: Option<String>, f: impl FnOnce(&Db) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ea-bench-{}", std::process::id()));
    let url = database_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
    let db = Db::connect(&url, 4)?;
    db.migrate()?;
    println!("database: {}", endpoint_analytics::db::redact_url(&url));
    let result = f(&db);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
