//! Portkey's routing strategies (single, fallback, loadbalance, conditional), their retries and
//! their circuit breakers, as pure logic: no Pingora, no I/O, no clock and no randomness of its
//! own (time and random numbers are parameters), so every rule is unit-tested here.
//!
//! Flow: `parse` turns a config object (the `x-portkey-config` JSON, a stored config or a
//! front-door route) into a `Tree` once; the runtime maps its leaves to upstream targets
//! (`Tree::try_map`) and gives stored configs their circuits (`Tree::attach_breakers`). Per
//! request the proxy keeps a small `Walk` next to an `Arc<Tree>`: `Walk::start` names the first
//! leaf, and after every attempt `Walk::next` says whether to retry it, fall back to another
//! leaf, or stop.
//!
//! Paths: the root is `config` (or `route`), child `i` of a node is `<node>.targets[<i>]` with
//! `i` the index in the original list; a leaf's path is what `x-portkey-last-used-option-index`
//! reports and what validation errors name.

mod breaker;
mod condition;
mod json;
mod parse;
mod retry;
mod walk;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use breaker::{Breaker, CbConfig, CircuitState};
pub use condition::Env;
pub use parse::{parse, ParseOptions};
pub use retry::{backoff, retry_after, RetryPolicy, MAX_RETRY_WAIT, RETRY_STATUS_DEFAULT};
pub use walk::{Next, Outcome, Walk};

use condition::Query;

/// A config the strategies cannot run: `path` is the JSON path of the offending value
/// (`config.targets[2].weight`), `problem` says what is wrong and never echoes a config value
/// that could be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct StrategyError {
    pub path: String,
    pub problem: String,
}

impl StrategyError {
    pub(crate) fn new(path: impl Into<String>, problem: impl Into<String>) -> StrategyError {
        StrategyError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// `strategy.mode` of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The first target only.
    Single,
    /// Targets in order until one answers with a status that ends the chain.
    Fallback,
    /// One weighted random pick; no failover by itself.
    LoadBalance,
    /// The target the first matching condition names, else `default`.
    Conditional,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Fallback => "fallback",
            Mode::LoadBalance => "loadbalance",
            Mode::Conditional => "conditional",
        }
    }
}

/// Index into `Tree::leaves`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeafId(pub u32);

/// Index into the tree's node arena; node 0 is the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub u32);

/// A target requests are sent to, with what it inherited from its ancestors.
#[derive(Debug, Clone)]
pub struct Leaf<L> {
    pub target: L,
    /// `config.targets[1].targets[0]`.
    pub path: Arc<str>,
    /// The nearest `retry` on the chain, else the header default; attempts 0 = no retry.
    pub retry: RetryPolicy,
    /// Per-attempt timeout: the nearest `request_timeout` (ms), else the header's.
    pub timeout: Option<Duration>,
    /// `override_params` merged down the chain key by key (the nearer one wins).
    pub override_params: Option<Arc<Map<String, Value>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) path: Arc<str>,
    pub(crate) parent: Option<NodeId>,
    /// Position among the parent's children.
    pub(crate) index: u32,
    /// Load-balancing weight (default 1; 0 is never picked).
    pub(crate) weight: f64,
    /// The circuit of this node, when its parent's strategy has `cb_config`.
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Leaf(LeafId),
    Group(Group),
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) mode: Mode,
    /// Never empty.
    pub(crate) children: Vec<NodeId>,
    /// Fallback: statuses that go on to the next child (`None`: every non-2xx does).
    pub(crate) on_status_codes: Option<Vec<u16>>,
    /// Conditional: evaluated in order.
    pub(crate) conditions: Vec<(Query, NodeId)>,
    pub(crate) default: Option<NodeId>,
    pub(crate) cb: Option<CbConfig>,
}

/// A parsed strategy: an arena of nodes (node 0 is the root) and the leaves they end in.
#[derive(Debug, Clone)]
pub struct Tree<L> {
    /// Shared by every per-request copy (`with_targets`): a walk only reads them.
    nodes: Arc<Vec<Node>>,
    leaves: Vec<Leaf<L>>,
    reads_params: bool,
}

impl<L> Tree<L> {
    pub(crate) fn from_parts(nodes: Vec<Node>, leaves: Vec<Leaf<L>>, reads_params: bool) -> Self {
        Tree {
            nodes: Arc::new(nodes),
            leaves,
            reads_params,
        }
    }

    /// A tree of one leaf (a plain route or a config without targets).
    pub fn single(target: L, path: &str, retry: RetryPolicy, timeout: Option<Duration>) -> Self {
        let path: Arc<str> = Arc::from(path);
        let node = Node {
            path: path.clone(),
            parent: None,
            index: 0,
            weight: 1.0,
            breaker: None,
            kind: Kind::Leaf(LeafId(0)),
        };
        let leaf = Leaf {
            target,
            path,
            retry,
            timeout,
            override_params: None,
        };
        Tree::from_parts(vec![node], vec![leaf], false)
    }

    pub fn leaves(&self) -> &[Leaf<L>] {
        &self.leaves
    }

    /// Panics on an id from another tree.
    pub fn leaf(&self, id: LeafId) -> &Leaf<L> {
        &self.leaves[id.0 as usize]
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// Converts every leaf's target (e.g. config JSON → resolved upstream), keeping the shape.
    pub fn try_map<M, E>(self, mut f: impl FnMut(&str, L) -> Result<M, E>) -> Result<Tree<M>, E> {
        let leaves = self
            .leaves
            .into_iter()
            .map(|l| {
                Ok(Leaf {
                    target: f(&l.path, l.target)?,
                    path: l.path,
                    retry: l.retry,
                    timeout: l.timeout,
                    override_params: l.override_params,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Tree {
            nodes: self.nodes,
            leaves,
            reads_params: self.reads_params,
        })
    }

    /// Upper bound of the attempts one walk can make: every leaf is visited at most once (a
    /// fallback only moves forward), each with its retries. Decides whether the request body
    /// must be kept for replay.
    pub fn max_attempts(&self) -> u32 {
        self.leaves
            .iter()
            .fold(0u32, |n, l| n.saturating_add(1 + l.retry.attempts))
    }

    /// The same strategy over other targets, given in leaf order (`targets[i]` for
    /// `LeafId(i)`); circuits are shared with `self`. Panics when the count differs from
    /// `leaves().len()`: the caller builds one target per leaf.
    pub fn with_targets<M>(&self, targets: Vec<M>) -> Tree<M> {
        assert_eq!(targets.len(), self.leaves.len(), "one target per leaf");
        let leaves = self
            .leaves
            .iter()
            .zip(targets)
            .map(|(l, target)| Leaf {
                target,
                path: l.path.clone(),
                retry: l.retry.clone(),
                timeout: l.timeout,
                override_params: l.override_params.clone(),
            })
            .collect();
        Tree {
            nodes: self.nodes.clone(),
            leaves,
            reads_params: self.reads_params,
        }
    }

    /// No strategy at all: the root is the one target (no `targets`), without retries or
    /// `override_params`. The proxy sends such requests on its plain path; any config with
    /// `targets` is walked (and answers with Portkey's strategy headers).
    pub fn is_plain(&self) -> bool {
        match self.leaves.as_slice() {
            [leaf] => {
                self.nodes.len() == 1 && leaf.retry.attempts == 0 && leaf.override_params.is_none()
            }
            _ => false,
        }
    }

    /// Some condition reads `params.*` (the JSON request body).
    pub fn reads_params(&self) -> bool {
        self.reads_params
    }

    /// Some leaf has `override_params`.
    pub fn has_overrides(&self) -> bool {
        self.leaves.iter().any(|l| l.override_params.is_some())
    }

    /// Gives every child of a group whose strategy has `cb_config` its circuit:
    /// `make(path_of_child, &cfg)` (the caller keys circuits by owner and path, so they
    /// survive reloads).
    pub fn attach_breakers(&mut self, mut make: impl FnMut(&str, &CbConfig) -> Arc<Breaker>) {
        let nodes = Arc::make_mut(&mut self.nodes);
        for g in 0..nodes.len() {
            let Kind::Group(group) = &nodes[g].kind else {
                continue;
            };
            let Some(cfg) = group.cb.clone() else {
                continue;
            };
            for c in group.children.clone() {
                let child = &mut nodes[c.0 as usize];
                child.breaker = Some(make(&child.path, &cfg));
            }
        }
    }

    /// `(path, breaker)` of every attached circuit, for metrics.
    pub fn breakers(&self) -> Vec<(Arc<str>, Arc<Breaker>)> {
        self.nodes
            .iter()
            .filter_map(|n| n.breaker.clone().map(|b| (n.path.clone(), b)))
            .collect()
    }
}
