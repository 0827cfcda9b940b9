//! The executables and command lines of the process images seen: the
//! kernel sends them with an image's first event only (see
//! `watcher_common::ProcessImage`), and the events after it get them back
//! here.

use std::{collections::HashMap, sync::Arc};

use foldhash::fast::RandomState;
use watcher_common::{MAX_IMAGES, ProcessImage};

use crate::event::{Program, Who};

/// An image: a pid and what it runs from one exec to the next.
type Key = (u32, ProcessImage);

/// The images, in two generations: an image seen in this one or the one
/// before is kept, one neither saw is forgotten. The kernel forgets the
/// least recently used of its [`MAX_IMAGES`] (and then sends them again),
/// so a generation of twice as many keeps every image it still
/// remembers: each event the kernel looks an image up for comes here too.
#[derive(Default)]
pub struct Images {
    current: HashMap<Key, Arc<Program>, RandomState>,
    previous: HashMap<Key, Arc<Program>, RandomState>,
}

/// Images seen in one generation.
const GENERATION: usize = 2 * MAX_IMAGES as usize;

impl Images {
    /// Keeps what the event of process `pid` says of its image, or gives
    /// it back to an event that left it out.
    pub fn settle(&mut self, pid: u32, who: &mut Who) {
        let Some(image) = who.image else {
            return;
        };
        let key = (pid, image);
        if !who.image_sent {
            if let Some(program) = &who.program {
                self.keep(key, Arc::clone(program));
            }
            return;
        }
        let known = match self.current.get(&key) {
            Some(known) => Arc::clone(known),
            None => {
                let Some(known) = self.previous.remove(&key) else {
                    // Not unless the above does not hold: the event goes
                    // on without them.
                    tracing::debug!("pid {pid}: no executable kept for its process image");
                    return;
                };
                self.keep(key, Arc::clone(&known));
                known
            }
        };
        who.program = Some(known);
        who.image_sent = false;
    }

    fn keep(&mut self, key: Key, program: Arc<Program>) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, program);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(image: ProcessImage, sent: bool, exe: &str) -> Who {
        Who {
            image: Some(image),
            image_sent: sent,
            program: (!sent).then(|| {
                Arc::new(Program {
                    exe: Some(exe.as_bytes().to_vec()),
                    cmdline: vec![exe.as_bytes().to_vec(), b"-x".to_vec()],
                    ..Program::default()
                })
            }),
            ..Who::default()
        }
    }

    fn exe(who: &Who) -> Option<&[u8]> {
        who.program.as_ref()?.exe.as_deref()
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
        assert_eq!(exe(&later), Some(&b"/usr/bin/touch"[..]));
        // Another pid with the same start time and exec count is another
        // image.
        let mut other = who(FIRST, true, "");
        images.settle(8, &mut other);
        assert_eq!(exe(&other), None);
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
        assert_eq!(exe(&old), None);
    }
}
