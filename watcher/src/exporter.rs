//! `--metrics ADDR:PORT`: an HTTP endpoint serving watcher's metrics at
//! `/metrics` in Prometheus's text format, and what the kernel side adds
//! to them at each scrape: the ring buffer's fill and the entries in the
//! kernel's hash maps (the fixed-size ones drop or evict entries when
//! full).
//!
//! No authentication and no TLS: it belongs on the loopback address or
//! behind the fleet's own proxy.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd as _, OwnedFd},
    sync::Arc,
    time::Duration,
};

use aya::maps::MapData;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Bytes, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, gauge::ConstGauge},
};
use watcher_core::metrics::{CONTENT_TYPE, Metrics};

use crate::{bpf::Probes, ring::RingFill};

/// How long a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before accepting again after accept failed (out of
/// descriptors, say), rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot read map {name} for the metrics: {source}")]
    Map {
        name: String,
        source: aya::maps::MapError,
    },
    #[error("cannot take a descriptor of map {name} for the metrics: {source}")]
    MapFd { name: String, source: io::Error },
}

/// Takes `addr` (at start, before the programs are loaded: an address in
/// use is an error then, not later).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ExporterError> {
    let bound = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ExporterError::Bind { addr, source })?;
    Ok(bound)
}

/// Serves `metrics` on `listener` from now on, in a task of its own.
pub fn serve(listener: std::net::TcpListener, metrics: Metrics) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!("metrics at http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = respond(&metrics, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("metrics: connection ended: {e}");
                }
            });
        }
    });
    Ok(())
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status, content_type, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a response from valid parts")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => match metrics.encode() {
            Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
            Err(_) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "cannot encode the metrics\n".into(),
            ),
        },
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "watcher: metrics are at /metrics\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The kernel side's figures, read at each scrape.
#[derive(Debug)]
pub struct KernelGauges {
    ring: Arc<RingFill>,
    maps: Vec<MapFill>,
}

impl KernelGauges {
    /// Over the ring buffer's fill (shared with the session) and the hash
    /// maps of `probes`, each through a descriptor of its own.
    pub fn new(ring: Arc<RingFill>, probes: &Probes) -> Result<Self, ExporterError> {
        let mut maps = probes
            .hash_maps()
            .map(|(name, data)| MapFill::new(name, data))
            .collect::<Result<Vec<_>, _>>()?;
        maps.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(Self { ring, maps })
    }
}

impl Collector for KernelGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut gauge = |name, help, value: u64| {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value as i64).encode(metric)
        };
        gauge(
            "ring_buffer_used_bytes",
            "Bytes of events in the kernel's ring buffer not yet read",
            self.ring.used(),
        )?;
        gauge(
            "ring_buffer_size_bytes",
            "Size of the kernel's ring buffer",
            u64::from(self.ring.size()),
        )?;
        let mut entries = encoder.encode_descriptor(
            "map_entries",
            "Entries in the kernel's hash maps (counted at the scrape; the LRU maps evict their \
             oldest entries when full)",
            None,
            MetricType::Gauge,
        )?;
        for map in &self.maps {
            let labels = [("map", map.label.as_str())];
            ConstGauge::new(i64::from(map.entries())).encode(entries.encode_family(&labels)?)?;
        }
        let mut max = encoder.encode_descriptor(
            "map_max_entries",
            "Most entries each of the kernel's hash maps holds",
            None,
            MetricType::Gauge,
        )?;
        for map in &self.maps {
            let labels = [("map", map.label.as_str())];
            ConstGauge::new(i64::from(map.max_entries)).encode(max.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// One of the kernel's hash maps, whose keys are counted.
#[derive(Debug)]
struct MapFill {
    /// Its name, in lower case.
    label: String,
    fd: OwnedFd,
    key_size: usize,
    max_entries: u32,
}

impl MapFill {
    fn new(name: &str, data: &MapData) -> Result<Self, ExporterError> {
        let info = data.info().map_err(|source| ExporterError::Map {
            name: name.to_string(),
            source,
        })?;
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| ExporterError::MapFd {
                name: name.to_string(),
                source,
            })?;
        Ok(Self {
            label: name.to_lowercase(),
            fd,
            key_size: info.key_size() as usize,
            max_entries: info.max_entries(),
        })
    }

    /// Its keys, one `BPF_MAP_GET_NEXT_KEY` each. While the kernel adds
    /// and removes entries the walk may start over: it stops at
    /// `max_entries`.
    fn entries(&self) -> u32 {
        const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
        let mut key = vec![0u8; self.key_size];
        let mut next = vec![0u8; self.key_size];
        let mut count = 0;
        while count < self.max_entries {
            // union bpf_attr for the map element commands: map_fd, key,
            // next_key (the first key when key is null).
            let attr: [u64; 3] = [
                self.fd.as_raw_fd() as u64,
                if count == 0 { 0 } else { key.as_ptr() as u64 },
                next.as_mut_ptr() as u64,
            ];
            // SAFETY: attr is a valid bpf_attr prefix for this command;
            // key and next hold key_size bytes each.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_GET_NEXT_KEY,
                    attr.as_ptr(),
                    size_of_val(&attr),
                )
            };
            if r != 0 {
                break;
            }
            count += 1;
            std::mem::swap(&mut key, &mut next);
        }
        count
    }
}
