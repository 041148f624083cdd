//! A dependency-free SVG line chart: enough for loss curves in reports and docs, readable in
//! any browser or Markdown viewer.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 48.0;
/// Colour-blind-safe (Okabe–Ito).
const COLOURS: [&str; 6] = ["#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];

/// A line chart of `series` with labelled axes and a legend. Non-finite points are dropped (a
/// diverging loss that overflowed still draws up to where it was finite).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied().filter(finite)).collect();
    let (x_lo, x_hi) = bounds(all.iter().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all.iter().map(|p| p.1).chain([0.0]));
    let x_ticks = ticks(x_lo, x_hi);
    let y_ticks = ticks(y_lo, y_hi);
    let (x_lo, x_hi) = (x_ticks[0].min(x_lo), x_ticks[x_ticks.len() - 1].max(x_hi));
    let (y_lo, y_hi) = (y_ticks[0].min(y_lo), y_ticks[y_ticks.len() - 1].max(y_hi));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#, WIDTH / 2.0, escape(title));
    for &t in &x_ticks {
        let x = sx(t);
        let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/>"##, TOP + plot_h);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, TOP + plot_h + 16.0, label(t));
    }
    for &t in &y_ticks {
        let y = sy(t);
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##, LEFT + plot_w);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, label(t));
    }
    let _ = writeln!(svg, r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##);
    let _ =
        writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, LEFT + plot_w / 2.0, HEIGHT - 10.0, escape(x_label));
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s.points.iter().filter(|p| finite(p)).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(svg, r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, path.join(" "));
        let (lx, ly) = (LEFT + 12.0, TOP + 16.0 + 18.0 * i as f64);
        let _ = writeln!(svg, r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"#, lx + 20.0);
        let _ = writeln!(svg, r#"<text x="{}" y="{}">{}</text>"#, lx + 26.0, ly + 4.0, escape(&s.name));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Min and max of the values; a degenerate (empty or flat) range is widened so that scaling
/// never divides by zero.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

/// About five round tick values (1, 2 or 5 × 10ᵏ apart) covering `lo..=hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(10.0 * magnitude);
    let start = (lo / step).floor() as i64;
    let end = (hi / step).ceil() as i64;
    (start..=end).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.13, 0.91);
        assert!(t[0] <= 0.13 && *t.last().unwrap() >= 0.91, "{t:?}");
        assert_eq!(label(0.2), "0.2");
        assert_eq!(label(30.0), "30");
    }

    #[test]
    fn chart_draws_one_line_per_series_and_skips_non_finite_points() {
        let series = [
            Series { name: "GA".into(), points: vec![(1.0, 0.5), (2.0, 4.0), (3.0, f64::INFINITY)] },
            Series { name: "R<G>A".into(), points: vec![(1.0, 0.5), (2.0, 0.9), (3.0, 1.0)] },
        ];
        let svg = line_chart("loss", "epoch", "CE", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("R&lt;G&gt;A"));
        assert!(!svg.contains("inf") && !svg.contains("NaN"));
        let ga = svg.lines().find(|l| l.contains("<polyline")).unwrap();
        assert_eq!(ga.matches(',').count(), 2, "the infinite point is dropped: {ga}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn an_empty_or_flat_chart_is_still_valid() {
        let svg = line_chart("t", "x", "y", &[Series { name: "flat".into(), points: vec![(1.0, 2.0)] }]);
        assert!(!svg.contains("NaN"));
        let svg = line_chart("t", "x", "y", &[]);
        assert!(!svg.contains("NaN"));
    }
}
