//! Liquid values: what templates read, compare and print.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// A Liquid value. Cloning is cheap (strings, arrays and objects are shared).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Array(Arc<Vec<Value>>),
    Object(Arc<Object>),
}

/// Objects this small are searched linearly; bigger ones also keep a hash index, so that a
/// large globals object stays fast to look up.
const INDEX_THRESHOLD: usize = 12;

/// An object: keys keep their insertion order; inserting an existing key replaces it.
#[derive(Clone, Debug, Default)]
pub struct Object {
    entries: Vec<(Arc<str>, Value)>,
    index: Option<HashMap<Arc<str>, usize>>,
}

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Object {
    pub fn new() -> Self {
        Object::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Object {
            entries: Vec::with_capacity(n),
            index: None,
        }
    }
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key: String = key.into();
        self.insert_arc(Arc::from(key), value);
    }
    pub(crate) fn insert_arc(&mut self, key: Arc<str>, value: Value) {
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = value;
            return;
        }
        let i = self.entries.len();
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), i);
        } else if i >= INDEX_THRESHOLD {
            let mut index: HashMap<Arc<str>, usize> = HashMap::with_capacity(i * 2);
            for (n, (k, _)) in self.entries.iter().enumerate() {
                index.insert(k.clone(), n);
            }
            index.insert(key.clone(), i);
            self.index = Some(index);
        }
        self.entries.push((key, value));
    }
    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| &**k == key),
        }
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }
    pub(crate) fn pairs(&self) -> impl Iterator<Item = Value> + '_ {
        self.entries
            .iter()
            .map(|(k, v)| Value::Array(Arc::new(vec![Value::Str(k.clone()), v.clone()])))
    }
}

impl From<&serde_json::Value> for Value {
    fn from(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::Str(s.as_str().into()),
            serde_json::Value::Array(a) => Value::Array(Arc::new(a.iter().map(Value::from).collect())),
            serde_json::Value::Object(m) => {
                let mut o = Object::with_capacity(m.len());
                for (k, v) in m {
                    o.insert(k.as_str(), Value::from(v));
                }
                Value::Object(Arc::new(o))
            }
        }
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Float(n)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(Arc::new(v))
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(Arc::new(o))
    }
}

impl Value {
    /// Parses JSON text into a value, keeping object keys in the order they are written
    /// (`serde_json::Value` sorts them unless its `preserve_order` feature is on).
    pub fn from_json_str(json: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub(crate) fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    pub(crate) fn string(s: String) -> Value {
        Value::Str(Arc::from(s))
    }

    pub(crate) fn is_truthy(&self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    pub(crate) fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Liquid's `empty`: an empty string, array or object.
    pub(crate) fn is_empty_value(&self) -> bool {
        match self {
            Value::Str(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }

    /// Liquid's `blank`: nil, false, whitespace-only strings and empty collections.
    pub(crate) fn is_blank(&self) -> bool {
        match self {
            Value::Nil | Value::Bool(false) => true,
            Value::Str(s) => s.trim().is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }

    /// The text Liquid prints for this value.
    pub(crate) fn render_to(&self, out: &mut String) {
        match self {
            Value::Nil => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => format_float(*f, out),
            Value::Str(s) => out.push_str(s),
            Value::Array(a) => {
                for v in a.iter() {
                    v.render_to(out);
                }
            }
            Value::Object(o) => inspect_object(o, out),
        }
    }

    /// The string a filter works on: Ruby's `to_s`, which for an array is its `inspect`
    /// (`["a", "b"]`), unlike output, which prints an array's items one after the other.
    pub(crate) fn to_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Str(s) => std::borrow::Cow::Borrowed(s),
            Value::Nil => std::borrow::Cow::Borrowed(""),
            Value::Array(_) => {
                let mut s = String::new();
                inspect(self, &mut s);
                std::borrow::Cow::Owned(s)
            }
            other => {
                let mut s = String::new();
                other.render_to(&mut s);
                std::borrow::Cow::Owned(s)
            }
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// Formats a float as Ruby's `Float#to_s` does: always a decimal point, exponent notation
/// outside `1e-4..1e16`.
pub(crate) fn format_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust prints `1e20`/`1.5e-5`; Ruby prints `1.0e+20`/`1.5e-05`.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(mantissa);
        if !mantissa.contains('.') {
            out.push_str(".0");
        }
        out.push('e');
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let _ = write!(out, "{f}");
    if f.fract() == 0.0 {
        out.push_str(".0");
    }
}

/// Ruby's `Hash#inspect`, which is what Liquid prints for an object.
fn inspect_object(o: &Object, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in o.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        inspect_str(k, out);
        out.push_str(" => ");
        inspect(v, out);
    }
    out.push('}');
}

fn inspect_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn inspect(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Str(s) => inspect_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inspect(x, out);
            }
            out.push(']');
        }
        other => other.render_to(out),
    }
}

/// Liquid's `==`: numbers compare by value across int and float; everything else by type and
/// content.
pub(crate) fn liquid_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| liquid_eq(p, q))
        }
        _ => a == b,
    }
}

/// Ordering for `<`, `>`, `sort`: numbers with numbers, strings with strings.
pub(crate) fn liquid_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A number read leniently, as Liquid's arithmetic filters do: unparsable text is zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(crate) fn to_value(self) -> Value {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Float(f) => Value::Float(f),
        }
    }
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

pub(crate) fn to_num(v: &Value) -> Num {
    match v {
        Value::Int(i) => Num::Int(*i),
        Value::Float(f) => Num::Float(*f),
        Value::Str(s) => parse_num(s.trim()).unwrap_or(Num::Int(0)),
        _ => Num::Int(0),
    }
}

/// Parses `-12`, `3.5`, `1e3`; `None` for anything else. Like Ruby's `to_number`, a leading
/// numeric prefix is taken (`"12abc"` is 12).
pub(crate) fn parse_num(s: &str) -> Option<Num> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start {
        return None;
    }
    let int_end = i;
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        return s[..i].parse::<f64>().ok().map(Num::Float);
    }
    match s[..int_end].parse::<i64>() {
        Ok(n) => Some(Num::Int(n)),
        Err(_) => s[..int_end].parse::<f64>().ok().map(Num::Float),
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::string(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(Arc::new(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut o = Object::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            o.insert(k, v);
        }
        Ok(Value::Object(Arc::new(o)))
    }
}
