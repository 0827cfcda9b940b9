//! What events are kept. Process filters (`--pid`, `--uid`, `--comm`,
//! `--exclude-comm`) are the kernel's, checked as a syscall enters.
//! Include and exclude globs on paths (`--include`, `--exclude`), applied
//! in user space: the kernel sends each hit, and events whose paths are
//! all filtered out are dropped before output and before the action.
//!
//! Patterns follow .gitignore: one without a `/` matches a file name or
//! any directory name on the path (`*.part`, `.*.swp`); a trailing `/`
//! matches directories only, and so everything below them (`.git/`); one
//! with a `/` elsewhere matches the whole path, from the root when it
//! starts with `/`, else from the watched directory (`cache/**/*.tmp`).
//! `*` and `?` do not match `/`; `**` matches any number of directories.

use std::{os::unix::ffi::OsStrExt, path::Path};

use globset::{Glob, GlobBuilder, GlobMatcher};
use watcher_common::{TASK_COMM_LEN, filter};

use crate::event::Event;

#[derive(Debug, thiserror::Error)]
#[error("bad pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
    /// Where it applies.
    scope: Scope,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Any name on the path, the file's own included.
    Name,
    /// Any directory name on the path.
    Dir,
    /// The whole absolute path.
    Absolute,
    /// The path below its watched directory.
    BelowWatch,
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| PatternError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        let (body, dir) = match text.strip_suffix('/') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.is_empty() {
            return Err(err("it is empty"));
        }
        let scope = match (body.contains('/'), dir) {
            (false, false) => Scope::Name,
            (false, true) => Scope::Dir,
            (true, _) if body.starts_with('/') => Scope::Absolute,
            (true, _) => Scope::BelowWatch,
        };
        // A directory pattern with a `/` covers everything below it.
        let body = match (scope, dir) {
            (Scope::Absolute | Scope::BelowWatch, true) => format!("{body}/**"),
            _ => body.to_string(),
        };
        let glob: Glob = GlobBuilder::new(&body)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| err(&e.kind().to_string()))?;
        Ok(Self {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
            scope,
        })
    }
}

impl Pattern {
    /// Whether `path` (absolute) is matched; `root` is its watched
    /// directory, when known.
    fn matches(&self, path: &[u8], root: Option<&[u8]>) -> bool {
        let as_path = |b: &[u8]| Path::new(std::ffi::OsStr::from_bytes(b)).to_path_buf();
        let mut names = path.split(|&b| b == b'/').filter(|n| !n.is_empty());
        match self.scope {
            Scope::Name => names.any(|n| self.matcher.is_match(as_path(n))),
            Scope::Dir => {
                let names: Vec<&[u8]> = names.collect();
                let dirs = &names[..names.len().saturating_sub(1)];
                dirs.iter().any(|n| self.matcher.is_match(as_path(n)))
            }
            Scope::Absolute => self.matcher.is_match(as_path(path)),
            Scope::BelowWatch => root
                .and_then(|r| path.strip_prefix(r))
                .map(|rest| rest.strip_prefix(b"/").unwrap_or(rest))
                .is_some_and(|rest| self.matcher.is_match(as_path(rest))),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `--include` and `--exclude`.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

impl PathFilter {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the event is kept: one of its paths (a rename's old or new)
    /// matches an include pattern, if there are any, and no exclude one.
    /// Whether `ev` passes; `root` is the watch that below-the-watch
    /// patterns are relative to.
    pub fn keeps(&self, ev: &Event, root: Option<&Path>) -> bool {
        if self.is_empty() {
            return true;
        }
        let root = root.map(|r| r.as_os_str().as_bytes());
        let keeps = |path: &[u8]| {
            (self.include.is_empty() || self.include.iter().any(|p| p.matches(path, root)))
                && !self.exclude.iter().any(|p| p.matches(path, root))
        };
        keeps(&ev.path) || ev.old.as_ref().is_some_and(|old| keeps(&old.path))
    }
}

/// `--pid`, `--uid`, `--comm` and `--exclude-comm`: applied by the
/// kernel when a syscall enters (see `FILTER_*` in the eBPF maps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFilter {
    pub pids: Vec<u32>,
    pub uids: Vec<u32>,
    pub comms: Vec<Comm>,
    pub exclude_comms: Vec<Comm>,
}

impl ProcessFilter {
    /// Whether the process that made `ev` passes, as the kernel decides
    /// it (for jobs whose filters the kernel does not apply).
    pub fn admits(&self, ev: &Event) -> bool {
        let comm = |list: &[Comm]| list.iter().any(|c| c.name() == ev.comm.as_slice());
        (self.pids.is_empty() || self.pids.contains(&ev.pid))
            && (self.uids.is_empty() || self.uids.contains(&ev.uid))
            && (self.comms.is_empty() || comm(&self.comms))
            && !comm(&self.exclude_comms)
    }

    /// The `FILTERS` global: which filters are on.
    pub fn bits(&self) -> u32 {
        [
            (!self.pids.is_empty(), filter::PID),
            (!self.uids.is_empty(), filter::UID),
            (!self.comms.is_empty(), filter::COMM),
            (!self.exclude_comms.is_empty(), filter::EXCLUDE_COMM),
        ]
        .into_iter()
        .filter(|&(on, _)| on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// A process name as the kernel keeps it: its first 15 bytes, NUL-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm(pub [u8; TASK_COMM_LEN]);

impl Comm {
    /// The name, without the padding.
    pub fn name(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(TASK_COMM_LEN);
        &self.0[..len]
    }
}

impl std::str::FromStr for Comm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a process name cannot be empty".into());
        }
        if name.len() >= TASK_COMM_LEN {
            return Err(format!(
                "`{}` is longer than the {} bytes the kernel keeps of a process name",
                name.escape_debug(),
                TASK_COMM_LEN - 1
            ));
        }
        let mut comm = [0; TASK_COMM_LEN];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self(comm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        p.parse().unwrap()
    }

    #[test]
    fn patterns_match_as_gitignore_does() {
        let root = Some(b"/srv/media".as_slice());
        let m = |p: &str, path: &str| pattern(p).matches(path.as_bytes(), root);
        assert!(m("*.part", "/srv/media/a/b.mp3.part"));
        assert!(!m("*.part", "/srv/media/a/b.mp3"));
        assert!(m(".*.swp", "/srv/media/.notes.txt.swp"));
        assert!(m(".git/", "/srv/media/repo/.git/objects/ab"));
        assert!(!m(".git/", "/srv/media/repo/.git"));
        assert!(!m(".git/", "/srv/media/repo/.gitignore"));
        assert!(m("cache/**/*.tmp", "/srv/media/cache/x/y/z.tmp"));
        assert!(!m("cache/*.tmp", "/srv/media/cache/x/z.tmp"));
        assert!(!m("cache/*.tmp", "/srv/media/sub/cache/z.tmp"));
        assert!(m("/srv/media/tmp/", "/srv/media/tmp/a/b"));
        assert!(m("/srv/*/a", "/srv/media/a"));
        assert!(!m("/srv/*", "/srv/media/a"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!("[a".parse::<Pattern>().is_err());
        assert!("/".parse::<Pattern>().is_err());
    }

    #[test]
    fn renames_are_kept_when_either_side_is() {
        let filter = PathFilter {
            include: Vec::new(),
            exclude: vec![pattern("*.part")],
        };
        let mut ev = Event::test_write(b"/w/a.part", 0);
        assert!(!filter.keeps(&ev, None));
        ev.old = Some(Box::new(crate::event::Side {
            name: b"a.part".to_vec(),
            path: b"/w/a.part".to_vec(),
            truncated: false,
            relative: false,
            through: false,
            dfd: -100,
            anchor: None,
            writer_path: None,
        }));
        ev.path = b"/w/a".to_vec();
        assert!(filter.keeps(&ev, None));
        let only_mp3 = PathFilter {
            include: vec![pattern("*.mp3")],
            exclude: Vec::new(),
        };
        assert!(!only_mp3.keeps(&ev, None));
        ev.path = b"/w/a.mp3".to_vec();
        assert!(only_mp3.keeps(&ev, None));
    }
}
