//! The benchmark harness's shared pieces (`cargo xtask bench`): the result records written
//! to `target/bench/results.json`, the table, the per-packet plot, and the figures that need
//! no eBPF object of their own: end to end through the lab (`e2e`), replay against tshark
//! (`replay`) with its capture generator (`pcap`). The in-kernel figures are measured by the
//! `nta-bench` example of this crate, which links the daemon's library.

pub mod e2e;
pub mod pcap;
pub mod replay;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One figure of `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// Dotted name, e.g. `kernel.xdp.untracked_tcp.ratio`.
    pub name: String,
    /// The measured value; `null` when it could not be measured in this build / on this host.
    pub value: Option<f64>,
    /// Unit of `value` (`ns`, `x`, `req/s`, `MiB`, ...).
    pub unit: String,
    /// The target it is held to (`<= 1.3`, `>= 0.98`), or `null` for context figures.
    pub target: Option<String>,
    /// Whether the target is met (true for context figures that were measured).
    pub ok: bool,
    /// How it was measured, or why it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    /// A context figure without a target.
    pub fn info(name: impl Into<String>, value: f64, unit: &str) -> Self {
        Figure {
            name: name.into(),
            value: Some(value),
            unit: unit.into(),
            target: None,
            ok: value.is_finite(),
            note: None,
        }
    }

    /// A figure that must be at most `max`.
    pub fn at_most(name: impl Into<String>, value: f64, unit: &str, max: f64) -> Self {
        Figure {
            target: Some(format!("<= {}", fmt_num(max))),
            ok: value.is_finite() && value <= max,
            ..Figure::info(name, value, unit)
        }
    }

    /// A figure that must be at least `min`.
    pub fn at_least(name: impl Into<String>, value: f64, unit: &str, min: f64) -> Self {
        Figure {
            target: Some(format!(">= {}", fmt_num(min))),
            ok: value.is_finite() && value >= min,
            ..Figure::info(name, value, unit)
        }
    }

    /// A figure this build or host cannot measure: `value: null`, `ok: false`, and why.
    pub fn missing(name: impl Into<String>, unit: &str, target: Option<&str>, why: &str) -> Self {
        Figure {
            name: name.into(),
            value: None,
            unit: unit.into(),
            target: target.map(str::to_string),
            ok: false,
            note: Some(why.to_string()),
        }
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A number with at most 3 significant decimals, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 || a == a.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Median (of a copy); NaN for an empty slice.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Writes `figures` as pretty JSON.
pub fn write_results(path: &Path, figures: &[Figure]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, serde_json::to_vec_pretty(figures)?)
        .with_context(|| format!("write {}", path.display()))
}

/// Reads a list of figures (as written by [`write_results`]).
pub fn read_results(path: &Path) -> Result<Vec<Figure>> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

/// Checks that `text` is a well-formed results file: a non-empty list of objects with a
/// string `name`, a number or null `value`, a string `unit`, a string or null `target` and a
/// boolean `ok`; names unique. Returns the number of figures. (The smoke test: not the
/// targets.)
pub fn validate_results(text: &str) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_str(text).context("results.json is not JSON")?;
    let Some(list) = v.as_array() else {
        bail!("results.json is not a list");
    };
    if list.is_empty() {
        bail!("results.json is empty");
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, f) in list.iter().enumerate() {
        let Some(o) = f.as_object() else {
            bail!("entry {i} is not an object");
        };
        let name = o.get("name").and_then(|n| n.as_str());
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            bail!("entry {i} has no string `name`");
        };
        if !names.insert(name.to_string()) {
            bail!("figure {name} appears twice");
        }
        match o.get("value") {
            Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {}
            _ => bail!("{name}: `value` must be a finite number or null"),
        }
        if !o.get("unit").is_some_and(|u| u.is_string()) {
            bail!("{name}: `unit` must be a string");
        }
        if !o
            .get("target")
            .is_some_and(|t| t.is_string() || t.is_null())
        {
            bail!("{name}: `target` must be a string or null");
        }
        if !o.get("ok").is_some_and(|b| b.is_boolean()) {
            bail!("{name}: `ok` must be a boolean");
        }
    }
    Ok(list.len())
}

/// The short table printed at the end of a run.
pub fn table(figures: &[Figure]) -> String {
    let w = figures
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:>12} {:<8} {:<12} ok",
        "figure", "value", "unit", "target"
    );
    for f in figures {
        let value = f.value.map(fmt_num).unwrap_or_else(|| "-".into());
        let target = f.target.clone().unwrap_or_default();
        let ok = match (f.ok, f.target.is_some(), f.value.is_some()) {
            (_, _, false) => "n/a",
            (true, true, _) => "ok",
            (true, false, _) => "",
            (false, _, _) => "MISS",
        };
        let _ = write!(
            s,
            "{:<w$}  {value:>12} {:<8} {target:<12} {ok}",
            f.name, f.unit
        );
        if let Some(n) = &f.note {
            if f.value.is_none() || !f.ok {
                let _ = write!(s, "  ({n})");
            }
        }
        s.push('\n');
    }
    s
}

/// One bar group of the per-packet plot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassCost {
    /// Packet class label.
    pub class: String,
    /// `xdp` or `tc`.
    pub hook: String,
    /// Median ns per run of the tracker program.
    pub tracker_ns: f64,
    /// Median ns per run of the pass-through program of the same type.
    pub baseline_ns: f64,
}

/// An SVG bar chart (log scale) of per-packet cost by class, tracker against pass-through,
/// for XDP and TC. Self-contained (no fonts or libraries needed to render it).
pub fn per_packet_svg(costs: &[ClassCost], title: &str) -> String {
    let mut classes: Vec<&str> = Vec::new();
    for c in costs {
        if !classes.contains(&c.class.as_str()) {
            classes.push(&c.class);
        }
    }
    let series: [(&str, &str, bool, &str); 4] = [
        ("xdp", "XDP tracker", false, "#1f77b4"),
        ("xdp", "XDP pass-through", true, "#aec7e8"),
        ("tc", "TC tracker", false, "#d62728"),
        ("tc", "TC pass-through", true, "#ff9896"),
    ];
    let (w, h) = (960.0_f64, 480.0_f64);
    let (left, right, top, bottom) = (70.0, 20.0, 50.0, 110.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let (lo, hi) = (1.0_f64, 10_000.0_f64); // 1 ns .. 10 us, log scale
    let y = |ns: f64| {
        let v = ns.clamp(lo, hi);
        top + plot_h * (1.0 - (v.log10() - lo.log10()) / (hi.log10() - lo.log10()))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        xml(title)
    );
    for exp in 0..=4 {
        let v = 10f64.powi(exp);
        let yy = y(v);
        let label = match exp {
            0 => "1 ns".to_string(),
            1 => "10 ns".to_string(),
            2 => "100 ns".to_string(),
            3 => "1 µs".to_string(),
            _ => "10 µs".to_string(),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="#333"/>"##,
        top + plot_h
    );
    let n = classes.len().max(1) as f64;
    let group_w = plot_w / n;
    let bar_w = (group_w * 0.8) / series.len() as f64;
    for (ci, class) in classes.iter().enumerate() {
        let gx = left + group_w * ci as f64 + group_w * 0.1;
        for (si, (hook, _, baseline, color)) in series.iter().enumerate() {
            let Some(c) = costs.iter().find(|c| c.class == *class && c.hook == *hook) else {
                continue;
            };
            let ns = if *baseline {
                c.baseline_ns
            } else {
                c.tracker_ns
            };
            let x = gx + bar_w * si as f64;
            let yy = y(ns);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} {}: {} ns</title></rect>"#,
                bar_w - 1.0,
                (top + plot_h - yy).max(0.0),
                xml(class),
                if *baseline { "pass-through" } else { "tracker" },
                fmt_num(ns)
            );
            if !*baseline {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                    x + bar_w / 2.0,
                    yy - 3.0,
                    fmt_num(ns)
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + group_w * (ci as f64 + 0.5),
            top + plot_h + 18.0,
            xml(class)
        );
    }
    for (si, (_, label, _, color)) in series.iter().enumerate() {
        let x = left + 10.0 + 190.0 * si as f64;
        let yy = h - 40.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{}" width="14" height="14" fill="{color}"/><text x="{}" y="{yy}">{label}</text>"#,
            yy - 11.0,
            x + 20.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">ns per run (BPF_PROG_TEST_RUN, median of interleaved rounds, log scale)</text>"##,
        w / 2.0,
        h - 10.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn results_roundtrip_and_validate() {
        let figs = vec![
            Figure::at_most("a.ratio", 1.2, "x", 1.3),
            Figure::at_least("b.rps", 0.9, "x", 0.98),
            Figure::info("c", 5.0, "ns"),
            Figure::missing(
                "d",
                "pkt/s",
                Some(">= 10"),
                "replay not available in this build",
            ),
        ];
        assert!(figs[0].ok && !figs[1].ok && figs[2].ok && !figs[3].ok);
        let text = serde_json::to_string(&figs).unwrap();
        assert_eq!(validate_results(&text).unwrap(), 4);
        let back: Vec<Figure> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, figs);
        assert!(validate_results("[]").is_err());
        assert!(
            validate_results(r#"[{"name":"x","value":"1","unit":"","target":null,"ok":true}]"#)
                .is_err()
        );
        assert!(validate_results(r#"[{"name":"x","value":1,"unit":"","target":null}]"#).is_err());
        let t = table(&figs);
        assert!(t.contains("MISS") && t.contains("replay not available"));
    }

    #[test]
    fn median_and_format() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(fmt_num(1234.5), "1234");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.98765), "0.988");
    }

    #[test]
    fn svg_has_every_bar() {
        let costs = vec![
            ClassCost {
                class: "untracked".into(),
                hook: "xdp".into(),
                tracker_ns: 40.0,
                baseline_ns: 10.0,
            },
            ClassCost {
                class: "untracked".into(),
                hook: "tc".into(),
                tracker_ns: 50.0,
                baseline_ns: 12.0,
            },
        ];
        let svg = per_packet_svg(&costs, "t");
        assert_eq!(svg.matches("<rect x=").count(), 4 + 4);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
