//! netta: a Linux network connection tracer. The binary (`main.rs`) is a thin shell
//! over this library, so tests and benchmarks drive the same code.
//!
//! Layers, lower first; a module imports only from its own layer or lower ones
//! (see `docs/architecture.md`): `core` (pure), `host` (the OS), `detect`,
//! `settings`, `render`, `agent`, `sink` and `metrics`, `app`.
pub mod core;
pub mod host;

pub mod detect;
pub mod settings;

pub mod render;

pub mod agent;

pub mod api;
pub mod metrics;
pub mod sink;
pub mod store;

pub mod app;

#[cfg(test)]
mod fixture;
