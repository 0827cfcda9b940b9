//! Loading the eBPF programs, handing them their globals and the watched
//! directories, and attaching them to the syscall tracepoints.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{Program, ProgramError, TracePoint, trace_point::TracePointLink},
    util::nr_cpus,
};
use aya_log::EbpfLogger;
use watcher_common::{
    Edge, EdgeKey, InodeKey, IoUringOffsets, KernelOffsets, SUMMARY_SLOT, SYSCALL_ARGS_WORD,
    Settings, SyscallSpec, TASK_COMM_LEN, TracepointOffsets, UNDECIDED_SLOT, WATCH_PREFIX_MAX,
    WatchBits, event_kind, filter, match_mode, names, shape,
};
use watcher_core::{filter::ProcessFilter, syscall::Syscall, watch::Watch};

use crate::{
    kfunc,
    syscalls::{self, Spec},
    tracefs::PROCESS_TRACEPOINTS,
};

/// The object aya-build compiled from watcher-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/watcher"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load the eBPF object: {0}")]
    Object(#[source] EbpfError),
    #[error(transparent)]
    Patch(#[from] kfunc::PatchError),
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
    #[error("cannot read the eBPF programs' logs: {0}")]
    Logger(#[source] aya_log::Error),
    #[error("cannot count the CPUs ({0}): {1}")]
    Cpus(&'static str, #[source] std::io::Error),
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
fn map_mut<'a>(name: &'static str, ebpf: &'a mut Ebpf) -> Result<&'a mut Map, LoadError> {
    ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))
}

/// The event program, never attached: the others hand their events over
/// to it by a tail call, through `EMIT`.
const EMIT_PROGRAM: &str = "emit";

/// The io_uring programs and their tracepoints, in the order they are
/// attached.
const IO_URING_TRACEPOINTS: [(&str, &str); 2] = [
    ("io_uring_complete", "io_uring_complete"),
    ("io_uring_submit", "io_uring_submit_req"),
];

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    /// The `sys_enter`/`sys_exit` links of each traced syscall, by name.
    /// Taken from their programs, so that dropping detaches them all at
    /// once (see `Drop`).
    syscall_links: BTreeMap<Syscall, Vec<TracePointLink>>,
    /// The process tracepoints' links.
    links: Vec<TracePointLink>,
    /// Owns programs and maps; kept alive for as long as watching goes on.
    ebpf: Ebpf,
    lost: PerCpuArray<MapData, u64>,
    /// The last [`Probes::lost`]: the total it was read at, and its counts
    /// (none after the watches changed).
    lost_seen: Option<(u64, Losses)>,
    dirty: Array<MapData, u32>,
    /// What the kernel side was last given (exact mode).
    watches: Vec<Watch>,
    edges: HashSet<EdgeKey>,
    exact: bool,
    /// Every syscall this kernel can trace; attached are those the
    /// selected kinds need.
    specs: Vec<Spec>,
    /// `Settings::generation`, raised with every change of the watches.
    generation: u32,
}

/// Events lost so far, per watch id (`None`: undecided events).
pub type Losses = Vec<(Option<u32>, u64)>;

/// Where the eBPF programs' logs are read (`--bpf-log`).
pub type Logger = EbpfLogger<&'static dyn log::Log>;

/// What the programs are loaded with.
pub struct Setup<'a> {
    pub specs: &'a [Spec],
    pub offsets: &'a TracepointOffsets,
    /// With them the match is exact, without them by prefix.
    pub kernel: Option<&'a KernelOffsets>,
    /// With them (exact mode, a kernel with io_uring and its
    /// tracepoints), io_uring operations are followed.
    pub io_uring: Option<&'a IoUringOffsets>,
    pub ring_buffer_bytes: u32,
    /// The eBPF side's log level (`aya_log::Level` as u8; 0: off).
    pub log_level: u8,
    /// The BTF id of `bpf_rdonly_cast` when the kernel takes the
    /// programs' direct reads through it (`kfunc::fast_reads`); without it
    /// they read through `bpf_probe_read_kernel`.
    pub fast_reads: Option<u32>,
    pub watching: &'a Watching<'a>,
    /// Every kind that may be selected while the programs run
    /// (`event_kind::bit`s): the maps only other kinds use are made
    /// small.
    pub kinds: u32,
}

/// What a reload may change while the programs stay attached.
pub struct Watching<'a> {
    pub watches: &'a [Watch],
    /// The directories on the way to each watch (exact mode).
    pub edges: &'a [(EdgeKey, Edge)],
    /// The selected event kinds, as `event_kind::bit`s.
    pub event_mask: u32,
    pub filters: &'a ProcessFilter,
    /// Trace watcher's actions and tag their events (`Settings::tag_actions`).
    pub tag_actions: bool,
    /// `Settings::modify_interval_ns`.
    pub modify_interval: Duration,
}

/// An aya loader, being made on a thread of its own while the rest of
/// start-up goes on (see [`hide_kernel_btf`]).
pub struct Loader(std::thread::JoinHandle<EbpfLoader<'static>>);

impl Loader {
    pub fn start() -> Self {
        Self(std::thread::spawn(|| {
            hide_kernel_btf();
            EbpfLoader::new()
        }))
    }

    fn get(self) -> EbpfLoader<'static> {
        self.0
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Probes {
    /// Loads the programs with `loader`, fills the maps and attaches every
    /// program. Returns them with the ring buffer their events arrive in,
    /// the map where watcher says when it will read it again (`READER`),
    /// and the eBPF side's logs when `log_level` is not 0.
    pub fn load(
        setup: &Setup,
        loader: Loader,
    ) -> Result<(Self, RingBuf<MapData>, MapData, Option<Logger>), LoadError> {
        let Setup {
            specs,
            offsets,
            kernel,
            io_uring,
            ring_buffer_bytes,
            log_level,
            fast_reads,
            watching,
            kinds,
        } = *setup;
        let tgid = std::process::id();
        let mode = match kernel {
            Some(_) => match_mode::EXACT,
            None => match_mode::PREFIX,
        };
        let object = kfunc::patch(OBJECT, fast_reads).map_err(LoadError::Patch)?;
        let specs = from_regs(specs, kernel);
        // The io_uring operations followed, by `IORING_OP_*` value.
        let io_specs = if io_uring.is_some() {
            syscalls::io_uring_specs()
        } else {
            Vec::new()
        };
        let (no_kernel, no_io_uring) = (KernelOffsets::default(), IoUringOffsets::default());
        let fast = u32::from(fast_reads.is_some());
        let mut loader: EbpfLoader<'_> = loader.get();
        loader
            // No CO-RE relocations to make: the offsets come in
            // KERNEL_OFFSETS.
            .btf(None)
            .override_global(names::TP_OFFSETS, offsets, true)
            .override_global(names::KERNEL_OFFSETS, kernel.unwrap_or(&no_kernel), true)
            .override_global(names::IO_OFFSETS, io_uring.unwrap_or(&no_io_uring), true)
            .override_global(names::MATCH_MODE, &mode, true)
            .override_global(names::FAST_READS, &fast, true)
            .override_global(names::WATCHER_TGID, &tgid, true)
            // Off (0), the verifier drops the logging code: it is in
            // `.rodata`, so the verifier knows the value.
            .override_global(aya_log::LEVEL, &log_level, true)
            .map_max_entries(names::EVENTS, ring_buffer_bytes);
        for name in unused_maps(&specs, &io_specs, kinds) {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader
            .load(kfunc::bytes(&object))
            .map_err(LoadError::Object)?;
        let logger = if log_level == 0 {
            None
        } else {
            Some(EbpfLogger::init(&mut ebpf).map_err(LoadError::Logger)?)
        };

        // Borrowed, not taken: a taken map closes when dropped, and the
        // programs are yet to be loaded with it.
        let mut spec_map: Array<_, SyscallSpec> =
            Array::try_from(map_mut(names::SPECS, &mut ebpf)?).map_err(map_err(names::SPECS))?;
        for spec in &specs {
            spec_map
                .set(spec.nr, spec.spec, 0)
                .map_err(map_err(names::SPECS))?;
        }
        if io_uring.is_some() {
            let mut io_spec_map: Array<_, SyscallSpec> =
                Array::try_from(map_mut(names::IO_SPECS, &mut ebpf)?)
                    .map_err(map_err(names::IO_SPECS))?;
            for &(opcode, spec) in &io_specs {
                io_spec_map
                    .set(u32::from(opcode), spec, 0)
                    .map_err(map_err(names::IO_SPECS))?;
            }
        }
        let mut programs: Vec<&'static str> = PROCESS_TRACEPOINTS
            .iter()
            .map(|&(_, name)| name)
            .chain([EMIT_PROGRAM, "sys_exit", "sys_enter"])
            .collect();
        if io_uring.is_some() {
            programs.extend(IO_URING_TRACEPOINTS.iter().map(|&(program, _)| program));
        }
        load_at_once(&mut ebpf, &programs)?;
        // Before anything is attached: every event goes through it.
        let emit = tracepoint_program(EMIT_PROGRAM, ebpf.program_mut(EMIT_PROGRAM))?
            .fd()
            .map_err(|source| LoadError::Load {
                program: EMIT_PROGRAM,
                source,
            })?
            .try_clone()
            .map_err(|e| LoadError::Load {
                program: EMIT_PROGRAM,
                source: e.into(),
            })?;
        ProgramArray::try_from(map_mut(names::EMIT, &mut ebpf)?)
            .map_err(map_err(names::EMIT))?
            .set(0, &emit, 0)
            .map_err(map_err(names::EMIT))?;
        let lost = PerCpuArray::try_from(take_map(names::LOST, &mut ebpf)?)
            .map_err(map_err(names::LOST))?;
        let dirty =
            Array::try_from(take_map(names::DIRTY, &mut ebpf)?).map_err(map_err(names::DIRTY))?;
        let mut probes = Self {
            syscall_links: BTreeMap::new(),
            links: Vec::new(),
            ebpf,
            lost,
            lost_seen: None,
            dirty,
            watches: Vec::new(),
            edges: HashSet::new(),
            exact: kernel.is_some(),
            specs,
            generation: 0,
        };
        // The process programs first, the syscall programs (exit before
        // enter, once their maps are filled) after them: no stash is
        // written that nothing would take back, and no action is forked
        // unseen.
        for (category, name) in PROCESS_TRACEPOINTS {
            let link = probes.attach(name, category, name)?;
            probes.links.push(link);
        }
        probes.set_watching(watching)?;
        if io_uring.is_some() {
            // Completion first: no request is kept that nothing would
            // take back.
            for (program, tracepoint) in IO_URING_TRACEPOINTS {
                let link = probes.attach(program, "io_uring", tracepoint)?;
                probes.links.push(link);
            }
        }
        let events = RingBuf::try_from(take_map(names::EVENTS, &mut probes.ebpf)?)
            .map_err(map_err(names::EVENTS))?;
        let Map::Array(reader) = take_map(names::READER, &mut probes.ebpf)? else {
            return Err(LoadError::MissingMap(names::READER));
        };
        Ok((probes, events, reader, logger))
    }

    /// Hands the programs new watches, kinds and process filters, while
    /// they stay attached: the tracepoints a new kind needs are attached,
    /// those no kind needs any more detached. A watch that stays keeps
    /// its id and entries throughout, so none of its changes is missed.
    pub fn set_watching(&mut self, w: &Watching) -> Result<(), LoadError> {
        // Filters off while their maps are rewritten: for a moment every
        // process passes (user space filters again), rather than none.
        let mut settings = Settings {
            event_mask: w.event_mask,
            filters: 0,
            tag_actions: u32::from(w.tag_actions),
            generation: self.generation,
            modify_interval_ns: u64::try_from(w.modify_interval.as_nanos()).unwrap_or(u64::MAX),
        };
        self.write_settings(&settings)?;
        fill_filters(&mut self.ebpf, w.filters)?;
        settings.filters = w.filters.bits();
        self.write_settings(&settings)?;

        let gone: Vec<Watch> = lacking(&self.watches, w.watches).cloned().collect();
        // A slot is reused only after its counters are cleared.
        let fresh: Vec<u32> = lacking(w.watches, &self.watches).map(|n| n.id).collect();
        for id in fresh {
            self.clear_slot(id)?;
        }
        if self.exact {
            let mut edge_map: HashMap<_, EdgeKey, Edge> =
                HashMap::try_from(map_mut(names::EDGES, &mut self.ebpf)?)
                    .map_err(map_err(names::EDGES))?;
            let keys: HashSet<EdgeKey> = w.edges.iter().map(|(key, _)| *key).collect();
            for (key, edge) in w.edges {
                edge_map
                    .insert(key, edge, 0)
                    .map_err(map_err(names::EDGES))?;
            }
            for key in self.edges.difference(&keys) {
                absent(edge_map.remove(key)).map_err(map_err(names::EDGES))?;
            }
            self.edges = keys;
            let mut inodes: HashMap<_, InodeKey, u32> =
                HashMap::try_from(map_mut(names::WATCH_INODES, &mut self.ebpf)?)
                    .map_err(map_err(names::WATCH_INODES))?;
            for watch in w.watches {
                inodes
                    .insert(watch.key, watch.id, 0)
                    .map_err(map_err(names::WATCH_INODES))?;
            }
            for watch in gone
                .iter()
                .filter(|g| !w.watches.iter().any(|n| n.key == g.key))
            {
                absent(inodes.remove(&watch.key)).map_err(map_err(names::WATCH_INODES))?;
            }
            let mut devs: HashMap<_, u32, u8> =
                HashMap::try_from(map_mut(names::WATCH_DEVS, &mut self.ebpf)?)
                    .map_err(map_err(names::WATCH_DEVS))?;
            for watch in w.watches {
                devs.insert(watch.key.dev, 1, 0)
                    .map_err(map_err(names::WATCH_DEVS))?;
            }
            // Two watches that go may share a device.
            let gone_devs: HashSet<u32> = gone
                .iter()
                .map(|g| g.key.dev)
                .filter(|dev| !w.watches.iter().any(|n| n.key.dev == *dev))
                .collect();
            for dev in gone_devs {
                absent(devs.remove(&dev)).map_err(map_err(names::WATCH_DEVS))?;
            }
            // After the maps: a bit set leads to an entry there. Copied
            // over the old bits while programs read them: each byte they
            // read is old or new, and a watch that stays has its bits set
            // in both.
            let mut bits = WatchBits::EMPTY;
            for watch in w.watches {
                WatchBits::set(&mut bits.inodes, WatchBits::inode_bit(&watch.key));
                WatchBits::set(&mut bits.devs, WatchBits::dev_bit(watch.key.dev));
            }
            Array::try_from(map_mut(names::WATCH_BITS, &mut self.ebpf)?)
                .and_then(|mut map: Array<_, WatchBits>| map.set(0, bits, 0))
                .map_err(map_err(names::WATCH_BITS))?;
        } else {
            let mut trie: LpmTrie<_, [u8; WATCH_PREFIX_MAX], u32> =
                LpmTrie::try_from(map_mut(names::WATCHES, &mut self.ebpf)?)
                    .map_err(map_err(names::WATCHES))?;
            for watch in w.watches {
                let (bits, data) = watch.lpm_key();
                trie.insert(&Key::new(bits, data), watch.id, 0)
                    .map_err(map_err(names::WATCHES))?;
            }
            for watch in gone
                .iter()
                .filter(|g| !w.watches.iter().any(|n| n.root == g.root))
            {
                let (bits, data) = watch.lpm_key();
                absent(trie.remove(&Key::new(bits, data))).map_err(map_err(names::WATCHES))?;
            }
        }
        // Every verdict about an open file reached before is decided again
        // (after the maps above, so that none is reached with the old ones
        // and kept).
        self.generation = self.generation.wrapping_add(1);
        settings.generation = self.generation;
        self.write_settings(&settings)?;
        self.watches = w.watches.to_vec();
        self.lost_seen = None;
        self.attach_syscalls(w.event_mask)
    }

    fn write_settings(&mut self, settings: &Settings) -> Result<(), LoadError> {
        let mut map: Array<_, Settings> =
            Array::try_from(map_mut(names::SETTINGS, &mut self.ebpf)?)
                .map_err(map_err(names::SETTINGS))?;
        map.set(0, settings, 0).map_err(map_err(names::SETTINGS))
    }

    /// The slot of the action forked next: its processes' changes carry
    /// it when actions are tagged.
    pub fn set_action_slot(&mut self, slot: u32) -> Result<(), LoadError> {
        let mut map: Array<_, u32> = Array::try_from(map_mut(names::ACTION_SLOT, &mut self.ebpf)?)
            .map_err(map_err(names::ACTION_SLOT))?;
        map.set(0, slot, 0).map_err(map_err(names::ACTION_SLOT))
    }

    /// Clears the dirty flag and loss counters of a watch id.
    fn clear_slot(&mut self, id: u32) -> Result<(), LoadError> {
        self.dirty.set(id, 0, 0).map_err(map_err(names::DIRTY))?;
        let zeros = PerCpuValues::try_from(vec![
            0u64;
            nr_cpus().map_err(|(what, e)| LoadError::Cpus(
                what, e
            ))?
        ])
        .map_err(|e| LoadError::Cpus("per-CPU values", e))?;
        self.lost.set(id, zeros, 0).map_err(map_err(names::LOST))
    }

    /// Attaches the syscalls `event_mask` needs and not yet attached
    /// (exit before enter), and detaches those it does not need.
    fn attach_syscalls(&mut self, event_mask: u32) -> Result<(), LoadError> {
        let specs = self.specs.clone();
        let needed: Vec<&Spec> = specs
            .iter()
            .filter(|s| s.spec.select & event_mask != 0)
            .collect();
        let unneeded: Vec<Syscall> = self
            .syscall_links
            .keys()
            .filter(|syscall| !needed.iter().any(|s| s.syscall == **syscall))
            .copied()
            .collect();
        detach(
            unneeded
                .iter()
                .filter_map(|syscall| self.syscall_links.remove(syscall))
                .flatten()
                .collect(),
        );
        for spec in needed {
            if self.syscall_links.contains_key(&spec.syscall) {
                continue;
            }
            let mut links = vec![self.attach(
                "sys_exit",
                "syscalls",
                &format!("sys_exit_{}", spec.syscall),
            )?];
            if spec.spec.from_regs == 0 {
                links.push(self.attach(
                    "sys_enter",
                    "syscalls",
                    &format!("sys_enter_{}", spec.syscall),
                )?);
            }
            self.syscall_links.insert(spec.syscall, links);
        }
        Ok(())
    }

    /// Attaches `program`, loaded with the others in [`Probes::load`], to
    /// `category/tracepoint`.
    fn attach(
        &mut self,
        program: &'static str,
        category: &str,
        tracepoint: &str,
    ) -> Result<TracePointLink, LoadError> {
        let tp = tracepoint_program(program, self.ebpf.program_mut(program))?;
        tp.attach(category, tracepoint)
            .and_then(|id| tp.take_link(id))
            .map_err(|source| LoadError::Attach {
                program,
                tracepoint: format!("{category}/{tracepoint}"),
                source: Box::new(source),
            })
    }

    /// How many tracepoints are attached.
    /// The hash maps (plain, LRU and LPM trie), by name: those whose
    /// fill the metrics show.
    pub fn hash_maps(&self) -> impl Iterator<Item = (&str, &MapData)> {
        self.ebpf.maps().filter_map(|(name, map)| match map {
            Map::HashMap(data) | Map::LruHashMap(data) | Map::LpmTrie(data) => Some((name, data)),
            _ => None,
        })
    }

    pub fn attached(&self) -> usize {
        self.links.len() + self.syscall_links.values().map(Vec::len).sum::<usize>()
    }

    fn watch_ids(&self) -> Vec<u32> {
        self.watches.iter().map(|w| w.id).collect()
    }

    /// The watches whose dirty flag the kernel set since the last call, and
    /// clears them. An undecided change flags every watch.
    pub fn take_dirty(&mut self) -> Result<Vec<u32>, MapError> {
        // Cleared before the flags are read (the kernel raises it after a
        // flag): one read when nothing changed, whatever the watches.
        if self.dirty.get(&SUMMARY_SLOT, 0)? == 0 {
            return Ok(Vec::new());
        }
        self.dirty.set(SUMMARY_SLOT, 0, 0)?;
        let mut dirty = Vec::new();
        for id in self.watch_ids().into_iter().chain([UNDECIDED_SLOT]) {
            if self.dirty.get(&id, 0)? != 0 {
                self.dirty.set(id, 0, 0)?;
                dirty.push(id);
            }
        }
        if dirty.contains(&UNDECIDED_SLOT) {
            return Ok(self.watch_ids());
        }
        Ok(dirty)
    }

    /// Events the kernel side could not put in the ring buffer so far,
    /// summed over the CPUs: per watch id, and (`None`) for undecided
    /// events.
    /// The counts are read again only when the total moved: one read
    /// when nothing was lost, whatever the watches.
    pub fn lost(&mut self) -> Result<Losses, MapError> {
        let total: u64 = self.lost.get(&SUMMARY_SLOT, 0)?.iter().sum();
        if let Some((seen, counts)) = &self.lost_seen
            && *seen == total
        {
            return Ok(counts.clone());
        }
        let counts = self
            .watch_ids()
            .into_iter()
            .map(|id| (Some(id), id))
            .chain([(None, UNDECIDED_SLOT)])
            .map(|(watch, slot)| Ok((watch, self.lost.get(&slot, 0)?.iter().sum())))
            .collect::<Result<Vec<_>, MapError>>()?;
        self.lost_seen = Some((total, counts.clone()));
        Ok(counts)
    }
}

/// The watches of `these` that `those` lacks (by id and identity).
fn lacking<'a>(these: &'a [Watch], those: &'a [Watch]) -> impl Iterator<Item = &'a Watch> {
    these
        .iter()
        .filter(|a| !those.iter().any(|b| a.id == b.id && a.key == b.key))
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// `program` as the tracepoint program it is.
fn tracepoint_program<'a>(
    program: &'static str,
    found: Option<&'a mut Program>,
) -> Result<&'a mut TracePoint, LoadError> {
    found
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::ProgramType { program, source })
}

/// Workaround for aya 0.14, whose `EbpfLoader::new()` always parses
/// `/sys/kernel/btf/vmlinux` (15-25 ms of CPU here), which watcher does
/// not use (`btf(None)`): the calling thread alone (its own copy of the
/// process's root and working directory, `CLONE_FS`) takes `/proc` as its
/// root, where that path does not exist, so the loader is made without
/// it. Where either call is refused, it is parsed as before.
fn hide_kernel_btf() {
    // SAFETY: plain syscalls; unshared, the root changes for this thread
    // only, which makes the loader and ends.
    unsafe {
        if libc::unshare(libc::CLONE_FS) == 0 {
            libc::chroot(c"/proc".as_ptr());
        }
    }
}

/// Loads tracepoint program `program` (the kernel verifies it).
fn load(program: &'static str, tp: &mut TracePoint) -> Result<(), LoadError> {
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
    })
}

/// Loads the tracepoint programs `wanted`, each in a thread of its own:
/// the kernel verifies a program in the thread that loads it, which is
/// most of watcher's start-up, so with more than one CPU the longest
/// verification sets the time rather than their sum.
fn load_at_once(ebpf: &mut Ebpf, wanted: &[&'static str]) -> Result<(), LoadError> {
    let mut programs: Vec<(&'static str, Option<&mut Program>)> =
        wanted.iter().map(|&name| (name, None)).collect();
    for (name, program) in ebpf.programs_mut() {
        if let Some(slot) = programs.iter_mut().find(|(wanted, _)| *wanted == name) {
            slot.1 = Some(program);
        }
    }
    std::thread::scope(|scope| {
        let loading: Vec<_> = programs
            .into_iter()
            .map(|(name, program)| {
                scope.spawn(move || load(name, tracepoint_program(name, program)?))
            })
            .collect();
        loading.into_iter().try_for_each(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

/// `specs`, with the syscalls whose entry only keeps their arguments read
/// from the saved registers at their exit instead (`SyscallSpec::from_regs`:
/// no enter program for them) when the exact match can: the registers'
/// offsets are in `kernel`'s BTF, and the record lays the arguments out
/// from `SYSCALL_ARGS_WORD` on, as the programs then make it. Closes (sent
/// at entry, while the file is still there) and writes (the file decided
/// at entry) keep theirs.
fn from_regs(specs: &[Spec], kernel: Option<&KernelOffsets>) -> Vec<Spec> {
    let regs = kernel.is_some_and(|k| k.pt_regs_args.iter().all(|&at| at != 0));
    let mut specs = specs.to_vec();
    for spec in &mut specs {
        // The first argument follows `__syscall_nr`, an `int`.
        let args_at = (spec.enter_nr_offset as usize + 4).next_multiple_of(8);
        spec.spec.from_regs = u8::from(
            regs && matches!(
                spec.spec.shape,
                shape::OPEN | shape::OPEN_HOW | shape::PATH | shape::PATHS | shape::FD
            ) && args_at == 8 * SYSCALL_ARGS_WORD,
        );
    }
    specs
}

/// The maps no program needs more than one entry of while only `kinds`
/// (`event_kind::bit`s) may be selected, from the syscall `specs` as
/// loaded and the io_uring operations followed (`io_specs`): they get one
/// entry, as the LRU maps are allocated whole at load, which costs
/// start-up time and kernel memory for nothing.
fn unused_maps(specs: &[Spec], io_specs: &[(u8, SyscallSpec)], kinds: u32) -> Vec<&'static str> {
    let selectable = |spec: &SyscallSpec| spec.select & kinds != 0;
    let mut unused = Vec::new();
    // The arguments kept at entry, by every selectable syscall with an
    // enter program (everything, without BTF) but closes, sent at once.
    if !specs
        .iter()
        .any(|s| selectable(&s.spec) && s.spec.from_regs == 0 && s.spec.shape != shape::CLOSE)
    {
        unused.push(names::STASH);
    }
    // The verdicts on files written, kept from their first write (an
    // io_uring operation on a descriptor keeps one there when it can).
    let writes = |spec: &SyscallSpec| {
        selectable(spec) && matches!(spec.shape, shape::WRITE | shape::ALLOCATE)
    };
    if !specs.iter().any(|s| writes(&s.spec)) && !io_specs.iter().any(|(_, s)| writes(s)) {
        unused.push(names::FILES);
    }
    // Descriptors written or opened for writing under a watch.
    if kinds & (event_kind::bit(event_kind::CLOSE_WRITE) | event_kind::bit(event_kind::MODIFY)) == 0
    {
        unused.extend([names::WRITE_FDS, names::WRITERS]);
    }
    unused
}

/// Map `name`, taken from the loaded object: it closes when dropped.
fn take_map(name: &'static str, ebpf: &mut Ebpf) -> Result<Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
}

/// The keys of the process filters that are on, in place of those there.
fn fill_filters(ebpf: &mut Ebpf, filters: &ProcessFilter) -> Result<(), LoadError> {
    let mut pids: HashMap<_, u32, u8> = HashMap::try_from(map_mut(names::FILTER_PIDS, ebpf)?)
        .map_err(map_err(names::FILTER_PIDS))?;
    clear(&mut pids).map_err(map_err(names::FILTER_PIDS))?;
    for pid in &filters.pids {
        pids.insert(pid, 1, 0)
            .map_err(map_err(names::FILTER_PIDS))?;
    }
    let mut uids: HashMap<_, u32, u8> = HashMap::try_from(map_mut(names::FILTER_UIDS, ebpf)?)
        .map_err(map_err(names::FILTER_UIDS))?;
    clear(&mut uids).map_err(map_err(names::FILTER_UIDS))?;
    for uid in &filters.uids {
        uids.insert(uid, 1, 0)
            .map_err(map_err(names::FILTER_UIDS))?;
    }
    let mut comms: HashMap<_, [u8; TASK_COMM_LEN], u8> =
        HashMap::try_from(map_mut(names::FILTER_COMMS, ebpf)?)
            .map_err(map_err(names::FILTER_COMMS))?;
    clear(&mut comms).map_err(map_err(names::FILTER_COMMS))?;
    let listed = [
        (&filters.comms, filter::COMM_INCLUDE),
        (&filters.exclude_comms, filter::COMM_EXCLUDE),
    ];
    for (names, value) in listed {
        for comm in names {
            comms
                .insert(comm.0, value, 0)
                .map_err(map_err(names::FILTER_COMMS))?;
        }
    }
    Ok(())
}

/// A removal that found its key already gone succeeded: a `set_watching`
/// that failed half-way can be tried again.
fn absent(removed: Result<(), MapError>) -> Result<(), MapError> {
    match removed {
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// Removes every key of a hash map.
fn clear<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<&mut MapData, K, V>) -> Result<(), MapError> {
    let keys: Vec<K> = map.keys().collect::<Result<_, _>>()?;
    keys.iter().try_for_each(|key| map.remove(key))
}

/// Detaches links, each from a thread of its own: detaching a tracepoint
/// waits for an RCU grace period (about 70 ms here), one after the other
/// when the links are dropped in turn: 5 s for watcher's 78. Dropped from
/// a thread each, the waits overlap.
fn detach(links: Vec<TracePointLink>) {
    std::thread::scope(|scope| {
        for link in links {
            if let Err(e) = std::thread::Builder::new().spawn_scoped(scope, move || drop(link)) {
                // No thread: this one detaches it (the closure, and the
                // link in it, are dropped with the error).
                drop(e);
            }
        }
    });
}

impl Drop for Probes {
    fn drop(&mut self) {
        let mut links: Vec<TracePointLink> = self.links.drain(..).collect();
        links.extend(
            std::mem::take(&mut self.syscall_links)
                .into_values()
                .flatten(),
        );
        detach(links);
    }
}
