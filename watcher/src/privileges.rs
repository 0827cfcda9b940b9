//! Whether this process may load and attach tracing programs.

/// Capability numbers from `linux/capability.h`.
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
