//! Parsing: template text into tokens (text, `{{ }}`, `{% %}`), tokens into [`Node`]s,
//! markup into expressions. Syntax is always strict: anything Liquid's strict mode refuses is an
//! [`ErrorKind::Syntax`] error with a 1-based line and column.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use crate::ast::*;
use crate::filters::Filter;
use crate::value::Value;
use crate::{Error, ErrorKind};

/// Deepest nesting of block tags and of brackets/ranges in an expression. Keeps hostile input
/// from exhausting the stack while parsing or rendering.
pub(crate) const MAX_NESTING: usize = 100;

pub(crate) fn parse(src: &str) -> Result<Block, Error> {
    let toks = tokenize(src)?;
    let lines: Rc<[usize]> = std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        depth: 0,
        open_tags: Vec::new(),
        lines,
        last_pos: Cell::new((0, 1)),
    };
    let (block, end) = p.parse_block(&[])?;
    if let Some(end) = end {
        return Err(p.err(end.off, format!("unexpected tag '{}'", end.name)));
    }
    Ok(block)
}

pub(crate) fn syntax_error(src: &str, off: usize, message: impl Into<String>) -> Error {
    let off = off.min(src.len());
    let before = src.get(..off).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    Error {
        kind: ErrorKind::Syntax,
        message: message.into(),
        line: Some(u32::try_from(line).unwrap_or(u32::MAX)),
        column: Some(u32::try_from(col).unwrap_or(u32::MAX)),
    }
}

// ---------------------------------------------------------------------------------------------
// Template tokens

#[derive(Debug, Clone, Copy)]
enum Tok<'a> {
    Text(&'a str),
    /// Markup of `{{ … }}`, its offset in the source, and where the `{{` is.
    Output(&'a str, usize, usize),
    Tag(TagTok<'a>),
    /// The body of `raw` (verbatim text).
    Raw(&'a str),
}

#[derive(Debug, Clone, Copy)]
struct TagTok<'a> {
    name: &'a str,
    markup: &'a str,
    /// Offset of the tag's start in the source (for error positions).
    off: usize,
    /// Offset of `markup` in the source.
    markup_off: usize,
}

const WS: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

fn tokenize(src: &str) -> Result<Vec<Tok<'_>>, Error> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut pos = 0;
    let mut lstrip_next = false;
    while pos < src.len() {
        let Some(start) = find_open(bytes, pos) else {
            let mut text = &src[pos..];
            if lstrip_next {
                text = text.trim_start_matches(WS);
            }
            if !text.is_empty() {
                toks.push(Tok::Text(text));
            }
            break;
        };
        let is_output = bytes[start + 1] == b'{';
        let trim_left = bytes.get(start + 2) == Some(&b'-');
        let mut text = &src[pos..start];
        if lstrip_next {
            text = text.trim_start_matches(WS);
        }
        if trim_left {
            text = text.trim_end_matches(WS);
        }
        if !text.is_empty() {
            toks.push(Tok::Text(text));
        }
        let inner_start = start + 2 + usize::from(trim_left);
        let close = if is_output { "}}" } else { "%}" };
        let Some(rel) = src.get(inner_start..).and_then(|s| s.find(close)) else {
            let what = if is_output { "output" } else { "tag" };
            return Err(syntax_error(src, start, format!("{what} was never closed")));
        };
        let mut inner_end = inner_start + rel;
        let end = inner_end + 2;
        let trim_right = inner_end > inner_start && bytes[inner_end - 1] == b'-';
        if trim_right {
            inner_end -= 1;
        }
        let inner = &src[inner_start..inner_end];
        lstrip_next = trim_right;
        pos = end;
        if is_output {
            toks.push(Tok::Output(inner, inner_start, start));
            continue;
        }
        let lead = inner.len() - inner.trim_start_matches(WS).len();
        let rest = &inner[lead..];
        let name_len = if rest.starts_with('#') {
            1
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        if name_len == 0 {
            return Err(syntax_error(src, start, "expected a tag name"));
        }
        let name = &rest[..name_len];
        let markup_off = inner_start + lead + name_len;
        let markup = &src[markup_off..inner_end];
        if name == "raw" || name == "doc" {
            if !markup.trim_matches(WS).is_empty() {
                return Err(syntax_error(src, start, format!("'{name}' takes no arguments")));
            }
            let end_name = if name == "raw" { "endraw" } else { "enddoc" };
            let Some((body_end, after, trim)) = find_end_tag(src, pos, end_name) else {
                return Err(syntax_error(src, start, format!("'{name}' was never closed")));
            };
            if name == "raw" && body_end > pos {
                toks.push(Tok::Raw(&src[pos..body_end]));
            }
            pos = after;
            lstrip_next = trim;
            continue;
        }
        toks.push(Tok::Tag(TagTok {
            name,
            markup,
            off: start,
            markup_off,
        }));
    }
    Ok(toks)
}

fn find_open(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && (bytes[i + 1] == b'{' || bytes[i + 1] == b'%') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Finds `{%- endraw -%}` (any whitespace and trim markers) from `from`: returns where the body
/// ends, where the end tag ends, and whether it trims the text after it.
fn find_end_tag(src: &str, from: usize, end_name: &str) -> Option<(usize, usize, bool)> {
    let mut search = from;
    while let Some(rel) = src.get(search..)?.find("{%") {
        let at = search + rel;
        let mut rest = &src[at + 2..];
        rest = rest.strip_prefix('-').unwrap_or(rest);
        rest = rest.trim_start_matches(WS);
        if let Some(after_name) = rest.strip_prefix(end_name) {
            let after_ws = after_name.trim_start_matches(WS);
            let (trim, tail) = match after_ws.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, after_ws),
            };
            if let Some(tail) = tail.strip_prefix("%}") {
                return Some((at, src.len() - tail.len(), trim));
            }
        }
        search = at + 2;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Blocks and tags

struct EndTag<'a> {
    name: &'a str,
    markup: &'a str,
    off: usize,
    markup_off: usize,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Tok<'a>>,
    pos: usize,
    depth: usize,
    /// Where the tags being parsed start, innermost last: an unclosed block is reported at
    /// its opening tag, where the author can fix it.
    open_tags: Vec<usize>,
    /// Where each line of `src` starts, to give nodes their line and column in O(log n).
    lines: Rc<[usize]>,
    /// The last offset given a position, and its column.
    last_pos: Cell<(usize, usize)>,
}

const END_TAGS: &[&str] = &[
    "endif",
    "endunless",
    "elsif",
    "else",
    "endcase",
    "when",
    "endfor",
    "endtablerow",
    "endcapture",
    "endcomment",
    "endifchanged",
    "endraw",
    "enddoc",
];

impl<'a> Parser<'a> {
    fn err(&self, off: usize, msg: impl Into<String>) -> Error {
        syntax_error(self.src, off, msg)
    }

    /// The line and column of `off`. Nodes come in source order, so the column is counted on
    /// from the previous node on the same line: linear over a template even when it is one
    /// long line.
    fn pos(&self, off: usize) -> Pos {
        let off = off.min(self.src.len());
        let line = self.lines.partition_point(|&start| start <= off).max(1);
        let line_start = self.lines[line - 1];
        let (mut from, mut column) = (line_start, 1usize);
        let (last_off, last_column) = self.last_pos.get();
        if last_off >= line_start && last_off <= off {
            (from, column) = (last_off, last_column);
        }
        column += self.src.get(from..off).map_or(0, |t| t.chars().count());
        self.last_pos.set((off, column));
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// Parses nodes until one of `ends` (returned) or the end of input (an error when `ends` is
    /// not empty).
    fn parse_block(&mut self, ends: &[&str]) -> Result<(Block, Option<EndTag<'a>>), Error> {
        let mut block = Vec::new();
        while self.pos < self.toks.len() {
            let tok = self.toks[self.pos];
            self.pos += 1;
            match tok {
                Tok::Text(t) | Tok::Raw(t) => block.push(Node::Text(t.into())),
                Tok::Output(markup, off, start) => {
                    let mut out = parse_output(self.src, markup, off)?;
                    out.pos = self.pos(start);
                    block.push(Node::Output(Box::new(out)));
                }
                Tok::Tag(tag) => {
                    if ends.contains(&tag.name) {
                        return Ok((
                            block,
                            Some(EndTag {
                                name: tag.name,
                                markup: tag.markup,
                                off: tag.off,
                                markup_off: tag.markup_off,
                            }),
                        ));
                    }
                    if END_TAGS.contains(&tag.name) {
                        return Err(self.err(tag.off, format!("unexpected tag '{}'", tag.name)));
                    }
                    self.parse_tag(tag, &mut block)?;
                }
            }
        }
        if let Some(first) = ends.first() {
            let opener = match *first {
                "endif" | "elsif" => "if",
                "endunless" => "unless",
                "endcase" | "when" => "case",
                "endfor" => "for",
                "endtablerow" => "tablerow",
                "endcapture" => "capture",
                "endifchanged" => "ifchanged",
                _ => "block",
            };
            let at = self.open_tags.last().copied().unwrap_or(self.src.len());
            return Err(self.err(at, format!("'{opener}' tag was never closed")));
        }
        Ok((block, None))
    }

    fn nested<T>(&mut self, off: usize, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        if self.depth >= MAX_NESTING {
            return Err(self.err(off, "blocks are nested too deeply"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn parse_tag(&mut self, tag: TagTok<'a>, block: &mut Block) -> Result<(), Error> {
        self.open_tags.push(tag.off);
        let result = self.parse_tag_inner(tag, block);
        self.open_tags.pop();
        result
    }

    fn parse_tag_inner(&mut self, tag: TagTok<'a>, block: &mut Block) -> Result<(), Error> {
        let src = self.src;
        let expr = |m: &'a str, off: usize| ExprParser::new(src, m, off);
        match tag.name {
            "#" => {
                // Every line of an inline comment must start with `#`.
                let mut lines = tag.markup.split('\n');
                lines.next();
                if lines.any(|l| {
                    let l = l.trim_start_matches(WS);
                    !l.is_empty() && !l.starts_with('#')
                }) {
                    return Err(self.err(tag.off, "every line of an inline comment must start with '#'"));
                }
            }
            "comment" => self.skip_comment(tag.off)?,
            "assign" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let name = p.target()?;
                p.expect(&T::Assign, "'='")?;
                let mut out = p.output_rest()?;
                out.pos = self.pos(tag.off);
                block.push(Node::Assign(Box::new((name, out))));
            }
            "capture" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let name = match p.peek() {
                    T::Str(s) => {
                        let s: Arc<str> = Arc::from(*s);
                        p.i += 1;
                        s
                    }
                    _ => p.target()?,
                };
                p.end()?;
                let body = self.nested(tag.off, |s| s.parse_block(&["endcapture"]))?.0;
                block.push(Node::Capture(Box::new((name, body))));
            }
            "echo" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let mut out = p.output_rest()?;
                out.pos = self.pos(tag.off);
                block.push(Node::Output(Box::new(out)));
            }
            "if" | "unless" => {
                let node = self.nested(tag.off, |s| s.parse_if(tag))?;
                block.push(node);
            }
            "case" => {
                let node = self.nested(tag.off, |s| s.parse_case(tag))?;
                block.push(node);
            }
            "for" | "tablerow" => {
                let node = self.nested(tag.off, |s| s.parse_for(tag))?;
                block.push(node);
            }
            "cycle" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let first = p.expr()?;
                let (group, first) = if p.eat(&T::Colon) {
                    (Some(first), p.expr()?)
                } else {
                    (None, first)
                };
                let mut items = vec![first];
                while p.eat(&T::Comma) {
                    items.push(p.expr()?);
                }
                p.end()?;
                let key = literal_key(&items);
                block.push(Node::Cycle(Box::new(Cycle {
                    group,
                    items,
                    key,
                    pos: self.pos(tag.off),
                })));
            }
            "increment" | "decrement" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let name = p.ident()?;
                p.end()?;
                block.push(if tag.name == "increment" {
                    Node::Increment(name)
                } else {
                    Node::Decrement(name)
                });
            }
            "ifchanged" => {
                let body = self.nested(tag.off, |s| s.parse_block(&["endifchanged"]))?.0;
                let body = strip_if_blank(vec![body]).pop().unwrap_or_default();
                block.push(Node::IfChanged(Box::new(body)));
            }
            "break" => block.push(Node::Break),
            "continue" => block.push(Node::Continue),
            "include" | "render" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let mut inc = p.include(tag.name == "render")?;
                inc.pos = self.pos(tag.off);
                block.push(if tag.name == "render" {
                    Node::Render(Box::new(inc))
                } else {
                    Node::Include(Box::new(inc))
                });
            }
            "block" => {
                let mut p = expr(tag.markup, tag.markup_off)?;
                let T::Str(slot) = *p.peek() else {
                    return Err(self.err(tag.off, "'block' expects a quoted slot name"));
                };
                p.i += 1;
                p.end()?;
                block.push(Node::Slot(slot.into()));
            }
            "liquid" => self.nested(tag.off, |s| s.parse_liquid(tag, block))?,
            other => return Err(self.err(tag.off, format!("unknown tag '{other}'"))),
        }
        Ok(())
    }

    fn skip_comment(&mut self, off: usize) -> Result<(), Error> {
        let mut depth = 1usize;
        while self.pos < self.toks.len() {
            let tok = self.toks[self.pos];
            self.pos += 1;
            if let Tok::Tag(t) = tok {
                match t.name {
                    "comment" => depth += 1,
                    "endcomment" => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(self.err(off, "'comment' tag was never closed"))
    }

    fn parse_if(&mut self, tag: TagTok<'a>) -> Result<Node, Error> {
        let unless = tag.name == "unless";
        let end = if unless { "endunless" } else { "endif" };
        let mut cond = ExprParser::new(self.src, tag.markup, tag.markup_off)?.condition_all()?;
        cond.pos = self.pos(tag.off);
        let mut branches = Vec::new();
        let mut otherwise: Option<Block> = None;
        let mut pending = Some((cond, unless));
        let mut seen_else = false;
        loop {
            let (body, endtag) = self.parse_block(&["elsif", "else", end])?;
            let Some(endtag) = endtag else {
                return Err(self.err(tag.off, format!("'{}' tag was never closed", tag.name)));
            };
            if let Some((c, neg)) = pending.take() {
                branches.push((c, neg, body));
            } else if seen_else && otherwise.is_none() {
                otherwise = Some(body);
            }
            // Branches after the first `else` are parsed but never rendered, as in Liquid.
            match endtag.name {
                "elsif" => {
                    let mut c =
                        ExprParser::new(self.src, endtag.markup, endtag.markup_off)?.condition_all()?;
                    c.pos = self.pos(endtag.off);
                    if !seen_else {
                        pending = Some((c, false));
                    }
                }
                "else" => seen_else = true,
                _ => break,
            }
        }
        let mut bodies: Vec<Block> = branches.iter_mut().map(|b| std::mem::take(&mut b.2)).collect();
        if let Some(o) = otherwise.take() {
            bodies.push(o);
        }
        let mut bodies = strip_if_blank(bodies);
        if bodies.len() > branches.len() {
            otherwise = bodies.pop();
        }
        for (b, body) in branches.iter_mut().zip(bodies) {
            b.2 = body;
        }
        Ok(Node::If(Box::new(If { branches, otherwise })))
    }

    fn parse_case(&mut self, tag: TagTok<'a>) -> Result<Node, Error> {
        let pos = self.pos(tag.off);
        let mut p = ExprParser::new(self.src, tag.markup, tag.markup_off)?;
        let subject = p.expr()?;
        p.end()?;
        // Whatever sits between `case` and the first `when` is never rendered.
        let (_, mut endtag) = self.parse_block(&["when", "else", "endcase"])?;
        let mut arms = Vec::new();
        loop {
            let Some(e) = endtag else {
                return Err(self.err(tag.off, "'case' tag was never closed"));
            };
            match e.name {
                "endcase" => break,
                "when" => {
                    let mut p = ExprParser::new(self.src, e.markup, e.markup_off)?;
                    let mut values = vec![p.expr()?];
                    while p.eat(&T::Comma) || p.eat_word("or") {
                        values.push(p.expr()?);
                    }
                    p.end()?;
                    let (body, next) = self.parse_block(&["when", "else", "endcase"])?;
                    arms.push(Arm::When(values, body));
                    endtag = next;
                }
                _ => {
                    let (body, next) = self.parse_block(&["when", "else", "endcase"])?;
                    arms.push(Arm::Else(body));
                    endtag = next;
                }
            }
        }
        let bodies: Vec<Block> = arms
            .iter_mut()
            .map(|a| match a {
                Arm::When(_, b) | Arm::Else(b) => std::mem::take(b),
            })
            .collect();
        for (arm, body) in arms.iter_mut().zip(strip_if_blank(bodies)) {
            match arm {
                Arm::When(_, b) | Arm::Else(b) => *b = body,
            }
        }
        Ok(Node::Case(Box::new(Case { pos, subject, arms })))
    }

    fn parse_for(&mut self, tag: TagTok<'a>) -> Result<Node, Error> {
        let pos = self.pos(tag.off);
        let tablerow = tag.name == "tablerow";
        let mut p = ExprParser::new(self.src, tag.markup, tag.markup_off)?;
        let var = p.ident()?;
        if !p.eat_word("in") {
            return Err(p.err_here("expected 'in'"));
        }
        let iter_start = p.offset();
        let iter = p.expr()?;
        let iter_text = p.text_since(iter_start);
        let name: Box<str> = format!("{var}-{}", iter_text.trim()).into();
        let mut reversed = false;
        let mut limit = None;
        let mut offset = Offset::None;
        let mut cols = None;
        loop {
            if p.eat(&T::Comma) {
                continue;
            }
            match p.peek() {
                T::End => break,
                T::Ident("reversed") if !tablerow => {
                    p.i += 1;
                    reversed = true;
                }
                T::Ident(word @ ("limit" | "offset" | "cols")) => {
                    let word = *word;
                    p.i += 1;
                    p.expect(&T::Colon, "':'")?;
                    match word {
                        "limit" => limit = Some(p.expr()?),
                        "cols" if tablerow => cols = Some(p.expr()?),
                        "cols" => {
                            return Err(syntax_error(
                                src_of(&p),
                                p.offset(),
                                "'cols' is only for 'tablerow'",
                            ));
                        }
                        _ => {
                            if p.eat_word("continue") {
                                offset = Offset::Continue;
                            } else {
                                offset = Offset::Expr(p.expr()?);
                            }
                        }
                    }
                }
                _ => {
                    let expected = if tablerow {
                        "expected 'limit:', 'offset:' or 'cols:'"
                    } else {
                        "expected 'limit:', 'offset:' or 'reversed'"
                    };
                    return Err(p.err_here(expected));
                }
            }
        }
        let end = if tablerow { "endtablerow" } else { "endfor" };
        let ends: &[&str] = if tablerow {
            &["endtablerow"]
        } else {
            &["else", "endfor"]
        };
        let (body, e) = self.parse_block(ends)?;
        let mut otherwise = None;
        if let Some(e) = e
            && e.name == "else"
        {
            let (b, e2) = self.parse_block(&[end])?;
            if e2.is_none() {
                return Err(self.err(tag.off, format!("'{}' tag was never closed", tag.name)));
            }
            otherwise = Some(b);
        }
        let mut bodies = vec![body];
        if let Some(o) = otherwise.take() {
            bodies.push(o);
        }
        let mut bodies = strip_if_blank(bodies);
        if bodies.len() == 2 {
            otherwise = bodies.pop();
        }
        let body = bodies.pop().unwrap_or_default();
        let f = For {
            pos,
            var,
            iter,
            name,
            reversed,
            limit,
            offset,
            cols,
            body,
            otherwise,
        };
        Ok(if tablerow {
            Node::Tablerow(Box::new(f))
        } else {
            Node::For(Box::new(f))
        })
    }

    /// `{% liquid %}`: one tag per line, no delimiters.
    fn parse_liquid(&mut self, tag: TagTok<'a>, block: &mut Block) -> Result<(), Error> {
        let mut toks = Vec::new();
        let mut line_off = tag.markup_off;
        for line in tag.markup.split('\n') {
            let this_off = line_off;
            line_off += line.len() + 1;
            let lead = line.len() - line.trim_start_matches(WS).len();
            let rest = line[lead..].trim_end_matches(WS);
            if rest.is_empty() {
                continue;
            }
            let name_len = if rest.starts_with('#') {
                1
            } else {
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())
            };
            if name_len == 0 {
                return Err(self.err(this_off + lead, "expected a tag name"));
            }
            let markup_off = this_off + lead + name_len;
            toks.push(Tok::Tag(TagTok {
                name: &rest[..name_len],
                markup: &rest[name_len..],
                off: this_off + lead,
                markup_off,
            }));
        }
        let mut sub = Parser {
            src: self.src,
            toks,
            pos: 0,
            depth: self.depth,
            open_tags: Vec::new(),
            lines: self.lines.clone(),
            last_pos: Cell::new(self.last_pos.get()),
        };
        let (nodes, end) = sub.parse_block(&[])?;
        if let Some(end) = end {
            return Err(self.err(end.off, format!("unexpected tag '{}'", end.name)));
        }
        block.extend(nodes);
        Ok(())
    }
}

/// Liquid drops the whitespace text of a block tag whose every branch is "blank" (only
/// whitespace, comments, assigns, captures and other blank blocks), so that logic-only lines do
/// not leave empty lines behind.
fn strip_if_blank(bodies: Vec<Block>) -> Vec<Block> {
    if !bodies.iter().all(|b| b.iter().all(is_blank)) {
        return bodies;
    }
    bodies
        .into_iter()
        .map(|b| b.into_iter().filter(|n| !matches!(n, Node::Text(_))).collect())
        .collect()
}

fn is_blank(node: &Node) -> bool {
    match node {
        Node::Text(t) => t.trim_matches(WS).is_empty(),
        Node::Assign(_) | Node::Capture(_) => true,
        Node::If(i) => {
            i.branches.iter().all(|b| b.2.iter().all(is_blank))
                && i.otherwise.iter().all(|b| b.iter().all(is_blank))
        }
        Node::Case(c) => c.arms.iter().all(|a| match a {
            Arm::When(_, b) | Arm::Else(b) => b.iter().all(is_blank),
        }),
        Node::For(f) | Node::Tablerow(f) => {
            f.body.iter().all(is_blank) && f.otherwise.iter().all(|b| b.iter().all(is_blank))
        }
        Node::IfChanged(b) => b.iter().all(is_blank),
        _ => false,
    }
}

/// The group of an unnamed cycle: its values when all are literals (as Shopify's
/// `@variables.to_s`), `None` (a group per tag) when one is a variable.
fn literal_key(items: &[Expr]) -> Option<Box<str>> {
    let mut key = String::new();
    for (i, item) in items.iter().enumerate() {
        let Expr::Lit(v) = item else { return None };
        if i > 0 {
            key.push_str(", ");
        }
        key.push_str(v.type_name());
        key.push(':');
        v.render_to(&mut key);
    }
    Some(key.into())
}

// ---------------------------------------------------------------------------------------------
// Expressions

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum T<'a> {
    Ident(&'a str),
    Str(&'a str),
    Int(i64),
    Float(f64),
    Dot,
    DotDot,
    LBr,
    RBr,
    LPar,
    RPar,
    Pipe,
    Colon,
    Comma,
    Assign,
    Op(CmpOp),
    End,
}

fn lex<'a>(src: &str, m: &'a str, base: usize) -> Result<Vec<(T<'a>, usize)>, Error> {
    let b = m.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'\'' | b'"' => {
                let Some(rel) = m[i + 1..].find(c as char) else {
                    return Err(syntax_error(src, base + i, "unterminated string"));
                };
                let s = &m[i + 1..i + 1 + rel];
                i += rel + 2;
                T::Str(s)
            }
            b'0'..=b'9' => lex_number(m, &mut i),
            b'-' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => lex_number(m, &mut i),
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                    i += 1;
                }
                if i < b.len() && b[i] == b'?' {
                    i += 1;
                }
                let word = &m[start..i];
                if word == "contains" {
                    T::Op(CmpOp::Contains)
                } else {
                    T::Ident(word)
                }
            }
            b'.' => {
                if b.get(i + 1) == Some(&b'.') {
                    i += 2;
                    T::DotDot
                } else {
                    i += 1;
                    T::Dot
                }
            }
            b'[' => {
                i += 1;
                T::LBr
            }
            b']' => {
                i += 1;
                T::RBr
            }
            b'(' => {
                i += 1;
                T::LPar
            }
            b')' => {
                i += 1;
                T::RPar
            }
            b'|' => {
                i += 1;
                T::Pipe
            }
            b':' => {
                i += 1;
                T::Colon
            }
            b',' => {
                i += 1;
                T::Comma
            }
            b'=' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                T::Op(CmpOp::Eq)
            }
            b'=' => {
                i += 1;
                T::Assign
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                T::Op(CmpOp::Ne)
            }
            b'<' if b.get(i + 1) == Some(&b'>') => {
                i += 2;
                T::Op(CmpOp::Ne)
            }
            b'<' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                T::Op(CmpOp::Le)
            }
            b'>' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                T::Op(CmpOp::Ge)
            }
            b'<' => {
                i += 1;
                T::Op(CmpOp::Lt)
            }
            b'>' => {
                i += 1;
                T::Op(CmpOp::Gt)
            }
            _ => {
                let ch = m[i..].chars().next().unwrap_or('?');
                return Err(syntax_error(
                    src,
                    base + i,
                    format!("unexpected character '{ch}'"),
                ));
            }
        };
        out.push((tok, base + start));
    }
    out.push((T::End, base + m.len()));
    Ok(out)
}

fn lex_number<'a>(m: &'a str, i: &mut usize) -> T<'a> {
    let b = m.as_bytes();
    let start = *i;
    if b[*i] == b'-' {
        *i += 1;
    }
    while *i < b.len() && b[*i].is_ascii_digit() {
        *i += 1;
    }
    if *i + 1 < b.len() && b[*i] == b'.' && b[*i + 1].is_ascii_digit() {
        *i += 1;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        return T::Float(m[start..*i].parse().unwrap_or(0.0));
    }
    let text = &m[start..*i];
    match text.parse::<i64>() {
        Ok(n) => T::Int(n),
        Err(_) => T::Float(text.parse().unwrap_or(0.0)),
    }
}

pub(crate) struct ExprParser<'a> {
    src: &'a str,
    markup: &'a str,
    base: usize,
    toks: Vec<(T<'a>, usize)>,
    i: usize,
    depth: usize,
}

pub(crate) fn parse_output(src: &str, markup: &str, off: usize) -> Result<Output, Error> {
    ExprParser::new(src, markup, off)?.output_rest()
}

impl<'a> ExprParser<'a> {
    fn new(src: &'a str, markup: &'a str, base: usize) -> Result<Self, Error> {
        let toks = lex(src, markup, base)?;
        Ok(ExprParser {
            src,
            markup,
            base,
            toks,
            i: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> &T<'a> {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn offset(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }

    fn text_since(&self, start: usize) -> &'a str {
        let end = self.offset();
        self.markup.get(start - self.base..end - self.base).unwrap_or("")
    }

    fn err_here(&self, msg: &str) -> Error {
        syntax_error(
            self.src,
            self.offset(),
            format!("{msg}, found {}", self.peek().describe()),
        )
    }

    fn eat(&mut self, t: &T<'_>) -> bool {
        if self.peek() == t {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), T::Ident(x) if *x == w) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &T<'_>, what: &str) -> Result<(), Error> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.err_here(&format!("expected {what}")))
        }
    }

    fn end(&mut self) -> Result<(), Error> {
        if matches!(self.peek(), T::End) {
            Ok(())
        } else {
            Err(self.err_here("expected the end of the tag"))
        }
    }

    fn ident(&mut self) -> Result<Arc<str>, Error> {
        match *self.peek() {
            T::Ident(s) => {
                self.i += 1;
                Ok(Arc::from(s))
            }
            _ => Err(self.err_here("expected an identifier")),
        }
    }

    /// The target of `assign`/`capture`: a name of word characters and hyphens, which may be all
    /// digits (`{% assign 123 = … %}` is legal), but no `?` or leading hyphen.
    fn target(&mut self) -> Result<Arc<str>, Error> {
        let start = self.i;
        let mut end_off = self.offset();
        let begin_off = end_off;
        loop {
            match *self.peek() {
                T::Ident(s) if !s.ends_with('?') && (self.i == start || self.offset() == end_off) => {
                    end_off = self.offset() + s.len();
                    self.i += 1;
                }
                T::Int(n) if n >= 0 && (self.i == start || self.offset() == end_off) => {
                    end_off = self.offset() + n.to_string().len();
                    self.i += 1;
                }
                _ => break,
            }
        }
        if self.i == start {
            return Err(self.err_here("expected a variable name"));
        }
        Ok(Arc::from(
            &self.markup[begin_off - self.base..end_off - self.base],
        ))
    }

    /// An expression, then filters, then the end of the markup.
    fn output_rest(&mut self) -> Result<Output, Error> {
        let expr = if matches!(self.peek(), T::End) {
            Expr::Lit(Value::Nil)
        } else {
            self.expr()?
        };
        let mut filters = Vec::new();
        while self.eat(&T::Pipe) {
            filters.push(self.filter()?);
        }
        self.end()?;
        Ok(Output {
            expr,
            filters,
            pos: Pos::default(),
        })
    }

    fn filter(&mut self) -> Result<FilterCall, Error> {
        let off = self.offset();
        let name = match *self.peek() {
            T::Ident(s) => {
                self.i += 1;
                s
            }
            _ => return Err(self.err_here("expected a filter name")),
        };
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        if self.eat(&T::Colon) {
            loop {
                if let (T::Ident(k), T::Colon) = (
                    self.peek().clone(),
                    self.toks.get(self.i + 1).map_or(T::End, |t| t.0.clone()),
                ) {
                    self.i += 2;
                    kwargs.push((Box::from(k), self.expr()?));
                } else {
                    args.push(self.expr()?);
                }
                if !self.eat(&T::Comma) {
                    break;
                }
            }
        }
        let filter = Filter::lookup(name);
        if filter != Filter::Unknown {
            let (min, max, kws) = filter.arity();
            if args.len() < min || args.len() > max {
                return Err(syntax_error(
                    self.src,
                    off,
                    format!(
                        "filter '{name}' expects {} argument{}, got {}",
                        arity_text(min, max),
                        if max == 1 { "" } else { "s" },
                        args.len()
                    ),
                ));
            }
            if let Some((k, _)) = kwargs.iter().find(|(k, _)| !kws.contains(&&**k)) {
                return Err(syntax_error(
                    self.src,
                    off,
                    format!("filter '{name}' has no argument '{k}'"),
                ));
            }
        }
        Ok(FilterCall {
            filter,
            name: name.into(),
            args,
            kwargs,
        })
    }

    pub(crate) fn expr(&mut self) -> Result<Expr, Error> {
        let off = self.offset();
        let e = match self.peek().clone() {
            T::Str(s) => {
                self.i += 1;
                Expr::Lit(Value::str(s))
            }
            T::Int(n) => {
                self.i += 1;
                Expr::Lit(Value::Int(n))
            }
            T::Float(f) => {
                self.i += 1;
                Expr::Lit(Value::Float(f))
            }
            T::LPar => {
                self.i += 1;
                self.enter(off)?;
                let a = self.expr()?;
                self.expect(&T::DotDot, "'..'")?;
                let b = self.expr()?;
                self.expect(&T::RPar, "')'")?;
                self.depth -= 1;
                Expr::Range(Box::new((a, b)))
            }
            // `nil.foo` or `blank['x']` is a variable of that name, as in Shopify (undefined,
            // so empty), not a keyword followed by a syntax error.
            T::Ident(w)
                if matches!(w, "true" | "false" | "nil" | "null" | "empty" | "blank")
                    && !matches!(self.toks.get(self.i + 1).map(|t| &t.0), Some(T::Dot | T::LBr)) =>
            {
                self.i += 1;
                match w {
                    "true" => Expr::Lit(Value::Bool(true)),
                    "false" => Expr::Lit(Value::Bool(false)),
                    "empty" => Expr::Empty,
                    "blank" => Expr::Blank,
                    _ => Expr::Lit(Value::Nil),
                }
            }
            T::Ident(w) => {
                self.i += 1;
                self.path(Head::Name(Arc::from(w)))?
            }
            T::LBr => {
                self.i += 1;
                self.enter(off)?;
                let inner = self.expr()?;
                self.expect(&T::RBr, "']'")?;
                self.depth -= 1;
                let head = match inner {
                    Expr::Lit(Value::Str(s)) => Head::Name(s),
                    other => Head::Dyn(other),
                };
                self.path(head)?
            }
            _ => return Err(self.err_here("expected a value")),
        };
        Ok(e)
    }

    fn enter(&mut self, off: usize) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax_error(self.src, off, "expression is nested too deeply"));
        }
        Ok(())
    }

    fn path(&mut self, head: Head) -> Result<Expr, Error> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                T::Dot => {
                    self.i += 1;
                    match *self.peek() {
                        T::Ident(k) => {
                            self.i += 1;
                            segs.push(Seg::Key(Arc::from(k)));
                        }
                        _ => return Err(self.err_here("expected a property name after '.'")),
                    }
                }
                T::LBr => {
                    let off = self.offset();
                    self.i += 1;
                    self.enter(off)?;
                    let inner = self.expr()?;
                    self.expect(&T::RBr, "']'")?;
                    self.depth -= 1;
                    segs.push(match inner {
                        Expr::Lit(Value::Str(s)) => Seg::Key(s),
                        Expr::Lit(Value::Int(n)) => Seg::Index(n),
                        other => Seg::Dyn(other),
                    });
                }
                _ => break,
            }
        }
        Ok(Expr::Path(Box::new(Path { head, segs })))
    }

    fn comparison(&mut self) -> Result<Cmp, Error> {
        let left = self.expr()?;
        if let T::Op(op) = *self.peek() {
            self.i += 1;
            let right = self.expr()?;
            return Ok(Cmp::Bin(left, op, right));
        }
        Ok(Cmp::Truthy(left))
    }

    /// A whole condition: comparisons joined by `and`/`or`, then the end of the markup.
    fn condition_all(&mut self) -> Result<Cond, Error> {
        let first = self.comparison()?;
        let mut rest = Vec::new();
        loop {
            let op = if self.eat_word("and") {
                Logic::And
            } else if self.eat_word("or") {
                Logic::Or
            } else {
                break;
            };
            rest.push((op, self.comparison()?));
        }
        self.end()?;
        Ok(Cond {
            first,
            rest,
            pos: Pos::default(),
        })
    }

    fn include(&mut self, render: bool) -> Result<Include, Error> {
        let name = match self.peek().clone() {
            T::Str(s) => {
                self.i += 1;
                Expr::Lit(Value::str(s))
            }
            _ if !render => self.expr()?,
            _ => return Err(self.err_here("expected a quoted template name")),
        };
        let mut bound = None;
        let mut alias = None;
        if matches!(self.peek(), T::Ident("with" | "for"))
            && !matches!(self.toks.get(self.i + 1).map(|t| &t.0), Some(T::Colon))
        {
            let is_for = self.eat_word("for");
            if !is_for {
                self.i += 1;
            }
            bound = Some((self.expr()?, is_for));
        }
        if self.eat_word("as") {
            alias = Some(self.ident()?);
        }
        let mut args = Vec::new();
        loop {
            self.eat(&T::Comma);
            match *self.peek() {
                T::End => break,
                T::Ident(k) => {
                    self.i += 1;
                    self.expect(&T::Colon, "':'")?;
                    args.push((Arc::from(k), self.expr()?));
                }
                _ => return Err(self.err_here("expected a keyword argument")),
            }
        }
        Ok(Include {
            pos: Pos::default(),
            name,
            bound,
            alias,
            args,
        })
    }
}

fn src_of<'a>(p: &ExprParser<'a>) -> &'a str {
    p.src
}

impl T<'_> {
    /// The token as the author wrote it, for error messages.
    fn describe(&self) -> String {
        match self {
            T::Ident(w) => format!("'{w}'"),
            T::Str(s) => format!("the string '{s}'"),
            T::Int(n) => format!("the number {n}"),
            T::Float(f) => format!("the number {f}"),
            T::Dot => "'.'".into(),
            T::DotDot => "'..'".into(),
            T::LBr => "'['".into(),
            T::RBr => "']'".into(),
            T::LPar => "'('".into(),
            T::RPar => "')'".into(),
            T::Pipe => "'|'".into(),
            T::Colon => "':'".into(),
            T::Comma => "','".into(),
            T::Assign => "'='".into(),
            T::Op(op) => format!(
                "'{}'",
                match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Gt => ">",
                    CmpOp::Le => "<=",
                    CmpOp::Ge => ">=",
                    CmpOp::Contains => "contains",
                }
            ),
            T::End => "the end of the tag".into(),
        }
    }
}

fn arity_text(min: usize, max: usize) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min} to {max}")
    }
}
