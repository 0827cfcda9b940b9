//! Progress lines on stderr.

/// A progress line on stderr.
pub fn step(what: &str, detail: &str) {
    eprintln!("watcher-bench: {what:<10} {detail}");
}
