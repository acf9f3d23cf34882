//! `cairn template`: consul-template's language, watching and rendering,
//! so that files such as an nginx upstream block follow the catalog.
//!
//! - [`engine`]: Go's `text/template` (lexer, parser, executor, `fmt`).
//! - [`deps`]: the queries templates depend on, their grammar
//!   (`"tag.name@dc|passing"`), requests and result shapes.
//! - [`funcs`] and [`helpers`]: consul-template's function map.
//! - [`watch`]: one blocking-query watch per distinct dependency.
//! - [`render`]: atomic, change-only writes of the output.
//! - [`config`]: the HCL configuration and the `-template`/`-wait` flags.
//! - [`runner`]: the render loop, quiescence, commands and exit codes.

pub mod config;
pub mod deps;
pub mod engine;
pub mod funcs;
pub mod helpers;
pub mod render;
pub mod runner;
pub mod watch;

#[cfg(test)]
mod tests;
