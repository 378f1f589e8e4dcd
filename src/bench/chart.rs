//! `strata bench --svg`: the report drawn as charts in one SVG file (plotters' SVG backend).
//! A write, read or mixed run gives one chart, the latency percentile curves of each target
//! and kind of request (HdrHistogram's plot: percentiles on a log scale of 1/(1−q), latency on
//! a log scale). A router run gives two, one above the other: the response time with and
//! without the cache (average, p50, p99), and the result layer's hit rate over time.
//!
//! Text is written as SVG `<text>` for the viewer to set in its own sans-serif font: nothing
//! here reads a font file (plotters' `ttf` feature is off; its layout of a label is an
//! estimate from the character count, close enough for axis labels and legends).

use std::path::Path;

use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Report, RouterReport};
use super::router::RouterFigures;
use super::workload::OpKind;

/// Why the charts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing the charts failed: {0}")]
    Draw(#[from] DrawingAreaErrorKind<std::io::Error>),
    #[error("{0}")]
    Write(#[from] std::io::Error),
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Width of the image, pixels.
const WIDTH: u32 = 1000;
/// Height of one chart, pixels (a router run stacks two).
const CHART_HEIGHT: u32 = 600;
/// The lowest latency a log axis shows, µs (1 ns, the histograms' resolution): a zero (or
/// missing) figure is drawn there rather than at log(0).
const FLOOR_US: f64 = 0.001;
/// The percentile axis starts at the median: 1/(1−0.5).
const X_MIN: f64 = 2.0;

/// One colour per target, in order (Tableau 10 without its grey, which marks "no cache").
const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const NO_CACHE: RGBColor = RGBColor(110, 110, 110);

fn color(i: usize) -> RGBColor {
    PALETTE.get(i % PALETTE.len()).copied().unwrap_or(BLACK)
}

/// Writes the report's charts to `path` as one SVG file.
pub fn write(report: &Report, path: &Path) -> Result<(), ChartError> {
    let svg = render(report)?;
    std::fs::write(path, svg)?;
    Ok(())
}

/// The report's charts as the text of one SVG file.
pub fn render(report: &Report) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let charts = if report.router.is_some() { 2 } else { 1 };
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, CHART_HEIGHT * charts)).into_drawing_area();
        root.fill(&WHITE)?;
        match &report.router {
            Some(router) => {
                let (top, bottom) = root.split_vertically(CHART_HEIGHT);
                draw_router_times(&top, router)?;
                draw_hit_rate_over_time(&bottom, router)?;
            }
            None => draw_latency(&root, report)?,
        }
        root.present()?;
    }
    Ok(svg)
}

/// One line of the percentile chart.
struct Curve {
    label: String,
    color: RGBColor,
    /// SETs dashed, GETs solid.
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Where quantile `q` sits on the percentile axis: 1/(1−q), so 90%, 99%, 99.9% are evenly
/// spaced on a log scale. The maximum (q = 1, infinitely far) is drawn where the slowest of
/// `n` samples sits, 1 − 1/n; a curve of unknown size puts it a decade past its last point.
fn percentile_x(q: f64, n: u64, last: f64) -> f64 {
    let cap = if n > 0 { n as f64 } else { last * 10.0 };
    let x = if q < 1.0 { 1.0 / (1.0 - q) } else { cap };
    x.min(cap).max(X_MIN)
}

/// A curve's points on the chart: finite, above the floor, left to right.
fn curve_points(curve: &[(f64, f64)], n: u64) -> Vec<(f64, f64)> {
    let mut last = X_MIN;
    let mut points = Vec::with_capacity(curve.len());
    for &(q, us) in curve {
        if !(q.is_finite() && q >= 0.0 && us.is_finite()) {
            continue;
        }
        let x = percentile_x(q.min(1.0), n, last);
        last = x;
        points.push((x, us.max(FLOOR_US)));
    }
    points
}

/// `90%`, `99.9%`, `99.99%`: as many decimals as the percentile needs.
fn percentile_label(x: f64) -> String {
    if !(x.is_finite() && x >= 1.0) {
        return String::new();
    }
    let pct = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() - 2.0).max(0.0) as usize;
    format!("{pct:.decimals$}%")
}

/// A figure for an axis: no trailing zeros (`0.002`, `5`, `2000`).
fn number_label(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The decade at or below `v` (and at or above, for `ceil`), as 10^k.
fn decade(v: f64, ceil: bool) -> f64 {
    let k = v.log10();
    10f64.powf(if ceil { k.ceil() } else { k.floor() })
}

/// Ticks of a log axis from `lo` to `hi` (both powers of ten): 1, 2, 5 per decade over up to
/// three decades, the decades alone over more.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10().round().max(0.0) as i32;
    let steps: &[f64] = if decades <= 3 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for k in 0..=decades {
        let base = lo * 10f64.powi(k);
        for s in steps {
            let v = base * s;
            if v <= hi * 1.000_001 {
                ticks.push(v);
            }
        }
    }
    ticks
}

/// The font of a chart's caption.
const TITLE: (&str, u32) = ("sans-serif", 22);

/// The legend of a chart's labelled series, boxed, at `at`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Result<(), ChartError> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The percentile curves of every target and kind of request.
fn draw_latency(area: &Area, report: &Report) -> Result<(), ChartError> {
    let curves: Vec<Curve> = report
        .targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.percentiles.iter().map(move |(kind, curve)| {
                let n = t.ops.get(kind).map_or(0, |o| o.requests);
                Curve {
                    label: format!("{} {}", t.name, kind.name()),
                    color: color(i),
                    dashed: *kind == OpKind::Set,
                    points: curve_points(curve, n),
                }
            })
        })
        .collect();
    let all = curves.iter().flat_map(|c| c.points.iter());
    let (x_hi, y_lo, y_hi) = all.fold(
        (100.0f64, f64::INFINITY, 0.0f64),
        |(x_hi, y_lo, y_hi), &(x, y)| (x_hi.max(x), y_lo.min(y), y_hi.max(y)),
    );
    let x_hi = decade(x_hi, true);
    let (y_lo, y_hi) = if y_lo.is_finite() && y_hi >= y_lo {
        // Headroom above the slowest line for the legend (upper left).
        let (lo, hi) = (decade(y_lo, false), decade(y_hi * 1.5, true));
        (lo, if hi > lo { hi } else { lo * 10.0 })
    } else {
        (1.0, 1000.0)
    };
    let mut x_ticks = vec![X_MIN];
    let mut x = 10.0;
    while x <= x_hi * 1.000_001 {
        x_ticks.push(x);
        x *= 10.0;
    }
    let workload = report
        .settings
        .get("workload")
        .map_or(String::new(), |w| format!(" ({w})"));
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Latency by percentile{workload}"), TITLE)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (X_MIN..x_hi).log_scale().with_key_points(x_ticks),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| number_label(*y))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()?;
    for c in curves {
        let style = c.color.stroke_width(2);
        let anno = if c.dashed {
            chart.draw_series(DashedLineSeries::new(c.points.clone(), 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(c.points.clone(), style))?
        };
        let dashed = c.dashed;
        anno.label(c.label).legend(move |(x, y)| {
            let line = vec![(x, y), (x + 24, y)];
            if dashed {
                DashedPathElement::new(line, 8, 5, style).into_dyn()
            } else {
                PathElement::new(line, style).into_dyn()
            }
        });
        chart.draw_series(
            c.points
                .iter()
                .map(|&p| Circle::new(p, 3, c.color.filled())),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// A figure drawn as a bar or a line: finite and not below 0.
fn nonnegative(v: f64) -> f64 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

/// A bar's figure as text: three significant digits or so.
fn ms_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Grouped bars: average, p50 and p99 response time of each target and of "no cache".
fn draw_router_times(area: &Area, router: &RouterReport) -> Result<(), ChartError> {
    const GROUPS: [&str; 3] = ["average", "p50", "p99"];
    let figures = |f: &RouterFigures| [f.avg_ms, f.p50_ms, f.p99_ms].map(nonnegative);
    let speedup = |name: &str| {
        router
            .speedup
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, x)| *x)
    };
    let series: Vec<(String, RGBColor, [f64; 3])> = router
        .cached
        .iter()
        .enumerate()
        .map(|(i, (name, f))| {
            let label = match speedup(name) {
                Some(x) if x.is_finite() && x > 0.0 => {
                    format!("{name} ({x:.1}x faster on average)")
                }
                _ => name.clone(),
            };
            (label, color(i), figures(f))
        })
        .chain(std::iter::once((
            "no cache".to_string(),
            NO_CACHE,
            figures(&router.no_cache),
        )))
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let y_hi = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Router: response time per query, with and without the cache",
            TITLE,
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        // Group g is centred on x = g: the axis's own round ticks (0, 1, 2) name the groups.
        .build_cartesian_2d(-0.5..GROUPS.len() as f64 - 0.5, 0.0..y_hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(GROUPS.len())
        .x_desc("response time")
        .y_desc("ms")
        .x_label_formatter(&|x| {
            let g = x.round();
            match GROUPS.get(g.max(0.0) as usize) {
                Some(name) if (x - g).abs() < 0.01 => name.to_string(),
                _ => String::new(),
            }
        })
        .y_label_formatter(&|y| number_label(*y))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()?;
    let width = 0.8 / series.len().max(1) as f64;
    let value_style =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (s, (label, c, values)) in series.iter().enumerate() {
        let bars: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(g, &v)| (g as f64 - 0.4 + s as f64 * width, v))
            .collect();
        let fill = c.filled();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, v)| Rectangle::new([(x, 0.0), (x + width * 0.9, v)], fill)),
            )?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], fill));
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                Text::new(ms_label(v), (x + width * 0.45, v), value_style.clone())
            }))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// The result layer's hit rate, second by second, one line per target.
fn draw_hit_rate_over_time(area: &Area, router: &RouterReport) -> Result<(), ChartError> {
    let seconds = router
        .cached
        .iter()
        .map(|(_, f)| f.result_hit_rate_over_time.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut chart = ChartBuilder::on(area)
        .caption("Router: result-layer hit rate over time", TITLE)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..seconds as f64, 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("result: hit rate (%)")
        .x_label_formatter(&|x| number_label(*x))
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, f)) in router.cached.iter().enumerate() {
        let c = color(i);
        // Second i's share, drawn at its middle.
        let points: Vec<(f64, f64)> = f
            .result_hit_rate_over_time
            .iter()
            .enumerate()
            .filter_map(|(s, &r)| Some((s as f64 + 0.5, (nonnegative(r?) * 100.0).min(100.0))))
            .collect();
        let style = c.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

#[cfg(test)]
mod tests;
