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
fn e_mails_have_no_partials_so_include_and_render_reach_no_file() {
    for source in ["{% render '/etc/passwd' %}", "{% include '../../Cargo.toml' %}"] {
        match render_hostile(source) {
            ContentError::Liquid { error, .. } => {
                assert_eq!(error.kind, ErrorKind::Render, "{source}: {error}");
                assert!(error.message.contains("not found"), "{source}: {error}");
            }
            other => panic!("{source}: {other}"),
        }
    }
}
