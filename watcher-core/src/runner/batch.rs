//! What changed since the action last started: counts, the watches that
//! saw changes, and the changed paths, deduplicated and capped.

use std::collections::{BTreeSet, HashSet};

use foldhash::fast::RandomState;

use crate::{event::Event, kind::Kind};

#[derive(Debug, Default)]
pub struct Batch {
    pub events: u64,
    pub writes: u64,
    /// Events the kernel could not deliver.
    pub lost: u64,
    /// The kernel flagged a watch as changed (its events may have been
    /// lost, or not read yet).
    pub flagged: bool,
    /// Watched directories that went away, came back or became another
    /// directory: their whole content may have changed, no path listed.
    pub replaced: u64,
    /// Ids of the watches that saw changes.
    pub watches: BTreeSet<u32>,
    /// A change the kernel could not place (its walk ended first): it
    /// counts for every watch.
    pub undecided: bool,
    /// Distinct changed paths, in the order first seen, at most `cap`.
    pub paths: Vec<Vec<u8>>,
    /// Hashed with foldhash, seeded anew in each process: the paths are
    /// any writer's to choose, so not a hash they can aim collisions at,
    /// and several times cheaper than std's SipHash for every event.
    seen: HashSet<Vec<u8>, RandomState>,
    /// Distinct paths left out because of the cap, or because only their
    /// last components are known.
    pub omitted: u64,
    /// Files still open for writing when the action was let run anyway
    /// (`max_wait`), by path.
    pub open: Vec<Vec<u8>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.lost == 0 && !self.flagged && self.replaced == 0
    }

    /// `n` events lost under watches `ids` (`None`: undecided).
    pub fn add_lost(&mut self, n: u64, ids: Option<&[u32]>) {
        self.lost += n;
        self.mark(ids);
    }

    /// Records a change of watches `ids`; `None`: of an undecided one.
    fn mark(&mut self, ids: Option<&[u32]>) {
        match ids {
            Some(ids) => self.watches.extend(ids),
            None => self.undecided = true,
        }
    }

    /// Whether watch `id` saw changes.
    pub fn touches(&self, id: u32) -> bool {
        self.undecided || self.watches.contains(&id)
    }

    /// A watched directory went away (`None`), or is watched again as
    /// watch `id`.
    pub fn replace(&mut self, id: Option<u32>) {
        self.replaced += 1;
        self.watches.extend(id);
    }

    /// Watches the kernel flagged as changed.
    pub fn flag(&mut self, watch_ids: &[u32]) {
        self.flagged |= !watch_ids.is_empty();
        self.watches.extend(watch_ids);
    }

    /// Adds a change of watches `ids` (`None`: undecided).
    pub fn add(&mut self, ev: &Event, ids: Option<&[u32]>, cap: usize) {
        self.events += 1;
        if ev.kind == Kind::Write {
            self.writes += 1;
        }
        self.mark(ids);
        // A rename or link changed both names.
        if let Some(old) = &ev.old {
            self.add_path(&old.path, old.truncated, cap);
        }
        self.add_path(&ev.path, ev.truncated, cap);
    }

    fn add_path(&mut self, path: &[u8], truncated: bool, cap: usize) {
        // A path seen before in this batch is already kept or counted
        // (looked up first: most events repeat one, an open's create and
        // write).
        if self.seen.contains(path) {
            return;
        }
        self.seen.insert(path.to_vec());
        // A relative-looking tail is no use to the action: left out, and
        // counted so that the action knows the list is incomplete.
        if self.paths.len() < cap && !truncated {
            self.paths.push(path.to_vec());
        } else {
            self.omitted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &[u8], watch_id: u32) -> Event {
        Event::test_write(path, watch_id)
    }

    #[test]
    fn deduplicates_and_caps_paths() {
        let mut b = Batch::default();
        assert!(b.is_empty());
        for p in [&b"/w/a"[..], b"/w/b", b"/w/a", b"/w/c", b"/w/d", b"/w/c"] {
            b.add(&ev(p, 1), Some(&[1]), 2);
        }
        assert_eq!(b.events, 6);
        assert_eq!(b.writes, 6);
        assert_eq!(b.paths, [b"/w/a".to_vec(), b"/w/b".to_vec()]);
        assert_eq!(b.omitted, 2, "c and d once each");
        assert_eq!(b.watches.iter().copied().collect::<Vec<_>>(), [1]);
        assert!(b.touches(1) && !b.touches(2));
    }

    #[test]
    fn undecided_and_truncated_changes() {
        let mut b = Batch::default();
        b.add(
            &Event {
                watch_id: None,
                truncated: true,
                ..ev(b"d2/f", 0)
            },
            None,
            10,
        );
        assert!(b.touches(0) && b.touches(7));
        assert!(b.paths.is_empty());
        assert_eq!(b.omitted, 1);
    }
}
