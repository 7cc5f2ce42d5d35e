//! planet-agent: tells a Linux host its network dependencies.
//!
//! Data flows one way, through three layers:
//!
//! ```text
//!  collect                        model                         serve
//!  (raw inputs, one task each)    (one pure step)               (reads snapshots)
//!
//!  flows ─────────┐
//!  socket_table ──┤  Report       Model::apply ─► Snapshot ─►   /metrics
//!  inventory ─────┼─► channel ──► ledger, naming, direction, ─► /api/v1/dependencies
//!  scrapes ───────┘               dependencies, budget, rates   / (page)
//! ```
//!
//! - [`collect`]: each collector reads one source (the kernel's flow maps,
//!   the socket table, the inventory, darkstat/ebpf_exporter) and sends
//!   what it read as a [`collect::Report`]; no collector reads another's
//!   output or the snapshot.
//! - [`model`]: [`model::Model`] turns reports into the next immutable
//!   [`model::Snapshot`]; pure, so it is tested on scripted inputs.
//! - [`serve`]: HTTP; a scrape renders the current snapshot and never
//!   touches the kernel.
//! - [`cli`], [`app`]: flags and wiring.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod collect;
pub mod model;
pub mod privileges;
pub mod serve;

/// Data flows one way: collectors know nothing of the model or serving,
/// and the model nothing of serving.
#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Every non-comment line of the Rust files under `dir` before their
    /// tests, with its file (tests may run a collector into the model).
    fn code_lines(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                code_lines(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                out.extend(
                    text.lines()
                        .take_while(|l| !l.starts_with("#[cfg(test)]"))
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .map(|l| (path.display().to_string(), l.to_owned())),
                );
            }
        }
    }

    fn assert_never_uses(layer: &str, forbidden: &[&str]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer);
        let mut lines = Vec::new();
        code_lines(&dir, &mut lines);
        let offending: Vec<_> = lines
            .iter()
            .filter(|(_, line)| {
                forbidden.iter().any(|f| {
                    line.contains(&format!("crate::{f}")) || line.contains(&format!("    {f}::"))
                })
            })
            .collect();
        assert!(
            offending.is_empty(),
            "{layer} reaches into {forbidden:?}: {offending:#?}"
        );
    }

    #[test]
    fn collectors_report_raw_inputs_only() {
        assert_never_uses("collect", &["model", "serve"]);
    }

    #[test]
    fn the_model_knows_nothing_of_serving() {
        assert_never_uses("model", &["serve"]);
    }
}
