//! The pure core: no tokio, no I/O, time passed in. Kernel records and their
//! decoding, addresses, the live table and its history, /proc/net parsing,
//! clock conversion, sanitising, service names and the text of numbers, DNS
//! responses (`dns`) and what they named (`dns_cache`), processes (`process`,
//! `proc_pid`) and containers (`cgroup`).
pub mod cgroup;
pub mod clock;
pub mod community_id;
pub mod dns;
pub mod dns_cache;
pub mod event;
pub mod filter;
pub mod format;
pub mod history_query;
pub mod live;
pub mod owner_filter;
pub mod pipeline;
pub mod proc_net;
pub mod proc_pid;
pub mod process;
pub mod sanitize;
pub mod services;
pub mod sock_diag;
pub mod sock_id;
pub mod stored;
pub mod table;
pub mod top;
pub mod tuple;
pub mod when;
