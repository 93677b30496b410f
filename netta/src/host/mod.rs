//! Everything netta reads from the OS: the kernel program (`ebpf`, with `btf`
//! and `tracefs` to place it), /proc (`proc`) and containers (`containers`).
pub mod btf;
pub mod containers;
pub mod ebpf;
pub mod proc;
pub mod self_stats;
pub mod tracefs;
