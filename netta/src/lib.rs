//! netta: a Linux network connection tracer. The binary (`main.rs`) is a thin shell
//! over this library, so tests and benchmarks drive the same code.
//!
//! Layers, lower first; a module imports only from its own layer or lower ones
//! (`docs/architecture.md`): `core` (pure), `host` (the OS), `detect`,
//! `settings`, `render`, `agent`, `sink` and `metrics`, `app`. Everything is
//! crate-private except [`api`], what the tests crate, the benchmark and the
//! fuzz targets use, and [`main`].
#![warn(unused_crate_dependencies)]

// Used by the benchmark only; named so the lint above holds for unit tests too.
#[cfg(test)]
use criterion as _;

pub(crate) mod core;
pub(crate) mod host;

pub(crate) mod detect;
pub(crate) mod settings;

pub(crate) mod render;

pub(crate) mod agent;

pub(crate) mod local_api;
pub(crate) mod metrics;
pub(crate) mod sink;
pub(crate) mod store;

pub(crate) mod app;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod layers;

pub use app::main;

/// The public surface, for the tests crate, the benchmark and the fuzz targets.
pub mod api {
    /// The running agent and its record bus.
    pub use crate::agent::{Agent, AgentOptions, Mode, Record, Shared};
    pub use crate::core::event::{Direction, State, Who};
    /// Text escaped as it enters (paths, arguments, user and pod names).
    pub use crate::core::sanitize::Text;
    /// sock_diag answers (live TCP counters).
    pub use crate::core::sock_diag;
    pub use crate::core::table::{Limits, Table};
    /// Processes and containers: the cache and the parsers of what /proc and cgroups say.
    pub use crate::core::{cgroup, proc_pid, process};
    /// The pure core: kernel records, the table and the one ingest pipeline.
    pub use crate::core::{clock::Clock, event::Action, event::ConnEvent, event::Proto};
    /// Pure pieces with their own tests upstream (Community ID, opaque socket ids).
    pub use crate::core::{community_id, sock_id};
    /// History filters (parsed from flags and the API's query string).
    pub use crate::core::{filter, history_query, when};
    pub use crate::core::{pipeline, proc_net::parse_net, services::Services};
    pub use crate::detect::{Alert, Detector, RuleId, Rules, Severity};
    /// systemd notification (sd_notify).
    pub use crate::host::notify;
    /// What netta reads about the kernel before loading.
    pub use crate::host::{btf::Btf, tracefs};
    /// ECS JSON lines: events and the one alert document.
    pub use crate::render::ecs::{alert_value, write_line, ECS_VERSION};

    /// The Prometheus endpoint.
    pub mod metrics {
        pub use crate::metrics::{bind, serve_on, MAX_HEAD};
    }

    /// DNS responses off the wire (hostile input): the packet and message parsers.
    pub mod dns {
        pub use crate::core::dns::{build, captured, parse, read_name, MAX_NAME};
    }

    /// Where JSON lines go.
    pub mod sink {
        pub use crate::settings::http_spec::{parse_sink, HttpOptions, HttpSpec};
        pub use crate::settings::sink_spec::SinkSpec;
        pub use crate::sink::{fan_out, run, spawn, Chunk, LineMaker, SinkStats, BUFFER_LINES};
    }
}
