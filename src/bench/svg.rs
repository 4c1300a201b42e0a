//! Small SVG charts for `bench`: a strip plot of samples per series (log scale), and
//! horizontal bars for ratios. Hand-written to keep the dependency tree small.

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One dot per sample and a bar at the median, per series; x is log10(ms).
pub fn strip_plot(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let (left, width, row) = (260.0, 560.0, 34.0);
    let height = 70.0 + row * series.len() as f64;
    let floor = 10f64.powf(l0);
    let x = |v: f64| left + (v.max(floor).log10() - l0) / (l1 - l0) * width;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        left + width + 30.0,
        esc(title)
    );
    let mut d = l0;
    while d <= l1 {
        let xv = x(10f64.powf(d));
        s += &format!(
            "<line x1=\"{xv}\" y1=\"35\" x2=\"{xv}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{xv}\" y=\"{}\" text-anchor=\"middle\">{} ms</text>\n",
            height - 25.0,
            height - 10.0,
            10f64.powf(d)
        );
        d += 1.0;
    }
    for (i, (name, v)) in series.iter().enumerate() {
        let y = 50.0 + row * i as f64;
        s += &format!("<text x=\"10\" y=\"{}\">{}</text>\n", y + 4.0, esc(name));
        for &p in v {
            s += &format!("<circle cx=\"{:.1}\" cy=\"{y}\" r=\"2.5\" fill=\"#3a6ea5\" fill-opacity=\"0.5\"/>\n", x(p));
        }
        if !v.is_empty() {
            let m = crate::engine::Stat::of(v).median;
            s += &format!(
                "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#c0392b\" stroke-width=\"2\"/>\n",
                x(m),
                y - 10.0,
                y + 10.0
            );
        }
    }
    s + "</svg>\n"
}

/// Horizontal bars: value per label, with 1.0 (the host) marked.
pub fn ratio_bars(title: &str, bars: &[(String, f64)]) -> String {
    let (left, width, row) = (260.0, 480.0, 30.0);
    let max = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max) * 1.1;
    let height = 60.0 + row * bars.len() as f64;
    let x = |v: f64| left + v / max * width;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        left + width + 80.0,
        esc(title)
    );
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        s += &format!(
            "<text x=\"10\" y=\"{}\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"18\" fill=\"#3a6ea5\"/><text x=\"{:.1}\" y=\"{}\">{v:.3}</text>\n",
            y + 13.0,
            esc(name),
            x(*v) - left,
            x(*v) + 5.0,
            y + 13.0
        );
    }
    let one = x(1.0);
    s += &format!(
        "<line x1=\"{one}\" y1=\"30\" x2=\"{one}\" y2=\"{}\" stroke=\"#c0392b\" stroke-dasharray=\"4\"/>\n",
        height - 10.0
    );
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_every_series() {
        let s = strip_plot(
            "t",
            &[("a<b".into(), vec![1.0, 2.0]), ("c".into(), vec![100.0])],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a&lt;b") && s.matches("<circle").count() == 3);
        let b = ratio_bars("r", &[("x".into(), 1.02)]);
        assert!(b.contains("1.020"));
    }
}
