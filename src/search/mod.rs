//! Search: the index file and fuzzy queries (GPU kNN + exact re-rank).
pub mod index;
pub mod query;
