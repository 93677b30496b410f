//! netta: a Linux network connection tracer. The binary (`main.rs`) is a thin shell
//! over this library, so tests and benchmarks drive the same code.
pub mod agent;
pub mod api;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod containers;
pub mod detect;
pub mod event;
pub mod export;
#[cfg(test)]
pub mod fixture;
pub mod menu;
pub mod metrics;
pub mod monitor;
pub mod sanitize;
pub mod services;
pub mod sink;
pub mod source;
pub mod stats;
pub mod store;
pub mod style;
pub mod table;
pub mod view;
