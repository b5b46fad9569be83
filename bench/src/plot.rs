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

const COLORS: [RGBColor; 8] = [
    RGBColor(120, 120, 120), // plain relay: grey
    RGBColor(31, 119, 180),  // ours: blue
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Legend entries' left edges and rows: as wide as their names, wrapped at `width`.
fn legend_layout(names: &[String], width: i32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (20, 0);
    let mut at = Vec::with_capacity(names.len());
    for name in names {
        // DejaVu Sans at 17 px: about 10 px a character, plus the swatch and a gap.
        let w = 24 + 10 * name.chars().count() as i32 + 30;
        if x + w > width && x > 20 {
            (x, row) = (20, row + 1);
        }
        at.push((x, row));
        x += w;
    }
    at
}

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
    let at = legend_layout(proxies, width as i32);
    let rows = at.last().map_or(1, |&(_, r)| r + 1);
    let height = 60 + 30 * rows as u32 + 380 * panels.len() as u32;
    let root = BitMapBackend::new(&a.out, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&a.title, ("sans-serif", 26))?;
    // Legend strip at the top.
    let (legend, body) = root.split_vertically(10 + 30 * rows);
    for (k, (name, &(x, row))) in proxies.iter().zip(&at).enumerate() {
        let y = 12 + 30 * row;
        let c = COLORS[k % COLORS.len()];
        legend.draw(&Rectangle::new([(x, y), (x + 18, y + 18)], c.filled()))?;
        legend.draw(&Text::new(name.as_str(), (x + 24, y), ("sans-serif", 17)))?;
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
    use super::{legend_layout, parse};

    #[test]
    fn legend_wraps_at_the_width() {
        let names: Vec<String> = ["plain relay", "ours", "websocat 1.14", "reference 0.13"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let at = legend_layout(&names, 400);
        assert_eq!(at[0], (20, 0));
        assert!(at.iter().any(|&(_, row)| row > 0), "{at:?}");
        assert!(at.iter().all(|&(x, _)| x < 400), "{at:?}");
        let one_row = legend_layout(&names, 2000);
        assert!(one_row.iter().all(|&(_, row)| row == 0), "{one_row:?}");
    }

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
