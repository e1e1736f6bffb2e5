//! Issue 12: where missive's Liquid differed from Shopify's when driven from outside (object
//! key order, dates, ranges, keywords, tablerow, cycle, partials, numbers, errors).

use std::sync::Arc;

use missive_liquid::{ErrorKind, Template, Value};

use crate::support::{MemPartials, env, render};

fn ok(source: &str, data: &str) -> String {
    render(source, data).unwrap_or_else(|e| panic!("{source}: {e:?}"))
}

fn with_partials(source: &str, partials: &[(&str, &str)]) -> Result<String, missive_liquid::Error> {
    let partials = MemPartials::new(partials);
    let env = env(&partials);
    Template::parse(source)?.render(&missive_liquid::Object::new(), &env)
}

#[test]
fn objects_from_serde_json_keep_the_order_written() {
    let json: serde_json::Value =
        serde_json::from_str(r#"{"product": {"title": "Hat", "description": "Warm", "a": 1}}"#).unwrap();
    let Value::Object(data) = Value::from(&json) else {
        panic!("an object")
    };
    let partials = MemPartials::default();
    let env = env(&partials);
    let out = Template::parse("{% for pair in product %}{{ pair[0] }} {% endfor %}")
        .unwrap()
        .render(&data, &env)
        .unwrap();
    assert_eq!(out, "title description a ");
}

#[test]
fn a_range_prints_as_written_when_output_directly() {
    assert_eq!(ok("{{ (1..5) }}", "{}"), "1..5");
    assert_eq!(ok("{{ (a..b) }}", r#"{"a": 2, "b": 4}"#), "2..4");
    assert_eq!(ok("{{ (1..3) | join: ',' }}", "{}"), "1,2,3");
}

#[test]
fn property_access_on_keywords_renders_empty() {
    assert_eq!(ok("[{{ nil.foo }}]", "{}"), "[]");
    assert_eq!(ok("[{{ blank.foo }}]", "{}"), "[]");
    assert_eq!(ok("[{{ nil['key'] }}]", "{}"), "[]");
    assert_eq!(ok("[{{ empty.size }}]", "{}"), "[]");
    assert_eq!(ok("{% if nil.foo %}x{% else %}y{% endif %}", "{}"), "y");
}

#[test]
fn tablerow_has_no_empty_row_after_break() {
    assert_eq!(
        ok(
            "{% tablerow n in (1..4) cols:2 %}{{ n }}{% if n == 2 %}{% break %}{% endif %}{% endtablerow %}",
            "{}"
        ),
        "<tr class=\"row1\">\n<td class=\"col1\">1</td><td class=\"col2\">2</td></tr>\n"
    );
}

#[test]
fn tablerow_col_last_is_only_the_last_column() {
    assert_eq!(
        ok(
            "{% tablerow n in (1..3) cols:2 %}{{ tablerowloop.col_last }}{% endtablerow %}",
            "{}"
        ),
        "<tr class=\"row1\">\n<td class=\"col1\">false</td><td class=\"col2\">true</td></tr>\n<tr class=\"row2\"><td class=\"col1\">false</td></tr>\n"
    );
}

#[test]
fn tablerow_over_nil_emits_nothing() {
    assert_eq!(
        ok("[{% tablerow n in missing %}{{ n }}{% endtablerow %}]", "{}"),
        "[]"
    );
    assert_eq!(
        ok(
            "[{% tablerow n in x %}{{ n }}{% endtablerow %}]",
            r#"{"x": null}"#
        ),
        "[]"
    );
}

#[test]
fn cycle_with_a_variable_is_a_group_of_its_own_tag() {
    assert_eq!(ok("{% cycle x,'b' %}{% cycle x,'b' %}", r#"{"x": "a"}"#), "aa");
    assert_eq!(
        ok(
            "{% for i in (1..3) %}{% cycle x, 'b' %}{% endfor %}",
            r#"{"x": "a"}"#
        ),
        "aba"
    );
    // Literal values share a group however they are quoted or spaced.
    assert_eq!(ok(r#"{% cycle 'a','b' %}{% cycle "a", "b" %}"#, "{}"), "ab");
}

#[test]
fn include_parameters_can_refer_to_earlier_ones() {
    let out = with_partials("{% include 't' a: 1, b: a %}", &[("t", "{{ a }}-{{ b }}")]).unwrap();
    assert_eq!(out, "1-1");
}

#[test]
fn include_inside_render_is_an_error() {
    let e = with_partials(
        "{% render 'outer' %}",
        &[("outer", "{% include 'inner' %}"), ("inner", "x")],
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Render);
    assert!(e.message.contains("'include' is not allowed inside"), "{e:?}");
    // As before, include inside include is fine.
    let out = with_partials(
        "{% include 'outer' %}",
        &[("outer", "{% include 'inner' %}"), ("inner", "x")],
    );
    assert_eq!(out.unwrap(), "x");
}

#[test]
fn an_invalid_partial_is_reported_as_invalid_not_missing() {
    let e = with_partials("{% render 'p' %}", &[("p", "{% if %}")]).unwrap_err();
    assert!(e.message.contains("partial 'p' is invalid: line 1"), "{e:?}");
}

#[test]
fn render_errors_carry_the_line_and_column_of_the_failing_tag() {
    let e = render("line one\n  {{ 1 | divided_by: 0 }}", "{}").unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (ErrorKind::Render, Some(2), Some(3)));

    let e = render(
        "{% for i in (1..2) %}\n{% if 1 > 'a' %}x{% endif %}{% endfor %}",
        "{}",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(1)), "{e:?}");

    let partials = MemPartials::new(&[("p", "ok\n {{ 1 | modulo: 0 }}")]);
    let env = env(&partials);
    let e = Template::parse("a\nb {% include 'p' %}")
        .unwrap()
        .render(&missive_liquid::Object::new(), &env)
        .unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(3)), "{e:?}");
    assert!(e.message.starts_with("in 'p', line 2, column 2: "), "{e:?}");
}

#[test]
fn strict_errors_carry_the_line_and_column() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.strict_variables = true;
    env.strict_filters = true;
    let data = missive_liquid::Object::new();
    let e = Template::parse("\n\n   {{ who }}")
        .unwrap()
        .render(&data, &env)
        .unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (ErrorKind::UndefinedVariable, Some(3), Some(4))
    );
    let e = Template::parse("x {{ 'a' | shout }}")
        .unwrap()
        .render(&data, &env)
        .unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (ErrorKind::UnknownFilter, Some(1), Some(3))
    );
}

#[test]
fn parse_errors_speak_the_templates_words_not_token_names() {
    for (source, expected) in [
        ("{{ a[ }}", "expected a value, found the end of the tag"),
        (
            "{% if a b %}{% endif %}",
            "expected the end of the tag, found 'b'",
        ),
        ("{% case x %}{% when 'a' and 'b' %}{% endcase %}", "found 'and'"),
        ("{{ a | }}", "expected a filter name, found the end of the tag"),
        ("{% assign = 1 %}", "expected a variable name, found '='"),
        (
            "{% for x in y z %}{% endfor %}",
            "expected 'limit:', 'offset:' or 'reversed', found 'z'",
        ),
    ] {
        let e = Template::parse(source).unwrap_err();
        assert!(e.message.contains(expected), "{source}: {}", e.message);
        for internal in ["lbr", "ident(", "Ident", "End"] {
            assert!(!e.message.contains(internal), "{source}: {}", e.message);
        }
    }
}

#[test]
fn partials_are_shared_between_renders_of_one_template() {
    // A sanity check that the per-tag cycle group is keyed by the parsed template, which is
    // shared: two renders of one template each start their cycles afresh.
    let t = Arc::new(Template::parse("{% cycle x, 'b' %}{% cycle x, 'b' %}").unwrap());
    let partials = MemPartials::default();
    let env = env(&partials);
    let mut data = missive_liquid::Object::new();
    data.insert("x", Value::from("a"));
    assert_eq!(t.render(&data, &env).unwrap(), "aa");
    assert_eq!(t.render(&data, &env).unwrap(), "aa");
}

#[test]
fn date_reads_colon_offsets_zone_names_and_asctime() {
    assert_eq!(
        ok(
            "{{ '2020-06-15T12:00:00-04:00' | date: '%Y-%m-%d %H:%M %z' }}",
            "{}"
        ),
        "2020-06-15 12:00 -0400"
    );
    assert_eq!(
        ok("{{ '2020-06-15 12:00:00 UTC' | date: '%d %H:%M %Z' }}", "{}"),
        "15 12:00 UTC"
    );
    assert_eq!(
        ok("{{ '2020-06-15 12:00:00 EST' | date: '%H:%M %z' }}", "{}"),
        "12:00 -0500"
    );
    assert_eq!(
        ok("{{ 'Mon Jun 15 12:00:00 2020' | date: '%Y-%m-%d %H' }}", "{}"),
        "2020-06-15 12"
    );
    assert_eq!(ok("{{ 'not a date' | date: '%Y' }}", "{}"), "not a date");
}

#[test]
fn date_reads_iso_forms_annotations_and_compact_dates() {
    for (input, fmt, expected) in [
        // `Z` is an instant (shown in the recipient's zone, UTC here); `+00:00` is kept.
        ("2020-06-15T14:30Z", "%H:%M %Z", "14:30 UTC"),
        (
            "2020-06-15T14:30:45.250+00:00",
            "%H:%M:%S.%L %z",
            "14:30:45.250 +0000",
        ),
        ("2020-06-15T14:30:45+05", "%H %z %Z", "14 +0500 +05"),
        (
            "2020-06-15T14:30:45-04:00[America/New_York]",
            "%H %:z",
            "14 -04:00",
        ),
        ("2020-06-15T14:30:45Z[Europe/Paris]", "%H", "14"),
        // All digits is Unix seconds, as in Ruby's Liquid.
        ("20200615", "%Y-%m-%d", "1970-08-22"),
        ("2020-06-15 14:30", "%H:%M", "14:30"),
        (
            "June 15, 2020",
            "%a %j %U %W %G-W%V-%u",
            "Mon 167 24 24 2020-W25-1",
        ),
    ] {
        let source = format!("{{{{ '{input}' | date: '{fmt}' }}}}");
        assert_eq!(ok(&source, "{}"), expected, "{input}");
    }
}

#[test]
fn dates_read_as_they_did_before_the_library_change() {
    for (source, expected) in [
        // Zone names ignore case.
        ("{{ 0 | date: '%H:%M %Z', 'europe/paris' }}", "01:00 CET"),
        // (a local time in a named zone, shown in the recipient's zone: UTC here)
        (
            "{{ '2020-06-15 12:00:00 america/new_york' | date: '%H:%M %z' }}",
            "16:00 +0000",
        ),
        // Milliseconds are not seconds: beyond the year 9999 the input is not a date.
        ("{{ 1718462400000 | date: '%Y' }}", "1718462400000"),
        ("{{ '1718462400000' | date: '%Y' }}", "1718462400000"),
        // An annotation after a local time is read past.
        (
            "{{ '2020-06-15T14:30:45[Europe/Paris]' | date: '%H:%M' }}",
            "14:30",
        ),
        // A zone with no letters in the database is named by its offset, zero included.
        (
            "{{ '2020-07-01T12:00:00Z' | date: '%H %Z', 'Atlantic/Azores' }}",
            "12 +00",
        ),
    ] {
        assert_eq!(ok(source, "{}"), expected, "{source}");
    }
}

#[test]
fn a_local_time_skipped_by_daylight_saving_moves_forward() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.time_zone = chrono_tz::Tz::Europe__Paris;
    // 2026-03-29 02:30 does not exist in Paris: read with the offset before the change.
    let t = Template::parse("{{ '2026-03-29 02:30' | date: '%H:%M %Z' }}").unwrap();
    assert_eq!(
        t.render(&missive_liquid::Object::new(), &env).unwrap(),
        "03:30 CEST"
    );
}

#[test]
fn date_keeps_the_inputs_own_offset() {
    assert_eq!(
        ok("{{ '2020-06-15 14:30:45 -0400' | date: '%H %z' }}", "{}"),
        "14 -0400"
    );
    assert_eq!(
        ok("{{ '2020-06-15T14:30:45+05:30' | date: '%H:%M %:z' }}", "{}"),
        "14:30 +05:30"
    );
}

#[test]
fn an_instant_in_utc_is_still_shown_in_the_recipients_zone() {
    let partials = MemPartials::default();
    let mut env = env(&partials);
    env.time_zone = chrono_tz::Tz::America__New_York;
    let t = Template::parse("{{ '2020-06-15T12:00:00Z' | date: '%H:%M %Z' }}").unwrap();
    assert_eq!(
        t.render(&missive_liquid::Object::new(), &env).unwrap(),
        "08:00 EDT"
    );
}

#[test]
fn strftime_matches_ruby() {
    let d = "'2020-06-05 14:03:09 +0000'";
    for (fmt, expected) in [
        ("%x", "06/05/20"),
        ("%X", "14:03:09"),
        ("%c", "Fri Jun  5 14:03:09 2020"),
        ("%r", "02:03:09 PM"),
        ("%D", "06/05/20"),
        ("%F %T", "2020-06-05 14:03:09"),
        ("%#B", "JUNE"),
        ("%^a %^B", "FRI JUNE"),
        ("%-d/%-m %e", "5/6  5"),
        ("%_m|%3d|%-I%P|%#p", " 6|005|2pm|pm"),
        ("%j %U %W %u %w %V %G", "157 22 22 5 5 23 2020"),
        ("%K %-q 100%%", "%K %-q 100%"),
        ("%s %L %3N", "1591365789 000 000"),
        ("%10A|%-10A|%v", "    Friday|Friday| 5-JUN-2020"),
        ("%z %:z %::z", "+0000 +00:00 +00:00:00"),
    ] {
        assert_eq!(
            ok(&format!("{{{{ {d} | date: '{fmt}' }}}}"), "{}"),
            expected,
            "{fmt}"
        );
    }
}

#[test]
fn json_floats_print_exactly_as_written() {
    assert_eq!(
        ok("{{ x }}", r#"{"x": 1234.3838300038383}"#),
        "1234.3838300038383"
    );
    assert_eq!(
        ok("{{ x }}", r#"{"x": 0.30000000000000004}"#),
        "0.30000000000000004"
    );
}

#[test]
fn integer_arguments_accept_integers_beyond_64_bits() {
    assert_eq!(
        ok("{{ 'hello world' | truncate: 99999999999999999999 }}", "{}"),
        "hello world"
    );
    assert_eq!(ok("{{ 'hello' | slice: 1, 99999999999999999999 }}", "{}"), "ello");
    assert_eq!(ok("{{ 'hello' | slice: -99999999999999999999 }}", "{}"), "");
    assert_eq!(
        ok("{{ 'hello' | slice: 1, '99999999999999999999' }}", "{}"),
        "ello"
    );
    // As in Shopify (and the golden suite): nil, floats and words are refused.
    for bad in ["nil", "2.5", "'many'"] {
        assert!(
            render(&format!("{{{{ 'hello' | truncate: {bad} }}}}"), "{}").is_err(),
            "{bad}"
        );
    }
}

#[test]
fn string_filters_see_an_array_as_ruby_prints_it() {
    let data = r#"{"list": ["a", "b"], "mixed": ["x", 1, null, ["y"]]}"#;
    assert_eq!(ok("{{ list | upcase }}", data), r#"["A", "B"]"#);
    assert_eq!(ok("{{ list | append: '!' }}", data), r#"["a", "b"]!"#);
    assert_eq!(ok("{{ mixed | downcase }}", data), r#"["x", 1, nil, ["y"]]"#);
    // Output itself still prints the items one after the other, and array filters see items.
    assert_eq!(ok("{{ list }}", data), "ab");
    assert_eq!(ok("{{ list | join: '-' | upcase }}", data), "A-B");
}

#[test]
fn hostile_nesting_is_refused_without_exhausting_the_stack() {
    let ifs = format!(
        "{}x{}",
        "{% if true %}".repeat(10_000),
        "{% endif %}".repeat(10_000)
    );
    let e = Template::parse(&ifs).unwrap_err();
    assert!(e.to_string().contains("nested too deeply"), "{e}");
    let brackets = format!("{{{{ {}x{} }}}}", "a[".repeat(10_000), "]".repeat(10_000));
    let e = Template::parse(&brackets).unwrap_err();
    assert!(e.to_string().contains("nested too deeply"), "{e}");
}
