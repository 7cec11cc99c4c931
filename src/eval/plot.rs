//! PNG plots of an eval report (plotters, bitmap backend, an embedded font so that no
//! system font is needed).
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{KS, Report, SearchReport, THRESHOLDS, ThresholdReport};

/// DejaVu Sans Mono (Bitstream Vera license, free to embed and redistribute).
const FONT: &[u8] = include_bytes!("DejaVuSansMono.ttf");
const SIZE: (u32, u32) = (1000, 650);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT)
                .unwrap_or_else(|_| panic!("the embedded font is valid"));
        }
    });
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw plot: {e}")
}

/// Every plot of `report` into `dir`; returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<()> {
    register_font();
    files(report, dir).into_iter().try_for_each(|(path, kind)| {
        match kind {
            Plot::Recall(ki) => recall(report, ki, &path),
            Plot::Scatter(mi) => scatter(report, mi, &path),
            Plot::RelativeError => relative_error(report, &path),
            Plot::Threshold(di) => threshold(report, di, &path),
        }
        .map_err(|e| e.context(format!("writing {}", path.display())))
    })
}

enum Plot {
    Recall(usize),
    Scatter(usize),
    RelativeError,
    Threshold(usize),
}

/// The plot files `write_all` makes for `report`.
pub fn plot_files(report: &Report, dir: &Path) -> Vec<PathBuf> {
    files(report, dir).into_iter().map(|(p, _)| p).collect()
}

fn files(report: &Report, dir: &Path) -> Vec<(PathBuf, Plot)> {
    let mut out: Vec<(PathBuf, Plot)> = KS
        .iter()
        .enumerate()
        .map(|(ki, k)| (dir.join(format!("recall_k{k}.png")), Plot::Recall(ki)))
        .collect();
    for (mi, m) in report.models.iter().enumerate() {
        if m.name != "exact" {
            out.push((
                dir.join(format!("estimate_{}.png", m.name)),
                Plot::Scatter(mi),
            ));
        }
    }
    out.push((
        dir.join("relative_error_by_distance.png"),
        Plot::RelativeError,
    ));
    for (di, d) in THRESHOLDS.iter().enumerate() {
        out.push((dir.join(format!("threshold_d{d}.png")), Plot::Threshold(di)));
    }
    out
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(0, 0, 0),
        RGBColor(148, 103, 189),
    ];
    COLORS[i % COLORS.len()]
}

/// The evaluated model (row 0) is drawn wide underneath the others, so that it stays
/// visible where a baseline coincides with it (the default model is the released one).
fn line_width(row: usize) -> u32 {
    if row == 0 { 6 } else { 2 }
}

fn recall(report: &Report, ki: usize, path: &Path) -> Result<()> {
    let rows: Vec<(&str, &SearchReport)> = report
        .models
        .iter()
        .map(|m| (m.name.as_str(), &m.search))
        .collect();
    recall_curves(
        path,
        KS[ki],
        ki,
        report.data.queries,
        report.data.base_rows,
        &rows,
    )
}

/// The recall-item plots of `rows` (name, search results), `recall_k{k}.png` for each k of
/// [`KS`] in `dir`; returns the files written.
pub fn write_recall_plots(
    dir: &Path,
    queries: usize,
    base_rows: usize,
    rows: &[(&str, &SearchReport)],
) -> Result<Vec<PathBuf>> {
    register_font();
    KS.iter()
        .enumerate()
        .map(|(ki, k)| {
            let path = dir.join(format!("recall_k{k}.png"));
            recall_curves(&path, *k, ki, queries, base_rows, rows)
                .map_err(|e| e.context(format!("writing {}", path.display())))?;
            Ok(path)
        })
        .collect()
}

/// Recall of the exact top-`k` (curve `ki` of each row) against T, log scale.
fn recall_curves(
    path: &Path,
    k: usize,
    ki: usize,
    queries: usize,
    base_rows: usize,
    rows: &[(&str, &SearchReport)],
) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = base_rows.max(2) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Recall of the exact top-{k} within the first T candidates ({queries} queries, N = {base_rows})"
            ),
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..n).log_scale(), 0f64..1.02f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("T (embedding candidates, log scale)")
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .y_desc(format!("recall@{k}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (mi, (name, search)) in rows.iter().enumerate() {
        let c = color(mi);
        let width = line_width(mi);
        let curve = &search.curves[ki];
        let pts: Vec<(f64, f64)> = search
            .ts
            .iter()
            .zip(&curve.recall)
            .filter(|(_, r)| r.is_finite())
            .map(|(&t, &r)| (t as f64, r))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(width)))
            .map_err(err)?
            .label(name.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn scatter(report: &Report, mi: usize, path: &Path) -> Result<()> {
    let m = &report.models[mi];
    let pts = &m.distance.points;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let finite = || pts.iter().filter(|p| p.0.is_finite());
    let x_max = finite().map(|p| p.0).fold(0f64, f64::max).max(1e-6) * 1.05;
    let x_min = finite().map(|p| p.0).fold(0f64, f64::min);
    let y_max = pts.iter().map(|p| p.1).fold(1f64, f64::max) * 1.05;
    let g = m.distance.fit;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: estimated vs true edit distance (g(x) = {:.3} x + {:.2})",
                m.name, g.slope, g.intercept
            ),
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("estimated distance d_hat (raw)")
        .y_desc("true edit distance")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let c = color(mi);
    chart
        .draw_series(
            finite()
                .take(4000)
                .map(|&(x, y)| Circle::new((x, y), 2, c.mix(0.35).filled())),
        )
        .map_err(err)?
        .label("pairs (evaluation half)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, c.filled()));
    chart
        .draw_series(LineSeries::new(
            [(x_min, g.apply(x_min)), (x_max, g.apply(x_max))],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("fitted g")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn relative_error(report: &Report, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<(usize, Vec<(f64, f64)>)> = report
        .models
        .iter()
        .enumerate()
        .filter(|(_, m)| m.name != "exact")
        .map(|(mi, m)| {
            let pts = m
                .distance
                .relative_error_by_distance
                .iter()
                .filter(|(_, e, n)| e.is_finite() && *n >= 3)
                .map(|&(d, e, _)| (f64::from(d), e))
                .collect();
            (mi, pts)
        })
        .collect();
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(2f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.1f64, f64::max)
        .min(10.0)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Mean relative error |g(d_hat) - d| / d by true distance",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("true edit distance d")
        .y_desc("mean relative error")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (mi, pts) in series {
        let c = color(mi);
        let width = line_width(mi);
        let pts: Vec<(f64, f64)> = pts.into_iter().map(|(x, y)| (x, y.min(y_max))).collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(width)))
            .map_err(err)?
            .label(report.models[mi].name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn threshold(report: &Report, di: usize, path: &Path) -> Result<()> {
    let rows: Vec<(&str, Option<&ThresholdReport>)> = report
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.threshold.get(di)))
        .collect();
    let mus = &report.data.mus;
    threshold_curves(path, THRESHOLDS[di], report.data.base_rows, mus, &rows)
}

/// The threshold-search plots of `rows` (name, one report per threshold of `ds`),
/// `threshold_d{d}.png` for each d in `dir`; returns the files written.
pub fn write_threshold_plots(
    dir: &Path,
    ds: &[u32],
    base_rows: usize,
    mus: &[f64],
    rows: &[(&str, &[ThresholdReport])],
) -> Result<Vec<PathBuf>> {
    register_font();
    ds.iter()
        .enumerate()
        .map(|(di, &d)| {
            let path = dir.join(format!("threshold_d{d}.png"));
            let at_d: Vec<(&str, Option<&ThresholdReport>)> =
                rows.iter().map(|&(name, t)| (name, t.get(di))).collect();
            threshold_curves(&path, d, base_rows, mus, &at_d)
                .map_err(|e| e.context(format!("writing {}", path.display())))?;
            Ok(path)
        })
        .collect()
}

/// Threshold search at one D: recall of the strings within D against the mean number of
/// candidates, one point per blow-up mu, for each row (name, its report at D).
fn threshold_curves(
    path: &Path,
    d: u32,
    base_rows: usize,
    mus: &[f64],
    rows: &[(&str, Option<&ThresholdReport>)],
) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = base_rows.max(2) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Threshold search, D = {d}: recall of all strings within {d} vs candidates (mu {:.3} to {:.0})",
                mus.first().unwrap_or(&0.0),
                mus.last().unwrap_or(&0.0)
            ),
            ("sans-serif", 18),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0.5f64..n).log_scale(), 0f64..1.02f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("mean candidates per query (screened estimate <= mu * D), log scale")
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .y_desc(format!("recall of strings within {d}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (mi, &(name, t)) in rows.iter().enumerate() {
        let Some(t) = t else {
            continue;
        };
        let c = color(mi);
        let width = line_width(mi);
        let pts: Vec<(f64, f64)> = t
            .candidates
            .iter()
            .zip(&t.recall)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(&x, &y)| (x.max(0.5), y))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(width)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
