//! Everything netta reads from the OS sits behind this module: the kernel program
//! (`ebpf`), /proc (`procfs`) and tracefs (`tracefs`).
pub mod btf;
pub mod ebpf;
pub mod probe;
pub mod procfs;
pub mod tracefs;
