//! `sio-cluster-loadgen plot`: deliveries/s and p99 latency against the number
//! of clients, one line per cluster, from bench/compare.mjs results files.
//!
//! Every successful run (`runs[]` with `ok: true`) of every input file counts;
//! the plotted point is the median over the runs with the same cluster name and
//! client count. A file without `runs` falls back to its `summary` medians.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use plotters::prelude::*;
use serde_json::Value;

/// Options of `plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// bench/compare.mjs results JSON file(s); runs of all files are pooled.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// The PNG to write.
    #[arg(long, default_value = "bench/plot.png")]
    pub output: PathBuf,
    /// Title above both panels (default: from the first file's options).
    #[arg(long)]
    pub title: Option<String>,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u32).range(400..=8000))]
    pub width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 560, value_parser = clap::value_parser!(u32).range(300..=8000))]
    pub height: u32,
}

/// Samples per cluster name, then per client count: (deliveries/s, p99 ms).
type Samples = BTreeMap<String, BTreeMap<u64, (Vec<f64>, Vec<f64>)>>;

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn push(samples: &mut Samples, name: &str, clients: u64, dps: Option<f64>, p99: Option<f64>) {
    let e = samples
        .entry(name.to_owned())
        .or_default()
        .entry(clients)
        .or_default();
    if let Some(d) = dps {
        e.0.push(d);
    }
    if let Some(p) = p99 {
        e.1.push(p);
    }
}

/// Adds the runs (or summary rows) of one compare.mjs report.
fn collect(v: &Value, samples: &mut Samples) -> Result<usize> {
    let mut n = 0;
    if let Some(runs) = v.get("runs").and_then(Value::as_array) {
        for r in runs {
            if r.get("ok").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let (Some(name), Some(clients), Some(res)) = (
                r.get("name").and_then(Value::as_str),
                r.get("clients").and_then(Value::as_u64),
                r.get("result"),
            ) else {
                continue;
            };
            let dps = res.get("deliveries_per_s").and_then(Value::as_f64);
            let p99 = res.pointer("/latency_ms/p99").and_then(Value::as_f64);
            push(samples, name, clients, dps, p99);
            n += 1;
        }
    } else if let Some(rows) = v.get("summary").and_then(Value::as_array) {
        for row in rows {
            let Some(clients) = row.get("clients").and_then(Value::as_u64) else {
                continue;
            };
            for key in ["A", "B"] {
                let Some(c) = row.get(key) else { continue };
                let name = c.get("name").and_then(Value::as_str).unwrap_or(key);
                let dps = c.get("deliveries_per_s").and_then(Value::as_f64);
                let p99 = c.get("p99_ms").and_then(Value::as_f64);
                if dps.is_some() || p99.is_some() {
                    push(samples, name, clients, dps, p99);
                    n += 1;
                }
            }
        }
    } else {
        bail!("neither \"runs\" nor \"summary\": not a bench/compare.mjs results file");
    }
    Ok(n)
}

/// One line of a panel: name and (clients, value) points.
type Line = (String, Vec<(f64, f64)>);

fn lines(samples: &Samples, pick: impl Fn(&(Vec<f64>, Vec<f64>)) -> Option<f64>) -> Vec<Line> {
    samples
        .iter()
        .map(|(name, by_clients)| {
            let pts = by_clients
                .iter()
                .filter_map(|(&c, s)| pick(s).map(|v| (c as f64, v)))
                .collect();
            (name.clone(), pts)
        })
        .collect()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    data: &[Line],
    y_fmt: &dyn Fn(&f64) -> String,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let xs = data.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let (xmin, xmax) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let ymax = data
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0f64, f64::max);
    if xmin > xmax {
        bail!("no data points for {caption}");
    }
    let pad = ((xmax - xmin) * 0.05).max(10.0);
    let ytop = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing {caption}: {e:?}");
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((xmin - pad)..(xmax + pad), 0f64..ytop)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(y_fmt)
        .light_line_style(RGBColor(236, 236, 236))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in data.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Reads the inputs, writes the PNG, prints the plotted medians.
pub fn plot(a: &PlotArgs) -> Result<()> {
    let mut samples = Samples::new();
    let mut title = a.title.clone();
    for path in &a.input {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let n = collect(&v, &mut samples).with_context(|| format!("{}", path.display()))?;
        if n == 0 {
            eprintln!("plot: {}: no successful run", path.display());
        }
        if title.is_none()
            && let Some(o) = v.get("options")
        {
            let s = |k: &str| o.get(k).map(|x| x.to_string().trim_matches('"').to_owned());
            title = Some(format!(
                "{} workers, mode {}{}, R={} S={}, {}{}",
                s("workers").unwrap_or_default(),
                s("mode").unwrap_or_default(),
                match s("mode").as_deref() {
                    Some("rate") => format!(" {} msg/s", s("rate").unwrap_or_default()),
                    _ => format!(" W={}", s("window").unwrap_or_default()),
                },
                s("rooms").unwrap_or_default(),
                s("senders").unwrap_or_default(),
                s("transport").unwrap_or_default(),
                match s("client").as_deref() {
                    Some(c) if c != "sio" => format!(" ({c} client)"),
                    _ => String::new(),
                },
            ));
        }
    }
    if samples.is_empty() {
        bail!("no successful run in the inputs");
    }
    let dps = lines(&samples, |s| median(&s.0));
    let p99 = lines(&samples, |s| median(&s.1));

    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the embedded DejaVu Sans font is invalid"))?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    {
        let root = BitMapBackend::new(&a.output, (a.width, a.height)).into_drawing_area();
        let err = |e| anyhow!("drawing: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let root = root
            .titled(
                title.as_deref().unwrap_or("sio-cluster benchmark"),
                ("sans-serif", 22),
            )
            .map_err(err)?;
        let (left, right) = root.split_horizontally(a.width / 2);
        panel(&left, "deliveries/s (median)", "deliveries/s", &dps, &|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else {
                format!("{v:.0}")
            }
        })?;
        panel(
            &right,
            "p99 latency (median)",
            "p99 latency (ms)",
            &p99,
            &|v| format!("{v:.0}"),
        )?;
        root.present().map_err(err)?;
    }
    for ((name, d), (_, p)) in dps.iter().zip(&p99) {
        let row: Vec<String> = d
            .iter()
            .map(|(c, v)| {
                let p = p
                    .iter()
                    .find(|q| q.0 == *c)
                    .map_or("-".to_owned(), |q| format!("{:.1}", q.1));
                format!("{c:.0}: {v:.0}/s p99 {p} ms")
            })
            .collect();
        println!("{name}: {}", row.join(", "));
    }
    println!("plot: wrote {}", a.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_runs() {
        let v: Value = serde_json::from_str(
            r#"{"runs":[
              {"ok":true,"name":"ours","clients":100,"result":{"deliveries_per_s":10,"latency_ms":{"p99":1.0}}},
              {"ok":true,"name":"ours","clients":100,"result":{"deliveries_per_s":30,"latency_ms":{"p99":3.0}}},
              {"ok":true,"name":"ours","clients":100,"result":{"deliveries_per_s":20,"latency_ms":{"p99":2.0}}},
              {"ok":false,"name":"ours","clients":100,"error":"x"},
              {"ok":true,"name":"node-ref","clients":200,"result":{"deliveries_per_s":5,"latency_ms":{"p99":null}}}
            ]}"#,
        )
        .expect("json");
        let mut s = Samples::new();
        assert_eq!(collect(&v, &mut s).expect("collect"), 4);
        let d = lines(&s, |x| median(&x.0));
        assert_eq!(d[1], ("ours".to_owned(), vec![(100.0, 20.0)]));
        let p = lines(&s, |x| median(&x.1));
        assert_eq!(p[0], ("node-ref".to_owned(), vec![]));
        assert!(collect(&serde_json::json!({"x":1}), &mut s).is_err());
    }

    #[test]
    fn draws_a_png() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        let input = dir.join("in.json");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            &input,
            r#"{"options":{"workers":2,"mode":"max","window":4,"rooms":10,"senders":10,"transport":"websocket","client":"rust"},
               "summary":[{"clients":100,"A":{"name":"ours","deliveries_per_s":300000,"p99_ms":4},"B":{"name":"node-ref","deliveries_per_s":70000,"p99_ms":25}},
                          {"clients":1000,"A":{"name":"ours","deliveries_per_s":280000,"p99_ms":30},"B":{"name":"node-ref","deliveries_per_s":60000,"p99_ms":160}}]}"#,
        )
        .expect("write");
        let out = dir.join("plot.png");
        plot(&PlotArgs {
            input: vec![input],
            output: out.clone(),
            title: None,
            width: 800,
            height: 400,
        })
        .expect("plot");
        let png = std::fs::read(&out).expect("png");
        assert!(png.starts_with(b"\x89PNG"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
