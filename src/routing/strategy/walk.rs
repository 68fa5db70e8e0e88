//! One request's way through a `Tree`: which leaf first, then after each attempt whether to
//! retry that leaf, fall back to another, or stop. The walk holds indexes only (no references
//! into the tree), so the proxy keeps it in its per-request context next to an `Arc<Tree>`.

use std::time::{Duration, Instant};

use super::condition::Env;
use super::retry::{backoff, MAX_RETRY_WAIT};
use super::{Group, Kind, LeafId, Mode, NodeId, StrategyError, Tree};

/// How an attempt ended. Every decision (retry, fallback, circuit) reads its status `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered; `retry_after` is what its headers ask (see `retry_after`).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// The attempt exceeded its `request_timeout`: 408.
    Timeout,
    /// No connection to the upstream: 503.
    ConnectError,
    /// Another upstream I/O error before the answer: 502.
    Error,
}

impl Outcome {
    pub fn code(&self) -> u16 {
        match self {
            Outcome::Status { code, .. } => *code,
            Outcome::Timeout => 408,
            Outcome::ConnectError => 503,
            Outcome::Error => 502,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send to the same leaf again after waiting `after`.
    Retry { leaf: LeafId, after: Duration },
    /// Send to another leaf now.
    Fallback { leaf: LeafId },
    /// The last answer is the response.
    Done,
}

/// Per-request state of the walk.
#[derive(Debug, Clone)]
pub struct Walk {
    node: NodeId,
    leaf: LeafId,
    retries: u32,
    fallbacks: u32,
    waited: Duration,
}

impl Walk {
    /// First leaf to try. `now` is for circuits; `rng` yields uniform [0,1) for load balancing
    /// and jitter. A conditional group with no matching condition and no default is an error
    /// naming the group's path (nothing has been sent yet: the client gets a 400).
    pub fn start<L>(
        tree: &Tree<L>,
        env: &Env,
        now: Instant,
        rng: &mut dyn FnMut() -> f64,
    ) -> Result<(Walk, LeafId), StrategyError> {
        let (node, leaf) = descend(tree, NodeId(0), env, now, rng)?;
        let walk = Walk {
            node,
            leaf,
            retries: 0,
            fallbacks: 0,
            waited: Duration::ZERO,
        };
        Ok((walk, leaf))
    }

    /// After an attempt on the current leaf ended with `outcome`: retry it, fall back to
    /// another leaf, or stop. When the leaf is done (no retry follows) its final outcome is
    /// recorded in the circuits of it and its ancestors. `budget` = attempts still allowed (0
    /// means Done); `base` = back-off base.
    #[allow(clippy::too_many_arguments)]
    pub fn next<L>(
        &mut self,
        tree: &Tree<L>,
        outcome: Outcome,
        env: &Env,
        now: Instant,
        base: Duration,
        budget: u32,
        rng: &mut dyn FnMut() -> f64,
    ) -> Next {
        if budget > 0 {
            if let Some(after) = self.retry_delay(tree, outcome, base, rng) {
                self.retries += 1;
                return Next::Retry {
                    leaf: self.leaf,
                    after,
                };
            }
        }
        let code = outcome.code();
        self.record(tree, now, code);
        if budget == 0 {
            return Next::Done;
        }
        self.fall_back(tree, code, env, now, rng)
    }

    pub fn current(&self) -> LeafId {
        self.leaf
    }

    /// Retries made on the current leaf so far (`x-portkey-retry-attempt-count`).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Times a fallback moved to another leaf.
    pub fn fallbacks(&self) -> u32 {
        self.fallbacks
    }

    /// Cumulative retry-after waits of this request (capped at `MAX_RETRY_WAIT`).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The wait before retrying the current leaf, or `None` when it is done.
    fn retry_delay<L>(
        &mut self,
        tree: &Tree<L>,
        outcome: Outcome,
        base: Duration,
        rng: &mut dyn FnMut() -> f64,
    ) -> Option<Duration> {
        let policy = &tree.leaf(self.leaf).retry;
        let code = outcome.code();
        if self.retries >= policy.attempts || !policy.on_status_codes.contains(&code) {
            return None;
        }
        if let Outcome::Status {
            retry_after: Some(wait),
            ..
        } = outcome
        {
            if policy.use_retry_after && matches!(code, 429 | 503) {
                let total = self.waited.saturating_add(wait);
                if wait >= MAX_RETRY_WAIT || total > MAX_RETRY_WAIT {
                    return None;
                }
                self.waited = total;
                return Some(wait);
            }
        }
        Some(backoff(self.retries + 1, base, rng()))
    }

    /// Counts the leaf chain's final outcome in every circuit from the leaf up to the root.
    fn record<L>(&self, tree: &Tree<L>, now: Instant, code: u16) {
        let mut id = Some(self.node);
        while let Some(n) = id {
            let node = tree.node(n);
            if let Some(breaker) = &node.breaker {
                breaker.record(now, code);
            }
            id = node.parent;
        }
    }

    /// Walks up from the finished leaf; the first fallback ancestor that the outcome continues
    /// and that has a later child descends into it. Single, loadbalance and conditional
    /// ancestors pass the answer up unchanged.
    fn fall_back<L>(
        &mut self,
        tree: &Tree<L>,
        code: u16,
        env: &Env,
        now: Instant,
        rng: &mut dyn FnMut() -> f64,
    ) -> Next {
        let mut child = self.node;
        while let Some(parent) = tree.node(child).parent {
            if let Kind::Group(g) = &tree.node(parent).kind {
                let later = &g.children[tree.node(child).index as usize + 1..];
                if g.mode == Mode::Fallback && continues(g, code) && !later.is_empty() {
                    let next = first_closed(tree, later, now);
                    // A conditional that matches nothing mid-walk leaves the last answer.
                    let Ok((node, leaf)) = descend(tree, next, env, now, rng) else {
                        return Next::Done;
                    };
                    self.node = node;
                    self.leaf = leaf;
                    self.retries = 0;
                    self.fallbacks += 1;
                    return Next::Fallback { leaf };
                }
            }
            child = parent;
        }
        Next::Done
    }
}

/// Whether a fallback group goes on after an answer with `code`: it is one of
/// `on_status_codes`, or (without them) not a 2xx.
fn continues(g: &Group, code: u16) -> bool {
    match &g.on_status_codes {
        Some(codes) => codes.contains(&code),
        None => !(200..300).contains(&code),
    }
}

/// From `from` down to a leaf.
fn descend<L>(
    tree: &Tree<L>,
    from: NodeId,
    env: &Env,
    now: Instant,
    rng: &mut dyn FnMut() -> f64,
) -> Result<(NodeId, LeafId), StrategyError> {
    let mut id = from;
    loop {
        let node = tree.node(id);
        let g = match &node.kind {
            Kind::Leaf(leaf) => return Ok((id, *leaf)),
            Kind::Group(g) => g,
        };
        id = match g.mode {
            Mode::Single => g.children[0],
            Mode::Fallback => first_closed(tree, &g.children, now),
            Mode::LoadBalance => pick(tree, &g.children, now, rng()),
            Mode::Conditional => g
                .conditions
                .iter()
                .find(|(q, _)| q.matches(env))
                .map(|(_, then)| *then)
                .or(g.default)
                .ok_or_else(|| {
                    StrategyError::new(
                        &*node.path,
                        "no condition matched and the strategy names no default target",
                    )
                })?,
        };
    }
}

fn is_open<L>(tree: &Tree<L>, id: NodeId, now: Instant) -> bool {
    tree.node(id)
        .breaker
        .as_ref()
        .is_some_and(|b| b.state(now) == super::CircuitState::Open)
}

/// The first child whose circuit is not open; the first of all when every one is open.
fn first_closed<L>(tree: &Tree<L>, children: &[NodeId], now: Instant) -> NodeId {
    children
        .iter()
        .copied()
        .find(|c| !is_open(tree, *c, now))
        .unwrap_or(children[0])
}

/// A weighted pick among children with weight > 0 whose circuit is closed (among all with
/// weight > 0 when every one is open). `r` is uniform in [0, 1).
fn pick<L>(tree: &Tree<L>, children: &[NodeId], now: Instant, r: f64) -> NodeId {
    let weight = |c: NodeId| tree.node(c).weight;
    let any_closed = children
        .iter()
        .any(|c| weight(*c) > 0.0 && !is_open(tree, *c, now));
    let eligible = |c: &NodeId| weight(*c) > 0.0 && (!any_closed || !is_open(tree, *c, now));
    let total: f64 = children
        .iter()
        .filter(|c| eligible(c))
        .map(|c| weight(*c))
        .sum();
    let mut target = r.clamp(0.0, 1.0) * total;
    // Parsing rejects a group whose weights are all 0, so `chosen` is set below.
    let mut chosen = children[0];
    for c in children.iter().filter(|c| eligible(c)) {
        chosen = *c;
        if target < weight(*c) {
            break;
        }
        target -= weight(*c);
    }
    chosen
}
