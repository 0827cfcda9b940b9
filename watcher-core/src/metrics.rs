//! Metrics for a monitoring system, in Prometheus's text format: what the
//! commands and the runner count (events by kind, losses, events left out
//! by filters, action runs and how long they took, signals sent,
//! directories unwatched and watched again), and what a [`Collector`] of
//! the kernel side reads at each scrape (the ring buffer's fill, the
//! kernel maps' entries).
//!
//! The `watch` label is a `[[watch]]`'s name under `serve`, and the
//! watched directory otherwise (escaped as in the text output). A loss the
//! kernel could not attribute to a watch has an empty `watch` (no label,
//! to Prometheus), and under `serve` counts for every watch.

use std::{collections::HashMap, hash::Hash, sync::Arc, time::Duration};

use prometheus_client::{
    collector::Collector,
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};

use crate::{
    escape,
    kind::Kind,
    source::Item,
    watch::{Moved, Watch},
};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Action durations' bucket bounds: 10 ms to about 45 minutes, each four
/// times the last.
const DURATION_BUCKETS: (f64, f64, u16) = (0.01, 4.0, 10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindWatch {
    kind: &'static str,
    watch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabel {
    watch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    watch: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    watch: String,
    signal: String,
}

/// How an action's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0, or a signal delivered to every recipient.
    Success,
    /// Another exit status or a fatal signal, or a signal not delivered.
    Failure,
    /// Stopped for running longer than its timeout.
    Timeout,
    /// Could not be started (or waited for).
    Error,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// The counters, shared: clones count into the same registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    events: Family<KindWatch, Counter>,
    lost: Family<WatchLabel, Counter>,
    filtered: Family<WatchLabel, Counter>,
    runs: Family<RunLabels, Counter>,
    durations: Family<WatchLabel, Histogram>,
    signals: Family<SignalLabels, Counter>,
    unwatched: Family<WatchLabel, Counter>,
    rewatched: Family<WatchLabel, Counter>,
}

impl Metrics {
    /// The counters, and `kernel`'s figures read at each scrape.
    pub fn new(kernel: impl Collector) -> Self {
        let mut registry = Registry::with_prefix("watcher");
        let events = Family::<KindWatch, Counter>::default();
        registry.register(
            "events",
            "Events reported, by kind and watch (after every filter)",
            events.clone(),
        );
        let lost = Family::<WatchLabel, Counter>::default();
        registry.register(
            "events_lost",
            "Events the kernel could not send because the ring buffer was full, by watch",
            lost.clone(),
        );
        let filtered = Family::<WatchLabel, Counter>::default();
        registry.register(
            "events_filtered",
            "Events seen in a watched tree and left out by --include and --exclude (or a \
             watch's include and exclude), by watch",
            filtered.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "action_runs",
            "Runs of the action (a command, or a signal sent), by watch and outcome: success, \
             failure, timeout, error (could not start)",
            runs.clone(),
        );
        let durations = Family::<WatchLabel, Histogram>::new_with_constructor(|| {
            let (start, factor, count) = DURATION_BUCKETS;
            Histogram::new(exponential_buckets(start, factor, count))
        });
        registry.register_with_unit(
            "action_duration",
            "How long the action's commands ran, by watch",
            Unit::Seconds,
            durations.clone(),
        );
        let signals = Family::<SignalLabels, Counter>::default();
        registry.register(
            "signals_sent",
            "Signals sent by signal actions, one per process signalled, by watch and signal",
            signals.clone(),
        );
        let unwatched = Family::<WatchLabel, Counter>::default();
        registry.register(
            "directories_unwatched",
            "Watched directories that went away (deleted, unmounted, replaced), by watch",
            unwatched.clone(),
        );
        let rewatched = Family::<WatchLabel, Counter>::default();
        registry.register(
            "directories_rewatched",
            "Watched directories that came back, or were replaced by another, and are watched \
             again, by watch",
            rewatched.clone(),
        );
        registry.register(
            "build",
            "The version of watcher that serves these metrics",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(kernel));
        Self {
            registry: Arc::new(registry),
            events,
            lost,
            filtered,
            runs,
            durations,
            signals,
            unwatched,
            rewatched,
        }
    }

    /// Every metric, in Prometheus's text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The counter of events of `kind` under `watch`; hold on to it (see
    /// [`EventCounters`]) rather than asking per event.
    fn events(&self, kind: Kind, watch: String) -> Counter {
        self.events
            .get_or_create(&KindWatch {
                kind: kind.name(),
                watch,
            })
            .clone()
    }

    pub fn lost(&self, watch: &str, n: u64) {
        self.lost.get_or_create(&label(watch)).inc_by(n);
    }

    pub fn filtered(&self, watch: &str, n: u64) {
        self.filtered.get_or_create(&label(watch)).inc_by(n);
    }

    /// A run of the action ended (`took`: for a command).
    pub fn run(&self, watch: &str, outcome: Outcome, took: Option<Duration>) {
        self.runs
            .get_or_create(&RunLabels {
                watch: watch.to_string(),
                outcome: outcome.name(),
            })
            .inc();
        if let Some(took) = took {
            self.durations
                .get_or_create(&label(watch))
                .observe(took.as_secs_f64());
        }
    }

    /// `signal` went to `processes` processes.
    pub fn signals(&self, watch: &str, signal: &str, processes: u64) {
        self.signals
            .get_or_create(&SignalLabels {
                watch: watch.to_string(),
                signal: signal.to_string(),
            })
            .inc_by(processes);
    }

    /// A watched directory went away or came back.
    pub fn moved(&self, watch: &str, moved: &Moved) {
        let family = match moved {
            Moved::Gone { .. } => &self.unwatched,
            Moved::Back { .. } => &self.rewatched,
        };
        family.get_or_create(&label(watch)).inc();
    }
}

fn label(watch: &str) -> WatchLabel {
    WatchLabel {
        watch: watch.to_string(),
    }
}

/// The `watch` label of watch `id` where the watch is the directory: its
/// root, escaped; empty when the kernel could not tell.
pub fn directory(known: &[Watch], id: Option<u32>) -> String {
    known
        .iter()
        .find(|w| Some(w.id) == id)
        .map(|w| escape::path(&w.root))
        .unwrap_or_default()
}

/// The events counter of each kind and watch met so far, by a key of the
/// caller's (a watch id, a job): counting an event makes no label.
#[derive(Debug)]
pub struct EventCounters<K> {
    metrics: Metrics,
    counters: HashMap<(Kind, K), Counter>,
}

impl<K: Hash + Eq> EventCounters<K> {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.clone(),
            counters: HashMap::new(),
        }
    }

    /// Counts an event of `kind` under `key`, whose `watch` label
    /// `label` makes the first time.
    pub fn add(&mut self, kind: Kind, key: K, label: impl FnOnce() -> String) {
        self.counters
            .entry((kind, key))
            .or_insert_with(|| self.metrics.events(kind, label()))
            .inc();
    }
}

impl EventCounters<Option<u32>> {
    /// Counts what a session yields where the watch is the directory
    /// (`trace` and `top`): events and losses by the root of their watch
    /// among `known`, directories gone or back by their root.
    pub fn observe(&mut self, item: &Item, known: &[Watch]) {
        match item {
            Item::Events(events) => {
                for ev in events {
                    self.add(ev.kind, ev.watch_id, || directory(known, ev.watch_id));
                }
            }
            Item::Lost(lost) => {
                for &(id, n) in lost {
                    self.metrics.lost(&directory(known, id), n);
                }
            }
            Item::Moved(moved) => {
                for m in moved {
                    let (Moved::Gone { root, .. } | Moved::Back { root, .. }) = m;
                    self.metrics.moved(&escape::path(root), m);
                }
            }
            Item::Hup | Item::Stop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{
        encoding::DescriptorEncoder,
        metrics::{MetricType, gauge::ConstGauge},
    };

    use super::*;

    #[derive(Debug)]
    struct Kernel;

    impl Collector for Kernel {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let gauge = ConstGauge::new(7i64);
            let metric =
                encoder.encode_descriptor("ring_used_bytes", "fill", None, MetricType::Gauge)?;
            prometheus_client::encoding::EncodeMetric::encode(&gauge, metric)
        }
    }

    #[test]
    fn counters_are_named_and_labelled_as_prometheus_expects() {
        let metrics = Metrics::new(Kernel);
        let mut counters = EventCounters::new(&metrics);
        for _ in 0..3 {
            counters.add(Kind::Create, 1u32, || "/srv/media".into());
        }
        counters.add(Kind::Delete, 1u32, || "/srv/media".into());
        metrics.lost("/srv/media", 5);
        metrics.run("media", Outcome::Failure, Some(Duration::from_millis(20)));
        metrics.signals("media", "SIGHUP", 2);
        let text = metrics.encode().unwrap();
        for line in [
            "# TYPE watcher_events_total counter",
            "watcher_events_total{kind=\"create\",watch=\"/srv/media\"} 3",
            "watcher_events_total{kind=\"delete\",watch=\"/srv/media\"} 1",
            "watcher_events_lost_total{watch=\"/srv/media\"} 5",
            "watcher_action_runs_total{watch=\"media\",outcome=\"failure\"} 1",
            "# TYPE watcher_action_duration_seconds histogram",
            "watcher_action_duration_seconds_bucket{watch=\"media\",le=\"0.04\"} 1",
            "watcher_action_duration_seconds_count{watch=\"media\"} 1",
            "watcher_signals_sent_total{watch=\"media\",signal=\"SIGHUP\"} 2",
            "watcher_build_info{version=\"0.1.0\"} 1",
            "watcher_ring_used_bytes 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_label_escapes_what_the_format_cannot_hold() {
        let metrics = Metrics::new(Kernel);
        metrics.filtered("/srv/a\"b\\c", 1);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(r#"watcher_events_filtered_total{watch="/srv/a\"b\\c"} 1"#),
            "{text}"
        );
    }
}
