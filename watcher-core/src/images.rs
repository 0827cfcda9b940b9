//! The executables and command lines of the process images seen: the
//! kernel sends them with an image's first event only (see
//! `watcher_common::ProcessImage`), and the events after it get them back
//! here.

use std::collections::HashMap;

use watcher_common::{MAX_IMAGES, ProcessImage};

use crate::event::Who;

/// An image: a pid and what it runs from one exec to the next.
type Key = (u32, ProcessImage);

/// What an image's first event said of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Image {
    exe: Option<Vec<u8>>,
    exe_truncated: bool,
    exe_deleted: bool,
    cmdline: Vec<Vec<u8>>,
    cmdline_truncated: bool,
}

/// The images, in two generations: an image seen in this one or the one
/// before is kept, one neither saw is forgotten. The kernel forgets the
/// least recently used of its [`MAX_IMAGES`] (and then sends them again),
/// so a generation of twice as many keeps every image it still
/// remembers: each event the kernel looks an image up for comes here too.
#[derive(Default)]
pub struct Images {
    current: HashMap<Key, Image>,
    previous: HashMap<Key, Image>,
}

/// Images seen in one generation.
const GENERATION: usize = 2 * MAX_IMAGES as usize;

/// `known`, an image kept, into the event's `who` that left it out.
fn give_back(known: &Image, who: &mut Who) {
    who.exe.clone_from(&known.exe);
    who.exe_truncated = known.exe_truncated;
    who.exe_deleted = known.exe_deleted;
    who.cmdline.clone_from(&known.cmdline);
    who.cmdline_truncated = known.cmdline_truncated;
    who.image_sent = false;
}

impl Images {
    /// Keeps what the event of process `pid` says of its image, or gives
    /// it back to an event that left it out.
    pub fn settle(&mut self, pid: u32, who: &mut Who) {
        let Some(image) = who.image else {
            return;
        };
        let key = (pid, image);
        if !who.image_sent {
            self.keep(
                key,
                Image {
                    exe: who.exe.clone(),
                    exe_truncated: who.exe_truncated,
                    exe_deleted: who.exe_deleted,
                    cmdline: who.cmdline.clone(),
                    cmdline_truncated: who.cmdline_truncated,
                },
            );
            return;
        }
        // Copied from where it is kept, once: most events are of an image
        // kept in the current generation.
        if let Some(known) = self.current.get(&key) {
            give_back(known, who);
            return;
        }
        let Some(known) = self.previous.remove(&key) else {
            // Not unless the above does not hold: the event goes on
            // without them.
            tracing::debug!("pid {pid}: no executable kept for its process image");
            return;
        };
        give_back(&known, who);
        self.keep(key, known);
    }

    fn keep(&mut self, key: Key, image: Image) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(image: ProcessImage, sent: bool, exe: &str) -> Who {
        Who {
            image: Some(image),
            image_sent: sent,
            exe: (!sent).then(|| exe.as_bytes().to_vec()),
            cmdline: if sent {
                Vec::new()
            } else {
                vec![exe.as_bytes().to_vec(), b"-x".to_vec()]
            },
            ..Who::default()
        }
    }

    const FIRST: ProcessImage = ProcessImage {
        start_boottime: 1_000,
        exec_id: 0,
    };
    const EXECED: ProcessImage = ProcessImage {
        start_boottime: 1_000,
        exec_id: 1,
    };

    #[test]
    fn later_events_of_an_image_get_its_executable_back() {
        let mut images = Images::default();
        let mut first = who(FIRST, false, "/bin/sh");
        images.settle(7, &mut first);
        let mut later = who(FIRST, true, "");
        images.settle(7, &mut later);
        assert_eq!(later, first);
        // After an exec, the pid's new image is its own.
        let mut execed = who(EXECED, false, "/usr/bin/touch");
        images.settle(7, &mut execed);
        let mut later = who(EXECED, true, "");
        images.settle(7, &mut later);
        assert_eq!(later.exe.as_deref(), Some(&b"/usr/bin/touch"[..]));
        // Another pid with the same start time and exec count is another
        // image.
        let mut other = who(FIRST, true, "");
        images.settle(8, &mut other);
        assert_eq!(other.exe, None);
    }

    #[test]
    fn an_image_seen_in_either_generation_is_kept() {
        let mut images = Images::default();
        let mut hot = who(FIRST, false, "/bin/hot");
        images.settle(1, &mut hot.clone());
        for pid in 2..(2 * GENERATION as u32 + 2) {
            images.settle(pid, &mut who(FIRST, false, "/bin/other"));
            // Seen now and then, as a process writing all along is.
            if pid % (GENERATION as u32 / 2) == 0 {
                let mut again = who(FIRST, true, "");
                images.settle(1, &mut again);
                assert_eq!(again, hot, "at {pid}");
                hot = again;
            }
        }
        // One not seen for two generations is gone.
        let mut old = who(FIRST, true, "");
        images.settle(2, &mut old);
        assert_eq!(old.exe, None);
    }
}
