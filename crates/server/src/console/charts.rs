//! Charts as server-rendered SVG: lines or bars over labelled buckets, with a readable scale,
//! a legend, and the numbers in a table for screen readers and for people who want them. Pure:
//! values in, markup out (written by hand: a charting crate would bring a drawing stack for
//! what is a few hundred bytes of SVG).

use maud::{Markup, PreEscaped, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;
/// Horizontal grid lines above zero.
const TICKS: usize = 4;

/// One named series of values, one per bucket.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Lines,
    Bars,
}

/// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) at or above `v`: the top
/// of the scale.
pub(crate) fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * base * (1.0 + 1e-12) {
            return m * base;
        }
    }
    10.0 * base
}

/// Where bucket `i` of `n` is centred, in SVG units.
fn x_of(i: usize, n: usize) -> f64 {
    let inner = WIDTH - LEFT - RIGHT;
    if n <= 1 {
        return LEFT + inner / 2.0;
    }
    LEFT + inner * i as f64 / (n - 1) as f64
}

fn y_of(v: f64, top: f64) -> f64 {
    let inner = HEIGHT - TOP - BOTTOM;
    TOP + inner * (1.0 - (v / top).clamp(0.0, 1.0))
}

/// The points of a line, `x,y` pairs rounded to a tenth.
pub(crate) fn line_points(values: &[f64], top: f64) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, values.len()), y_of(*v, top)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which buckets get a label under the axis: about six, always the first and the last.
pub(crate) fn label_every(n: usize) -> usize {
    n.div_ceil(6).max(1)
}

/// A chart of `series` over `labels` (one label per bucket). `format` writes a value for the
/// scale and the table; `title` names it for assistive technology.
pub(crate) fn chart(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    kind: Kind,
    format: fn(f64) -> String,
) -> Markup {
    chart_of("When", title, labels, series, kind, format)
}

/// [`chart`] over labels that are not times: `what` heads their column in the numbers table
/// ("Cluster", "Variant").
pub(crate) fn chart_of(
    what: &str,
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    kind: Kind,
    format: fn(f64) -> String,
) -> Markup {
    let n = labels.len();
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0f64, f64::max);
    let top = nice_ceiling(max);
    let every = label_every(n);
    let id = slug(title);
    let totals: Vec<String> = series
        .iter()
        .map(|s| format!("{}: {} in all", s.name, format(s.values.iter().sum())))
        .collect();
    let inner = WIDTH - LEFT - RIGHT;
    let slot = if n == 0 { inner } else { inner / n as f64 };
    let bar_w = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby=(format!("{id}-t {id}-d")) {
                title id=(format!("{id}-t")) { (title) }
                desc id=(format!("{id}-d")) { (totals.join("; ")) }
                @for t in 0..=TICKS {
                    @let v = top * t as f64 / TICKS as f64;
                    @let y = y_of(v, top);
                    line.grid-line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt1(y)) y2=(fmt1(y)) {}
                    text.axis x=(LEFT - 6.0) y=(fmt1(y + 4.0)) text-anchor="end" { (format(v)) }
                }
                @for (i, label) in labels.iter().enumerate() {
                    @if i % every == 0 || i + 1 == n {
                        @let x = match kind { Kind::Lines => x_of(i, n), Kind::Bars => LEFT + slot * (i as f64 + 0.5) };
                        text.axis x=(fmt1(x)) y=(HEIGHT - 8.0) text-anchor="middle" { (label) }
                    }
                }
                @for (k, s) in series.iter().enumerate() {
                    @let class = format!("s{}", k % 4 + 1);
                    @match kind {
                        Kind::Lines => {
                            @if k == 0 && n > 1 {
                                polygon class={ "area " (class) } points=(area_points(s.values, top)) {}
                            }
                            polyline class=(class) points=(line_points(s.values, top)) {}
                        }
                        Kind::Bars => {
                            @for (i, v) in s.values.iter().enumerate() {
                                @let x = LEFT + slot * i as f64 + slot * 0.1 + bar_w * k as f64;
                                @let y = y_of(*v, top);
                                rect class=(class) x=(fmt1(x)) y=(fmt1(y)) width=(fmt1(bar_w)) height=(fmt1(y_of(0.0, top) - y)) rx="1.5" {}
                            }
                        }
                    }
                }
            }
            figcaption {
                @for (k, s) in series.iter().enumerate() {
                    span { span class={ "key-swatch s" (k % 4 + 1) } {} (s.name) }
                }
                details {
                    summary { "Numbers" }
                    div.table-wrap {
                        table {
                            caption.visually-hidden { (title) }
                            thead { tr { th scope="col" { (what) } @for s in series { th.num scope="col" { (s.name) } } } }
                            tbody {
                                @for (i, label) in labels.iter().enumerate() {
                                    tr {
                                        th scope="row" { (label) }
                                        @for s in series { td.num { (format(s.values.get(i).copied().unwrap_or(0.0))) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One bar with its interval, for [`ranged_bars`]: a rate and its confidence interval.
pub(crate) struct Ranged<'a> {
    pub label: &'a str,
    pub value: f64,
    /// The interval's low and high ends, when there is one.
    pub interval: Option<(f64, f64)>,
}

/// The whisker of an interval: its x, and its top and bottom y, in SVG units, for bar `i` of
/// `n` on a scale topped at `top`.
pub(crate) fn whisker(i: usize, n: usize, (low, high): (f64, f64), top: f64) -> (f64, f64, f64) {
    let slot = (WIDTH - LEFT - RIGHT) / n.max(1) as f64;
    (LEFT + slot * (i as f64 + 0.5), y_of(high, top), y_of(low, top))
}

/// One bar per label with its interval drawn as a whisker (rates per variant with their
/// confidence intervals), and the numbers in a table whose first column is headed `what`.
pub(crate) fn ranged_bars(title: &str, what: &str, bars: &[Ranged<'_>], format: fn(f64) -> String) -> Markup {
    let n = bars.len();
    let max = bars
        .iter()
        .map(|b| b.interval.map_or(b.value, |(_, high)| high.max(b.value)))
        .fold(0.0f64, f64::max);
    let top = nice_ceiling(max);
    let id = slug(title);
    let inner = WIDTH - LEFT - RIGHT;
    let slot = if n == 0 { inner } else { inner / n as f64 };
    let said: Vec<String> = bars
        .iter()
        .map(|b| match b.interval {
            Some((low, high)) => format!(
                "{}: {} ({} to {})",
                b.label,
                format(b.value),
                format(low),
                format(high)
            ),
            None => format!("{}: {}", b.label, format(b.value)),
        })
        .collect();
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby=(format!("{id}-t {id}-d")) {
                title id=(format!("{id}-t")) { (title) }
                desc id=(format!("{id}-d")) { (said.join("; ")) }
                @for t in 0..=TICKS {
                    @let v = top * t as f64 / TICKS as f64;
                    @let y = y_of(v, top);
                    line.grid-line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt1(y)) y2=(fmt1(y)) {}
                    text.axis x=(LEFT - 6.0) y=(fmt1(y + 4.0)) text-anchor="end" { (format(v)) }
                }
                @for (i, b) in bars.iter().enumerate() {
                    @let x = LEFT + slot * i as f64 + slot * 0.2;
                    @let y = y_of(b.value, top);
                    rect class={ "s" (i % 4 + 1) } x=(fmt1(x)) y=(fmt1(y)) width=(fmt1(slot * 0.6)) height=(fmt1(y_of(0.0, top) - y)) rx="1.5" {}
                    @if let Some(range) = b.interval {
                        @let (wx, hi, lo) = whisker(i, n, range, top);
                        line.whisker x1=(fmt1(wx)) x2=(fmt1(wx)) y1=(fmt1(hi)) y2=(fmt1(lo)) {}
                        line.whisker x1=(fmt1(wx - 6.0)) x2=(fmt1(wx + 6.0)) y1=(fmt1(hi)) y2=(fmt1(hi)) {}
                        line.whisker x1=(fmt1(wx - 6.0)) x2=(fmt1(wx + 6.0)) y1=(fmt1(lo)) y2=(fmt1(lo)) {}
                    }
                    text.axis x=(fmt1(LEFT + slot * (i as f64 + 0.5))) y=(HEIGHT - 8.0) text-anchor="middle" { (b.label) }
                }
            }
            figcaption {
                span { "Bars: the value; whiskers: its interval." }
                details {
                    summary { "Numbers" }
                    div.table-wrap {
                        table {
                            caption.visually-hidden { (title) }
                            thead { tr { th scope="col" { (what) } th.num scope="col" { "Value" } th.num scope="col" { "Low" } th.num scope="col" { "High" } } }
                            tbody {
                                @for b in bars {
                                    tr {
                                        th scope="row" { (b.label) }
                                        td.num { (format(b.value)) }
                                        @if let Some((low, high)) = b.interval {
                                            td.num { (format(low)) } td.num { (format(high)) }
                                        } @else {
                                            td.num { "–" } td.num { "–" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn area_points(values: &[f64], top: f64) -> String {
    let n = values.len();
    let base = y_of(0.0, top);
    format!(
        "{:.1},{base:.1} {} {:.1},{base:.1}",
        x_of(0, n),
        line_points(values, top),
        x_of(n.saturating_sub(1), n)
    )
}

fn fmt1(v: f64) -> PreEscaped<String> {
    PreEscaped(format!("{v:.1}"))
}

/// An id for the chart's title and description, from its title.
fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("chart-{}", s.trim_matches('-'))
}

/// A count for a scale: `950`, `1.2k`, `3.4M`.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A share as a percentage for a scale or a table: `12.5 %`, `0.25 %`, `100 %`.
pub(crate) fn percent(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 || p.abs() >= 10.0 && (p - p.round()).abs() < 0.05 {
        format!("{p:.0} %")
    } else if p.abs() >= 1.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_tops_out_at_a_nice_number() {
        for (v, top) in [
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (0.3, 0.5),
            (1.0, 1.0),
            (1.01, 2.0),
            (2.2, 2.5),
            (4.0, 5.0),
            (7.0, 10.0),
            (99.0, 100.0),
            (101.0, 200.0),
            (2400.0, 2500.0),
        ] {
            assert!(
                (nice_ceiling(v) - top).abs() < 1e-9,
                "{v} → {} (want {top})",
                nice_ceiling(v)
            );
        }
    }

    #[test]
    fn a_line_spans_the_plot_from_left_to_right_and_zero_sits_on_the_axis() {
        let pts = line_points(&[0.0, 5.0, 10.0], 10.0);
        let pairs: Vec<(f64, f64)> = pts
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(pairs[0], (LEFT, HEIGHT - BOTTOM));
        assert_eq!(pairs[2], (WIDTH - RIGHT, TOP));
        assert!((pairs[1].1 - (TOP + (HEIGHT - TOP - BOTTOM) / 2.0)).abs() < 0.06);
    }

    #[test]
    fn about_six_labels_are_shown() {
        for (n, every) in [(0, 1), (1, 1), (6, 1), (7, 2), (24, 4), (30, 5), (90, 15)] {
            assert_eq!(label_every(n), every, "{n}");
        }
    }

    #[test]
    fn names_and_labels_are_escaped_and_numbers_tabulated() {
        let labels = vec!["<b>mon</b>".to_owned(), "tue".to_owned()];
        let s = chart(
            "Orders & revenue",
            &labels,
            &[Series {
                name: "<script>x</script>",
                values: &[1.0, 2500.0],
            }],
            Kind::Bars,
            compact,
        )
        .into_string();
        assert!(!s.contains("<script>") && !s.contains("<b>mon"), "{s}");
        assert!(s.contains("&lt;script&gt;x&lt;/script&gt;: 2.5k in all"), "{s}");
        assert!(s.contains("<td class=\"num\">2.5k</td>"), "{s}");
        assert!(s.contains("id=\"chart-orders---revenue-t\""), "{s}");
        assert_eq!(s.matches("<rect").count(), 2);
    }

    #[test]
    fn the_numbers_table_heads_its_labels_as_asked() {
        let labels = vec!["Cluster 0".to_owned()];
        let series = [Series {
            name: "Profiles",
            values: &[14.0],
        }];
        for (s, head) in [
            (chart("Sizes", &labels, &series, Kind::Bars, compact), "When"),
            (
                chart_of("Cluster", "Sizes", &labels, &series, Kind::Bars, compact),
                "Cluster",
            ),
        ] {
            let s = s.into_string();
            assert!(
                s.contains(&format!("<thead><tr><th scope=\"col\">{head}</th>")),
                "{s}"
            );
        }
    }

    #[test]
    fn whiskers_span_the_interval_on_the_scale() {
        let bottom = HEIGHT - BOTTOM;
        let plot = HEIGHT - TOP - BOTTOM;
        // (bar, bars, interval, top of scale) → (x, y of high, y of low)
        for (i, n, range, top, want) in [
            (
                0,
                1,
                (0.0, 1.0),
                1.0,
                (LEFT + (WIDTH - LEFT - RIGHT) / 2.0, TOP, bottom),
            ),
            (
                0,
                2,
                (0.25, 0.5),
                1.0,
                (
                    LEFT + (WIDTH - LEFT - RIGHT) / 4.0,
                    TOP + plot / 2.0,
                    TOP + plot * 0.75,
                ),
            ),
            (
                1,
                2,
                (0.1, 0.3),
                0.5,
                (
                    LEFT + (WIDTH - LEFT - RIGHT) * 0.75,
                    TOP + plot * 0.4,
                    TOP + plot * 0.8,
                ),
            ),
            // An interval beyond the scale is clipped to it.
            (
                0,
                1,
                (-0.2, 2.0),
                1.0,
                (LEFT + (WIDTH - LEFT - RIGHT) / 2.0, TOP, bottom),
            ),
        ] {
            let (x, hi, lo) = whisker(i, n, range, top);
            assert!(
                (x - want.0).abs() < 1e-9 && (hi - want.1).abs() < 1e-9 && (lo - want.2).abs() < 1e-9,
                "{i}/{n} {range:?}: {:?} (want {want:?})",
                (x, hi, lo)
            );
        }
    }

    #[test]
    fn ranged_bars_scale_to_the_highest_interval_and_tabulate_escaped() {
        let s = ranged_bars(
            "Open rate",
            "Variant",
            &[
                Ranged {
                    label: "<b>control</b>",
                    value: 0.2,
                    interval: Some((0.15, 0.26)),
                },
                Ranged {
                    label: "named",
                    value: 0.3,
                    interval: None,
                },
            ],
            percent,
        )
        .into_string();
        assert!(!s.contains("<b>control"), "{s}");
        assert!(
            s.contains("&lt;b&gt;control&lt;/b&gt;: 20 % (15 % to 26 %)"),
            "{s}"
        );
        // The top of the scale is the nice number above the highest end: 50 %.
        assert!(s.contains(">50 %</text>"), "{s}");
        assert_eq!(s.matches("<rect").count(), 2);
        assert_eq!(
            s.matches("class=\"whisker\"").count(),
            3,
            "one whisker, with its caps"
        );
        assert!(s.contains("<th scope=\"col\">Variant</th>"), "{s}");
        assert!(
            s.contains("<td class=\"num\">30 %</td><td class=\"num\">–</td>"),
            "{s}"
        );
    }

    #[test]
    fn shares_are_written_as_percentages() {
        for (v, s) in [
            (0.0, "0 %"),
            (1.0, "100 %"),
            (0.125, "12.5 %"),
            (0.2, "20 %"),
            (0.0025, "0.25 %"),
            (0.05, "5.0 %"),
        ] {
            assert_eq!(percent(v), s, "{v}");
        }
    }

    #[test]
    fn counts_are_compact_on_the_scale() {
        for (v, s) in [
            (0.0, "0"),
            (950.0, "950"),
            (1200.0, "1.2k"),
            (25_000.0, "25k"),
            (3_400_000.0, "3.4M"),
            (0.5, "0.5"),
        ] {
            assert_eq!(compact(v), s);
        }
    }
}
