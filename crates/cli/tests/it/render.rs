//! `missive render`: Liquid from files to standard output, so that outside conformance
//! suites can drive missive's Liquid.

use std::process::Command;

fn render(template: &str, data: Option<&str>, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.liquid");
    std::fs::write(&t, template).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_missive"));
    cmd.current_dir(dir.path())
        .arg("render")
        .arg("--template")
        .arg(&t);
    if let Some(d) = data {
        let p = dir.path().join("data.json");
        std::fs::write(&p, d).unwrap();
        cmd.arg("--data").arg(&p);
    }
    let partials = dir.path().join("partials");
    std::fs::create_dir(&partials).unwrap();
    std::fs::write(partials.join("greet.liquid"), "Hello {{ who }}!").unwrap();
    cmd.arg("--partials").arg(&partials).args(extra);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn render_prints_the_output_exactly() {
    let (ok, out, err) = render(
        "{% for p in products %}{{ p.name | upcase }}{% unless forloop.last %}, {% endunless %}{% endfor %}\n{{ missing | default: 'none' }}",
        Some(r#"{"products": [{"name": "jacket"}, {"name": "boots"}]}"#),
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "JACKET, BOOTS\nnone");
}

#[test]
fn render_reads_partials_from_the_directory_only() {
    let (ok, out, err) = render("{% render 'greet', who: name %}", Some(r#"{"name": "Ada"}"#), &[]);
    assert!(ok, "{err}");
    assert_eq!(out, "Hello Ada!");
    // A file right beside the partials directory is out of reach, with a clear reason.
    let (ok, _, err) = render("{% render '../t' %}", None, &[]);
    assert!(!ok);
    assert!(err.contains("partial '../t' refused"), "{err}");
    assert!(err.contains("t.liquid:1:1:"), "{err}");
    let (ok, _, err) = render("{% include '/etc/passwd' %}", None, &[]);
    assert!(!ok);
    assert!(err.contains("refused"), "{err}");
}

/// Like `render`, with extra partial files (`name` relative to the partials folder).
fn render_with(
    template: &str,
    data: &str,
    partials: &[(&str, &str)],
    extra: &[&str],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.liquid");
    std::fs::write(&t, template).unwrap();
    let d = dir.path().join("data.json");
    std::fs::write(&d, data).unwrap();
    let p = dir.path().join("partials");
    for (name, source) in partials {
        let path = p.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, source).unwrap();
    }
    std::fs::create_dir_all(&p).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .arg("render")
        .arg("--template")
        .arg(&t)
        .arg("--data")
        .arg(&d)
        .arg("--partials")
        .arg(&p)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn render_iterates_objects_in_the_order_written() {
    let (ok, out, err) = render_with(
        "{% for pair in product %}{{ pair[0] }} {% endfor %}|{{ product | json }}",
        r#"{"product": {"title": "Hat", "description": "Warm", "price": 1234.3838300038383}}"#,
        &[],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        r#"title description price |{"title":"Hat","description":"Warm","price":1234.3838300038383}"#
    );
}

#[test]
fn render_resolves_partial_names_with_folders_under_the_partials_folder() {
    let (ok, out, err) = render_with(
        "{% include 'sections/hero' %}{% render 'sections/deep/x', n: 1 %}",
        "{}",
        &[
            ("sections/hero.liquid", "hero "),
            ("sections/deep/x.liquid", "x{{ n }}"),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "hero x1");
}

#[test]
fn render_refuses_a_partials_folder_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.liquid");
    std::fs::write(&t, "x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .arg("render")
        .arg("--template")
        .arg(&t)
        .arg("--partials")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--partials") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn render_reports_an_invalid_partial_with_its_location() {
    let (ok, _, err) = render_with("{% render 'p' %}", "{}", &[("p.liquid", "\n{% if %}")], &[]);
    assert!(!ok);
    assert!(
        err.contains("partial 'p' is invalid: line 2, column 7: expected a value"),
        "{err}"
    );
}

#[test]
fn strict_filters_is_a_mode_of_its_own() {
    // Unknown filters are skipped unless --strict-filters; --strict is about variables.
    let (ok, out, err) = render_with("{{ 'a' | shout }}", "{}", &[], &["--strict"]);
    assert!(ok, "{err}");
    assert_eq!(out, "a");
    let (ok, _, err) = render_with("\n{{ 'a' | shout }}", "{}", &[], &["--strict-filters"]);
    assert!(!ok);
    assert!(err.contains("t.liquid:2:1: unknown filter 'shout'"), "{err}");
    let (ok, _, err) = render_with("{{ who }}", "{}", &[], &["--strict-filters"]);
    assert!(ok, "{err}");
}

#[test]
fn now_fixes_what_now_means_for_date() {
    let (ok, out, err) = render_with(
        "{{ 'now' | date: '%Y-%m-%d %H:%M' }}",
        "{}",
        &[],
        &["--now", "2024-05-17T09:30:00Z", "--time-zone", "Europe/Paris"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2024-05-17 11:30");
}

#[test]
fn render_errors_go_to_stderr_with_a_location_and_a_failing_exit() {
    let (ok, out, err) = render("line one\n{% if x %}never closed", None, &[]);
    assert!(!ok);
    assert_eq!(out, "");
    assert!(err.contains("t.liquid:2:"), "{err}");

    let (ok, _, err) = render("{{ who }}", Some("{}"), &["--strict"]);
    assert!(!ok);
    assert!(err.contains("who"), "{err}");

    let (ok, out, _) = render("{{ who }}", Some(r#"{"who": "<b>"}"#), &["--escape"]);
    assert!(ok);
    assert_eq!(out, "&lt;b&gt;");
}

fn missive(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir)
        .args(args)
        .args(["--data-dir", "data"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn templates_blocks_and_catalogue_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cart-abandonment");
    let ex = |f: &str| example.join(f).to_str().unwrap().to_string();
    std::fs::write(
        dir.path().join("people.jsonl"),
        r#"{"type":"identify","userId":"ann","traits":{"first_name":"Ann","email":"ann@example.com"}}"#,
    )
    .unwrap();
    let (ok, _, err) = missive(dir.path(), &["import", "people.jsonl"]);
    assert!(ok, "{err}");
    let (ok, out, err) = missive(dir.path(), &["catalog", "import", &ex("products.json")]);
    assert!(ok, "{err}");
    assert!(out.contains("16 of 16 products saved"), "{out}");
    // Nobody has a tier yet: the segment is refused until the trait is declared.
    let (ok, _, err) = missive(dir.path(), &["segment", "save", "vip", "traits.tier == \"gold\""]);
    assert!(!ok);
    assert!(err.contains("unknown trait `tier`"), "{err}");
    let (ok, out, err) = missive(
        dir.path(),
        &["schema", "declare", "trait", "tier", "--type", "string"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "declared: trait \"tier\" (string)");
    let (ok, _, err) = missive(dir.path(), &["segment", "save", "vip", "traits.tier == \"gold\""]);
    assert!(ok, "{err}");
    for name in ["hero-generic", "hero-vip"] {
        let (ok, _, err) = missive(
            dir.path(),
            &["block", "save", name, &ex(&format!("blocks/{name}.json"))],
        );
        assert!(ok, "{err}");
    }
    let (ok, out, err) = missive(dir.path(), &["block", "matrix", "hero"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("(in no targeted segment)") && out.contains("hero-generic"),
        "{out}"
    );

    let (ok, out, err) = missive(
        dir.path(),
        &[
            "template",
            "save",
            "cart",
            &ex("template.mjml"),
            "--subject",
            "{{ customer.first_name }}, your cart",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("version 1") && out.contains("block slots: hero, offer"),
        "{out}"
    );
    let (ok, out, err) = missive(
        dir.path(),
        &[
            "template",
            "preview",
            "cart",
            "--profile",
            "ann",
            "--event",
            &ex("event.json"),
            "--out",
            "preview",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("subject:  Ann, your cart"), "{out}");
    assert!(out.contains("block hero: hero-generic"), "{out}");
    assert!(out.contains("customer.first_name = \"Ann\""), "{out}");
    let html = std::fs::read_to_string(dir.path().join("preview/preview.html")).unwrap();
    assert!(html.contains("Summit Jacket 1"));

    let (ok, _, err) = missive(
        dir.path(),
        &["template", "save", "bad", &ex("event.json"), "--subject", "x"],
    );
    assert!(!ok);
    assert!(err.contains(".mjml or .html"), "{err}");
}

#[test]
fn render_refuses_the_store_flags_it_would_ignore() {
    for flag in [["--store", "postgres://x@y/z"], ["--data-dir", "elsewhere"]] {
        let (ok, _, err) = render("{{ 1 }}", None, &flag);
        assert!(!ok && err.contains("reads no store"), "{err}");
    }
    let (ok, out, _) = render("{{ 1 }}", None, &[]);
    assert!(ok && out == "1", "{out}");
}
