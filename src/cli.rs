//! The command line: `serve`, `migrate`, `user add`, `token create` and `demo`. Each subcommand
//! is a few lines over the library. The man page and the shell completions are generated from
//! this definition ([`command`], `src/packaging.rs`), so they always describe these commands.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use crate::accounts::{self, AccountError};
use crate::app::Application;
use crate::auth::{Role, hash_api_token, new_api_token};
use crate::config::Settings;
use crate::db::Db;
use crate::db::models::{api_tokens, audit};

#[derive(Parser)]
#[command(
    name = "endpoint-analytics",
    version,
    about = "Every endpoint on your network: what it is, how risky it is, and what to do about it."
)]
struct Cli {
    /// A TOML settings file (environment variables override it). Also EA_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web application.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage local user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens for automation.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run the product beside the Defender simulator (the `defender-sim` binary of this
    /// workspace, built first when run by cargo): a generated tenant, the integration configured
    /// and enabled, network observations that merge with some machines, sign-in with Microsoft,
    /// and an admin with a random password (printed).
    Demo {
        /// Machines in the simulated tenant.
        #[arg(long, default_value_t = 500)]
        machines: usize,
        /// Where the simulator listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        simulator_bind: String,
    },
}

/// `endpoint-analytics package-files DIR`: writes the man pages, the completions and the
/// packaged settings file for `scripts/package`. Not a subcommand of [`Cli`]: clap_complete
/// offers hidden subcommands too, and this is no command for an administrator.
#[derive(Parser)]
#[command(name = "endpoint-analytics package-files")]
struct PackageFiles {
    out_dir: PathBuf,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from standard input (--password-stdin) or prompted for.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Days until the token expires (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "the role is admin, operator or analyst".to_owned())
}

/// The command line's definition, which the man page and the completions are made from.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    // Packaging reads no settings: a stray EA_CONFIG on the build machine must not matter.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|first| first == "package-files") {
        let PackageFiles { out_dir } = PackageFiles::parse_from(std::env::args_os().skip(1));
        return finish(crate::packaging::write_all(&out_dir).map(drop));
    }
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _logs = crate::logging::init(&settings);
    if let Err(e) = refuse_root_in_the_service_folder(&settings) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve => run_async(serve(settings)),
        Command::Demo { machines, simulator_bind } => run_async(crate::demo::run(settings, machines, simulator_bind)),
        Command::Migrate => migrate(&settings),
        Command::User { command: UserCommand::Add { name, role, password_stdin } } => {
            add_user(&settings, &name, role, password_stdin)
        }
        Command::Token { command: TokenCommand::Create { name, role, expires_days } } => {
            create_token(&settings, &name, role, expires_days)
        }
    };
    finish(result)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Root must not open the database or the master key in a folder that belongs to another user
/// (the package's service user): a database, journal or key file it made would be root's, and
/// the service could no longer open it. The administrator runs the command as that user instead.
fn refuse_root_in_the_service_folder(settings: &Settings) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let mut folders = vec![settings.data_dir.clone()];
    if let Ok(crate::db::DatabaseTarget::Sqlite { path }) = crate::db::DatabaseTarget::parse(&settings.database_url)
        && let Some(parent) = path.parent()
    {
        folders.push(parent.to_path_buf());
    }
    match foreign_owner(0, &folders) {
        None => Ok(()),
        Some((folder, uid)) => {
            let owner = user_name(uid).unwrap_or_else(|| uid.to_string());
            anyhow::bail!(
                "{} belongs to the user {owner}: run this command as that user (sudo -u {owner} endpoint-analytics                  ..., or runuser -u {owner} -- endpoint-analytics ...); files root made there would lock the                  service out",
                folder.display()
            )
        }
    }
}

/// The first of these folders that exists and belongs to someone other than `euid`, with its owner.
fn foreign_owner(euid: u32, folders: &[PathBuf]) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    folders.iter().find_map(|f| std::fs::metadata(f).ok().filter(|m| m.uid() != euid).map(|m| (f.clone(), m.uid())))
}

/// The name of a user id, from /etc/passwd (for the message only).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn run_async<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    actix_web::rt::System::new().block_on(fut)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(address = %app.addr(), backend = app.db().target().backend_name(), "Endpoint Analytics is listening");
    println!("Endpoint Analytics is listening on http://{}", app.addr());
    app.run_until_stopped().await
}

fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.database_url, 2)?;
    db.migrate()?;
    Ok(db)
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database_url, 1)?;
    let applied = db.migrate()?;
    println!("{applied} migration(s) applied to the {} database; it is up to date.", db.target().backend_name());
    Ok(())
}

fn read_password(password_stdin: bool) -> anyhow::Result<String> {
    if password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Password (again): ")?;
    anyhow::ensure!(first == again, "the two passwords differ");
    Ok(first)
}

fn add_user(settings: &Settings, name: &str, role: Role, password_stdin: bool) -> anyhow::Result<()> {
    let password = read_password(password_stdin)?;
    let db = open_db(settings)?;
    let mut conn = db.conn()?;
    match accounts::create_user(&mut conn, name, &password, role) {
        Ok(()) => {
            audit::entry("cli", "user.create")
                .target(name)
                .outcome("success")
                .details(role.as_str())
                .record(&mut conn)?;
            println!("User {name} created with the {} role.", role.label());
            Ok(())
        }
        Err(AccountError::Invalid(why)) => anyhow::bail!("{why}"),
        Err(AccountError::Internal(e)) => Err(e),
    }
}

fn create_token(settings: &Settings, name: &str, role: Role, expires_days: Option<u32>) -> anyhow::Result<()> {
    crate::web::pages::tokens::check_token_name(name.trim()).map_err(|e| anyhow::anyhow!(e))?;
    let db = open_db(settings)?;
    let mut conn = db.conn()?;
    let token = new_api_token();
    let expires_at = expires_days.map(|d| crate::db::now() + i64::from(d) * 86_400);
    api_tokens::create(
        &mut conn,
        name.trim(),
        &hash_api_token(&token),
        role,
        api_tokens::Creator::CommandLine,
        expires_at,
    )?;
    audit::entry("cli", "token.create").target(name).outcome("success").details(role.as_str()).record(&mut conn)?;
    eprintln!("API token {name:?} created with the {} role. It is shown only this once:", role.label());
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_only_in_a_folder_of_another_user() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().to_path_buf();
        let mine = rustix::process::geteuid().as_raw();
        // The folder is the test's own; seen from another user id (`mine + 1`) it is someone else's.
        assert_eq!(foreign_owner(mine, std::slice::from_ref(&own)), None);
        assert_eq!(foreign_owner(mine + 1, std::slice::from_ref(&own)), Some((own.clone(), mine)));
        // A folder not made yet is nobody's: the first to start makes it.
        assert_eq!(foreign_owner(mine + 1, &[own.join("missing")]), None);
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn version_is_the_crate_version() {
        for flag in ["--version", "-V"] {
            let err = match command().try_get_matches_from(["endpoint-analytics", flag]) {
                Err(e) => e,
                Ok(_) => panic!("{flag} parsed as a command"),
            };
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
            assert_eq!(err.to_string(), format!("endpoint-analytics {}\n", env!("CARGO_PKG_VERSION")));
        }
    }
}
