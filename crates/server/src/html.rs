//! Escaping for the server's own HTML pages: the one escaper, from `missive_core::html`.

pub use missive_core::html::escape;
