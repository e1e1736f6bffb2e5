//! Static analysis for [`crate::Template::variables`]: which global paths a template reads.
//!
//! Best effort, in template order: a name counts as local once an `assign`, `capture`,
//! `increment`/`decrement` or loop has introduced it. A loop variable's properties are reported
//! as the loop's collection (`item.name` in `for item in cart.items` is `cart.items`). Paths stop
//! at the first computed index (`a[b].c` reports `a` and `b`); trailing `size`/`first`/`last`
//! are dropped. Partials, `{% block %}` content and filter internals are not followed.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ast::*;
use crate::render::is_plain_ident;

#[derive(Default)]
pub(crate) struct Analyzer {
    locals: Vec<Arc<str>>,
    /// Loop variables and the collection path each stands for.
    aliases: Vec<(Arc<str>, Option<String>)>,
    pub out: BTreeSet<String>,
}

impl Analyzer {
    pub(crate) fn block(&mut self, block: &[Node]) {
        for node in block {
            self.node(node);
        }
    }

    fn local(&mut self, name: &Arc<str>) {
        if !self.locals.contains(name) {
            self.locals.push(name.clone());
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Text(_) | Node::Break | Node::Continue | Node::Slot(_) => {}
            Node::Output(o) => self.output(o),
            Node::Assign(a) => {
                self.output(&a.1);
                self.local(&a.0);
            }
            Node::Capture(c) => {
                self.block(&c.1);
                self.local(&c.0);
            }
            Node::If(i) => {
                for (cond, _, body) in &i.branches {
                    self.cmp(&cond.first);
                    for (_, c) in &cond.rest {
                        self.cmp(c);
                    }
                    self.block(body);
                }
                if let Some(o) = &i.otherwise {
                    self.block(o);
                }
            }
            Node::Case(c) => {
                self.expr(&c.subject);
                for arm in &c.arms {
                    match arm {
                        Arm::When(values, body) => {
                            for v in values {
                                self.expr(v);
                            }
                            self.block(body);
                        }
                        Arm::Else(body) => self.block(body),
                    }
                }
            }
            Node::For(f) | Node::Tablerow(f) => {
                self.expr(&f.iter);
                for e in f.limit.iter().chain(f.cols.iter()) {
                    self.expr(e);
                }
                if let Offset::Expr(e) = &f.offset {
                    self.expr(e);
                }
                let collection = self.path_of(&f.iter);
                self.aliases.push((f.var.clone(), collection));
                self.block(&f.body);
                self.aliases.pop();
                if let Some(o) = &f.otherwise {
                    self.block(o);
                }
            }
            Node::Cycle(c) => {
                for e in c.group.iter().chain(c.items.iter()) {
                    self.expr(e);
                }
            }
            Node::Increment(n) | Node::Decrement(n) => self.local(n),
            Node::IfChanged(b) => self.block(b),
            Node::Include(inc) | Node::Render(inc) => {
                self.expr(&inc.name);
                if let Some((e, _)) = &inc.bound {
                    self.expr(e);
                }
                for (_, e) in &inc.args {
                    self.expr(e);
                }
            }
        }
    }

    fn output(&mut self, o: &Output) {
        self.expr(&o.expr);
        for f in &o.filters {
            for a in &f.args {
                self.expr(a);
            }
            for (_, a) in &f.kwargs {
                self.expr(a);
            }
        }
    }

    fn cmp(&mut self, c: &Cmp) {
        match c {
            Cmp::Truthy(e) => self.expr(e),
            Cmp::Bin(a, _, b) => {
                self.expr(a);
                self.expr(b);
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Lit(_) | Expr::Empty | Expr::Blank => {}
            Expr::Range(r) => {
                self.expr(&r.0);
                self.expr(&r.1);
            }
            Expr::Path(p) => {
                for seg in &p.segs {
                    if let Seg::Dyn(d) = seg {
                        self.expr(d);
                    }
                }
                match &p.head {
                    Head::Dyn(d) => self.expr(d),
                    Head::Name(_) => {
                        if let Some(path) = self.path_of(e) {
                            self.out.insert(path);
                        }
                    }
                }
            }
        }
    }

    /// The global path an expression reads, if it is a path rooted in a global.
    fn path_of(&self, e: &Expr) -> Option<String> {
        let Expr::Path(p) = e else { return None };
        let Head::Name(name) = &p.head else { return None };
        if let Some((_, alias)) = self.aliases.iter().rev().find(|(v, _)| v == name) {
            return alias.clone();
        }
        if self.locals.contains(name) || &**name == "forloop" || &**name == "tablerowloop" {
            return None;
        }
        let mut s = name.to_string();
        let mut segs: Vec<&Seg> = p.segs.iter().take_while(|s| !matches!(s, Seg::Dyn(_))).collect();
        while matches!(segs.last(), Some(Seg::Key(k)) if matches!(&**k, "size" | "first" | "last")) {
            segs.pop();
        }
        for seg in segs {
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
                Seg::Dyn(_) => break,
            }
        }
        Some(s)
    }
}
