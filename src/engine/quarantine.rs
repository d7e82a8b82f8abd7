//! Rows that can never be flushed, moved out of the table's way: each set is written durably
//! to `<data>/quarantine/<name>.arrow` (Arrow IPC file format, which `pyarrow.ipc.open_file`
//! reads) before the rows leave the WAL, logged and counted
//! (`timefusion_quarantined_rows_total`). Two sources: WAL records from a build without the
//! checks at the door (`engine::startup`: the file is written at once, and replaying the same
//! record again rewrites the same file), and partitions a flush failed to write
//! `TIMEFUSION_FLUSH_PARTITION_ATTEMPTS` times while others were written (`engine::core`: the
//! file is staged as `<name>.arrow.pending` before the commit that leaves the rows out, which
//! names it, and published once that commit landed; at start-up a staged file ([`staged`])
//! is published if its commit is in the log and discarded if not, since its rows are then
//! replayed from the WAL). So a row is in a quarantine file or in the table, never both.
//! An operator reads the files, fixes the rows and writes them again (or deletes them).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

const STAGED: &str = "arrow.pending";

/// Writes `rows` durably to `<dir>/<name>.arrow`; writing the same name again replaces it.
pub fn keep_aside(dir: &Path, name: &str, rows: &RecordBatch) -> std::io::Result<PathBuf> {
    let path = write(dir, &format!("{name}.arrow"), rows)?;
    count(rows.num_rows());
    Ok(path)
}

/// Writes `rows` durably to `<dir>/<name>.arrow.pending`, to be published by [`publish`] once
/// the commit that leaves them out of the table has landed.
pub fn stage(dir: &Path, name: &str, rows: &RecordBatch) -> std::io::Result<PathBuf> {
    write(dir, &format!("{name}.{STAGED}"), rows)
}

/// Makes the staged file `name` a quarantine file (its commit landed) and counts `rows`
/// (none at start-up, for a file staged before a crash).
pub fn publish(dir: &Path, name: &str, rows: usize) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.arrow"));
    std::fs::rename(dir.join(format!("{name}.{STAGED}")), &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    count(rows);
    Ok(path)
}

/// The names of the files staged in `dir` and not yet published or discarded: at start-up,
/// those a flush staged before a crash; each is published if its commit is in the log and
/// discarded otherwise.
pub fn staged(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{STAGED}")))
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes the staged file `name`: its commit did not land, so its rows are still the table's.
pub fn discard(dir: &Path, name: &str) -> std::io::Result<()> {
    std::fs::remove_file(dir.join(format!("{name}.{STAGED}")))?;
    std::fs::File::open(dir)?.sync_all()
}

fn write(dir: &Path, file: &str, rows: &RecordBatch) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    let partial = dir.join(format!("{file}.partial"));
    let out = std::fs::File::create(&partial)?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(out, &rows.schema())
        .map_err(std::io::Error::other)?;
    writer.write(rows).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    writer.get_ref().sync_all()?;
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

fn count(rows: usize) {
    crate::metrics::get().quarantined_rows.inc_by(rows as u64);
}
