//! Properties of untrusted text.

/// Characters that make text display otherwise than it is stored: bidirectional formatting
/// (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`) and the Unicode line and paragraph
/// separators (a line break to many viewers, though not a control character). A log line or an
/// audit entry carrying one could be made to say something else; logs and the audit log
/// neutralise them, as they do control characters.
pub fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}
