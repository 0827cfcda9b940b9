//! What user space reads besides the events: a flag per watch that
//! something under it changed (`DIRTY`), and a count per watch of the
//! events lost (`LOST`), each with a summary slot.

use watcher_common::SUMMARY_SLOT;

use crate::maps::{DIRTY, LOST, op};

/// Raises the flag of `slot`, unless an action of watcher made the
/// change: its own job must not take it for a change (and the others get
/// the event).
#[inline(always)]
pub fn mark_dirty(slot: u32) {
    if op().is_some_and(|op| op.origin != 0) {
        return;
    }
    // The watch's flag before the summary: user space clears the summary
    // before it reads the flags, so a flag raised after its read raises
    // the summary again for the next one.
    for slot in [slot, SUMMARY_SLOT] {
        if let Some(dirty) = DIRTY.get_ptr_mut(slot) {
            // SAFETY: a pointer to a map value, valid and aligned while the
            // program runs. Only ever set to 1 here and to 0 by user space,
            // so concurrent writers need no atomics; volatile, so the two
            // stay in order.
            unsafe { core::ptr::write_volatile(dirty, 1) };
        }
    }
}

/// Counts an event of `slot` that did not fit in the ring buffer.
#[inline(always)]
pub fn count_lost(slot: u32) {
    for slot in [slot, SUMMARY_SLOT] {
        if let Some(slot) = LOST.get_ptr_mut(slot) {
            // SAFETY: a pointer to this CPU's map value, valid and aligned
            // while the program runs. A plain increment is enough: the slot
            // belongs to this CPU and syscall tracepoint programs neither
            // nest nor get preempted (and the BPF target has no atomic
            // read-modify-write in Rust's core).
            unsafe { *slot += 1 };
        }
    }
}
