//! Config JSON → `Tree`, validated: every error names the JSON path of the offending value and
//! never echoes a value that could be a key (mode names, operators and target names excepted).
//!
//! Inheritance: a node takes every key its parent has and it does not set, except the
//! structural ones (`targets`, `strategy`, `weight`, `name`); `override_params` merges key by
//! key, the nearer one winning. Top-level keys are read in snake_case (Portkey accepts both
//! spellings), so a child's `api_key` replaces its parent's `apiKey` and leaves see one spelling.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::breaker::CbConfig;
use super::condition::Routes;
use super::json::{field, status_codes};
use super::retry::RetryPolicy;
use super::{Group, Kind, Leaf, LeafId, Mode, Node, NodeId, StrategyError, Tree};

/// Deepest nesting of `targets` below the root.
const MAX_DEPTH: u32 = 8;
/// Most nodes (groups and leaves) in one config.
const MAX_NODES: usize = 256;
const STRUCTURAL: [&str; 4] = ["targets", "strategy", "weight", "name"];
const MODES: &str = "single, fallback, loadbalance, conditional";

/// What a config is parsed with.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions<'a> {
    /// Path of the root in errors and leaf paths: "config" or "route".
    pub root_path: &'a str,
    /// From `x-portkey-retry-count`: the retry of leaves whose chain sets none.
    pub default_retry: Option<RetryPolicy>,
    /// From `x-portkey-request-timeout`; the config's own `request_timeout` wins.
    pub default_timeout: Option<Duration>,
}

/// Parses a Portkey config object into a tree. The merged object of each leaf (what it sets
/// and inherits, without the structural keys) is handed to `leaf(path, &merged)`, which
/// deserializes it into `L`; its error text is reported at that path.
pub fn parse<L>(
    value: &Value,
    opts: &ParseOptions,
    leaf: impl FnMut(&str, &Map<String, Value>) -> Result<L, String>,
) -> Result<Tree<L>, StrategyError> {
    let root = value
        .as_object()
        .ok_or_else(|| StrategyError::new(opts.root_path, "must be a JSON object"))?;
    let mut b = Builder {
        opts,
        make_leaf: leaf,
        nodes: Vec::new(),
        leaves: Vec::new(),
        reads_params: false,
    };
    let root_place = Place {
        parent: None,
        index: 0,
        depth: 0,
    };
    b.node(
        root,
        &Inherited::default(),
        opts.root_path.to_owned(),
        root_place,
    )?;
    Ok(Tree::from_parts(b.nodes, b.leaves, b.reads_params))
}

/// What a node passes down to its children.
#[derive(Debug, Clone, Default)]
struct Inherited {
    fields: Map<String, Value>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    overrides: Option<Map<String, Value>>,
}

#[derive(Clone, Copy)]
struct Place {
    parent: Option<NodeId>,
    index: u32,
    depth: u32,
}

struct Builder<'o, 'a, L, F> {
    opts: &'o ParseOptions<'a>,
    make_leaf: F,
    nodes: Vec<Node>,
    leaves: Vec<Leaf<L>>,
    reads_params: bool,
}

impl<L, F> Builder<'_, '_, L, F>
where
    F: FnMut(&str, &Map<String, Value>) -> Result<L, String>,
{
    fn node(
        &mut self,
        obj: &Map<String, Value>,
        up: &Inherited,
        path: String,
        place: Place,
    ) -> Result<NodeId, StrategyError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(StrategyError::new(
                path,
                "the config has more than 256 targets",
            ));
        }
        if place.depth > MAX_DEPTH {
            return Err(StrategyError::new(
                path,
                "targets nest more than 8 levels deep",
            ));
        }
        let inherited = inherit(obj, up, &path)?;
        let weight = match place.parent {
            Some(_) => weight(obj, &path)?,
            None => 1.0,
        };
        if obj.get("name").is_some_and(|n| !n.is_string()) {
            return Err(StrategyError::new(
                format!("{path}.name"),
                "must be a string",
            ));
        }
        let id = NodeId(self.nodes.len() as u32);
        let path: Arc<str> = Arc::from(path);
        self.nodes.push(Node {
            path: path.clone(),
            parent: place.parent,
            index: place.index,
            weight,
            breaker: None,
            // Replaced below, once the children have their ids.
            kind: Kind::Leaf(LeafId(u32::MAX)),
        });
        let kind = match targets(obj, &path)? {
            Some(list) => Kind::Group(self.group(obj, list, &inherited, id, place.depth)?),
            None => Kind::Leaf(self.leaf(inherited, path)?),
        };
        self.nodes[id.0 as usize].kind = kind;
        Ok(id)
    }

    fn group(
        &mut self,
        obj: &Map<String, Value>,
        list: &[Value],
        inherited: &Inherited,
        id: NodeId,
        depth: u32,
    ) -> Result<Group, StrategyError> {
        let path = self.nodes[id.0 as usize].path.clone();
        let strategy = Strategy::parse(obj.get("strategy"), &path)?;
        let mut children = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let child_path = format!("{path}.targets[{i}]");
            let t = t
                .as_object()
                .ok_or_else(|| StrategyError::new(&child_path, "must be a JSON object"))?;
            let place = Place {
                parent: Some(id),
                index: i as u32,
                depth: depth + 1,
            };
            children.push(self.node(t, inherited, child_path, place)?);
        }
        if strategy.mode == Mode::LoadBalance
            && children
                .iter()
                .all(|c| self.nodes[c.0 as usize].weight == 0.0)
        {
            return Err(StrategyError::new(
                format!("{path}.targets"),
                "every weight is 0; give at least one target a weight above 0",
            ));
        }
        let routes = match (strategy.mode, strategy.obj) {
            (Mode::Conditional, Some(s)) => Routes::compile(s, list, &children, &path)?,
            _ => Routes::default(),
        };
        self.reads_params |= routes.reads_params;
        Ok(Group {
            mode: strategy.mode,
            children,
            on_status_codes: strategy.on_status_codes,
            conditions: routes.conditions,
            default: routes.default,
            cb: strategy.cb,
        })
    }

    fn leaf(&mut self, inherited: Inherited, path: Arc<str>) -> Result<LeafId, StrategyError> {
        let target = (self.make_leaf)(&path, &inherited.fields)
            .map_err(|problem| StrategyError::new(&*path, problem))?;
        let id = LeafId(self.leaves.len() as u32);
        self.leaves.push(Leaf {
            target,
            path,
            retry: inherited
                .retry
                .or_else(|| self.opts.default_retry.clone())
                .unwrap_or_default(),
            timeout: inherited.timeout.or(self.opts.default_timeout),
            override_params: inherited.overrides.map(Arc::new),
        });
        Ok(id)
    }
}

/// The parsed `strategy` of a group (`None`: mode single).
struct Strategy<'v> {
    mode: Mode,
    on_status_codes: Option<Vec<u16>>,
    cb: Option<CbConfig>,
    obj: Option<&'v Map<String, Value>>,
}

impl<'v> Strategy<'v> {
    fn parse(v: Option<&'v Value>, path: &str) -> Result<Strategy<'v>, StrategyError> {
        let Some(v) = v else {
            let single = Strategy {
                mode: Mode::Single,
                on_status_codes: None,
                cb: None,
                obj: None,
            };
            return Ok(single);
        };
        let at = format!("{path}.strategy");
        let obj = v
            .as_object()
            .ok_or_else(|| StrategyError::new(&at, "must be an object {\"mode\": ...}"))?;
        let mode = match obj.get("mode").and_then(Value::as_str) {
            Some("single") => Mode::Single,
            Some("fallback") => Mode::Fallback,
            Some("loadbalance") => Mode::LoadBalance,
            Some("conditional") => Mode::Conditional,
            _ => {
                let problem = format!("must be one of {MODES}");
                return Err(StrategyError::new(format!("{at}.mode"), problem));
            }
        };
        let on_status_codes = field(obj, &["on_status_codes", "onStatusCodes"])
            .map(|(key, v)| status_codes(v, &format!("{at}.{key}")))
            .transpose()?;
        let cb = obj
            .get("cb_config")
            .map(|v| CbConfig::from_json(v, &format!("{at}.cb_config")))
            .transpose()?;
        Ok(Strategy {
            mode,
            on_status_codes,
            cb,
            obj: Some(obj),
        })
    }
}

/// `targets` when the node is a group; an error when it is present but not a non-empty array.
fn targets<'v>(
    obj: &'v Map<String, Value>,
    path: &str,
) -> Result<Option<&'v [Value]>, StrategyError> {
    match obj.get("targets") {
        None => Ok(None),
        Some(Value::Array(list)) if !list.is_empty() => Ok(Some(list)),
        Some(_) => Err(StrategyError::new(
            format!("{path}.targets"),
            "must be a non-empty array of target objects",
        )),
    }
}

/// The node's own keys over what it inherits; validates `retry`, `request_timeout` and
/// `override_params` where they are set.
fn inherit(
    obj: &Map<String, Value>,
    up: &Inherited,
    path: &str,
) -> Result<Inherited, StrategyError> {
    let mut next = up.clone();
    for (key, v) in obj {
        let canon = snake_case(key);
        let both_spellings = canon != key.as_str() && obj.contains_key(canon.as_ref());
        if STRUCTURAL.contains(&canon.as_ref()) || both_spellings {
            continue;
        }
        let at = format!("{path}.{key}");
        let value = match canon.as_ref() {
            "retry" => {
                next.retry = Some(RetryPolicy::from_json(v, &at)?);
                v.clone()
            }
            "request_timeout" => {
                next.timeout = Some(timeout(v, &at)?);
                v.clone()
            }
            "override_params" => {
                let own = v
                    .as_object()
                    .ok_or_else(|| StrategyError::new(&at, "must be a JSON object"))?;
                let merged = next.overrides.get_or_insert_with(Map::new);
                merged.extend(own.iter().map(|(k, x)| (k.clone(), x.clone())));
                Value::Object(merged.clone())
            }
            _ => v.clone(),
        };
        next.fields.insert(canon.into_owned(), value);
    }
    Ok(next)
}

/// `apiKey` → `api_key`; snake_case keys are returned as they are.
fn snake_case(key: &str) -> Cow<'_, str> {
    if !key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn weight(obj: &Map<String, Value>, path: &str) -> Result<f64, StrategyError> {
    match obj.get("weight") {
        None => Ok(1.0),
        Some(v) => v
            .as_f64()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| StrategyError::new(format!("{path}.weight"), "must be a number >= 0")),
    }
}

fn timeout(v: &Value, path: &str) -> Result<Duration, StrategyError> {
    v.as_u64()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| StrategyError::new(path, "must be a positive integer (milliseconds)"))
}
