//! `watcher top`: changes per process and per path over an interval, as
//! `top` and bcc's filetop show them: redrawn in place on a terminal,
//! printed one report after another otherwise, or once (`--once`).

use std::{
    collections::HashMap,
    io::{self, IsTerminal, Write},
};

use tokio::time::{Instant, sleep_until};

use crate::{
    cli::{Sort, TopArgs},
    escape::escape,
    event::{DecodeError, Event, Kind},
    output::rfc3339,
    start::{LossWatch, Options, start},
};

/// Counts of one row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub writes: u64,
    pub creates: u64,
    pub deletes: u64,
    pub renames: u64,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        self.events += 1;
        match kind {
            Kind::Write => self.writes += 1,
            Kind::Create | Kind::Mkdir => self.creates += 1,
            Kind::Delete => self.deletes += 1,
            Kind::Rename => self.renames += 1,
            _ => {}
        }
    }
}

/// One interval's counts.
#[derive(Default)]
pub struct Tally {
    processes: HashMap<(u32, Vec<u8>), Counts>,
    paths: HashMap<Vec<u8>, Counts>,
}

impl Tally {
    pub fn add(&mut self, ev: &Event) {
        self.processes
            .entry((ev.pid, ev.comm.clone()))
            .or_default()
            .add(ev.kind);
        self.paths.entry(ev.path.clone()).or_default().add(ev.kind);
    }

    /// Counts a decoded event; malformed ones are skipped.
    fn take(&mut self, ev: Result<Event, DecodeError>) -> io::Result<()> {
        if let Ok(ev) = ev {
            self.add(&ev);
        }
        Ok(())
    }

    /// The report: a process table and a path table, each sorted and cut
    /// to `limit` rows.
    pub fn render(&self, sort: Sort, limit: usize, lost: u64) -> String {
        let mut out = String::new();
        if lost > 0 {
            out.push_str(&format!(
                "{lost} events lost (ring buffer full): counts are low\n"
            ));
        }
        let mut procs: Vec<_> = self.processes.iter().collect();
        procs.sort_by(|((pa, ca), a), ((pb, cb), b)| {
            match sort {
                Sort::Events => b.events.cmp(&a.events),
                Sort::Writes => b.writes.cmp(&a.writes),
                Sort::Pid => pa.cmp(pb),
                Sort::Name => ca.cmp(cb),
            }
            .then(pa.cmp(pb))
        });
        out.push_str(&format!(
            "{:>7} {:<16} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
            "PID", "COMM", "EVENTS", "WRITES", "CREATES", "DELETES", "RENAMES"
        ));
        for ((pid, comm), c) in procs.into_iter().take(limit) {
            out.push_str(&format!(
                "{pid:>7} {:<16} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
                escape(comm),
                c.events,
                c.writes,
                c.creates,
                c.deletes,
                c.renames
            ));
        }
        out.push('\n');
        let mut paths: Vec<_> = self.paths.iter().collect();
        paths.sort_by(|(pa, a), (pb, b)| {
            match sort {
                Sort::Events | Sort::Pid => b.events.cmp(&a.events),
                Sort::Writes => b.writes.cmp(&a.writes),
                Sort::Name => pa.cmp(pb),
            }
            .then(pa.cmp(pb))
        });
        out.push_str(&format!(
            "{:>7} {:>7} {:>7} {:>7} {:>7} PATH\n",
            "EVENTS", "WRITES", "CREATES", "DELETES", "RENAMES"
        ));
        for (path, c) in paths.into_iter().take(limit) {
            out.push_str(&format!(
                "{:>7} {:>7} {:>7} {:>7} {:>7} {}\n",
                c.events,
                c.writes,
                c.creates,
                c.deletes,
                c.renames,
                escape(path)
            ));
        }
        out
    }
}

pub async fn top(args: TopArgs, options: Options) -> anyhow::Result<()> {
    let mut w = start(&args.watch.plan(), options)?;
    let terminal = io::stdout().is_terminal() && !args.once;
    let mut losses = LossWatch::default();
    let mut tally = Tally::default();
    let mut due = Instant::now() + args.interval;
    let mut stopping = false;
    loop {
        tokio::select! {
            batch = w.events.next_batch(|ev| tally.take(ev)) => batch?,
            () = sleep_until(due) => {}
            _ = w.hup.recv() => {
                tracing::info!("{}", crate::runner::nothing_to_reload("top"));
                continue;
            }
            () = w.stop.wait() => stopping = true,
        }
        if !stopping && Instant::now() < due {
            continue;
        }
        if stopping {
            w.events.drain(|ev| tally.take(ev))?;
        }
        let lost: u64 = losses.check(&mut w.probes).iter().map(|(_, n)| n).sum();
        let report = tally.render(args.sort, args.limit, lost);
        let mut out = io::stdout().lock();
        let written = if terminal {
            // Home, clear screen, then the report.
            write!(out, "\x1b[H\x1b[2J{report}")
        } else {
            writeln!(out, "{}\n{report}", rfc3339(w.events.clock().now()))
        };
        match written.and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
        if stopping || args.once {
            return Ok(());
        }
        tally = Tally::default();
        due = Instant::now() + args.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_process_and_path_sorted() {
        let mut tally = Tally::default();
        let ev = |pid, comm: &[u8], path: &[u8], kind| Event {
            pid,
            comm: comm.to_vec(),
            kind,
            ..Event::test_write(path, 0)
        };
        for _ in 0..3 {
            tally.add(&ev(7, b"cp", b"/w/a", Kind::Write));
        }
        tally.add(&ev(9, b"rm", b"/w/b", Kind::Delete));
        tally.add(&ev(9, b"rm", b"/w/c", Kind::Delete));
        let report = tally.render(Sort::Events, 10, 0);
        let lines: Vec<&str> = report.lines().collect();
        assert!(lines[1].trim_start().starts_with("7 cp"), "{report}");
        assert!(
            lines[1].ends_with("3       3       0       0       0"),
            "{report}"
        );
        assert!(lines[2].trim_start().starts_with("9 rm"), "{report}");
        assert!(lines[5].ends_with("/w/a"), "{report}");
        let by_pid = tally.render(Sort::Pid, 1, 2);
        assert!(by_pid.starts_with("2 events lost"), "{by_pid}");
        assert_eq!(by_pid.lines().filter(|l| l.contains(" rm ")).count(), 0);
        let by_name = tally.render(Sort::Name, 10, 0);
        assert!(
            by_name.lines().nth(6).unwrap().ends_with("/w/b"),
            "{by_name}"
        );
    }
}
