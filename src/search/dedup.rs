//! Near-duplicate groups: union-find over a join's pairs, clusters numbered in order of
//! first appearance, one representative per cluster.
use std::collections::HashMap;

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
        Keep::MostCentral => Some(most_central(index, rows)),
    };
    best.expect("a cluster has members").1
}

/// The member with the smallest sum of exact distances to the others, and that sum.
/// Copies of a string share their sum, so each distinct string is compared once with
/// each other one, weighted by its number of rows: a cluster of k copies costs nothing,
/// not k² distances.
fn most_central(index: &Index, rows: &[usize]) -> (i64, usize) {
    let mut position: HashMap<&[u8], usize> = HashMap::new();
    // (first row, rows holding the string), in row order.
    let mut distinct: Vec<(usize, i64)> = Vec::new();
    for &row in rows {
        let slot = *position.entry(index.string(row)).or_insert_with(|| {
            distinct.push((row, 0));
            distinct.len() - 1
        });
        distinct[slot].1 += 1;
    }
    distinct
        .par_iter()
        .map(|&(row, _)| {
            let exact = Exact::new(index.string(row));
            let sum = distinct
                .iter()
                .map(|&(other, count)| count * exact.distance(index.string(other)) as i64)
                .sum();
            (sum, row)
        })
        .min()
        .expect("a cluster has members")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Line;
    use crate::model::Model;
    use crate::search::index::Precision;

    /// Every pair of rows compared, copies included, against the weighted distinct
    /// strings: same member, same sum, ties to the first row.
    #[test]
    fn most_central_weighs_copies_like_every_pair() {
        let strings: [&[u8]; 9] = [
            b"sitting", b"kitten", b"mitten", b"kitten", b"sitting", b"kitchen", b"sitting", b"",
            b"mitten",
        ];
        let model = Model::builtin().unwrap();
        let lines: Vec<Line> = (0..strings.len())
            .map(|i| Line {
                number: i as u64 + 1,
                text: strings[i].to_vec(),
            })
            .collect();
        let zeros = vec![0.0; strings.len() * model.dim()];
        let index = Index::from_rows(&model, &lines, &zeros, Precision::F32).unwrap();
        let clusters: [&[usize]; 5] = [
            &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            &[1, 2, 3, 8],
            &[2, 8],
            &[0, 4, 6, 7],
            &[5],
        ];
        for rows in clusters {
            let every_pair = rows
                .iter()
                .map(|&r| {
                    let sum = rows
                        .iter()
                        .map(|&o| Exact::new(strings[r]).distance(strings[o]) as i64)
                        .sum::<i64>();
                    (sum, r)
                })
                .min()
                .unwrap();
            assert_eq!(most_central(&index, rows), every_pair, "{rows:?}");
        }
    }

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
