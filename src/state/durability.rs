//! Durability of what gantry writes through libgit2: state commits must be on disk before the
//! journal entry they record is removed, or a power cut right after a pass loses the outcome.

/// Makes libgit2 fsync every loose object, pack, index and reference it writes, in every
/// repository this process opens (libgit2's global `GIT_OPT_ENABLE_FSYNC_GITDIR`; git2 0.21 has
/// no wrapper for it). Call once, before any thread uses libgit2: the gantry binary does so
/// first thing in `main`.
///
/// # Errors
/// libgit2 refused the option (a libgit2 built without it).
pub fn enable_fsync() -> Result<(), git2::Error> {
    libgit2_sys::init();
    // SAFETY: `git_libgit2_opts` with GIT_OPT_ENABLE_FSYNC_GITDIR takes one int argument and only
    // sets a global flag; libgit2 is initialised above.
    let rc = unsafe {
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as std::ffi::c_int,
            1 as std::ffi::c_int,
        )
    };
    if rc < 0 {
        return Err(git2::Error::last_error(rc));
    }
    Ok(())
}
