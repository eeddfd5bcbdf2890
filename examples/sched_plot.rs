//! Plot the scheduler benchmark (`benches/sched.rs`): cost per pick against the number
//! of real servers, log-log, for all 14 schedulers and the least-connection family's
//! linear scans, in both series (fixed load and churn), and the ratio of each tree
//! version to its linear scan measured in the same run. Reads criterion's estimates
//! (`target/criterion/sched_*/NAME/new/estimates.json`, the mean), writes one SVG and,
//! beside it, the numbers in ns as a Markdown table (`FILE.md`).
//!
//! Run: SCHED_QUICK=1 cargo bench --bench sched
//!      cargo run --release --example sched_plot -- pictures/sched-cost.svg [CRITERION_DIR]

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{Palette, Palette99};
use uvs::sched::{NAMES, reference};

/// (series, scheduler id) -> servers -> mean ns per pick.
type Results = BTreeMap<(String, String), BTreeMap<u32, f64>>;

const SERIES: [(&str, &str); 2] = [
    ("sched_", "fixed load: ns per pick"),
    ("sched_churn_", "churn (pick, bind, unbind an older one): ns per pick"),
];

fn mean(path: &Path) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Every estimate of the two series found under `dir`.
fn load(dir: &Path) -> Results {
    let mut r = Results::new();
    let Ok(groups) = std::fs::read_dir(dir) else {
        return r;
    };
    for g in groups.flatten() {
        let name = g.file_name().to_string_lossy().to_string();
        let (series, n) = if let Some(n) = name.strip_prefix("sched_churn_") {
            ("sched_churn_", n)
        } else if let Some(n) = name.strip_prefix("sched_") {
            ("sched_", n)
        } else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let Ok(ids) = std::fs::read_dir(g.path()) else { continue };
        for id in ids.flatten() {
            if let Some(ns) = mean(&id.path().join("new/estimates.json")) {
                r.entry((series.to_string(), id.file_name().to_string_lossy().to_string()))
                    .or_default()
                    .insert(n, ns);
            }
        }
    }
    r
}

fn color(k: usize) -> RGBColor {
    let (r, g, b) = Palette99::COLORS[k % Palette99::COLORS.len()];
    RGBColor(r, g, b)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi { (1.0, 10.0) } else { (lo / 1.5, hi * 1.5) }
}

/// ns per pick of every scheduler (solid) and scan (dashed) in one series.
fn ns_chart(area: &Area, r: &Results, series: &str, title: &str, sizes: (u32, u32)) -> Result<(), String> {
    let rows: Vec<_> = r.iter().filter(|((s, _), _)| s == series).collect();
    let (lo, hi) = bounds(rows.iter().flat_map(|(_, v)| v.values().copied()));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((sizes.0..sizes.1).log_scale(), (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("real servers")
        .y_desc("ns per pick")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, name) in NAMES.iter().enumerate() {
        let c = color(k);
        if let Some(v) = r.get(&(series.to_string(), name.to_string())) {
            let pts: Vec<(u32, f64)> = v.iter().map(|(n, ns)| (*n, *ns)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(|e| e.to_string())?;
        }
        if let Some(v) = r.get(&(series.to_string(), format!("{name}-scan"))) {
            chart
                .draw_series(DashedLineSeries::new(
                    v.iter().map(|(n, ns)| (*n, *ns)),
                    6,
                    4,
                    c.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Tree / linear scan for the least-connection family, in one series.
fn ratio_chart(area: &Area, r: &Results, series: &str, title: &str, sizes: (u32, u32)) -> Result<(), String> {
    let ratios: Vec<(usize, Vec<(u32, f64)>)> = reference::NAMES
        .iter()
        .filter_map(|name| {
            let k = NAMES.iter().position(|n| n == name)?;
            let tree = r.get(&(series.to_string(), name.to_string()))?;
            let scan = r.get(&(series.to_string(), format!("{name}-scan")))?;
            let pts = tree
                .iter()
                .filter_map(|(n, t)| scan.get(n).map(|s| (*n, t / s)))
                .collect();
            Some((k, pts))
        })
        .collect();
    let (lo, hi) = bounds(ratios.iter().flat_map(|(_, v)| v.iter().map(|p| p.1)).chain([1.0]));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((sizes.0..sizes.1).log_scale(), (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("real servers")
        .y_desc("tree ns / scan ns")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(DashedLineSeries::new(
            [(sizes.0, 1.0), (sizes.1, 1.0)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    for (k, pts) in ratios {
        let c = color(k);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One legend for the four charts.
fn legend(area: &Area) -> Result<(), String> {
    let font = ("sans-serif", 14).into_font();
    area.draw(&Text::new("solid: uvs (tree)", (10, 40), font.clone()))
        .map_err(|e| e.to_string())?;
    area.draw(&Text::new("dashed: linear scan", (10, 60), font.clone()))
        .map_err(|e| e.to_string())?;
    area.draw(&Text::new("(IPVS's loop)", (10, 78), font.clone()))
        .map_err(|e| e.to_string())?;
    for (k, name) in NAMES.iter().enumerate() {
        let y = 110 + k as i32 * 22;
        area.draw(&PathElement::new(vec![(10, y), (44, y)], color(k).stroke_width(3)))
            .map_err(|e| e.to_string())?;
        let scan = if reference::NAMES.contains(name) {
            " (+ scan)"
        } else {
            ""
        };
        area.draw(&Text::new(format!("{name}{scan}"), (52, y - 8), font.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The numbers as Markdown: one table per series, ns per pick, tree/scan ratios.
fn table(r: &Results, sizes: &[u32]) -> String {
    let mut o = String::new();
    for (series, title) in SERIES {
        let _ = writeln!(o, "\n{title} (mean of criterion's samples)\n");
        let head: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(o, "| scheduler | {} |", head.join(" | "));
        let _ = writeln!(o, "|---|{}", "---:|".repeat(sizes.len()));
        let mut ids: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        for n in reference::NAMES {
            ids.push(format!("{n}-scan"));
        }
        for id in ids {
            let Some(v) = r.get(&(series.to_string(), id.clone())) else {
                continue;
            };
            let cells: Vec<String> = sizes
                .iter()
                .map(|n| v.get(n).map_or("-".to_string(), |ns| format!("{ns:.1}")))
                .collect();
            let _ = writeln!(o, "| {id} | {} |", cells.join(" | "));
        }
        for name in reference::NAMES {
            let (Some(t), Some(s)) = (
                r.get(&(series.to_string(), name.to_string())),
                r.get(&(series.to_string(), format!("{name}-scan"))),
            ) else {
                continue;
            };
            let cells: Vec<String> = sizes
                .iter()
                .map(|n| match (t.get(n), s.get(n)) {
                    (Some(t), Some(s)) => format!("{:.3}", t / s),
                    _ => "-".into(),
                })
                .collect();
            let _ = writeln!(o, "| {name} / {name}-scan | {} |", cells.join(" | "));
        }
    }
    o
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map_or("pictures/sched-cost.svg", |s| s.as_str()));
    let dir = PathBuf::from(args.get(2).map_or("target/criterion", |s| s.as_str()));
    let r = load(&dir);
    if r.is_empty() {
        return Err(format!(
            "no sched results under {} (run: SCHED_QUICK=1 cargo bench --bench sched)",
            dir.display()
        ));
    }
    let mut sizes: Vec<u32> = r.values().flat_map(|v| v.keys().copied()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let span = (*sizes.first().unwrap(), *sizes.last().unwrap());
    {
        let root = SVGBackend::new(&out, (1200, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (charts, side) = root.split_horizontally(1000);
        let panels = charts.split_evenly((2, 2));
        for (k, (series, title)) in SERIES.iter().enumerate() {
            ns_chart(&panels[k], &r, series, title, span)?;
            let t = if k == 0 {
                "fixed load: tree / linear scan"
            } else {
                "churn: tree / linear scan"
            };
            ratio_chart(&panels[2 + k], &r, series, t, span)?;
        }
        legend(&side)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let md = table(&r, &sizes);
    let md_path = out.with_extension("md");
    std::fs::write(&md_path, &md).map_err(|e| e.to_string())?;
    print!("{md}");
    println!("\nwrote {} and {}", out.display(), md_path.display());
    Ok(())
}
