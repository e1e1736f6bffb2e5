//! Checking a definition and compiling it: durations, times of day, branch conditions, targets
//! and loops.

use std::collections::{HashMap, HashSet};

use chrono::TimeDelta;
use missive_segment::Segment;

use crate::definition::{Action, EXIT, JourneyDef, MAX_SENDS_PER_INSTANCE, Step};

/// Why a definition is refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("invalid journey: {0}")]
    Invalid(String),
    #[error("step {step:?}: {error}")]
    Condition {
        step: String,
        error: missive_segment::SegmentError,
    },
}

/// A journey ready to run.
#[derive(Debug)]
pub struct Compiled {
    pub name: String,
    pub version: i64,
    pub def: JourneyDef,
    waits: HashMap<String, TimeDelta>,
    conditions: HashMap<String, Segment>,
}

impl Compiled {
    /// How long the `wait` (with a duration) or `wait_for_event` step `id` waits.
    pub fn wait_of(&self, id: &str) -> Option<TimeDelta> {
        self.waits.get(id).copied()
    }

    /// The compiled condition of the `branch` step `id`.
    pub fn condition_of(&self, id: &str) -> Option<&Segment> {
        self.conditions.get(id)
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.def.steps.iter().position(|s| s.id == id)
    }

    /// The step after `id`: its `next`, else the following one, else the end.
    pub fn after(&self, id: &str) -> String {
        let Some(i) = self.index(id) else {
            return EXIT.into();
        };
        match &self.def.steps[i].next {
            Some(n) => n.clone(),
            None => self.def.steps.get(i + 1).map_or(EXIT.into(), |s| s.id.clone()),
        }
    }
}

/// Parses `"90s"`, `"15m"`, `"1h"`, `"2d"`, `"1w"`.
pub fn parse_duration(s: &str) -> Option<TimeDelta> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = s[..split].parse().ok()?;
    let d = match &s[split..] {
        "s" => TimeDelta::try_seconds(n)?,
        "m" => TimeDelta::try_minutes(n)?,
        "h" => TimeDelta::try_hours(n)?,
        "d" => TimeDelta::try_days(n)?,
        "w" => TimeDelta::try_weeks(n)?,
        _ => return None,
    };
    (d > TimeDelta::zero() && d <= TimeDelta::days(366)).then_some(d)
}

/// `until` times are local times of day, `HH:MM`.
pub use missive_core::zone::parse_time_of_day;

/// Checks a definition and compiles its waits and conditions.
pub fn compile(
    name: &str,
    version: i64,
    def: JourneyDef,
    schema: &missive_segment::Schema,
) -> Result<Compiled, DefinitionError> {
    let invalid = |m: String| Err(DefinitionError::Invalid(m));
    if def.steps.is_empty() {
        return invalid("a journey needs at least one step".into());
    }
    match (&def.trigger.event, &def.trigger.segment) {
        (Some(e), None) if !e.trim().is_empty() => {}
        (None, Some(s)) if !s.trim().is_empty() => {
            if !def.trigger.conditions.is_empty() || def.key.is_some() {
                return invalid("a segment trigger takes no conditions and no key".into());
            }
        }
        _ => return invalid("the trigger needs exactly one of event and segment".into()),
    }
    let mut ids = std::collections::HashSet::new();
    for s in &def.steps {
        if s.id == EXIT || s.id.is_empty() || !ids.insert(s.id.as_str()) {
            return invalid(format!(
                "step ids must be unique, non-empty and not \"exit\": {:?}",
                s.id
            ));
        }
    }
    let known = |t: &str| t == EXIT || ids.contains(t);
    let mut waits = HashMap::new();
    let mut conditions = HashMap::new();
    for s in &def.steps {
        let mut targets: Vec<&str> = s.next.iter().map(String::as_str).collect();
        match &s.action {
            Action::Wait { duration, until_time } => match (duration, until_time) {
                (Some(d), None) => {
                    let d = parse_duration(d).ok_or_else(|| {
                        DefinitionError::Invalid(format!(
                            "step {:?}: duration {d:?} is not like \"30m\", \"1h\", \"2d\" (at most a year)",
                            s.id
                        ))
                    })?;
                    waits.insert(s.id.clone(), d);
                }
                (None, Some(t)) => {
                    if parse_time_of_day(t).is_none() {
                        return invalid(format!("step {:?}: until_time {t:?} is not like \"09:30\"", s.id));
                    }
                }
                _ => {
                    return invalid(format!(
                        "step {:?}: a wait needs exactly one of duration and until_time",
                        s.id
                    ));
                }
            },
            Action::WaitForEvent {
                timeout,
                on_event,
                on_timeout,
                match_key,
                ..
            } => {
                let d = parse_duration(timeout).ok_or_else(|| {
                    DefinitionError::Invalid(format!(
                        "step {:?}: timeout {timeout:?} is not like \"1h\"",
                        s.id
                    ))
                })?;
                if *match_key && def.key.is_none() {
                    return invalid(format!("step {:?}: match_key needs the journey's key", s.id));
                }
                waits.insert(s.id.clone(), d);
                targets.push(on_event);
                targets.extend(on_timeout.iter().map(String::as_str));
            }
            Action::Branch {
                condition,
                then,
                otherwise,
            } => {
                let segment =
                    Segment::compile(condition, schema).map_err(|error| DefinitionError::Condition {
                        step: s.id.clone(),
                        error,
                    })?;
                conditions.insert(s.id.clone(), segment);
                targets.extend([then.as_str(), otherwise.as_str()]);
            }
            Action::Split { experiment, paths } => {
                match experiment {
                    None => {
                        if paths.is_empty() || paths.iter().all(|p| p.weight == 0) {
                            return invalid(format!("step {:?}: a split needs paths with weights", s.id));
                        }
                        if paths.iter().any(|p| p.variant.is_some()) {
                            return invalid(format!(
                                "step {:?}: paths name variants only in a split that names an experiment",
                                s.id
                            ));
                        }
                    }
                    Some(name) => {
                        if name.trim().is_empty() {
                            return invalid(format!("step {:?}: the experiment's name is empty", s.id));
                        }
                        let mut seen = HashSet::new();
                        for p in paths {
                            match &p.variant {
                                Some(v) if p.weight == 0 && seen.insert(v.as_str()) => {}
                                _ => {
                                    return invalid(format!(
                                        "step {:?}: in an experiment's split, each path names a different variant and no weight (the experiment's weights apply)",
                                        s.id
                                    ));
                                }
                            }
                        }
                    }
                }
                targets.extend(paths.iter().map(|p| p.next.as_str()));
            }
            Action::Send {
                template,
                experiment,
                at,
                within,
            } => {
                if template.trim().is_empty() {
                    return invalid(format!("step {:?}: send needs a template", s.id));
                }
                if experiment.as_deref().is_some_and(|e| e.trim().is_empty()) {
                    return invalid(format!("step {:?}: the experiment's name is empty", s.id));
                }
                if let Some(w) = within {
                    if at.is_none() {
                        return invalid(format!("step {:?}: `within` goes with `at: \"best_time\"`", s.id));
                    }
                    match parse_duration(w) {
                        Some(d) if d >= TimeDelta::hours(1) && d <= TimeDelta::days(7) => {}
                        _ => {
                            return invalid(format!(
                                "step {:?}: within {w:?}: a duration from 1h to 7d",
                                s.id
                            ));
                        }
                    }
                }
            }
            Action::Webhook(call) => {
                check_webhook(&s.id, call)?;
                targets.extend(call.on_failure.as_deref());
            }
            Action::Exit => {}
        }
        if let Some(bad) = targets.iter().find(|t| !known(t)) {
            return invalid(format!("step {:?} goes to {bad:?}, which is not a step", s.id));
        }
    }
    if let Some(n) = def.max_sends_per_instance
        && !(1..=MAX_SENDS_PER_INSTANCE).contains(&n)
    {
        return invalid(format!(
            "max_sends_per_instance must be between 1 and {MAX_SENDS_PER_INSTANCE}, not {n}"
        ));
    }
    if let Some(cycle) = loop_without_wait(&def.steps) {
        return invalid(format!(
            "steps {} form a loop with no wait: one event would run it without end; put a wait step in it",
            cycle.join(" → ")
        ));
    }
    Ok(Compiled {
        name: name.into(),
        version,
        def,
        waits,
        conditions,
    })
}

/// The steps that may run right after `i` within one pass (a wait ends the pass).
fn successors(steps: &[Step], i: usize) -> Vec<&str> {
    let s = &steps[i];
    let after = || {
        s.next
            .as_deref()
            .unwrap_or_else(|| steps.get(i + 1).map_or(EXIT, |n| n.id.as_str()))
    };
    match &s.action {
        Action::Wait { .. } | Action::WaitForEvent { .. } | Action::Exit => vec![],
        Action::Branch { then, otherwise, .. } => vec![then.as_str(), otherwise.as_str()],
        Action::Split { paths, .. } => paths.iter().map(|p| p.next.as_str()).collect(),
        Action::Send { .. } => vec![after()],
        Action::Webhook(call) => {
            let mut next = vec![after()];
            next.extend(call.on_failure.as_deref());
            next
        }
    }
}

/// A webhook step's checks: an http(s) URL with a host, a known method, a body that parses as
/// Liquid, bounded timeout and retries, JSON pointers for the traits.
fn check_webhook(id: &str, call: &crate::definition::WebhookCall) -> Result<(), DefinitionError> {
    let bad = |why: String| Err(DefinitionError::Invalid(format!("step {id:?}: {why}")));
    if let Err(e) = missive_webhooks::endpoint::check_url(&call.url) {
        return bad(format!("url: {}", e.why));
    }
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&call.method.as_str()) {
        return bad(format!(
            "method {:?}: use GET, POST, PUT, PATCH or DELETE",
            call.method
        ));
    }
    if let Some(body) = &call.body
        && let Err(e) = missive_liquid::Template::parse(body)
    {
        return bad(format!("body: {e}"));
    }
    if let Some(t) = call.timeout_ms
        && !(100..=crate::definition::MAX_WEBHOOK_TIMEOUT_MS).contains(&t)
    {
        return bad(format!(
            "timeout_ms {t}: use 100 to {}",
            crate::definition::MAX_WEBHOOK_TIMEOUT_MS
        ));
    }
    if call.retries.is_some_and(|r| r > 3) {
        return bad("retries: at most 3".into());
    }
    for (name, pointer) in &call.traits {
        if name.trim().is_empty() || !(pointer.is_empty() || pointer.starts_with('/')) {
            return bad(format!(
                "traits.{name}: map a trait name to a JSON pointer like \"/tier\""
            ));
        }
    }
    Ok(())
}

/// A loop of steps none of which waits (`send → send`, `branch → send → branch`), as the ids
/// in order from where it closes, if there is one. Iterative: definitions can be long.
fn loop_without_wait(steps: &[Step]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut mark = vec![Mark::New; steps.len()];
    for start in 0..steps.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (step, its successors, how many of them were visited)
        let mut path: Vec<(usize, Vec<usize>, usize)> = Vec::new();
        let succ = |i: usize| -> Vec<usize> {
            successors(steps, i)
                .into_iter()
                .filter_map(|t| index.get(t).copied())
                .collect()
        };
        mark[start] = Mark::OnPath;
        path.push((start, succ(start), 0));
        while let Some((node, next, done)) = path.last_mut() {
            if *done == next.len() {
                mark[*node] = Mark::Done;
                path.pop();
                continue;
            }
            let t = next[*done];
            *done += 1;
            match mark[t] {
                Mark::OnPath => {
                    let from = path.iter().position(|(n, _, _)| *n == t).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|(n, _, _)| steps[*n].id.clone())
                        .collect();
                    cycle.push(steps[t].id.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    mark[t] = Mark::OnPath;
                    let s = succ(t);
                    path.push((t, s, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn durations_and_times_of_day_parse() {
        assert_eq!(parse_duration("90s"), Some(TimeDelta::seconds(90)));
        assert_eq!(parse_duration("1h"), Some(TimeDelta::hours(1)));
        assert_eq!(parse_duration("2d"), Some(TimeDelta::days(2)));
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(
            parse_time_of_day("09:30"),
            chrono::NaiveTime::from_hms_opt(9, 30, 0)
        );
        assert_eq!(parse_time_of_day("24:00"), None);
    }

    fn def(steps: Value) -> JourneyDef {
        serde_json::from_value(json!({
            "trigger": {"event": "Product Added"},
            "key": "properties.cart_id",
            "steps": steps,
        }))
        .unwrap()
    }

    #[test]
    fn webhook_steps_are_checked_field_by_field() {
        let schema = missive_segment::Schema::default();
        let step = |extra: Value| {
            let mut s = json!({"id": "call", "type": "webhook", "url": "https://loyalty.example/points"});
            for (k, v) in extra.as_object().unwrap() {
                s[k] = v.clone();
            }
            def(json!([s, {"id": "after", "type": "wait", "duration": "1h"}]))
        };
        assert!(
            compile(
                "j",
                1,
                step(json!({"body": "{\"e\": {{ profile.email | json }}}", "on_failure": "exit"})),
                &schema
            )
            .is_ok()
        );
        for (extra, why) in [
            (json!({"url": "ftp://loyalty.example/"}), "url"),
            (json!({"url": "https://user:pw@loyalty.example/"}), "url"),
            (json!({"method": "BREW"}), "method"),
            (json!({"body": "{{ unclosed"}), "body"),
            (json!({"timeout_ms": 60000}), "timeout_ms"),
            (json!({"retries": 9}), "retries"),
            (json!({"traits": {"tier": "member.tier"}}), "JSON pointer"),
            (json!({"on_failure": "nowhere"}), "not a step"),
        ] {
            let err = compile("j", 1, step(extra.clone()), &schema)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{extra}: {err}");
        }
        // A webhook step does not wait: a loop through it alone is refused.
        let looped =
            def(json!([{"id": "call", "type": "webhook", "url": "https://x.example/", "next": "call"}]));
        assert!(
            compile("j", 1, looped, &schema)
                .unwrap_err()
                .to_string()
                .contains("loop")
        );
    }

    #[test]
    fn definitions_are_checked() {
        let schema = missive_segment::Schema::default();
        let ok = def(json!([
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true, "timeout": "1h"},
            {"id": "send", "type": "send", "template": "cart"},
        ]));
        let c = compile("cart", 1, ok, &schema).unwrap();
        assert_eq!(c.after("wait"), "send");
        assert_eq!(c.after("send"), EXIT);
        for (bad, why) in [
            (
                json!([{"id": "a", "type": "wait", "duration": "soon"}]),
                "duration",
            ),
            (
                json!([{"id": "a", "type": "send", "template": "x", "next": "b"}]),
                "not a step",
            ),
            (
                json!([{"id": "a", "type": "exit"}, {"id": "a", "type": "exit"}]),
                "unique",
            ),
            (
                json!([{"id": "a", "type": "branch", "condition": "orders.count >>", "then": "exit", "else": "exit"}]),
                "step \"a\"",
            ),
            (
                json!([{"id": "a", "type": "send", "template": "x", "next": "a"}]),
                "steps a → a form a loop with no wait",
            ),
            (
                json!([
                    {"id": "b", "type": "branch", "condition": "orders.count > 0", "then": "s", "else": "exit"},
                    {"id": "s", "type": "send", "template": "x"},
                    {"id": "t", "type": "split", "paths": [{"weight": 1, "next": "b"}]},
                ]),
                "steps b → s → t → b",
            ),
            (json!([]), "at least one step"),
        ] {
            let e = compile("x", 1, def(bad), &schema).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        // A loop through a wait is allowed (the send cap bounds it).
        let through_wait = def(json!([
            {"id": "s", "type": "send", "template": "x"},
            {"id": "w", "type": "wait", "duration": "1s", "next": "s"},
        ]));
        assert!(compile("x", 1, through_wait, &schema).is_ok());
        let mut capped = def(json!([{"id": "s", "type": "send", "template": "x"}]));
        capped.max_sends_per_instance = Some(0);
        assert!(
            compile("x", 1, capped, &schema)
                .unwrap_err()
                .to_string()
                .contains("max_sends_per_instance")
        );
    }
}
