//! Transparent huge pages for `shoal simulate`'s heap.
//!
//! A simulation of thousands of nodes holds each node's fetch state (its
//! parents, bitfields, trusted hashes, rarity order: about 100 KiB a node)
//! and touches a few cache lines of a different node at almost every
//! event, so with 4 KiB pages nearly every event also misses the TLB. Many
//! kernels hand out huge pages only where a process asks for them
//! (`transparent_hugepage/enabled` set to `madvise`), and jemalloc asks only
//! when its `thp` option says so, which it reads from the environment when
//! the process starts. So `shoal simulate` runs itself once more with that
//! option set; the daemon keeps 4 KiB pages (huge pages would inflate its
//! small resident set).

use std::os::unix::process::CommandExt;

/// The variable jemalloc (as built by tikv-jemallocator) reads its options
/// from.
const MALLOC_CONF: &str = "_RJEM_MALLOC_CONF";

/// Replace this process with the same command, jemalloc backing its heap
/// with transparent huge pages. Returns without doing anything when the
/// variable is already set (by this or by the user, whose options win),
/// and when the re-run cannot start: the simulation then runs on 4 KiB
/// pages, slower but the same.
pub(crate) fn reexec() {
    if std::env::var_os(MALLOC_CONF).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(MALLOC_CONF, "thp:always").exec();
    eprintln!("note: running without transparent huge pages ({err})");
}
