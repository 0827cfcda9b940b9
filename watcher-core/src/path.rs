//! Paths as bytes, resolved as written.

/// `name` joined to the absolute `base`, with `.` and `..` resolved as
/// written (symlinks are not followed: that is what the prefix match
/// cannot do).
pub fn normalize(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in base.split(|&b| b == b'/').chain(name.split(|&b| b == b'/')) {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut path = Vec::new();
    for part in parts {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_written() {
        assert_eq!(normalize(b"/srv/media", b"a/./b"), b"/srv/media/a/b");
        assert_eq!(normalize(b"/srv/media", b"../media2/x"), b"/srv/media2/x");
        assert_eq!(normalize(b"/", b"../../x"), b"/x");
        assert_eq!(normalize(b"/a", b".."), b"/");
    }
}
