//! The `endpoint-analytics` command: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    endpoint_analytics::cli::main()
}
