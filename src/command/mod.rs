//! Commands as data: the static table (arity, flags, key positions, route), classification of a
//! request, and finding its keys. The commands strata answers itself are in `builtin`.

pub mod classify;
pub mod keys;
pub mod spec;
pub mod table;
