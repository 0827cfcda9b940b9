//! Making untrusted bytes (file names, process names) safe to print on a
//! terminal or in a log line.

use std::fmt::Write as _;

/// Renders `bytes` on one line: valid UTF-8 stays as it is, backslash and
/// control characters become C-style escapes (`\n`, `\t`, `\x1b`, `\u{85}`),
/// and bytes that are not UTF-8 become `\xNN`. Distinct inputs give distinct
/// outputs, so nothing is lost.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x80 && c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                // C1 controls and the Unicode line/paragraph separators.
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(escape(b"/srv/media/a b.mp3"), "/srv/media/a b.mp3");
        assert_eq!(escape("/srv/médias/日本".as_bytes()), "/srv/médias/日本");
    }

    #[test]
    fn control_characters_and_backslash_are_escaped() {
        assert_eq!(escape(b"a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape("x\u{85}y\u{2028}".as_bytes()), "x\\u{85}y\\u{2028}");
    }

    #[test]
    fn invalid_utf8_is_kept_byte_exact() {
        assert_eq!(escape(b"caf\xe9"), "caf\\xe9");
        // A literal backslash-x in a name does not collide with a raw byte.
        assert_ne!(escape(b"\\xe9"), escape(b"\xe9"));
    }

    #[test]
    fn output_is_one_line() {
        let hostile = b"a\n$(touch /tmp/pwned)\x1b]0;title\x07\xff\"'";
        assert!(!escape(hostile).contains(['\n', '\r', '\x1b', '\x07']));
    }
}
