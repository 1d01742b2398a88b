//! A small line plot as SVG (axes, ticks, labels, one polyline per series), written by
//! the bench itself: latency (log scale) against offered load.

use std::fmt::Write;

pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    /// (x, y) with y > 0 (log scale).
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn nice_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}

/// The plot; `vline` marks an x (e.g. the highest zero-loss rate).
pub fn plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    vline: Option<(f64, &str)>,
) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1.max(0.01)));
    let x_max = xs.clone().fold(f64::MIN, f64::max).max(1.0);
    let x_min = xs.fold(f64::MAX, f64::min).min(x_max);
    let step = nice_step((x_max - x_min).max(1.0));
    let (x0, x1) = ((x_min / step).floor() * step, (x_max / step).ceil() * step);
    let y_lo = ys.clone().fold(f64::MAX, f64::min);
    let y_hi = ys.fold(f64::MIN, f64::max);
    let (d0, d1) = (
        y_lo.log10().floor(),
        y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0),
    );
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-9) * pw;
    let py = |y: f64| TOP + ph - (y.max(0.01).log10() - d0) / (d1 - d0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>
"#,
        LEFT + pw / 2.0
    );
    // Axes.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT} {TOP} V{} H{}" stroke="black" fill="none"/>"#,
        TOP + ph,
        LEFT + pw
    );
    let mut x = x0;
    while x <= x1 + step / 2.0 {
        let xp = px(x);
        let _ = writeln!(
            s,
            r##"<path d="M{xp:.1} {} v5" stroke="black"/><text x="{xp:.1}" y="{}" text-anchor="middle">{}</text><path d="M{xp:.1} {TOP} V{}" stroke="#eee"/>"##,
            TOP + ph,
            TOP + ph + 18.0,
            label(x),
            TOP + ph
        );
        x += step;
    }
    for d in (d0 as i32)..=(d1 as i32) {
        let v = 10f64.powi(d);
        let yp = py(v);
        let _ = writeln!(
            s,
            r##"<path d="M{} {yp:.1} h5" stroke="black"/><text x="{}" y="{:.1}" text-anchor="end">{}</text><path d="M{LEFT} {yp:.1} H{}" stroke="#eee"/>"##,
            LEFT - 5.0,
            LEFT - 8.0,
            yp + 4.0,
            label(v),
            LEFT + pw
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        LEFT + pw / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{y_label}</text>"#,
        TOP + ph / 2.0
    );
    if let Some((x, text)) = vline {
        let xp = px(x);
        let _ = writeln!(
            s,
            r##"<path d="M{xp:.1} {TOP} V{}" stroke="#999" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#666">{text}</text>"##,
            TOP + ph,
            xp + 4.0,
            TOP + 12.0
        );
    }
    for (k, se) in series.iter().enumerate() {
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            se.color
        );
        for p in &pts {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#,
                se.color
            );
        }
        let ly = TOP + 20.0 + k as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<path d="M{} {ly} h20" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 15.0,
            se.color,
            W - RIGHT + 40.0,
            ly + 4.0,
            se.label
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_and_label_is_drawn() {
        let svg = plot(
            "t",
            "rate",
            "ms",
            &[Series {
                label: "p99",
                color: "red",
                points: vec![(1000.0, 1.5), (2000.0, 40.0), (3000.0, 900.0)],
            }],
            Some((2000.0, "max")),
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">p99<") && svg.contains(">max<") && svg.ends_with("</svg>\n"));
    }
}
