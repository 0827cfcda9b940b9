//! `watcher run` and `watcher serve`: run a command (or send a signal)
//! after changes, batched and one at a time, for one watch or for each of
//! a configuration's.
//!
//! Every event joins the current batch of each job whose directories hold
//! it and whose filters keep it. A job's action starts once its batch is
//! not empty, nothing has happened for `settle`, at least `interval` has
//! passed since its last start, and no run of it is going on. Events that
//! arrive during a run form the next batch, so they cause exactly one more
//! run after it. Lost events, and watches the kernel flagged as changed
//! without an event (for jobs that filter nothing the kernel does not),
//! count as changes.

mod action;
mod batch;
mod signal;
mod user;

use std::{
    collections::HashMap,
    mem,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

pub use action::{CommandSpec, StdinFormat, check_program};
pub use signal::{Target, parse_signal};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
pub use user::{RunAs, lookup as lookup_user};

use self::{
    batch::Batch,
    signal::{deliver, signal_name},
};
use crate::{
    bpf::Probes,
    cli::{RunArgs, ServeArgs},
    event::{Event, Kind},
    filter::{PathFilter, ProcessFilter},
    start::{LossWatch, Moved, Options, Plan, Watching, start},
    watch::Watch,
};

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
    pub interval: Duration,
    pub timeout: Duration,
    pub run_at_start: bool,
    pub max_paths: usize,
}

#[derive(Clone, Debug)]
pub enum Action {
    Command(CommandSpec),
    Signal { signal: i32, target: Target },
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

    /// The job `watcher run` was given.
    pub fn from_args(args: &RunArgs) -> anyhow::Result<Self> {
        let action = match args.signal {
            Some(signal) => {
                let target = match (&args.process_name, args.target_pid, &args.pidfile) {
                    (Some(name), _, _) => Target::Name(name.clone()),
                    (_, Some(pid), _) => Target::Pid(pid),
                    (_, _, Some(path)) => Target::Pidfile(path.clone()),
                    _ => anyhow::bail!("--signal needs --process-name, --target-pid or --pidfile"),
                };
                Action::Signal { signal, target }
            }
            None => {
                if !args.shell {
                    check_program(&args.command[0])?;
                }
                Action::Command(CommandSpec {
                    command: args.command.clone(),
                    shell: args.shell,
                    user: args.user.clone(),
                    stdin: args.stdin_format,
                })
            }
        };
        Ok(Self {
            // One job: its lines need no name.
            name: String::new(),
            dirs: args.watch.dirs.clone(),
            kinds: args.watch.events.0.clone(),
            process: args.watch.process_filter(),
            paths: args.watch.path_filter(),
            action,
            settle: args.settle,
            interval: args.interval,
            timeout: args.timeout,
            run_at_start: args.run_at_start,
            max_paths: args.max_paths as usize,
        })
    }
}

/// What the kernel is asked for on behalf of `jobs`: every directory and
/// kind any of them wants, and the process filters when they all share
/// them (else each job filters in user space).
pub fn plan(jobs: &[JobSpec], ring_buffer_size: u32) -> Plan {
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
        ring_buffer_size,
        // One job ignores its own action's changes: the kernel leaves them
        // out. With more, one job's action may change another's tree.
        tag_actions: jobs.len() > 1,
    }
}

/// Refuses to start when a command of `jobs` would get watcher's own
/// capabilities (the privileges themselves are checked first: their
/// message is the one that helps).
fn check_actions(jobs: &[JobSpec]) -> anyhow::Result<()> {
    if jobs.iter().any(|j| matches!(j.action, Action::Command(_))) {
        crate::privileges::check()?;
        crate::privileges::check_actions()?;
    }
    Ok(())
}

/// `watcher run`: one job, no reload.
pub async fn run(args: RunArgs, options: Options) -> anyhow::Result<()> {
    // A bad user or command is bad input: refuse it before attaching.
    let job = JobSpec::from_args(&args)?;
    check_actions(std::slice::from_ref(&job))?;
    let plan = plan(std::slice::from_ref(&job), args.watch.ring_buffer_size);
    let w = start(&plan, options)?;
    let mut engine = Engine::new(w, plan, vec![job]);
    engine.once = args.once;
    engine.run(None).await
}

/// `watcher serve`: every job of a configuration; SIGHUP reloads it.
pub async fn serve(args: ServeArgs, options: Options) -> anyhow::Result<()> {
    let config = crate::config::load(&args.config, &|_| false)?;
    check_actions(&config.jobs)?;
    let plan = plan(&config.jobs, config.ring_buffer_size);
    let w = start(&plan, options)?;
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    tracing::info!(
        "{} {} from {}: {}",
        names.len(),
        if names.len() == 1 { "watch" } else { "watches" },
        args.config.display(),
        names.join(", ")
    );
    let mut engine = Engine::new(w, plan, config.jobs);
    let mut read = |gone: &dyn Fn(&Path) -> bool| {
        let config = crate::config::load(&args.config, gone)?;
        Ok((config.jobs, config.ring_buffer_size))
    };
    engine.run(Some(&mut read)).await
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
            .filter_map(|dir| crate::watch::find(watches, dir))
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
    fn offer(&mut self, ev: &Event, now: Instant) {
        if ev.origin == Some(self.slot) {
            return;
        }
        let Some(ids) = route(&self.routes, ev.watch_id) else {
            return;
        };
        if !self.spec.kinds.contains(&ev.kind) || !self.spec.process.admits(ev) {
            return;
        }
        // Below-the-watch patterns are relative to the innermost of the
        // job's watches that holds the event.
        let root = self
            .watches
            .iter()
            .filter(|w| ids.is_none_or(|ids| ids.contains(&w.id)))
            .map(|w| w.root.as_path())
            .max_by_key(|root| root.as_os_str().len());
        if !self.spec.paths.keeps(ev, root) {
            return;
        }
        self.batch.add(ev, ids, self.spec.max_paths);
        self.last_change = Some(now);
    }

    /// When the action is due, if it is.
    fn due(&self) -> Option<Instant> {
        if self.running.is_some() || self.batch.is_empty() {
            return None;
        }
        let settled = self.last_change? + self.spec.settle;
        Some(
            self.last_start
                .map_or(settled, |s| settled.max(s + self.spec.interval)),
        )
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
            let own: Vec<u32> = self
                .watches
                .iter()
                .map(|w| w.id)
                .filter(|id| flagged.contains(id))
                .collect();
            self.batch.flag(&own);
        }
        if was_empty && !self.batch.is_empty() {
            self.last_change = Some(now);
        }
    }
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

/// Runs the jobs over one set of attached programs.
pub struct Engine {
    w: Watching,
    plan: Plan,
    jobs: Vec<Job>,
    /// Exit after the first run (`run --once`), with its status.
    pub once: bool,
    runs: u64,
    /// The last job slot given (slots start at 1).
    slots: u32,
    /// The actions running, by run number: the job's label and the
    /// action's pid (also its process group id).
    running: HashMap<u64, (String, i32)>,
    done_tx: mpsc::UnboundedSender<(u64, std::io::Result<ExitStatus>)>,
    done_rx: mpsc::UnboundedReceiver<(u64, std::io::Result<ExitStatus>)>,
}

/// How a reload reads the new jobs; a directory the predicate holds gone
/// (watched, and gone since) may be missing.
pub type Reload<'a> =
    &'a mut dyn FnMut(&dyn Fn(&Path) -> bool) -> anyhow::Result<(Vec<JobSpec>, u32)>;

impl Engine {
    pub fn new(w: Watching, plan: Plan, specs: Vec<JobSpec>) -> Self {
        let jobs: Vec<Job> = specs
            .into_iter()
            .zip(1..)
            .map(|(spec, slot)| Job::new(spec, slot, &w.watches, &plan))
            .collect();
        let slots = jobs.len() as u32;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            w,
            plan,
            jobs,
            once: false,
            runs: 0,
            slots,
            running: HashMap::new(),
            done_tx,
            done_rx,
        }
    }

    /// Runs until SIGINT or SIGTERM (or the first run's end with `once`).
    /// With `reload`, SIGHUP reads the jobs anew and applies them in place;
    /// without, SIGHUP is logged and changes nothing (`pkill -HUP -x
    /// watcher` after a logrotate must not stop a `run`). At the stop, a
    /// running action is stopped too (see [`Engine::stop_actions`]).
    pub async fn run(&mut self, mut reload: Option<Reload<'_>>) -> anyhow::Result<()> {
        let mut losses = LossWatch::default();
        let mut check_tick = tokio::time::interval(Duration::from_secs(1));
        let now = Instant::now();
        for i in 0..self.jobs.len() {
            if self.jobs[i].spec.run_at_start && self.fire(i, now)? {
                return Ok(());
            }
        }
        loop {
            let due = self.jobs.iter().filter_map(Job::due).min();
            tokio::select! {
                batch_read = self.w.events.next_batch(|ev| {
                    match ev {
                        Ok(ev) => {
                            let now = Instant::now();
                            tracing::debug!("{}", crate::output::text_line(&ev, false));
                            for job in &mut self.jobs {
                                job.offer(&ev, now);
                            }
                        }
                        Err(e) => tracing::warn!("skipping a malformed event: {e}"),
                    }
                    Ok(())
                }) => batch_read?,
                _ = check_tick.tick() => {
                    self.follow();
                    let lost = losses.check(&mut self.w.probes);
                    let flagged = take_flags(&mut self.w.probes);
                    let now = Instant::now();
                    for job in &mut self.jobs {
                        job.note(&lost, &flagged, now);
                    }
                }
                () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let now = Instant::now();
                    for i in 0..self.jobs.len() {
                        if self.jobs[i].due().is_some_and(|d| d <= now) && self.fire(i, now)? {
                            return Ok(());
                        }
                    }
                }
                Some((run, status)) = self.done_rx.recv() => {
                    self.ended(run);
                    if self.once {
                        let status = status?;
                        anyhow::ensure!(status.success(), "the action failed ({status})");
                        return Ok(());
                    }
                }
                _ = self.w.hup.recv() => match reload.as_mut() {
                    Some(read) => self.reload(read),
                    None => tracing::info!("{}", nothing_to_reload("run")),
                },
                () = self.w.stop.wait() => {
                    crate::notify::send("STOPPING=1");
                    self.stop_actions().await;
                    return Ok(());
                }
            }
        }
    }

    /// Watches the directories named anew when one went away or was
    /// replaced: a change for each job that named it.
    fn follow(&mut self) {
        let moved = self.w.follow(&self.plan);
        if moved.is_empty() {
            return;
        }
        let now = Instant::now();
        for job in &mut self.jobs {
            job.place(&self.w.watches, &self.plan);
            job.moved(&moved, now);
        }
    }

    /// Starts job `i`'s action for its batch: a command, which runs on,
    /// or a signal, which is done at once. Returns whether to exit
    /// (`once`, and nothing runs on).
    fn fire(&mut self, i: usize, now: Instant) -> anyhow::Result<bool> {
        // The flags raised by this batch's events are spent; the other
        // jobs get those that are up.
        let flagged = take_flags(&mut self.w.probes);
        for (j, job) in self.jobs.iter_mut().enumerate() {
            if j != i {
                job.note(&[], &flagged, now);
            }
        }
        // Set before the fork: the kernel enters the action's process with it.
        if let Err(e) = self.w.probes.set_action_slot(self.jobs[i].slot) {
            tracing::error!("cannot tell the kernel which watch's action starts: {e}");
        }
        let job = &mut self.jobs[i];
        let batch = mem::take(&mut job.batch);
        job.last_start = Some(now);
        let name = job.spec.label();
        match &job.spec.action {
            Action::Signal { signal, target } => {
                let signal_name = signal_name(*signal);
                match deliver(*signal, target) {
                    Ok(pids) => {
                        let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
                        tracing::info!(
                            "{name}sent {signal_name} to pid {} ({} changes)",
                            pids.join(", "),
                            batch.events
                        );
                    }
                    Err(e) if self.once => anyhow::bail!("cannot send {signal_name}: {e}"),
                    Err(e) => tracing::error!("{name}cannot send {signal_name}: {e}"),
                }
                Ok(self.once)
            }
            Action::Command(spec) => match action::start(&name, spec, &batch, &job.watches) {
                Ok(mut running) => {
                    self.runs += 1;
                    let run = self.runs;
                    job.running = Some(run);
                    self.running.insert(run, (name, running.pid()));
                    let limit = job.spec.timeout;
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        let status = running.wait(limit).await;
                        let _ = done.send((run, status));
                    });
                    Ok(false)
                }
                Err(e) if self.once => anyhow::bail!("cannot start the action: {e}"),
                Err(e) => {
                    tracing::error!("{name}cannot start the action: {e}");
                    Ok(false)
                }
            },
        }
    }

    /// Run `run` ended (its status was logged where it was waited for).
    fn ended(&mut self, run: u64) {
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
        for (label, pid) in self.running.values() {
            tracing::warn!(
                "{label}stopping: sending SIGTERM to action[{pid}] and its process group"
            );
            action::signal_group(*pid, libc::SIGTERM);
        }
        if self.ended_within(action::KILL_GRACE).await {
            return;
        }
        for (label, pid) in self.running.values() {
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
        for (label, pid) in self.running.values() {
            tracing::error!("{label}action[{pid}] did not end after SIGKILL; leaving it");
        }
    }

    /// Takes the ends of running actions for at most `time`: whether they
    /// all ended.
    async fn ended_within(&mut self, time: Duration) -> bool {
        let deadline = Instant::now() + time;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some((run, _))) => self.ended(run),
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
        crate::notify::reloading();
        let loaded = read(&|dir| self.w.gone(dir));
        match loaded.and_then(|(specs, ring)| self.apply(specs, ring)) {
            Ok(summary) => tracing::info!("reloaded: {summary}"),
            Err(e) => tracing::error!(
                "reload refused, the running configuration stays: {}",
                crate::log::Causes(&e)
            ),
        }
        crate::notify::send("READY=1");
    }

    fn apply(&mut self, specs: Vec<JobSpec>, ring_buffer_size: u32) -> anyhow::Result<String> {
        if ring_buffer_size != self.plan.ring_buffer_size {
            tracing::warn!(
                "a new ring_buffer_size takes effect at the next start, not at a reload"
            );
        }
        let plan = plan(&specs, self.plan.ring_buffer_size);
        crate::start::rewatch(&mut self.w, &plan)?;
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
                    job.place(&self.w.watches, &plan);
                    self.jobs.push(job);
                }
                None => {
                    added += 1;
                    if spec.run_at_start {
                        starting.push(self.jobs.len());
                    }
                    self.slots += 1;
                    self.jobs
                        .push(Job::new(spec, self.slots, &self.w.watches, &plan));
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
            self.w.watches.len(),
            if self.w.watches.len() == 1 {
                "directory"
            } else {
                "directories"
            }
        ))
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

/// The watches the kernel flagged as changed, clearing the flags.
fn take_flags(probes: &mut Probes) -> Vec<u32> {
    probes.take_dirty().unwrap_or_else(|e| {
        tracing::warn!("cannot read the change flags: {e}");
        Vec::new()
    })
}
