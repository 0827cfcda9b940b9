//! What `watcher top` shows: changes per process and per path over an
//! interval, as `top` and bcc's filetop count them.

use std::collections::HashMap;

use crate::{choice::Choice, escape::escape, event::Event, kind::Kind};

/// How the rows are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Events,
    Writes,
    Pid,
    Name,
}

impl Choice for Sort {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Self::Events, "events", "Most changes first"),
        (Self::Writes, "writes", "Most opens for writing first"),
        (
            Self::Pid,
            "pid",
            "By process id (paths: most changes first)",
        ),
        (Self::Name, "name", "By process name and by path"),
    ];
}

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
