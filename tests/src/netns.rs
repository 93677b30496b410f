//! Two network namespaces joined by a veth pair, for traffic that leaves
//! loopback: A is 10.200.<net>.1, B is .2. Both are deleted when dropped (with
//! everything in them), also when the test panics.
use std::process::{Command, Stdio};

pub struct NetnsPair {
    pub a: String,
    pub b: String,
    /// 10.200.<net>.0/24.
    pub net: u32,
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    crate::run_ok("ip", args);
}

impl NetnsPair {
    /// Namespaces named after `tag` and this test process.
    pub fn new(tag: &str) -> NetnsPair {
        let pid = std::process::id();
        let pair = NetnsPair {
            a: format!("ntA{tag}{pid}"),
            b: format!("ntB{tag}{pid}"),
            net: 10 + pid % 240,
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        // Interface names live inside the namespaces, so short fixed ones will do.
        ip(&[
            "link", "add", "ntva", "netns", &pair.a, "type", "veth", "peer", "name", "ntvb",
            "netns", &pair.b,
        ]);
        for (ns, dev, host) in [(&pair.a, "ntva", 1), (&pair.b, "ntvb", 2)] {
            let cidr = format!("{}/24", pair.ip(host));
            ip(&["-n", ns, "addr", "add", &cidr, "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// `10.200.<net>.<host>`.
    pub fn ip(&self, host: u32) -> String {
        format!("10.200.{}.{host}", self.net)
    }

    /// The pair's network, as the baseline names it.
    pub fn network(&self) -> String {
        format!("10.200.{}.0/24", self.net)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
