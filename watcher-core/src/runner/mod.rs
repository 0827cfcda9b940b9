//! `watcher run` and `watcher serve`: run a command (or send a signal)
//! after changes, batched and one at a time, for one watch or for each of
//! a configuration's.
//!
//! Every event joins the current batch of each job whose directories hold
//! it and whose filters keep it. A job's action starts once its batch is
//! not empty, nothing has happened for `settle`, at least `interval` has
//! passed since its last start, no run of it is going on, and no file it
//! saw opened for writing is still open (for at most `max_wait` more:
//! then it runs, told which are). Events that
//! arrive during a run form the next batch, so they cause exactly one more
//! run after it. Lost events, and watches the kernel flagged as changed
//! without an event (for jobs that filter nothing the kernel does not),
//! count as changes.

mod batch;
mod signal;
mod action;

use std::{
    collections::{BTreeMap, HashMap},
    mem,
    path::{Path, PathBuf},
    time::Duration,
};

pub use action::{CommandSpec, StdinFormat};
pub use signal::{Recipient, parse_signal};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};

use self::{
    action::Ended,
    batch::Batch,
    signal::{deliver, signal_name},
};
use crate::{
    error::Causes,
    escape,
    event::Event,
    filter::{PathFilter, ProcessFilter},
    kind::Kind,
    metrics::{EventCounters, Metrics, Outcome, directory},
    notify, privileges,
    settings::{Plan, Shared, Span},
    source::{Item, Source},
    watch::{self, Moved, Watch},
    writers::Writer,
};

/// How often the kernel's change flags are read.
const FLAGS_CHECK: Duration = Duration::from_secs(1);
/// How often a batch held by files open for writing looks whether they
/// were closed.
const HOLD_CHECK: Duration = Duration::from_millis(200);
/// Most paths a log line about a held batch names.
const HELD_SHOWN: usize = 3;
/// How many descriptors a job keeps before it looks which are closed,
/// in a tree that is never quiet long enough to do it when due.
const WRITERS_KEPT: usize = 4096;

/// One watch and its action, from the command line or a configuration.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// What logs call it; unique in a configuration (empty for `run`).
    pub name: String,
    pub dirs: Vec<PathBuf>,
    pub kinds: Vec<Kind>,
    pub process: ProcessFilter,
    pub paths: PathFilter,
    pub action: Action,
    pub settle: Duration,
    /// Longest wait, once settled, for the batch's files still open for
    /// writing to be closed (0: none).
    pub max_wait: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub run_at_start: bool,
    pub max_paths: usize,
}

#[derive(Clone, Debug)]
pub enum Action {
    Command(CommandSpec),
    Signal { signal: i32, target: Recipient },
}

impl JobSpec {
    /// What its log lines start with: `NAME: `, or nothing for `run`.
    fn label(&self) -> String {
        if self.name.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.name)
        }
    }
}

/// `n file(s)`.
fn files(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

/// What the kernel is asked for on behalf of `jobs`: every directory and
/// kind any of them wants, and the process filters when they all share
/// them (else each job filters in user space).
pub fn plan(jobs: &[JobSpec], shared: &Shared) -> Plan {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut kinds: Vec<Kind> = Vec::new();
    for job in jobs {
        for dir in &job.dirs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        for kind in &job.kinds {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
    }
    let process = match jobs.split_first() {
        Some((first, rest)) if rest.iter().all(|j| j.process == first.process) => {
            first.process.clone()
        }
        _ => ProcessFilter::default(),
    };
    Plan {
        dirs,
        kinds,
        process,
        paths: PathFilter::default(),
        ring_buffer_size: shared.ring_buffer_size,
        modify_interval: shared.modify_interval,
        // One job ignores its own action's changes: the kernel leaves them
        // out. With more, one job's action may change another's tree.
        tag_actions: jobs.len() > 1,
    }
}

/// Refuses to start when a command of `jobs` would get watcher's own
/// capabilities (the privileges themselves are checked first: their
/// message is the one that helps).
pub fn check_actions(jobs: &[JobSpec]) -> anyhow::Result<()> {
    if jobs.iter().any(|j| matches!(j.action, Action::Command(_))) {
        privileges::check()?;
        privileges::check_actions()?;
    }
    Ok(())
}

/// A job and where it stands.
struct Job {
    spec: JobSpec,
    /// What the kernel tags its action's changes with: the job ignores
    /// those (and only those; another job's action is like any process).
    slot: u32,
    /// Its own watches: those its directories resolved to.
    watches: Vec<Watch>,
    /// For every watch id, the job's own watches it lies under.
    routes: HashMap<u32, Vec<u32>>,
    /// The kernel's dirty flags stand for this job's changes: it filters
    /// nothing the kernel does not.
    uses_flags: bool,
    batch: Batch,
    last_change: Option<Instant>,
    last_start: Option<Instant>,
    /// The run going on, by number.
    running: Option<u64>,
    /// The descriptors (process, descriptor) the job saw opened for
    /// writing (or written, with `modify`), and their files' paths, until
    /// their close.
    writers: BTreeMap<(u32, u32), Vec<u8>>,
    /// Since when the batch, otherwise due, waits for them.
    held_since: Option<Instant>,
    /// How many `writers` there may be before those closed are forgotten
    /// (twice those left then, at least [`WRITERS_KEPT`]).
    prune_at: usize,
    /// When to look again whether they are closed.
    next_check: Option<Instant>,
}

impl Job {
    fn new(spec: JobSpec, slot: u32, watches: &[Watch], plan: &Plan) -> Self {
        let mut job = Self {
            spec,
            slot,
            watches: Vec::new(),
            routes: HashMap::new(),
            uses_flags: false,
            batch: Batch::default(),
            last_change: None,
            last_start: None,
            running: None,
            writers: BTreeMap::new(),
            held_since: None,
            prune_at: WRITERS_KEPT,
            next_check: None,
        };
        job.place(watches, plan);
        job
    }

    /// Finds the job's watches among every watch, after start or a reload.
    fn place(&mut self, watches: &[Watch], plan: &Plan) {
        self.watches = self
            .spec
            .dirs
            .iter()
            .filter_map(|dir| watch::find(watches, dir))
            .cloned()
            .collect();
        // Two spellings of one directory are one watch.
        self.watches.sort_by_key(|w| w.id);
        self.watches.dedup_by_key(|w| w.id);
        self.routes = watches
            .iter()
            .filter_map(|w| {
                let own: Vec<u32> = self
                    .watches
                    .iter()
                    .filter(|own| w.root.starts_with(&own.root))
                    .map(|own| own.id)
                    .collect();
                (!own.is_empty()).then_some((w.id, own))
            })
            .collect();
        let same_kinds = plan.kinds.len() == self.spec.kinds.len()
            && plan.kinds.iter().all(|k| self.spec.kinds.contains(k));
        self.uses_flags =
            self.spec.paths.is_empty() && same_kinds && plan.process == self.spec.process;
    }

    /// Takes `ev` into the batch when it is the job's.
    fn offer(&mut self, ev: &Event, now: Instant) -> Offer {
        if ev.origin == Some(self.slot) {
            return Offer::NotMine;
        }
        let Some(ids) = route(&self.routes, ev.watch_id) else {
            return Offer::NotMine;
        };
        if !self.spec.kinds.contains(&ev.kind) || !self.spec.process.admits(ev) {
            return Offer::NotMine;
        }
        // Below-the-watch patterns are relative to the innermost of the
        // job's watches that holds the event.
        let inner = self.innermost(ids);
        if !self.spec.paths.keeps(ev, inner.map(|w| w.root.as_path())) {
            return Offer::Filtered(inner.map(|w| w.id));
        }
        let inner = inner.map(|w| w.id);
        self.batch.add(ev, ids, self.spec.max_paths);
        self.last_change = Some(now);
        self.track(ev);
        Offer::Taken(inner)
    }

    /// Notes a descriptor of the event's process opened for writing (or
    /// written: one opened before watcher started), or closed.
    fn track(&mut self, ev: &Event) {
        if self.spec.max_wait.is_zero() {
            return;
        }
        let Some(fd) = ev.fd.and_then(|fd| u32::try_from(fd).ok()) else {
            return;
        };
        let key = (ev.pid, fd);
        match ev.kind {
            Kind::CloseWrite => {
                self.writers.remove(&key);
                if self.writers.is_empty() {
                    // Nothing to look at: due as settled.
                    self.next_check = None;
                }
            }
            Kind::Write | Kind::Create if ev.syscall.is_open() => {
                self.writers.insert(key, ev.path.clone());
            }
            Kind::Modify => {
                self.writers.entry(key).or_insert_with(|| ev.path.clone());
            }
            _ => {}
        }
    }

    /// Forgets the writers that closed their files (or whose process is
    /// gone).
    fn forget_closed(&mut self, still_open: impl FnOnce(&[Writer]) -> Vec<bool>) {
        let writers: Vec<Writer> = self
            .writers
            .iter()
            .map(|(&(pid, fd), path)| Writer {
                pid,
                fd,
                path: path.clone(),
            })
            .collect();
        for (w, open) in writers.iter().zip(still_open(&writers)) {
            if !open {
                self.writers.remove(&(w.pid, w.fd));
            }
        }
    }

    /// Keeps the writers few in a tree that is never quiet: past
    /// `prune_at`, those closed are forgotten.
    fn prune(&mut self, still_open: impl FnOnce(&[Writer]) -> Vec<bool>) {
        if self.writers.len() > self.prune_at {
            self.forget_closed(still_open);
            self.prune_at = (2 * self.writers.len()).max(WRITERS_KEPT);
        }
    }

    /// Whether the batch, otherwise due, waits on for files still open
    /// for writing: those closed (or whose process is gone) are
    /// forgotten. Once `max_wait` has passed it waits no more,
    /// and the batch names those still open.
    fn held(&mut self, now: Instant, still_open: impl FnOnce(&[Writer]) -> Vec<bool>) -> bool {
        self.forget_closed(still_open);
        let label = self.spec.label();
        let shown = |paths: &[Vec<u8>]| {
            let mut shown: Vec<String> = paths
                .iter()
                .take(HELD_SHOWN)
                .map(|p| escape::escape(p))
                .collect();
            if paths.len() > HELD_SHOWN {
                shown.push(format!("and {} more", paths.len() - HELD_SHOWN));
            }
            shown.join(", ")
        };
        let mut open: Vec<Vec<u8>> = self.writers.values().cloned().collect();
        open.sort();
        open.dedup();
        if open.is_empty() {
            self.held_since = None;
            self.next_check = None;
            return false;
        }
        let since = match self.held_since {
            Some(since) => since,
            None => {
                tracing::info!(
                    "{label}waiting for {} open for writing to be closed: {}",
                    files(open.len()),
                    shown(&open)
                );
                *self.held_since.insert(now)
            }
        };
        let cap = since + self.spec.max_wait;
        if now >= cap {
            tracing::warn!(
                "{label}{} still open for writing after --max-wait {}: running anyway: {}",
                files(open.len()),
                Span(self.spec.max_wait),
                shown(&open)
            );
            self.batch.open = open;
            self.held_since = None;
            self.next_check = None;
            return false;
        }
        self.next_check = Some((now + HOLD_CHECK).min(cap));
        true
    }

    /// The innermost of the job's watches among `ids` (`None`: all).
    fn innermost(&self, ids: Option<&[u32]>) -> Option<&Watch> {
        self.watches
            .iter()
            .filter(|w| ids.is_none_or(|ids| ids.contains(&w.id)))
            .max_by_key(|w| w.root.as_os_str().len())
    }

    /// The `watch` label of its metrics: its name, or (for `run`, where it
    /// has none) the directory `directory` gives.
    fn metric_label(&self, directory: impl FnOnce() -> String) -> String {
        if self.spec.name.is_empty() {
            directory()
        } else {
            self.spec.name.clone()
        }
    }

    /// When the action is due, if it is.
    fn due(&self) -> Option<Instant> {
        if self.running.is_some() || self.batch.is_empty() {
            return None;
        }
        let settled = self.last_change? + self.spec.settle;
        let due = self
            .last_start
            .map_or(settled, |s| settled.max(s + self.spec.interval));
        Some(self.next_check.map_or(due, |check| due.max(check)))
    }

    /// Counts its directories that went away or were replaced as changes.
    fn moved(&mut self, moved: &[Moved], now: Instant) {
        for m in moved {
            let (dir, id) = match m {
                Moved::Gone { dir, .. } => (dir, None),
                Moved::Back { dir, id, .. } => (dir, Some(*id)),
            };
            if self.spec.dirs.contains(dir) {
                self.batch.replace(id);
                self.last_change = Some(now);
            }
        }
    }

    /// Counts losses and the kernel's flags as changes.
    fn note(&mut self, lost: &[(Option<u32>, u64)], flagged: &[u32], now: Instant) {
        let was_empty = self.batch.is_empty();
        for &(id, n) in lost {
            if let Some(ids) = route(&self.routes, id) {
                self.batch.add_lost(n, ids);
            }
        }
        if self.uses_flags {
            // A flag of a watch inside one of the job's is the job's too.
            let mut own: Vec<u32> = flagged
                .iter()
                .filter_map(|&id| self.routes.get(&id))
                .flatten()
                .copied()
                .collect();
            own.sort_unstable();
            own.dedup();
            self.batch.flag(&own);
        }
        if was_empty && !self.batch.is_empty() {
            self.last_change = Some(now);
        }
    }
}

/// What became of an event offered to a job, with the innermost of the
/// job's watches that holds it.
enum Offer {
    NotMine,
    /// Left out by the job's `--include` and `--exclude`.
    Filtered(Option<u32>),
    Taken(Option<u32>),
}

/// The watches of a job a change of watch `id` (`None`: undecided)
/// counts for, from its `routes`: `Some(ids)`, `Some(None)` for all of
/// them, or `None` when it is none of the job's business. A function of
/// the routes alone, so that the job's batch can take the result while it
/// is borrowed.
fn route(routes: &HashMap<u32, Vec<u32>>, id: Option<u32>) -> Option<Option<&[u32]>> {
    match id {
        Some(id) => routes.get(&id).map(|ids| Some(ids.as_slice())),
        None => Some(None),
    }
}

/// Runs the jobs over one source of events (the attached programs).
pub struct Engine<S> {
    source: S,
    plan: Plan,
    jobs: Vec<Job>,
    /// Exit after the first run (`run --once`), with its status.
    pub once: bool,
    runs: u64,
    /// The last job slot given (slots start at 1).
    slots: u32,
    /// The actions running, by run number.
    running: HashMap<u64, RunningAction>,
    done_tx: mpsc::UnboundedSender<(u64, Ended)>,
    done_rx: mpsc::UnboundedReceiver<(u64, Ended)>,
    counting: Option<Counting>,
}

/// An action that runs on.
struct RunningAction {
    /// What its job's log lines start with.
    label: String,
    /// Its job's `watch` label in the metrics.
    watch: String,
    /// Also its process group's id.
    pid: i32,
}

/// The metrics the runner counts into: events by job and watch, the
/// rest by label.
struct Counting {
    metrics: Metrics,
    /// By job slot and the job's innermost watch holding the event.
    events: EventCounters<(u32, Option<u32>)>,
}

/// How a reload reads the new jobs; a directory the predicate holds gone
/// (watched, and gone since) may be missing.
pub type Reload<'a> =
    &'a mut dyn FnMut(&dyn Fn(&Path) -> bool) -> anyhow::Result<(Vec<JobSpec>, Shared)>;

impl<S: Source> Engine<S> {
    pub fn new(source: S, plan: Plan, specs: Vec<JobSpec>) -> Self {
        let jobs: Vec<Job> = specs
            .into_iter()
            .zip(1..)
            .map(|(spec, slot)| Job::new(spec, slot, source.watches(), &plan))
            .collect();
        let slots = jobs.len() as u32;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            source,
            plan,
            jobs,
            once: false,
            runs: 0,
            slots,
            running: HashMap::new(),
            done_tx,
            done_rx,
            counting: None,
        }
    }

    /// Counts events, losses, runs and signals into `metrics`.
    pub fn count_into(&mut self, metrics: &Metrics) {
        self.counting = Some(Counting {
            metrics: metrics.clone(),
            events: EventCounters::new(metrics),
        });
    }

    /// Runs until SIGINT or SIGTERM (or the first run's end with `once`).
    /// With `reload`, SIGHUP reads the jobs anew and applies them in place;
    /// without, SIGHUP is logged and changes nothing (`pkill -HUP -x
    /// watcher` after a logrotate must not stop a `run`). At the stop, a
    /// running action is stopped too (see [`Engine::stop_actions`]).
    pub async fn run(&mut self, mut reload: Option<Reload<'_>>) -> anyhow::Result<()> {
        let mut flags_tick = tokio::time::interval(FLAGS_CHECK);
        let now = Instant::now();
        for i in 0..self.jobs.len() {
            if self.jobs[i].spec.run_at_start && self.fire(i, now)? {
                return Ok(());
            }
        }
        loop {
            let due = self.jobs.iter().filter_map(Job::due).min();
            tokio::select! {
                item = self.source.next() => {
                    let now = Instant::now();
                    match item {
                        Item::Events(events) => {
                            for ev in &events {
                                tracing::debug!("{}", crate::text::text_line(ev, false));
                                for job in &mut self.jobs {
                                    let offer = job.offer(ev, now);
                                    if let Some(c) = &mut self.counting {
                                        c.offered(job, ev.kind, offer);
                                    }
                                }
                            }
                            let source = &self.source;
                            for job in &mut self.jobs {
                                job.prune(|writers| source.still_open(writers));
                            }
                        }
                        Item::Lost(lost) => {
                            for job in &mut self.jobs {
                                job.note(&lost, &[], now);
                                if let Some(c) = &self.counting {
                                    c.lost(job, &lost);
                                }
                            }
                        }
                        // Watched anew: a change for each job that named it.
                        Item::Moved(moved) => {
                            for job in &mut self.jobs {
                                job.place(self.source.watches(), &self.plan);
                                job.moved(&moved, now);
                                if let Some(c) = &self.counting {
                                    c.moved(job, &moved);
                                }
                            }
                        }
                        Item::Hup => match reload.as_mut() {
                            Some(read) => self.reload(read),
                            None => tracing::info!("{}", nothing_to_reload("run")),
                        },
                        Item::Stop => {
                            notify::send("STOPPING=1");
                            self.stop_actions().await;
                            return Ok(());
                        }
                    }
                }
                _ = flags_tick.tick() => {
                    let flagged = self.source.take_flags();
                    let now = Instant::now();
                    for job in &mut self.jobs {
                        job.note(&[], &flagged, now);
                    }
                }
                () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let now = Instant::now();
                    for i in 0..self.jobs.len() {
                        if self.jobs[i].due().is_none_or(|d| d > now) {
                            continue;
                        }
                        let source = &self.source;
                        if self.jobs[i].held(now, |writers| source.still_open(writers)) {
                            continue;
                        }
                        if self.fire(i, now)? {
                            return Ok(());
                        }
                    }
                }
                Some((run, ended)) = self.done_rx.recv() => {
                    self.ended(run, &ended);
                    if self.once {
                        let status = ended.status?;
                        anyhow::ensure!(status.success(), "the action failed ({status})");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Starts job `i`'s action for its batch: a command, which runs on,
    /// or a signal, which is done at once. Returns whether to exit
    /// (`once`, and nothing runs on).
    fn fire(&mut self, i: usize, now: Instant) -> anyhow::Result<bool> {
        // The flags raised by this batch's events are spent; the other
        // jobs get those that are up.
        let flagged = self.source.take_flags();
        for (j, job) in self.jobs.iter_mut().enumerate() {
            if j != i {
                job.note(&[], &flagged, now);
            }
        }
        // Set before the fork: the kernel enters the action's process with it.
        self.source.set_action_slot(self.jobs[i].slot);
        let job = &mut self.jobs[i];
        let batch = mem::take(&mut job.batch);
        job.last_start = Some(now);
        let name = job.spec.label();
        let watch = job.spec.name.clone();
        let counted = |outcome| {
            if let Some(c) = &self.counting {
                c.metrics.run(&watch, outcome, None);
            }
        };
        match &job.spec.action {
            Action::Signal { signal, target } => {
                let signal_name = signal_name(*signal);
                match deliver(*signal, target) {
                    Ok(pids) => {
                        counted(Outcome::Success);
                        if let Some(c) = &self.counting {
                            c.metrics.signals(&watch, &signal_name, pids.len() as u64);
                        }
                        let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
                        tracing::info!(
                            "{name}sent {signal_name} to pid {} ({} changes)",
                            pids.join(", "),
                            batch.events
                        );
                    }
                    Err(e) => {
                        counted(Outcome::Failure);
                        anyhow::ensure!(!self.once, "cannot send {signal_name}: {e}");
                        tracing::error!("{name}cannot send {signal_name}: {e}");
                    }
                }
                Ok(self.once)
            }
            Action::Command(spec) => match action::start(&name, spec, &batch, &job.watches) {
                Ok(mut running) => {
                    self.runs += 1;
                    let run = self.runs;
                    job.running = Some(run);
                    let pid = running.pid();
                    self.running.insert(
                        run,
                        RunningAction {
                            label: name,
                            watch,
                            pid,
                        },
                    );
                    let limit = job.spec.timeout;
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        let ended = running.wait(limit).await;
                        let _ = done.send((run, ended));
                    });
                    Ok(false)
                }
                Err(e) => {
                    counted(Outcome::Error);
                    anyhow::ensure!(!self.once, "cannot start the action: {e}");
                    tracing::error!("{name}cannot start the action: {e}");
                    Ok(false)
                }
            },
        }
    }

    /// Run `run` ended (its status was logged where it was waited for).
    fn ended(&mut self, run: u64, ended: &Ended) {
        if let (Some(c), Some(action)) = (&self.counting, self.running.get(&run)) {
            c.metrics
                .run(&action.watch, ended.outcome(), Some(ended.took));
        }
        self.running.remove(&run);
        // A job removed by a reload may still have had a run.
        if let Some(job) = self.jobs.iter_mut().find(|j| j.running == Some(run)) {
            job.running = None;
        }
    }

    /// At the stop: every running action's process group gets SIGTERM,
    /// and SIGKILL when it is still there [`action::KILL_GRACE`] later;
    /// both are logged. Returns once they all ended (each is waited for,
    /// so none is left behind as an orphan).
    async fn stop_actions(&mut self) {
        if self.running.is_empty() {
            return;
        }
        for RunningAction { label, pid, .. } in self.running.values() {
            tracing::warn!(
                "{label}stopping: sending SIGTERM to action[{pid}] and its process group"
            );
            action::signal_group(*pid, libc::SIGTERM);
        }
        if self.ended_within(action::KILL_GRACE).await {
            return;
        }
        for RunningAction { label, pid, .. } in self.running.values() {
            tracing::warn!(
                "{label}action[{pid}] still running {:?} after SIGTERM: sending SIGKILL to its \
                 process group",
                action::KILL_GRACE
            );
            action::signal_group(*pid, libc::SIGKILL);
        }
        if self.ended_within(action::KILL_GRACE).await {
            return;
        }
        for RunningAction { label, pid, .. } in self.running.values() {
            tracing::error!("{label}action[{pid}] did not end after SIGKILL; leaving it");
        }
    }

    /// Takes the ends of running actions for at most `time`: whether they
    /// all ended.
    async fn ended_within(&mut self, time: Duration) -> bool {
        let deadline = Instant::now() + time;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some((run, ended))) => self.ended(run, &ended),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Reads the jobs anew and applies them while the programs stay
    /// attached. A job that keeps its name keeps its batch and its run; a
    /// watch that stays keeps its id, so none of its changes is missed. A
    /// configuration that does not load leaves everything as it was.
    fn reload(&mut self, read: Reload<'_>) {
        notify::reloading();
        let loaded = read(&|dir| self.source.gone(dir));
        match loaded.and_then(|(specs, shared)| self.apply(specs, shared)) {
            Ok(summary) => tracing::info!("reloaded: {summary}"),
            Err(e) => tracing::error!(
                "reload refused, the running configuration stays: {}",
                Causes(&e)
            ),
        }
        notify::send("READY=1");
    }

    fn apply(&mut self, specs: Vec<JobSpec>, shared: Shared) -> anyhow::Result<String> {
        if shared.ring_buffer_size != self.plan.ring_buffer_size {
            tracing::warn!(
                "a new ring_buffer_size takes effect at the next start, not at a reload"
            );
        }
        let plan = plan(
            &specs,
            &Shared {
                ring_buffer_size: self.plan.ring_buffer_size,
                ..shared
            },
        );
        self.source.rewatch(&plan)?;
        let mut old: HashMap<String, Job> = self
            .jobs
            .drain(..)
            .map(|job| (job.spec.name.clone(), job))
            .collect();
        let (mut added, mut kept) = (0, 0);
        let now = Instant::now();
        let mut starting = Vec::new();
        for spec in specs {
            match old.remove(&spec.name) {
                Some(mut job) => {
                    kept += 1;
                    job.spec = spec;
                    job.place(self.source.watches(), &plan);
                    self.jobs.push(job);
                }
                None => {
                    added += 1;
                    if spec.run_at_start {
                        starting.push(self.jobs.len());
                    }
                    self.slots += 1;
                    self.jobs
                        .push(Job::new(spec, self.slots, self.source.watches(), &plan));
                }
            }
        }
        self.plan = plan;
        for i in starting {
            // `once` is a command-line option: never set here.
            self.fire(i, now)?;
        }
        Ok(format!(
            "{} {} ({added} added, {kept} kept, {} removed), {} {}",
            self.jobs.len(),
            if self.jobs.len() == 1 {
                "watch"
            } else {
                "watches"
            },
            old.len(),
            self.source.watches().len(),
            if self.source.watches().len() == 1 {
                "directory"
            } else {
                "directories"
            }
        ))
    }
}

impl Counting {
    fn offered(&mut self, job: &Job, kind: Kind, offer: Offer) {
        let label = |id| job.metric_label(|| directory(&job.watches, id));
        match offer {
            Offer::NotMine => {}
            Offer::Filtered(id) => self.metrics.filtered(&label(id), 1),
            Offer::Taken(id) => self.events.add(kind, (job.slot, id), || label(id)),
        }
    }

    /// Losses of the job's watches (and those undecided), by the innermost
    /// of its watches they are under.
    fn lost(&self, job: &Job, lost: &[(Option<u32>, u64)]) {
        for &(id, n) in lost {
            if let Some(ids) = route(&job.routes, id) {
                let own = ids.and_then(|ids| job.innermost(Some(ids)));
                let label =
                    job.metric_label(|| own.map(|w| escape::path(&w.root)).unwrap_or_default());
                self.metrics.lost(&label, n);
            }
        }
    }

    /// The job's directories that went away or came back (by their root:
    /// a gone one is no longer among the job's watches).
    fn moved(&self, job: &Job, moved: &[Moved]) {
        for m in moved {
            let (Moved::Gone { dir, root, .. } | Moved::Back { dir, root, .. }) = m;
            if job.spec.dirs.contains(dir) {
                self.metrics
                    .moved(&job.metric_label(|| escape::path(root)), m);
            }
        }
    }
}

/// What `command` logs on SIGHUP, which it takes (a logrotate's `pkill
/// -HUP -x watcher` must not stop it) but has no use for.
pub fn nothing_to_reload(command: &str) -> String {
    format!(
        "SIGHUP: `watcher {command}` has nothing to reload (its settings come from the command \
         line); going on"
    )
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::HashSet, rc::Rc};

    use tokio::{sync::mpsc::UnboundedSender, time::sleep};
    use watcher_common::InodeKey;

    use super::*;

    /// A source that yields what a script sends, and notes when each
    /// action starts (the engine tells the kernel its slot right before).
    struct Scripted {
        items: mpsc::UnboundedReceiver<Item>,
        watches: Vec<Watch>,
        started: Rc<RefCell<Vec<Duration>>>,
        origin: Instant,
        /// The descriptors open for writing.
        open: Rc<RefCell<HashSet<(u32, u32)>>>,
    }

    impl Source for Scripted {
        async fn next(&mut self) -> Item {
            // The script's end is the stop.
            self.items.recv().await.unwrap_or(Item::Stop)
        }

        fn watches(&self) -> &[Watch] {
            &self.watches
        }

        fn take_flags(&mut self) -> Vec<u32> {
            Vec::new()
        }

        fn still_open(&self, writers: &[Writer]) -> Vec<bool> {
            let open = self.open.borrow();
            writers
                .iter()
                .map(|w| open.contains(&(w.pid, w.fd)))
                .collect()
        }

        fn set_action_slot(&mut self, _slot: u32) {
            self.started.borrow_mut().push(self.origin.elapsed());
        }

        fn rewatch(&mut self, _plan: &Plan) -> anyhow::Result<()> {
            Ok(())
        }

        fn gone(&self, _dir: &Path) -> bool {
            false
        }
    }

    const DIR: &str = "/srv/media";

    /// A job on [`DIR`] whose action is signal 0 to this process (a run
    /// that is done at once).
    fn job(settle: Duration, interval: Duration) -> JobSpec {
        JobSpec {
            name: String::new(),
            dirs: vec![PathBuf::from(DIR)],
            kinds: Kind::defaults(),
            process: ProcessFilter::default(),
            paths: PathFilter::default(),
            action: Action::Signal {
                signal: 0,
                target: Recipient::Pid(std::process::id() as i32),
            },
            settle,
            max_wait: Duration::from_secs(100),
            interval,
            timeout: Duration::from_secs(60),
            run_at_start: false,
            max_paths: 100,
        }
    }

    fn write(path: &str, origin: Option<u32>) -> Item {
        Item::Events(vec![Event {
            origin,
            ..Event::test_write(path.as_bytes(), 1)
        }])
    }

    /// Runs `spec` over the items `script` sends (at times of its own,
    /// on the paused clock); returns when each action started, from the
    /// start.
    async fn starts(
        spec: JobSpec,
        script: impl AsyncFnOnce(UnboundedSender<Item>),
    ) -> Vec<Duration> {
        starts_with_writers(spec, async |tx, _| script(tx).await).await
    }

    /// As [`starts`], the script also saying which descriptors are open
    /// for writing.
    async fn starts_with_writers(
        spec: JobSpec,
        script: impl AsyncFnOnce(UnboundedSender<Item>, Rc<RefCell<HashSet<(u32, u32)>>>),
    ) -> Vec<Duration> {
        let (tx, items) = mpsc::unbounded_channel();
        let (mut engine, started) = engine(spec, items);
        let open = engine.source.open.clone();
        let (run, ()) = tokio::join!(engine.run(None), script(tx, open));
        run.unwrap();
        started.take()
    }

    /// An engine running `spec` over what `items` receives, watching
    /// [`DIR`]; and when each of its actions started, from now.
    fn engine(
        spec: JobSpec,
        items: mpsc::UnboundedReceiver<Item>,
    ) -> (Engine<Scripted>, Rc<RefCell<Vec<Duration>>>) {
        let started = Rc::new(RefCell::new(Vec::new()));
        let source = Scripted {
            items,
            watches: vec![Watch {
                id: 1,
                root: PathBuf::from(DIR),
                key: InodeKey::default(),
                named: vec![PathBuf::from(DIR)],
            }],
            started: started.clone(),
            origin: Instant::now(),
            open: Rc::default(),
        };
        let plan = plan(
            std::slice::from_ref(&spec),
            &Shared {
                ring_buffer_size: 4096,
                ..Shared::default()
            },
        );
        (Engine::new(source, plan, vec![spec]), started)
    }

    const S: Duration = Duration::from_secs(1);

    /// The kernel side's figures, which these tests have none of.
    #[derive(Debug)]
    struct NoKernel;

    impl prometheus_client::collector::Collector for NoKernel {
        fn encode(
            &self,
            _: prometheus_client::encoding::DescriptorEncoder,
        ) -> Result<(), std::fmt::Error> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_count_what_the_job_takes_leaves_out_loses_and_runs() {
        let (tx, items) = mpsc::unbounded_channel();
        let mut spec = job(S, S);
        spec.paths.exclude = vec!["*.part".parse().unwrap()];
        let (mut engine, _) = engine(spec, items);
        let metrics = Metrics::new(NoKernel);
        engine.count_into(&metrics);
        let script = async {
            tx.send(write("/srv/media/a", None)).unwrap();
            tx.send(write("/srv/media/b", None)).unwrap();
            tx.send(write("/srv/media/c.part", None)).unwrap();
            tx.send(Item::Lost(vec![(Some(1), 3), (None, 2)])).unwrap();
            sleep(10 * S).await;
            drop(tx);
        };
        let (run, ()) = tokio::join!(engine.run(None), script);
        run.unwrap();
        let text = metrics.encode().unwrap();
        // `run`'s job has no name: its events are the directory's, its
        // runs have no watch.
        for line in [
            "watcher_events_total{kind=\"write\",watch=\"/srv/media\"} 2",
            "watcher_events_filtered_total{watch=\"/srv/media\"} 1",
            "watcher_events_lost_total{watch=\"/srv/media\"} 3",
            "watcher_events_lost_total{watch=\"\"} 2",
            "watcher_action_runs_total{watch=\"\",outcome=\"success\"} 1",
            "watcher_signals_sent_total{watch=\"\",signal=\"signal 0\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_makes_one_run_once_quiet_for_settle() {
        let started = starts(job(2 * S, S / 1000), async |tx| {
            for _ in 0..3 {
                tx.send(write("/srv/media/a", None)).unwrap();
                sleep(S).await;
            }
            // Quiet from 2 s: the run is at 4 s. Then one more change.
            sleep(10 * S).await;
            tx.send(write("/srv/media/b", None)).unwrap();
            sleep(10 * S).await;
        })
        .await;
        assert_eq!(started, [4 * S, 15 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_after_a_run_wait_for_the_interval() {
        let started = starts(job(S, 60 * S), async |tx| {
            tx.send(write("/srv/media/a", None)).unwrap();
            sleep(5 * S).await;
            // After the run at 1 s: settled at 6 s, but the next start
            // waits until 61 s.
            tx.send(write("/srv/media/b", None)).unwrap();
            sleep(100 * S).await;
        })
        .await;
        assert_eq!(started, [S, 61 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn losses_count_as_changes_and_its_own_actions_do_not() {
        let started = starts(job(S, S / 1000), async |tx| {
            // The job's own action (slot 1) wrote: nothing to do.
            tx.send(write("/srv/media/a", Some(1))).unwrap();
            sleep(5 * S).await;
            // Another job's action is like any process.
            tx.send(write("/srv/media/a", Some(2))).unwrap();
            sleep(5 * S).await;
            // Lost events under the watch, then undecided ones.
            tx.send(Item::Lost(vec![(Some(1), 3)])).unwrap();
            sleep(5 * S).await;
            tx.send(Item::Lost(vec![(None, 1)])).unwrap();
            sleep(5 * S).await;
            // Under a watch of no job of this engine.
            tx.send(Item::Lost(vec![(Some(7), 1)])).unwrap();
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [6 * S, 11 * S, 16 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_directory_that_went_away_counts_as_a_change() {
        let started = starts(job(S, S / 1000), async |tx| {
            tx.send(Item::Moved(vec![Moved::Gone {
                dir: PathBuf::from(DIR),
                root: PathBuf::from(DIR),
                why: "gone".into(),
            }]))
            .unwrap();
            sleep(5 * S).await;
            // Not one of the job's directories.
            tx.send(Item::Moved(vec![Moved::Gone {
                dir: PathBuf::from("/elsewhere"),
                root: PathBuf::from("/elsewhere"),
                why: "gone".into(),
            }]))
            .unwrap();
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [S]);
    }

    #[tokio::test(start_paused = true)]
    async fn at_start() {
        let mut spec = job(S, S / 1000);
        spec.run_at_start = true;
        let started = starts(spec, async |tx| {
            sleep(5 * S).await;
            drop(tx);
        })
        .await;
        assert_eq!(started, [Duration::ZERO]);
    }

    /// An event of process `pid` about its descriptor `fd`.
    fn by(pid: u32, fd: i64, kind: Kind, path: &str) -> Item {
        Item::Events(vec![Event {
            pid,
            fd: Some(fd),
            kind,
            syscall: if kind == Kind::CloseWrite {
                crate::syscall::Syscall::named("close")
            } else {
                crate::syscall::Syscall::OPENAT
            },
            ..Event::test_write(path.as_bytes(), 1)
        }])
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_open_for_writing_holds_the_batch_until_it_is_closed() {
        let started = starts_with_writers(job(S, S / 1000), async |tx, open| {
            open.borrow_mut().insert((7, 3));
            tx.send(by(7, 3, Kind::Write, "/srv/media/a")).unwrap();
            // Settled at 1 s, held: looked at again every 200 ms.
            sleep(10 * S + S / 10).await;
            open.borrow_mut().remove(&(7, 3));
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [Duration::from_millis(10_200)]);
    }

    #[tokio::test(start_paused = true)]
    async fn its_close_write_lets_the_batch_settle_from_the_close() {
        let mut spec = job(S, S / 1000);
        spec.kinds.push(Kind::CloseWrite);
        let started = starts_with_writers(spec, async |tx, open| {
            open.borrow_mut().insert((7, 3));
            tx.send(by(7, 3, Kind::Write, "/srv/media/a")).unwrap();
            sleep(5 * S).await;
            open.borrow_mut().remove(&(7, 3));
            tx.send(by(7, 3, Kind::CloseWrite, "/srv/media/a")).unwrap();
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [6 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_caps_the_hold() {
        let mut spec = job(S, S / 1000);
        spec.max_wait = 3 * S;
        let started = starts_with_writers(spec, async |tx, open| {
            open.borrow_mut().insert((7, 3));
            tx.send(by(7, 3, Kind::Write, "/srv/media/log")).unwrap();
            sleep(10 * S).await;
        })
        .await;
        assert_eq!(started, [4 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn writers_the_filters_leave_out_hold_nothing_and_zero_waits_for_none() {
        let mut spec = job(S, S / 1000);
        spec.paths.exclude = vec!["*.part".parse().unwrap()];
        let started = starts_with_writers(spec, async |tx, open| {
            open.borrow_mut().extend([(7, 3), (8, 4)]);
            tx.send(by(7, 3, Kind::Write, "/srv/media/a.part")).unwrap();
            tx.send(by(9, 5, Kind::Write, "/srv/media/b")).unwrap();
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [S]);
        let mut spec = job(S, S / 1000);
        spec.max_wait = Duration::ZERO;
        let started = starts_with_writers(spec, async |tx, open| {
            open.borrow_mut().insert((7, 3));
            tx.send(by(7, 3, Kind::Write, "/srv/media/a")).unwrap();
            sleep(5 * S).await;
        })
        .await;
        assert_eq!(started, [S]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_tree_forgets_the_writers_that_closed() {
        let (tx, items) = mpsc::unbounded_channel();
        let (mut engine, _) = engine(job(S, S / 1000), items);
        let open = engine.source.open.clone();
        let script = async {
            // Still open: the first of each thousand.
            for pid in 0..3 * WRITERS_KEPT as u32 {
                if pid % 1000 == 0 {
                    open.borrow_mut().insert((pid, 3));
                }
                tx.send(by(pid, 3, Kind::Write, "/srv/media/a")).unwrap();
            }
            sleep(S / 10).await;
            drop(tx);
        };
        let (run, ()) = tokio::join!(engine.run(None), script);
        run.unwrap();
        let job = &engine.jobs[0];
        assert!(
            job.writers.len() <= WRITERS_KEPT + 1,
            "{}",
            job.writers.len()
        );
        assert!(
            (0..3 * WRITERS_KEPT as u32)
                .step_by(1000)
                .all(|pid| job.writers.contains_key(&(pid, 3)))
        );
    }
}
