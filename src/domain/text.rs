//! Properties of untrusted text.

/// Bidirectional formatting characters: they make text display in another order than it is
/// stored (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`), so a log line or audit entry
/// carrying one can be made to say something else. Logs and the audit log neutralise them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
