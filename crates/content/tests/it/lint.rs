use missive_content::blocks::Selection;
use missive_content::lint::{Severity, lint};
use missive_content::template::{Layout, TemplateSource};
use missive_liquid::{Object, Value};

use crate::support::opts;

fn issues(body: &str, layout: Layout, marketing: bool) -> Vec<(Severity, &'static str)> {
    let mut data = Object::new();
    data.insert("unsubscribe_url", Value::from("https://m.example/u?t=1"));
    let source = TemplateSource {
        subject: "Hi {{ customer.first_name }}".into(),
        preheader: String::new(),
        layout,
        body: body.into(),
        text: None,
    };
    lint(&source, &data, |_| Selection::default(), &opts(), marketing)
        .into_iter()
        .map(|i| (i.severity, i.code))
        .collect()
}

#[test]
fn a_transactional_email_needs_no_unsubscribe_link_and_only_warns_about_undefined_data() {
    let found = issues(
        "<p>Order confirmed. <a href=\"https://s.example/o\">View</a></p>",
        Layout::Html,
        false,
    );
    assert_eq!(found, vec![(Severity::Warning, "undefined_variable")]);
}

#[test]
fn each_rule_is_reported() {
    let big = "x".repeat(110 * 1024);
    let body = format!(
        "<p>{{{{ missing.value }}}}<img src=\"https://c.example/a.png\"><a href=\"http://s.example/\">shop</a>{big}</p>"
    );
    let found = issues(&body, Layout::Html, true);
    for code in [
        "undefined_variable",
        "gmail_clipping",
        "image_without_alt",
        "insecure_link",
        "missing_unsubscribe",
    ] {
        assert!(
            found.iter().any(|(_, c)| *c == code),
            "{code} not reported: {found:?}"
        );
    }
    assert!(found.contains(&(Severity::Error, "missing_unsubscribe")));
}

#[test]
fn the_unsubscribe_link_satisfies_the_rule() {
    let found = issues(
        "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        Layout::Html,
        true,
    );
    assert!(
        !found.iter().any(|(_, c)| *c == "missing_unsubscribe"),
        "{found:?}"
    );
}

#[test]
fn invalid_mjml_and_liquid_are_errors() {
    let found = issues(
        "<mjml><mj-body><mj-section></mj-body></mjml>",
        Layout::Mjml,
        false,
    );
    assert_eq!(found, vec![(Severity::Error, "invalid_mjml")]);
    let found = issues("<p>{% if x %}unclosed</p>", Layout::Html, false);
    assert_eq!(found, vec![(Severity::Error, "liquid_syntax")]);
}

#[test]
fn an_unknown_filter_is_reported_apart_from_undefined_variables() {
    let found = issues("<p>{{ 'x' | shout }} {{ nothing }}</p>", Layout::Html, false);
    assert!(
        found.contains(&(Severity::Warning, "unknown_filter")),
        "{found:?}"
    );
    assert!(
        found.contains(&(Severity::Warning, "undefined_variable")),
        "{found:?}"
    );
}

#[test]
fn lint_of_a_template_with_a_hundred_thousand_outputs_reports_each_problem_once() {
    // Was quadratic (36 s for 100,000 outputs, minutes in a debug build); the time is measured
    // in docs/BENCHMARKS.md, not asserted here.
    let body: String = (0..lint_outputs())
        .map(|i| format!("<p>{{{{ v{} }}}}</p>", i % 50))
        .collect();
    let found = issues(&body, Layout::Html, false);
    let undefined = found.iter().filter(|(_, c)| *c == "undefined_variable").count();
    // One per distinct variable: the body's 50 and the subject's `customer.first_name`.
    assert_eq!(undefined, 51, "{found:?}");
    assert!(found.iter().any(|(_, c)| *c == "gmail_clipping"));
}

fn lint_outputs() -> usize {
    std::env::var("LINT_OUTPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}
