//! How much of the ring buffer the kernel wrote and watcher has not read:
//! its consumer and producer positions, mapped read-only beside aya's
//! reader. The metrics serve it, and the session looks again while it is
//! not nothing (a record another CPU has not submitted yet holds up those
//! after it, and may be submitted without a wakeup).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// The ring buffer's consumer and producer positions, mapped read-only:
/// their difference is what the kernel wrote (or is writing) and watcher
/// has not read.
#[derive(Debug)]
pub struct RingFill {
    /// Two pages: the consumer position's, then the producer position's.
    positions: NonNull<libc::c_void>,
    page: usize,
    size: u32,
}

// SAFETY: the mapping is shared, read-only, and only read through atomic
// loads; it lives until drop.
unsafe impl Send for RingFill {}
// SAFETY: as for Send: nothing is written through it.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Over the ring buffer `ring`, of `size` bytes.
    pub fn new(ring: BorrowedFd, size: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        // SAFETY: a new read-only shared mapping of the ring buffer's first
        // two pages, which the kernel lets any holder of the fd map
        // read-only; the result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            positions: NonNull::new(addr).ok_or_else(|| io::Error::other("mapped at 0"))?,
            page,
            size,
        })
    }

    /// Bytes reserved by the programs (submitted or not yet) and not read.
    pub fn used(&self) -> u64 {
        let base = self.positions.as_ptr().cast::<u8>();
        // SAFETY: each position is an aligned u64 at the start of its page
        // of the live mapping, which the kernel updates atomically.
        let (consumer, producer) = unsafe {
            (
                (*base.cast::<AtomicU64>()).load(Ordering::Acquire),
                (*base.add(self.page).cast::<AtomicU64>()).load(Ordering::Acquire),
            )
        };
        producer.saturating_sub(consumer)
    }

    pub fn size(&self) -> u32 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once.
        unsafe { libc::munmap(self.positions.as_ptr(), 2 * self.page) };
    }
}
