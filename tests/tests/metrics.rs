//! `--metrics`: what a real Prometheus server (Debian's, started here on
//! loopback) scrapes from watcher matches what the tests did: events by
//! kind and watch, losses made with a tiny ring buffer, events left out by
//! filters, action runs by outcome, signals, directories unwatched and
//! watched again, the kernel's maps; and the errors at start.

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use watcher_tests::{Tree, Watcher, eventually, require_root, spawn, watcher_bin};

/// A Prometheus server on loopback scraping one target every 100 ms;
/// killed on drop.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Self {
        require_root();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
                 scrape_configs:\n  - job_name: watcher\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port, given back for Prometheus to take.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package, installed by cargo xtask test)");
        let prometheus = Self { child, url };
        eventually(
            "prometheus ready",
            || prometheus.url.clone(),
            || ureq::get(format!("{}/-/ready", prometheus.url)).call().ok(),
        );
        prometheus
    }

    /// The instant vector `query` gives now, as labels and values.
    fn query(&self, query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let body: Value = ureq::get(format!("{}/api/v1/query", self.url))
            .query("query", query)
            .call()
            .and_then(|mut r| r.body_mut().read_json())
            .unwrap_or_else(|e| panic!("query {query}: {e}"));
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = sample["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The one value `query` gives, once it gives one.
    fn value(&self, query: &str) -> Option<f64> {
        match self.query(query).as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }

    /// Waits until `query` is `expected`.
    fn wait_for(&self, w: &Watcher, query: &str, expected: f64) {
        eventually(
            &format!("{query} == {expected}"),
            || format!("it is {:?}; stderr:\n{}", self.query(query), w.stderr()),
            || (self.value(query) == Some(expected)).then_some(()),
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address watcher serves metrics at, from its log.
fn metrics_addr(w: &Watcher) -> String {
    eventually(
        "the metrics address in the log",
        || w.stderr(),
        || {
            let log = w.stderr();
            let at = log.find("metrics at http://")? + "metrics at http://".len();
            let end = log[at..].find("/metrics")?;
            Some(log[at..at + end].to_string())
        },
    )
}

fn create(files: impl IntoIterator<Item = PathBuf>) {
    for f in files {
        fs::write(&f, b"x").unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn prometheus_sees_every_event_and_every_loss_and_the_filtered_ones() {
    let tree = Tree::new("metrics-trace");
    let media = tree.dir("media").canonicalize().unwrap();
    let watch = media.to_str().unwrap();
    let w = Watcher::start(&[
        "trace",
        "--format",
        "json",
        "--events",
        "create",
        "--exclude",
        "*.skip",
        "--ring-buffer-size",
        "4k",
        "--metrics",
        "127.0.0.1:0",
        watch,
    ]);
    let addr = metrics_addr(&w);
    let prometheus = Prometheus::start(&tree.dir("prometheus"), &addr);
    prometheus.wait_for(&w, "up{job=\"watcher\"}", 1.0);

    // Left out by --exclude: counted as filtered, not as events.
    create((0..5).map(|i| media.join(format!("{i}.skip"))));
    prometheus.wait_for(
        &w,
        &format!("watcher_events_filtered_total{{watch=\"{watch}\"}}"),
        5.0,
    );

    // Stopped, watcher reads nothing: the 4 KiB ring buffer fills and the
    // rest are lost.
    const FILES: usize = 300;
    w.send(libc::SIGSTOP);
    create((0..FILES).map(|i| media.join(format!("{i}.keep"))));
    w.send(libc::SIGCONT);
    let events = format!("sum(watcher_events_total{{kind=\"create\",watch=\"{watch}\"}})");
    let lost = format!("sum(watcher_events_lost_total{{watch=\"{watch}\"}})");
    prometheus.wait_for(&w, &format!("{events} + {lost}"), FILES as f64);
    let (events, lost) = (
        prometheus.value(&events).unwrap(),
        prometheus.value(&lost).unwrap(),
    );
    assert!(lost > 0.0, "nothing lost: {events} events");
    assert_eq!(
        prometheus.value("watcher_ring_buffer_size_bytes"),
        Some(4096.0)
    );
    assert_eq!(
        prometheus.value("watcher_map_entries{map=\"watch_inodes\"}"),
        Some(1.0)
    );

    // What watcher printed is what Prometheus has.
    let stopped = w.signal(libc::SIGINT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let lines: Vec<Value> = stopped
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let printed = lines
        .iter()
        .filter(|ev| ev["path"].as_str().is_some_and(|p| p.ends_with(".keep")))
        .count();
    let reported: u64 = lines
        .iter()
        .filter(|ev| ev["event"] == "overflow")
        .map(|ev| ev["lost"].as_u64().unwrap())
        .sum();
    assert_eq!((printed as f64, reported as f64), (events, lost));
}

#[test]
fn the_endpoint_speaks_prometheus_text_and_refuses_the_rest() {
    let tree = Tree::new("metrics-http");
    let media = tree.dir("media");
    let w = Watcher::start(&[
        "top".as_ref(),
        "--metrics".as_ref(),
        "127.0.0.1:0".as_ref(),
        media.as_os_str(),
    ]);
    let url = format!("http://{}", metrics_addr(&w));
    let scrape = || {
        let mut response = ureq::get(format!("{url}/metrics")).call().unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.body_mut().read_to_string().unwrap()
    };
    let root = media.canonicalize().unwrap();
    fs::write(root.join("a"), b"x").unwrap();
    let counted = format!(
        "watcher_events_total{{kind=\"create\",watch=\"{}\"}} 1",
        root.display()
    );
    let text = eventually(
        &counted,
        || format!("{}\nstderr:\n{}", scrape(), w.stderr()),
        || {
            let text = scrape();
            text.lines().any(|l| l == counted).then_some(text)
        },
    );
    for line in [
        "# TYPE watcher_events_total counter",
        "watcher_map_max_entries{map=\"images\"} 8192",
        // Neither `close_write` nor `modify` selected, and no reload to
        // select them: the maps only they use have one entry (an io_uring
        // ftruncate, a `truncate`, keeps no verdict in `files`).
        "watcher_map_max_entries{map=\"write_fds\"} 1",
        "watcher_map_max_entries{map=\"stash\"} 1",
        "watcher_map_max_entries{map=\"files\"} 1",
        "watcher_ring_buffer_size_bytes 1048576",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let status = |r: Result<_, ureq::Error>| match r {
        Err(ureq::Error::StatusCode(code)) => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(status(ureq::get(format!("{url}/other")).call()), 404);
    assert_eq!(status(ureq::post(format!("{url}/metrics")).send("")), 405);
    let stopped = w.signal(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// Writes a configuration of mode 0644.
fn config(tree: &Tree, text: &str) -> PathBuf {
    let path = tree.root.join("watcher.toml");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn serve_counts_runs_by_watch_and_outcome_signals_and_directories() {
    let tree = Tree::new("metrics-serve");
    let (good, bad, sig, gone) = (
        tree.dir("good"),
        tree.dir("bad"),
        tree.dir("sig"),
        tree.dir("gone"),
    );
    // Takes the signal (SIGCONT does nothing to it) until the test ends.
    let mut target = Command::new("sleep").arg("600").spawn().unwrap();
    let watch = |name: &str, dir: &Path, action: &str| {
        format!(
            "[[watch]]\nname = \"{name}\"\ndirs = [\"{}\"]\nevents = \"create\"\n\
             settle = \"50ms\"\ninterval = \"50ms\"\n{action}\n",
            dir.display()
        )
    };
    let path = config(
        &tree,
        &[
            "metrics = \"127.0.0.1:0\"\n".to_string(),
            watch("good", &good, "command = [\"/bin/true\"]"),
            watch("bad", &bad, "command = [\"/bin/false\"]"),
            watch(
                "sig",
                &sig,
                &format!("signal = \"CONT\"\ntarget_pid = {}", target.id()),
            ),
            watch("gone", &gone, "command = [\"/bin/true\"]"),
        ]
        .concat(),
    );
    let w = Watcher::start(&["serve".as_ref(), "--config".as_ref(), path.as_os_str()]);
    let prometheus = Prometheus::start(&tree.dir("prometheus"), &metrics_addr(&w));

    create([good.join("a"), bad.join("a"), sig.join("a")]);
    for (query, expected) in [
        ("watcher_events_total{kind=\"create\",watch=\"good\"}", 1.0),
        (
            "watcher_action_runs_total{watch=\"good\",outcome=\"success\"}",
            1.0,
        ),
        ("watcher_action_duration_seconds_count{watch=\"good\"}", 1.0),
        (
            "watcher_action_runs_total{watch=\"bad\",outcome=\"failure\"}",
            1.0,
        ),
        (
            "watcher_action_runs_total{watch=\"sig\",outcome=\"success\"}",
            1.0,
        ),
        (
            "watcher_signals_sent_total{watch=\"sig\",signal=\"SIGCONT\"}",
            1.0,
        ),
        // Only `create` selected, but a reload may select any kind: the
        // maps `close_write` uses are whole.
        ("watcher_map_max_entries{map=\"write_fds\"}", 16384.0),
    ] {
        prometheus.wait_for(&w, query, expected);
    }

    fs::remove_dir(&gone).unwrap();
    prometheus.wait_for(
        &w,
        "watcher_directories_unwatched_total{watch=\"gone\"}",
        1.0,
    );
    fs::create_dir(&gone).unwrap();
    prometheus.wait_for(
        &w,
        "watcher_directories_rewatched_total{watch=\"gone\"}",
        1.0,
    );

    let stopped = w.signal(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn an_address_in_use_or_malformed_is_one_error_line_before_anything_loads() {
    let tree = Tree::new("metrics-errors");
    let media = tree.dir("media");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_, out) = spawn(
        Command::new(watcher_bin())
            .args(["trace", "--metrics", &addr])
            .arg(&media),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("watcher: cannot serve metrics on {addr}: Address already in use (os error 98)\n")
    );

    let path = config(
        &tree,
        &format!(
            "metrics = \"localhost:9464\"\n[[watch]]\ndirs = [\"{}\"]\ncommand = [\"/bin/true\"]\n",
            media.display()
        ),
    );
    let (_, out) = spawn(
        Command::new(watcher_bin())
            .arg("serve")
            .arg("--config")
            .arg(&path),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(":1: ") && stderr.contains("is not an IP address and port"),
        "{stderr}"
    );
}
