//! Errors as one line.

use std::fmt;

/// An error and its causes, joined by `: ` as anyhow's `{:#}` does, but
/// each said once: a cause that the text so far already ends with (an
/// error that shows its source in its own message, as most of watcher's
/// do) is not repeated.
pub struct Causes<'a>(pub &'a anyhow::Error);

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = String::new();
        for cause in self.0.chain() {
            let text = cause.to_string();
            if said.ends_with(&text) {
                continue;
            }
            if !said.is_empty() {
                said.push_str(": ");
            }
            said.push_str(&text);
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use anyhow::Context as _;

    use super::Causes;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct Open {
        path: &'static str,
        #[source]
        source: io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let open = || Open {
            path: "/x",
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let e = anyhow::Error::new(open());
        assert_eq!(
            Causes(&e).to_string(),
            "cannot open /x: No such file or directory (os error 2)"
        );
        let e = Err::<(), _>(open()).context("cannot start").unwrap_err();
        assert_eq!(
            Causes(&e).to_string(),
            "cannot start: cannot open /x: No such file or directory (os error 2)"
        );
        // Causes the message does not show are still said.
        let e = Err::<(), _>(io::Error::from_raw_os_error(libc::EACCES))
            .context("cannot read /y")
            .unwrap_err();
        assert_eq!(
            Causes(&e).to_string(),
            "cannot read /y: Permission denied (os error 13)"
        );
    }
}
