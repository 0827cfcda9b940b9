//! What changed since the action last started: counts, the watches that
//! saw changes, and the changed paths, deduplicated and capped.

use std::collections::{BTreeSet, HashSet};

use crate::event::{Event, Kind};

#[derive(Debug, Default)]
pub struct Batch {
    pub events: u64,
    pub writes: u64,
    /// Events the kernel could not deliver.
    pub lost: u64,
    /// The kernel flagged a watch as changed (its events may have been
    /// lost, or not read yet).
    pub flagged: bool,
    /// Ids of the watches that saw changes.
    pub watches: BTreeSet<u32>,
    /// Distinct changed paths, in the order first seen, at most `cap`.
    pub paths: Vec<Vec<u8>>,
    seen: HashSet<Vec<u8>>,
    /// Distinct paths left out because of the cap.
    pub omitted: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.lost == 0 && !self.flagged
    }

    /// Events lost, per watch id.
    pub fn add_lost(&mut self, lost: &[(u32, u64)]) {
        for &(id, n) in lost {
            self.lost += n;
            self.watches.insert(id);
        }
    }

    /// Watches the kernel flagged as changed.
    pub fn flag(&mut self, watch_ids: &[u32]) {
        self.flagged |= !watch_ids.is_empty();
        self.watches.extend(watch_ids);
    }

    pub fn add(&mut self, ev: &Event, cap: usize) {
        self.events += 1;
        match ev.kind {
            Kind::Write => self.writes += 1,
        }
        self.watches.insert(ev.watch_id);
        // A path seen before in this batch is already kept or counted.
        if !self.seen.insert(ev.path.clone()) {
            return;
        }
        if self.paths.len() < cap {
            self.paths.push(ev.path.clone());
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
            b.add(&ev(p, 1), 2);
        }
        assert_eq!(b.events, 6);
        assert_eq!(b.writes, 6);
        assert_eq!(b.paths, [b"/w/a".to_vec(), b"/w/b".to_vec()]);
        assert_eq!(b.omitted, 2, "c and d once each");
        assert_eq!(b.watches.iter().copied().collect::<Vec<_>>(), [1]);
    }
}
