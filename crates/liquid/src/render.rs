//! The renderer: walks the tree with a stack of small scopes and writes into one `String`,
//! metering output, loop iterations, nesting and time as it goes.

use std::sync::Arc;
use std::time::Instant;

use crate::ast::*;
use crate::filters::{self, Filter};
use crate::value::{Object, Value, liquid_cmp, liquid_eq};
use crate::{Diagnostics, Env, Error, ErrorKind, PartialError, Template};

/// How often (in loop iterations and partial renders) the wall clock is read.
const CLOCK_EVERY: u64 = 256;

/// Deepest nesting of blocks across partials in one render. The parser caps one template at
/// 100 levels, but includes stack templates; this keeps the renderer's recursion within a 2 MB
/// thread stack even in debug builds.
const MAX_RENDER_NESTING: usize = 200;

pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

enum Frame {
    Vars(Vec<(Arc<str>, Value)>),
    Loop {
        var: Arc<str>,
        item: Value,
        state: usize,
    },
}

struct LoopState {
    name: Box<str>,
    index0: usize,
    length: usize,
    /// The enclosing `for` loop's state, for `forloop.parentloop`.
    parent: Option<usize>,
    /// `Some(cols)` for a `tablerow` loop.
    cols: Option<usize>,
    /// The loop of `{% render … for … %}`: never a `parentloop` of loops in the partial.
    isolated: bool,
}

/// Everything a `render` tag isolates: locals, counters and tag registers.
#[derive(Default)]
pub(crate) struct Scope {
    frames: Vec<Frame>,
    counters: Vec<(Arc<str>, i64)>,
    cycles: Vec<(String, usize)>,
    offsets: Vec<(Box<str>, usize)>,
    ifchanged: Option<String>,
    loops: Vec<LoopState>,
}

impl Scope {
    pub(crate) fn new() -> Scope {
        Scope {
            frames: vec![Frame::Vars(Vec::new())],
            ..Scope::default()
        }
    }

    fn assign(&mut self, name: &Arc<str>, value: Value) {
        if let Some(Frame::Vars(vars)) = self.frames.first_mut() {
            match vars.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = value,
                None => vars.push((name.clone(), value)),
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<&Value> {
        for frame in self.frames.iter().rev() {
            match frame {
                Frame::Vars(vars) => {
                    if let Some((_, v)) = vars.iter().rev().find(|(k, _)| &**k == name) {
                        return Some(v);
                    }
                }
                Frame::Loop { var, item, .. } => {
                    if &**var == name {
                        return Some(item);
                    }
                }
            }
        }
        None
    }

    /// The innermost `for` (or `tablerow`) loop visible by name.
    fn find_loop(&self, tablerow: bool) -> Option<usize> {
        self.frames.iter().rev().find_map(|f| match f {
            Frame::Loop { state, .. } if self.loops[*state].cols.is_some() == tablerow => Some(*state),
            _ => None,
        })
    }
}

pub(crate) struct Renderer<'e> {
    pub env: &'e Env<'e>,
    pub globals: &'e Object,
    pub diag: Option<Diagnostics>,
    /// Set while evaluating the input of a `default` filter: an undefined value there is
    /// handled by the template, so diagnostics do not report it.
    guarded: bool,
    bytes: usize,
    iterations: u64,
    steps: u64,
    start: Instant,
    depth: usize,
    nesting: usize,
    /// Inside a `{% render %}`: `include` is refused there, as in Shopify.
    in_render: usize,
}

fn limit(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Limit,
        message: message.into(),
        line: None,
        column: None,
    }
}

pub(crate) fn render_error(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Render,
        message: message.into(),
        line: None,
        column: None,
    }
}

enum Found<'v> {
    Ref(&'v Value),
    Own(Value),
    Missing,
}

impl<'e> Renderer<'e> {
    pub(crate) fn new(env: &'e Env<'e>, globals: &'e Object, collect: bool) -> Self {
        Renderer {
            env,
            globals,
            diag: collect.then(Diagnostics::default),
            guarded: false,
            bytes: 0,
            iterations: 0,
            steps: 0,
            start: Instant::now(),
            depth: 0,
            nesting: 0,
            in_render: 0,
        }
    }

    fn wrote(&mut self, n: usize) -> Result<(), Error> {
        self.bytes += n;
        if self.bytes > self.env.limits.max_output_bytes {
            return Err(limit(format!(
                "output exceeds {} bytes",
                self.env.limits.max_output_bytes
            )));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps.is_multiple_of(CLOCK_EVERY) {
            return self.check_clock();
        }
        Ok(())
    }

    fn check_clock(&self) -> Result<(), Error> {
        if let Some(max) = self.env.limits.max_duration
            && self.start.elapsed() > max
        {
            return Err(limit(format!("render took longer than {} ms", max.as_millis())));
        }
        Ok(())
    }

    fn tick_loop(&mut self) -> Result<(), Error> {
        self.iterations += 1;
        if self.iterations > self.env.limits.max_loop_iterations {
            return Err(limit(format!(
                "more than {} loop iterations",
                self.env.limits.max_loop_iterations
            )));
        }
        self.step()
    }

    pub(crate) fn render_block(
        &mut self,
        sc: &mut Scope,
        block: &[Node],
        out: &mut String,
    ) -> Result<Flow, Error> {
        if self.nesting >= MAX_RENDER_NESTING {
            return Err(limit(format!(
                "blocks nested more than {MAX_RENDER_NESTING} deep across partials"
            )));
        }
        self.nesting += 1;
        let flow = self.render_nodes(sc, block, out);
        self.nesting -= 1;
        flow
    }

    /// Dispatch only: each tag renders in its own function so that the frames on the
    /// recursion path (block → tag → block) stay small.
    fn render_nodes(&mut self, sc: &mut Scope, block: &[Node], out: &mut String) -> Result<Flow, Error> {
        for node in block {
            let flow = self
                .render_node(sc, node, out)
                .map_err(|e| match node_pos(node) {
                    Some(pos) => e.at(pos),
                    None => e,
                })?;
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn render_node(&mut self, sc: &mut Scope, node: &Node, out: &mut String) -> Result<Flow, Error> {
        {
            let flow = match node {
                Node::Text(t) => {
                    out.push_str(t);
                    self.wrote(t.len())?;
                    Flow::Normal
                }
                Node::Output(o) => {
                    self.render_output(sc, o, out)?;
                    Flow::Normal
                }
                Node::Assign(a) => {
                    self.render_assign(sc, a)?;
                    Flow::Normal
                }
                Node::Capture(c) => self.render_capture(sc, c)?,
                Node::If(i) => self.render_if(sc, i, out)?,
                Node::Case(c) => self.render_case(sc, c, out)?,
                Node::For(f) => {
                    self.render_for(sc, f, out)?;
                    Flow::Normal
                }
                Node::Tablerow(f) => {
                    self.render_tablerow(sc, f, out)?;
                    Flow::Normal
                }
                Node::Cycle(c) => {
                    self.render_cycle(sc, c, out)?;
                    Flow::Normal
                }
                Node::Increment(name) => {
                    self.render_counter(sc, name, true, out)?;
                    Flow::Normal
                }
                Node::Decrement(name) => {
                    self.render_counter(sc, name, false, out)?;
                    Flow::Normal
                }
                Node::IfChanged(body) => {
                    self.render_ifchanged(sc, body, out)?;
                    Flow::Normal
                }
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
                Node::Include(inc) => self.render_include(sc, inc, out)?,
                Node::Render(inc) => {
                    self.render_render(sc, inc, out)?;
                    Flow::Normal
                }
                Node::Slot(slot) => self.render_slot(sc, slot, out)?,
            };
            Ok(flow)
        }
    }

    #[inline(never)]
    fn render_assign(&mut self, sc: &mut Scope, a: &(Arc<str>, Output)) -> Result<(), Error> {
        let v = self.eval_output(sc, &a.1)?;
        sc.assign(&a.0, v);
        Ok(())
    }

    #[inline(never)]
    fn render_capture(&mut self, sc: &mut Scope, c: &(Arc<str>, Block)) -> Result<Flow, Error> {
        let mut buf = String::new();
        let flow = self.render_block(sc, &c.1, &mut buf)?;
        sc.assign(&c.0, Value::string(buf));
        Ok(flow)
    }

    #[inline(never)]
    fn render_if(&mut self, sc: &mut Scope, i: &If, out: &mut String) -> Result<Flow, Error> {
        for (cond, negate, body) in &i.branches {
            if self.eval_cond(sc, cond).map_err(|e| e.at(cond.pos))? != *negate {
                return self.render_block(sc, body, out);
            }
        }
        match &i.otherwise {
            Some(body) => self.render_block(sc, body, out),
            None => Ok(Flow::Normal),
        }
    }

    #[inline(never)]
    fn render_cycle(&mut self, sc: &mut Scope, c: &Cycle, out: &mut String) -> Result<(), Error> {
        let key = match (&c.group, &c.key) {
            (Some(g), _) => format!("n:{}", self.eval(sc, g)?.to_str()),
            (None, Some(k)) => format!("u:{k}"),
            // The node's address is stable for the template's life: one group per tag.
            (None, None) => format!("t:{:p}", c as *const Cycle),
        };
        let slot = match sc.cycles.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                sc.cycles.push((key, 0));
                sc.cycles.len() - 1
            }
        };
        let n = sc.cycles[slot].1;
        let v = match c.items.get(n) {
            Some(e) => self.eval(sc, e)?,
            None => Value::Nil,
        };
        sc.cycles[slot].1 = if n + 1 >= c.items.len() { 0 } else { n + 1 };
        self.write_value(&v, false, out)
    }

    #[inline(never)]
    fn render_counter(
        &mut self,
        sc: &mut Scope,
        name: &Arc<str>,
        increment: bool,
        out: &mut String,
    ) -> Result<(), Error> {
        let slot = match sc.counters.iter().position(|(k, _)| k == name) {
            Some(i) => i,
            None => {
                sc.counters.push((name.clone(), 0));
                sc.counters.len() - 1
            }
        };
        let n = sc.counters[slot].1;
        // `increment` shows the value before counting, `decrement` after.
        let shown = if increment { n } else { n - 1 };
        sc.counters[slot].1 = if increment { n + 1 } else { n - 1 };
        self.write_value(&Value::Int(shown), false, out)
    }

    #[inline(never)]
    fn render_ifchanged(&mut self, sc: &mut Scope, body: &[Node], out: &mut String) -> Result<(), Error> {
        let mut buf = String::new();
        self.render_block(sc, body, &mut buf)?;
        if sc.ifchanged.as_deref() != Some(buf.as_str()) {
            out.push_str(&buf);
            self.wrote(buf.len())?;
            sc.ifchanged = Some(buf);
        }
        Ok(())
    }

    #[inline(never)]
    fn render_slot(&mut self, sc: &mut Scope, slot: &str, out: &mut String) -> Result<Flow, Error> {
        let Some(tpl) = self.env.partials.block(slot) else {
            return Ok(Flow::Normal);
        };
        self.enter_partial(slot)?;
        let flow = self.render_block(sc, &tpl.nodes, out);
        self.depth -= 1;
        flow
    }

    fn render_output(&mut self, sc: &Scope, o: &Output, out: &mut String) -> Result<(), Error> {
        if let (Expr::Range(r), true) = (&o.expr, o.filters.is_empty()) {
            // Shopify prints a range as written, not as its items.
            let (a, b) = self.range_bounds(sc, r)?;
            let text = format!("{a}..{b}");
            out.push_str(&text);
            return self.wrote(text.len());
        }
        let v = self.eval_output(sc, o)?;
        let escape = self.env.escape_output
            && !matches!(
                o.filters.last().map(|f| f.filter),
                Some(Filter::Raw | Filter::Escape | Filter::EscapeOnce)
            );
        self.write_value(&v, escape, out)
    }

    fn write_value(&mut self, v: &Value, escape: bool, out: &mut String) -> Result<(), Error> {
        let before = out.len();
        if escape {
            match v {
                Value::Str(s) => filters::escape_into(s, out),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Nil => v.render_to(out),
                other => {
                    let mut s = String::new();
                    other.render_to(&mut s);
                    filters::escape_into(&s, out);
                }
            }
        } else {
            v.render_to(out);
        }
        self.wrote(out.len() - before)
    }

    pub(crate) fn eval_output(&mut self, sc: &Scope, o: &Output) -> Result<Value, Error> {
        let guarded = o.filters.first().is_some_and(|f| f.filter == Filter::Default);
        let outer = self.guarded;
        self.guarded = outer || guarded;
        let v = self.eval(sc, &o.expr);
        self.guarded = outer;
        let mut v = v?;
        for f in &o.filters {
            if f.filter == Filter::Unknown {
                if let Some(d) = &mut self.diag {
                    d.unknown_filters.insert(f.name.to_string());
                    continue;
                }
                if self.env.strict_filters {
                    return Err(Error {
                        kind: ErrorKind::UnknownFilter,
                        message: format!("unknown filter '{}'", f.name),
                        line: None,
                        column: None,
                    });
                }
                continue;
            }
            let mut args = Vec::with_capacity(f.args.len());
            for a in &f.args {
                args.push(self.eval(sc, a)?);
            }
            let mut kwargs = Vec::new();
            for (k, e) in &f.kwargs {
                kwargs.push((&**k, self.eval(sc, e)?));
            }
            let limits = self.env.limits;
            filters::check_expansion(
                f.filter,
                &v,
                &args,
                limits.max_output_bytes,
                limits.max_loop_iterations,
            )
            .map_err(|m| limit(format!("filter '{}': {m}", f.name)))?;
            let big_input = matches!(&v, Value::Str(s) if s.len() > 4096)
                || matches!(&v, Value::Array(a) if a.len() > 256);
            v = filters::apply(f.filter, v, &args, &kwargs, self.env)
                .map_err(|m| render_error(format!("filter '{}': {m}", f.name)))?;
            if big_input {
                // Filters on big inputs are where time goes: look at the clock after each.
                self.check_clock()?;
            }
            let size = match &v {
                Value::Str(s) => s.len(),
                Value::Array(a) => a.len(),
                _ => 0,
            };
            if size > self.env.limits.max_output_bytes {
                return Err(limit(format!(
                    "a value exceeds {} bytes",
                    self.env.limits.max_output_bytes
                )));
            }
        }
        Ok(v)
    }

    pub(crate) fn eval(&mut self, sc: &Scope, e: &Expr) -> Result<Value, Error> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Empty | Expr::Blank => Ok(Value::str("")),
            Expr::Range(r) => {
                let (a, b) = self.range_bounds(sc, r)?;
                if b < a {
                    return Ok(Value::Array(Arc::new(Vec::new())));
                }
                let n = u64::try_from(i128::from(b) - i128::from(a) + 1).unwrap_or(u64::MAX);
                if n > self.env.limits.max_loop_iterations {
                    return Err(limit(format!("range of {n} items is too large")));
                }
                Ok(Value::Array(Arc::new((a..=b).map(Value::Int).collect())))
            }
            Expr::Path(p) => self.eval_path(sc, p),
        }
    }

    fn range_bounds(&mut self, sc: &Scope, r: &(Expr, Expr)) -> Result<(i64, i64), Error> {
        let a = self.eval(sc, &r.0)?;
        let b = self.eval(sc, &r.1)?;
        Ok((range_int(&a), range_int(&b)))
    }

    fn eval_path(&mut self, sc: &Scope, p: &Path) -> Result<Value, Error> {
        let dyn_head;
        let name: &str = match &p.head {
            Head::Name(n) => n,
            Head::Dyn(e) => {
                dyn_head = self.eval(sc, e)?;
                match &dyn_head {
                    Value::Str(s) => s,
                    _ => return Ok(Value::Nil),
                }
            }
        };
        let mut segs = &p.segs[..];
        let globals: &'e Object = self.globals;
        let mut cur: Found<'_> = match sc.lookup(name) {
            Some(v) => Found::Ref(v),
            None => {
                if let Some((_, n)) = sc.counters.iter().find(|(k, _)| &**k == name) {
                    Found::Own(Value::Int(*n))
                } else if name == "forloop" || name == "tablerowloop" {
                    match sc.find_loop(name == "tablerowloop") {
                        Some(state) => match segs.first() {
                            Some(Seg::Key(k)) if &**k != "parentloop" => {
                                segs = &segs[1..];
                                Found::Own(loop_attr(sc, state, k))
                            }
                            _ => Found::Own(loop_object(sc, state)),
                        },
                        None => Found::Missing,
                    }
                } else {
                    match globals.get(name) {
                        Some(v) => Found::Ref(v),
                        None => Found::Missing,
                    }
                }
            }
        };
        for seg in segs {
            cur = match std::mem::replace(&mut cur, Found::Missing) {
                Found::Ref(v) => self.seg_lookup(sc, v, seg)?,
                Found::Own(v) => match self.seg_lookup(sc, &v, seg)? {
                    Found::Ref(r) => Found::Own(r.clone()),
                    Found::Own(x) => Found::Own(x),
                    Found::Missing => Found::Missing,
                },
                Found::Missing => break,
            };
        }
        match cur {
            Found::Ref(v) => Ok(v.clone()),
            Found::Own(v) => Ok(v),
            Found::Missing => self.undefined(p),
        }
    }

    fn seg_lookup<'v>(&mut self, sc: &Scope, base: &'v Value, seg: &Seg) -> Result<Found<'v>, Error> {
        Ok(match seg {
            Seg::Key(k) => get_key(base, k),
            Seg::Index(i) => get_index(base, *i),
            Seg::Dyn(e) => match self.eval(sc, e)? {
                Value::Int(i) => get_index(base, i),
                Value::Str(s) => match get_key(base, &s) {
                    Found::Ref(r) => Found::Ref(r),
                    Found::Own(v) => Found::Own(v),
                    Found::Missing => Found::Missing,
                },
                Value::Float(f) => get_index(base, f as i64),
                _ => Found::Own(Value::Nil),
            },
        })
    }

    fn undefined(&mut self, p: &Path) -> Result<Value, Error> {
        let path = path_display(p);
        if let Some(d) = &mut self.diag {
            if !self.guarded {
                d.undefined_variables.insert(path);
            }
            return Ok(Value::Nil);
        }
        if self.env.strict_variables {
            return Err(Error {
                kind: ErrorKind::UndefinedVariable,
                message: format!("undefined variable {path}"),
                line: None,
                column: None,
            });
        }
        Ok(Value::Nil)
    }

    fn eval_cond(&mut self, sc: &Scope, c: &Cond) -> Result<bool, Error> {
        if c.rest.is_empty() {
            return self.eval_cmp(sc, &c.first);
        }
        // `a and b or c` groups from the right: a and (b or c).
        let mut vals = Vec::with_capacity(c.rest.len() + 1);
        vals.push(self.eval_cmp(sc, &c.first)?);
        for (_, cmp) in &c.rest {
            vals.push(self.eval_cmp(sc, cmp)?);
        }
        let mut acc = vals[vals.len() - 1];
        for i in (0..c.rest.len()).rev() {
            acc = match c.rest[i].0 {
                Logic::And => vals[i] && acc,
                Logic::Or => vals[i] || acc,
            };
        }
        Ok(acc)
    }

    fn eval_cmp(&mut self, sc: &Scope, c: &Cmp) -> Result<bool, Error> {
        match c {
            Cmp::Truthy(e) => Ok(self.eval(sc, e)?.is_truthy()),
            Cmp::Bin(l, op, r) => {
                let special = |e: &Expr| matches!(e, Expr::Empty | Expr::Blank);
                if special(l) || special(r) {
                    let eq = match (l, r) {
                        (Expr::Empty | Expr::Blank, Expr::Empty | Expr::Blank) => false,
                        (Expr::Empty, other) | (other, Expr::Empty) => self.eval(sc, other)?.is_empty_value(),
                        (Expr::Blank, other) | (other, Expr::Blank) => self.eval(sc, other)?.is_blank(),
                        _ => false,
                    };
                    return Ok(match op {
                        CmpOp::Eq => eq,
                        CmpOp::Ne => !eq,
                        _ => false,
                    });
                }
                let a = self.eval(sc, l)?;
                let b = self.eval(sc, r)?;
                compare(&a, *op, &b)
            }
        }
    }

    fn case_matches(
        &mut self,
        sc: &Scope,
        subject: &Expr,
        subject_v: &Value,
        e: &Expr,
    ) -> Result<bool, Error> {
        match (subject, e) {
            (Expr::Empty | Expr::Blank, Expr::Empty | Expr::Blank) => Ok(false),
            (Expr::Empty, _) => Ok(self.eval(sc, e)?.is_empty_value()),
            (Expr::Blank, _) => Ok(self.eval(sc, e)?.is_blank()),
            (_, Expr::Empty) => Ok(subject_v.is_empty_value()),
            (_, Expr::Blank) => Ok(subject_v.is_blank()),
            _ => Ok(liquid_eq(subject_v, &self.eval(sc, e)?)),
        }
    }

    #[inline(never)]
    fn render_case(&mut self, sc: &mut Scope, c: &Case, out: &mut String) -> Result<Flow, Error> {
        let subject = self.eval(sc, &c.subject)?;
        let mut matched = false;
        for arm in &c.arms {
            match arm {
                Arm::When(values, body) => {
                    for v in values {
                        if self.case_matches(sc, &c.subject, &subject, v)? {
                            matched = true;
                            let flow = self.render_block(sc, body, out)?;
                            if !matches!(flow, Flow::Normal) {
                                return Ok(flow);
                            }
                        }
                    }
                }
                Arm::Else(body) => {
                    if !matched {
                        let flow = self.render_block(sc, body, out)?;
                        if !matches!(flow, Flow::Normal) {
                            return Ok(flow);
                        }
                    }
                }
            }
        }
        Ok(Flow::Normal)
    }

    /// Resolves a loop's collection, offset and limit into the slice to iterate.
    fn loop_segment(&mut self, sc: &mut Scope, f: &For) -> Result<(Seq, usize, usize), Error> {
        let seq = match &f.iter {
            Expr::Range(r) => {
                let (a, b) = self.range_bounds(sc, r)?;
                Seq::Range(a, b)
            }
            e => match self.eval(sc, e)? {
                Value::Array(a) => Seq::Arr(a),
                Value::Object(o) => Seq::Obj(o),
                Value::Str(s) if !s.is_empty() => Seq::One(Value::Str(s)),
                Value::Nil | Value::Bool(false) => Seq::Nil,
                _ => Seq::Arr(Arc::new(Vec::new())),
            },
        };
        let len = seq.len();
        let from = match &f.offset {
            Offset::None => 0,
            Offset::Continue => sc
                .offsets
                .iter()
                .find(|(k, _)| *k == f.name)
                .map_or(0, |(_, n)| *n),
            Offset::Expr(e) => {
                let v = self.eval(sc, e)?;
                if v.is_nil() {
                    0
                } else {
                    usize::try_from(loop_int(&v, "offset")?.max(0)).unwrap_or(0)
                }
            }
        };
        let limit = match &f.limit {
            None => None,
            Some(e) => {
                let v = self.eval(sc, e)?;
                if v.is_nil() {
                    None
                } else {
                    Some(usize::try_from(loop_int(&v, "limit")?.max(0)).unwrap_or(0))
                }
            }
        };
        let start = from.min(len);
        let end = match limit {
            Some(l) => start.saturating_add(l).min(len),
            None => len,
        };
        let next = from.saturating_add(end - start);
        match sc.offsets.iter_mut().find(|(k, _)| *k == f.name) {
            Some(slot) => slot.1 = next,
            None => sc.offsets.push((f.name.clone(), next)),
        }
        Ok((seq, start, end))
    }

    #[inline(never)]
    fn render_for(&mut self, sc: &mut Scope, f: &For, out: &mut String) -> Result<(), Error> {
        let (seq, start, end) = self.loop_segment(sc, f)?;
        let length = end - start;
        if length == 0 {
            if let Some(o) = &f.otherwise {
                self.render_block(sc, o, out)?;
            }
            return Ok(());
        }
        let parent = sc.find_loop(false).filter(|p| !sc.loops[*p].isolated);
        sc.loops.push(LoopState {
            name: f.name.clone(),
            index0: 0,
            length,
            parent,
            cols: None,
            isolated: false,
        });
        let state = sc.loops.len() - 1;
        sc.frames.push(Frame::Loop {
            var: f.var.clone(),
            item: Value::Nil,
            state,
        });
        let result = (|| {
            for n in 0..length {
                self.tick_loop()?;
                let idx = if f.reversed { end - 1 - n } else { start + n };
                let item = seq.get(idx);
                if let Some(Frame::Loop { item: slot, .. }) = sc.frames.last_mut() {
                    *slot = item;
                }
                sc.loops[state].index0 = n;
                match self.render_block(sc, &f.body, out)? {
                    Flow::Break => break,
                    Flow::Continue | Flow::Normal => {}
                }
            }
            Ok(())
        })();
        sc.frames.pop();
        sc.loops.pop();
        result
    }

    #[inline(never)]
    fn render_tablerow(&mut self, sc: &mut Scope, f: &For, out: &mut String) -> Result<(), Error> {
        let (seq, start, end) = self.loop_segment(sc, f)?;
        if matches!(seq, Seq::Nil) {
            // Shopify emits nothing at all for a nil collection.
            return Ok(());
        }
        let length = end - start;
        let cols = match &f.cols {
            None => length,
            Some(e) => {
                let v = self.eval(sc, e)?;
                if v.is_nil() {
                    length
                } else {
                    usize::try_from(loop_int(&v, "cols")?.max(0)).unwrap_or(0)
                }
            }
        };
        let cols = cols.max(1);
        let before = out.len();
        out.push_str("<tr class=\"row1\">\n");
        sc.loops.push(LoopState {
            name: f.name.clone(),
            index0: 0,
            length,
            parent: None,
            cols: Some(cols),
            isolated: false,
        });
        let state = sc.loops.len() - 1;
        sc.frames.push(Frame::Loop {
            var: f.var.clone(),
            item: Value::Nil,
            state,
        });
        let result = (|| {
            for n in 0..length {
                self.tick_loop()?;
                sc.loops[state].index0 = n;
                if let Some(Frame::Loop { item: slot, .. }) = sc.frames.last_mut() {
                    *slot = seq.get(start + n);
                }
                let col = n % cols + 1;
                out.push_str("<td class=\"col");
                out.push_str(&col.to_string());
                out.push_str("\">");
                let flow = self.render_block(sc, &f.body, out)?;
                out.push_str("</td>");
                // A `break` ends the table here: no empty row after it.
                if matches!(flow, Flow::Break) {
                    break;
                }
                if col == cols && n + 1 < length {
                    out.push_str("</tr>\n<tr class=\"row");
                    out.push_str(&(n / cols + 2).to_string());
                    out.push_str("\">");
                }
            }
            Ok(())
        })();
        sc.frames.pop();
        sc.loops.pop();
        result?;
        out.push_str("</tr>\n");
        self.wrote(out.len() - before)
    }

    fn enter_partial(&mut self, name: &str) -> Result<(), Error> {
        if self.depth >= self.env.limits.max_depth {
            return Err(limit(format!(
                "partials nested more than {} deep at '{name}'",
                self.env.limits.max_depth
            )));
        }
        self.depth += 1;
        self.step()
    }

    fn partial(&mut self, sc: &Scope, inc: &Include) -> Result<(String, Arc<Template>), Error> {
        let name = self.eval(sc, &inc.name)?.to_str().into_owned();
        match self.env.partials.partial(&name) {
            Ok(t) => Ok((name, t)),
            Err(PartialError::NotFound) => Err(render_error(format!("partial '{name}' not found"))),
            Err(PartialError::Refused(why)) => Err(render_error(format!("partial '{name}' refused: {why}"))),
            Err(PartialError::Invalid(e)) => Err(render_error(format!(
                "partial '{name}' is invalid: {}",
                located_message(&e)
            ))),
        }
    }

    #[inline(never)]
    fn render_include(&mut self, sc: &mut Scope, inc: &Include, out: &mut String) -> Result<Flow, Error> {
        if self.in_render > 0 {
            return Err(render_error(
                "'include' is not allowed inside a 'render'd partial",
            ));
        }
        let (name, tpl) = self.partial(sc, inc)?;
        let var: Arc<str> = inc.alias.clone().unwrap_or_else(|| Arc::from(name.as_str()));
        let bound = match &inc.bound {
            Some((e, _)) => Some(self.eval(sc, e)?),
            None => None,
        };
        // Parameters are set one by one, so that a later one can read an earlier one
        // (`{% include 't' a: 1, b: a %}`), as in Shopify.
        sc.frames
            .push(Frame::Vars(Vec::with_capacity(inc.args.len() + 1)));
        for (k, e) in &inc.args {
            match self.eval(sc, e) {
                Ok(v) => set_var(sc, k, v),
                Err(err) => {
                    sc.frames.pop();
                    return Err(err);
                }
            }
        }
        if let Err(e) = self.enter_partial(&name) {
            sc.frames.pop();
            return Err(e);
        }
        let result = (|| match bound {
            Some(Value::Array(items)) => {
                for item in items.iter() {
                    self.tick_loop()?;
                    set_var(sc, &var, item.clone());
                    let flow = self.render_block(sc, &tpl.nodes, out)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Ok(Flow::Normal)
            }
            Some(v) => {
                set_var(sc, &var, v);
                self.render_block(sc, &tpl.nodes, out)
            }
            None => self.render_block(sc, &tpl.nodes, out),
        })();
        sc.frames.pop();
        self.depth -= 1;
        result.map_err(|e| from_partial(&name, e))
    }

    #[inline(never)]
    fn render_render(&mut self, sc: &Scope, inc: &Include, out: &mut String) -> Result<(), Error> {
        let (name, tpl) = self.partial(sc, inc)?;
        let var: Arc<str> = inc.alias.clone().unwrap_or_else(|| Arc::from(name.as_str()));
        let mut vars = Vec::with_capacity(inc.args.len() + 1);
        for (k, e) in &inc.args {
            vars.push((k.clone(), self.eval(sc, e)?));
        }
        let bound = match &inc.bound {
            Some((e, is_for)) => Some((self.eval(sc, e)?, *is_for)),
            None => None,
        };
        self.enter_partial(&name)?;
        self.in_render += 1;
        let result = (|| match bound {
            Some((Value::Array(items), true)) => {
                let length = items.len();
                for (n, item) in items.iter().enumerate() {
                    self.tick_loop()?;
                    let mut inner = Scope::new();
                    inner.frames = vec![Frame::Vars(vars.clone())];
                    inner.loops.push(LoopState {
                        name: name.clone().into(),
                        index0: n,
                        length,
                        parent: None,
                        cols: None,
                        isolated: true,
                    });
                    inner.frames.push(Frame::Loop {
                        var: var.clone(),
                        item: item.clone(),
                        state: 0,
                    });
                    self.render_block(&mut inner, &tpl.nodes, out)?;
                }
                Ok(())
            }
            other => {
                let mut inner = Scope::new();
                let mut vars = vars;
                if let Some((v, _)) = other {
                    vars.push((var.clone(), v));
                }
                inner.frames = vec![Frame::Vars(vars)];
                self.render_block(&mut inner, &tpl.nodes, out).map(|_| ())
            }
        })();
        self.in_render -= 1;
        self.depth -= 1;
        result.map_err(|e| from_partial(&name, e))
    }
}

/// An error from inside a partial: its place in the partial goes into the message, and the
/// error is then placed at the `include`/`render` tag of the template being rendered.
fn from_partial(name: &str, mut e: Error) -> Error {
    if e.line.is_some() {
        e.message = format!("in '{name}', {}", located_message(&e));
        e.line = None;
        e.column = None;
    }
    e
}

fn located_message(e: &Error) -> String {
    match (e.line, e.column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: {}", e.message),
        _ => e.message.clone(),
    }
}

/// Where a node starts, for render errors.
fn node_pos(node: &Node) -> Option<Pos> {
    Some(match node {
        Node::Output(o) => o.pos,
        Node::Assign(a) => a.1.pos,
        Node::If(i) => i.branches.first()?.0.pos,
        Node::Case(c) => c.pos,
        Node::For(f) | Node::Tablerow(f) => f.pos,
        Node::Cycle(c) => c.pos,
        Node::Include(i) | Node::Render(i) => i.pos,
        _ => return None,
    })
}

fn set_var(sc: &mut Scope, var: &Arc<str>, v: Value) {
    if let Some(Frame::Vars(vars)) = sc.frames.last_mut() {
        match vars.iter_mut().find(|(k, _)| k == var) {
            Some(slot) => slot.1 = v,
            None => vars.push((var.clone(), v)),
        }
    }
}

enum Seq {
    /// A nil (or false) collection: no items.
    Nil,
    Range(i64, i64),
    Arr(Arc<Vec<Value>>),
    Obj(Arc<Object>),
    One(Value),
}

impl Seq {
    fn len(&self) -> usize {
        match self {
            Seq::Range(a, b) => {
                if b < a {
                    0
                } else {
                    usize::try_from(i128::from(*b) - i128::from(*a) + 1).unwrap_or(usize::MAX)
                }
            }
            Seq::Nil => 0,
            Seq::Arr(a) => a.len(),
            Seq::Obj(o) => o.len(),
            Seq::One(_) => 1,
        }
    }
    fn get(&self, i: usize) -> Value {
        match self {
            Seq::Range(a, _) => Value::Int(a.saturating_add(i64::try_from(i).unwrap_or(i64::MAX))),
            Seq::Nil => Value::Nil,
            Seq::Arr(a) => a.get(i).cloned().unwrap_or_default(),
            Seq::Obj(o) => o.pairs().nth(i).unwrap_or_default(),
            Seq::One(v) => v.clone(),
        }
    }
}

fn range_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Str(s) => match crate::value::parse_num(s.trim()) {
            Some(n) => n.as_f64() as i64,
            None => 0,
        },
        _ => 0,
    }
}

fn loop_int(v: &Value, what: &str) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) => Ok(*f as i64),
        Value::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| render_error(format!("{what} must be an integer, got '{s}'"))),
        other => Err(render_error(format!(
            "{what} must be an integer, got {}",
            other.type_name()
        ))),
    }
}

fn get_key<'v>(base: &'v Value, key: &str) -> Found<'v> {
    match base {
        Value::Object(o) => match o.get(key) {
            Some(v) => Found::Ref(v),
            None => match key {
                "size" => Found::Own(Value::Int(i64::try_from(o.len()).unwrap_or(i64::MAX))),
                "first" => Found::Own(o.pairs().next().unwrap_or_default()),
                _ => Found::Missing,
            },
        },
        Value::Array(a) => match key {
            "size" => Found::Own(Value::Int(i64::try_from(a.len()).unwrap_or(i64::MAX))),
            "first" => a.first().map_or(Found::Own(Value::Nil), Found::Ref),
            "last" => a.last().map_or(Found::Own(Value::Nil), Found::Ref),
            _ => Found::Own(Value::Nil),
        },
        Value::Str(s) if key == "size" => {
            Found::Own(Value::Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)))
        }
        _ => Found::Own(Value::Nil),
    }
}

fn get_index(base: &Value, i: i64) -> Found<'_> {
    match base {
        Value::Array(a) => {
            let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
            let idx = if i < 0 { i + len } else { i };
            if idx < 0 || idx >= len {
                return Found::Own(Value::Nil);
            }
            usize::try_from(idx)
                .ok()
                .and_then(|u| a.get(u))
                .map_or(Found::Own(Value::Nil), Found::Ref)
        }
        Value::Object(o) => o.get(&i.to_string()).map_or(Found::Missing, Found::Ref),
        _ => Found::Own(Value::Nil),
    }
}

fn loop_attr(sc: &Scope, state: usize, key: &str) -> Value {
    let l = &sc.loops[state];
    let i = l.index0;
    let int = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    match key {
        "index" => int(i + 1),
        "index0" => int(i),
        "rindex" => int(l.length - i),
        "rindex0" => int(l.length - i - 1),
        "first" => Value::Bool(i == 0),
        "last" => Value::Bool(i + 1 == l.length),
        "length" => int(l.length),
        "name" => Value::str(&l.name),
        "parentloop" => match l.parent {
            Some(p) => loop_object(sc, p),
            None => Value::Nil,
        },
        _ => match l.cols {
            Some(cols) => match key {
                "col" => int(i % cols + 1),
                "col0" => int(i % cols),
                "col_first" => Value::Bool(i.is_multiple_of(cols)),
                // The last column only: a short final row has no `col_last` cell, as in Shopify.
                "col_last" => Value::Bool(i % cols + 1 == cols),
                "row" => int(i / cols + 1),
                _ => Value::Nil,
            },
            None => Value::Nil,
        },
    }
}

fn loop_object(sc: &Scope, state: usize) -> Value {
    let mut o = Object::with_capacity(10);
    let mut keys = vec![
        "first",
        "index",
        "index0",
        "last",
        "length",
        "name",
        "rindex",
        "rindex0",
        "parentloop",
    ];
    if sc.loops[state].cols.is_some() {
        keys.extend(["col", "col0", "col_first", "col_last", "row"]);
    }
    for k in keys {
        o.insert(k, loop_attr(sc, state, k));
    }
    Value::Object(Arc::new(o))
}

pub(crate) fn path_display(p: &Path) -> String {
    let mut s = match &p.head {
        Head::Name(n) => n.to_string(),
        Head::Dyn(_) => "[…]".to_string(),
    };
    for seg in &p.segs {
        match seg {
            Seg::Key(k) if is_plain_ident(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push_str("[\"");
                s.push_str(k);
                s.push_str("\"]");
            }
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
            Seg::Dyn(_) => s.push_str("[…]"),
        }
    }
    s
}

pub(crate) fn is_plain_ident(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '?')
}

pub(crate) fn compare(a: &Value, op: CmpOp, b: &Value) -> Result<bool, Error> {
    Ok(match op {
        CmpOp::Eq => liquid_eq(a, b),
        CmpOp::Ne => !liquid_eq(a, b),
        CmpOp::Contains => match (a, b) {
            (_, Value::Nil | Value::Bool(false)) => false,
            (Value::Str(s), other) => s.contains(&*other.to_str()),
            (Value::Array(items), other) => items.iter().any(|x| liquid_eq(x, other)),
            (Value::Object(o), Value::Str(k)) => o.get(k).is_some(),
            _ => false,
        },
        CmpOp::Lt | CmpOp::Gt | CmpOp::Le | CmpOp::Ge => {
            let ord = match liquid_cmp(a, b) {
                Some(o) => o,
                None => {
                    let numeric = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
                    if (numeric(a) && matches!(b, Value::Str(_)))
                        || (numeric(b) && matches!(a, Value::Str(_)))
                    {
                        return Err(render_error(format!(
                            "cannot compare {} with {}",
                            a.type_name(),
                            b.type_name()
                        )));
                    }
                    return Ok(false);
                }
            };
            match op {
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Le => ord.is_le(),
                _ => ord.is_ge(),
            }
        }
    })
}
