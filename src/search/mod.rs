//! Search: the index file and fuzzy queries (GPU kNN + exact re-rank).
pub mod index;
pub mod dedup;
pub mod join;
pub mod query;
