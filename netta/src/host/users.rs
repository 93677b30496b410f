//! User names (`user.name`) from uids, through the C library (`getpwuid_r`, so
//! NSS sources count too). The agent caches them (`agent::owners`).
use crate::core::sanitize::Text;

/// `getpwuid_r`, with a buffer that grows while the C library says it is too small.
pub fn lookup(uid: u32) -> Option<Text> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: zeroed passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the sizes given; the strings it sets
        // point into `buf`, read before `buf` changes.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || out.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        return Some(Text::escaped(name.to_bytes(), 256));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_and_unknown_uids_have_no_name() {
        assert_eq!(lookup(0).as_ref().map(Text::as_str), Some("root"));
        assert_eq!(lookup(3_999_999_999), None);
    }
}
