//! SVG charts for the report, drawn with `plotters`' SVG backend: three chart types, one function
//! each — [`line_chart`] (several series, optional right-hand axis, dashed lines),
//! [`grouped_bars`] (one bar per series in each category) and [`interval_bars`] (horizontal bars
//! with 95% interval whiskers).
//!
//! Without a font feature plotters estimates text extents (about 0.55 em per character, see
//! plotters' `style/font/naive.rs`) and the SVG carries `<text>` elements that the browser renders
//! with its own sans-serif font, so no system font is read. Each chart draws its legend in a strip
//! above the plot (wrapped to more rows when it is wide), where it cannot hide data.

use crate::{EvalError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

/// Colour-blind-safe Tableau 10 palette.
pub const PALETTE: [Rgb; 10] = [
    (78, 121, 167),
    (242, 142, 43),
    (89, 161, 79),
    (225, 87, 89),
    (176, 122, 161),
    (118, 183, 178),
    (237, 201, 72),
    (156, 117, 95),
    (255, 157, 167),
    (140, 140, 140),
];

const FONT: &str = "sans-serif";
const LEGEND_ROW_H: u32 = 24;

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn err<E: std::fmt::Display>(e: E) -> EvalError {
    EvalError::Invalid(format!("cannot draw a chart: {e}"))
}

/// One line of a [`line_chart`].
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
    pub dashed: bool,
    /// Plot against the right-hand axis (`LineChart::y2_label`).
    pub right_axis: bool,
    /// Mark every point, not only a lone one: for trajectories (reward against KL) whose x goes
    /// back and forth, so each checkpoint can be told from the line's turns.
    pub markers: bool,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: Rgb) -> Self {
        Series { name: name.into(), points, color, dashed: false, right_axis: false, markers: false }
    }
    pub fn markers(mut self) -> Self {
        self.markers = true;
        self
    }
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
    pub fn right(mut self) -> Self {
        self.right_axis = true;
        self
    }
}

/// A line chart: `series` against a shared x axis; series with `right_axis` use a second y axis.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub x_label: String,
    pub y_label: String,
    /// Caption of the right-hand axis; needed only when a series has `right_axis`.
    pub y2_label: Option<String>,
    pub series: Vec<Series>,
    pub size: (u32, u32),
}

/// (min, max) of finite values, padded by 5% (a flat series gets a unit-wide range).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Approximate width in pixels of `text` at the legend's 14 px sans-serif.
fn text_width(text: &str) -> i32 {
    (6.8 * text.chars().count() as f64).ceil() as i32
}

/// Rows of legend entries that fit in `width` pixels (each entry: a 24 px swatch, a gap, the text).
fn legend_rows(items: &[(String, Rgb, bool)], width: u32) -> Vec<Vec<(String, Rgb, bool)>> {
    let mut rows: Vec<Vec<(String, Rgb, bool)>> = vec![vec![]];
    let mut x = 60;
    for it in items {
        let w = 30 + text_width(&it.0) + 28;
        if x + w > width as i32 - 10 && !rows.last().unwrap().is_empty() {
            rows.push(vec![]);
            x = 60;
        }
        rows.last_mut().unwrap().push(it.clone());
        x += w;
    }
    rows
}

/// Height of the legend strip for `items` in a chart `width` pixels wide.
fn legend_height(items: &[(String, Rgb, bool)], width: u32) -> u32 {
    if items.is_empty() {
        return 10;
    }
    8 + LEGEND_ROW_H * legend_rows(items, width).len() as u32
}

/// Draws `(name, colour, dashed)` entries in rows across `area` (dashed entries as dashes).
fn draw_legend(area: &DrawingArea<SVGBackend, Shift>, items: &[(String, Rgb, bool)]) -> Result<()> {
    let width = area.dim_in_pixel().0;
    for (r, row) in legend_rows(items, width).iter().enumerate() {
        let y = 4 + (LEGEND_ROW_H / 2) as i32 + r as i32 * LEGEND_ROW_H as i32;
        let mut x = 60;
        for (name, color, dashed) in row {
            let style = rgb(*color).stroke_width(3);
            if *dashed {
                for k in 0..3 {
                    area.draw(&PathElement::new(vec![(x + 9 * k, y), (x + 9 * k + 5, y)], style)).map_err(err)?;
                }
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], style)).map_err(err)?;
            }
            area.draw(&Text::new(name.clone(), (x + 30, y - 8), (FONT, 14).into_font())).map_err(err)?;
            x += 30 + text_width(name) + 28;
        }
    }
    Ok(())
}

/// Renders a [`LineChart`] as an SVG document.
pub fn line_chart(c: &LineChart) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, c.size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let items: Vec<_> = c.series.iter().map(|s| (s.name.clone(), s.color, s.dashed)).collect();
        let (legend, plot) = root.split_vertically(legend_height(&items, c.size.0));
        draw_legend(&legend, &items)?;

        let all = || c.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = padded_range(all().map(|p| p.0));
        let (y0, y1) = padded_range(c.series.iter().filter(|s| !s.right_axis).flat_map(|s| s.points.iter().map(|p| p.1)));
        let (z0, z1) = padded_range(c.series.iter().filter(|s| s.right_axis).flat_map(|s| s.points.iter().map(|p| p.1)));
        let has_right = c.series.iter().any(|s| s.right_axis);
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .right_y_label_area_size(if has_right { 70 } else { 0 })
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?
            .set_secondary_coord(x0..x1, z0..z1);
        chart
            .configure_mesh()
            .x_desc(c.x_label.as_str())
            .y_desc(c.y_label.as_str())
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()
            .map_err(err)?;
        if has_right {
            chart
                .configure_secondary_axes()
                .y_desc(c.y2_label.clone().unwrap_or_default())
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .y_label_formatter(&|v| fmt_tick(*v))
                .draw()
                .map_err(err)?;
        }
        for s in &c.series {
            let style = rgb(s.color).stroke_width(2);
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let marker = |p: (f64, f64)| Circle::new(p, 3, rgb(s.color).filled());
            match (s.right_axis, s.dashed) {
                (false, false) => chart.draw_series(LineSeries::new(pts.clone(), style)).map(|_| ()),
                (false, true) => chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style)).map(|_| ()),
                (true, false) => chart.draw_secondary_series(LineSeries::new(pts.clone(), style)).map(|_| ()),
                (true, true) => chart.draw_secondary_series(DashedLineSeries::new(pts.clone(), 8, 5, style)).map(|_| ()),
            }
            .map_err(err)?;
            // A lone point draws no line: mark it.
            if pts.len() == 1 || s.markers {
                if s.right_axis {
                    chart.draw_secondary_series(pts.iter().map(|p| marker(*p))).map_err(err)?;
                } else {
                    chart.draw_series(pts.iter().map(|p| marker(*p))).map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Tick labels without float noise: 0.30000000000000004 → "0.3", 1500 → "1500".
fn fmt_tick(v: f64) -> String {
    // A tick computed as 0.1 · k − 0.1 lands at ±1e-16 instead of 0.
    if v.abs() < 1e-12 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A category axis: `n` slots on 0..n, with a tick at the centre of each (plotters'
/// `with_key_points` wrapper has no default label formatting, so it cannot draw a mesh).
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        limit.0 + ((limit.1 - limit.0) as f64 * v / self.0.max(1) as f64).round() as i32
    }
    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }
    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// One bar series of [`grouped_bars`]: a value per category.
#[derive(Debug, Clone)]
pub struct BarSeries {
    pub name: String,
    pub color: Rgb,
    pub values: Vec<f64>,
}

/// Grouped vertical bars: for each category, one bar per series, side by side; y from 0 to `y_max`.
pub fn grouped_bars(categories: &[String], series: &[BarSeries], y_label: &str, y_max: f64, size: (u32, u32)) -> Result<String> {
    let n = categories.len().max(1);
    let k = series.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let items: Vec<_> = series.iter().map(|s| (s.name.clone(), s.color, false)).collect();
        let (legend, plot) = root.split_vertically(legend_height(&items, size.0));
        draw_legend(&legend, &items)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(Categories(n), 0.0..y_max)
            .map_err(err)?;
        let label = |v: &f64| categories.get(v.floor() as usize).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&label)
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()
            .map_err(err)?;
        let w = 0.8 / k as f64;
        for (j, s) in series.iter().enumerate() {
            let bars = s.values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, v)| {
                let x = i as f64 + 0.1 + j as f64 * w;
                Rectangle::new([(x, 0.0), (x + w * 0.92, v.min(y_max))], rgb(s.color).filled())
            });
            chart.draw_series(bars).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One bar of [`interval_bars`]: a value with its interval.
#[derive(Debug, Clone)]
pub struct IntervalBar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub color: Rgb,
}

/// Horizontal bars from 0 to `value` on an x axis of 0..`x_max`, each with an interval whisker
/// and its value written beside it; a dashed vertical line marks `reference` (e.g. 0.5 = tie).
/// `fmt` writes a bar's annotation.
pub fn interval_bars(
    bars: &[IntervalBar],
    x_label: &str,
    x_max: f64,
    reference: Option<f64>,
    fmt: &dyn Fn(&IntervalBar) -> String,
    width: u32,
) -> Result<String> {
    let n = bars.len().max(1);
    let height = 70 + 44 * n as u32;
    let label_w = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(10) as u32 * 8 + 20;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(30)
            .x_label_area_size(45)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..x_max, Categories(n))
            .map_err(err)?;
        // Bar i is drawn from the top down, in the order given.
        let row = |i: usize| (n - 1 - i) as f64;
        let label = |v: &f64| {
            let i = v.floor() as usize;
            (i < n).then(|| bars.get(n - 1 - i).map(|b| b.label.clone())).flatten().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_label)
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 14))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .y_label_formatter(&label)
            .x_label_formatter(&|v| fmt_tick(*v))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new([(0.0, row(i) + 0.2), (b.value.clamp(0.0, x_max), row(i) + 0.8)], rgb(b.color).mix(0.85).filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().filter(|(_, b)| b.low.is_finite() && b.high.is_finite()).map(|(i, b)| {
                ErrorBar::new_horizontal(row(i) + 0.5, b.low, b.value, b.high, BLACK.stroke_width(2), 14)
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = if b.high.is_finite() { b.high } else { b.value };
                Text::new(fmt(b), (x + 0.01 * x_max, row(i) + 0.68), (FONT, 13).into_font())
            }))
            .map_err(err)?;
        if let Some(r) = reference {
            chart
                .draw_series(DashedLineSeries::new(vec![(r, 0.0), (r, n as f64)], 6, 4, RGBColor(90, 90, 90).stroke_width(1)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the SVG is one well-nested document: every opened tag is closed in order.
    fn assert_well_formed(svg: &str) {
        assert!(svg.trim_start().starts_with("<svg"), "not an SVG document: {}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let mut stack: Vec<String> = vec![];
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("unterminated tag");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_alphanumeric()).collect();
            if tag.starts_with('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    }

    #[test]
    fn line_chart_names_every_series_and_uses_both_axes() {
        let c = LineChart {
            x_label: "step".into(),
            y_label: "proxy reward".into(),
            y2_label: Some("gold reward".into()),
            series: vec![
                Series::new("kl0 proxy", vec![(0.0, 0.1), (10.0, 2.5), (20.0, 4.0)], PALETTE[0]),
                Series::new("kl0 gold", vec![(0.0, 0.4), (10.0, 0.5), (20.0, 0.2)], PALETTE[0]).dashed().right(),
                Series::new("lone <point>", vec![(5.0, 1.0)], PALETTE[1]),
            ],
            size: (800, 400),
        };
        let svg = line_chart(&c).unwrap();
        assert_well_formed(&svg);
        for name in ["kl0 proxy", "kl0 gold", "lone &lt;point&gt;", "step", "gold reward"] {
            assert!(svg.contains(name), "missing {name}");
        }
        assert!(!svg.contains("<point>"), "series names must be escaped");
        // The dashed series is drawn as separate dashes, the solid ones as polylines.
        assert!(svg.matches("<polyline").count() >= 2);
        assert!(svg.contains("<circle"), "a one-point series is marked");
        assert_eq!(svg.matches("<circle").count(), 1, "only the lone point: the others have no markers");
        // With markers, every point of a trajectory is marked.
        let traj = LineChart {
            series: vec![Series::new("by KL", vec![(0.0, 0.1), (0.5, 0.3), (0.2, 0.2), (0.9, 0.6)], PALETTE[0]).markers()],
            ..c
        };
        assert_eq!(line_chart(&traj).unwrap().matches("<circle").count(), 4);
    }

    #[test]
    fn grouped_bars_draw_one_rect_per_finite_value() {
        let cats: Vec<String> = ["fact", "harmful", "unknown"].map(String::from).to_vec();
        let series = vec![
            BarSeries { name: "raw".into(), color: PALETTE[9], values: vec![0.1, 0.2, f64::NAN] },
            BarSeries { name: "SFT".into(), color: PALETTE[0], values: vec![0.5, 0.6, 0.7] },
        ];
        let svg = grouped_bars(&cats, &series, "gold overall", 1.0, (800, 400)).unwrap();
        assert_well_formed(&svg);
        for s in ["raw", "SFT", "fact", "harmful", "unknown", "gold overall"] {
            assert!(svg.contains(s), "missing {s}");
        }
        let filled = |c: Rgb| svg.matches(&format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2)).count();
        // Bars are the only filled shapes in these colours (the legend uses lines).
        assert_eq!(filled(PALETTE[9]), 2);
        assert_eq!(filled(PALETTE[0]), 3);
    }

    #[test]
    fn interval_bars_label_each_bar_and_its_interval() {
        let bars = vec![
            IntervalBar { label: "SFT vs raw".into(), value: 0.7, low: 0.6, high: 0.8, color: PALETTE[0] },
            IntervalBar { label: "DPO vs SFT".into(), value: 0.55, low: 0.45, high: 0.65, color: PALETTE[1] },
        ];
        let svg = interval_bars(&bars, "win rate", 1.0, Some(0.5), &|b| format!("{:.0}%", 100.0 * b.value), 800).unwrap();
        assert_well_formed(&svg);
        for s in ["SFT vs raw", "DPO vs SFT", "70%", "55%", "win rate"] {
            assert!(svg.contains(s), "missing {s}");
        }
    }

    #[test]
    fn ticks_have_no_float_noise() {
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(fmt_tick(1500.0), "1500");
        assert_eq!(fmt_tick(12.34), "12.3");
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(-1.1e-16), "0");
        assert_eq!(fmt_tick(-2.5), "-2.5");
    }
}
