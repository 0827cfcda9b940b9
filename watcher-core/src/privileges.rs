//! Whether this process may load and attach tracing programs.

/// Capability numbers from `linux/capability.h`.
const CAP_SETPCAP: u32 = 8;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read this process's capabilities: {0}")]
    Proc(#[from] procfs::ProcError),
    #[error(
        "watcher needs root (or CAP_BPF and CAP_PERFMON) to load its eBPF programs; run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "watcher needs CAP_SETPCAP to keep its own capabilities ({}) from its actions; add it \
         to the service's CapabilityBoundingSet",
        ACTION_DROPS.map(|(_, name)| name).join(", ")
    )]
    CannotDropForActions,
}

/// Capabilities watcher holds for itself and no action gets: loading and
/// attaching eBPF programs and reading kernel memory (CAP_BPF,
/// CAP_PERFMON), and reading other processes' descriptors and memory
/// (CAP_SYS_PTRACE). An action that rescans a library or ingests files
/// needs none of them, and one that had them could blind or detach
/// watcher. Every other capability a root command has, a root action has.
pub const ACTION_DROPS: [(u32, &str); 3] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
];

/// Checks, before anything runs, that [`for_action`] will be able to drop
/// [`ACTION_DROPS`]: each is out of the bounding set already, or this
/// process holds CAP_SETPCAP.
pub fn check_actions() -> Result<(), PrivilegeError> {
    let status = procfs::process::Process::myself()?.status()?;
    let bounding = status.capbnd.unwrap_or(u64::MAX);
    let needed = ACTION_DROPS
        .iter()
        .any(|&(cap, _)| bounding & (1 << cap) != 0);
    if needed && status.capeff & (1 << CAP_SETPCAP) == 0 {
        return Err(PrivilegeError::CannotDropForActions);
    }
    Ok(())
}

/// In an action's process, after fork and before exec: drops
/// [`ACTION_DROPS`] from the bounding set (for root, exec grants the whole
/// bounding set: dropping them only from the effective set would not last
/// past exec) and clears the ambient set. Async-signal-safe: syscalls only.
pub fn for_action() -> std::io::Result<()> {
    for (cap, _) in ACTION_DROPS {
        // SAFETY: prctl with integer arguments only.
        let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if held == 1
            // SAFETY: as above.
            && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: as above.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What this process holds, for messages.
pub struct Privileges {
    pub euid: u32,
    pub caps: Vec<&'static str>,
}

/// Checks that the effective capabilities allow loading tracepoint
/// programs: CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
pub fn check() -> Result<Privileges, PrivilegeError> {
    let status = procfs::process::Process::myself()?.status()?;
    let has = |cap: u32| status.capeff & (1 << cap) != 0;
    let caps: Vec<&'static str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|&(cap, _)| has(cap))
    .map(|(_, name)| name)
    .collect();
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(PrivilegeError::NotPrivileged);
    }
    Ok(Privileges {
        euid: status.euid,
        caps,
    })
}
