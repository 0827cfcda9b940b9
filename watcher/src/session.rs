//! The session every command runs: checks, loading and attaching the
//! programs, the `watching` line, then one stream of [`Item`]s (events
//! decoded, placed, filtered and expanded; losses; directories that went
//! away or came back; SIGHUP; SIGINT or SIGTERM) for `trace`, `top`, `run`
//! and `serve` alike.

use std::{
    collections::{HashMap, VecDeque},
    fs, mem,
    net::SocketAddr,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, MissedTickBehavior, interval, sleep_until},
};
use watcher_common::{Edge, EdgeKey, InodeKey, RECHECK_NS};
use watcher_core::{
    cgroup::Cgroups,
    error::Causes,
    escape,
    event::{Clock, Event, decode, expand, kinds},
    filter::PathFilter,
    images::Images,
    kind::Kind,
    metrics::Metrics,
    notify,
    place::{follow, place},
    privileges,
    routes::Routes,
    settings::Plan,
    source::{Item, Source},
    watch::{self, Handle, Moved, Resolved, Stamp, Watch, WatchError},
};

use crate::{
    bpf::{self, LoadError, Loader, Probes, Setup},
    btf,
    exporter::{self, KernelGauges},
    kfunc,
    ring::{ReaderDue, RingFill},
    syscalls, tracefs,
};

/// How often the loss counters are read (one map read when nothing was
/// lost): an `overflow` line follows within this time.
const LOSS_CHECK: Duration = Duration::from_millis(200);
/// How soon the ring buffer is read again after records were read or one
/// could not be read yet, also without a wakeup (see [`RECHECK_NS`]).
const RECHECK: Duration = Duration::from_nanos(RECHECK_NS);
/// How often the watched directories are looked at (one `statx` each: with
/// thousands of them, not five times a second).
const DIRS_CHECK: Duration = Duration::from_secs(1);

pub struct Session {
    plan: Plan,
    watches: Vec<Watch>,
    /// Every directory named, with how it looked when last resolved, or
    /// why it is not watched now.
    dirs: Vec<(PathBuf, Result<Stamp, WatchError>)>,
    /// Each watched directory's file handle, by identity: whether it still
    /// exists once its path is gone.
    handles: HashMap<InodeKey, Handle>,
    probes: Probes,
    events: EventStream,
    stop: Stop,
    /// SIGHUP: `trace` reopens its output, `serve` reloads, `run` and `top`
    /// say they have nothing to reload. Never the default action (exit).
    hup: Signal,
    losses: LossWatch,
    loss_tick: Interval,
    dirs_tick: Interval,
    /// Items due before anything new: at the stop, what was left.
    pending: VecDeque<Item>,
    stopped: bool,
}

/// How to start, from the global options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Show the verifier's log when a program is refused.
    pub verbose: bool,
    /// Pass on the eBPF programs' debug logs.
    pub bpf_log: bool,
    /// Serve metrics at this address.
    pub metrics: Option<SocketAddr>,
    /// The selected kinds may change at a reload (`serve`): what the
    /// programs keep is sized for every kind, not only those selected.
    pub reloads: bool,
}

/// Checks privileges and directories, loads and attaches the programs and
/// prints the `watching` line (and tells systemd it is ready).
pub fn start(plan: &Plan, options: Options) -> anyhow::Result<Session> {
    privileges::check()?;
    let loader = Loader::start();
    // Before anything is loaded: an address in use stops watcher here.
    let listener = options.metrics.map(exporter::bind).transpose()?;
    let btf = btf::kernel()
        .inspect_err(|e| tracing::warn!("{e}; {}", btf::FALLBACK))
        .ok();
    let kernel = btf.as_ref().map(|(offsets, _)| *offsets);
    check_kinds(plan, kernel.is_some())?;
    let resolved = watch::resolve(&plan.dirs, kernel.is_none(), &[])?.refuse_missing(|_| false)?;
    let watches = resolved.watches;
    // Taken with the identities, before anything can move them.
    let handles = handles(&watches, HashMap::new());
    if tracefs::ensure_mounted()? {
        tracing::info!("mounted tracefs at {}", tracefs::TRACEFS);
    }
    let specs = syscalls::read_specs()?;
    let offsets = syscalls::read_offsets(&specs)?;
    // Exact mode only: the operations' names are followed as syscalls'.
    let io_uring = match &btf {
        Some((_, btf)) => btf::io_uring(btf, &offsets)
            .inspect_err(|e| {
                tracing::warn!("{e}: operations submitted through io_uring are not seen")
            })
            .ok()
            .flatten(),
        None => None,
    };
    let fast_reads = btf.as_ref().and_then(|(_, btf)| kfunc::fast_reads(btf));
    if btf.is_some() && fast_reads.is_none() {
        tracing::debug!("{}", kfunc::SLOW_READS);
    }
    // Its index is no use once the offsets are read.
    drop(btf);
    let mut routes = Routes::default();
    let edges = edges(&watches, &mut routes, kernel.is_some())?;
    let setup = Setup {
        specs: &specs,
        offsets: &offsets,
        kernel: kernel.as_ref(),
        io_uring: io_uring.as_ref(),
        ring_buffer_bytes: plan.ring_buffer_size,
        log_level: if options.bpf_log {
            aya_log::Level::Debug as u8
        } else {
            0
        },
        fast_reads,
        // Only the syscalls the selected kinds need are attached: each
        // tracepoint costs every process on the machine a little, and
        // stopping a little time.
        watching: &watching(plan, &watches, &edges),
        kinds: if options.reloads {
            u32::MAX
        } else {
            Kind::mask(&plan.kinds)
        },
    };
    let (probes, ring, reader, logger) =
        Probes::load(&setup, loader).inspect_err(|e: &LoadError| {
            if let (true, Some(log)) = (options.verbose, e.verifier_log()) {
                eprintln!("{log}");
            }
        })?;
    if let Some(logger) = logger {
        // SAFETY: the logger owns its ring buffer's fd and neither closes
        // nor replaces it while the AsyncFd holds it.
        let mut fd =
            unsafe { AsyncFd::register(logger) }.context("cannot poll the eBPF programs' logs")?;
        tokio::spawn(async move {
            while let Ok(mut guard) = fd.readable_mut().await {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
    }
    let fill = Arc::new(
        RingFill::new(ring.as_fd(), plan.ring_buffer_size)
            .context("cannot map the ring buffer's positions")?,
    );
    let metrics = match listener {
        Some(listener) => {
            let gauges = KernelGauges::new(Arc::clone(&fill), &probes)?;
            let metrics = Metrics::new(gauges);
            exporter::serve(listener, metrics.clone()).context("cannot serve metrics")?;
            Some(metrics)
        }
        None => None,
    };
    let due = ReaderDue::new(reader.fd().as_fd()).context("cannot map the READER map")?;
    let events = EventStream {
        // SAFETY: the ring buffer owns its fd and neither closes nor
        // replaces it while the AsyncFd holds it.
        fd: unsafe { AsyncFd::register(ring) }.context("cannot poll the ring buffer")?,
        clock: Clock::read(),
        exact: kernel.is_some(),
        watches: watches.clone(),
        retired: Vec::new(),
        selected: plan.kinds.clone(),
        routes,
        mntns: fs::metadata("/proc/self/ns/mnt")
            .ok()
            .map(|m| m.ino() as u32),
        cgroups: Cgroups::read(),
        images: Images::default(),
        paths: plan.paths.clone(),
        filtered: 0,
        recheck: None,
        fill,
        due,
        metrics,
    };
    // Signal handlers go in before the `watching` line, so that a signal
    // sent as soon as it appears is handled.
    let stop = Stop {
        int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
    };
    let hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let roots: Vec<String> = watches.iter().map(|w| escape::path(&w.root)).collect();
    let plural = if watches.len() == 1 {
        "directory"
    } else {
        "directories"
    };
    // What start-up parsed (the kernel's BTF for the offsets, the
    // programs' object, also in the loader's thread) is freed, but glibc's
    // allocator keeps the pages, per arena: give them back (about 1.9 MB
    // of resident memory, measured).
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions; it only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0)
    };
    // The ready line, printed whatever the log level: scripts wait for it.
    eprintln!("watching {} {plural}: {}", watches.len(), roots.join(", "));
    notify::send(&format!(
        "READY=1\nSTATUS=watching {} {plural}",
        watches.len()
    ));
    // Off the start-up path: it reads every process's descriptors.
    let uring_seen = io_uring.is_some();
    std::thread::spawn(move || warn_blind_spots(uring_seen));
    // The first ticks come after a period, not at once.
    let tick = |period| {
        let mut tick = interval(period);
        tick.reset();
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    };
    Ok(Session {
        plan: plan.clone(),
        handles,
        watches,
        dirs: resolved.dirs,
        probes,
        events,
        stop,
        hup,
        losses: LossWatch::default(),
        loss_tick: tick(LOSS_CHECK),
        dirs_tick: tick(DIRS_CHECK),
        pending: VecDeque::new(),
        stopped: false,
    })
}

/// How many retired watches are remembered: far more than can have
/// events in flight.
const RETIRED_KEPT: usize = 64;

impl Session {
    /// The clock events are stamped with.
    pub fn clock(&self) -> Clock {
        self.events.clock
    }

    /// Events dropped by `--include` and `--exclude`.
    pub fn filtered(&self) -> u64 {
        self.events.filtered
    }

    /// The metrics `--metrics` serves, if asked for.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.events.metrics.as_ref()
    }

    /// Events lost since start.
    pub fn lost_total(&self) -> u64 {
        self.losses.total()
    }

    /// The next item: events as they arrive, losses within [`LOSS_CHECK`],
    /// directories moved within [`DIRS_CHECK`], signals. At SIGINT or
    /// SIGTERM, what is still in the ring buffer and the last losses come
    /// first, then [`Item::Stop`], then only that.
    pub async fn next(&mut self) -> Item {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return item;
            }
            if self.stopped {
                return Item::Stop;
            }
            tokio::select! {
                ready = self.events.fd.readable_mut() => match ready {
                    Ok(mut guard) => {
                        guard.clear_ready();
                        let events = self.events.drain();
                        if !events.is_empty() {
                            return Item::Events(events);
                        }
                    }
                    Err(e) => {
                        tracing::error!("cannot wait for the ring buffer: {e}; stopping");
                        self.stopping();
                    }
                },
                // Records read, or one not submitted yet: those sent
                // since without a wakeup are due by now (see RECHECK_NS).
                () = sleep_until(self.events.recheck.unwrap_or_else(Instant::now)),
                    if self.events.recheck.is_some() =>
                {
                    self.events.recheck = None;
                    let events = self.events.drain();
                    if !events.is_empty() {
                        return Item::Events(events);
                    }
                }
                // Also a last resort for a record sent without a wakeup
                // that the recheck missed.
                _ = self.loss_tick.tick() => self.catch_up(),
                _ = self.dirs_tick.tick() => {
                    let moved = self.follow();
                    if !moved.is_empty() {
                        return Item::Moved(moved);
                    }
                    self.reroute();
                }
                _ = self.hup.recv() => return Item::Hup,
                () = self.stop.wait() => self.stopping(),
            }
        }
    }

    /// What is left to say before [`Item::Stop`]: the events still in the
    /// ring buffer, then the last losses.
    fn stopping(&mut self) {
        self.stopped = true;
        self.catch_up();
    }

    /// Queues the events in the ring buffer, then the losses.
    fn catch_up(&mut self) {
        let events = self.events.drain();
        if !events.is_empty() {
            self.pending.push_back(Item::Events(events));
        }
        let lost = self.losses.check(&mut self.probes);
        if !lost.is_empty() {
            self.pending.push_back(Item::Lost(lost));
        }
    }

    /// The watches, and those retired, which events in flight may still
    /// name: what an event's `watch` is looked up in. A retired watch's id
    /// is given to no new directory while it is remembered.
    pub fn known(&self) -> Vec<Watch> {
        self.watches
            .iter()
            .chain(&self.events.retired)
            .cloned()
            .collect()
    }

    /// Looks at the directories the user named again, and when one is not
    /// what it was, watches what they are now and logs it. Cheap when
    /// nothing changed (one statx each), so it runs every tick. A failure
    /// is logged, and tried again at the next tick.
    fn follow(&mut self) -> Vec<Moved> {
        self.try_follow().unwrap_or_else(|e| {
            tracing::warn!(
                "cannot look at the watched directories again: {}",
                Causes(&e)
            );
            Vec::new()
        })
    }

    fn try_follow(&mut self) -> anyhow::Result<Vec<Moved>> {
        let same = self
            .dirs
            .iter()
            .all(|(dir, then)| Stamp::of(dir).ok() == then.as_ref().ok().copied());
        if same {
            return Ok(Vec::new());
        }
        let named: Vec<PathBuf> = self.dirs.iter().map(|(dir, _)| dir.clone()).collect();
        let mut resolved = watch::resolve(&named, !self.events.exact, &self.known())?;
        let mut moved = Vec::new();
        let mut renamed: Vec<Watch> = Vec::new();
        for (dir, now) in &resolved.dirs {
            let then = watch::find(&self.watches, dir);
            match (then, watch::find(&resolved.watches, dir), now) {
                // Renamed, and nothing in its place: still watched, under
                // its new path, until something is.
                (Some(then), None, Err(_))
                    if dir.parent().is_some_and(|near| {
                        self.handles.get(&then.key).is_some_and(|h| h.alive(near))
                    }) =>
                {
                    tracing::info!(
                        "{}: moved away; the directory is still watched where it is now",
                        escape::path(dir)
                    );
                    renamed.push(then.clone());
                }
                (Some(then), None, Err(why)) => moved.push(Moved::Gone {
                    dir: dir.clone(),
                    root: then.root.clone(),
                    why: why.to_string(),
                }),
                (then, Some(now), _) if then.is_none_or(|then| then.key != now.key) => {
                    moved.push(Moved::Back {
                        dir: dir.clone(),
                        root: now.root.clone(),
                        id: now.id,
                        replaced: then.is_some(),
                    });
                }
                _ => {}
            }
        }
        // Once, if two of its spellings led to it.
        renamed.sort_by_key(|w| w.id);
        renamed.dedup_by_key(|w| w.id);
        resolved.watches.extend(renamed);
        self.arm(resolved)?;
        for m in &moved {
            tracing::warn!("{}", m.message());
        }
        Ok(moved)
    }

    /// Looks at the mounts of every namespace again, and tells the
    /// programs of the ways into the trees that changed. Cheap when no
    /// mount changed (a read of each namespace's mount table), so it runs
    /// every tick. A failure is logged, and tried again at the next tick.
    fn reroute(&mut self) {
        if !self.events.exact || !self.events.routes.update(&self.watches) {
            return;
        }
        let edges = merged(&self.watches, &self.events.routes);
        let told = edges.and_then(|edges| {
            let watching = watching(&self.plan, &self.watches, &edges);
            Ok(self.probes.set_watching(&watching)?)
        });
        match told {
            Ok(()) => {
                let (ways, namespaces) = self.events.routes.ways();
                tracing::info!(
                    "mounts changed: following {ways} mount points into the watched directories, \
                     in {namespaces} mount namespaces"
                );
            }
            Err(e) => {
                tracing::warn!(
                    "cannot follow the mounts into the watched directories: {}",
                    Causes(&e)
                );
                self.events.routes.forget();
            }
        }
    }

    /// Hands the programs and the event stream `resolved` under the plan.
    fn arm(&mut self, resolved: Resolved) -> anyhow::Result<()> {
        let plan = &self.plan;
        let watches = resolved.watches;
        let edges = edges(&watches, &mut self.events.routes, self.events.exact)?;
        self.probes
            .set_watching(&watching(plan, &watches, &edges))?;
        let gone = self
            .watches
            .iter()
            .filter(|old| !watches.iter().any(|w| w.id == old.id));
        let retired = &mut self.events.retired;
        retired.extend(gone.cloned());
        retired.retain(|old| !watches.iter().any(|w| w.id == old.id));
        retired.drain(..retired.len().saturating_sub(RETIRED_KEPT));
        self.events.watches = watches.clone();
        self.events.selected = plan.kinds.clone();
        self.events.paths = plan.paths.clone();
        self.handles = handles(&watches, mem::take(&mut self.handles));
        self.watches = watches;
        self.dirs = resolved.dirs;
        Ok(())
    }
}

/// The directories on the way to each of `watches`, and through the
/// mounts that lead into them in every namespace (`routes`, looked at
/// again), which the exact match (`exact`) follows names down through;
/// none without it.
fn edges(
    watches: &[Watch],
    routes: &mut Routes,
    exact: bool,
) -> anyhow::Result<Vec<(EdgeKey, Edge)>> {
    if !exact {
        return Ok(Vec::new());
    }
    routes.update(watches);
    merged(watches, routes)
}

/// The edges on the way to each watch, then those of `routes` that do not
/// lead elsewhere from the same entry.
fn merged(watches: &[Watch], routes: &Routes) -> anyhow::Result<Vec<(EdgeKey, Edge)>> {
    let mut edges: HashMap<EdgeKey, Edge> = watch::edges(watches)?.into_iter().collect();
    for (key, edge) in routes.edges() {
        edges.entry(key).or_insert(edge);
    }
    Ok(edges.into_iter().collect())
}

/// What the programs are told of `plan`, its directories resolved to
/// `watches`.
fn watching<'a>(
    plan: &'a Plan,
    watches: &'a [Watch],
    edges: &'a [(EdgeKey, Edge)],
) -> bpf::Watching<'a> {
    bpf::Watching {
        watches,
        edges,
        event_mask: Kind::mask(&plan.kinds),
        filters: &plan.process,
        tag_actions: plan.tag_actions,
        modify_interval: plan.modify_interval,
    }
}

/// Refuses kinds this machine cannot watch: `modify` decides about open
/// files, which needs the kernel's BTF (`exact`).
fn check_kinds(plan: &Plan, exact: bool) -> anyhow::Result<()> {
    if !exact && plan.kinds.contains(&Kind::Modify) {
        anyhow::bail!(
            "the modify kind needs the kernel's BTF ({}), which this kernel does not offer",
            btf::VMLINUX
        );
    }
    Ok(())
}

/// The file handles of `watches`: those in `known`, else taken now.
fn handles(watches: &[Watch], mut known: HashMap<InodeKey, Handle>) -> HashMap<InodeKey, Handle> {
    known.retain(|key, _| watches.iter().any(|w| w.key == *key));
    for w in watches {
        if !known.contains_key(&w.key)
            && let Ok(handle) = Handle::of(&w.root)
        {
            known.insert(w.key, handle);
        }
    }
    known
}

/// Events as they arrive from the ring buffer.
pub struct EventStream {
    fd: AsyncFd<RingBuf<MapData>>,
    clock: Clock,
    /// The kernel matches exactly (with BTF), rather than by prefix.
    exact: bool,
    /// What names the kernel leaves to user space are placed against.
    watches: Vec<Watch>,
    /// Watches that were watched and are no longer (their directory went
    /// away or was replaced), newest last: events the kernel decided under
    /// them may still be in the ring buffer, and keep naming them.
    retired: Vec<Watch>,
    /// The kinds `--events` selected.
    selected: Vec<Kind>,
    /// The mounts that lead into the watched trees, in every namespace.
    routes: Routes,
    /// watcher's own mount namespace: changes made from another are named
    /// by their watch's path.
    mntns: Option<u32>,
    cgroups: Cgroups,
    /// The executables and command lines the kernel sent once per process
    /// image, for the events that leave them out.
    images: Images,
    /// `--include` and `--exclude`.
    paths: PathFilter,
    /// Events dropped by `paths`.
    filtered: u64,
    /// When to look at the ring buffer again, wakeup or not: [`RECHECK`]
    /// after a look that read records or left one unread (another CPU was
    /// still writing it), and never moved earlier by a look in between,
    /// which may come too soon for the records it stands for.
    recheck: Option<Instant>,
    /// What the ring buffer holds that was not read (the metrics serve it
    /// too).
    fill: Arc<RingFill>,
    /// `recheck`, as the programs read it: a record submitted well before
    /// it needs no wakeup.
    due: ReaderDue,
    /// What `--metrics` serves; events dropped by `paths` are counted
    /// there too, by directory.
    metrics: Option<Metrics>,
}

impl EventStream {
    /// Every event that is ready, without waiting; a malformed record is
    /// logged and skipped.
    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let ring = self.fd.get_mut();
        let mut read = false;
        while let Some(item) = ring.next() {
            read = true;
            let mut ev = match decode(&item, &self.clock, self.exact, self.mntns) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!("skipping a malformed event: {e}");
                    continue;
                }
            };
            // First, for every record: an image's first one may be
            // filtered out below, its later ones not.
            self.images.settle(ev.pid, &mut ev.who);
            let placed = ev.relative || ev.lexical || ev.old.as_ref().is_some_and(|o| o.relative);
            if placed && !place(&mut ev, &self.watches) {
                continue;
            }
            let root_of = |id| {
                self.watches
                    .iter()
                    .chain(&self.retired)
                    .find(|w| w.id == id)
                    .map(|w| w.root.as_path())
            };
            ev.anchor(root_of, |route| self.routes.prefix(route));
            let through = ev.through || ev.old.as_ref().is_some_and(|o| o.through);
            if through && !follow(&mut ev, &self.watches) {
                continue;
            }
            let root = ev.watch_id.and_then(root_of);
            if !self.paths.keeps(&ev, root) {
                // Counted as the events the record stands for.
                let n = kinds(&ev, &self.selected).count() as u64;
                self.filtered += n;
                if let (Some(metrics), Some(root)) = (&self.metrics, root) {
                    metrics.filtered(&escape::path(root), n);
                }
                continue;
            }
            ev.who.cgroup = self.cgroups.get(ev.who.cgroup_id);
            expand(ev, &self.selected, &mut events);
        }
        if read || self.fill.used() != 0 {
            let at = Instant::now() + RECHECK;
            let due = self.recheck.map_or(at, |due| due.max(at));
            self.recheck = Some(due);
            self.due.set(Some(due.into_std()));
        } else if self.recheck.is_none() {
            self.due.set(None);
        }
        events
    }
}

/// SIGINT and SIGTERM: detach and exit 0.
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

impl Source for Session {
    async fn next(&mut self) -> Item {
        Session::next(self).await
    }

    fn watches(&self) -> &[Watch] {
        &self.watches
    }

    fn take_flags(&mut self) -> Vec<u32> {
        self.probes.take_dirty().unwrap_or_else(|e| {
            tracing::warn!("cannot read the change flags: {e}");
            Vec::new()
        })
    }

    fn set_action_slot(&mut self, slot: u32) {
        if let Err(e) = self.probes.set_action_slot(slot) {
            tracing::error!("cannot tell the kernel which watch's action starts: {e}");
        }
    }

    /// Gives the attached programs and the event stream a new plan (a
    /// reload): watches that stay keep their ids, the programs stay
    /// attached. The ring buffer keeps its size. A directory that went
    /// away while watched may still be missing; any other must resolve.
    fn rewatch(&mut self, plan: &Plan) -> anyhow::Result<()> {
        check_kinds(plan, self.events.exact)?;
        let resolved = watch::resolve(&plan.dirs, !self.events.exact, &self.known())?
            .refuse_missing(|dir| self.gone(dir))?;
        let before = mem::replace(&mut self.plan, plan.clone());
        self.arm(resolved).inspect_err(|_| self.plan = before)
    }

    fn gone(&self, dir: &Path) -> bool {
        self.dirs
            .iter()
            .any(|(named, now)| named == dir && now.is_err())
    }
}

/// Reports ring-buffer losses as they grow.
#[derive(Default)]
struct LossWatch {
    /// Losses so far, per watch id (`None`: undecided events).
    seen: HashMap<Option<u32>, u64>,
}

impl LossWatch {
    /// Events lost since the last call, per watch id (only those with
    /// new losses), logged to stderr.
    fn check(&mut self, probes: &mut Probes) -> Vec<(Option<u32>, u64)> {
        let totals = match probes.lost() {
            Ok(totals) => totals,
            Err(e) => {
                tracing::warn!("cannot read the loss counters: {e}");
                return Vec::new();
            }
        };
        let new: Vec<(Option<u32>, u64)> = totals
            .into_iter()
            .filter_map(|(id, total)| {
                let seen = self.seen.insert(id, total).unwrap_or(0);
                (total > seen).then(|| (id, total - seen))
            })
            .collect();
        let now: u64 = new.iter().map(|(_, n)| n).sum();
        if now > 0 {
            tracing::warn!(
                "{now} events lost (ring buffer full), {} in all",
                self.total()
            );
        }
        new
    }

    /// Losses since start.
    fn total(&self) -> u64 {
        self.seen.values().sum()
    }
}

/// Warns about what watcher cannot see, where it shows cheaply: when
/// io_uring is not followed (`uring_seen` false: no BTF, or a kernel
/// without its tracepoints), the processes that hold io_uring instances
/// now (any process may set one up later), and a running NFS server.
fn warn_blind_spots(uring_seen: bool) {
    let mut uring = Vec::new();
    let procs = fs::read_dir("/proc").into_iter().flatten().flatten();
    for proc in procs.filter(|_| !uring_seen) {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let fds = fs::read_dir(proc.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten();
        if fds
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|target| target.as_os_str() == "anon_inode:[io_uring]")
        {
            uring.push(pid.to_string());
        }
    }
    if !uring.is_empty() {
        tracing::warn!(
            "operations submitted through io_uring are not seen; these processes hold io_uring \
             instances now: {}",
            uring.join(" ")
        );
    }
    let nfsd_threads = fs::read_to_string("/proc/fs/nfsd/threads")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if nfsd_threads > 0 {
        tracing::warn!("an NFS server runs here: changes its clients make are not seen");
    }
}
