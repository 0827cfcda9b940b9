//! Process lifetimes, for `EXCLUDED`: a process forked by watcher or by an
//! excluded process is excluded from birth (so an action cannot write
//! before it is known), and leaves the map when it exits.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use crate::{
    config::{tp_offsets, watcher_tgid},
    maps::EXCLUDED,
};

/// Whether writes by the process `tgid` are left out.
#[inline(always)]
pub fn is_excluded(tgid: u32) -> bool {
    tgid == watcher_tgid() || unsafe { EXCLUDED.get(&tgid) }.is_some()
}

/// Runs in the parent. A new thread has the parent's tgid, which is
/// already covered; its tid, inserted too, is removed when it exits.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_excluded(parent) {
        if let Ok(child) = unsafe { ctx.read_at::<u32>(tp_offsets().fork_child_pid as usize) } {
            let _ = EXCLUDED.insert(&child, &1, 0);
        }
    }
    0
}

/// Runs for every exiting thread; the key is only present for excluded
/// processes (and the threads of their forks).
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = EXCLUDED.remove(&tid);
    0
}
