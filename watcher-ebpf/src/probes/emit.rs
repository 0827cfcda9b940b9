//! The event program: the others hand their events over to it by a tail
//! call (`event::hand_over`, through `EMIT`), with the targets and the
//! [`Hit`](crate::scratch::Hit) in the scratch map. It is never attached.
//! Verifier workaround: the event path (the full walk, the paths, the
//! process and the record) is most of the programs' code; here it is
//! checked once, where each program that sends events checked it again
//! (about 20,000 instructions each, most of watcher's start-up).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use aya_log_ebpf::debug;
use watcher_common::WATCH_NONE;

use super::process::close_at_exit;
use crate::{
    error::Error,
    event,
    files::track_opened,
    maps::{IO_REQS, op},
};

#[tracepoint]
pub fn emit(ctx: TracePointContext) -> u32 {
    if let Err(Error::Helper(e)) = try_emit(&ctx) {
        debug!(&ctx, target: "bpf", "emit: a helper failed with {}, no event", e);
    }
    0
}

#[inline(always)]
fn try_emit(ctx: &TracePointContext) -> Result<(), Error> {
    let hit = op().ok_or(Error::NoScratch)?.hit;
    if hit.exiting != 0 {
        close_at_exit(hit.exiting);
        return Ok(());
    }
    let watch = event::emit();
    // After the event: its names were read from the entry.
    if hit.io_req != 0 {
        let _ = IO_REQS.remove(&hit.io_req);
    }
    let watch = watch?;
    if watch == Some(WATCH_NONE) {
        debug!(
            ctx,
            target: "bpf",
            "syscall id {}: the walk ended before a watch was decided, event sent undecided",
            hit.syscall
        );
    }
    if hit.track {
        track_opened((bpf_get_current_pid_tgid() >> 32) as u32, hit.ret, watch);
    }
    Ok(())
}
