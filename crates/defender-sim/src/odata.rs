//! OData query options as the Defender API uses them: `$filter` (a small parser and evaluator
//! for comparisons, `and`/`or`/`not`, parentheses, `startswith`/`endswith`/`contains` and
//! `collection/any(x: x eq '...')`), `$top`, `$skip` and `$expand`, plus building
//! `@odata.nextLink`.
//!
//! Property names are matched case-insensitively (the docs spell them both ways) and only the
//! per-entity allow-list from the documentation is accepted; anything else is a 400
//! `ODataError`, as the real service answers for unsupported filters. String comparisons are
//! case-insensitive, which is how the service treats enum values.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A property value of an entity, borrowed for evaluation.
#[derive(Debug, Clone)]
pub enum Field<'a> {
    Null,
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Date(DateTime<Utc>),
    List(&'a [String]),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
    Date(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Literal),
    Call(Func, String, String),
    /// `prop/any(x: x op literal)`
    Any(String, Op, Literal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Date(DateTime<Utc>),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    let t = s.strip_suffix('Z').unwrap_or(s);
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Some(n.and_utc());
        }
    }
    None
}

/// Parse a datetime in any of the forms clients send (also used for `sinceTime`).
pub fn parse_date_literal(s: &str) -> Option<DateTime<Utc>> {
    parse_datetime(s.trim())
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | ':' | '+'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if let Ok(n) = text.parse::<f64>() {
                    out.push(Tok::Num(n));
                } else if let Some(d) = parse_datetime(&text) {
                    out.push(Tok::Date(d));
                } else {
                    return Err(format!("invalid literal '{text}'"));
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' || c == '@' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '/' | '$' | '@'))
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}' at position {i}")),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    allowed: &'a [&'a str],
}

fn op_of(s: &str) -> Option<Op> {
    Some(match s.to_ascii_lowercase().as_str() {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(k))
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            _ => Err(format!("expected {what}")),
        }
    }
    fn property(&self, name: &str) -> Result<String, String> {
        let lower = name.to_ascii_lowercase();
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(&lower)) {
            Ok(lower)
        } else {
            Err(format!(
                "Could not find a property named '{name}' that can be used in $filter. Supported properties: {}",
                self.allowed.join(", ")
            ))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Num(n)) => Ok(Literal::Num(n)),
            Some(Tok::Date(d)) => Ok(Literal::Date(d)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(t) => Err(format!("expected a literal, found {t:?}")),
            None => Err("expected a literal at the end of the filter".into()),
        }
    }
    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                let func = match name.to_ascii_lowercase().as_str() {
                    "startswith" => Some(Func::StartsWith),
                    "endswith" => Some(Func::EndsWith),
                    "contains" => Some(Func::Contains),
                    _ => None,
                };
                if let Some(f) = func {
                    self.expect(Tok::LParen, "'(' after function name")?;
                    let prop = match self.next() {
                        Some(Tok::Ident(p)) => self.property(&p)?,
                        _ => return Err(format!("{name} expects a property as first argument")),
                    };
                    self.expect(Tok::Comma, "','")?;
                    let lit = match self.next() {
                        Some(Tok::Str(s)) => s,
                        _ => {
                            return Err(format!("{name} expects a string literal as second argument"));
                        }
                    };
                    self.expect(Tok::RParen, "')'")?;
                    // Tolerate `startswith(x,'a') eq true`.
                    if self.peek().is_some_and(|t| matches!(t, Tok::Ident(s) if op_of(s) == Some(Op::Eq)))
                        && matches!(self.toks.get(self.pos + 1), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true"))
                    {
                        self.pos += 2;
                    }
                    return Ok(Expr::Call(f, prop, lit));
                }
                if let Some(base) = name.strip_suffix("/any").or_else(|| name.strip_suffix("/Any")) {
                    let prop = self.property(base)?;
                    self.expect(Tok::LParen, "'(' after any")?;
                    let var = match self.next() {
                        Some(Tok::Ident(v)) => v,
                        _ => return Err("expected a lambda variable".into()),
                    };
                    self.expect(Tok::Colon, "':'")?;
                    match self.next() {
                        Some(Tok::Ident(v)) if v == var => {}
                        _ => return Err(format!("expected '{var}' in the lambda body")),
                    }
                    let op = match self.next() {
                        Some(Tok::Ident(o)) => op_of(&o).ok_or_else(|| format!("unknown operator '{o}'"))?,
                        _ => return Err("expected an operator".into()),
                    };
                    let lit = self.literal()?;
                    self.expect(Tok::RParen, "')'")?;
                    return Ok(Expr::Any(prop, op, lit));
                }
                let prop = self.property(&name)?;
                let op = match self.next() {
                    Some(Tok::Ident(o)) => op_of(&o).ok_or_else(|| format!("unknown operator '{o}'"))?,
                    other => {
                        return Err(format!("expected an operator after '{name}', found {other:?}"));
                    }
                };
                let lit = self.literal()?;
                Ok(Expr::Cmp(prop, op, lit))
            }
            Some(t) => Err(format!("unexpected token {t:?}")),
            None => Err("unexpected end of filter".into()),
        }
    }
}

fn cmp_ord(ord: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
    }
}

fn cmp_str(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
}

fn compare(field: &Field<'_>, op: Op, lit: &Literal) -> bool {
    match (field, lit) {
        (Field::Null, Literal::Null) => op == Op::Eq || op == Op::Le || op == Op::Ge,
        (_, Literal::Null) | (Field::Null, _) => op == Op::Ne,
        (Field::Str(a), Literal::Str(b)) => cmp_ord(cmp_str(a, b), op),
        (Field::Str(a), Literal::Num(n)) => match a.parse::<f64>() {
            Ok(x) => x.partial_cmp(n).is_some_and(|o| cmp_ord(o, op)),
            Err(_) => op == Op::Ne,
        },
        (Field::Str(a), Literal::Date(d)) => parse_datetime(a).is_some_and(|x| cmp_ord(x.cmp(d), op)),
        (Field::Num(a), Literal::Num(b)) => a.partial_cmp(b).is_some_and(|o| cmp_ord(o, op)),
        (Field::Num(a), Literal::Str(b)) => match b.parse::<f64>() {
            Ok(x) => a.partial_cmp(&x).is_some_and(|o| cmp_ord(o, op)),
            Err(_) => op == Op::Ne,
        },
        (Field::Date(a), Literal::Date(b)) => cmp_ord(a.cmp(b), op),
        (Field::Date(a), Literal::Str(b)) => parse_datetime(b).is_some_and(|x| cmp_ord(a.cmp(&x), op)),
        (Field::Bool(a), Literal::Bool(b)) => cmp_ord(a.cmp(b), op),
        (Field::Bool(a), Literal::Str(b)) => cmp_str(if *a { "true" } else { "false" }, b).is_eq() == (op == Op::Eq),
        (Field::List(items), _) => {
            let any = items.iter().any(|x| compare(&Field::Str(x), Op::Eq, lit));
            match op {
                Op::Eq => any,
                Op::Ne => !any,
                _ => items.iter().any(|x| compare(&Field::Str(x), op, lit)),
            }
        }
        _ => op == Op::Ne,
    }
}

impl Filter {
    /// Parse `$filter`; `allowed` is the entity's list of filterable properties.
    pub fn parse(s: &str, allowed: &[&str]) -> Result<Filter, String> {
        let toks = tokenize(s)?;
        if toks.is_empty() {
            return Err("The $filter expression is empty".into());
        }
        let mut p = Parser { toks, pos: 0, allowed };
        let expr = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {:?} after the end of the expression", p.toks[p.pos]));
        }
        Ok(Filter { expr })
    }

    pub fn matches<'a>(&self, get: &dyn Fn(&str) -> Field<'a>) -> bool {
        eval(&self.expr, get)
    }

    /// If the filter requires `prop eq 'value'` at top level (alone or in an `and`), the value:
    /// lets list endpoints jump to one machine instead of scanning everything.
    pub fn required_eq(&self, prop: &str) -> Option<&str> {
        fn find<'e>(e: &'e Expr, prop: &str) -> Option<&'e str> {
            match e {
                Expr::Cmp(p, Op::Eq, Literal::Str(v)) if p == prop => Some(v),
                Expr::And(a, b) => find(a, prop).or_else(|| find(b, prop)),
                _ => None,
            }
        }
        find(&self.expr, prop)
    }
}

fn eval<'a>(e: &Expr, get: &dyn Fn(&str) -> Field<'a>) -> bool {
    match e {
        Expr::And(a, b) => eval(a, get) && eval(b, get),
        Expr::Or(a, b) => eval(a, get) || eval(b, get),
        Expr::Not(a) => !eval(a, get),
        Expr::Cmp(p, op, lit) => compare(&get(p), *op, lit),
        Expr::Any(p, op, lit) => match get(p) {
            Field::List(items) => items.iter().any(|x| compare(&Field::Str(x), *op, lit)),
            other => compare(&other, *op, lit),
        },
        Expr::Call(f, p, s) => {
            let check = |v: &str| {
                let v = v.to_lowercase();
                let s = s.to_lowercase();
                match f {
                    Func::StartsWith => v.starts_with(&s),
                    Func::EndsWith => v.ends_with(&s),
                    Func::Contains => v.contains(&s),
                }
            };
            match get(p) {
                Field::Str(v) => check(v),
                Field::List(items) => items.iter().any(|x| check(x)),
                _ => false,
            }
        }
    }
}

/// Parsed OData system query options of one request.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pub filter: Option<Filter>,
    pub top: Option<usize>,
    pub skip: usize,
    pub expand: Option<String>,
    /// All decoded parameters, in order (for building nextLinks and reading `pageSize` etc.).
    pub params: Vec<(String, String)>,
}

impl QueryOptions {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Decode a query string (`+` and `%20` both mean space).
pub fn decode_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Parse `$filter`, `$top`, `$skip`, `$expand`; `max_top` is the endpoint's page cap.
pub fn parse_options(query: &str, allowed: &[&str], max_top: usize) -> Result<QueryOptions, String> {
    let params = decode_query(query);
    let mut o = QueryOptions { params, ..Default::default() };
    for (k, v) in o.params.clone() {
        match k.to_ascii_lowercase().as_str() {
            "$filter" => o.filter = Some(Filter::parse(&v, allowed)?),
            "$top" => {
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("Invalid value '{v}' for $top query option found. The $top query option requires a non-negative integer value."))?;
                if n > max_top {
                    return Err(format!(
                        "The limit of '{max_top}' for Top query has been exceeded. The value from the incoming request is '{n}'."
                    ));
                }
                o.top = Some(n);
            }
            "$skip" => {
                o.skip = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("Invalid value '{v}' for $skip query option found. The $skip query option requires a non-negative integer value."))?;
            }
            "$expand" => o.expand = Some(v),
            _ => {}
        }
    }
    Ok(o)
}

/// Percent-encode a query value the way the service's links look: `$`, quotes, parentheses,
/// commas and colons stay readable, spaces become `%20`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$'(),:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rebuild a URL's query with `name` replaced (or appended).
pub fn with_param(params: &[(String, String)], name: &str, value: &str) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    parts.push(format!("{}={}", encode_component(name), encode_component(value)));
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &[&str] = &["healthStatus", "lastSeen", "rbacGroupId", "machineTags", "computerDnsName"];

    fn get(p: &str) -> Field<'static> {
        static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        match p {
            "healthstatus" => Field::Str("Active"),
            "lastseen" => Field::Date(parse_datetime("2024-03-01T10:00:00Z").unwrap()),
            "rbacgroupid" => Field::Num(140.0),
            "machinetags" => Field::List(TAGS.get_or_init(|| vec!["VIP".into(), "PCI".into()])),
            "computerdnsname" => Field::Str("desktop-1.contoso.com"),
            _ => Field::Null,
        }
    }

    fn m(f: &str) -> bool {
        Filter::parse(f, P).unwrap().matches(&get)
    }

    #[test]
    fn comparisons_and_logic() {
        assert!(m("healthStatus eq 'Active'"));
        assert!(m("HealthStatus eq 'active'"));
        assert!(!m("healthStatus ne 'Active'"));
        assert!(m("lastSeen gt 2024-02-01Z and rbacGroupId eq 140"));
        assert!(m("lastSeen ge 2024-03-01T10:00:00Z"));
        assert!(!m("lastSeen lt 2018-08-01Z"));
        assert!(m("(healthStatus eq 'Inactive' or rbacGroupId le 140) and not (rbacGroupId gt 140)"));
        assert!(m("startswith(computerDnsName,'DESKTOP')"));
        assert!(m("machineTags/any(tag: tag eq 'vip')"));
        assert!(m("machineTags eq 'PCI'"));
        assert!(m("rbacGroupId eq '140'"));
    }

    #[test]
    fn errors() {
        assert!(Filter::parse("nope eq 1", P).is_err());
        assert!(Filter::parse("healthStatus eq", P).is_err());
        assert!(Filter::parse("healthStatus eq 'x", P).is_err());
        assert!(Filter::parse("healthStatus xx 'x'", P).is_err());
        assert!(parse_options("$top=10001", P, 10000).is_err());
        assert_eq!(parse_options("$top=5&$skip=10", P, 10000).unwrap().skip, 10);
    }
}
