//! Search: the index file and fuzzy queries (GPU kNN + exact re-rank).
pub mod dedup;
pub mod index;
pub mod join;
pub mod query;

/// Threshold search's screen: whether a candidate `b` of `a` whose estimate less the
/// line's intercept ([`crate::model::Estimator::screen`]) is `screen` gets its exact
/// distance checked against a `limit` of blowup x D. A string equal to `a` always does:
/// its screen is 0 only up to the rounding of f16 storage and of GPU and CPU sums,
/// which would keep exact duplicates out of a search at D = 0. Symmetric in `a` and `b`.
pub fn passes_screen(screen: f32, limit: f32, a: &[u8], b: &[u8]) -> bool {
    screen <= limit || a == b
}
