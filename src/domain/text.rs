//! Properties of untrusted text.

/// Untrusted text made inert for storing and showing: control and layout characters (see
/// [`is_layout_control`]) replaced by U+FFFD, at most `max_chars` characters. PostgreSQL refuses
/// a NUL in text outright, so one in an error from outside would lose the record it is part of.
pub fn inert(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).map(|c| if c.is_control() || is_layout_control(c) { '\u{fffd}' } else { c }).collect()
}

/// Characters that make text display otherwise than it is stored: bidirectional formatting
/// (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`) and the Unicode line and paragraph
/// separators (a line break to many viewers, though not a control character). A log line or an
/// audit entry carrying one could be made to say something else; logs and the audit log
/// neutralise them, as they do control characters.
pub fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}
