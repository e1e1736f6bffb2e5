//! A hand-written lexer and recursive-descent parser: the grammar is small, and errors must say
//! where (line, column) and what to write instead.
//!
//! ```text
//! expr       = and_expr { "or" and_expr }
//! and_expr   = unary { "and" unary }
//! unary      = "not" unary | "(" expr ")" | "segment" STRING | condition
//! condition  = operand ( CMP operand | "in" list | "contains" operand | "starts_with" operand
//!                      | "exists" | ("before" | "after") time )
//! operand    = path | literal | aggregate
//! aggregate  = ("count" | "sum") "(" "event" STRING [ "." NAME ] [ "where" expr ] [ "within" DURATION ] ")"
//! time       = DURATION "ago" | STRING | "now"
//! ```

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::ast::{Aggregate, AggregateKind, CompareOp, Expr, Literal, Operand, Path, Span, TimeRef};

#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    pub message: String,
    pub line: u32,
    pub column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Duration(TimeDelta),
    Op(CompareOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Span,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Duration(_) => "a duration".into(),
        Tok::Op(op) => format!("`{}`", op.symbol()),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Eof => "the end of the segment".into(),
    }
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1u32, 0usize);
    let err = |msg: String, at: usize, line: u32, line_start: usize, hint: Option<&str>| ParseError {
        message: msg,
        line,
        column: (src[line_start..at].chars().count() + 1) as u32,
        hint: hint.map(str::to_owned),
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            i += 1;
            line += 1;
            line_start = i;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let span = |end: usize| Span {
            line,
            column: (src[line_start..start].chars().count() + 1) as u32,
            start,
            end,
        };
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'[' => {
                i += 1;
                Tok::LBracket
            }
            b']' => {
                i += 1;
                Tok::RBracket
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', true) => CompareOp::Eq,
                    (b'!', true) => CompareOp::Ne,
                    (b'<', true) => CompareOp::Le,
                    (b'>', true) => CompareOp::Ge,
                    (b'<', false) => CompareOp::Lt,
                    (b'>', false) => CompareOp::Gt,
                    (b'=', false) => {
                        return Err(err(
                            "`=` is not an operator".into(),
                            i,
                            line,
                            line_start,
                            Some("compare with `==`"),
                        ));
                    }
                    _ => {
                        return Err(err(
                            "`!` alone is not an operator".into(),
                            i,
                            line,
                            line_start,
                            Some("use `!=` or `not`"),
                        ));
                    }
                };
                i += if two { 2 } else { 1 };
                Tok::Op(op)
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => {
                            return Err(err(
                                "unterminated string".into(),
                                start,
                                line,
                                line_start,
                                Some("close it with `\"`"),
                            ));
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match bytes.get(i + 1) {
                                Some(b'"') => s.push('"'),
                                Some(b'\\') => s.push('\\'),
                                Some(b'n') => s.push('\n'),
                                _ => {
                                    return Err(err(
                                        "unknown escape in string".into(),
                                        i,
                                        line,
                                        line_start,
                                        Some("use \\\" \\\\ or \\n"),
                                    ));
                                }
                            }
                            i += 2;
                        }
                        Some(_) => {
                            let ch = src[i..].chars().next().unwrap_or_default();
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                Tok::Str(s)
            }
            b'0'..=b'9' | b'-' => {
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                    j += 1;
                }
                let text = &src[i..j];
                let unit = bytes.get(j).copied();
                let unit_ends = bytes
                    .get(j + 1)
                    .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
                if let (Some(u @ (b's' | b'm' | b'h' | b'd' | b'w')), true) = (unit, unit_ends) {
                    let n: i64 = text.parse().map_err(|_| {
                        err(
                            format!("{text:?} is not a whole number of units"),
                            i,
                            line,
                            line_start,
                            Some("durations look like 30m, 24h, 7d, 2w"),
                        )
                    })?;
                    // A century is the longest window anyone needs; more would overflow the calendar.
                    let seconds = n.saturating_mul(match u {
                        b's' => 1,
                        b'm' => 60,
                        b'h' => 3_600,
                        b'd' => 86_400,
                        _ => 604_800,
                    });
                    if !(0..=100 * 366 * 86_400).contains(&seconds) {
                        return Err(err(
                            format!("{text}{} is out of range", u as char),
                            i,
                            line,
                            line_start,
                            Some("durations go up to 100 years (36600d)"),
                        ));
                    }
                    i = j + 1;
                    Tok::Duration(match u {
                        b's' => TimeDelta::seconds(n),
                        b'm' => TimeDelta::minutes(n),
                        b'h' => TimeDelta::hours(n),
                        b'd' => TimeDelta::days(n),
                        _ => TimeDelta::weeks(n),
                    })
                } else {
                    let n: f64 = text
                        .parse()
                        .map_err(|_| err(format!("{text:?} is not a number"), i, line, line_start, None))?;
                    i = j;
                    Tok::Num(n)
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'$')
                {
                    j += 1;
                }
                let word = &src[i..j];
                i = j;
                match word {
                    "in" => Tok::Op(CompareOp::In),
                    "contains" => Tok::Op(CompareOp::Contains),
                    "starts_with" => Tok::Op(CompareOp::StartsWith),
                    _ => Tok::Ident(word.to_owned()),
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or_default();
                let hint = match ch {
                    '&' => Some("write `and`"),
                    '|' => Some("write `or`"),
                    '\'' => Some("strings use double quotes"),
                    _ => None,
                };
                return Err(err(
                    format!("unexpected character {ch:?}"),
                    i,
                    line,
                    line_start,
                    hint,
                ));
            }
        };
        out.push(Token { tok, span: span(i) });
    }
    let end = Span {
        line,
        column: (src[line_start..].chars().count() + 1) as u32,
        start: src.len(),
        end: src.len(),
    };
    out.push(Token {
        tok: Tok::Eof,
        span: end,
    });
    Ok(out)
}

/// How deeply parentheses, `not` and aggregate filters may nest. The parser, the type checker
/// and the evaluator all recurse over the tree: without a bound, a hostile expression of a few
/// kilobytes (a thousand `(`) overflows the stack and aborts the process. Real segments nest a
/// handful of levels.
pub const MAX_NESTING: usize = 64;

/// Parses a segment expression.
///
/// Chains of `and` and `or` are built as balanced trees (the same conditions in the same order),
/// so that a list of thousands of alternatives stays shallow; nesting beyond [`MAX_NESTING`] is
/// refused with an error naming the limit.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = p.expr()?;
    match &p.peek().tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(p.error("unbalanced `)`", Some("remove it or add the matching `(`"))),
        other => {
            let hint = if matches!(other, Tok::Ident(_) | Tok::Str(_) | Tok::Num(_)) {
                Some("join conditions with `and` or `or`")
            } else {
                None
            };
            Err(p.error(&format!("unexpected {}", describe(other)), hint))
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Current nesting of `(`, `not` and `where` filters.
    depth: usize,
}

/// Joins `items` (in order) into a balanced tree of `join`: depth log2(n) instead of n.
fn balanced(mut items: Vec<Expr>, join: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        return items.remove(0);
    }
    let right = items.split_off(items.len() / 2);
    join(Box::new(balanced(items, join)), Box::new(balanced(right, join)))
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: &str, hint: Option<&str>) -> ParseError {
        let span = self.peek().span;
        ParseError {
            message: message.to_owned(),
            line: span.line,
            column: span.column,
            hint: hint.map(str::to_owned),
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, ParseError> {
        if self.peek().tok == tok {
            Ok(self.next())
        } else {
            Err(self.error(
                &format!("expected {what}, found {}", describe(&self.peek().tok)),
                None,
            ))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.eat_word("or") {
            terms.push(self.and_expr()?);
        }
        Ok(balanced(terms, Expr::Or))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.eat_word("and") {
            terms.push(self.unary()?);
        }
        Ok(balanced(terms, Expr::And))
    }

    /// Enters one level of nesting, refusing to go past [`MAX_NESTING`].
    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(
                &format!("the expression nests more than {MAX_NESTING} levels deep"),
                Some("flatten it: `a or b or c` needs no parentheses, and `not not x` is `x`"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        // `not not not …` would recurse once per word: count the run, then wrap.
        let mut nots = 0usize;
        while self.is_word("not") {
            self.descend()?;
            self.next();
            nots += 1;
        }
        let mut e = self.atom()?;
        self.depth -= nots;
        for _ in 0..nots {
            e = Expr::Not(Box::new(e));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        if self.peek().tok == Tok::LParen {
            self.descend()?;
            self.next();
            let e = self.expr()?;
            self.expect(Tok::RParen, "`)`")?;
            self.depth -= 1;
            return Ok(e);
        }
        if self.is_word("segment") {
            let span = self.next().span;
            let Tok::Str(name) = self.next().tok else {
                self.pos -= 1;
                return Err(self.error("expected the segment's name in quotes", Some("segment \"VIP\"")));
            };
            return Ok(Expr::InSegment { name, span });
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Expr, ParseError> {
        let start = self.peek().span;
        let left = self.operand()?;
        let op_tok = self.peek().clone();
        match op_tok.tok {
            Tok::Op(op) => {
                self.next();
                let right = if op == CompareOp::In {
                    Operand::Literal(self.list()?)
                } else {
                    self.operand()?
                };
                Ok(Expr::Compare {
                    left,
                    op,
                    right,
                    span: start,
                })
            }
            Tok::Ident(ref w) if w == "exists" => {
                self.next();
                match left {
                    Operand::Path(path) => Ok(Expr::Exists { path, span: start }),
                    _ => Err(ParseError {
                        message: "only a field can be tested with `exists`".into(),
                        line: start.line,
                        column: start.column,
                        hint: Some("traits.email exists".into()),
                    }),
                }
            }
            Tok::Ident(ref w) if w == "before" || w == "after" => {
                let before = w == "before";
                self.next();
                let at = self.time_ref()?;
                Ok(Expr::Time {
                    left,
                    before,
                    at,
                    span: start,
                })
            }
            _ => Err(self.error(
                &format!(
                    "expected a comparison after the operand, found {}",
                    describe(&op_tok.tok)
                ),
                Some("compare with ==, !=, <, <=, >, >=, in, contains, starts_with, exists, before or after"),
            )),
        }
    }

    fn time_ref(&mut self) -> Result<TimeRef, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Duration(d) => {
                if !self.eat_word("ago") {
                    return Err(self.error(
                        "expected `ago` after the duration",
                        Some("last_seen before 30d ago"),
                    ));
                }
                Ok(TimeRef::Ago(d))
            }
            Tok::Ident(w) if w == "now" => Ok(TimeRef::Ago(TimeDelta::zero())),
            Tok::Str(s) => parse_date(&s).map(TimeRef::At).ok_or(ParseError {
                message: format!("{s:?} is not a date"),
                line: t.span.line,
                column: t.span.column,
                hint: Some("write \"2026-01-31\" or \"2026-01-31T12:00:00Z\"".into()),
            }),
            other => {
                self.pos -= 1;
                Err(self.error(
                    &format!("expected a time, found {}", describe(&other)),
                    Some("30d ago, now, or \"2026-01-31\""),
                ))
            }
        }
    }

    fn list(&mut self) -> Result<Literal, ParseError> {
        self.expect(Tok::LBracket, "a list like [\"a\", \"b\"] after `in`")?;
        let mut items = Vec::new();
        if self.peek().tok != Tok::RBracket {
            loop {
                items.push(self.literal()?);
                if self.peek().tok == Tok::Comma {
                    self.next();
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RBracket, "`]` or `,`")?;
        Ok(Literal::List(items))
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(Literal::Str(s)),
            Tok::Num(n) => Ok(Literal::Num(n)),
            Tok::Ident(w) if w == "true" => Ok(Literal::Bool(true)),
            Tok::Ident(w) if w == "false" => Ok(Literal::Bool(false)),
            other => {
                self.pos -= 1;
                Err(self.error(&format!("expected a value, found {}", describe(&other)), None))
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Str(_) | Tok::Num(_) => Ok(Operand::Literal(self.literal()?)),
            Tok::LBracket => Ok(Operand::Literal(self.list()?)),
            Tok::Ident(w) if w == "true" || w == "false" => Ok(Operand::Literal(self.literal()?)),
            Tok::Ident(w)
                if (w == "count" || w == "sum")
                    && self
                        .tokens
                        .get(self.pos + 1)
                        .is_some_and(|n| n.tok == Tok::LParen) =>
            {
                self.aggregate()
            }
            Tok::Ident(_) => {
                let mut parts = Vec::new();
                let span = t.span;
                loop {
                    match self.next().tok {
                        Tok::Ident(w) => parts.push(w),
                        Tok::Str(s) if !parts.is_empty() => parts.push(s),
                        other => {
                            self.pos -= 1;
                            return Err(self.error(
                                &format!("expected a field name, found {}", describe(&other)),
                                None,
                            ));
                        }
                    }
                    if self.peek().tok == Tok::Dot {
                        self.next();
                    } else {
                        break;
                    }
                }
                Ok(Operand::Path(Path::new(parts, span)))
            }
            other => Err(self.error(
                &format!("expected a field, a value or count(…), found {}", describe(other)),
                Some("for example traits.city == \"Paris\""),
            )),
        }
    }

    fn aggregate(&mut self) -> Result<Operand, ParseError> {
        let head = self.next();
        let kind = match &head.tok {
            Tok::Ident(w) if w == "sum" => AggregateKind::Sum,
            _ => AggregateKind::Count,
        };
        self.expect(Tok::LParen, "`(`")?;
        if !self.eat_word("event") {
            return Err(self.error(
                "expected `event \"Name\"`",
                Some("count(event \"Product Viewed\" within 7d)"),
            ));
        }
        let Tok::Str(event) = self.next().tok else {
            self.pos -= 1;
            return Err(self.error(
                "expected the event name in quotes",
                Some("count(event \"Product Viewed\")"),
            ));
        };
        let mut property = None;
        if self.peek().tok == Tok::Dot {
            self.next();
            match self.next().tok {
                Tok::Ident(p) | Tok::Str(p) => property = Some(p),
                _ => {
                    self.pos -= 1;
                    return Err(self.error(
                        "expected a property name after `.`",
                        Some("sum(event \"Order Completed\".revenue)"),
                    ));
                }
            }
        }
        if kind == AggregateKind::Sum && property.is_none() {
            return Err(self.error(
                "sum needs a property to add up",
                Some("sum(event \"Order Completed\".revenue within 90d)"),
            ));
        }
        let filter = if self.eat_word("where") {
            self.descend()?;
            let filter = self.expr()?;
            self.depth -= 1;
            Some(Box::new(filter))
        } else {
            None
        };
        let within = if self.eat_word("within") {
            match self.next().tok {
                Tok::Duration(d) => Some(d),
                _ => {
                    self.pos -= 1;
                    return Err(self.error(
                        "expected a duration after `within`",
                        Some("within 7d, within 24h"),
                    ));
                }
            }
        } else {
            None
        };
        self.expect(Tok::RParen, "`)` to close the aggregate")?;
        Ok(Operand::Aggregate(Aggregate {
            kind,
            event,
            property,
            filter,
            within,
            span: head.span,
            slot: None,
        }))
    }
}

pub(crate) fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    missive_core::message::parse_time(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let e = parse(
            r#"traits.city == "New York" and orders.count >= 2 and orders.revenue >= 500
               and count(event "Product Viewed" within 7d) >= 1 and count(event "Order Completed" within 7d) == 0"#,
        )
        .unwrap();
        assert!(matches!(e, Expr::And(..)));
    }

    #[test]
    fn aggregates_with_filters_properties_and_windows_parse() {
        let e =
            parse(r#"count(event "Product Viewed" where properties.category == "shoes" within 30d) >= 3"#)
                .unwrap();
        let Expr::Compare {
            left: Operand::Aggregate(a),
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            (a.event.as_str(), a.within),
            ("Product Viewed", Some(TimeDelta::days(30)))
        );
        assert!(a.filter.is_some());
        let e = parse(r#"sum(event "Order Completed" .revenue within 90d) > 100"#).unwrap();
        let Expr::Compare {
            left: Operand::Aggregate(a),
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(a.property.as_deref(), Some("revenue"));
    }

    #[test]
    fn errors_give_line_column_and_a_hint() {
        let e = parse("traits.city = \"Paris\"").unwrap_err();
        assert_eq!((e.line, e.column), (1, 13));
        assert_eq!(e.hint.as_deref(), Some("compare with `==`"));
        let e = parse("traits.a == 1 and\n  traits.b == 2 traits.c == 3").unwrap_err();
        assert_eq!((e.line, e.column), (2, 17));
        assert_eq!(e.hint.as_deref(), Some("join conditions with `and` or `or`"));
        let e = parse("count(event \"X\" within 7) > 1").unwrap_err();
        assert!(e.message.contains("duration"), "{e:?}");
        let e = parse("last_seen before 30d").unwrap_err();
        assert!(e.message.contains("ago"), "{e:?}");
        let e = parse("traits.name == \"Ann").unwrap_err();
        assert_eq!(e.message, "unterminated string");
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let e = parse("not traits.a exists and traits.b exists or traits.c exists").unwrap();
        let Expr::Or(left, _) = e else { panic!() };
        let Expr::And(not, _) = *left else { panic!() };
        assert!(matches!(*not, Expr::Not(_)));
    }

    fn depth(e: &Expr) -> usize {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => 1 + depth(a).max(depth(b)),
            Expr::Not(a) => 1 + depth(a),
            _ => 1,
        }
    }

    #[test]
    fn a_thousand_nested_parentheses_are_refused_with_the_limit_named() {
        let src = format!("{}traits.a exists{}", "(".repeat(1_000), ")".repeat(1_000));
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("more than 64 levels"), "{e:?}");
        assert_eq!((e.line, e.column), (1, 65));
    }

    #[test]
    fn ten_thousand_nots_are_refused_without_recursing() {
        let e = parse(&format!("{}traits.a exists", "not ".repeat(10_000))).unwrap_err();
        assert!(e.message.contains("more than 64 levels"), "{e:?}");
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        let n = MAX_NESTING;
        let src = format!("{}traits.a exists{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&src).is_ok());
        let src = format!("{}traits.a exists", "not ".repeat(n));
        assert_eq!(depth(&parse(&src).unwrap()), n + 1);
        let filter = format!(
            "count(event \"X\" where {}properties.a exists{}) > 0",
            "(".repeat(n),
            ")".repeat(n)
        );
        assert!(parse(&filter).unwrap_err().message.contains("64 levels"));
    }

    #[test]
    fn long_or_and_and_chains_become_balanced_trees_in_order() {
        let terms: Vec<String> = (0..3_500).map(|i| format!("traits.t{i} exists")).collect();
        let e = parse(&terms.join(" or ")).unwrap();
        assert!(depth(&e) <= 13, "depth {}", depth(&e));
        let e = parse(&terms.join(" and ")).unwrap();
        assert!(depth(&e) <= 13);
        // In-order traversal keeps the written order of conditions.
        fn leaves(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::And(a, b) | Expr::Or(a, b) => {
                    leaves(a, out);
                    leaves(b, out);
                }
                Expr::Exists { path, .. } => out.push(path.dotted()),
                _ => {}
            }
        }
        let mut seen = Vec::new();
        leaves(&e, &mut seen);
        let want: Vec<String> = (0..3_500).map(|i| format!("traits.t{i}")).collect();
        assert_eq!(seen, want);
    }
}
