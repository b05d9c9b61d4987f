//! Sparklines as SVG, drawn on the server: a key metric's last day on the overview, with no
//! script and no style attribute (the stroke comes from the stylesheet's class).

use maud::{html, Markup};

/// Width and height of the drawing, in SVG units.
const W: f64 = 120.0;
const H: f64 = 28.0;

/// An SVG polyline of `values` (gaps for `None`), scaled to its own minimum and maximum,
/// with `label` as its accessible name. `None` when there is nothing to draw.
pub fn svg(values: &[Option<f64>], label: &str) -> Option<Markup> {
    let known: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if known.is_empty() || values.len() < 2 {
        return None;
    }
    let lo = known.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = W / (values.len() - 1) as f64;
    let mut runs: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let x = i as f64 * step;
                let y = H - 2.0 - (v - lo) / span * (H - 4.0);
                current.push_str(&format!("{x:.1},{y:.1} "));
            }
            None => {
                if !current.is_empty() {
                    runs.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let last = known.last().copied().unwrap_or_default();
    Some(html! {
        svg.spark viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img" aria-label=(format!("{label}: last value {}", human(last))) {
            @for run in &runs {
                polyline points=(run.trim_end()) {}
            }
        }
    })
}

/// A number for people: three significant digits, SI suffixes.
pub fn human(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if scaled.abs() >= 100.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_the_line_and_scale_fits_the_box() {
        let svg = svg(
            &[Some(1.0), Some(3.0), None, Some(2.0), Some(5.0)],
            "latency",
        )
        .unwrap()
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(
            svg.contains("aria-label=\"latency: last value 5\""),
            "{svg}"
        );
        assert!(!svg.contains("style="), "{svg}");
        assert!(
            svg.contains("0.0,26.0"),
            "the minimum sits at the bottom: {svg}"
        );
    }

    #[test]
    fn nothing_to_draw_is_none() {
        assert!(svg(&[], "x").is_none());
        assert!(svg(&[None, None], "x").is_none());
        assert!(svg(&[Some(1.0)], "x").is_none());
    }

    #[test]
    fn labels_escape() {
        let svg = svg(&[Some(1.0), Some(2.0)], "<script>")
            .unwrap()
            .into_string();
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(1234.0), "1.23k");
        assert_eq!(human(5.0), "5");
        assert_eq!(human(0.126), "0.13");
        assert_eq!(human(2_500_000.0), "2.50M");
    }
}
