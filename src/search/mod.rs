//! Search: the index file and fuzzy queries (GPU kNN + exact re-rank).
pub mod dedup;
pub mod index;
pub mod join;
pub mod query;
