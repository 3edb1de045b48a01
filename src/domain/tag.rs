//! A Defender machine tag the product writes (issue 22, tags both ways): what an admin may map
//! a profile to, or a response rule may add. Microsoft's "Add or Remove Tag for Machine" takes
//! any string as `Value`
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>); the
//! product bounds it as it bounds the tags it imports (`defender::machine::MAX_TAG_CHARS`), so
//! that every tag it writes is one it can read back and filter on.

/// The most characters of a tag (the bound of the tags the product imports).
pub const MAX_CHARS: usize = 200;

/// The tag as it is written: trimmed, 1 to [`MAX_CHARS`] characters, no control characters.
pub fn check(tag: &str) -> Result<String, String> {
    let t = tag.trim();
    if t.is_empty() {
        return Err("The Defender tag is empty.".into());
    }
    if t.chars().count() > MAX_CHARS {
        return Err(format!("The Defender tag has at most {MAX_CHARS} characters."));
    }
    if t.chars().any(char::is_control) {
        return Err("The Defender tag may not hold control characters.".into());
    }
    Ok(t.to_owned())
}

/// Whether two tags are one. Microsoft documents no rule for comparing tags; the product takes
/// a person's `ea:watch` for its `EA:Watch` (case of ASCII letters only, as SQL's `lower()`
/// folds it on both backends), so that it neither adds a second spelling nor keeps trying to.
pub fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The key under which [`same`] tags are one.
pub fn folded(tag: &str) -> String {
    tag.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_bounded_text() {
        assert_eq!(check("  EA:IP-Camera ").unwrap(), "EA:IP-Camera");
        assert!(check("   ").is_err());
        assert!(check(&"x".repeat(MAX_CHARS)).is_ok());
        assert!(check(&"x".repeat(MAX_CHARS + 1)).is_err());
        assert!(check("a\nb").is_err());
        assert!(check("a\u{7f}b").is_err());
        assert_eq!(check("<b>é</b>").unwrap(), "<b>é</b>", "markup is text, escaped where shown");
        assert!(same("ea:watch", " EA:Watch"));
        assert!(!same("EA:Watch", "EA:Watch2"));
        assert_eq!(folded("EA:Watch"), folded("ea:WATCH"));
    }
}
