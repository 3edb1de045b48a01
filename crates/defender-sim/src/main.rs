//! `defender-sim`: the simulated Microsoft Entra ID and Defender for Endpoint API, until Ctrl-C.

use clap::Parser;

#[derive(Parser)]
#[command(name = "defender-sim", version, about = "A simulated Microsoft Entra ID and Defender for Endpoint API")]
struct Cli {
    #[command(flatten)]
    args: defender_sim::SimulateArgs,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse().args;
    match actix_web::rt::System::new().block_on(defender_sim::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
