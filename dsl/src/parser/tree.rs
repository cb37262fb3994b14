//! The parse tree of one item in a flat array, for lowering.
//!
//! Filled either by the hand-written [`Recognizer`](super::recognizer) or
//! from pest's parse tree. Walking pest's own `Pair`s costs a
//! reference-count update per step and a recount of the children at every
//! `into_inner`, most of the time of lowering a large file. Here the tree is
//! laid out in preorder, each node knowing where its subtree ends, so every
//! step is an index.

use pest::iterators::Pair;
use pest::{RuleType, Token};

#[derive(Clone, Copy)]
struct Slot<R> {
    rule: R,
    start: usize,
    end: usize,
    /// Index of the first slot after this node's subtree: its next sibling, if it has one.
    after: usize,
}

/// The nodes of one pair and everything inside it. Kept and refilled, so
/// lowering a file item by item allocates it once.
pub(crate) struct Tree<'i, R> {
    src: &'i str,
    slots: Vec<Slot<R>>,
    /// Slots whose end is not known yet, while filling.
    open: Vec<usize>,
}

impl<'i, R: RuleType> Tree<'i, R> {
    pub(crate) fn new(src: &'i str) -> Self {
        Tree { src, slots: Vec::new(), open: Vec::new() }
    }

    /// Replaces the tree with `pair`'s, and returns its root. `pair` must
    /// come from a parse of this tree's `src`.
    pub(crate) fn fill(&mut self, pair: Pair<'i, R>) -> Node<'_, R> {
        self.slots.clear();
        self.open.clear();
        for token in pair.tokens() {
            match token {
                Token::Start { rule, pos } => {
                    self.open.push(self.slots.len());
                    self.slots.push(Slot { rule, start: pos.pos(), end: pos.pos(), after: 0 });
                }
                Token::End { pos, .. } => {
                    // pest's tokens are balanced: every end closes the last open start.
                    if let Some(i) = self.open.pop() {
                        self.slots[i].end = pos.pos();
                        self.slots[i].after = self.slots.len();
                    }
                }
            }
        }
        Node { tree: self, index: 0 }
    }

    /// Empties the tree, for building another by hand.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
    }

    /// How many nodes have been opened: a mark to [`truncate`](Self::truncate) back to.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Starts a node of `rule` at byte `at`, inside the last node opened and
    /// not closed; returns it, for [`close`](Self::close).
    pub(crate) fn open(&mut self, rule: R, at: usize) -> usize {
        self.slots.push(Slot { rule, start: at, end: at, after: 0 });
        self.slots.len() - 1
    }

    /// Ends node `index` at byte `at`, after everything opened inside it.
    pub(crate) fn close(&mut self, index: usize, at: usize) {
        let after = self.slots.len();
        let slot = &mut self.slots[index];
        slot.end = at;
        slot.after = after;
    }

    /// Forgets the nodes opened since [`len`](Self::len) returned `len`.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.slots.truncate(len);
    }

    /// The first node, `None` if there is none.
    pub(crate) fn root(&self) -> Option<Node<'_, R>> {
        (!self.slots.is_empty()).then_some(Node { tree: self, index: 0 })
    }

    /// Every node as (rule, start, end, index after its subtree), in
    /// preorder, for the differential tests of the recognizer.
    pub(crate) fn slots(&self) -> Vec<(R, usize, usize, usize)> {
        self.slots.iter().map(|s| (s.rule, s.start, s.end, s.after)).collect()
    }
}

/// One node of a [`Tree`]: a rule matched over a span of the source.
pub(crate) struct Node<'t, R> {
    tree: &'t Tree<'t, R>,
    index: usize,
}

// Derived impls would require `R: Clone`; a node is a reference and an index.
impl<R> Clone for Node<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Node<'_, R> {}

impl<'t, R: Copy> Node<'t, R> {
    fn slot(&self) -> &'t Slot<R> {
        &self.tree.slots[self.index]
    }

    pub(crate) fn rule(&self) -> R {
        self.slot().rule
    }

    /// Byte offsets of the match in the source.
    pub(crate) fn start(&self) -> usize {
        self.slot().start
    }

    pub(crate) fn end(&self) -> usize {
        self.slot().end
    }

    /// The matched text.
    pub(crate) fn as_str(&self) -> &'t str {
        let s = self.slot();
        &self.tree.src[s.start..s.end]
    }

    /// The nodes directly inside this one, in order.
    pub(crate) fn children(&self) -> Children<'t, R> {
        Children { tree: self.tree, next: self.index + 1, end: self.slot().after }
    }

    pub(crate) fn first_child(&self) -> Option<Node<'t, R>> {
        self.children().next()
    }
}

#[derive(Clone)]
pub(crate) struct Children<'t, R> {
    tree: &'t Tree<'t, R>,
    next: usize,
    end: usize,
}

impl<'t, R: Copy> Iterator for Children<'t, R> {
    type Item = Node<'t, R>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let node = Node { tree: self.tree, index: self.next };
        self.next = self.tree.slots[self.next].after;
        Some(node)
    }
}
