//! Making untrusted bytes (file names, process names) safe to print on a
//! terminal or in a log line.

use std::{fmt::Write as _, path::Path};

/// A path, escaped as [`escape`] does: what every message that names a
/// file or directory shows.
pub fn path(path: &Path) -> String {
    escape(path.as_os_str().as_encoded_bytes())
}

/// Renders `bytes` on one line, so that what a terminal shows is what the
/// bytes are. Valid UTF-8 stays as it is, except:
///
/// - a backslash becomes `\\`, a newline `\n`, a tab `\t` and a carriage
///   return `\r`;
/// - every other character that is invisible, or moves or reorders the
///   text around it, becomes `\u{HEX}` (its code point in lowercase hex):
///   control characters (C0, DEL and C1: `\u{1b}`, `\u{7f}`, `\u{9b}`),
///   Unicode's format characters (bidi controls such as `\u{202e}` and
///   `\u{2066}`, zero-width characters such as `\u{200b}`, `\u{200d}`,
///   `\u{2060}` and `\u{feff}`, the soft hyphen `\u{ad}`, ...: see
///   [`FORMAT`]) and the line and paragraph separators `\u{2028}` and
///   `\u{2029}`;
///
/// and a byte that is not part of valid UTF-8 becomes `\xHH`. So `\xHH`
/// always stands for a raw byte and `\u{...}` for a character. Every
/// backslash in the output starts one of these escapes, each of which
/// stands for exactly one character or byte: distinct inputs give
/// distinct outputs.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_hidden(c) => {
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

/// Escapes a line of a list of lines (`WATCHER_WATCHES`): a backslash
/// becomes `\\` and a newline `\n`, and every other byte stays as it is.
/// `printf '%b\n' "$line"` gives the bytes back.
pub fn escape_line(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
    out
}

/// Unicode's format characters (general category Cf, Unicode 16.0), as
/// inclusive ranges: invisible characters that join, separate or reorder
/// the text around them.
pub const FORMAT: [(char, char); 21] = [
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

/// A control character, a format character, or a line or paragraph
/// separator.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || c == '\u{2028}'
        || c == '\u{2029}'
        || FORMAT
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{escape, escape_line, is_hidden};

    /// The bytes `escape` was given back: every escape it writes, read.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('\\') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            rest = &rest[i + 1..];
            let (bytes, len) = match rest.as_bytes()[0] {
                b'\\' => (vec![b'\\'], 1),
                b'n' => (vec![b'\n'], 1),
                b't' => (vec![b'\t'], 1),
                b'r' => (vec![b'\r'], 1),
                b'x' => (vec![u8::from_str_radix(&rest[1..3], 16).unwrap()], 3),
                b'u' => {
                    let end = rest.find('}').unwrap();
                    let c = char::from_u32(u32::from_str_radix(&rest[2..end], 16).unwrap());
                    (c.unwrap().to_string().into_bytes(), end + 1)
                }
                other => panic!("a backslash before {other:?} in {text:?}"),
            };
            out.extend_from_slice(&bytes);
            rest = &rest[len..];
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(escape(b"/srv/media/a b.mp3"), "/srv/media/a b.mp3");
        assert_eq!(escape("/srv/médias/日本".as_bytes()), "/srv/médias/日本");
        assert_eq!(
            escape("\u{5d0}\u{5d1} café ①".as_bytes()),
            "\u{5d0}\u{5d1} café ①"
        );
    }

    #[test]
    fn control_characters_and_backslash_are_escaped() {
        assert_eq!(escape(b"a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(
            escape(b"\x1b[31mred\x7f\x00"),
            "\\u{1b}[31mred\\u{7f}\\u{0}"
        );
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(
            escape("x\u{85}y\u{9b}2J\u{2028}\u{2029}".as_bytes()),
            "x\\u{85}y\\u{9b}2J\\u{2028}\\u{2029}"
        );
    }

    #[test]
    fn bidi_and_zero_width_characters_are_escaped() {
        // "invoice\u{202e}fdp.exe" shows as "invoiceexe.pdf".
        assert_eq!(
            escape("invoice\u{202e}fdp.exe".as_bytes()),
            "invoice\\u{202e}fdp.exe"
        );
        for c in [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{61c}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            let name = format!("a{c}b");
            assert_eq!(
                escape(name.as_bytes()),
                format!("a\\u{{{:x}}}b", c as u32),
                "{c:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_kept_byte_exact() {
        assert_eq!(escape(b"caf\xe9"), "caf\\xe9");
        // A literal backslash-x in a name does not collide with a raw byte.
        assert_ne!(escape(b"\\xe9"), escape(b"\xe9"));
        // A raw byte is not the character of the same number.
        assert_eq!(escape(b"\x9b"), "\\x9b");
        assert_eq!(escape("\u{9b}".as_bytes()), "\\u{9b}");
        assert_eq!(escape("\\u{9b}".as_bytes()), "\\\\u{9b}");
    }

    #[test]
    fn output_is_one_line() {
        let hostile = b"a\n$(touch /tmp/pwned)\x1b]0;title\x07\xff\"'";
        assert!(!escape(hostile).contains(['\n', '\r', '\x1b', '\x07']));
    }

    #[test]
    fn a_line_is_escaped_for_printf() {
        assert_eq!(escape_line(b"/srv/a\nb"), b"/srv/a\\nb");
        assert_eq!(escape_line(b"/srv/a\\nb"), b"/srv/a\\\\nb");
        assert_eq!(escape_line(b"/srv/\xff\t"), b"/srv/\xff\t");
    }

    proptest! {
        /// Distinct inputs give distinct outputs: the input can be read
        /// back from the output.
        #[test]
        fn escaping_can_be_undone(
            bytes in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"\\nxu{}".to_vec()),
                ],
                0..40,
            ),
            text in "\\PC{0,10}[\\x00-\\xa0\\x{2028}\\x{202e}\\x{2066}\\x{200b}\\x{feff}]{0,5}",
        ) {
            let mut input = bytes;
            input.extend_from_slice(text.as_bytes());
            let escaped = escape(&input);
            prop_assert!(!escaped.chars().any(is_hidden), "{}", escaped);
            prop_assert_eq!(unescape(&escaped), input);
        }
    }
}
