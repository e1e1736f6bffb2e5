//! A journey drawn as SVG: the trigger, each step as a box with how many instances wait there
//! and how many left the journey there, the end, and an arrow for every way from one to the
//! next (labelled `then`, `else`, `event`, `timeout`, a split's share). Pure: a definition and
//! counts in, markup out; the layout is by hand (a layered drawing of at most a few dozen
//! boxes; a graph-layout crate would bring far more than this needs).
//!
//! Layout: layers by the shortest number of moves from the trigger (breadth first), boxes of a
//! layer side by side in the order of the definition; arrows down to a later layer are
//! curves, arrows back up or across (a loop through a wait) run around the right-hand side.

use std::collections::{HashMap, VecDeque};

use maud::{Markup, html};
use missive_sending::journeys::{EXIT, Edge, JourneyDef, edges, summary, trigger_summary};

const BOX_W: f64 = 210.0;
const BOX_H: f64 = 66.0;
const GAP_X: f64 = 36.0;
const GAP_Y: f64 = 58.0;
const MARGIN: f64 = 16.0;
/// Room on each side for arrows that skip layers (left) or go back up (right).
const LOOP_ROOM: f64 = 90.0;
/// Space between two arrows running side by side in a gutter.
const LANE: f64 = 12.0;
/// Characters of a summary that fit in a box; the whole is in its tooltip.
const FIT: usize = 30;

/// How many instances are at a step: waiting there, or having ended there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub waiting: u64,
    pub completed: u64,
    pub exited: u64,
}

impl Tally {
    /// The tallies summed (who waits anywhere, who left anywhere).
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Tally>) -> Tally {
        all.into_iter().fold(Tally::default(), |a, c| Tally {
            waiting: a.waiting + c.waiting,
            completed: a.completed + c.completed,
            exited: a.exited + c.exited,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Trigger,
    Step,
    End,
    /// A target that names no step (a draft not yet checked).
    Missing,
}

/// A box placed on the drawing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub id: String,
    kind: Kind,
    pub layer: usize,
    pub x: f64,
    pub y: f64,
    title: String,
    detail: String,
}

/// Boxes and arrows with their places.
#[derive(Debug)]
pub(crate) struct Layout {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

const TRIGGER: &str = "\u{0}trigger";

fn fit(s: &str) -> String {
    if s.chars().count() <= FIT {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(FIT - 1).collect();
    cut.push('…');
    cut
}

/// Places every box: layers breadth first from the trigger; steps nothing reaches after the
/// last layer; the end at the bottom.
pub(crate) fn layout(def: &JourneyDef) -> Layout {
    let mut edges = edges(def);
    if let Some(first) = def.steps.first() {
        edges.insert(
            0,
            Edge {
                from: TRIGGER.into(),
                to: first.id.clone(),
                label: String::new(),
            },
        );
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut add = |nodes: &mut Vec<Node>, id: &str, kind: Kind, title: String, detail: String| {
        index.entry(id.to_owned()).or_insert_with(|| {
            nodes.push(Node {
                id: id.to_owned(),
                kind,
                layer: 0,
                x: 0.0,
                y: 0.0,
                title,
                detail,
            });
            nodes.len() - 1
        });
    };
    add(
        &mut nodes,
        TRIGGER,
        Kind::Trigger,
        "Trigger".into(),
        trigger_summary(&def.trigger),
    );
    for s in &def.steps {
        add(&mut nodes, &s.id, Kind::Step, s.id.clone(), summary(&s.action));
    }
    for e in &edges {
        if e.to != EXIT && !def.steps.iter().any(|s| s.id == e.to) {
            add(
                &mut nodes,
                &e.to,
                Kind::Missing,
                e.to.clone(),
                "no such step".into(),
            );
        }
    }
    let end_used = edges.iter().any(|e| e.to == EXIT)
        || def
            .steps
            .iter()
            .any(|s| matches!(s.action, missive_sending::journeys::Action::Exit));
    if end_used {
        add(&mut nodes, EXIT, Kind::End, "End".into(), String::new());
    }
    let at: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();

    // Layers: breadth first from the trigger.
    let mut layer: Vec<Option<usize>> = vec![None; nodes.len()];
    layer[0] = Some(0);
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        let l = layer[i].unwrap_or(0);
        for e in edges.iter().filter(|e| e.from == nodes[i].id) {
            if let Some(&j) = at.get(&e.to)
                && layer[j].is_none()
                && nodes[j].kind != Kind::End
            {
                layer[j] = Some(l + 1);
                queue.push_back(j);
            }
        }
    }
    let mut deepest = layer.iter().flatten().copied().max().unwrap_or(0);
    for (i, n) in nodes.iter().enumerate() {
        if layer[i].is_none() && n.kind != Kind::End {
            deepest += 1;
            layer[i] = Some(deepest);
        }
    }
    if let Some(&end) = at.get(EXIT) {
        layer[end] = Some(deepest + 1);
    }
    let layers = layer.iter().flatten().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, l) in layer.iter().enumerate() {
        rows[l.unwrap_or(0)].push(i);
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as f64;
    let inner = widest * BOX_W + (widest - 1.0) * GAP_X;
    for (l, row) in rows.iter().enumerate() {
        let n = row.len() as f64;
        let span = n * BOX_W + (n - 1.0).max(0.0) * GAP_X;
        let left = LOOP_ROOM + MARGIN + (inner - span) / 2.0;
        for (k, &i) in row.iter().enumerate() {
            nodes[i].layer = l;
            nodes[i].x = left + k as f64 * (BOX_W + GAP_X);
            nodes[i].y = MARGIN + l as f64 * (BOX_H + GAP_Y);
        }
    }
    Layout {
        nodes,
        edges,
        width: MARGIN * 2.0 + inner + 2.0 * LOOP_ROOM,
        height: MARGIN * 2.0 + layers as f64 * BOX_H + (layers as f64 - 1.0) * GAP_Y,
    }
}

/// How an arrow runs: down to the next layer, or in a gutter (the `n`th lane of it): left
/// for arrows that skip layers, right for arrows that go back up or across.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Down,
    Left(usize),
    Right(usize),
}

/// The routes of `edges` in order, lanes numbered per gutter.
fn routes(l: &Layout, by_id: &HashMap<&str, &Node>) -> Vec<Option<Route>> {
    let (mut left, mut right) = (0, 0);
    l.edges
        .iter()
        .map(|e| {
            let (a, b) = (by_id.get(e.from.as_str())?, by_id.get(e.to.as_str())?);
            Some(if b.layer == a.layer + 1 {
                Route::Down
            } else if b.layer > a.layer {
                left += 1;
                Route::Left(left - 1)
            } else {
                right += 1;
                Route::Right(right - 1)
            })
        })
        .collect()
}

/// An arrow's path from `a` to `b` along `route`, and where its label goes (x, y, anchor).
pub(crate) fn arrow(a: &Node, b: &Node, route: Route, width: f64) -> (String, (f64, f64, &'static str)) {
    match route {
        Route::Down => {
            let (x1, y1) = (a.x + BOX_W / 2.0, a.y + BOX_H);
            let (x2, y2) = (b.x + BOX_W / 2.0, b.y);
            let my = (y1 + y2) / 2.0;
            (
                format!("M{x1:.1},{y1:.1} C{x1:.1},{my:.1} {x2:.1},{my:.1} {x2:.1},{y2:.1}"),
                ((x1 + x2) / 2.0 + 6.0, my + 4.0, "start"),
            )
        }
        Route::Left(n) | Route::Right(n) => {
            let left = matches!(route, Route::Left(_));
            let lane = if left {
                (LOOP_ROOM - 20.0 - LANE * n as f64).max(6.0)
            } else {
                (width - LOOP_ROOM + 20.0 + LANE * n as f64).min(width - 6.0)
            };
            let (x1, x2) = if left {
                (a.x, b.x)
            } else {
                (a.x + BOX_W, b.x + BOX_W)
            };
            let (y1, y2) = (a.y + BOX_H / 2.0, b.y + BOX_H / 2.0);
            let r = if left { 8.0 } else { -8.0 };
            let down = if y2 > y1 { 8.0 } else { -8.0 };
            (
                format!(
                    "M{x1:.1},{y1:.1} L{:.1},{y1:.1} Q{lane:.1},{y1:.1} {lane:.1},{:.1} L{lane:.1},{:.1} Q{lane:.1},{y2:.1} {:.1},{y2:.1} L{x2:.1},{y2:.1}",
                    lane + r,
                    y1 + down,
                    y2 - down,
                    lane + r
                ),
                if left {
                    (x1 - 6.0, y1 - 6.0, "end")
                } else {
                    (x1 + 6.0, y1 - 6.0, "start")
                },
            )
        }
    }
}

fn count_line(kind: Kind, tally: Tally) -> String {
    let mut parts = Vec::new();
    if kind == Kind::End {
        parts.push(format!("{} completed", super::layout::group(tally.completed)));
        if tally.exited > 0 {
            parts.push(format!("{} exited", super::layout::group(tally.exited)));
        }
        return parts.join(" · ");
    }
    if tally.waiting > 0 {
        parts.push(format!("{} waiting", super::layout::group(tally.waiting)));
    }
    let left = tally.completed + tally.exited;
    if left > 0 {
        parts.push(format!("{} left here", super::layout::group(left)));
    }
    parts.join(" · ")
}

/// The drawing, with `counts` by step id (the end's are the totals of everyone who left).
pub(crate) fn draw(name: &str, def: &JourneyDef, counts: &HashMap<String, Tally>) -> Markup {
    let l = layout(def);
    let by_id: HashMap<&str, &Node> = l.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let ended = Tally {
        waiting: 0,
        ..Tally::total(counts.values())
    };
    let label = format!("The steps of journey {name}");
    html! {
        svg.journey viewBox={ "0 0 " (format!("{:.0}", l.width)) " " (format!("{:.0}", l.height)) }
            width=(format!("{:.0}", l.width)) role="img" aria-label=(label) {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path.arrow-head d="M0,0 L10,5 L0,10 z" {}
                }
            }
            @for (e, route) in l.edges.iter().zip(routes(&l, &by_id)) {
                @if let (Some(a), Some(b), Some(route)) = (by_id.get(e.from.as_str()), by_id.get(e.to.as_str()), route) {
                    @let (d, (lx, ly, anchor)) = arrow(a, b, route, l.width);
                    g.edge {
                        path d=(d) marker-end="url(#arrow)" {}
                        @if !e.label.is_empty() {
                            text.edge-label x=(format!("{lx:.1}")) y=(format!("{ly:.1}")) text-anchor=(anchor) { (e.label) }
                        }
                    }
                }
            }
            @for n in &l.nodes {
                @let tally = if n.kind == Kind::End { ended } else { counts.get(&n.id).copied().unwrap_or_default() };
                @let class = match n.kind { Kind::Trigger => "node trigger", Kind::Step => "node", Kind::End => "node end", Kind::Missing => "node missing" };
                @let counted = if n.kind == Kind::Trigger { String::new() } else { count_line(n.kind, tally) };
                g class=(class) {
                    title { (n.title) ": " (n.detail) @if !counted.is_empty() { " — " (counted) } }
                    rect x=(format!("{:.1}", n.x)) y=(format!("{:.1}", n.y)) width=(BOX_W) height=(BOX_H) rx="10" {}
                    text.node-title x=(format!("{:.1}", n.x + 12.0)) y=(format!("{:.1}", n.y + 22.0)) { (fit(&n.title)) }
                    text.node-detail x=(format!("{:.1}", n.x + 12.0)) y=(format!("{:.1}", n.y + 40.0)) { (fit(&n.detail)) }
                    @if !counted.is_empty() {
                        text.node-count x=(format!("{:.1}", n.x + 12.0)) y=(format!("{:.1}", n.y + 57.0)) { (counted) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(steps: serde_json::Value) -> JourneyDef {
        serde_json::from_value(serde_json::json!({"trigger": {"event": "Product Added"}, "steps": steps}))
            .expect("a definition")
    }

    fn cart() -> JourneyDef {
        def(serde_json::json!([
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "timeout": "4h"},
            {"id": "vip", "type": "branch", "condition": "orders.count >= 3", "then": "treat", "else": "remind"},
            {"id": "remind", "type": "send", "template": "cart", "next": "wait"},
            {"id": "treat", "type": "send", "template": "cart_vip"}
        ]))
    }

    fn place(l: &Layout) -> Vec<(&str, usize)> {
        l.nodes.iter().map(|n| (n.id.as_str(), n.layer)).collect()
    }

    #[test]
    fn layers_follow_the_shortest_way_from_the_trigger_and_the_end_is_last() {
        let l = layout(&cart());
        assert_eq!(
            place(&l),
            vec![
                (TRIGGER, 0),
                ("wait", 1),
                ("vip", 2),
                ("remind", 3),
                ("treat", 3),
                ("exit", 4)
            ]
        );
        // Two boxes side by side in layer 3, centred under the one above.
        let remind = &l.nodes[3];
        let treat = &l.nodes[4];
        assert_eq!(remind.y, treat.y);
        assert!((treat.x - remind.x - (BOX_W + GAP_X)).abs() < 1e-9);
        let vip = &l.nodes[2];
        assert!(((remind.x + treat.x + BOX_W) / 2.0 - (vip.x + BOX_W / 2.0)).abs() < 1e-9);
    }

    #[test]
    fn loops_go_round_the_right_skips_round_the_left_and_the_rest_down() {
        let l = layout(&cart());
        let by_id: HashMap<&str, &Node> = l.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let seen: Vec<(&str, &str, Option<Route>)> = l
            .edges
            .iter()
            .zip(routes(&l, &by_id))
            .map(|(e, r)| (e.from.as_str(), e.to.as_str(), r))
            .collect();
        assert_eq!(
            seen,
            vec![
                (TRIGGER, "wait", Some(Route::Down)),
                ("wait", "exit", Some(Route::Left(0))),
                ("wait", "vip", Some(Route::Down)),
                ("vip", "treat", Some(Route::Down)),
                ("vip", "remind", Some(Route::Down)),
                ("remind", "wait", Some(Route::Right(0))),
                ("treat", "exit", Some(Route::Down)),
            ]
        );
        let n = |id: &str| by_id[id];
        let (back, (_, _, anchor)) = arrow(n("remind"), n("wait"), Route::Right(0), l.width);
        assert!(
            back.starts_with(&format!("M{:.1},", n("remind").x + BOX_W)),
            "{back}"
        );
        assert_eq!(anchor, "start");
        let (skip, _) = arrow(n("wait"), n("exit"), Route::Left(1), l.width);
        let lane = LOOP_ROOM - 20.0 - LANE;
        assert!(
            skip.contains(&format!("L{lane:.1},")),
            "the second lane of the left gutter: {skip}"
        );
        let (down, _) = arrow(n("wait"), n("vip"), Route::Down, l.width);
        assert!(down.ends_with(&format!("{:.1}", n("vip").y)), "{down}");
    }

    #[test]
    fn unreachable_steps_and_missing_targets_are_still_drawn() {
        let l = layout(&def(serde_json::json!([
            {"id": "a", "type": "send", "template": "t", "next": "ghost"},
            {"id": "orphan", "type": "exit"}
        ])));
        let kinds: Vec<(&str, Kind, usize)> =
            l.nodes.iter().map(|n| (n.id.as_str(), n.kind, n.layer)).collect();
        assert_eq!(
            kinds,
            vec![
                (TRIGGER, Kind::Trigger, 0),
                ("a", Kind::Step, 1),
                ("orphan", Kind::Step, 3),
                ("ghost", Kind::Missing, 2),
                ("exit", Kind::End, 4),
            ]
        );
    }

    #[test]
    fn boxes_say_who_waits_and_who_left_and_text_is_escaped() {
        let counts = HashMap::from([
            (
                "wait".to_owned(),
                Tally {
                    waiting: 1200,
                    completed: 0,
                    exited: 3,
                },
            ),
            (
                "treat".to_owned(),
                Tally {
                    waiting: 0,
                    completed: 40,
                    exited: 0,
                },
            ),
        ]);
        let svg = draw("cart <1>", &cart(), &counts).into_string();
        assert!(svg.contains("1,200 waiting · 3 left here"), "{svg}");
        assert!(svg.contains(">40 left here<"), "{svg}");
        assert!(svg.contains(">40 completed · 3 exited<"), "{svg}");
        assert!(
            svg.contains("aria-label=\"The steps of journey cart &lt;1&gt;\""),
            "{svg}"
        );
        assert!(
            svg.contains(">then<") && svg.contains(">else<") && svg.contains(">timeout<"),
            "{svg}"
        );
        assert!(svg.contains("if orders.count &gt;= 3"), "{svg}");
    }

    #[test]
    fn long_summaries_are_cut_to_fit_their_box() {
        assert_eq!(fit("short"), "short");
        let cut = fit(&"x".repeat(50));
        assert_eq!(cut.chars().count(), FIT);
        assert!(cut.ends_with('…'));
    }
}
