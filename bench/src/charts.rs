//! The comparisons people would rather look at than read, as SVG files
//! beside BENCHMARKS.md (drawn with plotters): added cost per tool for
//! (a)-(d), throughput and loss by writers, start-up and memory by tree
//! size against `inotifywait -r`. Medians, with the runs' range as a
//! whisker.

use std::{ops::Range, path::Path};

use anyhow::{Context as _, anyhow};
use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::{
    load::{self, Burst, Mode},
    overhead::{Case, Costs, Tool, added},
    scale::ScaleRow,
    stat::Stat,
};

/// What the charts are drawn from: the measurements of one run.
pub struct Data<'a> {
    pub costs: &'a Costs,
    pub bursts: &'a [(load::Case, Vec<Burst>)],
    /// Events per second the writers make with no tool, by writer count.
    pub alone: &'a [(usize, Vec<f64>)],
    pub scale: &'a [ScaleRow],
}

/// One chart, and where BENCHMARKS.md shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chart {
    Overhead,
    Throughput,
    Scale,
}

impl Chart {
    /// Its file's name, beside the report `stem`.md.
    pub fn file(self, stem: &str) -> String {
        let name = match self {
            Self::Overhead => "overhead",
            Self::Throughput => "throughput",
            Self::Scale => "scale",
        };
        format!("{stem}-{name}.svg")
    }

    pub fn alt(self) -> &'static str {
        match self {
            Self::Overhead => "added cost per operation, by tool, for (a) to (d)",
            Self::Throughput => "events delivered per second and events lost, by writers",
            Self::Scale => "start-up and memory by tree size, watcher and inotifywait -r",
        }
    }
}

/// Fonts the charts' text may be drawn with (Debian's fonts-dejavu-core,
/// which `cargo xtask bench` installs).
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

const FONT: &str = "sans-serif";

/// Draws every chart of `report` into `dir`, named after `stem`; the
/// charts drawn.
pub fn draw(report: &Data, dir: &Path, stem: &str) -> anyhow::Result<Vec<Chart>> {
    let font = FONTS
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .ok_or_else(|| anyhow!("no font to draw the charts with (tried {FONTS:?})"))?;
    // plotters keeps the font for the process's life.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font(FONT, FontStyle::Normal, font).map_err(|_| anyhow!("the font does not load"))?;
    let charts = [Chart::Overhead, Chart::Throughput, Chart::Scale];
    for chart in charts {
        let path = dir.join(chart.file(stem));
        let area = SVGBackend::new(&path, (960, 640)).into_drawing_area();
        match chart {
            Chart::Overhead => overhead(report, &area),
            Chart::Throughput => throughput(report, &area),
            Chart::Scale => scale(report, &area),
        }
        .and_then(|()| area.present().map_err(|e| anyhow!("{e}")))
        .with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(charts.to_vec())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// plotters' errors hold the backend's, which is not `Send`.
fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// The tools the overhead chart compares, with their short names.
const TOOLS: [(Tool, &str); 7] = [
    (Tool::Empty, "empty"),
    (Tool::Trace, "trace"),
    (Tool::Modify, "trace all"),
    (Tool::Run, "run"),
    (Tool::Bpftrace, "bpftrace"),
    (Tool::Audit, "audit"),
    (Tool::Inotify, "inotifywait"),
];

const CASES: [Case; 4] = [
    Case::Getppid,
    Case::WriteOutside,
    Case::ReadOutside,
    Case::WriteInside,
];

fn overhead(report: &Data, area: &Area) -> anyhow::Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let area = area
        .titled("Added cost per operation (ns; median, min-max)", (FONT, 22))
        .map_err(err)?;
    for (panel, case) in area.split_evenly((2, 2)).iter().zip(CASES) {
        let bars: Vec<(&str, Stat)> = TOOLS
            .iter()
            .filter_map(|&(tool, name)| Some((name, added(report.costs, tool, case)?)))
            .collect();
        let top = bars.iter().map(|(_, s)| s.max).fold(1.0, f64::max) * 1.1;
        let bottom = bars.iter().map(|(_, s)| s.min).fold(0.0, f64::min);
        let mut chart = ChartBuilder::on(panel)
            .caption(case.label(), (FONT, 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            // The segments of 0..n are n + 1: the last would stand empty.
            .build_cartesian_2d(
                (0..bars.len().saturating_sub(1)).into_segmented(),
                bottom..top,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => bars.get(*i).map_or("", |b| b.0).to_string(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, s))| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), s.median),
                    ],
                    BLUE.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, s))| {
                PathElement::new(
                    vec![
                        (SegmentValue::CenterOf(i), s.min),
                        (SegmentValue::CenterOf(i), s.max),
                    ],
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(err)?;
    }
    Ok(())
}

/// The writers' counts measured, in order.
fn writer_counts(report: &Data) -> Vec<usize> {
    let mut counts: Vec<usize> = report.bursts.iter().map(|(c, _)| c.writers).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

fn throughput(report: &Data, area: &Area) -> anyhow::Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let area = area
        .titled(
            "Throughput and loss by writers (median, min-max)",
            (FONT, 22),
        )
        .map_err(err)?;
    let panels = area.split_evenly((1, 2));
    let writers = writer_counts(report);
    let x = 0..writers.len();
    let of = |f: fn(&Burst) -> f64| -> Vec<(String, Vec<(usize, Stat)>)> {
        let mut lines: Vec<(String, Vec<(usize, Stat)>)> = Vec::new();
        for (case, bursts) in report.bursts {
            let name = format!(
                "{} {} ring",
                match case.mode {
                    Mode::Trace => "trace",
                    Mode::Run => "run",
                },
                case.ring
            );
            let at = writers.iter().position(|&w| w == case.writers).unwrap_or(0);
            let values: Vec<f64> = bursts.iter().map(f).collect();
            let point = (at, Stat::of(&values));
            match lines.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push(point),
                None => lines.push((name, vec![point])),
            }
        }
        lines
    };
    let mut delivered = of(|b| b.rate() / 1e3);
    let alone = report
        .alone
        .iter()
        .map(|(w, rates)| {
            let at = writers.iter().position(|x| x == w).unwrap_or(0);
            (
                at,
                Stat::of(&rates.iter().map(|r| r / 1e3).collect::<Vec<_>>()),
            )
        })
        .collect();
    delivered.insert(0, ("writers alone (made)".to_string(), alone));
    let lost = of(|b| b.lost as f64);
    for (panel, (title, lines)) in panels.iter().zip([
        ("delivered (thousand events/s)", delivered),
        ("lost (events)", lost),
    ]) {
        lines_chart(panel, title, &x, &writers, "writers", &lines)?;
    }
    Ok(())
}

fn scale(report: &Data, area: &Area) -> anyhow::Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let area = area
        .titled(
            "Start-up and memory by tree size (median, min-max)",
            (FONT, 22),
        )
        .map_err(err)?;
    let panels = area.split_evenly((1, 2));
    let rows: &[ScaleRow] = report.scale;
    let sizes: Vec<String> = rows.iter().map(|r| size_label(r.size)).collect();
    let x = 0..sizes.len();
    let points = |f: &dyn Fn(&ScaleRow) -> Option<Stat>| -> Vec<(usize, Stat)> {
        rows.iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, f(r)?)))
            .collect()
    };
    // inotifywait's memory only where it started.
    let inotify_mb = |r: &ScaleRow| r.inotify.ready_ms().map(|_| r.inotify.mb(|s| s.rss));
    let start = vec![
        ("watcher".to_string(), points(&|r| r.watcher.ready_ms())),
        (
            "inotifywait -r".to_string(),
            points(&|r| r.inotify.ready_ms()),
        ),
    ];
    let memory = vec![
        (
            "watcher RSS".to_string(),
            points(&|r| Some(r.watcher.mb(|s| s.rss))),
        ),
        (
            "watcher BPF maps".to_string(),
            points(&|r| Some(r.watcher.mb(|s| s.maps))),
        ),
        ("inotifywait -r RSS".to_string(), points(&inotify_mb)),
    ];
    for (panel, (title, lines)) in panels
        .iter()
        .zip([("start-up (ms)", start), ("memory (MB)", memory)])
    {
        lines_chart(panel, title, &x, &sizes, "directories", &lines)?;
    }
    Ok(())
}

/// Line colours, told apart on white.
const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];

/// A tree size as the chart shows it: `10k`, `1M`.
fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Lines of medians with min-max whiskers over the categories `labels`
/// (`x` their indexes), one colour each, with a legend.
fn lines_chart<L: std::fmt::Display>(
    panel: &Area,
    title: &str,
    x: &Range<usize>,
    labels: &[L],
    x_desc: &str,
    lines: &[(String, Vec<(usize, Stat)>)],
) -> anyhow::Result<()> {
    let top = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, s)| s.max))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(panel)
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.start as f64 - 0.3..x.end as f64 - 0.7, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels
                    .get(i as usize)
                    .map_or(String::new(), ToString::to_string)
            } else {
                String::new()
            }
        })
        .x_desc(x_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    for (n, (name, points)) in lines.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(i, s)| (i as f64, s.median)),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&(i, s)| {
                PathElement::new(
                    vec![(i as f64, s.min), (i as f64, s.max)],
                    colour.stroke_width(1),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(i, s)| Circle::new((i as f64, s.median), 3, colour.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}
