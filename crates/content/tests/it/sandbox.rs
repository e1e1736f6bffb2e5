use missive_content::ContentError;
use missive_content::blocks::Selection;
use missive_content::template::{CompiledTemplate, Layout, TemplateSource};
use missive_liquid::{ErrorKind, Object};

use crate::support::opts;

fn render_hostile(body: &str) -> ContentError {
    let t = CompiledTemplate::compile(&TemplateSource {
        subject: "x".into(),
        preheader: String::new(),
        layout: Layout::Html,
        body: body.into(),
        text: Some("t".into()),
    })
    .unwrap();
    t.render(&Object::new(), &Selection::default(), &opts())
        .unwrap_err()
}

fn assert_limit(e: ContentError) {
    match e {
        ContentError::Liquid { error, .. } => assert_eq!(error.kind, ErrorKind::Limit, "{error}"),
        other => panic!("expected a limit error, got {other}"),
    }
}

#[test]
fn an_endless_loop_is_stopped() {
    assert_limit(render_hostile(
        "<p>{% for i in (1..1000000000) %}{% for j in (1..1000000000) %}x{% endfor %}{% endfor %}</p>",
    ));
}

#[test]
fn an_output_bomb_is_stopped() {
    assert_limit(render_hostile(
        "{% assign s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s }}",
    ));
}

#[test]
fn partials_cannot_reach_files() {
    let e = render_hostile("{% render '/etc/passwd' %}{% include '../../Cargo.toml' %}");
    assert!(matches!(e, ContentError::Liquid { .. }), "{e}");
}
