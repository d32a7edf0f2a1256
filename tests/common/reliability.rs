//! What the hostile, soak and lifecycle tests measured, written under
//! target/reliability/ for `scripts/reliability.py` (RELIABILITY.md), as JSON without a
//! JSON dependency.

use std::path::PathBuf;

fn dir(sub: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability").join(sub);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes `path` whole in one step: a suite runs on both servers at once (tests/common/
/// served.rs), and both write the same findings.
fn write(path: PathBuf, text: String) {
    let part = path.with_extension(format!("{}.part", std::process::id()));
    let _ = std::fs::write(&part, text).and_then(|()| std::fs::rename(&part, &path));
}

/// One finding: target/reliability/<case>.json.
pub fn record(case: &str, what: &str, figures: &[(&str, String)]) {
    let figs: Vec<String> = figures.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
    let json = format!("{{\"case\": {case:?}, \"what\": {what:?}, \"figures\": {{{}}}}}\n", figs.join(", "));
    write(dir("").join(format!("{case}.json")), json);
}

/// What one way of ending did to one kind of target: target/reliability/lost/<file>.json.
pub struct LostRow {
    pub ending: &'static str,
    pub role: &'static str,
    pub target: String,
    pub sent: usize,
    pub delivered: usize,
    pub disconnects: usize,
    pub connections: usize,
}

pub fn record_lost(file: &str, rows: &[LostRow]) {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"ending\": {:?}, \"role\": {:?}, \"target\": {:?}, \"sent\": {}, \"delivered\": {}, \"disconnects\": {}, \"connections\": {}}}",
                r.ending, r.role, r.target, r.sent, r.delivered, r.disconnects, r.connections
            )
        })
        .collect();
    write(dir("lost").join(format!("{file}.json")), format!("[{}]\n", rows.join(",\n")));
}
