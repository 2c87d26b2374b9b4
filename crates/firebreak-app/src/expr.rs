//! Conditions in CEL (suppression rules, the plan's classification rules) over one variable,
//! `event`. Compiled once; evaluated per event. The common shape of a rule, a conjunction of
//! `event.<field> == "literal"` tests, is checked first against the event's plain fields, so
//! that rules that cannot match cost no CEL evaluation at all.

use cel::common::ast::{Expr, LiteralValue};
use cel::{Context, Env, Program, Value};
use serde::Serialize;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// The fields a fast pre-check may compare (plain strings of the event).
const PLAIN: &[&str] = &[
    "source",
    "source_kind",
    "rule_id",
    "title",
    "severity",
    "host",
    "status",
];

/// The event as CEL sees it: `event.source`, `event.rule_id`, `event.fields.src_ip`...
#[derive(Debug, Clone, Serialize)]
pub struct CelEvent<'a> {
    pub source: &'a str,
    pub source_kind: &'a str,
    pub source_ref: Option<&'a str>,
    pub rule_id: Option<&'a str>,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub severity: &'a str,
    pub original_severity: Option<&'a str>,
    pub host: Option<&'a str>,
    pub status: &'a str,
    pub tags: &'a [String],
    pub fields: &'a serde_json::Map<String, serde_json::Value>,
    pub observables: Vec<CelObservable<'a>>,
    pub assets: Vec<&'a str>,
    /// An affected asset is critical production.
    pub critical_asset: bool,
    pub reporter_kind: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CelObservable<'a> {
    pub kind: &'a str,
    pub value: &'a str,
}

impl CelEvent<'_> {
    /// One attribute as CEL sees it (as in the whole event serialized), `None` if the event
    /// has no such attribute.
    fn attribute(&self, name: &str) -> Option<Result<Value, cel::SerializationError>> {
        Some(match name {
            "source" => cel::to_value(self.source),
            "source_kind" => cel::to_value(self.source_kind),
            "source_ref" => cel::to_value(self.source_ref),
            "rule_id" => cel::to_value(self.rule_id),
            "title" => cel::to_value(self.title),
            "description" => cel::to_value(self.description),
            "severity" => cel::to_value(self.severity),
            "original_severity" => cel::to_value(self.original_severity),
            "host" => cel::to_value(self.host),
            "status" => cel::to_value(self.status),
            "tags" => cel::to_value(self.tags),
            "fields" => cel::to_value(self.fields),
            "observables" => cel::to_value(&self.observables),
            "assets" => cel::to_value(&self.assets),
            "critical_asset" => cel::to_value(self.critical_asset),
            "reporter_kind" => cel::to_value(self.reporter_kind),
            _ => return None,
        })
    }

    fn plain(&self, field: &str) -> Option<&str> {
        match field {
            "source" => Some(self.source),
            "source_kind" => Some(self.source_kind),
            "rule_id" => self.rule_id,
            "title" => Some(self.title),
            "severity" => Some(self.severity),
            "host" => self.host,
            "status" => Some(self.status),
            _ => None,
        }
    }
}

/// A compiled condition.
pub struct Condition {
    source: String,
    program: Program,
    /// `(field, literal)` pairs that must all hold for the condition to be true.
    required: Vec<(&'static str, String)>,
    /// `(key of event.fields, literal)` pairs that must all hold too.
    required_fields: Vec<(String, FieldLiteral)>,
    /// What of the event the condition reads (attributes, keys of `event.fields`).
    needs: FieldNeeds,
}

/// What of the event some conditions read: only that is handed to CEL (an event's fields can
/// be many and nested, and its observables a long list; converting the whole event for every
/// event was the most expensive part of evaluating a rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldNeeds {
    /// The whole map of fields (`event.fields` used as a value, `event` used whole).
    pub all: bool,
    /// The keys of `event.fields` read (`event.fields.src_ip`...).
    pub keys: std::collections::BTreeSet<String>,
    /// The event used whole (`event` not only through `event.<attribute>`): every attribute.
    pub whole: bool,
    /// The event's attributes read (`event.source`, `has(event.host)`, `event.fields`...).
    pub attributes: std::collections::BTreeSet<String>,
}

impl FieldNeeds {
    pub fn union(&mut self, other: &FieldNeeds) {
        self.all |= other.all;
        self.keys.extend(other.keys.iter().cloned());
        self.whole |= other.whole;
        self.attributes.extend(other.attributes.iter().cloned());
    }

    /// Everything: for an input evaluated by unknown conditions.
    pub fn everything() -> Self {
        Self {
            all: true,
            keys: Default::default(),
            whole: true,
            attributes: Default::default(),
        }
    }
}

/// What of the event an expression reads: its attributes and the keys of `event.fields`.
fn field_needs(e: &Expr, out: &mut FieldNeeds) {
    let is_event = |x: &Expr| matches!(x, Expr::Ident(n) if n == "event");
    match e {
        Expr::Select(s) => {
            if let Expr::Select(inner) = &s.operand.expr
                && inner.field == "fields"
                && is_event(&inner.operand.expr)
            {
                out.keys.insert(s.field.clone());
                out.attributes.insert("fields".into());
            } else if is_event(&s.operand.expr) {
                if s.field == "fields" {
                    out.all = true;
                }
                out.attributes.insert(s.field.clone());
            } else {
                field_needs(&s.operand.expr, out);
            }
        }
        Expr::Ident(n) => {
            if n == "event" {
                out.all = true;
                out.whole = true;
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                field_needs(&t.expr, out);
            }
            for a in &c.args {
                field_needs(&a.expr, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                field_needs(&x.expr, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    field_needs(&me.key.expr, out);
                    field_needs(&me.value.expr, out);
                } else {
                    out.all = true;
                }
            }
        }
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                field_needs(&x.expr, out);
            }
        }
        Expr::Struct(_) => {
            out.all = true;
            out.whole = true;
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish()
    }
}

/// An evaluation input built once per event and shared by every condition: the event goes
/// to CEL at most once, when the first condition past its precheck needs it.
pub struct Input<'a> {
    event: &'a CelEvent<'a>,
    needs: &'a FieldNeeds,
    ctx: std::cell::OnceCell<Option<Context<'static, 'static>>>,
}

static EVERYTHING: std::sync::LazyLock<FieldNeeds> =
    std::sync::LazyLock::new(FieldNeeds::everything);

impl<'a> Input<'a> {
    /// An input for any condition (every field handed to CEL).
    pub fn new(event: &'a CelEvent<'a>) -> Self {
        Self::for_needs(event, &EVERYTHING)
    }

    /// An input for conditions that read only `needs` of the event.
    pub fn for_needs(event: &'a CelEvent<'a>, needs: &'a FieldNeeds) -> Self {
        Self {
            event,
            needs,
            ctx: std::cell::OnceCell::new(),
        }
    }

    /// The event as CEL sees it, with what `needs` names of it.
    fn value(&self) -> Option<Value> {
        let some: serde_json::Map<String, serde_json::Value>;
        let mut e = self.event.clone();
        if !self.needs.all {
            some = self
                .needs
                .keys
                .iter()
                .filter_map(|k| self.event.fields.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            e.fields = &some;
        }
        if self.needs.whole {
            return cel::to_value(&e).ok();
        }
        let mut map = std::collections::HashMap::with_capacity(self.needs.attributes.len());
        for name in &self.needs.attributes {
            // an attribute the event does not have stays absent, as in the whole event
            if let Some(v) = e.attribute(name) {
                map.insert(name.clone(), v.ok()?);
            }
        }
        Some(Value::Map(map.into()))
    }

    fn context(&self) -> Option<&Context<'static, 'static>> {
        self.ctx
            .get_or_init(|| {
                let value = self.value()?;
                let mut ctx = Context::with_env(ENV.clone());
                ctx.add_variable_from_value("event", value);
                Some(ctx)
            })
            .as_ref()
    }
}

fn select_event_field(e: &Expr) -> Option<&'static str> {
    if let Expr::Select(s) = e
        && !s.test
        && matches!(&s.operand.expr, Expr::Ident(n) if n == "event")
    {
        return PLAIN.iter().copied().find(|f| *f == s.field);
    }
    None
}

fn literal(e: &Expr) -> Option<String> {
    if let Expr::Literal(LiteralValue::String(s)) = e {
        return Some(s.inner().to_string());
    }
    None
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    if let Expr::Call(c) = e
        && c.func_name == "_&&_"
        && c.target.is_none()
    {
        for a in &c.args {
            conjuncts(&a.expr, out);
        }
        return;
    }
    out.push(e);
}

/// `event.fields.<key>`: the key.
fn select_fields_key(e: &Expr) -> Option<&str> {
    if let Expr::Select(s) = e
        && !s.test
        && let Expr::Select(inner) = &s.operand.expr
        && !inner.test
        && inner.field == "fields"
        && matches!(&inner.operand.expr, Expr::Ident(n) if n == "event")
    {
        return Some(&s.field);
    }
    None
}

/// A literal a key of `event.fields` is compared with.
#[derive(Debug, Clone, PartialEq)]
enum FieldLiteral {
    Str(String),
    Int(i64),
    /// `event.fields.<key>.startsWith("…")`: the field must be a string with this prefix.
    Prefix(String),
}

impl FieldLiteral {
    fn of(e: &Expr) -> Option<Self> {
        match e {
            Expr::Literal(LiteralValue::String(s)) => Some(Self::Str(s.inner().to_string())),
            Expr::Literal(LiteralValue::Int(i)) => Some(Self::Int(*i.inner())),
            _ => None,
        }
    }

    /// Whether CEL's `==` could be true for this value (a necessary condition only: a
    /// number of another kind with the same value passes, and CEL decides).
    fn may_equal(&self, v: Option<&serde_json::Value>) -> bool {
        match (self, v) {
            (Self::Str(l), Some(serde_json::Value::String(v))) => v == l,
            (Self::Prefix(p), Some(serde_json::Value::String(v))) => v.starts_with(p.as_str()),
            (Self::Int(l), Some(serde_json::Value::Number(n))) => {
                n.as_i64() == Some(*l) || n.as_f64() == Some(*l as f64)
            }
            _ => false,
        }
    }
}

/// The `x == y` conjuncts of `e` where one side is what `side` accepts and the other a literal
/// `literal` accepts (either way round).
fn equality_conjuncts<K, L>(
    e: &Expr,
    side: impl Fn(&Expr) -> Option<K>,
    literal: impl Fn(&Expr) -> Option<L>,
) -> Vec<(K, L)> {
    let mut parts = Vec::new();
    conjuncts(e, &mut parts);
    parts
        .into_iter()
        .filter_map(|p| {
            let Expr::Call(c) = p else { return None };
            if c.func_name != "_==_" || c.args.len() != 2 {
                return None;
            }
            let (a, b) = (&c.args[0].expr, &c.args[1].expr);
            match (side(a), literal(b)) {
                (Some(k), Some(l)) => Some((k, l)),
                _ => Some((side(b)?, literal(a)?)),
            }
        })
        .collect()
}

/// `event.fields.<key> == <literal>` conjuncts: a field that is absent or differs fails the
/// condition without CEL (CEL would answer false, or an error for an absent key, which does
/// not match either).
fn required_fields(e: &Expr) -> Vec<(String, FieldLiteral)> {
    let mut out = equality_conjuncts(
        e,
        |x| select_fields_key(x).map(str::to_string),
        FieldLiteral::of,
    );
    // `event.fields.<key>.startsWith("literal")` conjuncts: CEL answers false for a string
    // without the prefix, and an error (no match) for an absent key or another type
    let mut parts = Vec::new();
    conjuncts(e, &mut parts);
    for p in parts {
        if let Expr::Call(c) = p
            && c.func_name == "startsWith"
            && c.args.len() == 1
            && let Some(target) = &c.target
            && let Some(key) = select_fields_key(&target.expr)
            && let Some(prefix) = literal(&c.args[0].expr)
        {
            out.push((key.to_string(), FieldLiteral::Prefix(prefix)));
        }
    }
    out
}

/// `event.<plain attribute> == "literal"` conjuncts.
fn required(e: &Expr) -> Vec<(&'static str, String)> {
    equality_conjuncts(e, select_event_field, literal)
}

/// Type names CEL lets an expression mention as identifiers.
const TYPE_NAMES: &[&str] = &[
    "event",
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// Identifiers that are neither `event`, a type name nor bound by a comprehension.
fn free_idents(e: &Expr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match e {
        Expr::Ident(n) => {
            if !TYPE_NAMES.contains(&n.as_str()) && !bound.iter().any(|b| b == n) {
                out.push(n.clone());
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_idents(&t.expr, bound, out);
            }
            for a in &c.args {
                free_idents(&a.expr, bound, out);
            }
        }
        Expr::Select(s) => free_idents(&s.operand.expr, bound, out),
        Expr::List(l) => {
            for x in &l.elements {
                free_idents(&x.expr, bound, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    free_idents(&me.key.expr, bound, out);
                    free_idents(&me.value.expr, bound, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range.expr, bound, out);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                free_idents(&x.expr, bound, out);
            }
            bound.truncate(before);
        }
        Expr::Literal(_) | Expr::Struct(_) | Expr::Unspecified => {}
    }
}

/// Longest condition compiled, in bytes. Stored conditions are at most 4,000 characters; this
/// also keeps cel's parse errors printable (a caret past column 65,535 panics in `Display`).
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;

/// Most operator characters (`+ - * / % = ! < > & | ? . [ (` and the word `in`) a condition
/// may hold outside its string literals. cel's parser and evaluator recurse once per link of a
/// chain such as `1 + 1 + 1 ...` or `a == b == c ...`, and about 1,200 links overflowed a
/// 2 MiB thread stack (debug build), which kills the process.
pub const MAX_OPERATORS: usize = 500;

/// Refuses text too long, or with more than [`MAX_OPERATORS`] operators, before cel parses it.
/// String literals are skipped as CEL reads them: `"` `'` or tripled, with an `r` prefix taking
/// backslashes literally; a one-line literal also ends at a line break.
fn check_source(source: &str) -> Result<(), String> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!("longer than {MAX_SOURCE_BYTES} bytes"));
    }
    let b = source.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let (mut i, mut ops) = (0usize, 0usize);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' | b'\'' => {
                // the prefix letters right before the quote (`r`, `b`, `rb`...)
                let mut p = i;
                while p > 0 && matches!(b[p - 1], b'r' | b'R' | b'b' | b'B') {
                    p -= 1;
                }
                let raw = (p == 0 || !ident(b[p - 1]))
                    && b[p..i].iter().any(|x| matches!(x, b'r' | b'R'));
                let triple = b.get(i..i + 3).is_some_and(|t| t.iter().all(|x| *x == c));
                i += if triple { 3 } else { 1 };
                while let Some(&d) = b.get(i) {
                    if d == b'\\' && !raw {
                        i += 2;
                        continue;
                    }
                    if !triple && d == b'\n' {
                        break;
                    }
                    if d == c
                        && (!triple || b.get(i..i + 3).is_some_and(|t| t.iter().all(|x| *x == c)))
                    {
                        i += if triple { 3 } else { 1 };
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'!' | b'<' | b'>' | b'&' | b'|' | b'?'
            | b'.' | b'[' | b'(' => ops += 1,
            _ if ident(c) => {
                let start = i;
                while b.get(i).is_some_and(|x| ident(*x)) {
                    i += 1;
                }
                if &b[start..i] == b"in" {
                    ops += 1;
                }
                if ops > MAX_OPERATORS {
                    break;
                }
                continue;
            }
            _ => {}
        }
        if ops > MAX_OPERATORS {
            break;
        }
        i += 1;
    }
    if ops > MAX_OPERATORS {
        return Err(format!(
            "more than {MAX_OPERATORS} operators; split the condition"
        ));
    }
    Ok(())
}

/// The most evaluation steps a condition may take in the worst case, by [`cost`]'s estimate.
/// CEL has no fuel: list macros (`all`, `exists`, `map`, `filter`...) nested over lists, or
/// `in` tested over a list inside one, multiply, and a 300-character condition could run for
/// hours. Such conditions are refused when compiled (about 50 ms of evaluation at most).
pub const MAX_COST: u64 = 200_000;

/// The length assumed for a list that comes from the event or the run (tags, observables,
/// field values), whose length the condition cannot know.
const DATA_LIST_LEN: u64 = 1_000;

/// The number of elements of a list or map literal; data lists count as [`DATA_LIST_LEN`].
fn range_len(e: &Expr) -> u64 {
    match e {
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        _ => DATA_LIST_LEN,
    }
}

/// A worst-case estimate of the steps evaluating `e` takes: every node counts one, a
/// comprehension its body once per element of its range, `in` one per element of its list.
fn cost(e: &Expr) -> u64 {
    match e {
        Expr::Literal(_) | Expr::Ident(_) | Expr::Unspecified => 1,
        Expr::Select(s) => cost(&s.operand.expr).saturating_add(1),
        Expr::Call(c) => {
            let mut total = c
                .args
                .iter()
                .fold(1u64, |acc, a| acc.saturating_add(cost(&a.expr)));
            if let Some(t) = &c.target {
                total = total.saturating_add(cost(&t.expr));
            }
            if c.func_name == cel::common::ast::operators::IN
                && let Some(list) = c.args.get(1)
            {
                total = total.saturating_add(range_len(&list.expr));
            }
            total
        }
        Expr::List(l) => l
            .elements
            .iter()
            .fold(1u64, |acc, x| acc.saturating_add(cost(&x.expr))),
        Expr::Map(m) => m.entries.iter().fold(1u64, |acc, entry| {
            acc.saturating_add(match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(me) => {
                    cost(&me.key.expr).saturating_add(cost(&me.value.expr))
                }
                cel::common::ast::EntryExpr::StructField(f) => cost(&f.value.expr),
            })
        }),
        Expr::Struct(st) => st.entries.iter().fold(1u64, |acc, entry| {
            acc.saturating_add(match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(me) => {
                    cost(&me.key.expr).saturating_add(cost(&me.value.expr))
                }
                cel::common::ast::EntryExpr::StructField(f) => cost(&f.value.expr),
            })
        }),
        Expr::Comprehension(c) => {
            let per_element = cost(&c.loop_cond.expr).saturating_add(cost(&c.loop_step.expr));
            cost(&c.iter_range.expr)
                .saturating_add(cost(&c.accu_init.expr))
                .saturating_add(range_len(&c.iter_range.expr).saturating_mul(per_element))
                .saturating_add(cost(&c.result.expr))
        }
    }
}

/// Refuses a program whose worst case is over [`MAX_COST`].
fn check_cost(program: &Program) -> Result<(), String> {
    let c = cost(&program.expression().expr);
    if c > MAX_COST {
        return Err(format!(
            "too costly to evaluate (about {c} steps in the worst case, at most {MAX_COST}): \
             list macros (all, exists, map, filter) nested over lists, or `in` over a list \
             inside one, multiply; test the lists one after the other instead"
        ));
    }
    Ok(())
}

impl Condition {
    /// Compiles `source`; the error says what is wrong, in CEL's words.
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("must not be blank".into());
        }
        check_source(source)?;
        let program = ENV.compile(source).map_err(|e| e.to_string())?;
        let mut free = Vec::new();
        free_idents(&program.expression().expr, &mut vec![], &mut free);
        if let Some(v) = free.first() {
            return Err(format!(
                "unknown variable {v:?}: conditions refer to the event as `event`, e.g. event.source"
            ));
        }
        check_cost(&program)?;
        let required = required(&program.expression().expr);
        let required_fields = required_fields(&program.expression().expr);
        let mut needs = FieldNeeds::default();
        field_needs(&program.expression().expr, &mut needs);
        Ok(Self {
            source: source.to_string(),
            program,
            required,
            required_fields,
            needs,
        })
    }

    /// What of the event the condition reads.
    pub fn needs(&self) -> &FieldNeeds {
        &self.needs
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the event matches. A condition that fails to evaluate (a type error, a missing
    /// key) or gives a non-boolean does not match; the error is returned for logging. A
    /// conjunct `event.<attribute> == "literal"`, `event.fields.<key> == literal` or
    /// `event.fields.<key>.startsWith("literal")` that fails (the key absent included) is a
    /// plain non-match, decided before CEL.
    pub fn matches(&self, input: &Input<'_>) -> Result<bool, String> {
        for (field, lit) in &self.required {
            if input.event.plain(field) != Some(lit.as_str()) {
                return Ok(false);
            }
        }
        for (key, lit) in &self.required_fields {
            if !lit.may_equal(input.event.fields.get(key)) {
                return Ok(false);
            }
        }
        let Some(ctx) = input.context() else {
            return Err("the event could not be given to CEL".into());
        };
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("gave {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A condition over a JSON context with named variables (a playbook's `event`, `ticket`,
/// `steps`...): compiled once, evaluated per run.
pub struct ContextCondition {
    source: String,
    program: Program,
    /// Every variable the condition may use: all are declared (`null` when absent).
    vars: Vec<String>,
}

impl std::fmt::Debug for ContextCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl ContextCondition {
    /// Compiles `source`, refusing variables other than `vars`.
    pub fn compile(source: &str, vars: &[&str]) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("must not be blank".into());
        }
        check_source(source)?;
        let program = ENV.compile(source).map_err(|e| e.to_string())?;
        let mut free = Vec::new();
        free_idents(&program.expression().expr, &mut vec![], &mut free);
        if let Some(v) = free.iter().find(|v| !vars.contains(&v.as_str())) {
            return Err(format!(
                "unknown variable {v:?}: the variables are {}",
                vars.join(", ")
            ));
        }
        check_cost(&program)?;
        Ok(Self {
            source: source.to_string(),
            program,
            vars: vars.iter().map(|v| v.to_string()).collect(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against the context's top-level keys (absent ones are `null`); an error or a
    /// non-boolean result is an `Err` saying why.
    pub fn eval(
        &self,
        context: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, String> {
        let mut ctx = Context::with_env(ENV.clone());
        for name in &self.vars {
            let v = context.get(name).unwrap_or(&serde_json::Value::Null);
            let v = cel::to_value(v).map_err(|e| format!("{name}: {e}"))?;
            ctx.add_variable_from_value(name.clone(), v);
        }
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("gave {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event<'a>(
        fields: &'a serde_json::Map<String, serde_json::Value>,
        tags: &'a [String],
    ) -> CelEvent<'a> {
        CelEvent {
            source: "ids",
            source_kind: "sensor",
            source_ref: None,
            rule_id: Some("2100498"),
            title: "GPL ATTACK_RESPONSE id check returned root",
            description: None,
            severity: "high",
            original_severity: Some("1"),
            host: Some("sensor-1"),
            status: "new",
            tags,
            fields,
            observables: vec![CelObservable {
                kind: "ip",
                value: "10.0.0.1",
            }],
            assets: vec![],
            critical_asset: false,
            reporter_kind: None,
        }
    }

    #[test]
    fn matches_the_documented_example_and_prechecks_literals() {
        let mut fields = serde_json::Map::new();
        fields.insert("src_ip".into(), serde_json::json!("10.0.0.1"));
        let tags = vec!["ids".to_string()];
        let e = event(&fields, &tags);
        let input = Input::new(&e);
        let c =
            Condition::compile(r#"event.source == "ids" && event.rule_id == "2100498""#).unwrap();
        assert_eq!(c.required.len(), 2);
        assert!(c.matches(&input).unwrap());
        let c =
            Condition::compile(r#"event.source == "wazuh" && event.rule_id == "2100498""#).unwrap();
        let fresh = Input::new(&e);
        assert!(!c.matches(&fresh).unwrap());
        assert!(
            fresh.ctx.get().is_none(),
            "no CEL value built for a precheck miss"
        );
        let c = Condition::compile(
            r#"event.fields.src_ip.startsWith("10.") && "ids" in event.tags && event.observables.exists(o, o.kind == "ip")"#,
        )
        .unwrap();
        assert!(c.matches(&input).unwrap());
        let c = Condition::compile(r#"event.fields.nope.size() > 0"#).unwrap();
        assert!(c.matches(&input).is_err(), "a missing key is an error");
        // a prefix is prechecked like a literal: a missing key, another type or another
        // prefix is no match, without CEL
        for cond in [
            r#"event.fields.nope.startsWith("x")"#,
            r#"event.fields.src_ip.startsWith("192.") && "ids" in event.tags"#,
        ] {
            let c = Condition::compile(cond).unwrap();
            let fresh = Input::new(&e);
            assert_eq!(c.matches(&fresh), Ok(false), "{cond}");
            assert!(fresh.ctx.get().is_none(), "no CEL value built for {cond}");
        }
        let c = Condition::compile(
            r#"event.fields.src_ip.startsWith("10.0.") && !("ids" in event.tags)"#,
        )
        .unwrap();
        assert_eq!(c.required_fields.len(), 1);
        let fresh = Input::new(&e);
        assert_eq!(c.matches(&fresh), Ok(false), "CEL decides the rest");
        assert!(fresh.ctx.get().is_some());
        // compared with a literal, a missing key is simply no match (prechecked)
        let c = Condition::compile(r#"event.fields.nope == "x""#).unwrap();
        assert_eq!(c.matches(&input), Ok(false));
    }

    #[test]
    fn rejects_bad_conditions_with_a_reason() {
        assert!(Condition::compile("event.source ==").is_err());
        assert!(Condition::compile("   ").is_err());
        let e = Condition::compile(r#"request.host == "x""#).unwrap_err();
        assert!(e.contains("request"), "{e}");
    }

    /// Found by fuzz/cel: nested list macros ran for hours (ten elements, eight levels: 10^8
    /// steps). Refused when compiled, with a reason; ordinary rules still compile.
    #[test]
    fn refuses_conditions_too_costly_to_evaluate() {
        let ten = "[0,1,2,3,4,5,6,7,8,9]";
        let mut nested = "1".to_string();
        for v in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            nested = format!("{ten}.map({v}, {nested})");
        }
        let nested = format!("size({nested}) > 0");
        let e = Condition::compile(&nested).unwrap_err();
        assert!(e.contains("too costly"), "{e}");
        let e = ContextCondition::compile(&nested, &["event"]).unwrap_err();
        assert!(e.contains("too costly"), "{e}");
        // data lists nested in each other, and `in` over data inside a macro over data
        for bad in [
            r#"event.observables.exists(o, event.tags.exists(t, t == o.value))"#,
            r#"event.fields.a.all(x, x in event.fields.b)"#,
        ] {
            assert!(Condition::compile(bad).is_err(), "{bad}");
        }
        for fine in [
            r#"event.observables.exists(o, o.kind == "ip" && o.value.startsWith("10."))"#,
            r#"event.tags.exists(t, t in ["phishing", "malware", "ransomware"])"#,
            r#"event.fields.src_ip in ["10.0.0.1", "10.0.0.2"] && size(event.tags) > 2"#,
            r#"[1, 2, 3].all(x, [4, 5, 6].exists(y, x < y))"#,
        ] {
            assert!(Condition::compile(fine).is_ok(), "{fine}");
        }
        assert!(
            ContextCondition::compile(r#"steps.lookup.verdict == "malicious""#, &["steps"]).is_ok()
        );
    }

    /// Found with fuzz/cel seeds: long operator chains overflowed the stack (about 1,200 links
    /// on 2 MiB), and a parse error past column 65,535 panicked while being printed.
    #[test]
    fn long_chains_and_long_lines_are_refused_before_parsing() {
        for chain in [
            format!("1{} == 1", " + 1".repeat(50_000)),
            format!("event.fields.a{} == 1", "[0]".repeat(50_000)),
            format!("1{}", " == 1".repeat(50_000)),
            // hidden after strings as CEL reads them: a raw string, a triple-quoted one
            format!(r#"r"" == "x"{}"#, " + 1".repeat(1_000)),
            format!(r#""""a"b""" == "x"{}"#, " + 1".repeat(1_000)),
        ] {
            let e = Condition::compile(&chain).unwrap_err();
            assert!(e.contains("operators") || e.contains("bytes"), "{e}");
            assert!(ContextCondition::compile(&chain, &["event"]).is_err());
        }
        // cel reports this error at column 66,001 and its Display panics on such a caret
        let long_line = format!("{}1 +", " ".repeat(66_000));
        assert!(
            Condition::compile(&long_line)
                .unwrap_err()
                .contains("bytes")
        );
        // operators inside strings do not count; a long `in` list is fine
        let regex = format!(r#"event.title.matches("^({})$")"#, "a|b.c".repeat(300));
        assert!(Condition::compile(&regex).is_ok());
        let ips: Vec<String> = (0..200).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let list = format!("event.fields.src_ip in [{}]", ips.join(", "));
        assert!(Condition::compile(&list).is_ok());
    }

    #[test]
    fn conditions_hand_cel_only_the_fields_they_read() {
        let c = Condition::compile(
            r#"event.fields.dest_port == 53 && event.severity == "low" && has(event.fields.dns)"#,
        )
        .unwrap();
        assert!(!c.needs().all);
        assert_eq!(
            c.needs()
                .keys
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            vec!["dest_port", "dns"]
        );
        for whole in [
            r#""x" in event.fields"#,
            r#"event.fields["dest_port"] == 53"#,
            "size(event) > 0",
        ] {
            assert!(Condition::compile(whole).unwrap().needs().all, "{whole}");
        }
        // and a condition still sees the fields it reads, and only those
        let mut fields = serde_json::Map::new();
        fields.insert("dest_port".into(), serde_json::json!(53));
        fields.insert("other".into(), serde_json::json!({"deep": [1, 2, 3]}));
        let tags = vec![];
        let e = event(&fields, &tags);
        let port = Condition::compile("event.fields.dest_port == 53").unwrap();
        let input = Input::for_needs(&e, port.needs());
        assert_eq!(port.matches(&input), Ok(true));
        let other = Condition::compile("has(event.fields.other)").unwrap();
        assert_eq!(other.matches(&input), Ok(false), "not handed over");
        assert_eq!(other.matches(&Input::new(&e)), Ok(true));
        // nor the event's other attributes
        assert_eq!(
            port.needs().attributes.iter().collect::<Vec<_>>(),
            vec!["fields"]
        );
        let title = Condition::compile(r#"event.title.startsWith("GPL")"#).unwrap();
        assert!(title.matches(&input).is_err(), "title not handed over");
        let mut both = port.needs().clone();
        both.union(title.needs());
        assert_eq!(title.matches(&Input::for_needs(&e, &both)), Ok(true));
    }

    /// `event.fields.<key> == literal` is checked before CEL: a miss builds nothing, and what
    /// passes is still decided by CEL.
    #[test]
    fn field_literals_are_prechecked() {
        let mut fields = serde_json::Map::new();
        fields.insert("dest_port".into(), serde_json::json!(53));
        fields.insert("proto".into(), serde_json::json!("UDP"));
        fields.insert("ratio".into(), serde_json::json!(2.0));
        let tags = vec![];
        let e = event(&fields, &tags);
        let c = Condition::compile(
            r#"event.fields.proto == "UDP" && 53 == event.fields.dest_port && event.fields.ratio == 2"#,
        )
        .unwrap();
        assert_eq!(c.required_fields.len(), 3);
        let input = Input::new(&e);
        assert_eq!(c.matches(&input), Ok(true));
        for miss in [
            r#"event.fields.proto == "TCP" && event.fields.dest_port == 53"#,
            r#"event.fields.dest_port == 54"#,
            r#"event.fields.dest_port == "53""#,
            r#"event.fields.absent == "x""#,
        ] {
            let c = Condition::compile(miss).unwrap();
            let fresh = Input::new(&e);
            assert_eq!(c.matches(&fresh), Ok(false), "{miss}");
            assert!(fresh.ctx.get().is_none(), "{miss}: no CEL value built");
        }
        // not a conjunct: CEL decides
        let c =
            Condition::compile(r#"event.fields.proto == "TCP" || event.fields.dest_port == 53"#)
                .unwrap();
        assert!(c.required_fields.is_empty());
        assert_eq!(c.matches(&Input::new(&e)), Ok(true));
    }

    /// The event built from the attributes a condition reads is the whole event's serialization
    /// cut down to them: every attribute, and nothing else (a new attribute of `CelEvent` that
    /// `attribute` does not know fails here).
    #[test]
    fn attributes_are_what_the_whole_event_says() {
        let mut fields = serde_json::Map::new();
        fields.insert("dest_port".into(), serde_json::json!(53));
        fields.insert("nested".into(), serde_json::json!({"a": [1, "b", null]}));
        let tags = vec!["ids".to_string(), "dns".to_string()];
        let mut e = event(&fields, &tags);
        e.assets = vec!["db-1"];
        let whole = cel::to_value(&e).unwrap();
        let Value::Map(m) = &whole else {
            panic!("an event is a map: {whole:?}")
        };
        let names: std::collections::BTreeSet<String> = m
            .map
            .keys()
            .map(|k| match k {
                cel::objects::Key::String(s) => s.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names.len(), 16);
        let needs = FieldNeeds {
            all: true,
            keys: Default::default(),
            whole: false,
            attributes: names.clone(),
        };
        assert_eq!(Input::for_needs(&e, &needs).value(), Some(whole.clone()));
        for name in &names {
            let one = FieldNeeds {
                attributes: [name.clone()].into(),
                ..needs.clone()
            };
            let Some(Value::Map(got)) = Input::for_needs(&e, &one).value() else {
                panic!("{name}")
            };
            assert_eq!(got.map.len(), 1, "{name}");
            let key = cel::objects::Key::String(name.clone().into());
            assert_eq!(got.map.get(&key), m.map.get(&key), "{name}");
        }
    }
}
