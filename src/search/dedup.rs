//! Near-duplicate groups: union-find over a join's pairs, clusters numbered in order of
//! first appearance, one representative per cluster.
use rayon::prelude::*;

use super::index::Index;
use crate::edit_distance::{Exact, char_len};

/// Which member of a cluster represents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Keep {
    /// The first line.
    First,
    /// The longest string (ties: the first line).
    Longest,
    /// The smallest sum of exact distances to the other members (ties: the first line).
    MostCentral,
}

/// Disjoint sets over rows `0..n`, joined pair by pair.
pub struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    /// Rows covered.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The set's root; paths are halved on the way.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Sets with more than one member: groups of near-duplicates.
    pub fn groups(&mut self) -> usize {
        let mut size = vec![0usize; self.len()];
        for row in 0..self.len() {
            size[self.find(row)] += 1;
        }
        size.iter().filter(|&&s| s > 1).count()
    }

    /// Join the sets of `a` and `b`; the smaller root becomes the root, so roots are
    /// each set's first row whatever the order of the pairs.
    pub fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.parent[hi] = lo;
    }
}

/// Every row's cluster and each cluster's representative.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// Cluster id of each row: 0, 1, ... in order of first appearance.
    pub cluster: Vec<usize>,
    /// The representative row of each cluster.
    pub representative: Vec<usize>,
}

impl Clusters {
    /// Number clusters of `sets` in row order and choose representatives.
    pub fn new(sets: &mut UnionFind, index: &Index, keep: Keep) -> Clusters {
        let n = sets.len();
        let mut id_of_root = vec![usize::MAX; n];
        let mut members: Vec<Vec<usize>> = Vec::new();
        let cluster: Vec<usize> = (0..n)
            .map(|row| {
                let root = sets.find(row);
                if id_of_root[root] == usize::MAX {
                    id_of_root[root] = members.len();
                    members.push(Vec::new());
                }
                members[id_of_root[root]].push(row);
                id_of_root[root]
            })
            .collect();
        let representative = members
            .par_iter()
            .map(|rows| representative(index, rows, keep))
            .collect();
        Clusters {
            cluster,
            representative,
        }
    }

    /// Cluster sizes, by cluster id.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.representative.len()];
        for &c in &self.cluster {
            sizes[c] += 1;
        }
        sizes
    }
}

/// The member with the smallest key; ties go to the first line (the smallest row).
fn representative(index: &Index, rows: &[usize], keep: Keep) -> usize {
    let best_by = |key: &dyn Fn(usize) -> i64| rows.iter().map(|&r| (key(r), r)).min();
    let best = match keep {
        Keep::First => return rows[0],
        Keep::Longest => best_by(&|r| -(char_len(index.string(r)) as i64)),
        Keep::MostCentral => best_by(&|r| {
            let exact = Exact::new(index.string(r));
            rows.iter()
                .map(|&o| exact.distance(index.string(o)) as i64)
                .sum()
        }),
    };
    best.expect("a cluster has members").1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_first_rows_whatever_the_order() {
        let mut sets = UnionFind::new(6);
        for (a, b) in [(4, 5), (3, 5), (1, 2)] {
            sets.union(a, b);
        }
        let roots: Vec<usize> = (0..6).map(|r| sets.find(r)).collect();
        assert_eq!(roots, [0, 1, 1, 3, 3, 3]);
        assert_eq!(sets.groups(), 2);
    }
}
