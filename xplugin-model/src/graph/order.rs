//! The resolver's outputs by node index: a load or stop order and the
//! blocked plugins, each sharing the resolution's one copy of the names.
//!
//! They used to be a `Vec<String>` each and a `BTreeMap<String, Blocked>`:
//! 20 000 name allocations and copies for a 10 000-plugin set, which cost
//! more than the rest of the resolver's output. They still compare, print
//! and serialize as those did (a sequence of names, a map by name).

use super::explain::{Blocked, Explain};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Plugin names in an order (load or stop) decided by [`resolve`](super::resolve).
/// Iterates, compares, prints and serializes as a list of names.
#[derive(Clone, Default)]
pub struct PluginOrder {
    explain: Arc<Explain>,
    nodes: Vec<u32>,
}

impl PluginOrder {
    pub(super) fn new(explain: Arc<Explain>, nodes: Vec<u32>) -> PluginOrder {
        PluginOrder { explain, nodes }
    }

    /// The names in order.
    pub fn iter(&self) -> OrderIter<'_> {
        OrderIter {
            explain: &self.explain,
            nodes: self.nodes.iter(),
        }
    }

    /// Number of plugins.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `k`-th name.
    pub fn get(&self, k: usize) -> Option<&str> {
        self.nodes.get(k).map(|&i| self.explain.name(i))
    }

    /// True if `name` is in the order (a linear scan).
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// The names as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// Iterator over the names of a [`PluginOrder`].
#[derive(Clone)]
pub struct OrderIter<'a> {
    explain: &'a Explain,
    nodes: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for OrderIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let explain = self.explain;
        self.nodes.next().map(|&i| explain.name(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.nodes.size_hint()
    }
}

impl DoubleEndedIterator for OrderIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let explain = self.explain;
        self.nodes.next_back().map(|&i| explain.name(i))
    }
}

impl ExactSizeIterator for OrderIter<'_> {}

impl<'a> IntoIterator for &'a PluginOrder {
    type Item = &'a str;
    type IntoIter = OrderIter<'a>;

    fn into_iter(self) -> OrderIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for PluginOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for PluginOrder {
    fn eq(&self, other: &PluginOrder) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PluginOrder {}

impl<S: AsRef<str>> PartialEq<[S]> for PluginOrder {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for PluginOrder {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for PluginOrder {
    fn eq(&self, other: &Vec<S>) -> bool {
        *self == other[..]
    }
}

impl Serialize for PluginOrder {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for name in self {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

/// The plugins that cannot load, by name (in name order). Looks up,
/// iterates, compares, prints and serializes as a map from name to
/// [`Blocked`].
#[derive(Clone, Default)]
pub struct BlockedPlugins {
    /// In node (= name) order, so lookups are binary searches.
    blocked: Vec<Blocked>,
}

impl BlockedPlugins {
    pub(super) fn new(blocked: Vec<Blocked>) -> BlockedPlugins {
        BlockedPlugins { blocked }
    }

    /// The blocked plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Blocked> {
        self.blocked
            .binary_search_by(|b| b.name().cmp(name))
            .ok()
            .and_then(|k| self.blocked.get(k))
    }

    /// True if the plugin named `name` is blocked.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of blocked plugins.
    pub fn len(&self) -> usize {
        self.blocked.len()
    }

    /// True if every plugin loads.
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
    }

    /// (name, blocked) in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Blocked)> + ExactSizeIterator {
        self.blocked.iter().map(|b| (b.name(), b))
    }

    /// The names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.blocked.iter().map(Blocked::name)
    }

    /// The blocked plugins in name order.
    pub fn values(&self) -> std::slice::Iter<'_, Blocked> {
        self.blocked.iter()
    }
}

impl<'a> IntoIterator for &'a BlockedPlugins {
    type Item = (&'a str, &'a Blocked);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Blocked>, fn(&Blocked) -> (&str, &Blocked)>;

    fn into_iter(self) -> Self::IntoIter {
        let pair: fn(&Blocked) -> (&str, &Blocked) = |b| (b.name(), b);
        self.blocked.iter().map(pair)
    }
}

impl std::ops::Index<&str> for BlockedPlugins {
    type Output = Blocked;

    /// The blocked plugin named `name`; panics if it is not blocked, as a
    /// map's index does.
    fn index(&self, name: &str) -> &Blocked {
        match self.get(name) {
            Some(b) => b,
            None => panic!("{name} is not blocked"),
        }
    }
}

impl fmt::Debug for BlockedPlugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for BlockedPlugins {
    fn eq(&self, other: &BlockedPlugins) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for BlockedPlugins {}

impl Serialize for BlockedPlugins {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, blocked) in self {
            map.serialize_entry(name, blocked)?;
        }
        map.end()
    }
}
