//! Loading a library file: the TOML format of `profiles/standard.toml` read into specs, each
//! profile and rule compiled (values lower-cased, regexes built, the literal a regex requires
//! extracted so that most regexes are rejected by a substring test without running).

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibrarySpec {
    #[serde(default)]
    pub(super) profile: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    #[allow(dead_code)] // read before, to name the profile in errors
    name: String,
    category: String,
    #[serde(default)]
    description: String,
    risky: Option<String>,
    #[serde(default = "enabled_default")]
    enabled: bool,
    #[serde(default)]
    rule: Vec<toml::Table>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    equals: Option<OneOrMany>,
    prefix: Option<OneOrMany>,
    contains: Option<OneOrMany>,
    regex: Option<OneOrMany>,
}

/// One value or a list of values.
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(OneOrMany::Many(values))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

pub(super) fn compile_profile(name: String, table: toml::Table) -> Result<ProfileDef, LibraryError> {
    let profile_error = |message: String| LibraryError::Profile { name: name.clone(), message };
    let spec: ProfileSpec = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| profile_error(e.message().trim().to_owned()))?;
    if spec.category.trim().is_empty() {
        return Err(profile_error("category is empty".into()));
    }
    if spec.risky.as_ref().is_some_and(|r| r.trim().is_empty()) {
        return Err(profile_error("risky must give the reason (omit it when the profile is not risky)".into()));
    }
    if spec.rule.is_empty() {
        return Err(profile_error("has no rules ([[profile.rule]])".into()));
    }
    if spec.rule.len() > usize::from(u16::MAX) {
        return Err(profile_error("has too many rules".into()));
    }

    let mut rules = Vec::with_capacity(spec.rule.len());
    for (i, table) in spec.rule.into_iter().enumerate() {
        let rule =
            compile_rule(table).map_err(|message| LibraryError::Rule { name: name.clone(), rule: i, message })?;
        rules.push(rule);
    }

    let mut rule_order: Vec<u16> = (0..rules.len()).map(|i| u16::try_from(i).unwrap_or(u16::MAX)).collect();
    rule_order.sort_by(|&a, &b| {
        let (ra, rb): (&RuleDef, &RuleDef) = (&rules[usize::from(a)], &rules[usize::from(b)]);
        rb.score.cmp(&ra.score).then_with(|| rb.specificity().cmp(&ra.specificity())).then_with(|| a.cmp(&b))
    });

    Ok(ProfileDef {
        name,
        category: spec.category,
        description: spec.description.trim().to_owned(),
        risky: spec.risky.map(|r| r.trim().to_owned()),
        enabled_by_default: spec.enabled,
        rules,
        rule_order: rule_order.into_boxed_slice(),
        name_rank: 0,
    })
}

fn compile_rule(table: toml::Table) -> Result<RuleDef, String> {
    let mut score = None;
    let mut conditions = Vec::new();
    for (key, value) in table {
        let field = Field::ALL.into_iter().find(|f| f.key() == key);
        match (key.as_str(), field) {
            ("score", _) => {
                let toml::Value::String(text) = value else {
                    return Err(format!("score must be a string such as \"High\", not {}", value.type_str()));
                };
                score = Some(text.parse::<MatchScore>().map_err(|e| e.to_string())?);
            }
            (_, Some(Field::MacPrefix)) => {
                let prefixes: OneOrMany =
                    value.try_into().map_err(|e: toml::de::Error| format!("{key}: {}", e.message().trim()))?;
                conditions.push(compile_mac_prefix(prefixes.into_vec())?);
            }
            (_, Some(field)) => {
                let test: TestSpec =
                    value.try_into().map_err(|e: toml::de::Error| format!("{key}: {}", e.message().trim()))?;
                conditions.push(compile_condition(field, test)?);
            }
            (_, None) => {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.key()).collect();
                return Err(format!("unknown key `{key}` (expected score, {})", known.join(", ")));
            }
        }
    }
    let Some(score) = score else {
        return Err("has no score".into());
    };
    // Describe the conditions in a fixed order, whatever the order in the file.
    conditions.sort_by_key(|c: &Condition| c.field as usize);
    if conditions.is_empty() {
        return Err("has no conditions (a rule needs at least one of mac_prefix, mac_vendor, \
                    hostname, dhcp_vendor_class, dhcp_params, user_agent, os_name, os_version)"
            .into());
    }

    let mut description = conditions.iter().map(|c| c.description.as_str()).collect::<Vec<_>>().join(" and ");
    let _ = write!(description, " → {score}");
    conditions.sort_by_key(Condition::cost);
    Ok(RuleDef { score, description, conditions })
}

fn compile_mac_prefix(prefixes: Vec<String>) -> Result<Condition, String> {
    if prefixes.is_empty() {
        return Err("mac_prefix: the list is empty".into());
    }
    let mut compiled = Vec::with_capacity(prefixes.len());
    for prefix in &prefixes {
        let digits: Vec<char> = prefix.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
        if digits.is_empty() || digits.len() > 12 || !digits.iter().all(char::is_ascii_hexdigit) {
            return Err(format!("mac_prefix {prefix:?} is not a MAC address prefix such as \"52:54:00\""));
        }
        let mut canonical = String::with_capacity(17);
        for (i, c) in digits.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                canonical.push(':');
            }
            canonical.push(c.to_ascii_lowercase());
        }
        compiled.push(canonical.into_boxed_str());
    }
    let shown: Vec<String> = compiled.iter().map(|p| p.to_string()).collect();
    Ok(Condition {
        field: Field::MacPrefix,
        description: format!("MAC address starts with {}", shown.join(" or ")),
        test: Test::Prefix(compiled.into_boxed_slice()),
    })
}

fn compile_condition(field: Field, spec: TestSpec) -> Result<Condition, String> {
    let key = field.key();
    let given: Vec<(&str, OneOrMany)> =
        [("equals", spec.equals), ("prefix", spec.prefix), ("contains", spec.contains), ("regex", spec.regex)]
            .into_iter()
            .filter_map(|(op, values)| values.map(|v| (op, v)))
            .collect();
    let mut given = given.into_iter();
    let (Some((op, values)), None) = (given.next(), given.next()) else {
        return Err(format!("{key} needs exactly one of equals, prefix, contains or regex"));
    };
    let values = values.into_vec();
    if values.is_empty() {
        return Err(format!("{key}.{op}: the list is empty"));
    }
    if let Some(v) = values.iter().find(|v| v.trim().is_empty()) {
        return Err(format!("{key}.{op}: empty value {v:?}"));
    }

    let verb = match op {
        "equals" => "is",
        "prefix" => "starts with",
        "contains" => "contains",
        _ => "matches",
    };
    let shown: Vec<String> =
        values.iter().map(|v| if op == "regex" { format!("/{v}/") } else { format!("{v:?}") }).collect();
    let description = format!("{} {verb} {}", field.label(), shown.join(" or "));

    let lowered = |values: &[String]| -> Box<[Box<str>]> {
        values
            .iter()
            .map(|v| {
                let mut v = v.to_ascii_lowercase();
                if field == Field::DhcpParams {
                    v.retain(|c| !c.is_ascii_whitespace());
                }
                v.into_boxed_str()
            })
            .collect()
    };
    let test = match op {
        "equals" => Test::Equals(lowered(&values)),
        "prefix" => Test::Prefix(lowered(&values)),
        "contains" => Test::Contains(lowered(&values)),
        _ => {
            let mut compiled = Vec::with_capacity(values.len());
            for pattern in &values {
                let regex = RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| format!("{key}.regex {pattern:?} is not a valid regex: {e}"))?;
                compiled.push(CompiledRegex {
                    regex,
                    required: required_literals(pattern)
                        .unwrap_or_default()
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect(),
                });
            }
            Test::Regex(compiled.into_boxed_slice())
        }
    };
    Ok(Condition { field, test, description })
}

/// Literals (lower-cased) of which every match of `pattern` contains at least one, when that
/// can be told simply; `None` when not sure or when they would be too short to be worth testing.
/// E.g. `^sep[0-9a-f]{12}` → `["sep"]`, `(macbook|imac|mac-?mini)` → `["macbook", "imac",
/// "mac"]`. Deliberately conservative: inline flags and escapes that name characters by code
/// or property make it give up.
pub(super) fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let branches = parse_alternation(&chars, &mut i, 0)?;
    if i != chars.len() {
        return None;
    }
    let mut set = alternation_literals(&branches)?;
    set.sort();
    set.dedup();
    (set.iter().all(|l| l.len() >= 2)).then_some(set)
}

/// A rough parse of a regex, enough to find required literals.
enum Node {
    Literal(char),
    Group(Vec<Vec<Piece>>),
    /// Classes, `.`, anchors, escapes like `\d`: nothing literal.
    Other,
}

struct Piece {
    node: Node,
    /// Not made optional by `?`, `*` or `{..}` (which may allow zero).
    required: bool,
    /// Followed by `+`: present, but a literal run cannot continue across it.
    repeated: bool,
}

fn parse_alternation(chars: &[char], i: &mut usize, depth: usize) -> Option<Vec<Vec<Piece>>> {
    let mut branches = vec![Vec::new()];
    while let Some(&c) = chars.get(*i) {
        let node = match c {
            '|' => {
                branches.push(Vec::new());
                *i += 1;
                continue;
            }
            ')' if depth == 0 => return None,
            ')' => break,
            '(' => {
                match (chars.get(*i + 1), chars.get(*i + 2)) {
                    (Some('?'), Some(':')) => *i += 3,
                    (Some('?'), _) => return None, // inline flags may change the meaning
                    _ => *i += 1,
                }
                let inner = parse_alternation(chars, i, depth + 1)?;
                if chars.get(*i) != Some(&')') {
                    return None;
                }
                *i += 1;
                Node::Group(inner)
            }
            '[' => {
                // Up to the first unescaped ']' that is not the class's first member.
                let mut j = *i + 1;
                if chars.get(j) == Some(&'^') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                loop {
                    match chars.get(j)? {
                        '\\' => j += 2,
                        '[' => return None,
                        ']' => break,
                        _ => j += 1,
                    }
                }
                *i = j + 1;
                Node::Other
            }
            '\\' => {
                let e = *chars.get(*i + 1)?;
                *i += 2;
                if e.is_ascii_alphanumeric() {
                    if matches!(e, 'x' | 'u' | 'U' | 'p' | 'P' | '0'..='9') {
                        return None;
                    }
                    Node::Other
                } else {
                    Node::Literal(e)
                }
            }
            '.' | '^' | '$' => {
                *i += 1;
                Node::Other
            }
            '?' | '*' | '+' | '{' | '}' => return None,
            _ => {
                *i += 1;
                Node::Literal(c)
            }
        };
        let quantified = matches!(chars.get(*i), Some('?' | '*' | '+' | '{'));
        let (required, repeated) = match chars.get(*i) {
            Some('?' | '*') => {
                *i += 1;
                (false, false)
            }
            Some('+') => {
                *i += 1;
                (true, true)
            }
            Some('{') => {
                *i += chars[*i..].iter().position(|&c| c == '}')? + 1;
                (false, false)
            }
            _ => (true, false),
        };
        if quantified && chars.get(*i) == Some(&'?') {
            *i += 1; // lazy
        }
        branches.last_mut()?.push(Piece { node, required, repeated });
    }
    Some(branches)
}

fn alternation_literals(branches: &[Vec<Piece>]) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for branch in branches {
        all.extend(sequence_literals(branch)?);
    }
    Some(all)
}

/// The best set of literals one of which a match of the sequence contains: the set whose
/// shortest literal is longest.
fn sequence_literals(pieces: &[Piece]) -> Option<Vec<String>> {
    let mut candidates: Vec<Vec<String>> = Vec::new();
    let mut run = String::new();
    let flush = |run: &mut String, candidates: &mut Vec<Vec<String>>| {
        if !run.is_empty() {
            candidates.push(vec![std::mem::take(run)]);
        }
    };
    for piece in pieces {
        match &piece.node {
            Node::Literal(c) if piece.required => {
                run.push(c.to_ascii_lowercase());
                if piece.repeated {
                    flush(&mut run, &mut candidates);
                }
            }
            Node::Group(inner) if piece.required => {
                flush(&mut run, &mut candidates);
                if let Some(set) = alternation_literals(inner) {
                    candidates.push(set);
                }
            }
            _ => flush(&mut run, &mut candidates),
        }
    }
    flush(&mut run, &mut candidates);
    candidates.into_iter().max_by_key(|set| {
        let shortest = set.iter().map(String::len).min().unwrap_or(0);
        (shortest, std::cmp::Reverse(set.len()))
    })
}

/// The name of the profile whose table contains byte `offset` of the file, if it can be told.
pub(super) fn profile_near(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let start = before.rfind("[[profile]]")?;
    text[start..].lines().skip(1).find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("name")?.trim_start().strip_prefix('=')?.trim();
        let quoted = rest.strip_prefix('"')?;
        Some(quoted[..quoted.find('"')?].to_owned())
    })
}
