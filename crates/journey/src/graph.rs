//! A definition as a graph: every way an instance can move from one step to another, with what
//! takes it there. What the console draws; the runner follows the same rules (`compile`'s
//! `after` and the actions' targets).

use crate::definition::{Action, EXIT, JourneyDef, Trigger};

/// One way out of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The step it leaves.
    pub from: String,
    /// The step it goes to, or [`EXIT`] for the end.
    pub to: String,
    /// What takes an instance this way: `""` (the step is done), `event`, `timeout`, `then`,
    /// `else`, a split's share (`50%`) or variant, `failure`.
    pub label: String,
}

/// Every edge of a definition, in the order of its steps. A target that names no step (a
/// definition not yet checked) is kept as written: the drawing shows it dangling.
pub fn edges(def: &JourneyDef) -> Vec<Edge> {
    let mut out = Vec::new();
    let steps = &def.steps;
    for (i, s) in steps.iter().enumerate() {
        let after = s
            .next
            .clone()
            .unwrap_or_else(|| steps.get(i + 1).map_or(EXIT.to_owned(), |n| n.id.clone()));
        let mut edge = |to: &str, label: String| {
            out.push(Edge {
                from: s.id.clone(),
                to: to.to_owned(),
                label,
            })
        };
        match &s.action {
            Action::Exit => {}
            Action::Wait { .. } | Action::Send { .. } => edge(&after, String::new()),
            Action::WaitForEvent {
                on_event, on_timeout, ..
            } => {
                edge(on_event, "event".into());
                edge(on_timeout.as_deref().unwrap_or(&after), "timeout".into());
            }
            Action::Branch { then, otherwise, .. } => {
                edge(then, "then".into());
                edge(otherwise, "else".into());
            }
            Action::Split { paths, experiment } => {
                let weights: u32 = paths.iter().map(|p| p.weight).sum();
                for p in paths {
                    let label = match &p.variant {
                        Some(v) => v.clone(),
                        None if experiment.is_none() && weights > 0 => {
                            format!("{:.0}%", f64::from(p.weight) * 100.0 / f64::from(weights))
                        }
                        None => String::new(),
                    };
                    edge(&p.next, label);
                }
            }
            Action::Webhook(call) => {
                edge(&after, String::new());
                if let Some(f) = &call.on_failure {
                    edge(f, "failure".into());
                }
            }
        }
    }
    out
}

/// How a journey starts, in words: `on event Product Added`, `on joining segment vip`.
pub fn trigger_summary(t: &Trigger) -> String {
    match (&t.event, &t.segment) {
        (Some(e), _) => format!("on event {e}"),
        (None, Some(s)) => format!("on joining segment {s}"),
        (None, None) => "no trigger".into(),
    }
}

/// A step's action in a few words: `send welcome`, `wait 1h`, `wait for Order Completed (2d)`.
pub fn summary(action: &Action) -> String {
    match action {
        Action::Wait { duration, until_time } => match (duration, until_time) {
            (Some(d), _) => format!("wait {d}"),
            (None, Some(t)) => format!("wait until {t}"),
            (None, None) => "wait".into(),
        },
        Action::WaitForEvent { event, timeout, .. } => format!("wait for {event} ({timeout})"),
        Action::Branch { condition, .. } => format!("if {condition}"),
        Action::Split {
            experiment: Some(e), ..
        } => format!("split by experiment {e}"),
        Action::Split { paths, .. } => format!("random split in {}", paths.len()),
        Action::Send {
            template,
            experiment,
            at,
            ..
        } => {
            let mut s = format!("send {template}");
            if let Some(e) = experiment {
                s.push_str(&format!(" (experiment {e})"));
            }
            if at.is_some() {
                s.push_str(" at best time");
            }
            s
        }
        Action::Webhook(call) => format!(
            "call {} {}",
            call.method,
            call.service.as_deref().unwrap_or(&call.url)
        ),
        Action::Exit => "exit".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(steps: serde_json::Value) -> JourneyDef {
        serde_json::from_value(serde_json::json!({"trigger": {"event": "Product Added"}, "steps": steps}))
            .expect("a definition")
    }

    fn seen(def: &JourneyDef) -> Vec<(String, String, String)> {
        edges(def).into_iter().map(|e| (e.from, e.to, e.label)).collect()
    }

    fn e(from: &str, to: &str, label: &str) -> (String, String, String) {
        (from.into(), to.into(), label.into())
    }

    #[test]
    fn every_way_out_of_every_step_is_an_edge() {
        let d = def(serde_json::json!([
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "timeout": "4h"},
            {"id": "vip", "type": "branch", "condition": "orders.count >= 3", "then": "treat", "else": "remind"},
            {"id": "remind", "type": "send", "template": "cart", "next": "exit"},
            {"id": "treat", "type": "split", "paths": [{"weight": 1, "next": "a"}, {"weight": 3, "next": "b"}]},
            {"id": "a", "type": "webhook", "url": "https://loyalty.example/points", "on_failure": "b"},
            {"id": "b", "type": "wait", "duration": "1d"},
            {"id": "end", "type": "exit"}
        ]));
        assert_eq!(
            seen(&d),
            vec![
                e("wait", "exit", "event"),
                e("wait", "vip", "timeout"),
                e("vip", "treat", "then"),
                e("vip", "remind", "else"),
                e("remind", "exit", ""),
                e("treat", "a", "25%"),
                e("treat", "b", "75%"),
                e("a", "b", ""),
                e("a", "b", "failure"),
                e("b", "end", ""),
            ]
        );
    }

    #[test]
    fn the_last_step_ends_the_journey_and_variants_label_their_paths() {
        let d = def(serde_json::json!([
            {"id": "ab", "type": "split", "experiment": "recs", "paths": [{"variant": "rules", "next": "x"}, {"variant": "model", "next": "y"}]},
            {"id": "x", "type": "send", "template": "t1", "next": "nowhere"},
            {"id": "y", "type": "send", "template": "t2", "at": "best_time"}
        ]));
        assert_eq!(
            seen(&d),
            vec![
                e("ab", "x", "rules"),
                e("ab", "y", "model"),
                e("x", "nowhere", ""),
                e("y", "exit", ""),
            ]
        );
        assert_eq!(summary(&d.steps[2].action), "send t2 at best time");
        assert_eq!(summary(&d.steps[0].action), "split by experiment recs");
    }
}
