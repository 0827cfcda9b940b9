//! Loading the eBPF programs, handing them their globals and the watched
//! directories, and attaching them to the syscall tracepoints.

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, TracePoint, trace_point::TracePointLink},
};
use watcher_common::{
    Edge, EdgeKey, InodeKey, KernelOffsets, SyscallSpec, TASK_COMM_LEN, TracepointOffsets,
    UNDECIDED_SLOT, WATCH_PREFIX_MAX, filter, match_mode,
};

use crate::{filter::ProcessFilter, syscalls::Spec, tracefs::PROCESS_TRACEPOINTS, watch::Watch};

/// The object aya-build compiled from watcher-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/watcher"));

/// Default size of the `EVENTS` ring buffer.
pub const RING_BUFFER_BYTES: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load the eBPF object: {0}")]
    Object(#[source] EbpfError),
    #[error("the object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {program} is not a tracepoint program: {source}")]
    ProgramType {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    /// The verifier refused a program; its log is kept apart so that the
    /// one-line message stays one line.
    #[error("the kernel refused program {program}: {io_error} (run with -v for the verifier log)")]
    Verifier {
        program: &'static str,
        io_error: std::io::Error,
        log: String,
    },
    #[error("cannot load program {program}: {source}")]
    Load {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot attach program {program} to tracepoint {tracepoint}: {source}")]
    Attach {
        program: &'static str,
        /// `category/name`.
        tracepoint: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot use map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

impl LoadError {
    /// The verifier's log, when the verifier refused a program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            Self::Verifier { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// Map `name`, borrowed from the loaded object.
fn map_mut<'a>(
    name: &'static str,
    ebpf: &'a mut Ebpf,
) -> Result<&'a mut aya::maps::Map, LoadError> {
    ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    /// Taken from their programs, so that dropping detaches them all at
    /// once (see `Drop`).
    links: Vec<TracePointLink>,
    // Owns programs and maps; kept alive for as long as watching goes on.
    _ebpf: Ebpf,
    lost: PerCpuArray<MapData, u64>,
    dirty: Array<MapData, u32>,
    watch_ids: Vec<u32>,
}

/// What the programs are loaded with.
pub struct Setup<'a> {
    pub watches: &'a [Watch],
    /// The directories on the way to each watch (exact mode).
    pub edges: &'a [(EdgeKey, Edge)],
    pub specs: &'a [Spec],
    pub offsets: &'a TracepointOffsets,
    /// With them the match is exact, without them by prefix.
    pub kernel: Option<&'a KernelOffsets>,
    pub ring_buffer_bytes: u32,
    /// The selected event kinds, as `event_kind::bit`s.
    pub event_mask: u32,
    pub filters: &'a ProcessFilter,
}

impl Probes {
    /// Loads the programs, fills the maps and attaches every program.
    /// Returns them with the ring buffer their events arrive in.
    pub fn load(setup: &Setup) -> Result<(Self, RingBuf<MapData>), LoadError> {
        let Setup {
            watches,
            edges,
            specs,
            offsets,
            kernel,
            ring_buffer_bytes,
            event_mask,
            filters,
        } = *setup;
        let tgid = std::process::id();
        let mode = match kernel {
            Some(_) => match_mode::EXACT,
            None => match_mode::PREFIX,
        };
        let mut ebpf = EbpfLoader::new()
            // No CO-RE relocations to make: the offsets come in
            // KERNEL_OFFSETS.
            .btf(None)
            .override_global("TP_OFFSETS", offsets, true)
            .override_global(
                "KERNEL_OFFSETS",
                kernel.unwrap_or(&KernelOffsets::default()),
                true,
            )
            .override_global("MATCH_MODE", &mode, true)
            .override_global("EVENT_MASK", &event_mask, true)
            .override_global("WATCHER_TGID", &tgid, true)
            .override_global("FILTERS", &filters.bits(), true)
            .map_max_entries("EVENTS", ring_buffer_bytes)
            .load(OBJECT)
            .map_err(LoadError::Object)?;

        let map = |name: &'static str, ebpf: &mut Ebpf| {
            ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
        };
        let map_err = |map: &'static str| move |source| LoadError::Map { map, source };

        // Borrowed, not taken: a taken map closes when dropped, and the
        // programs are yet to be loaded with it.
        let mut spec_map: Array<_, SyscallSpec> =
            Array::try_from(map_mut("SPECS", &mut ebpf)?).map_err(map_err("SPECS"))?;
        for spec in specs {
            spec_map
                .set(spec.nr, spec.spec, 0)
                .map_err(map_err("SPECS"))?;
        }
        fill_filters(&mut ebpf, filters)?;
        if kernel.is_some() {
            let mut edge_map: HashMap<_, EdgeKey, Edge> =
                HashMap::try_from(map_mut("EDGES", &mut ebpf)?).map_err(map_err("EDGES"))?;
            for (key, edge) in edges {
                edge_map.insert(key, edge, 0).map_err(map_err("EDGES"))?;
            }
            let mut inodes: HashMap<_, InodeKey, u32> =
                HashMap::try_from(map_mut("WATCH_INODES", &mut ebpf)?)
                    .map_err(map_err("WATCH_INODES"))?;
            for watch in watches {
                inodes
                    .insert(watch.key, watch.id, 0)
                    .map_err(map_err("WATCH_INODES"))?;
            }
            let mut devs: HashMap<_, u32, u8> =
                HashMap::try_from(map_mut("WATCH_DEVS", &mut ebpf)?)
                    .map_err(map_err("WATCH_DEVS"))?;
            for watch in watches {
                devs.insert(watch.key.dev, 1, 0)
                    .map_err(map_err("WATCH_DEVS"))?;
            }
        } else {
            let mut trie: LpmTrie<_, [u8; WATCH_PREFIX_MAX], u32> =
                LpmTrie::try_from(map_mut("WATCHES", &mut ebpf)?).map_err(map_err("WATCHES"))?;
            for watch in watches {
                let (bits, data) = watch.lpm_key();
                trie.insert(&Key::new(bits, data), watch.id, 0)
                    .map_err(map_err("WATCHES"))?;
            }
        }

        // One enter and one exit program for every syscall; enter
        // attached last, so that no stash is written that nothing would
        // take back, and no action is forked unseen.
        let syscall_tracepoints = |side: &str| {
            specs
                .iter()
                .map(|spec| ("syscalls", format!("sys_{side}_{}", spec.name)))
                .collect::<Vec<_>>()
        };
        let mut links = Vec::new();
        let mut plan = vec![("sys_exit", syscall_tracepoints("exit"))];
        for (category, name) in PROCESS_TRACEPOINTS {
            plan.push((name, vec![(category, name.to_string())]));
        }
        plan.push(("sys_enter", syscall_tracepoints("enter")));
        for (program, tracepoints) in plan {
            let tp: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(LoadError::MissingProgram(program))?
                .try_into()
                .map_err(|source| LoadError::ProgramType { program, source })?;
            tp.load().map_err(|source| match source {
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => LoadError::Verifier {
                    program,
                    io_error,
                    log: verifier_log.to_string(),
                },
                source => LoadError::Load { program, source },
            })?;
            for (category, tracepoint) in tracepoints {
                let attached = tp
                    .attach(category, &tracepoint)
                    .and_then(|id| tp.take_link(id));
                links.push(attached.map_err(|source| LoadError::Attach {
                    program,
                    tracepoint: format!("{category}/{tracepoint}"),
                    source: Box::new(source),
                })?);
            }
        }

        let events = RingBuf::try_from(map("EVENTS", &mut ebpf)?).map_err(map_err("EVENTS"))?;
        let lost = PerCpuArray::try_from(map("LOST", &mut ebpf)?).map_err(map_err("LOST"))?;
        let dirty = Array::try_from(map("DIRTY", &mut ebpf)?).map_err(map_err("DIRTY"))?;
        let probes = Self {
            links,
            _ebpf: ebpf,
            lost,
            dirty,
            watch_ids: watches.iter().map(|w| w.id).collect(),
        };
        Ok((probes, events))
    }

    /// The watches whose dirty flag the kernel set since the last call, and
    /// clears them. An undecided change flags every watch.
    pub fn take_dirty(&mut self) -> Result<Vec<u32>, MapError> {
        let mut dirty = Vec::new();
        for &id in self.watch_ids.iter().chain(&[UNDECIDED_SLOT]) {
            if self.dirty.get(&id, 0)? != 0 {
                self.dirty.set(id, 0, 0)?;
                dirty.push(id);
            }
        }
        if dirty.contains(&UNDECIDED_SLOT) {
            return Ok(self.watch_ids.clone());
        }
        Ok(dirty)
    }

    /// Events the kernel side could not put in the ring buffer so far,
    /// summed over the CPUs: per watch id, and (`None`) for undecided
    /// events.
    pub fn lost(&self) -> Result<Vec<(Option<u32>, u64)>, MapError> {
        self.watch_ids
            .iter()
            .map(|&id| (Some(id), id))
            .chain([(None, UNDECIDED_SLOT)])
            .map(|(watch, slot)| Ok((watch, self.lost.get(&slot, 0)?.iter().sum())))
            .collect()
    }
}

/// The keys of the process filters that are on.
fn fill_filters(ebpf: &mut Ebpf, filters: &ProcessFilter) -> Result<(), LoadError> {
    let map_err = |map: &'static str| move |source| LoadError::Map { map, source };
    let mut pids: HashMap<_, u32, u8> =
        HashMap::try_from(map_mut("FILTER_PIDS", ebpf)?).map_err(map_err("FILTER_PIDS"))?;
    for pid in &filters.pids {
        pids.insert(pid, 1, 0).map_err(map_err("FILTER_PIDS"))?;
    }
    let mut uids: HashMap<_, u32, u8> =
        HashMap::try_from(map_mut("FILTER_UIDS", ebpf)?).map_err(map_err("FILTER_UIDS"))?;
    for uid in &filters.uids {
        uids.insert(uid, 1, 0).map_err(map_err("FILTER_UIDS"))?;
    }
    let mut comms: HashMap<_, [u8; TASK_COMM_LEN], u8> =
        HashMap::try_from(map_mut("FILTER_COMMS", ebpf)?).map_err(map_err("FILTER_COMMS"))?;
    let listed = [
        (&filters.comms, filter::COMM_INCLUDE),
        (&filters.exclude_comms, filter::COMM_EXCLUDE),
    ];
    for (names, value) in listed {
        for comm in names {
            comms
                .insert(comm.0, value, 0)
                .map_err(map_err("FILTER_COMMS"))?;
        }
    }
    Ok(())
}

impl Drop for Probes {
    /// Detaching a tracepoint waits for an RCU grace period (about 70 ms
    /// here), one after the other when the links are dropped in turn: 5 s
    /// for watcher's 78. Dropped from a thread each, the waits overlap.
    fn drop(&mut self) {
        std::thread::scope(|scope| {
            for link in self.links.drain(..) {
                if let Err(e) = std::thread::Builder::new().spawn_scoped(scope, move || drop(link))
                {
                    // No thread: this one detaches it (the closure, and the
                    // link in it, are dropped with the error).
                    drop(e);
                }
            }
        });
    }
}
