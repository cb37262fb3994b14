//! Who someone is on this machine: the name of a user id, as recorded with
//! every gate decision.

/// The login name of `uid`, from the user database; `uid <n>` if it has none.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: `pwd` is written by getpwuid_r before it reports success,
        // and its strings point into `buf`, which outlives their use here.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string inside `buf` (see above).
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    format!("uid {uid}")
}

/// The user running this process.
pub fn current_user() -> String {
    // SAFETY: getuid cannot fail.
    user_name(unsafe { libc::getuid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_and_strangers_are_numbers() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(3_999_999_999), "uid 3999999999");
        assert!(!current_user().is_empty());
    }
}
