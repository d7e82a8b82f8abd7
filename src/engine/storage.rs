//! Where the Delta tables live, and the Foyer cache in front of object storage.
//!
//! With no bucket configured, tables are folders under `<data dir>/tables/` and deltalake
//! reads them straight from the local file system (the OS page cache already caches them).
//! With `AWS_S3_BUCKET` set, tables live at `s3://<bucket>/<prefix>/<table>/`, and every request
//! goes through [`CachedStore`]: a Foyer hybrid cache (memory + disk under
//! `<data dir>/cache/`) for immutable objects only. Delta commits use put-if-absent
//! (`If-None-Match: *`), so two writers can never both create one commit version.

use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use url::Url;

use crate::config::StorageSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use table location {0}: {1}")]
    Location(String, String),
    #[error("cannot configure S3 bucket {bucket}: {source}")]
    S3 {
        bucket: String,
        source: object_store::Error,
    },
    #[error("cannot open the Foyer cache under {dir}: {reason}")]
    Cache { dir: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Largest single response the cache keeps; bigger reads pass through uncached.
const MAX_CACHED_ENTRY: u64 = 32 << 20;
/// Block size of the Foyer disk engine; must exceed [`MAX_CACHED_ENTRY`].
const DISK_BLOCK_SIZE: usize = 64 << 20;

/// Where tables live and how to reach them.
pub struct Storage {
    /// Directory URL under which each table is a folder `<name>/`.
    base: Url,
    /// The bucket-root object store (cached) for S3; `None` for the local file system.
    store: Option<Arc<CachedStore>>,
}

impl Storage {
    /// Opens the storage `settings` names: the local data folder, or the S3 bucket.
    pub async fn open(settings: &StorageSettings) -> Result<Storage> {
        let Some(s3) = &settings.s3 else {
            let dir = &settings.tables_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Location(dir.display().to_string(), e.to_string()))?;
            let dir = dir
                .canonicalize()
                .map_err(|e| Error::Location(dir.display().to_string(), e.to_string()))?;
            let base = Url::from_directory_path(&dir).map_err(|()| {
                Error::Location(dir.display().to_string(), "not an absolute path".into())
            })?;
            return Ok(Storage { base, store: None });
        };
        register_s3_log_store();
        // A request retries briefly; a flush that still fails is retried by the flusher with
        // its own backoff while the rows stay in the WAL and the buffer.
        let retry = object_store::RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(20),
            backoff: object_store::BackoffConfig::default(),
        };
        let bucket = &s3.bucket;
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_retry(retry)
            .with_bucket_name(bucket)
            .with_region(&s3.region)
            .with_allow_http(s3.allow_http);
        if let Some((id, secret)) = &s3.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|source| Error::S3 {
            bucket: bucket.clone(),
            source,
        })?;
        let prefix = s3.prefix.trim_matches('/');
        let base = if prefix.is_empty() {
            format!("s3://{bucket}/")
        } else {
            format!("s3://{bucket}/{prefix}/")
        };
        let base = Url::parse(&base).map_err(|e| Error::Location(base.clone(), e.to_string()))?;
        let cache = &settings.cache;
        let cache =
            FoyerCache::open(&cache.dir, cache.memory_bytes, cache.disk_bytes, cache.ttl).await?;
        let s3 = store;
        let store = Arc::new(CachedStore::new(Arc::new(s3), cache));
        Ok(Storage {
            base,
            store: Some(store),
        })
    }

    /// Storage over an existing object store (tests: a counting or failing store).
    pub fn with_store(base: Url, store: Arc<CachedStore>) -> Storage {
        register_s3_log_store();
        Storage {
            base,
            store: Some(store),
        }
    }

    /// The URL of table `name`.
    pub fn table_url(&self, name: &str) -> Result<Url> {
        self.base
            .join(&format!("{name}/"))
            .map_err(|e| Error::Location(format!("{}{name}", self.base), e.to_string()))
    }

    /// A builder for table `name`, reading through the cache when there is one.
    pub fn table_builder(&self, name: &str) -> Result<deltalake::DeltaTableBuilder> {
        let url = self.table_url(name)?;
        if url.scheme() == "file" {
            let dir = url
                .to_file_path()
                .map_err(|()| Error::Location(url.to_string(), "not a local directory".into()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Location(dir.display().to_string(), e.to_string()))?;
        }
        let builder = deltalake::DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| Error::Location(url.to_string(), e.to_string()))?;
        Ok(match &self.store {
            Some(store) => builder.with_storage_backend(store.clone(), url),
            None => builder,
        })
    }

    /// Where tables live, for logs and errors.
    pub fn describe(&self) -> String {
        self.base.to_string()
    }

    /// Whether the tables' store answers: a listing of the table root on S3 (bounded by
    /// `timeout`), the data folder's existence on a local disk. For `/ready`.
    pub async fn reachable(&self, timeout: std::time::Duration) -> std::result::Result<(), String> {
        match &self.store {
            Some(store) => {
                let prefix = object_store::path::Path::from(self.base.path());
                match tokio::time::timeout(timeout, store.list_with_delimiter(Some(&prefix))).await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("the object store fails: {e}")),
                    Err(_) => Err(format!("the object store did not answer in {timeout:?}")),
                }
            }
            None => match self.base.to_file_path() {
                Ok(path) if path.is_dir() => Ok(()),
                _ => Err(format!("{} is not a readable folder", self.base)),
            },
        }
    }

    /// Counters of the object-store cache; all zero on the local file system.
    pub fn cache_stats(&self) -> CacheStats {
        self.store
            .as_ref()
            .map(|store| store.stats())
            .unwrap_or_default()
    }

    /// Bytes the cache's memory tier holds; zero on the local file system.
    pub fn cache_memory_bytes(&self) -> usize {
        self.store
            .as_ref()
            .map_or(0, |store| store.cache.cache.memory().usage())
    }

    /// Writes the memory tier's pending entries to disk and closes the cache.
    pub async fn close(&self) {
        if let Some(store) = &self.store
            && let Err(e) = store.cache.cache.close().await
        {
            tracing::warn!("closing the Foyer cache: {e}");
        }
    }
}

/// deltalake resolves a log store by URL scheme. Its own S3 support pulls in the AWS SDK; we
/// build the S3 client with `object_store` and only need the default (put-if-absent) log store.
fn register_s3_log_store() {
    #[derive(Debug)]
    struct PutIfAbsent;
    impl LogStoreFactory for PutIfAbsent {
        fn with_options(
            &self,
            prefixed_store: deltalake::logstore::ObjectStoreRef,
            root_store: deltalake::logstore::ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            deltalake::logstore::logstore_factories().insert(scheme, Arc::new(PutIfAbsent));
        }
    });
}

/// Snapshot of the cache counters, as the `timefusion_cache` SQL table shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache (memory or disk).
    pub hits: u64,
    /// Reads of cacheable objects that went to the store.
    pub misses: u64,
    /// GET requests (whole objects, ranges, heads) sent to the object store.
    pub store_gets: u64,
    /// LIST requests sent to the object store.
    pub store_lists: u64,
    /// PUT, DELETE and COPY requests sent to the object store.
    pub store_writes: u64,
    pub bytes_from_cache: u64,
    pub bytes_from_store: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    store_gets: AtomicU64,
    store_lists: AtomicU64,
    store_writes: AtomicU64,
    bytes_from_cache: AtomicU64,
    bytes_from_store: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Whether the object at `path` never changes once written: data and checkpoint Parquet files
/// (unique names), commit JSON `_delta_log/<20 digits>.json` (put-if-absent) and checksums.
/// `_last_checkpoint` and everything else is read from the store every time.
pub fn is_immutable(path: &Path) -> bool {
    let path = path.as_ref();
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".parquet") {
        return true;
    }
    let in_log = path.contains("_delta_log/");
    let numbered = |suffix: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
    };
    in_log && (numbered(".json") || numbered(".crc"))
}

/// One cached response: the bytes of `range` of the object described by `meta`.
#[derive(Debug, Clone)]
pub struct CachedBytes {
    stored_at_secs: u64,
    size: u64,
    last_modified_micros: i64,
    e_tag: Option<String>,
    start: u64,
    data: Bytes,
}

impl CachedBytes {
    fn meta(&self, location: &Path) -> ObjectMeta {
        ObjectMeta {
            location: location.clone(),
            last_modified: DateTime::<Utc>::from_timestamp_micros(self.last_modified_micros)
                .unwrap_or_default(),
            size: self.size,
            e_tag: self.e_tag.clone(),
            version: None,
        }
    }
}

impl foyer::Code for CachedBytes {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        let io = foyer::Error::io_error;
        writer
            .write_all(&self.stored_at_secs.to_le_bytes())
            .map_err(io)?;
        writer.write_all(&self.size.to_le_bytes()).map_err(io)?;
        writer
            .write_all(&self.last_modified_micros.to_le_bytes())
            .map_err(io)?;
        let e_tag = self.e_tag.as_deref().unwrap_or("");
        writer
            .write_all(&(e_tag.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer.write_all(e_tag.as_bytes()).map_err(io)?;
        writer.write_all(&self.start.to_le_bytes()).map_err(io)?;
        writer
            .write_all(&(self.data.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer.write_all(&self.data).map_err(io)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        fn u64_of(reader: &mut impl std::io::Read) -> foyer::Result<u64> {
            let mut word = [0u8; 8];
            reader
                .read_exact(&mut word)
                .map_err(foyer::Error::io_error)?;
            Ok(u64::from_le_bytes(word))
        }
        fn bytes_of(reader: &mut impl std::io::Read, len: u64) -> foyer::Result<Vec<u8>> {
            let mut data = vec![0u8; len as usize];
            reader
                .read_exact(&mut data)
                .map_err(foyer::Error::io_error)?;
            Ok(data)
        }
        let stored_at_secs = u64_of(reader)?;
        let size = u64_of(reader)?;
        let last_modified_micros = u64_of(reader)? as i64;
        let e_tag_len = u64_of(reader)?;
        let e_tag = bytes_of(reader, e_tag_len)?;
        let e_tag = (!e_tag.is_empty()).then(|| String::from_utf8_lossy(&e_tag).into_owned());
        let start = u64_of(reader)?;
        let len = u64_of(reader)?;
        let data = Bytes::from(bytes_of(reader, len)?);
        Ok(CachedBytes {
            stored_at_secs,
            size,
            last_modified_micros,
            e_tag,
            start,
            data,
        })
    }

    fn estimated_size(&self) -> usize {
        48 + self.e_tag.as_ref().map_or(0, String::len) + self.data.len()
    }
}

/// The Foyer hybrid cache and its expiry.
pub struct FoyerCache {
    cache: HybridCache<String, CachedBytes>,
    ttl: Duration,
}

impl FoyerCache {
    /// Opens (or recovers) the cache with its disk tier under `dir`.
    pub async fn open(
        dir: &FsPath,
        memory_bytes: u64,
        disk_bytes: u64,
        ttl: Duration,
    ) -> Result<FoyerCache> {
        let fail = |reason: String| Error::Cache {
            dir: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let free = fs2::available_space(dir).map_err(|e| fail(e.to_string()))?;
        // Never plan for more disk than there is: Foyer fails writes past the free space.
        let usable = free / 10 * 8;
        let disk_bytes = if disk_bytes > usable {
            tracing::info!(
                configured_gb = disk_bytes >> 30,
                usable_gb = usable >> 30,
                "TIMEFUSION_FOYER_DISK_GB exceeds 80% of the free disk space; the disk cache uses the smaller size"
            );
            usable
        } else {
            disk_bytes
        };
        let disk_bytes = disk_bytes.max(2 * DISK_BLOCK_SIZE as u64) as usize;
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(disk_bytes)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let cache = HybridCacheBuilder::new()
            .with_name("timefusion-objects")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(memory_bytes as usize)
            .with_weighter(|key: &String, value: &CachedBytes| {
                key.len() + value.estimated_size_of()
            })
            .storage()
            .with_engine_config(BlockEngineConfig::new(device).with_block_size(DISK_BLOCK_SIZE))
            .build()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(FoyerCache { cache, ttl })
    }

    async fn get(&self, key: &str) -> Option<CachedBytes> {
        let entry = match self.cache.get(key).await {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!("Foyer cache read failed, reading from the store: {e}");
                return None;
            }
        };
        let value = entry.value().clone();
        if now_secs().saturating_sub(value.stored_at_secs) >= self.ttl.as_secs() {
            self.cache.remove(key);
            return None;
        }
        Some(value)
    }

    fn insert(&self, key: String, value: CachedBytes) {
        if value.data.len() as u64 <= MAX_CACHED_ENTRY {
            self.cache.insert(key, value);
        }
    }
}

impl CachedBytes {
    fn estimated_size_of(&self) -> usize {
        foyer::Code::estimated_size(self)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An object store decorator that serves immutable objects from a [`FoyerCache`] and counts
/// every request it sends to the store underneath.
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: FoyerCache,
    counters: Counters,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, cache: FoyerCache) -> CachedStore {
        CachedStore {
            inner,
            cache,
            counters: Counters::default(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&c.hits),
            misses: load(&c.misses),
            store_gets: load(&c.store_gets),
            store_lists: load(&c.store_lists),
            store_writes: load(&c.store_writes),
            bytes_from_cache: load(&c.bytes_from_cache),
            bytes_from_store: load(&c.bytes_from_store),
        }
    }

    fn hit(&self, bytes: usize) {
        bump(&self.counters.hits, 1);
        bump(&self.counters.bytes_from_cache, bytes as u64);
    }

    fn fetched(&self, bytes: usize) {
        bump(&self.counters.bytes_from_store, bytes as u64);
    }

    /// Reads through the cache: `range` of the immutable object at `location`.
    async fn cached_get(
        &self,
        location: &Path,
        range: Option<GetRange>,
    ) -> object_store::Result<GetResult> {
        let key = cache_key(location, range.as_ref());
        if let Some(hit) = self.cache.get(&key).await {
            self.hit(hit.data.len());
            return Ok(result_of(location, hit));
        }
        bump(&self.counters.misses, 1);
        bump(&self.counters.store_gets, 1);
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let result = self.inner.get_opts(location, options).await?;
        if result.range.end - result.range.start > MAX_CACHED_ENTRY {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let start = result.range.start;
        let data = result.bytes().await?;
        self.fetched(data.len());
        let value = CachedBytes {
            stored_at_secs: now_secs(),
            size: meta.size,
            last_modified_micros: meta.last_modified.timestamp_micros(),
            e_tag: meta.e_tag.clone(),
            start,
            data,
        };
        self.cache.insert(key, value.clone());
        Ok(result_of(location, value))
    }
}

fn cache_key(location: &Path, range: Option<&GetRange>) -> String {
    match range {
        None => format!("{location}#all"),
        Some(GetRange::Bounded(r)) => format!("{location}#{}-{}", r.start, r.end),
        Some(GetRange::Offset(o)) => format!("{location}#{o}-"),
        Some(GetRange::Suffix(n)) => format!("{location}#-{n}"),
    }
}

fn ranges_key(location: &Path, range: &Range<u64>) -> String {
    format!("{location}#r{}-{}", range.start, range.end)
}

fn result_of(location: &Path, value: CachedBytes) -> GetResult {
    let meta = value.meta(location);
    let range = value.start..value.start + value.data.len() as u64;
    let data = value.data;
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(data) }).boxed()),
        meta,
        range,
        attributes: Attributes::default(),
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FoyerCached({})", self.inner)
    }
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({:?})", self.inner)
    }
}

/// Whether a GET can be answered from the cache: a plain read of an immutable object.
fn cacheable(location: &Path, options: &GetOptions) -> bool {
    !options.head
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && is_immutable(location)
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.counters.store_writes, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        bump(&self.counters.store_writes, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if cacheable(location, &options) {
            return self.cached_get(location, options.range).await;
        }
        bump(&self.counters.store_gets, 1);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if !is_immutable(location) {
            bump(&self.counters.store_gets, 1);
            return self.inner.get_ranges(location, ranges).await;
        }
        let mut out: Vec<Option<Bytes>> = Vec::with_capacity(ranges.len());
        let mut missing: Vec<(usize, Range<u64>)> = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            let key = ranges_key(location, range);
            match self.cache.get(&key).await {
                Some(hit) => {
                    self.hit(hit.data.len());
                    out.push(Some(hit.data));
                }
                None => {
                    out.push(None);
                    missing.push((i, range.clone()));
                }
            }
        }
        if !missing.is_empty() {
            bump(&self.counters.misses, missing.len() as u64);
            bump(&self.counters.store_gets, 1);
            let wanted: Vec<Range<u64>> = missing.iter().map(|(_, r)| r.clone()).collect();
            let fetched = self.inner.get_ranges(location, &wanted).await?;
            for ((i, range), data) in missing.into_iter().zip(fetched) {
                self.fetched(data.len());
                let key = ranges_key(location, &range);
                // The object's size is not known here; these entries have their own keys and
                // only ever answer `get_ranges`, which returns bare bytes.
                self.cache.insert(
                    key,
                    CachedBytes {
                        stored_at_secs: now_secs(),
                        size: range.end,
                        last_modified_micros: 0,
                        e_tag: None,
                        start: range.start,
                        data: data.clone(),
                    },
                );
                out[i] = Some(data);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        bump(&self.counters.store_writes, 1);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.store_lists, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.store_lists, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.counters.store_lists, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        bump(&self.counters.store_writes, 1);
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[test]
    fn only_immutable_objects_are_cacheable() {
        for path in [
            "t/project_id=a/date=2026-01-01/part-0001-uuid.c000.zstd.parquet",
            "t/_delta_log/00000000000000000007.json",
            "t/_delta_log/00000000000000000010.checkpoint.parquet",
            "t/_delta_log/00000000000000000007.crc",
        ] {
            assert!(is_immutable(&Path::from(path)), "{path}");
        }
        for path in [
            "t/_delta_log/_last_checkpoint",
            "t/_delta_log/7.json",
            "t/_delta_log/_commit_abc.json.tmp",
            "t/notes.json",
        ] {
            assert!(!is_immutable(&Path::from(path)), "{path}");
        }
    }

    async fn store(ttl: Duration) -> (CachedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FoyerCache::open(dir.path(), 16 << 20, 256 << 20, ttl)
            .await
            .expect("cache");
        (CachedStore::new(Arc::new(InMemory::new()), cache), dir)
    }

    #[tokio::test]
    async fn immutable_reads_hit_the_cache_and_mutable_ones_the_store() {
        let (store, _dir) = store(Duration::from_secs(3600)).await;
        let data = Path::from("t/p/part-1.parquet");
        let pointer = Path::from("t/_delta_log/_last_checkpoint");
        let body = Bytes::from((0..=255u8).collect::<Vec<_>>());
        store.put(&data, body.clone().into()).await.expect("put");
        store
            .put(&pointer, Bytes::from_static(b"{}").into())
            .await
            .expect("put");

        for _ in 0..3 {
            assert_eq!(
                store.get_range(&data, 10..20).await.expect("range"),
                body.slice(10..20)
            );
            let whole = store.get(&data).await.expect("get");
            assert_eq!(whole.meta.size, 256);
            assert_eq!(whole.bytes().await.expect("bytes"), body);
            let ranges = store
                .get_ranges(&data, &[0..4, 100..104])
                .await
                .expect("ranges");
            assert_eq!(ranges, vec![body.slice(0..4), body.slice(100..104)]);
            store.get(&pointer).await.expect("pointer");
        }
        let stats = store.stats();
        // Three distinct cacheable reads went to the store once each; the pointer every time.
        assert_eq!(stats.misses, 3 + 1);
        assert_eq!(stats.store_gets, 3 + 3);
        assert_eq!(stats.hits, 2 * 4);
        assert_eq!(stats.store_writes, 2);

        let suffix = store
            .get_opts(
                &data,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..GetOptions::default()
                },
            )
            .await
            .expect("suffix");
        assert_eq!(suffix.range, 248..256);
        assert_eq!(suffix.bytes().await.expect("bytes"), body.slice(248..256));
    }

    #[tokio::test]
    async fn expired_entries_are_read_again() {
        let (store, _dir) = store(Duration::ZERO).await;
        let data = Path::from("t/p/part-2.parquet");
        store
            .put(&data, Bytes::from_static(b"abc").into())
            .await
            .expect("put");
        store.get(&data).await.expect("get");
        store.get(&data).await.expect("get");
        assert_eq!(store.stats().hits, 0);
        assert_eq!(store.stats().store_gets, 2);
    }

    #[tokio::test]
    async fn missing_objects_are_not_cached() {
        let (store, _dir) = store(Duration::from_secs(3600)).await;
        let commit = Path::from("t/_delta_log/00000000000000000001.json");
        assert!(store.get(&commit).await.is_err());
        store
            .put(&commit, Bytes::from_static(b"{}").into())
            .await
            .expect("put");
        let got = store.get(&commit).await.expect("now it exists");
        assert_eq!(got.bytes().await.expect("bytes"), Bytes::from_static(b"{}"));
    }
}
