//! What the Debian package (and the container, which installs it) puts beside the binary,
//! generated from what it describes so that it cannot drift: the man pages and the bash, zsh
//! and fish completions from the command line's definition (`src/cli.rs`), and the packaged
//! `/etc/endpoint-analytics/config.toml` from `config.example.toml`. `scripts/package` writes
//! them with `endpoint-analytics package-files DIR` (not in the man page or the completions); `docs/deployment.md` describes the package.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_mangen::roff::{Roff, roman};

use crate::config;

/// Where the package keeps the database and the master key (the service's state directory).
pub const DATA_DIR: &str = "/var/lib/endpoint-analytics";
/// The packaged configuration file: a conffile, which upgrades keep as the administrator left it.
pub const CONFIG_FILE: &str = "/etc/endpoint-analytics/config.toml";

/// The shells whose completions the package installs, each with the file name its completion
/// loader looks for and where it looks (relative to the package's root).
const SHELLS: &[(clap_complete::Shell, &str)] = &[
    (clap_complete::Shell::Bash, "usr/share/bash-completion/completions/endpoint-analytics"),
    (clap_complete::Shell::Zsh, "usr/share/zsh/vendor-completions/_endpoint-analytics"),
    (clap_complete::Shell::Fish, "usr/share/fish/vendor_completions.d/endpoint-analytics.fish"),
];

/// Writes everything into `out`, laid out as under the package's root (`usr/share/man/man1/…`,
/// `usr/share/bash-completion/…`, `etc/endpoint-analytics/config.toml`); returns the files written.
pub fn write_all(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |rel: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file under out"))?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for (name, page) in man_pages() {
        write(&format!("usr/share/man/man1/{name}"), &page)?;
    }
    for (shell, path) in SHELLS {
        write(path, &completion(*shell))?;
    }
    write(CONFIG_FILE.trim_start_matches('/'), packaged_config().as_bytes())?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(written)
}

/// The man pages: `endpoint-analytics.1`, with the files and environment variables the product
/// reads, and one page per subcommand (`endpoint-analytics-user-add.1`), named as clap_mangen
/// names them.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    // Building gives each subcommand its display name (`endpoint-analytics-user-add`).
    cmd.build();
    fn subcommand_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            subcommand_pages(sub, pages);
            let man = clap_mangen::Man::new(sub.clone());
            let mut page = Vec::new();
            man.render(&mut page).expect("writing to memory");
            pages.push((man.get_filename(), page));
        }
    }
    let mut pages = Vec::new();
    subcommand_pages(&cmd, &mut pages);
    pages.push(("endpoint-analytics.1".into(), main_man_page(cmd)));
    pages.sort();
    pages
}

fn main_man_page(cmd: clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd);
    // What clap_mangen cannot know: where the package puts things, and the variables.
    let mut roff = Roff::default();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            CONFIG_FILE.to_owned(),
            "the settings, read with --config (installed by the package; every setting explained)",
        ),
        (
            format!("{DATA_DIR}/"),
            "the SQLite database (ea.db) and the master key (master.key), readable by the service user only",
        ),
    ] {
        roff.control("TP", []).text([roman(path)]).text([roman(what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Each variable sets the setting of the same meaning in the configuration file, and wins over it. \
         EA_CONFIG names the configuration file when --config is not given; RUST_LOG sets the log level.",
    )]);
    for (var, setting) in config::variables() {
        roff.control("TP", []).text([roman(*var)]).text([roman(format!("the setting {setting}"))]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl(1), journalctl(1); /usr/share/doc/endpoint-analytics/ (the README and the deployment guide)",
    )]);

    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
        man.render_subcommands_section(out)?;
        roff.to_writer(out)?;
        man.render_version_section(out)
    };
    render(&mut out).expect("writing to memory");
    out
}

/// The completion script of one shell.
pub fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "endpoint-analytics", &mut out);
    out
}

/// The settings file the package installs: `config.example.toml` with every setting commented
/// out (so each keeps its default, and an upgrade that changes a default reaches it), except the
/// two that put the database and the master key in the service's state directory.
pub fn packaged_config() -> String {
    let mut text = format!(
        "# {CONFIG_FILE}: the settings of the endpoint-analytics service.\n\
         #\n\
         # The package installed this file and keeps your changes on upgrades. A commented setting\n\
         # has its default. After a change: systemctl restart endpoint-analytics.\n\
         # The database and the master key live in {DATA_DIR}, readable by the\n\
         # endpoint-analytics user only: run commands as that user, for example\n\
         #   sudo -u endpoint-analytics endpoint-analytics --config {CONFIG_FILE} user add admin --role admin\n\
         # Nothing listens beyond this machine until you change `bind` (put a TLS proxy in front).\n"
    );
    // The example's own header says how to use the example; its settings follow the first blank line.
    let example = include_str!("../config.example.toml");
    let body = example.split_once("\n\n").map_or(example, |(_, body)| body);
    for line in body.lines() {
        text.push('\n');
        match line.split_once(" = ").map(|(key, _)| key) {
            Some("database_url") => text.push_str(&format!("database_url = \"sqlite://{DATA_DIR}/ea.db\"")),
            Some("data_dir") => text.push_str(&format!("data_dir = \"{DATA_DIR}\"")),
            Some(key) if !key.starts_with('#') => text.push_str(&format!("# {line}")),
            _ => text.push_str(line),
        }
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_packaged_config_keeps_data_in_the_state_directory_and_every_other_default() {
        let text = packaged_config();
        let settings: Settings = toml::from_str(&text).expect("the packaged config is valid TOML");
        assert_eq!(settings.database_url, "sqlite:///var/lib/endpoint-analytics/ea.db");
        assert_eq!(settings.data_dir, Path::new(DATA_DIR));
        let defaults = Settings::default();
        // Nothing listens beyond the machine until the administrator says so.
        assert_eq!(settings.bind, "127.0.0.1:8080");
        assert_eq!(
            serde_json::to_value(Settings {
                database_url: defaults.database_url.clone(),
                data_dir: defaults.data_dir.clone(),
                ..settings
            })
            .unwrap(),
            serde_json::to_value(defaults).unwrap(),
            "every other setting keeps its default"
        );
        assert_eq!(config::settings_not_shown(&text), Vec::<String>::new(), "the file explains every setting");
        assert!(text.contains("user add admin --role admin"), "it says how to create the first administrator");
    }

    #[test]
    fn man_pages_describe_every_visible_command_and_the_files() {
        let pages = man_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "endpoint-analytics.1",
            "endpoint-analytics-serve.1",
            "endpoint-analytics-migrate.1",
            "endpoint-analytics-user-add.1",
            "endpoint-analytics-token-create.1",
            "endpoint-analytics-demo.1",
        ] {
            assert!(names.contains(&expected), "no {expected} among {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("package-files")), "the packaging command has no page: {names:?}");
        // roff writes a hyphen as `\-`.
        let page = |name: &str| {
            let (_, bytes) = pages.iter().find(|(n, _)| n == name).unwrap();
            String::from_utf8(bytes.clone()).unwrap().replace("\\-", "-")
        };
        let main = page("endpoint-analytics.1");
        for needle in [
            ".TH endpoint-analytics 1",
            ".SH SYNOPSIS",
            "--config",
            "user",
            CONFIG_FILE,
            "EA_MASTER_KEY",
            "DATABASE_URL",
            env!("CARGO_PKG_VERSION"),
        ] {
            assert!(main.contains(needle), "the main page lacks {needle:?}:\n{main}");
        }
        assert!(!main.contains("package-files"), "the main page lists the packaging command");
        assert!(page("endpoint-analytics-user-add.1").contains("--password-stdin"));
    }

    #[test]
    fn completions_know_the_subcommands_and_options() {
        for (shell, _) in SHELLS {
            let script = String::from_utf8(completion(*shell)).unwrap();
            // How each shell's script names a long option.
            let option = |name: &str| match shell {
                clap_complete::Shell::Fish => format!("-l {name}"),
                _ => format!("--{name}"),
            };
            for needle in ["endpoint-analytics", "serve", "migrate", "user", "token"]
                .map(String::from)
                .into_iter()
                .chain([option("config"), option("password-stdin"), option("role")])
            {
                assert!(script.contains(&needle), "{shell} completion lacks {needle}");
            }
            assert!(!script.contains("package-files"), "{shell} completion offers the packaging command");
        }
    }

    #[test]
    fn write_all_lays_the_files_out_as_in_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        for rel in [
            "usr/share/man/man1/endpoint-analytics.1",
            "usr/share/bash-completion/completions/endpoint-analytics",
            "usr/share/zsh/vendor-completions/_endpoint-analytics",
            "usr/share/fish/vendor_completions.d/endpoint-analytics.fish",
            "etc/endpoint-analytics/config.toml",
        ] {
            assert!(written.contains(&dir.path().join(rel)), "{rel} not written");
            assert!(std::fs::metadata(dir.path().join(rel)).unwrap().len() > 0, "{rel} is empty");
        }
    }
}
