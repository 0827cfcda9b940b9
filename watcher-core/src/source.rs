//! Where events come from: what a session (the attached programs and their
//! ring buffer, in the binary) yields, as the sinks and the runner take it.

use std::{future::Future, path::Path};

use crate::{
    event::Event,
    settings::Plan,
    watch::{Moved, Watch},
    writers::Writer,
};

/// What a session yields, in order. After [`Item::Stop`] nothing else
/// comes: the events still in the ring buffer and the last losses come
/// before it.
#[derive(Debug)]
pub enum Item {
    /// Events decoded, placed, filtered and expanded, as many as were ready.
    Events(Vec<Event>),
    /// Events the kernel could not send (its ring buffer was full), per
    /// watch id (`None`: undecided), since the last report.
    Lost(Vec<(Option<u32>, u64)>),
    /// Watched directories that went away or came back: the session
    /// watches what they are now.
    Moved(Vec<Moved>),
    /// SIGHUP.
    Hup,
    /// SIGINT or SIGTERM.
    Stop,
}

/// A source of [`Item`]s with the kernel's side of the runner: its change
/// flags, its action slots and its watches. Implemented by the session
/// over the real programs, and by a scripted source in the runner's tests.
pub trait Source {
    /// The next item; cancel-safe (it may be dropped in a `select!`).
    fn next(&mut self) -> impl Future<Output = Item>;
    /// What is watched now.
    fn watches(&self) -> &[Watch];
    /// The watches the kernel flagged as changed since the last call.
    fn take_flags(&mut self) -> Vec<u32>;
    /// Which of `writers` are still open for writing on their files.
    fn still_open(&self, writers: &[Writer]) -> Vec<bool> {
        writers.iter().map(Writer::still_open).collect()
    }
    /// Tells the kernel which job's action the next fork starts.
    fn set_action_slot(&mut self, slot: u32);
    /// Watches anew under `plan` (a reload), keeping the ids of watches
    /// that stay.
    fn rewatch(&mut self, plan: &Plan) -> anyhow::Result<()>;
    /// Whether `dir` was named, and is not watched now: it went away.
    fn gone(&self, dir: &Path) -> bool;
}
