//! Which suites start a server: scripts/test.sh runs each of them again on the other
//! server (`AMW_SERVER=owned`), with no list kept by hand.

/// Marks this suite as one that serves, in the folder `AMW_SERVED` names: scripts/test.sh
/// runs every suite so marked again on the other server, so a new suite gets both.
pub fn note() {
    let Some(dir) = std::env::var_os("AMW_SERVED").map(std::path::PathBuf::from) else { return };
    let exe = std::env::current_exe().expect("the test binary's path");
    let stem = exe.file_stem().and_then(|s| s.to_str()).expect("a test binary's name");
    let suite = stem.rsplit_once('-').map_or(stem, |(suite, _hash)| suite);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(suite), b""))
        .expect("the mark written");
}
