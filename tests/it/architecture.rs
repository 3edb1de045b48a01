//! The architecture of `docs/architecture.md`, kept true: each rule of that page is a test here,
//! reading the source tree (and the built product binary) rather than trusting a review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The layers of the product (`src/`), lowest first: a module may use its own layer and those
/// below it, never one above (web → services → db → domain).
const LAYERS: &[(&str, &[&str])] = &[
    ("domain", &["domain", "auth"]),
    ("db", &["db"]),
    (
        "services",
        &[
            "defender",
            "sso",
            "inventory",
            "coverage",
            "risk_history",
            "modeling",
            "accounts",
            "jobs",
            "secrets",
            "metrics",
            "background",
            "config",
            "outbound",
            "notify",
            "rules",
        ],
    ),
    ("web", &["web", "error"]),
    ("entry", &["lib", "main", "cli", "app", "demo", "fuzz", "logging", "packaging"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap_or(path).display().to_string()
}

/// The code of a file without its comments (doc comments included): what it does, not what
/// it says.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")).map(|(i, l)| (i + 1, l))
}

/// The top-level module a file of `src/` belongs to: `src/web/pages/login.rs` → `web`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(Path::new(ROOT).join("src")).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn modules_import_only_their_own_layer_and_those_below() {
    let mut violations = Vec::new();
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let module = module_of(&file);
        let Some(own) = layer_of(&module) else {
            violations.push(format!("{}: module {module} has no layer in this test's table", relative(&file)));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            for used in line.split("crate::").skip(1) {
                let target: String = used.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if let Some(theirs) = layer_of(&target)
                    && theirs > own
                {
                    violations.push(format!(
                        "{}:{n}: {module} ({}) uses crate::{target} ({})",
                        relative(&file),
                        LAYERS[own].0,
                        LAYERS[theirs].0
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
}

#[test]
fn sql_lives_only_in_the_database_layer() {
    let db = Path::new(ROOT).join("src/db");
    let mut violations = Vec::new();
    for file in rust_files(&Path::new(ROOT).join("src")).into_iter().filter(|f| !f.starts_with(&db)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            if line.contains("diesel") || line.contains("db::schema") || line.contains("sql_query") {
                violations.push(format!("{}:{n}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "database access outside src/db:\n{}", violations.join("\n"));
}

#[test]
fn the_simulator_knows_nothing_of_the_product_and_the_product_ships_without_it() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("crates/defender-sim/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) {
            assert!(!deps.contains_key("endpoint-analytics"), "the simulator depends on the product ({section})");
        }
    }
    for file in rust_files(&Path::new(ROOT).join("crates/defender-sim/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("endpoint_analytics"), "{} uses the product", relative(&file));
    }
    let product: toml::Table = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap().parse().unwrap();
    let deps = product["dependencies"].as_table().unwrap();
    assert!(!deps.contains_key("defender-sim") && !deps.contains_key("bench"), "the product depends on them");

    // The binary itself: no simulator code, no signing key, no default secret.
    let pem = std::fs::read_to_string(Path::new(ROOT).join("crates/defender-sim/src/oidc-signing-key.pem")).unwrap();
    let key_line = pem.lines().skip_while(|l| !l.starts_with("-----BEGIN")).nth(1).unwrap().to_owned();
    let binary = std::fs::read(env!("CARGO_BIN_EXE_endpoint-analytics")).unwrap();
    let has = |needle: &[u8]| binary.windows(needle.len()).any(|w| w == needle);
    for marker in [
        defender_sim::DEFAULT_CLIENT_SECRET.as_bytes(),
        key_line.as_bytes(),
        b"TEST KEY, PUBLIC ON PURPOSE",
        b"defender_sim",
        b"Defender for Endpoint simulator",
    ] {
        assert!(!has(marker), "the product binary carries {:?}", String::from_utf8_lossy(marker));
    }
}

/// Files longer than this say at their top why they are.
const LONG_FILE: usize = 600;

#[test]
fn long_source_files_say_why_they_are_long() {
    let mut long = Vec::new();
    for dir in ["src", "crates/defender-sim/src", "crates/bench/src", "tests/it", "crates/defender-sim/tests"] {
        for file in rust_files(&Path::new(ROOT).join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let head: String = text.lines().take(12).collect::<Vec<_>>().join("\n");
            if text.lines().count() > LONG_FILE && !head.contains("Long because") {
                long.push(format!("{} ({} lines)", relative(&file), text.lines().count()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {LONG_FILE} lines without a reason (\"Long because ...\") at the top:\n{}",
        long.join("\n")
    );
}

/// Paths of the repository named in module docs, the docs and the README exist, and nothing
/// points outside the repository.
#[test]
fn documentation_points_only_to_files_in_the_repository() {
    let mut texts: Vec<(String, String)> = Vec::new();
    for dir in ["src", "crates/defender-sim/src", "crates/bench/src", "tests/it"] {
        for file in rust_files(&Path::new(ROOT).join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let docs: String = text.lines().filter(|l| l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            texts.push((relative(&file), docs));
        }
    }
    for doc in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let path = doc.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            texts.push((relative(&path), std::fs::read_to_string(&path).unwrap()));
        }
    }
    texts.push(("README.md".into(), std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap()));
    let prefixes =
        ["src/", "tests/", "docs/", "crates/", "templates/", "scripts/", "migrations/", "static/", "packaging/"];
    let mut missing = BTreeSet::new();
    for (file, text) in &texts {
        for quoted in text.split('`').skip(1).step_by(2) {
            let candidate = quoted.split([' ', ':', '#']).next().unwrap_or_default().trim_end_matches(['.', ',', ')']);
            if candidate.starts_with("shared/") || candidate.contains("/shared/docs") {
                missing.insert(format!("{file}: {candidate} is outside the repository"));
            } else if prefixes.iter().any(|p| candidate.starts_with(p))
                && !candidate.contains(['*', '{', '<', '$'])
                && !Path::new(ROOT).join(candidate).exists()
            {
                missing.insert(format!("{file}: {candidate}"));
            }
        }
    }
    assert!(missing.is_empty(), "paths that do not exist:\n{}", missing.into_iter().collect::<Vec<_>>().join("\n"));
}

/// Each crate of the workspace uses every dependency it declares (an offline `cargo machete`).
#[test]
fn every_declared_dependency_is_used() {
    // Present for what their build does, never named in code.
    const FOR_THEIR_BUILD: &[&str] = &["libsqlite3-sys", "pq-sys"];
    let mut unused = Vec::new();
    for (manifest, dirs) in [
        ("Cargo.toml", &["src", "tests/it"][..]),
        ("crates/defender-sim/Cargo.toml", &["crates/defender-sim/src", "crates/defender-sim/tests"][..]),
        ("crates/bench/Cargo.toml", &["crates/bench/src"][..]),
    ] {
        let table: toml::Table = std::fs::read_to_string(Path::new(ROOT).join(manifest)).unwrap().parse().unwrap();
        let code: String = dirs
            .iter()
            .flat_map(|d| rust_files(&Path::new(ROOT).join(d)))
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        for section in ["dependencies", "dev-dependencies"] {
            for name in table
                .get(section)
                .and_then(|d| d.as_table())
                .map(|t| t.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                let ident = name.replace('-', "_");
                let used = code.contains(&format!("{ident}::")) || code.contains(&format!("use {ident}"));
                if !used && !FOR_THEIR_BUILD.contains(&name.as_str()) {
                    unused.push(format!("{manifest} [{section}] {name}"));
                }
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used:\n{}", unused.join("\n"));
}

/// Machine action states are one enum (`src/domain/action.rs`) everywhere: no code compares or
/// writes their names as strings.
#[test]
fn action_states_are_an_enum_not_strings() {
    let states = [
        "\"Requested\"",
        "\"Pending\"",
        "\"InProgress\"",
        "\"Succeeded\"",
        "\"Failed\"",
        "\"TimeOut\"",
        "\"Cancelled\"",
    ];
    let mut found = Vec::new();
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let rel = relative(&file);
        if rel == "src/domain/action.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Test data (seeds, expected figures) may spell them: only the code before its tests counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code_lines(code) {
            // A raw string is a sample of Defender's JSON (fuzz seeds), not a comparison.
            if states.iter().any(|s| line.contains(s)) && !line.contains("r#\"") {
                found.push(format!("{rel}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "action states spelled as strings:\n{}", found.join("\n"));
}

/// The JSON API answers with response types of its own (under `src/web/api`), so a new column
/// never reaches API callers by accident: nothing in the database layer is serializable.
#[test]
fn database_rows_are_not_api_responses() {
    let mut found = Vec::new();
    for file in rust_files(&Path::new(ROOT).join("src/db")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            if line.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| word == "Serialize") {
                found.push(format!("{}:{n}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "serializable database rows:\n{}", found.join("\n"));
}
