//! The results chart: the cumulative relative lift of a variant over control, day by day, with
//! its interval band, and the daily exposures under it, as a self-contained SVG (no script,
//! nothing fetched) that the console and the results API can serve.

use std::fmt::Write;

use chrono::NaiveDate;
use serde::Serialize;

use crate::stats::{Counts, proportions};

/// One day's units and successes per arm (not cumulative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Day {
    pub day: NaiveDate,
    pub control: Counts,
    pub variant: Counts,
}

/// The lift as of the end of a day, from every unit so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiftPoint {
    pub day: NaiveDate,
    /// Units exposed that day, both arms.
    pub exposures: u64,
    /// `None` while there is not enough data for a lift and its interval.
    pub lift: Option<(f64, f64, f64)>,
}

/// Running totals, and the lift with its interval at each day's end.
pub fn cumulative_lift(days: &[Day], alpha: f64) -> Vec<LiftPoint> {
    let (mut a, mut b) = ((0u64, 0u64), (0u64, 0u64));
    days.iter()
        .map(|d| {
            a = (a.0 + d.control.successes, a.1 + d.control.units);
            b = (b.0 + d.variant.successes, b.1 + d.variant.units);
            let lift = match (Counts::new(a.0, a.1), Counts::new(b.0, b.1)) {
                (Ok(ca), Ok(cb)) => proportions::ratio(ca, cb, alpha)
                    .ok()
                    .map(|r| (r.lift, r.lift_interval.low, r.lift_interval.high)),
                _ => None,
            };
            LiftPoint {
                day: d.day,
                exposures: d.control.units + d.variant.units,
                lift,
            }
        })
        .collect()
}

const WIDTH: f64 = 640.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const LIFT_TOP: f64 = 36.0;
const LIFT_BOTTOM: f64 = 216.0;
const BARS_TOP: f64 = 236.0;
const BARS_BOTTOM: f64 = 296.0;
const HEIGHT: f64 = 320.0;

/// The chart as SVG. `title` is escaped.
pub fn svg(points: &[LiftPoint], title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" font-family=\"sans-serif\" font-size=\"11\">\
         <title>{}</title><text x=\"{LEFT}\" y=\"20\" font-size=\"13\">{}</text>",
        missive_core::html::escape(title),
        missive_core::html::escape(title)
    );
    let known: Vec<(usize, (f64, f64, f64))> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.lift
                .filter(|l| l.0.is_finite() && l.1.is_finite() && l.2.is_finite())
                .map(|l| (i, l))
        })
        .collect();
    let n = points.len().max(1);
    let step = (WIDTH - LEFT - RIGHT) / n as f64;
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    if known.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"{}\">Not enough data for a lift yet.</text>",
            (LIFT_TOP + LIFT_BOTTOM) / 2.0
        );
    } else {
        // The lift axis always shows zero (no difference).
        let lo = known.iter().map(|(_, l)| l.1).fold(0.0, f64::min);
        let hi = known.iter().map(|(_, l)| l.2).fold(0.0, f64::max);
        let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
        let y = |v: f64| LIFT_BOTTOM - (v - lo) / span * (LIFT_BOTTOM - LIFT_TOP);
        // The band: highs forward, lows back.
        let mut band = String::new();
        for (k, (i, l)) in known.iter().enumerate() {
            let _ = write!(
                band,
                "{}{:.1},{:.1} ",
                if k == 0 { "M" } else { "L" },
                x(*i),
                y(l.2)
            );
        }
        for (i, l) in known.iter().rev() {
            let _ = write!(band, "L{:.1},{:.1} ", x(*i), y(l.1));
        }
        let _ = write!(
            out,
            "<path d=\"{}Z\" fill=\"#4a78c2\" fill-opacity=\"0.2\" stroke=\"none\"/>",
            band
        );
        let line: Vec<String> = known
            .iter()
            .map(|(i, l)| format!("{:.1},{:.1}", x(*i), y(l.0)))
            .collect();
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#4a78c2\" stroke-width=\"2\"/>",
            line.join(" ")
        );
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\
             <text x=\"4\" y=\"{y0:.1}\">0 %</text><text x=\"4\" y=\"{:.1}\">{:+.0} %</text><text x=\"4\" y=\"{:.1}\">{:+.0} %</text>",
            WIDTH - RIGHT,
            LIFT_TOP + 4.0,
            hi * 100.0,
            LIFT_BOTTOM,
            lo * 100.0,
            y0 = y(0.0),
        );
    }
    // Daily exposures.
    let most = points.iter().map(|p| p.exposures).max().unwrap_or(0).max(1) as f64;
    for (i, p) in points.iter().enumerate() {
        let h = p.exposures as f64 / most * (BARS_BOTTOM - BARS_TOP);
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#999\"><title>{}: {} exposures</title></rect>",
            x(i) - step * 0.35,
            BARS_BOTTOM - h,
            step * 0.7,
            p.day,
            p.exposures
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            HEIGHT - 8.0,
            first.day,
            WIDTH - RIGHT,
            HEIGHT - 8.0,
            last.day
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32, ax: u64, an: u64, bx: u64, bn: u64) -> Day {
        Day {
            day: NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            control: Counts::new(ax, an).unwrap(),
            variant: Counts::new(bx, bn).unwrap(),
        }
    }

    #[test]
    fn the_lift_accumulates_and_matches_the_ratio_of_all_units_so_far() {
        let days = [
            day(1, 0, 10, 0, 10),
            day(2, 20, 100, 30, 100),
            day(3, 25, 100, 33, 100),
        ];
        let points = cumulative_lift(&days, 0.05);
        assert_eq!(points[0].lift, None, "no successes yet");
        let third = points[2].lift.unwrap();
        let all =
            proportions::ratio(Counts::new(45, 210).unwrap(), Counts::new(63, 210).unwrap(), 0.05).unwrap();
        assert_eq!(third, (all.lift, all.lift_interval.low, all.lift_interval.high));
        assert_eq!(points[1].exposures, 200);
    }

    #[test]
    fn the_svg_is_self_contained_escaped_and_free_of_nan() {
        let days = [
            day(1, 0, 10, 0, 10),
            day(2, 20, 100, 30, 100),
            day(3, 25, 100, 33, 100),
        ];
        let s = svg(&cumulative_lift(&days, 0.05), "Subject <b> & \"lift\"");
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && s.ends_with("</svg>"));
        assert!(s.contains("Subject &lt;b&gt; &amp; &quot;lift&quot;"), "{s}");
        assert!(!s.contains("NaN") && !s.contains("inf") && !s.contains("<script"));
        assert_eq!(s.matches("<path ").count(), 1);
        assert_eq!(s.matches("<polyline ").count(), 1);
        assert_eq!(s.matches("<rect ").count(), 3);
        // Tags open and close in balance (a cheap well-formedness check); the others close
        // themselves.
        for tag in ["svg", "text", "title", "rect"] {
            let opened = s.matches(&format!("<{tag} ")).count() + s.matches(&format!("<{tag}>")).count();
            assert_eq!(opened, s.matches(&format!("</{tag}>")).count(), "{tag}");
        }
        for tag in ["path", "polyline", "line"] {
            assert!(!s.contains(&format!("</{tag}>")), "{tag} closes itself");
        }
        let empty = svg(&[], "none");
        assert!(empty.contains("Not enough data") && empty.ends_with("</svg>"));
    }
}
