//! The journal: one SQLite file in the state directory. Only this module knows SQL.
