//! Why a program stops short of an event.

/// A helper failed, with this error code (a negative errno). What reads of
/// kernel memory (`read`, `vfs`) fail with: those can fail no other way,
/// and the bare code costs the verifier less than [`Error`] would there
/// (a few hundred instructions more in `sys_exit`).
#[derive(Clone, Copy)]
pub struct HelperError(pub i64);

/// Why a program stops short of an event. The programs return the same
/// value to the kernel whatever it is; only a helper's failure is worth a
/// debug line (`--bpf-log`), the others are the ordinary ways of not being
/// an event.
#[derive(Clone, Copy)]
pub enum Error {
    /// A BPF helper failed, with this error code (a negative errno).
    Helper(i64),
    /// The thread has no arguments stashed at `sys_enter`: not a syscall
    /// to look at (most are not).
    NotStashed,
    /// No spec for this syscall number: not one user space traces.
    NoSpec,
    /// The descriptor is outside the task's descriptor table.
    BadFd,
    /// The per-CPU scratch value, or the target asked for in it, is not
    /// there: never, but the verifier wants every lookup checked.
    NoScratch,
    /// The tail call into the event program failed: its slot in `EMIT`
    /// is empty, which it is not once user space filled it.
    NoEmitProgram,
}

impl Error {
    /// A helper's failure, whatever the integer type of its error code.
    #[inline(always)]
    pub fn helper(code: impl Into<i64>) -> Self {
        Self::Helper(code.into())
    }

    /// How a global function returns the error (a global function, a
    /// verifier workaround, is checked once on its own, and returns an
    /// integer): below -1, so that its values may be -1 and up.
    #[inline(always)]
    pub fn code(self) -> i64 {
        match self {
            Self::Helper(code) => code - HELPER_FAILED,
            _ => FAILED,
        }
    }

    /// The result a global function's integer stands for: a value (-1
    /// and up), or the error [`code`](Self::code) made of it (any error
    /// but a helper's comes back as `NoScratch`).
    #[inline(always)]
    pub fn from_code(code: i64) -> Result<i64, Self> {
        match code {
            value if value > FAILED => Ok(value),
            FAILED => Err(Self::NoScratch),
            code => Err(Self::Helper(code + HELPER_FAILED)),
        }
    }
}

/// [`Error::code`] of an error other than a helper's; a helper's error
/// code (a negative errno) minus `HELPER_FAILED`.
const FAILED: i64 = -2;
const HELPER_FAILED: i64 = 1 << 32;

impl From<HelperError> for Error {
    #[inline(always)]
    fn from(HelperError(code): HelperError) -> Self {
        Self::Helper(code)
    }
}
