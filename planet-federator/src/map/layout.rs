//! A layered (Sugiyama-style) left-to-right layout of a directed graph:
//! callers to the left of their callees. Pure and deterministic (same input,
//! same coordinates: every tie is broken by index).
//!
//! 1. Cycles are broken by reversing the back edges of a depth-first search
//!    in index order (the edge is still drawn in its real direction).
//! 2. Layers by longest path from the sources; sources are then pulled
//!    right to sit one layer before their nearest callee.
//! 3. Edges spanning several layers get a dummy vertex per crossed layer,
//!    so they run in their own slot between node boxes, never through one.
//! 4. Order within layers: alternating barycenter sweeps, keeping the
//!    order with the fewest crossings.
//! 5. Vertical positions: each layer is placed as close as possible to the
//!    mean position of its neighbours in the previous (or next) layer,
//!    subject to the boxes' order and spacing (an isotonic regression,
//!    solved exactly by pool-adjacent-violators), sweeping both ways.
//!
//! Boxes of one layer are kept apart by step 5's constraints and layers
//! are disjoint columns, so boxes never overlap.

/// Estimated width of one label character at the 13 px sans-serif font.
pub(crate) const CHAR_WIDTH: f64 = 7.6;
pub(crate) const NODE_HEIGHT: f64 = 30.0;
const NODE_PAD: f64 = 14.0;
const MIN_NODE_WIDTH: f64 = 56.0;
const NODE_GAP: f64 = 16.0;
const DUMMY_GAP: f64 = 10.0;
/// Horizontal space between layers: room for edge curves and labels.
pub(crate) const LAYER_GAP: f64 = 150.0;
pub(crate) const MARGIN: f64 = 24.0;
const ORDER_SWEEPS: usize = 24;
const POSITION_SWEEPS: usize = 8;

/// A node's box; `x`, `y` is the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NodeBox {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl NodeBox {
    pub(crate) fn right(&self) -> f64 {
        self.x + self.w
    }

    pub(crate) fn bottom(&self) -> f64 {
        self.y + self.h
    }

    pub(crate) fn center_y(&self) -> f64 {
        self.y + self.h / 2.0
    }

    /// True when the boxes share interior area.
    pub(crate) fn overlaps(&self, other: &NodeBox) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }
}

/// An edge's route, from the caller's box to the callee's box.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// Points to join with horizontal-tangent curves: the first on the
    /// caller's box, the last on the callee's.
    Path(Vec<(f64, f64)>),
    /// A call to the same service: a loop over the box's top edge from
    /// `start` to `end`.
    SelfLoop { start: (f64, f64), end: (f64, f64) },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub nodes: Vec<NodeBox>,
    /// One per input edge, in input order.
    pub routes: Vec<Route>,
    /// Index of the layer (column) of each node.
    pub layers: Vec<usize>,
    pub width: f64,
    pub height: f64,
    /// Edge crossings between adjacent layers in the chosen order.
    pub crossings: usize,
}

/// The width of a box for `label`.
pub(crate) fn node_width(label: &str) -> f64 {
    (label.chars().count() as f64 * CHAR_WIDTH + 2.0 * NODE_PAD).max(MIN_NODE_WIDTH)
}

/// Lays out nodes labelled `labels` with directed `edges` (indices into
/// `labels`; self-loops and duplicates allowed).
pub(crate) fn layout(labels: &[&str], edges: &[(usize, usize)]) -> Layout {
    layout_with(labels, edges, ORDER_SWEEPS)
}

fn layout_with(labels: &[&str], edges: &[(usize, usize)], sweeps: usize) -> Layout {
    let n = labels.len();
    let dag = break_cycles(n, edges);
    let rank = assign_layers(n, &dag);

    // Vertices: the nodes, then the dummies of long edges.
    let mut layer_of: Vec<usize> = rank.clone();
    let mut chains: Vec<Option<Vec<usize>>> = vec![None; edges.len()];
    let mut segments: Vec<(usize, usize)> = Vec::new();
    for &(i, from, to) in &dag {
        let mut chain = vec![from];
        for l in rank[from] + 1..rank[to] {
            layer_of.push(l);
            chain.push(layer_of.len() - 1);
        }
        chain.push(to);
        segments.extend(chain.windows(2).map(|w| (w[0], w[1])));
        chains[i] = Some(chain);
    }
    let vertices = layer_of.len();
    let layer_count = layer_of.iter().copied().max().map_or(0, |m| m + 1);
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); vertices];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); vertices];
    for &(a, b) in &segments {
        succs[a].push(b);
        preds[b].push(a);
    }

    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for v in 0..vertices {
        layers[layer_of[v]].push(v);
    }
    let (layers, crossings) = order(layers, &preds, &succs, sweeps);

    let heights: Vec<f64> = (0..vertices)
        .map(|v| if v < n { NODE_HEIGHT } else { 0.0 })
        .collect();
    let tops = positions(&layers, &preds, &succs, &heights, n);

    // Columns.
    let widths: Vec<f64> = labels.iter().map(|l| node_width(l)).collect();
    let mut col_x = Vec::with_capacity(layer_count);
    let mut col_w = Vec::with_capacity(layer_count);
    let mut x = MARGIN;
    for layer in &layers {
        let w = layer
            .iter()
            .filter(|&&v| v < n)
            .map(|&v| widths[v])
            .fold(MIN_NODE_WIDTH, f64::max);
        col_x.push(x);
        col_w.push(w);
        x += w + LAYER_GAP;
    }
    let width = if layer_count == 0 {
        2.0 * MARGIN
    } else {
        x - LAYER_GAP + MARGIN
    };

    let nodes: Vec<NodeBox> = (0..n)
        .map(|v| {
            let l = layer_of[v];
            NodeBox {
                x: col_x[l] + (col_w[l] - widths[v]) / 2.0,
                y: tops[v],
                w: widths[v],
                h: NODE_HEIGHT,
            }
        })
        .collect();
    let height = tops
        .iter()
        .zip(&heights)
        .map(|(t, h)| t + h)
        .fold(0.0, f64::max)
        + MARGIN;

    // Where each segment meets a box: spread over the side, ordered by the
    // other end's height so neighbouring edges do not cross at the box.
    let center = |v: usize| tops[v] + heights[v] / 2.0;
    let mut out_slot: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut in_slot: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, &(a, b)) in segments.iter().enumerate() {
        if a < n {
            out_slot[a].push(s);
        }
        if b < n {
            in_slot[b].push(s);
        }
    }
    let mut seg_start = vec![0.0; segments.len()];
    let mut seg_end = vec![0.0; segments.len()];
    for v in 0..n {
        let spread = |slots: &mut Vec<usize>, other: &dyn Fn(usize) -> usize, out: &mut [f64]| {
            slots.sort_by(|&s, &t| {
                center(other(s))
                    .total_cmp(&center(other(t)))
                    .then(s.cmp(&t))
            });
            let m = slots.len();
            let step = if m > 1 {
                ((NODE_HEIGHT - 10.0) / (m - 1) as f64).min(6.0)
            } else {
                0.0
            };
            for (k, &s) in slots.iter().enumerate() {
                out[s] = center(v) + (k as f64 - (m as f64 - 1.0) / 2.0) * step;
            }
        };
        spread(&mut out_slot[v], &|s| segments[s].1, &mut seg_start);
        spread(&mut in_slot[v], &|s| segments[s].0, &mut seg_end);
    }
    let seg_index: std::collections::HashMap<(usize, usize), Vec<usize>> = {
        let mut m: std::collections::HashMap<(usize, usize), Vec<usize>> = Default::default();
        for (s, &ab) in segments.iter().enumerate() {
            m.entry(ab).or_default().push(s);
        }
        m
    };
    let mut used: std::collections::HashMap<(usize, usize), usize> = Default::default();

    let mut routes = Vec::with_capacity(edges.len());
    for (i, &(from, to)) in edges.iter().enumerate() {
        let Some(chain) = &chains[i] else {
            let b = nodes[from];
            routes.push(Route::SelfLoop {
                start: (b.x + b.w * 0.62, b.y),
                end: (b.x + b.w * 0.38, b.y),
            });
            continue;
        };
        let mut points = Vec::with_capacity(chain.len() * 2);
        for w in chain.windows(2) {
            let (a, b) = (w[0], w[1]);
            let k = used.entry((a, b)).or_insert(0);
            let s = seg_index[&(a, b)][*k];
            *k += 1;
            let start = if a < n {
                (nodes[a].right(), seg_start[s])
            } else {
                (col_x[layer_of[a]] + col_w[layer_of[a]], center(a))
            };
            let end = if b < n {
                (nodes[b].x, seg_end[s])
            } else {
                (col_x[layer_of[b]], center(b))
            };
            points.push(start);
            points.push(end);
        }
        // Drawn in the real direction, also for reversed (cycle) edges.
        if rank[from] > rank[to] {
            points.reverse();
        }
        routes.push(Route::Path(points));
    }

    Layout {
        nodes,
        routes,
        layers: rank,
        width,
        height,
        crossings,
    }
}

/// The edges as `(input index, from, to)` with every cycle broken by
/// reversing back edges; self-loops are left out.
fn break_cycles(n: usize, edges: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        if a != b {
            out[a].push(b);
        }
    }
    for o in &mut out {
        o.sort_unstable();
        o.dedup();
    }
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; n];
    let mut back = std::collections::HashSet::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = out[v].get(*next) {
                *next += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        back.insert((v, w));
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    edges
        .iter()
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, &(a, b))| {
            if back.contains(&(a, b)) {
                (i, b, a)
            } else {
                (i, a, b)
            }
        })
        .collect()
}

/// Longest-path layers over the acyclic edges, then sources pulled next
/// to their nearest successor.
fn assign_layers(n: usize, dag: &[(usize, usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(_, a, b) in dag {
        succ[a].push(b);
        indegree[b] += 1;
    }
    let mut rank = vec![0usize; n];
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(v) = ready.pop_first() {
        for &w in &succ[v] {
            rank[w] = rank[w].max(rank[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.insert(w);
            }
        }
    }
    let has_pred: Vec<bool> = {
        let mut p = vec![false; n];
        for &(_, _, b) in dag {
            p[b] = true;
        }
        p
    };
    for v in 0..n {
        if !has_pred[v]
            && let Some(min) = succ[v].iter().map(|&w| rank[w]).min()
        {
            rank[v] = min - 1;
        }
    }
    rank
}

/// Crossings between adjacent layers.
fn crossings(layers: &[Vec<usize>], succs: &[Vec<usize>], pos: &[usize]) -> usize {
    let mut total = 0;
    for layer in layers {
        let segs: Vec<(usize, usize)> = layer
            .iter()
            .flat_map(|&a| succs[a].iter().map(move |&b| (pos[a], pos[b])))
            .collect();
        for (i, &(a1, b1)) in segs.iter().enumerate() {
            for &(a2, b2) in &segs[i + 1..] {
                if (a1 < a2 && b1 > b2) || (a1 > a2 && b1 < b2) {
                    total += 1;
                }
            }
        }
    }
    total
}

fn positions_of(layers: &[Vec<usize>], vertices: usize) -> Vec<usize> {
    let mut pos = vec![0; vertices];
    for layer in layers {
        for (i, &v) in layer.iter().enumerate() {
            pos[v] = i;
        }
    }
    pos
}

/// Barycenter ordering; returns the best order found and its crossings.
fn order(
    mut layers: Vec<Vec<usize>>,
    preds: &[Vec<usize>],
    succs: &[Vec<usize>],
    sweeps: usize,
) -> (Vec<Vec<usize>>, usize) {
    let vertices = preds.len();
    let mut pos = positions_of(&layers, vertices);
    let mut best = layers.clone();
    let mut best_crossings = crossings(&layers, succs, &pos);
    for sweep in 0..sweeps {
        let down = sweep % 2 == 0;
        let indices: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for l in indices {
            let neighbours = if down { preds } else { succs };
            let mut keyed: Vec<(f64, usize, usize)> = layers[l]
                .iter()
                .map(|&v| {
                    let ns = &neighbours[v];
                    let key = if ns.is_empty() {
                        pos[v] as f64
                    } else {
                        ns.iter().map(|&u| pos[u] as f64).sum::<f64>() / ns.len() as f64
                    };
                    (key, pos[v], v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            layers[l] = keyed.into_iter().map(|(_, _, v)| v).collect();
            for (i, &v) in layers[l].iter().enumerate() {
                pos[v] = i;
            }
        }
        let c = crossings(&layers, succs, &pos);
        if c < best_crossings {
            best_crossings = c;
            best = layers.clone();
        }
    }
    (best, best_crossings)
}

/// Top coordinates of every vertex; see step 5 of the module docs.
fn positions(
    layers: &[Vec<usize>],
    preds: &[Vec<usize>],
    succs: &[Vec<usize>],
    heights: &[f64],
    real: usize,
) -> Vec<f64> {
    let vertices = heights.len();
    let gap = |a: usize, b: usize| {
        if a < real && b < real {
            NODE_GAP
        } else {
            DUMMY_GAP
        }
    };
    let mut top = vec![0.0; vertices];
    for layer in layers {
        let mut y = 0.0;
        for (i, &v) in layer.iter().enumerate() {
            if i > 0 {
                y += gap(layer[i - 1], v);
            }
            top[v] = y;
            y += heights[v];
        }
    }
    let center = |top: &[f64], v: usize| top[v] + heights[v] / 2.0;
    for sweep in 0..POSITION_SWEEPS {
        let down = sweep % 2 == 0;
        let indices: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for l in indices {
            let neighbours = if down { preds } else { succs };
            let layer = &layers[l];
            let desired: Vec<f64> = layer
                .iter()
                .map(|&v| {
                    let ns = &neighbours[v];
                    let c = if ns.is_empty() {
                        center(&top, v)
                    } else {
                        ns.iter().map(|&u| center(&top, u)).sum::<f64>() / ns.len() as f64
                    };
                    c - heights[v] / 2.0
                })
                .collect();
            let seps: Vec<f64> = layer
                .windows(2)
                .map(|w| heights[w[0]] + gap(w[0], w[1]))
                .collect();
            for (v, y) in layer.iter().zip(place(&desired, &seps)) {
                top[*v] = y;
            }
        }
    }
    let min = top.iter().copied().fold(f64::INFINITY, f64::min);
    let shift = if min.is_finite() { MARGIN - min } else { 0.0 };
    top.iter().map(|t| t + shift).collect()
}

/// Positions closest (least squares) to `desired` with
/// `y[i + 1] >= y[i] + seps[i]`: pool-adjacent-violators over the
/// offset-free values.
fn place(desired: &[f64], seps: &[f64]) -> Vec<f64> {
    let mut offset = Vec::with_capacity(desired.len());
    let mut o = 0.0;
    for i in 0..desired.len() {
        if i > 0 {
            o += seps[i - 1];
        }
        offset.push(o);
    }
    // Blocks of (sum, count).
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for (d, o) in desired.iter().zip(&offset) {
        blocks.push((d - o, 1));
        while blocks.len() > 1 {
            let (s2, c2) = blocks[blocks.len() - 1];
            let (s1, c1) = blocks[blocks.len() - 2];
            if s1 / c1 as f64 > s2 / c2 as f64 {
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (s1 + s2, c1 + c2);
            } else {
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(desired.len());
    for (s, c) in blocks {
        let mean = s / c as f64;
        for _ in 0..c {
            let i = out.len();
            out.push(mean + offset[i]);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 60-service fleet: 4 tiers (edge, api, domain, storage), each
    /// service calling 1 to 4 services further down, some calls back up
    /// (cycles), some within a tier and a few self-calls. Deterministic.
    pub(crate) fn synthetic_fleet() -> (Vec<String>, Vec<(usize, usize)>) {
        let tiers = [("edge", 6usize), ("api", 14), ("domain", 22), ("store", 18)];
        let mut names = Vec::new();
        let mut tier_of = Vec::new();
        for (t, (prefix, count)) in tiers.iter().enumerate() {
            for i in 0..*count {
                let word = ["alpha", "beta", "gamma", "delta", "omega", "sigma"][i % 6];
                names.push(format!("{prefix}-{word}-{i:02}"));
                tier_of.push(t);
            }
        }
        let mut seed: u64 = 0x5eed;
        let mut rand = |m: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % m
        };
        let mut edges = std::collections::BTreeSet::new();
        for (v, &t) in tier_of.iter().enumerate() {
            if t == 3 {
                continue;
            }
            for _ in 0..1 + rand(4) {
                let lower: Vec<usize> = (0..names.len()).filter(|&w| tier_of[w] > t).collect();
                edges.insert((v, lower[rand(lower.len())]));
            }
        }
        for _ in 0..6 {
            let v = rand(names.len());
            let w = rand(names.len());
            edges.insert((v, w));
        }
        edges.insert((3, 3));
        (names, edges.into_iter().collect())
    }

    fn check(labels: &[&str], edges: &[(usize, usize)]) -> Layout {
        let l = layout(labels, edges);
        assert_eq!(l.nodes.len(), labels.len());
        assert_eq!(l.routes.len(), edges.len(), "every edge is routed");
        for (i, a) in l.nodes.iter().enumerate() {
            assert!(a.x >= 0.0 && a.y >= 0.0 && a.right() <= l.width && a.bottom() <= l.height);
            assert!(a.w >= node_width(labels[i]));
            for (j, b) in l.nodes.iter().enumerate().skip(i + 1) {
                assert!(
                    !a.overlaps(b),
                    "{} {a:?} overlaps {} {b:?}",
                    labels[i],
                    labels[j]
                );
            }
        }
        for (route, &(from, to)) in l.routes.iter().zip(edges) {
            let (a, b) = (l.nodes[from], l.nodes[to]);
            match route {
                Route::SelfLoop { start, end } => {
                    assert_eq!(from, to);
                    assert_eq!((start.1, end.1), (a.y, a.y));
                }
                Route::Path(points) => {
                    assert_ne!(from, to);
                    assert!(points.len() >= 2);
                    let (first, last) = (points[0], points[points.len() - 1]);
                    let on_side = |b: NodeBox, p: (f64, f64)| {
                        (p.0 == b.x || p.0 == b.right()) && p.1 >= b.y && p.1 <= b.bottom()
                    };
                    assert!(on_side(a, first), "{:?} starts off its box", (from, to));
                    assert!(on_side(b, last), "{:?} ends off its box", (from, to));
                    // In between it never enters a box.
                    let inside = |n: &NodeBox, (x, y): (f64, f64)| {
                        x > n.x && x < n.right() && y > n.y && y < n.bottom()
                    };
                    for p in &points[1..points.len() - 1] {
                        for n in &l.nodes {
                            assert!(!inside(n, *p), "{:?} passes through {n:?}", (from, to));
                        }
                    }
                }
            }
        }
        l
    }

    #[test]
    fn sixty_services_no_overlaps_all_edges_deterministic() {
        let (names, edges) = synthetic_fleet();
        assert_eq!(names.len(), 60);
        let labels: Vec<&str> = names.iter().map(String::as_str).collect();
        let l = check(&labels, &edges);
        assert_eq!(l, layout(&labels, &edges), "deterministic");
        // Callers left of callees, except for edges that close a cycle.
        let forward = edges
            .iter()
            .filter(|(a, b)| l.layers[*a] < l.layers[*b])
            .count();
        assert!(
            forward * 10 >= edges.len() * 8,
            "{forward} of {}",
            edges.len()
        );
        // The barycenter sweeps remove most crossings of the index order.
        let unordered = layout_with(&labels, &edges, 0).crossings;
        assert!(
            l.crossings * 2 < unordered,
            "{} crossings, {unordered} unordered",
            l.crossings
        );
    }

    #[test]
    fn chain_is_straight_and_crossing_free() {
        let l = check(&["a", "b", "c"], &[(0, 1), (1, 2)]);
        assert_eq!(l.layers, [0, 1, 2]);
        assert_eq!(l.crossings, 0);
        assert_eq!(l.nodes[0].y, l.nodes[2].y);
        assert!(l.nodes[0].x < l.nodes[1].x && l.nodes[1].x < l.nodes[2].x);
    }

    #[test]
    fn cycles_long_edges_and_loops() {
        // a -> b -> c -> a, a -> c (spans), d alone, c -> c.
        let edges = [(0, 1), (1, 2), (2, 0), (0, 2), (2, 2)];
        let l = check(&["a", "b", "c", "d"], &edges);
        assert_eq!(l.layers[..3], [0, 1, 2]);
        let Route::Path(back) = &l.routes[2] else {
            panic!("path")
        };
        // c -> a is drawn from c's left side to a's right side.
        assert_eq!(back[0].0, l.nodes[2].x);
        assert_eq!(back[back.len() - 1].0, l.nodes[0].right());
        assert!(matches!(l.routes[4], Route::SelfLoop { .. }));
    }

    #[test]
    fn empty_and_single() {
        let l = layout(&[], &[]);
        assert!(l.nodes.is_empty() && l.width > 0.0);
        let l = check(&["only"], &[]);
        assert_eq!(l.nodes[0].x, MARGIN);
    }

    #[test]
    fn placement_is_least_squares_under_spacing() {
        assert_eq!(place(&[0.0, 0.0], &[10.0]), [-5.0, 5.0]);
        assert_eq!(place(&[0.0, 50.0], &[10.0]), [0.0, 50.0]);
        assert_eq!(
            place(&[10.0, 0.0, 100.0], &[10.0, 10.0]),
            [0.0, 10.0, 100.0]
        );
    }
}
