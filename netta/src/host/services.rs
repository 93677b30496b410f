//! Port names from `/etc/services`.
use crate::core::services::Services;

pub const SERVICES_PATH: &str = "/etc/services";

/// The built-in table plus `/etc/services` when it can be read.
pub fn load() -> Services {
    match std::fs::File::open(SERVICES_PATH) {
        Ok(f) => Services::from_reader(std::io::BufReader::new(f)),
        Err(_) => Services::builtin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Proto;

    #[test]
    fn load_always_has_the_builtin_names() {
        let s = load();
        assert_eq!(s.name(8080, Proto::Tcp), Some("HTTP-Alt"));
        assert_eq!(s.name(22, Proto::Tcp), Some("SSH"));
    }
}
