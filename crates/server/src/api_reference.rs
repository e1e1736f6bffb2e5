//! `/api`: the API reference for people, rendered by missive from the OpenAPI document it
//! serves at `/openapi.json`, so the two cannot disagree. One static page: operations grouped
//! by tag, each with its parameters, body and responses, then the schemas. Everything taken
//! from the document is escaped; the page has no script and loads nothing (its style is
//! inline, which its Content-Security-Policy allows and nothing else).

use std::fmt::Write as _;

use serde_json::{Map, Value};
use utoipa::openapi::OpenApi;

use crate::html::escape;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232b;background:#fff}\
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem 4rem}\
h1{margin-bottom:.2rem}h2{margin-top:3rem;border-bottom:2px solid #d8dde3}\
h3{margin:2rem 0 .3rem;font-size:1.05rem}\
code{font:13px ui-monospace,monospace;background:#f1f3f5;padding:0 .25rem;border-radius:3px}\
.op{border-left:3px solid #d8dde3;padding-left:1rem}\
.m{display:inline-block;min-width:4.2rem;font:700 12px ui-monospace,monospace;text-transform:uppercase}\
.get{color:#1a6b35}.post{color:#1f4fa3}.put{color:#8a5a00}.delete{color:#a32020}.patch{color:#6b3fa0}\
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:14px}\
th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #e6e9ed}\
th{font-weight:600;background:#f7f8fa}.muted{color:#5c6670}ul.toc{columns:2;padding-left:1.2rem}";

/// The page.
pub fn render(api: &OpenApi) -> String {
    let doc = serde_json::to_value(api).unwrap_or(Value::Null);
    let mut out = String::with_capacity(256 * 1024);
    let info = &doc["info"];
    let title = str_of(&info["title"]);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} API reference</title><style>{STYLE}</style></head><body><main>\
         <h1>{} API reference</h1><p class=\"muted\">Version {} · OpenAPI {} · \
         <a href=\"/openapi.json\">openapi.json</a></p><p>{}</p>",
        escape(title),
        escape(title),
        escape(str_of(&info["version"])),
        escape(str_of(&doc["openapi"])),
        text(str_of(&info["description"])),
    );
    let operations = operations(&doc);
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        str_of(&t["name"]).to_owned(),
                        str_of(&t["description"]).to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str("<h2 id=\"contents\">Contents</h2><ul class=\"toc\">");
    for (tag, _) in &tags {
        let _ = write!(out, "<li><a href=\"#tag-{0}\">{0}</a></li>", escape(tag));
    }
    out.push_str("<li><a href=\"#schemas\">schemas</a></li></ul>");
    for (tag, description) in &tags {
        let _ = write!(
            out,
            "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>",
            escape(tag),
            text(description)
        );
        for op in operations.iter().filter(|o| o.tag == *tag) {
            render_operation(&mut out, op, &doc);
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            render_schema(&mut out, name, schema);
        }
    }
    out.push_str("</main></body></html>");
    out
}

struct Operation<'a> {
    method: &'static str,
    path: &'a str,
    tag: String,
    op: &'a Value,
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                    ops.push(Operation {
                        method,
                        path,
                        tag,
                        op,
                    });
                }
            }
        }
    }
    ops
}

fn render_operation(out: &mut String, o: &Operation<'_>, doc: &Value) {
    let op = o.op;
    let id = str_of(&op["operationId"]);
    let _ = write!(
        out,
        "<section class=\"op\" id=\"op-{id}\"><h3><span class=\"m {m}\">{m}</span> <code>{path}</code></h3>\
         <p><strong>{summary}</strong> <span class=\"muted\">({id})</span></p><p>{description}</p>",
        id = escape(id),
        m = o.method,
        path = escape(o.path),
        summary = text(str_of(&op["summary"])),
        description = text(str_of(&op["description"])),
    );
    let security = op.get("security").unwrap_or(&doc["security"]);
    let _ = write!(out, "<p><em>Authentication:</em> {}</p>", security_text(security));
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Description</th></tr>");
        for p in params {
            let required = if p["required"].as_bool() == Some(true) {
                " (required)"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{required}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(str_of(&p["name"])),
                escape(str_of(&p["in"])),
                type_of(&p["schema"]),
                text(str_of(&p["description"])),
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let required = if body["required"].as_bool() == Some(true) {
            "required"
        } else {
            "optional"
        };
        let _ = write!(
            out,
            "<p><em>Request body</em> ({required}): {} {}</p>",
            content_text(&body["content"]),
            text(str_of(&body["description"]))
        );
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("<table><tr><th>Status</th><th>Body</th><th>Meaning</th></tr>");
        for (status, r) in responses {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(status),
                content_text(&r["content"]),
                text(str_of(&r["description"])),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        out,
        "<section id=\"schema-{0}\"><h3><code>{0}</code></h3><p>{1}</p>",
        escape(name),
        text(str_of(&schema["description"]))
    );
    let _ = write!(out, "<p><em>Type:</em> {}</p>", type_of(schema));
    let mut properties = Vec::new();
    collect_properties(schema, &mut properties);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        collect_properties(part, &mut properties);
    }
    if !properties.is_empty() {
        out.push_str("<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>");
        for (field, s, required) in properties {
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                escape(field),
                if required { " (required)" } else { "" },
                type_of(s),
                text(str_of(&s["description"])),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// A schema's properties: name, schema, required.
fn collect_properties<'a>(s: &'a Value, out: &mut Vec<(&'a String, &'a Value, bool)>) {
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = s["properties"].as_object() {
        out.extend(props.iter().map(|(k, v)| (k, v, required.contains(&k.as_str()))));
    }
}

/// A schema's type in a few words, with links to named schemas.
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    for (key, word) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")] {
        if let Some(parts) = s[key].as_array() {
            let parts: Vec<String> = parts.iter().map(type_of).collect();
            return parts.join(word);
        }
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!("array of {}", type_of(&s["items"])),
            "object" => match &s["additionalProperties"] {
                Value::Object(v) if !v.is_empty() => {
                    format!("map of {}", type_of(&s["additionalProperties"]))
                }
                Value::Bool(true) | Value::Object(_) => "object (free-form)".to_owned(),
                _ => "object".to_owned(),
            },
            other => escape(other),
        })
        .collect();
    if words.is_empty() {
        words.push(if s.as_object().is_some_and(Map::is_empty) {
            "any".to_owned()
        } else {
            "object".to_owned()
        });
    }
    let mut out = words.join(" or ");
    if let Some(format) = s["format"].as_str() {
        let _ = write!(out, " ({})", escape(format));
    }
    if let Some(values) = s["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect();
        let _ = write!(out, ": one of {}", values.join(", "));
    }
    out
}

fn content_text(content: &Value) -> String {
    match content.as_object() {
        Some(c) if !c.is_empty() => c
            .iter()
            .map(|(media, m)| {
                format!(
                    "{} <span class=\"muted\">{}</span>",
                    type_of(&m["schema"]),
                    escape(media)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "—".to_owned(),
    }
}

fn security_text(security: &Value) -> String {
    let Some(options) = security.as_array() else {
        return "none".to_owned();
    };
    let words: Vec<String> = options
        .iter()
        .map(|o| match o.as_object().and_then(|o| o.keys().next()) {
            Some(name) => format!("<code>{}</code>", escape(name)),
            None => "none (a source's signature, or a key in the body)".to_owned(),
        })
        .collect();
    if words.is_empty() {
        "none".to_owned()
    } else {
        words.join(" or ")
    }
}

/// Escaped prose, with `code` spans kept as code.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_escaped_and_code_spans_stay_code() {
        assert_eq!(
            text("a <b> & `x<y>` \"q\""),
            "a &lt;b&gt; &amp; <code>x&lt;y&gt;</code> &quot;q&quot;"
        );
    }

    #[test]
    fn types_name_their_schemas_and_values() {
        let t = type_of(&serde_json::json!({"type": ["string", "null"], "enum": ["a", "<b>"]}));
        assert_eq!(
            t,
            "string or null: one of <code>&quot;a&quot;</code>, <code>&quot;&lt;b&gt;&quot;</code>"
        );
        let t = type_of(&serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/X"}}));
        assert_eq!(t, "array of <a href=\"#schema-X\">X</a>");
    }
}
