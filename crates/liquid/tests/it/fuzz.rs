//! Property tests: parsing never panics, whatever the input.

use std::sync::OnceLock;

use missive_liquid::{Template, Value};
use proptest::prelude::*;

fn golden_templates() -> &'static [String] {
    static TEMPLATES: OnceLock<Vec<String>> = OnceLock::new();
    TEMPLATES.get_or_init(load_golden_templates)
}

fn load_golden_templates() -> Vec<String> {
    let json = include_str!("../golden/golden_liquid.json");
    let Ok(Value::Object(root)) = Value::from_json_str(json) else {
        return Vec::new();
    };
    let Some(Value::Array(tests)) = root.get("tests") else {
        return Vec::new();
    };
    tests
        .iter()
        .filter_map(|t| match t {
            Value::Object(o) => match o.get("template") {
                Some(Value::Str(s)) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(s in "\\PC{0,200}") {
        let _ = Template::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_liquid_like_soup(s in "([{}%|:,.()\\[\\]'\"=<>!-]|if|for|endif|endfor|in|and|or|raw|endraw|comment|liquid|\\n| |x|1|-){0,80}") {
        let _ = Template::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_mutated_golden_templates(
        idx in 0usize..1054,
        cut in 0usize..200,
        insert in "[{}%|:\\-'\"\\[\\]().]{0,3}",
    ) {
        let templates = golden_templates();
        let source = &templates[idx % templates.len().max(1)];
        let mut at = cut.min(source.len());
        while !source.is_char_boundary(at) {
            at -= 1;
        }
        let mutated = format!("{}{}{}", &source[..at], insert, &source[at..]);
        let _ = Template::parse(&mutated);
        let _ = Template::parse(&source[..at]);
    }
}
