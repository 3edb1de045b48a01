use clap::{Parser, Subcommand};
use endpoint_analytics::simulator;

#[derive(Parser)]
#[command(name = "endpoint-analytics", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a simulated Microsoft Entra ID token endpoint and Defender for Endpoint API.
    Simulate(simulator::SimulateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate(args) => simulator::run(args).await,
    }
}
