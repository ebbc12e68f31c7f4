//! The plan as an operator reads it: one row per model, columns aligned.

use super::machine::cpu_list;
use super::planner::{Assignment, Plan};
use std::fmt;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "machine: {}", self.machine)?;
        let header = ["model", "node", "cores", "cpus", "threads", "properties"];
        let rows: Vec<[String; 6]> = self.reserved.iter().chain(&self.models).map(row).collect();
        write_aligned(f, header, &rows)?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// A header and rows in columns padded to their widest cell (two spaces apart, the last one
/// unpadded), as `vinoserve plan` prints its tables.
pub(super) fn write_aligned<const N: usize>(
    f: &mut fmt::Formatter<'_>,
    header: [&str; N],
    rows: &[[String; N]],
) -> fmt::Result {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

fn row(a: &Assignment) -> [String; 6] {
    let properties: Vec<String> = a
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    [
        a.name.clone(),
        a.node.to_string(),
        format!("{} ({})", cpu_list(&a.cores), a.cores.len()),
        cpu_list(&a.cpus),
        if a.properties.is_empty() {
            "-".into()
        } else {
            a.threads().to_string()
        },
        properties.join(" "),
    ]
}
