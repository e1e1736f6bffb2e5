//! Behaviour beyond the golden suite: e-mail filters, escaping, undefined variables, sandbox
//! limits, `block` and `variables()`.

use std::time::{Duration, Instant};

use missive_liquid::{ErrorKind, Limits, Template};

use crate::support::{MemPartials, env, globals, render};

fn ok(source: &str, data: &str) -> String {
    render(source, data).unwrap_or_else(|e| panic!("{source}: {e:?}"))
}

#[test]
fn money_formats_major_units_with_the_environment_currency() {
    assert_eq!(ok("{{ 19.99 | money }}", "{}"), "$19.99");
    assert_eq!(ok("{{ 1234.56 | money }}", "{}"), "$1,234.56");
    assert_eq!(ok("{{ 5 | money }}", "{}"), "$5.00");
    assert_eq!(ok("{{ -19.99 | money }}", "{}"), "-$19.99");
    assert_eq!(ok("{{ '19.99' | money_with_currency }}", "{}"), "$19.99 USD");
}

#[test]
fn money_takes_a_currency_code_argument() {
    assert_eq!(ok(r#"{{ 19.99 | money: "EUR" }}"#, "{}"), "€19.99");
    assert_eq!(ok(r#"{{ 1999 | money: "JPY" }}"#, "{}"), "¥1,999");
    assert_eq!(ok(r#"{{ 12.34 | money: "XYZ" }}"#, "{}"), "12.34 XYZ");
    assert_eq!(
        ok(r#"{{ 12.34 | money_with_currency: "XYZ" }}"#, "{}"),
        "12.34 XYZ"
    );
    assert_eq!(
        ok(r#"{{ 1234567.89 | money_with_currency: "gbp" }}"#, "{}"),
        "£1,234,567.89 GBP"
    );
}

#[test]
fn date_converts_into_the_environment_time_zone() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.time_zone = chrono_tz::Tz::Europe__Paris;
    let t = Template::parse("{{ ts | date: '%Y-%m-%d %H:%M %Z' }}").expect("parses");
    let out = t
        .render(&globals(r#"{"ts": "2024-01-15T23:30:00Z"}"#), &env)
        .expect("renders");
    assert_eq!(out, "2024-01-16 00:30 CET");
}

#[test]
fn date_accepts_a_zone_argument_now_and_unix_seconds() {
    assert_eq!(
        ok("{{ 0 | date: '%Y-%m-%d %H:%M', 'America/New_York' }}", "{}"),
        "1969-12-31 19:00"
    );
    assert_eq!(ok("{{ 'now' | date: '%Y-%m-%d' }}", "{}"), "2024-05-17");
    assert_eq!(ok("{{ 'today' | date: '%-d %B' }}", "{}"), "17 May");
    assert_eq!(ok("{{ '2024-03-05' | date: '%e|%^a|%-m' }}", "{}"), " 5|TUE|3");
    assert_eq!(
        ok("{{ '2024-03-05 10:20:30' | date: '%H:%M:%S' }}", "{}"),
        "10:20:30"
    );
    assert_eq!(ok("{{ 'not a date' | date: '%Y' }}", "{}"), "not a date");
    assert_eq!(
        render("{{ 0 | date: '%Y', 'Not/AZone' }}", "{}").map_err(|e| e.kind),
        Err(ErrorKind::Render)
    );
}

#[test]
fn pluralize_picks_the_word_for_the_count() {
    assert_eq!(ok(r#"{{ 1 | pluralize: "item", "items" }}"#, "{}"), "item");
    assert_eq!(ok(r#"{{ 3 | pluralize: "item", "items" }}"#, "{}"), "items");
    assert_eq!(ok(r#"{{ 0 | pluralize: "item", "items" }}"#, "{}"), "items");
    assert_eq!(
        ok(r#"{{ n | pluralize: "item", "items" }}"#, r#"{"n": "1"}"#),
        "item"
    );
}

#[test]
fn url_param_respects_existing_query_and_fragment() {
    let cases = [
        ("https://x.io/a", "https://x.io/a?utm_source=email"),
        ("https://x.io/a?b=1", "https://x.io/a?b=1&utm_source=email"),
        ("https://x.io/a?", "https://x.io/a?utm_source=email"),
        ("https://x.io/a#top", "https://x.io/a?utm_source=email#top"),
        (
            "https://x.io/a?b=1#top",
            "https://x.io/a?b=1&utm_source=email#top",
        ),
    ];
    for (url, want) in cases {
        let data = format!(r#"{{"url": "{url}"}}"#);
        assert_eq!(ok(r#"{{ url | url_param: "utm_source", "email" }}"#, &data), want);
    }
    assert_eq!(
        ok(r#"{{ "/a" | url_param: "q", "a b&c" }}"#, "{}"),
        "/a?q=a%20b%26c"
    );
}

#[test]
fn json_keeps_key_order_and_is_safe_in_script_tags() {
    let data = r#"{"o": {"b": 1, "a": [true, null, 1.5, "</script>"]}}"#;
    assert_eq!(
        ok("{{ o | json }}", data),
        r#"{"b":1,"a":[true,null,1.5,"\u003c/script\u003e"]}"#
    );
}

fn render_escaped(source: &str, data: &str, partials: &MemPartials) -> String {
    let mut env = env(partials);
    env.escape_output = true;
    Template::parse(source)
        .expect("parses")
        .render(&globals(data), &env)
        .expect("renders")
}

#[test]
fn escape_output_escapes_every_output_but_not_template_text() {
    let partials = MemPartials::default();
    let data = r#"{"name": "<b>Tom & \"Jerry\"</b>'"}"#;
    assert_eq!(
        render_escaped("<p>{{ name }}</p>", data, &partials),
        "<p>&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;&#39;</p>"
    );
    assert_eq!(
        render_escaped("{% echo name | upcase %}", data, &partials),
        "&lt;B&gt;TOM &amp; &quot;JERRY&quot;&lt;/B&gt;&#39;"
    );
}

#[test]
fn escape_output_is_skipped_after_raw_escape_and_escape_once_but_not_json() {
    let partials = MemPartials::default();
    let data = r#"{"html": "<i>hi</i> &amp;"}"#;
    assert_eq!(
        render_escaped("{{ html | raw }}", data, &partials),
        "<i>hi</i> &amp;"
    );
    assert_eq!(
        render_escaped("{{ html | escape }}", data, &partials),
        "&lt;i&gt;hi&lt;/i&gt; &amp;amp;"
    );
    assert_eq!(
        render_escaped("{{ html | escape_once }}", data, &partials),
        "&lt;i&gt;hi&lt;/i&gt; &amp;"
    );
    // Inside an attribute, unescaped JSON quotes would end the value and let data add its own.
    assert_eq!(
        render_escaped(r#"<a title="{{ html | json }}">"#, data, &partials),
        r#"<a title="&quot;\u003ci\u003ehi\u003c/i\u003e \u0026amp;&quot;">"#
    );
}

fn limit_error(source: &str) -> missive_liquid::Error {
    let partials = MemPartials::default();
    let env = env(&partials);
    let t = Template::parse(source).expect("parses");
    let started = std::time::Instant::now();
    let e = t.render(&globals("{}"), &env).expect_err("must hit a limit");
    assert!(
        started.elapsed().as_secs() < 5,
        "{source}: the limit took {:?} to hit",
        started.elapsed()
    );
    e
}

#[test]
fn filters_that_would_multiply_a_big_string_are_refused_before_they_run() {
    let big =
        "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..16) %}{% assign s = s | append: s %}{% endfor %}";
    for bomb in [
        "{{ s | replace: 'x', s }}",
        "{{ s | split: '' | join: s }}",
        "{% assign a = s | split: '' %}{{ a | size }}",
        "{{ s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s | append: s }}",
    ] {
        let e = limit_error(&format!("{big}{bomb}"));
        assert_eq!(e.kind, missive_liquid::ErrorKind::Limit, "{bomb}: {e}");
    }
}

#[test]
fn ranges_with_extreme_bounds_are_refused_not_overflowed() {
    for source in [
        "{% assign r = (-9999999999999999999.0..9999999999999999999.0) %}{{ r | size }}",
        "{% for i in (-9223372036854775808..9223372036854775807) %}{{ i }}{% endfor %}",
        "{{ (-9223372036854775808..9223372036854775807) | size }}",
    ] {
        let e = limit_error(source);
        assert_eq!(e.kind, missive_liquid::ErrorKind::Limit, "{source}: {e}");
    }
}

#[test]
fn strip_html_and_uniq_stay_linear_on_hostile_input() {
    let partials = MemPartials::default();
    // A quadratic filter would take minutes on this input; the default 250 ms budget could
    // also be missed by a linear one on a loaded debug build, so the budget here is generous.
    let mut env = env(&partials);
    env.limits.max_duration = Some(std::time::Duration::from_secs(10));
    let lt = "<".repeat(200_000);
    let t = Template::parse("{{ lt | strip_html | size }}").expect("parses");
    let data = format!(r#"{{"lt": "{lt}"}}"#);
    assert_eq!(t.render(&globals(&data), &env).expect("renders"), "200000");
    let t = Template::parse("{{ (1..90000) | uniq | size }}").expect("parses");
    assert_eq!(t.render(&globals("{}"), &env).expect("renders"), "90000");
}

#[test]
fn escape_output_does_not_escape_partials_or_blocks_twice() {
    let mut partials = MemPartials::new(&[("p", "<b>{{ x }}</b>")]);
    partials.blocks.insert("hero".into(), "<h1>{{ x }}</h1>".into());
    let out = render_escaped(
        "{% include 'p' %}{% render 'p', x: x %}{% block 'hero' %}",
        r#"{"x": "<"}"#,
        &partials,
    );
    assert_eq!(out, "<b>&lt;</b><b>&lt;</b><h1>&lt;</h1>");
}

#[test]
fn escape_output_off_leaves_output_alone() {
    assert_eq!(ok("{{ x }}", r#"{"x": "<&>"}"#), "<&>");
}

#[test]
fn undefined_variables_render_as_nothing_by_default() {
    let out = ok(
        "[{{ customer.first_name }}][{{ first_name | default: 'there' }}][{% if vip %}x{% endif %}][{% for i in items %}{{ i }}{% endfor %}]",
        r#"{"customer": {}}"#,
    );
    assert_eq!(out, "[][there][][]");
}

#[test]
fn strict_variables_fail_with_the_undefined_path() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.strict_variables = true;
    let t = Template::parse("Hi {{ customer.first_name }}").expect("parses");
    let err = t
        .render(&globals(r#"{"customer": {"last_name": "X"}}"#), &env)
        .expect_err("strict");
    assert_eq!(err.kind, ErrorKind::UndefinedVariable);
    assert!(err.message.contains("customer.first_name"), "{}", err.message);
    let fine = Template::parse("{% assign a = 1 %}{{ a }}{{ customer.last_name }}").expect("parses");
    assert_eq!(
        fine.render(&globals(r#"{"customer": {"last_name": "X"}}"#), &env)
            .expect("renders"),
        "1X"
    );
}

#[test]
fn diagnostics_list_undefined_variables_and_unknown_filters_without_failing() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.strict_variables = true;
    env.strict_filters = true;
    let t = Template::parse(
        "{{ a.b | nosuch | upcase }}{{ x }}{% if c.d %}{% endif %}{{ y }}{{ z | default: 'z' }}",
    )
    .expect("parses");
    let (out, diag) = t
        .render_with_diagnostics(&globals(r#"{"x": "ok"}"#), &env)
        .expect("renders");
    assert_eq!(out, "okz");
    // `z` is handled by its `default`: not worth a warning.
    let undefined: Vec<&str> = diag.undefined_variables.iter().map(String::as_str).collect();
    assert_eq!(undefined, ["a.b", "c.d", "y"]);
    assert!(diag.unknown_filters.contains("nosuch"));
}

#[test]
fn unknown_filters_are_skipped_unless_strict_filters() {
    assert_eq!(ok("{{ 'a' | nosuch | upcase }}", "{}"), "A");
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.strict_filters = true;
    let err = Template::parse("{{ 'a' | nosuch }}")
        .expect("parses")
        .render(&globals("{}"), &env)
        .expect_err("strict");
    assert_eq!(err.kind, ErrorKind::UnknownFilter);
}

fn limited(source: &str, limits: Limits, partials: &MemPartials) -> (ErrorKind, Duration) {
    let mut env = env(partials);
    env.limits = limits;
    let start = Instant::now();
    let err = Template::parse(source)
        .expect("parses")
        .render(&globals("{}"), &env)
        .expect_err("must hit a limit");
    (err.kind, start.elapsed())
}

#[test]
fn a_huge_range_loop_stops_at_the_iteration_limit_without_allocating() {
    let partials = MemPartials::default();
    let (kind, took) = limited(
        "{% for i in (1..1000000000) %}{% endfor %}",
        Limits::default(),
        &partials,
    );
    assert_eq!(kind, ErrorKind::Limit);
    assert!(took < Duration::from_secs(5));
    let (kind, _) = limited("{{ (1..1000000000) | join: ',' }}", Limits::default(), &partials);
    assert_eq!(kind, ErrorKind::Limit);
}

#[test]
fn nested_loops_share_one_iteration_budget() {
    let partials = MemPartials::default();
    let limits = Limits {
        max_loop_iterations: 1000,
        ..Limits::default()
    };
    let (kind, _) = limited(
        "{% for a in (1..100) %}{% for b in (1..100) %}{% endfor %}{% endfor %}",
        limits,
        &partials,
    );
    assert_eq!(kind, ErrorKind::Limit);
}

#[test]
fn output_size_is_limited_including_captures_and_assigns() {
    let partials = MemPartials::default();
    let limits = Limits {
        max_output_bytes: 10_000,
        ..Limits::default()
    };
    let (kind, _) = limited(
        "{% for i in (1..5000) %}0123456789{% endfor %}",
        limits,
        &partials,
    );
    assert_eq!(kind, ErrorKind::Limit);
    let (kind, _) = limited(
        "{% capture c %}{% for i in (1..5000) %}0123456789{% endfor %}{% endcapture %}",
        limits,
        &partials,
    );
    assert_eq!(kind, ErrorKind::Limit);
    let doubling =
        "{% assign s = 'xxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}";
    let (kind, took) = limited(doubling, Limits::default(), &partials);
    assert_eq!(kind, ErrorKind::Limit);
    assert!(took < Duration::from_secs(5));
}

#[test]
fn recursive_include_stops_at_the_depth_limit() {
    let partials = MemPartials::new(&[("self", "x{% include 'self' %}"), ("r", "{% render 'r' %}")]);
    let (kind, _) = limited("{% include 'self' %}", Limits::default(), &partials);
    assert_eq!(kind, ErrorKind::Limit);
    let (kind, _) = limited("{% render 'r' %}", Limits::default(), &partials);
    assert_eq!(kind, ErrorKind::Limit);
}

#[test]
fn a_slow_render_stops_at_the_time_limit() {
    let partials = MemPartials::default();
    let limits = Limits {
        max_loop_iterations: u64::MAX,
        max_output_bytes: usize::MAX,
        max_duration: Some(Duration::from_millis(50)),
        ..Limits::default()
    };
    let source = "{% for a in (1..100000000) %}{% assign x = a | plus: 1 %}{% endfor %}";
    let (kind, took) = limited(source, limits, &partials);
    assert_eq!(kind, ErrorKind::Limit);
    assert!(took < Duration::from_secs(5));
}

#[test]
fn deeply_nested_templates_are_refused_by_the_parser() {
    let deep = "{% if true %}".repeat(5000) + &"{% endif %}".repeat(5000);
    assert_eq!(
        Template::parse(&deep).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::Syntax)
    );
    let brackets = "{{ a".to_string() + &"[a".repeat(5000) + &"]".repeat(5000) + " }}";
    assert_eq!(
        Template::parse(&brackets).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::Syntax)
    );
    let ands = "{% if a".to_string() + &" and a".repeat(20000) + " %}x{% endif %}";
    assert!(Template::parse(&ands).is_ok());
    let ok_depth = "{% if true %}".repeat(90) + "x" + &"{% endif %}".repeat(90);
    assert_eq!(render(&ok_depth, "{}").expect("renders"), "x");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = Template::parse("line one\n  {{ a | }}").expect_err("bad filter");
    assert_eq!(err.kind, ErrorKind::Syntax);
    assert_eq!((err.line, err.column), (Some(2), Some(10)));
    let err = Template::parse("{% if x %}\nno end").expect_err("unclosed");
    assert_eq!(err.kind, ErrorKind::Syntax);
}

#[test]
fn block_renders_the_chosen_content_in_the_current_scope() {
    let mut partials = MemPartials::default();
    partials.blocks.insert(
        "hero".into(),
        "Hi {{ name }}, {{ greeting }}!{% assign seen = true %}".into(),
    );
    let env = env(&partials);
    let t = Template::parse(
        r#"{% assign greeting = "welcome" %}{% block "hero" %}|{% block 'missing' %}|{{ seen }}"#,
    )
    .expect("parses");
    let out = t.render(&globals(r#"{"name": "Ada"}"#), &env).expect("renders");
    assert_eq!(out, "Hi Ada, welcome!||true");
}

#[test]
fn block_needs_a_quoted_slot_name() {
    assert!(Template::parse("{% block hero %}").is_err());
    assert!(Template::parse("{% block %}").is_err());
}

#[test]
fn missing_partials_are_render_errors() {
    assert_eq!(
        render("{% include 'nope' %}", "{}").map_err(|e| e.kind),
        Err(ErrorKind::Render)
    );
}

#[test]
fn variables_lists_global_paths_and_skips_locals() {
    let t = Template::parse(
        "{{ customer.first_name | default: shop.name }}{% assign total = cart.total %}{{ total }}\
         {% for item in cart.items %}{{ item.title }}{{ forloop.index }}{% endfor %}\
         {% capture c %}{{ x }}{% endcapture %}{{ c }}{% if products[0].title and settings['theme name'] %}{% endif %}\
         {{ list[idx].name }}{{ cart.items.size }}",
    )
    .expect("parses");
    let vars: Vec<String> = t.variables().into_iter().collect();
    assert_eq!(
        vars,
        [
            "cart.items",
            "cart.total",
            "customer.first_name",
            "idx",
            "list",
            "products[0].title",
            "settings[\"theme name\"]",
            "shop.name",
            "x"
        ]
    );
}

#[test]
fn template_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<missive_liquid::Value>();
}

#[test]
fn benchmark_fixture_001_renders_its_expected_result() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/001");
    let read = |p: &str| std::fs::read_to_string(format!("{dir}/{p}")).expect("fixture file");
    let partials = MemPartials::new(&[
        ("header.liquid", &read("templates/header.liquid")),
        ("footer.liquid", &read("templates/footer.liquid")),
        (
            "featured_content.liquid",
            &read("templates/featured_content.liquid"),
        ),
    ]);
    let mut env = env(&partials);
    // The expected output was generated in 2025 and prints the current year.
    env.now = "2025-06-01T00:00:00Z".parse().expect("timestamp");
    let t = Template::parse(&read("templates/index.liquid")).expect("parses");
    let out = t.render(&globals(&read("data.json")), &env).expect("renders");
    let expected = read("expected_result.txt");
    assert_eq!(out.trim_end(), expected.trim_end());
}

#[test]
fn deep_blocks_inside_deep_recursive_includes_do_not_overflow_the_stack() {
    let body = "{% if true %}".repeat(95) + "{% include 'deep' %}" + &"{% endif %}".repeat(95);
    let partials = MemPartials::new(&[("deep", body.as_str())]);
    let (kind, _) = limited("{% include 'deep' %}", Limits::default(), &partials);
    assert_eq!(kind, ErrorKind::Limit);
}
