//! Rows that can never be flushed, moved out of the table's way: each set is written durably
//! to `<data>/quarantine/<name>.arrow` (Arrow IPC file format, which `pyarrow.ipc.open_file`
//! reads) before the rows leave the WAL, logged and counted
//! (`timefusion_quarantined_rows_total`). Two sources: WAL records from a build without the
//! range check (`engine::startup`), and partitions a flush failed to write
//! `TIMEFUSION_FLUSH_PARTITION_ATTEMPTS` times while others were written (`engine::core`).
//! An operator reads the files, fixes the rows and writes them again (or deletes them).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

/// Writes `rows` durably to `<dir>/<name>.arrow`; writing the same name again replaces it.
pub fn keep_aside(dir: &Path, name: &str, rows: &RecordBatch) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.arrow"));
    let partial = path.with_extension("arrow.partial");
    let file = std::fs::File::create(&partial)?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &rows.schema())
        .map_err(std::io::Error::other)?;
    writer.write(rows).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    writer.get_ref().sync_all()?;
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    crate::metrics::get()
        .quarantined_rows
        .inc_by(rows.num_rows() as u64);
    Ok(path)
}
