//! The ring buffer beside aya's reader: how much of it the kernel wrote
//! and watcher has not read (its consumer and producer positions, mapped
//! read-only), which the metrics serve and the session looks at to know
//! whether to look again; and when watcher will look again, which the
//! programs read to decide whether a record wakes it.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use watcher_core::event::clock_ns;

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
        let page = page_size()?;
        // The ring buffer's first two pages, which the kernel lets any
        // holder of the fd map read-only.
        Ok(Self {
            positions: map_shared(ring, 2 * page, libc::PROT_READ)?,
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

/// When watcher will look at the ring buffer again, as the programs read it
/// to decide whether a record wakes it (`READER`, one value, mapped
/// read-write): see `watcher_common::WAKEUP_MARGIN_NS`.
#[derive(Debug)]
pub struct ReaderDue {
    value: NonNull<libc::c_void>,
    page: usize,
}

impl ReaderDue {
    /// Over the `READER` map, made mappable by the programs.
    pub fn new(map: BorrowedFd) -> io::Result<Self> {
        let page = page_size()?;
        // The array's values: its first page holds the one value.
        Ok(Self {
            value: map_shared(map, page, libc::PROT_READ | libc::PROT_WRITE)?,
            page,
        })
    }

    /// Watcher will look again at `due`, or not unless woken (`None`).
    pub fn set(&self, due: Option<Instant>) {
        // On the clock the programs read: boot time, in ns.
        let value = due.map_or(0, |due| {
            let ahead = due.saturating_duration_since(Instant::now());
            let now = u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0);
            now.saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX))
        });
        // SAFETY: the value is an aligned u64 at the start of the live
        // mapping; the programs only read it.
        unsafe { (*self.value.as_ptr().cast::<AtomicU64>()).store(value, Ordering::Release) };
    }
}

fn page_size() -> io::Result<usize> {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .map_err(|_| io::Error::other("no page size"))
}

/// A new shared mapping of `len` bytes of the map `fd` from its start,
/// with `prot`; unmapped by its owner.
fn map_shared(fd: BorrowedFd, len: usize, prot: i32) -> io::Result<NonNull<libc::c_void>> {
    // SAFETY: a new mapping, at an address the kernel picks, of a map fd
    // that stays open for the call; the result is checked.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr).ok_or_else(|| io::Error::other("mapped at 0"))
}

impl Drop for ReaderDue {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once.
        unsafe { libc::munmap(self.value.as_ptr(), self.page) };
    }
}
