//! `wsbench plot`: grouped bar charts (PNG) from the results table scripts/bench.sh writes.
//!
//! Input: tab-separated lines `panel<TAB>test<TAB>proxy<TAB>value`, one chart per panel, in
//! the order panels, tests and proxies first appear. A panel whose name ends in `(log)` gets
//! a logarithmic value axis. Text is drawn with a TrueType font read at run time (DejaVu Sans
//! by default, Debian's `fonts-dejavu-core`), so the binary embeds no font.

use std::path::PathBuf;

use clap::Args;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Results table (panel, test, proxy, value; tab-separated).
    #[arg(long)]
    pub input: PathBuf,
    /// PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Title above the charts.
    #[arg(long, default_value = "websockify benchmarks")]
    pub title: String,
    /// TrueType font for the text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(120, 120, 120), // plain relay: grey
    RGBColor(31, 119, 180),  // ours: blue
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

struct Panel {
    name: String,
    tests: Vec<String>,
    /// (test index, proxy index, value)
    points: Vec<(usize, usize, f64)>,
}

fn index_of(v: &mut Vec<String>, s: &str) -> usize {
    match v.iter().position(|x| x == s) {
        Some(i) => i,
        None => {
            v.push(s.to_string());
            v.len() - 1
        }
    }
}

fn parse(text: &str) -> Result<(Vec<Panel>, Vec<String>), String> {
    let mut panels: Vec<Panel> = Vec::new();
    let mut proxies = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [panel, test, proxy, value] = f[..] else {
            return Err(format!("line {}: expected 4 tab-separated fields", n + 1));
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue; // "n/a": nothing to draw
        };
        let p = match panels.iter().position(|p| p.name == panel) {
            Some(i) => i,
            None => {
                panels.push(Panel {
                    name: panel.to_string(),
                    tests: Vec::new(),
                    points: Vec::new(),
                });
                panels.len() - 1
            }
        };
        let t = index_of(&mut panels[p].tests, test);
        let k = index_of(&mut proxies, proxy);
        panels[p].points.push((t, k, value));
    }
    if panels.is_empty() {
        return Err("no data".into());
    }
    Ok((panels, proxies))
}

pub fn run(a: PlotArgs) -> Result<bool, String> {
    let font = std::fs::read(&a.font).map_err(|e| format!("reading {}: {e}", a.font.display()))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{} is not a usable font", a.font.display()))?;
    let text = std::fs::read_to_string(&a.input)
        .map_err(|e| format!("reading {}: {e}", a.input.display()))?;
    let (panels, proxies) = parse(&text)?;
    draw(&a, &panels, &proxies).map_err(|e| format!("drawing: {e}"))?;
    Ok(true)
}

fn draw(
    a: &PlotArgs,
    panels: &[Panel],
    proxies: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let width = 1100u32;
    let height = 90 + 380 * panels.len() as u32;
    let root = BitMapBackend::new(&a.out, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&a.title, ("sans-serif", 26))?;
    // Legend strip at the top.
    let (legend, body) = root.split_vertically(40);
    for (k, name) in proxies.iter().enumerate() {
        let x = 20 + 200 * k as i32;
        let c = COLORS[k % COLORS.len()];
        legend.draw(&Rectangle::new([(x, 12), (x + 18, 30)], c.filled()))?;
        legend.draw(&Text::new(name.as_str(), (x + 24, 12), ("sans-serif", 17)))?;
    }
    let areas = body.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(areas) {
        let log = panel.name.ends_with("(log)");
        let max = panel.points.iter().map(|p| p.2).fold(0.0f64, f64::max);
        let min = panel
            .points
            .iter()
            .map(|p| p.2)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let nt = panel.tests.len();
        let nk = proxies.len().max(1);
        let bar = 0.8 / nk as f64;
        let tests = panel.tests.clone();
        let label = move |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < tests.len() {
                tests[i as usize].clone()
            } else {
                String::new()
            }
        };
        let mut builder = ChartBuilder::on(&area);
        builder
            .caption(&panel.name, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60);
        let x_range = -0.5..(nt as f64 - 0.5);
        if log {
            let lo = (min / 2.0).max(1e-3);
            let mut chart = builder.build_cartesian_2d(x_range, (lo..max * 3.0).log_scale())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(nt * 2 + 1)
                .x_label_formatter(&label)
                .x_label_style(("sans-serif", 15))
                .y_label_style(("sans-serif", 14))
                .draw()?;
            for &(t, k, v) in &panel.points {
                let x0 = t as f64 - 0.4 + bar * k as f64;
                let c = COLORS[k % COLORS.len()];
                chart.draw_series([Rectangle::new([(x0, lo), (x0 + bar * 0.9, v)], c.filled())])?;
                chart.draw_series([Text::new(
                    short(v),
                    (x0, v * 1.15),
                    ("sans-serif", 12).into_font(),
                )])?;
            }
        } else {
            let top = (max * 1.15).max(1.2);
            let mut chart = builder.build_cartesian_2d(x_range, 0.0..top)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(nt * 2 + 1)
                .x_label_formatter(&label)
                .x_label_style(("sans-serif", 15))
                .y_label_style(("sans-serif", 14))
                .draw()?;
            // The yardstick line: 1.0 = the plain relay.
            chart.draw_series([PathElement::new(
                vec![(-0.5, 1.0), (nt as f64 - 0.5, 1.0)],
                BLACK.stroke_width(1),
            )])?;
            for &(t, k, v) in &panel.points {
                let x0 = t as f64 - 0.4 + bar * k as f64;
                let c = COLORS[k % COLORS.len()];
                chart
                    .draw_series([Rectangle::new([(x0, 0.0), (x0 + bar * 0.9, v)], c.filled())])?;
                chart.draw_series([Text::new(
                    short(v),
                    (x0, v + top * 0.035),
                    ("sans-serif", 12).into_font(),
                )])?;
            }
        }
    }
    root.present()?;
    Ok(())
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_panels_tests_and_proxies_in_order() {
        let (panels, proxies) = parse(
            "a\tt1\tours\t1.0\na\tt2\tref\t0.5\nb (log)\tt1\tours\tn/a\nb (log)\tt1\tref\t3\n",
        )
        .unwrap();
        assert_eq!(proxies, ["ours", "ref"]);
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[0].tests, ["t1", "t2"]);
        assert_eq!(panels[1].points, [(0, 1, 3.0)]);
    }
}
