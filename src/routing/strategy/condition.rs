//! Queries of conditional routing (`strategy.conditions[].query`), compiled when the config is
//! parsed (operators checked, `$regex` built once with a size limit) and evaluated per request
//! against `Env`: the `x-portkey-metadata` object, the JSON request body and the URL path.
//!
//! Semantics follow Portkey's: every entry of a query object must hold; a plain value means
//! equality; an object value holds operators; `$and`/`$or` take arrays of queries.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::{NodeId, StrategyError};

/// What conditions read.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The `x-portkey-metadata` object.
    pub metadata: Option<&'a Value>,
    /// The JSON request body.
    pub params: Option<&'a Value>,
    /// The request's URL path.
    pub pathname: &'a str,
}

/// Compiled size limit of one `$regex` (the default is 10 MiB; conditions are small).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $regex";

/// A query object: all of its clauses hold.
#[derive(Debug, Clone)]
pub(crate) struct Query(Vec<Clause>);

#[derive(Debug, Clone)]
enum Clause {
    And(Vec<Query>),
    Or(Vec<Query>),
    Field(Key, Vec<Test>),
}

#[derive(Debug, Clone)]
enum Key {
    Metadata(Vec<String>),
    Params(Vec<String>),
    Pathname,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Value),
    Ne(Value),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Regex(Box<Regex>),
}

/// A value a key reads: JSON from metadata or params, or the URL path.
#[derive(Clone, Copy)]
enum Got<'a> {
    Json(&'a Value),
    Text(&'a str),
}

impl Query {
    /// Compiles the query object `v` found at `path`.
    pub(crate) fn compile(v: &Value, path: &str) -> Result<Query, StrategyError> {
        let obj = v
            .as_object()
            .ok_or_else(|| StrategyError::new(path, "must be a query object"))?;
        obj.iter()
            .map(|(k, v)| Clause::compile(k, v, &format!("{path}.{k}")))
            .collect::<Result<_, _>>()
            .map(Query)
    }

    /// Some key reads `params.*`.
    pub(crate) fn reads_params(&self) -> bool {
        self.0.iter().any(|c| match c {
            Clause::And(qs) | Clause::Or(qs) => qs.iter().any(Query::reads_params),
            Clause::Field(key, _) => matches!(key, Key::Params(_)),
        })
    }

    pub(crate) fn matches(&self, env: &Env) -> bool {
        self.0.iter().all(|c| match c {
            Clause::And(qs) => qs.iter().all(|q| q.matches(env)),
            Clause::Or(qs) => qs.iter().any(|q| q.matches(env)),
            Clause::Field(key, tests) => {
                let got = key.read(env);
                tests.iter().all(|t| t.holds(got))
            }
        })
    }
}

/// The compiled `strategy.conditions` and `strategy.default` of a conditional group.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub(crate) conditions: Vec<(Query, NodeId)>,
    pub(crate) default: Option<NodeId>,
    pub(crate) reads_params: bool,
}

impl Routes {
    /// Compiles the group's strategy object `s`; `then` and `default` name direct children
    /// (`list`, whose node ids are `children`) by their `name`, unique among them.
    pub(crate) fn compile(
        s: &Map<String, Value>,
        list: &[Value],
        children: &[NodeId],
        path: &str,
    ) -> Result<Routes, StrategyError> {
        let names = names(list, children, path)?;
        let target = |v: &Value, at: String| -> Result<NodeId, StrategyError> {
            let name = v
                .as_str()
                .ok_or_else(|| StrategyError::new(&at, "must be a target's name (a string)"))?;
            names
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    let problem = format!("no target of this group is named \"{name}\"");
                    StrategyError::new(at, problem)
                })
        };
        let at = format!("{path}.strategy.conditions");
        let items = s
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                let problem = "must be an array of {\"query\": {...}, \"then\": \"<name>\"}";
                StrategyError::new(&at, problem)
            })?;
        let mut routes = Routes::default();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let item = item
                .as_object()
                .ok_or_else(|| StrategyError::new(&at, "must be an object {query, then}"))?;
            let query = item.get("query").unwrap_or(&Value::Null);
            let query = Query::compile(query, &format!("{at}.query"))?;
            let then = target(
                item.get("then").unwrap_or(&Value::Null),
                format!("{at}.then"),
            )?;
            routes.reads_params |= query.reads_params();
            routes.conditions.push((query, then));
        }
        routes.default = s
            .get("default")
            .map(|v| target(v, format!("{path}.strategy.default")))
            .transpose()?;
        Ok(routes)
    }
}

/// The named children of a group, by name.
fn names<'v>(
    list: &'v [Value],
    children: &[NodeId],
    path: &str,
) -> Result<Vec<(&'v str, NodeId)>, StrategyError> {
    let mut names: Vec<(&str, NodeId)> = Vec::new();
    for (i, (t, id)) in list.iter().zip(children).enumerate() {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            continue;
        };
        if names.iter().any(|(n, _)| *n == name) {
            return Err(StrategyError::new(
                format!("{path}.targets[{i}].name"),
                format!("\"{name}\" is taken by an earlier target; names must be unique"),
            ));
        }
        names.push((name, *id));
    }
    Ok(names)
}

impl Clause {
    fn compile(key: &str, v: &Value, path: &str) -> Result<Clause, StrategyError> {
        match key {
            "$and" => Ok(Clause::And(queries(v, path)?)),
            "$or" => Ok(Clause::Or(queries(v, path)?)),
            _ if key.starts_with('$') => Err(StrategyError::new(
                path,
                "unknown logical operator; use $and or $or, or a key such as metadata.<name>",
            )),
            _ => {
                let key = Key::parse(key, path)?;
                let tests = match v {
                    Value::Object(ops) => operators(ops, path)?,
                    plain => vec![Test::Eq(plain.clone())],
                };
                Ok(Clause::Field(key, tests))
            }
        }
    }
}

fn queries(v: &Value, path: &str) -> Result<Vec<Query>, StrategyError> {
    let items = v
        .as_array()
        .ok_or_else(|| StrategyError::new(path, "must be an array of query objects"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, q)| Query::compile(q, &format!("{path}[{i}]")))
        .collect()
}

fn operators(ops: &Map<String, Value>, path: &str) -> Result<Vec<Test>, StrategyError> {
    ops.iter()
        .map(|(op, v)| Test::compile(op, v, &format!("{path}.{op}")))
        .collect()
}

impl Key {
    fn parse(key: &str, path: &str) -> Result<Key, StrategyError> {
        let segments = |rest: &str| -> Result<Vec<String>, StrategyError> {
            let segs: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if segs.iter().any(String::is_empty) {
                return Err(StrategyError::new(path, "has an empty segment in the key"));
            }
            Ok(segs)
        };
        if key == "url.pathname" {
            Ok(Key::Pathname)
        } else if let Some(rest) = key.strip_prefix("metadata.") {
            Ok(Key::Metadata(segments(rest)?))
        } else if let Some(rest) = key.strip_prefix("params.") {
            Ok(Key::Params(segments(rest)?))
        } else {
            Err(StrategyError::new(
                path,
                "a query key is metadata.<name>, params.<name>[.<name>...] or url.pathname",
            ))
        }
    }

    fn read<'a>(&self, env: &Env<'a>) -> Option<Got<'a>> {
        match self {
            Key::Pathname => Some(Got::Text(env.pathname)),
            Key::Metadata(segs) => dig(env.metadata?, segs).map(Got::Json),
            Key::Params(segs) => dig(env.params?, segs).map(Got::Json),
        }
    }
}

/// Walks object keys, and array indexes given as numbers.
fn dig<'a>(mut v: &'a Value, segs: &[String]) -> Option<&'a Value> {
    for seg in segs {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

impl Test {
    fn compile(op: &str, v: &Value, path: &str) -> Result<Test, StrategyError> {
        let num = || {
            number(Got::Json(v))
                .ok_or_else(|| StrategyError::new(path, "must be a number (or a numeric string)"))
        };
        let list = || {
            v.as_array()
                .cloned()
                .ok_or_else(|| StrategyError::new(path, "must be an array of values"))
        };
        Ok(match op {
            "$eq" => Test::Eq(v.clone()),
            "$ne" => Test::Ne(v.clone()),
            "$gt" => Test::Gt(num()?),
            "$gte" => Test::Gte(num()?),
            "$lt" => Test::Lt(num()?),
            "$lte" => Test::Lte(num()?),
            "$in" => Test::In(list()?),
            "$nin" => Test::Nin(list()?),
            "$regex" => Test::Regex(Box::new(regex(v, path)?)),
            _ => {
                return Err(StrategyError::new(
                    path,
                    format!("unknown operator; use one of {OPERATORS}"),
                ))
            }
        })
    }

    /// A missing value fails every test but `$ne` and `$nin` (as in Portkey, where it is
    /// `undefined`).
    fn holds(&self, got: Option<Got>) -> bool {
        match self {
            Test::Eq(want) => got.is_some_and(|g| g.equals(want)),
            Test::Ne(want) => !got.is_some_and(|g| g.equals(want)),
            Test::Gt(n) => got.and_then(number).is_some_and(|x| x > *n),
            Test::Gte(n) => got.and_then(number).is_some_and(|x| x >= *n),
            Test::Lt(n) => got.and_then(number).is_some_and(|x| x < *n),
            Test::Lte(n) => got.and_then(number).is_some_and(|x| x <= *n),
            Test::In(list) => got.is_some_and(|g| list.iter().any(|w| g.equals(w))),
            Test::Nin(list) => !got.is_some_and(|g| list.iter().any(|w| g.equals(w))),
            Test::Regex(re) => got.and_then(Got::text).is_some_and(|s| re.is_match(s)),
        }
    }
}

fn regex(v: &Value, path: &str) -> Result<Regex, StrategyError> {
    let pattern = v
        .as_str()
        .ok_or_else(|| StrategyError::new(path, "must be a string pattern"))?;
    // The error text would quote the pattern, so only its kind is reported.
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let problem = match e {
                regex::Error::CompiledTooBig(_) => "is too large once compiled; simplify it",
                _ => "is not a valid regular expression (Rust regex syntax: no look-around or backreferences)",
            };
            StrategyError::new(path, problem)
        })
}

/// JavaScript's `parseFloat` for the values conditions see: numbers, and strings holding one.
fn number(got: Got) -> Option<f64> {
    let parsed = match got {
        Got::Json(Value::Number(n)) => n.as_f64(),
        Got::Json(_) | Got::Text(_) => got.text().and_then(|s| s.trim().parse::<f64>().ok()),
    };
    parsed.filter(|x| !x.is_nan())
}

impl<'a> Got<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            Got::Json(v) => v.as_str(),
            Got::Text(s) => Some(s),
        }
    }

    fn equals(self, want: &Value) -> bool {
        match self {
            Got::Json(v) => json_eq(v, want),
            Got::Text(s) => want.as_str() == Some(s),
        }
    }
}

/// JSON equality where numbers compare by value (1 equals 1.0); strings compare exactly.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}
