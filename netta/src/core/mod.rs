//! Pure pieces: no I/O, no tokio, time passed in.
pub mod community_id;
pub mod sock_id;
