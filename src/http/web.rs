//! web: the static file server of `--web DIR`, on the same port (and TLS) as the WebSockets.
//!
//! A GET or HEAD that is not an upgrade comes here from `server`. In order:
//! 1. [`parse_request_path`] (pure) percent-decodes the path into segments and refuses anything
//!    that could leave DIR (`..`, encoded slashes, backslashes, NUL);
//! 2. [`resolve`] maps the segments into DIR, canonicalizes, and refuses a result outside DIR
//!    (a symlink leading out); a directory becomes its `index.html`, a listing, or a redirect;
//! 3. [`not_modified`] and [`choose_range`] (pure) decide 304, 206 and 416;
//! 4. the file is streamed in chunks by [`Body`]: never read whole into memory, and never more
//!    than one chunk in the body's hands (see [`FileBody`]).
//!
//! [`Body`] is also the body type of every other response the server sends.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::percent::{percent_decode, percent_encode};

/// How much of a file is read per chunk: the memory a download holds (see [`FileBody`]).
pub const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// The response body
// ---------------------------------------------------------------------------------------------

/// The body of every response: a few bytes, or a file region streamed chunk by chunk.
pub enum Body {
    Bytes(Option<Bytes>),
    File(FileBody),
}

impl Body {
    pub fn empty() -> Body {
        Body::Bytes(None)
    }

    pub fn from_bytes(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body::Bytes((!bytes.is_empty()).then_some(bytes))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::File(file) => file.poll_chunk(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(bytes) => bytes.is_none(),
            Body::File(file) => file.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File(file) => SizeHint::with_exact(file.remaining),
        }
    }
}

/// `remaining` bytes of an open file from `offset`, read on demand, one chunk at a time.
///
/// Each chunk is read with `pread` on the blocking pool into a buffer of its own, which is then
/// handed to hyper whole (frozen, not copied): between chunks the body holds no buffer, and
/// hyper polls it only when its write queue is nearly empty (`MAX_HEAD_BYTES`). So a download
/// whose client stops reading holds one chunk in hyper's queue, plus at most the chunk before
/// it if fewer than 16 KiB of that one were left unsent (a chunk is freed only once all of it
/// is written), and nothing here.
pub struct FileBody {
    /// Shared with the read in flight (`pread` needs no file position).
    file: Arc<std::fs::File>,
    offset: u64,
    remaining: u64,
    /// The chunk being read, if any: its buffer belongs to the blocking task until it is done.
    read: Option<JoinHandle<io::Result<BytesMut>>>,
}

impl FileBody {
    fn new(file: std::fs::File, offset: u64, len: u64) -> FileBody {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            read: None,
        }
    }

    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let read = self.read.get_or_insert_with(|| {
            let file = self.file.clone();
            let offset = self.offset;
            let want = self.remaining.min(CHUNK as u64) as usize;
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, want))
        });
        let result = match Pin::new(read).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(join)) => Err(io::Error::other(join)),
        };
        self.read = None;
        match result {
            Ok(chunk) if !chunk.is_empty() => {
                let n = chunk.len() as u64;
                self.offset += n;
                self.remaining = self.remaining.saturating_sub(n);
                Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
            }
            Ok(_) => {
                self.remaining = 0;
                info!("web: a file shrank while being served");
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being served",
                ))))
            }
            Err(err) => {
                self.remaining = 0;
                info!("web: reading a file failed: {err}");
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}

/// Reads up to `want` bytes at `offset` (fewer only at the end of the file), on the blocking
/// pool. The buffer is allocated here, for this chunk only.
fn read_chunk(file: &std::fs::File, offset: u64, want: usize) -> io::Result<BytesMut> {
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// A request path, decoded and checked before any file system access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded, non-empty segments, none of them `.` or `..`.
    pub segments: Vec<OsString>,
    /// The path ends with `/` (or is `/`): a directory is asked for as one.
    pub trailing_slash: bool,
}

/// Splits and decodes a request path (without its query). `None` means refused: a `..`
/// segment, a NUL, a backslash, or a slash that was percent-encoded (it would join segments
/// the split did not see), or a path not starting with `/`.
pub fn parse_request_path(path: &str) -> Option<RequestPath> {
    let rest = path.strip_prefix('/')?;
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let decoded = percent_decode(raw);
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) || decoded == b".." {
            return None;
        }
        if decoded.is_empty() || decoded == b"." {
            continue;
        }
        segments.push(OsString::from_vec(decoded));
    }
    Some(RequestPath {
        segments,
        trailing_slash: path.ends_with('/'),
    })
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A regular file inside DIR (canonical path).
    File(PathBuf),
    /// A directory inside DIR without an index file: list it (or 404 with `--file-only`).
    Dir(PathBuf),
    /// A directory asked for without its trailing slash: 301 to this location.
    Redirect(String),
    NotFound,
    /// Outside DIR, or a path that tries to leave it.
    Forbidden,
}

/// The location a directory redirects to: the path as asked, plus `/`, plus the query. Leading
/// slashes are collapsed so that `//host/dir` does not become a redirect to another host.
pub fn redirect_location(raw_path: &str, query: Option<&str>) -> String {
    let mut location = format!("/{}/", raw_path.trim_start_matches('/'));
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// Maps a request path into `root` (canonical): the canonical result must stay inside it.
/// Only regular files and directories are ever served (never a FIFO or a device).
pub async fn resolve(root: &Path, raw_path: &str, query: Option<&str>) -> Resolved {
    let Some(request) = parse_request_path(raw_path) else {
        return Resolved::Forbidden;
    };
    let mut candidate = root.to_path_buf();
    candidate.extend(&request.segments);
    let real = match inside(root, &candidate).await {
        Ok(real) => real,
        Err(resolved) => return resolved,
    };
    let Ok(meta) = tokio::fs::metadata(&real).await else {
        return Resolved::NotFound;
    };
    if meta.is_file() {
        // As SimpleHTTPRequestHandler: a file asked for as a directory is not found.
        return if request.trailing_slash {
            Resolved::NotFound
        } else {
            Resolved::File(real)
        };
    }
    if !meta.is_dir() {
        return Resolved::NotFound;
    }
    if !request.trailing_slash {
        return Resolved::Redirect(redirect_location(raw_path, query));
    }
    for index in ["index.html", "index.htm"] {
        match inside(root, &real.join(index)).await {
            Ok(index) if tokio::fs::metadata(&index).await.is_ok_and(|m| m.is_file()) => {
                return Resolved::File(index);
            }
            Ok(_) | Err(Resolved::NotFound) => {}
            Err(other) => return other,
        }
    }
    Resolved::Dir(real)
}

/// The canonical form of `path` if it exists inside `root`.
async fn inside(root: &Path, path: &Path) -> Result<PathBuf, Resolved> {
    match tokio::fs::canonicalize(path).await {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(Resolved::Forbidden),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Err(Resolved::Forbidden),
        Err(_) => Err(Resolved::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// Content types
// ---------------------------------------------------------------------------------------------

/// The `Content-Type` for a file name, from its extension (case-insensitive).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "txt" | "text" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "xml" => "application/xml",
        "xhtml" => "application/xhtml+xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/vnd.microsoft.icon",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "bmp" => "image/bmp",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------------
// Conditional and range requests
// ---------------------------------------------------------------------------------------------

/// What identifies a version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quoted: size and modification time.
    pub etag: String,
    /// The modification time in whole seconds (HTTP dates have no more).
    pub last_modified: SystemTime,
}

impl Validators {
    pub fn new(len: u64, modified: SystemTime) -> Self {
        let since_epoch = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        Validators {
            etag: format!(
                "\"{len:x}-{:x}-{:x}\"",
                since_epoch.as_secs(),
                since_epoch.subsec_nanos()
            ),
            last_modified: UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()),
        }
    }
}

/// An entity tag without its weakness prefix, for the weak comparison of `If-None-Match`.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether a GET/HEAD gets 304 Not Modified. `If-None-Match` wins over `If-Modified-Since`
/// when both are present (RFC 9110 §13.2.2).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    v: &Validators,
) -> bool {
    if let Some(tags) = if_none_match {
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || opaque(tag) == opaque(&v.etag));
    }
    if_modified_since
        .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
        .is_some_and(|since| v.last_modified <= since)
}

/// The answer to a `Range` header for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeChoice {
    /// No range, an unparsable one, several ranges, or a stale `If-Range`: the whole file (200).
    Full,
    /// Bytes `start..=end` (206).
    Partial { start: u64, end: u64 },
    /// No byte of the file is in the range (416).
    Unsatisfiable,
}

/// Decides a `Range` request (one `bytes` range; anything else may be, and is, ignored).
/// `If-Range` must name the current version (strong entity tag or exact date) for the range
/// to apply.
pub fn choose_range(
    range: Option<&str>,
    if_range: Option<&str>,
    len: u64,
    v: &Validators,
) -> RangeChoice {
    let Some(range) = range else {
        return RangeChoice::Full;
    };
    if let Some(condition) = if_range.map(str::trim) {
        let current = if condition.starts_with('"') {
            condition == v.etag
        } else {
            httpdate::parse_http_date(condition).is_ok_and(|date| date == v.last_modified)
        };
        if !current {
            return RangeChoice::Full;
        }
    }
    let range = range.trim();
    let Some(spec) = range
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| range[6..].trim())
    else {
        return RangeChoice::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeChoice::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                RangeChoice::Unsatisfiable
            } else {
                RangeChoice::Partial {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        // bytes=A- and bytes=A-B.
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            let end = end.unwrap_or(u64::MAX);
            if end < start {
                RangeChoice::Full
            } else if start >= len {
                RangeChoice::Unsatisfiable
            } else {
                RangeChoice::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => RangeChoice::Full,
    }
}

// ---------------------------------------------------------------------------------------------
// Directory listings
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub is_dir: bool,
    pub is_symlink: bool,
}

/// The HTML listing of a directory, as SimpleHTTPRequestHandler words it: directories end in
/// `/`, symlinks show `@`, sorted case-insensitively; every name is escaped.
pub fn listing_html(shown_path: &str, mut entries: Vec<Entry>) -> String {
    entries.sort_by_key(|e| e.name.to_string_lossy().to_lowercase());
    let title = format!("Directory listing for {}", html_escape(shown_path));
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         </head>\n<body>\n<h1>{title}</h1>\n<hr>\n<ul>\n"
    );
    for entry in entries {
        let name = entry.name.to_string_lossy();
        let mut href = percent_encode(entry.name.as_bytes());
        let mut shown = name.into_owned();
        if entry.is_dir {
            href.push('/');
            shown.push('/');
        }
        if entry.is_symlink {
            shown.push('@');
        }
        let _ = writeln!(
            html,
            "<li><a href=\"{}\">{}</a></li>",
            html_escape(&href),
            html_escape(&shown)
        );
    }
    html.push_str("</ul>\n<hr>\n</body>\n</html>\n");
    html
}

async fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut reader = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = reader.next_entry().await? {
        let is_symlink = entry.file_type().await.is_ok_and(|t| t.is_symlink());
        let is_dir = tokio::fs::metadata(entry.path())
            .await
            .is_ok_and(|m| m.is_dir());
        entries.push(Entry {
            name: entry.file_name(),
            is_dir,
            is_symlink,
        });
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/// `--web DIR` and `--file-only`, ready to serve.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
    file_only: bool,
}

impl Site {
    /// `root` should be canonical (the command line makes it so); it is canonicalized again
    /// here for library users, and if that fails, nothing will be found under it.
    pub fn new(root: &Path, file_only: bool) -> Site {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        Site { root, file_only }
    }
}

/// Answers a GET or HEAD for a file under the site. Logs one line at debug level.
pub async fn serve(site: &Site, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    let response = respond(site, method, uri, headers).await;
    debug!(
        %method,
        path = %crate::observe::redact::request_target(&uri.to_string()),
        status = response.status().as_u16(),
        "web request"
    );
    response
}

async fn respond(site: &Site, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    let head_only = method == Method::HEAD;
    match resolve(&site.root, uri.path(), uri.query()).await {
        Resolved::File(path) => serve_file(&path, head_only, headers).await,
        Resolved::Dir(_) if site.file_only => error(StatusCode::NOT_FOUND, head_only),
        Resolved::Dir(dir) => match read_entries(&dir).await {
            Ok(entries) => {
                let shown = String::from_utf8_lossy(&percent_decode(uri.path())).into_owned();
                let html = listing_html(&shown, entries);
                let mut response = with_length(StatusCode::OK, html.len() as u64, head_only, html);
                set(
                    &mut response,
                    header::CONTENT_TYPE,
                    "text/html; charset=utf-8",
                );
                response
            }
            Err(err) => {
                info!(dir = %dir.display(), "web: listing failed: {err}");
                error(status_for(&err), head_only)
            }
        },
        Resolved::Redirect(location) => match HeaderValue::from_str(&location) {
            Ok(location) => {
                let mut response = with_length(StatusCode::MOVED_PERMANENTLY, 0, head_only, "");
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => error(StatusCode::NOT_FOUND, head_only),
        },
        Resolved::NotFound => error(StatusCode::NOT_FOUND, head_only),
        Resolved::Forbidden => error(StatusCode::FORBIDDEN, head_only),
    }
}

async fn serve_file(path: &Path, head_only: bool, headers: &HeaderMap) -> Response<Body> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) => {
            if !matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) {
                info!(file = %path.display(), "web: open failed: {err}");
            }
            return error(status_for(&err), head_only);
        }
    };
    let meta = match file.metadata().await {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return error(StatusCode::NOT_FOUND, head_only),
        Err(err) => {
            info!(file = %path.display(), "web: metadata failed: {err}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, head_only);
        }
    };
    let file = file.into_std().await;
    let len = meta.len();
    let v = Validators::new(len, meta.modified().unwrap_or(UNIX_EPOCH));
    let get = |name: header::HeaderName| headers.get(name).and_then(|h| h.to_str().ok());

    let mut response = if not_modified(
        get(header::IF_NONE_MATCH),
        get(header::IF_MODIFIED_SINCE),
        &v,
    ) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        match choose_range(get(header::RANGE), get(header::IF_RANGE), len, &v) {
            RangeChoice::Full => {
                let mut response = file_response(file, StatusCode::OK, 0, len, head_only);
                set(&mut response, header::CONTENT_TYPE, content_type(path));
                response
            }
            RangeChoice::Partial { start, end } => {
                let mut response = file_response(
                    file,
                    StatusCode::PARTIAL_CONTENT,
                    start,
                    end - start + 1,
                    head_only,
                );
                set(&mut response, header::CONTENT_TYPE, content_type(path));
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{end}/{len}"),
                );
                response
            }
            RangeChoice::Unsatisfiable => {
                let mut response = error(StatusCode::RANGE_NOT_SATISFIABLE, head_only);
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes */{len}"),
                );
                response
            }
        }
    };
    set(&mut response, header::ETAG, &v.etag);
    set(
        &mut response,
        header::LAST_MODIFIED,
        &httpdate::fmt_http_date(v.last_modified),
    );
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    response
}

/// A response carrying `len` bytes of `file` from `start` (none for HEAD, but the length).
fn file_response(
    file: std::fs::File,
    status: StatusCode,
    start: u64,
    len: u64,
    head_only: bool,
) -> Response<Body> {
    let body = if head_only {
        Body::empty()
    } else {
        Body::File(FileBody::new(file, start, len))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A small in-memory response with an explicit length (kept for HEAD, whose body is dropped).
fn with_length(
    status: StatusCode,
    len: u64,
    head_only: bool,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let body = if head_only {
        Body::empty()
    } else {
        Body::from_bytes(body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A plain-text error response ("404 Not Found").
pub fn error(status: StatusCode, head_only: bool) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = with_length(status, text.len() as u64, head_only, text);
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    response
}

fn status_for(err: &io::Error) -> StatusCode {
    match err.kind() {
        io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn set(response: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` bytes numbered `i % 251`, in a fresh directory.
    fn numbered_file(len: usize) -> (PathBuf, Vec<u8>) {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "websockify-web-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let path = dir.join("f.bin");
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    /// Polls `body` to its end: the data, or the first error.
    async fn drain(mut body: FileBody) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
                None => return Ok(out),
                Some(Err(err)) => return Err(err),
                Some(Ok(frame)) => {
                    let chunk = frame.into_data().unwrap_or_default();
                    assert!(chunk.len() <= CHUNK);
                    // Between chunks the body holds no buffer (nor a read in flight).
                    assert!(body.read.is_none());
                    out.extend_from_slice(&chunk);
                }
            }
        }
    }

    #[tokio::test]
    async fn file_bodies_stream_a_region_in_chunks_holding_nothing_between_them() {
        let (path, data) = numbered_file(3 * CHUNK + 123);
        let whole = FileBody::new(std::fs::File::open(&path).unwrap(), 0, data.len() as u64);
        assert_eq!(drain(whole).await.unwrap(), data);
        let part = FileBody::new(std::fs::File::open(&path).unwrap(), 1000, 2 * CHUNK as u64);
        assert_eq!(drain(part).await.unwrap(), &data[1000..1000 + 2 * CHUNK]);
    }

    #[tokio::test]
    async fn a_file_that_shrank_ends_its_body_with_an_error() {
        let (path, data) = numbered_file(CHUNK + 10);
        let body = FileBody::new(std::fs::File::open(&path).unwrap(), 0, 5 * CHUNK as u64);
        let err = drain(body).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A region starting past the end: an error at once, no panic.
        let body = FileBody::new(
            std::fs::File::open(&path).unwrap(),
            data.len() as u64 + 5,
            1,
        );
        assert!(drain(body).await.is_err());
    }

    fn segs(path: &str) -> Vec<String> {
        parse_request_path(path)
            .unwrap_or_else(|| panic!("{path} refused"))
            .segments
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn request_paths_split_decode_and_skip_empty_and_dot_segments() {
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs("/a/b.txt"), ["a", "b.txt"]);
        assert_eq!(segs("//a/./b//"), ["a", "b"]);
        assert_eq!(segs("/my%20file.txt"), ["my file.txt"]);
        assert_eq!(segs("/%3Cscript%3E.txt"), ["<script>.txt"]);
        assert_eq!(segs("/100%"), ["100%"]);
        assert_eq!(segs("/%zz"), ["%zz"]);
        assert!(parse_request_path("/").is_some_and(|p| p.trailing_slash));
        assert!(parse_request_path("/a/").is_some_and(|p| p.trailing_slash));
        assert!(parse_request_path("/a").is_some_and(|p| !p.trailing_slash));
    }

    #[test]
    fn request_paths_that_could_leave_the_root_are_refused() {
        for path in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2f..%2f..%2fetc/passwd",
            "/a%2Fb",
            "/..%5c..%5cetc",
            "/a\\..\\b",
            "/a%00.txt",
            "etc/passwd",
            "*",
        ] {
            assert_eq!(parse_request_path(path), None, "{path}");
        }
    }

    #[test]
    fn percent_decoding_handles_bad_escapes_literally() {
        assert_eq!(percent_decode("a%41b"), b"aAb");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%"), b"%");
        assert_eq!(percent_decode("%g1"), b"%g1");
        assert_eq!(percent_decode("%c3%a9"), "é".as_bytes());
    }

    #[test]
    fn redirects_keep_the_query_and_never_point_to_another_host() {
        assert_eq!(redirect_location("/sub", None), "/sub/");
        assert_eq!(redirect_location("/sub", Some("a=1")), "/sub/?a=1");
        assert_eq!(
            redirect_location("//evil.example/x", None),
            "/evil.example/x/"
        );
    }

    #[test]
    fn content_types_cover_web_assets() {
        let ct = |name: &str| content_type(Path::new(name));
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("INDEX.HTM"), "text/html; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("mod.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ct("s.css"), "text/css; charset=utf-8");
        assert_eq!(ct("i.svg"), "image/svg+xml");
        assert_eq!(ct("i.png"), "image/png");
        assert_eq!(ct("i.jpg"), "image/jpeg");
        assert_eq!(ct("i.gif"), "image/gif");
        assert_eq!(ct("favicon.ico"), "image/vnd.microsoft.icon");
        assert_eq!(ct("m.wasm"), "application/wasm");
        assert_eq!(ct("d.json"), "application/json");
        assert_eq!(ct("r.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("app.js.map"), "application/json");
        assert_eq!(ct("f.woff"), "font/woff");
        assert_eq!(ct("f.woff2"), "font/woff2");
        assert_eq!(ct("d.xml"), "application/xml");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("x.unknown"), "application/octet-stream");
        for (name, want) in [
            ("a.text", "text/plain; charset=utf-8"),
            ("a.log", "text/plain; charset=utf-8"),
            ("README.md", "text/markdown; charset=utf-8"),
            ("t.csv", "text/csv; charset=utf-8"),
            ("app.webmanifest", "application/manifest+json"),
            ("p.xhtml", "application/xhtml+xml"),
            ("i.jpeg", "image/jpeg"),
            ("i.webp", "image/webp"),
            ("i.avif", "image/avif"),
            ("i.bmp", "image/bmp"),
            ("f.ttf", "font/ttf"),
            ("f.otf", "font/otf"),
            ("d.pdf", "application/pdf"),
            ("a.zip", "application/zip"),
            ("a.tar.gz", "application/gzip"),
            ("s.mp3", "audio/mpeg"),
            ("s.ogg", "audio/ogg"),
            ("s.oga", "audio/ogg"),
            ("s.wav", "audio/wav"),
            ("v.mp4", "video/mp4"),
            ("v.webm", "video/webm"),
        ] {
            assert_eq!(ct(name), want, "{name}");
        }
    }

    fn validators() -> Validators {
        Validators::new(1000, UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
    }

    #[test]
    fn validators_use_whole_seconds_for_dates() {
        let v = validators();
        assert_eq!(
            v.last_modified,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(v.etag.starts_with('"') && v.etag.ends_with('"'));
        assert_ne!(
            v.etag,
            Validators::new(1001, UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)).etag
        );
    }

    #[test]
    fn if_none_match_decides_before_if_modified_since() {
        let v = validators();
        let same_date = httpdate::fmt_http_date(v.last_modified);
        let earlier = httpdate::fmt_http_date(v.last_modified - Duration::from_secs(1));
        assert!(not_modified(Some(&v.etag), None, &v));
        assert!(not_modified(
            Some(&format!("\"x\", W/{}", v.etag)),
            None,
            &v
        ));
        assert!(not_modified(Some("*"), None, &v));
        assert!(!not_modified(Some("\"other\""), Some(&same_date), &v));
        assert!(not_modified(None, Some(&same_date), &v));
        assert!(!not_modified(None, Some(&earlier), &v));
        assert!(!not_modified(None, Some("not a date"), &v));
        assert!(!not_modified(None, None, &v));
    }

    #[test]
    fn single_byte_ranges_are_honoured() {
        let v = validators();
        let r = |h: &str| choose_range(Some(h), None, 1000, &v);
        assert_eq!(r("bytes=0-99"), RangeChoice::Partial { start: 0, end: 99 });
        assert_eq!(
            r("bytes=900-"),
            RangeChoice::Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=-100"),
            RangeChoice::Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=-5000"),
            RangeChoice::Partial { start: 0, end: 999 }
        );
        assert_eq!(
            r("bytes=990-5000"),
            RangeChoice::Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(r("Bytes= 5-5"), RangeChoice::Partial { start: 5, end: 5 });
    }

    #[test]
    fn unsatisfiable_ranges_are_416() {
        let v = validators();
        let r = |h: &str| choose_range(Some(h), None, 1000, &v);
        assert_eq!(r("bytes=1000-"), RangeChoice::Unsatisfiable);
        assert_eq!(r("bytes=1000-2000"), RangeChoice::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeChoice::Unsatisfiable);
        assert_eq!(
            choose_range(Some("bytes=0-"), None, 0, &v),
            RangeChoice::Unsatisfiable
        );
    }

    #[test]
    fn malformed_or_multiple_ranges_get_the_whole_file() {
        let v = validators();
        let r = |h: &str| choose_range(Some(h), None, 1000, &v);
        for h in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1",
        ] {
            assert_eq!(r(h), RangeChoice::Full, "{h}");
        }
        assert_eq!(choose_range(None, None, 1000, &v), RangeChoice::Full);
    }

    #[test]
    fn if_range_must_name_the_current_version() {
        let v = validators();
        let date = httpdate::fmt_http_date(v.last_modified);
        let part = RangeChoice::Partial { start: 0, end: 9 };
        let r = |cond: &str| choose_range(Some("bytes=0-9"), Some(cond), 1000, &v);
        assert_eq!(r(&v.etag), part);
        assert_eq!(r(&date), part);
        assert_eq!(r("\"stale\""), RangeChoice::Full);
        assert_eq!(r(&format!("W/{}", v.etag)), RangeChoice::Full);
        assert_eq!(
            r(&httpdate::fmt_http_date(
                v.last_modified - Duration::from_secs(1)
            )),
            RangeChoice::Full
        );
    }

    #[test]
    fn listings_escape_names_and_mark_directories_and_links() {
        let entries = vec![
            Entry {
                name: "<script>.txt".into(),
                is_dir: false,
                is_symlink: false,
            },
            Entry {
                name: "Sub dir".into(),
                is_dir: true,
                is_symlink: false,
            },
            Entry {
                name: "a\"&'.txt".into(),
                is_dir: false,
                is_symlink: true,
            },
        ];
        let html = listing_html("/<b>/", entries);
        assert!(html.contains("Directory listing for /&lt;b&gt;/"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("<a href=\"%3Cscript%3E.txt\">&lt;script&gt;.txt</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"Sub%20dir/\">Sub dir/</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"a%22%26%27.txt\">a&quot;&amp;&#x27;.txt@</a>"),
            "{html}"
        );
        // sorted case-insensitively
        let a = html.find("a%22").unwrap_or(usize::MAX);
        let s = html.find("Sub%20").unwrap_or(0);
        assert!(a < s, "{html}");
    }

    /// A fresh, empty, canonical directory for one test.
    fn fresh_dir() -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "websockify-web-site-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        // Emptied first: a recycled pid would find an earlier run's symlinks (`AlreadyExists`).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::canonicalize(&dir).unwrap()
    }

    /// A site to resolve and serve from: files, directories with and without an index, a
    /// directory *named* `index.html`, a FIFO, and symlinks leading out of the root.
    fn site_tree() -> (PathBuf, PathBuf) {
        let root = fresh_dir();
        let outside = fresh_dir();
        std::fs::write(outside.join("secret.txt"), "secret").unwrap();
        std::fs::write(root.join("a.txt"), "hello web").unwrap();
        std::fs::create_dir(root.join("plain")).unwrap();
        std::fs::write(root.join("plain/b.txt"), "b").unwrap();
        std::fs::create_dir(root.join("plain/Sub")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("plain/link.txt")).unwrap();
        std::fs::create_dir(root.join("html")).unwrap();
        std::fs::write(root.join("html/index.html"), "index.html").unwrap();
        std::fs::write(root.join("html/index.htm"), "index.htm").unwrap();
        std::fs::create_dir(root.join("htm")).unwrap();
        std::fs::write(root.join("htm/index.htm"), "index.htm").unwrap();
        std::fs::create_dir_all(root.join("dirindex/index.html")).unwrap();
        std::fs::create_dir(root.join("badindex")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("badindex/index.html"))
            .unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        (root, outside)
    }

    #[tokio::test]
    async fn resolve_maps_paths_to_files_indexes_listings_and_redirects() {
        let (root, _outside) = site_tree();
        let root_ref = &root;
        let r = move |path: &'static str| resolve(root_ref, path, None);
        assert_eq!(r("/a.txt").await, Resolved::File(root.join("a.txt")));
        assert_eq!(r("/a.txt/").await, Resolved::NotFound);
        assert_eq!(r("/missing").await, Resolved::NotFound);
        assert_eq!(r("/fifo").await, Resolved::NotFound);
        assert_eq!(r("/plain").await, Resolved::Redirect("/plain/".into()));
        assert_eq!(
            resolve(&root, "/plain", Some("a=1")).await,
            Resolved::Redirect("/plain/?a=1".into())
        );
        assert_eq!(r("/plain/").await, Resolved::Dir(root.join("plain")));
        // index.html first, then index.htm; a directory named index.html is no index.
        assert_eq!(
            r("/html/").await,
            Resolved::File(root.join("html/index.html"))
        );
        assert_eq!(r("/htm/").await, Resolved::File(root.join("htm/index.htm")));
        assert_eq!(r("/dirindex/").await, Resolved::Dir(root.join("dirindex")));
        // A symlink inside the root is served under its target's canonical path.
        assert_eq!(
            r("/plain/link.txt").await,
            Resolved::File(root.join("a.txt"))
        );
    }

    #[tokio::test]
    async fn resolve_forbids_whatever_leads_out_of_the_root() {
        let (root, _outside) = site_tree();
        let root_ref = &root;
        let r = move |path: &'static str| resolve(root_ref, path, None);
        assert_eq!(r("/../a.txt").await, Resolved::Forbidden);
        assert_eq!(r("/out/secret.txt").await, Resolved::Forbidden);
        assert_eq!(r("/out/").await, Resolved::Forbidden);
        assert_eq!(r("/badindex/").await, Resolved::Forbidden);
    }

    #[test]
    fn io_errors_map_to_404_403_and_500() {
        let status = |kind| status_for(&io::Error::from(kind));
        assert_eq!(status(io::ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status(io::ErrorKind::PermissionDenied),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(io::ErrorKind::Other),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    /// What a client would see of a response: status, headers, the whole body.
    struct Seen {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: header::HeaderName) -> &str {
            self.headers
                .get(&name)
                .map_or("", |v| v.to_str().unwrap_or("(not text)"))
        }
    }

    async fn ask(site: &Site, method: Method, target: &str, headers: &[(&str, &str)]) -> Seen {
        use http_body_util::BodyExt;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let uri: Uri = target.parse().unwrap();
        let response = serve(site, &method, &uri, &map).await;
        let (parts, body) = response.into_parts();
        // A HEAD body, and every fixed one, says it is over before it is polled.
        let ended = hyper::body::Body::is_end_stream(&body);
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        assert_eq!(ended, body.is_empty(), "{target}");
        Seen {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    #[tokio::test]
    async fn get_and_head_serve_a_file_with_its_headers() {
        let (root, _outside) = site_tree();
        let site = Site::new(&root, false);
        let get = ask(&site, Method::GET, "/a.txt", &[]).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.body, b"hello web");
        assert_eq!(get.header(header::CONTENT_LENGTH), "9");
        assert_eq!(
            get.header(header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
        assert_eq!(get.header(header::ACCEPT_RANGES), "bytes");
        let meta = std::fs::metadata(root.join("a.txt")).unwrap();
        let v = Validators::new(9, meta.modified().unwrap());
        assert_eq!(get.header(header::ETAG), v.etag);
        assert_eq!(
            get.header(header::LAST_MODIFIED),
            httpdate::fmt_http_date(v.last_modified)
        );

        let head = ask(&site, Method::HEAD, "/a.txt", &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.body, b"");
        assert_eq!(head.header(header::CONTENT_LENGTH), "9");
        assert_eq!(head.header(header::ETAG), v.etag);
    }

    #[tokio::test]
    async fn conditional_and_range_requests_get_304_206_and_416() {
        let (root, _outside) = site_tree();
        let site = Site::new(&root, false);
        let etag = ask(&site, Method::GET, "/a.txt", &[])
            .await
            .header(header::ETAG)
            .to_owned();

        let same = ask(&site, Method::GET, "/a.txt", &[("if-none-match", &etag)]).await;
        assert_eq!(same.status, StatusCode::NOT_MODIFIED);
        assert_eq!(same.body, b"");
        assert_eq!(same.header(header::ETAG), etag);

        let part = ask(&site, Method::GET, "/a.txt", &[("range", "bytes=1-3")]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.body, b"ell");
        assert_eq!(part.header(header::CONTENT_LENGTH), "3");
        assert_eq!(part.header(header::CONTENT_RANGE), "bytes 1-3/9");
        assert_eq!(
            part.header(header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
        let head = ask(&site, Method::HEAD, "/a.txt", &[("range", "bytes=2-")]).await;
        assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(head.body, b"");
        assert_eq!(head.header(header::CONTENT_LENGTH), "7");

        let none = ask(&site, Method::GET, "/a.txt", &[("range", "bytes=9-")]).await;
        assert_eq!(none.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(none.header(header::CONTENT_RANGE), "bytes */9");
        assert_eq!(none.body, b"416 Range Not Satisfiable\n");
    }

    #[tokio::test]
    async fn directories_are_listed_redirected_or_refused() {
        let (root, _outside) = site_tree();
        let site = Site::new(&root, false);
        let list = ask(&site, Method::GET, "/plain/", &[]).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(
            list.header(header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            list.header(header::CONTENT_LENGTH),
            list.body.len().to_string()
        );
        let html = String::from_utf8(list.body).unwrap();
        assert!(html.contains("Directory listing for /plain/"), "{html}");
        assert!(html.contains("<a href=\"b.txt\">b.txt</a>"), "{html}");
        assert!(html.contains("<a href=\"Sub/\">Sub/</a>"), "{html}");
        assert!(
            html.contains("<a href=\"link.txt\">link.txt@</a>"),
            "{html}"
        );
        let head = ask(&site, Method::HEAD, "/plain/", &[]).await;
        assert_eq!(head.body, b"");
        assert_eq!(head.header(header::CONTENT_LENGTH), html.len().to_string());

        let moved = ask(&site, Method::GET, "/plain?x=1", &[]).await;
        assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(moved.header(header::LOCATION), "/plain/?x=1");
        assert_eq!(moved.header(header::CONTENT_LENGTH), "0");

        let missing = ask(&site, Method::GET, "/nothing", &[]).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body, b"404 Not Found\n");
        assert_eq!(missing.header(header::CONTENT_LENGTH), "14");
        assert_eq!(
            missing.header(header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
        let out = ask(&site, Method::HEAD, "/out/secret.txt", &[]).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN);
        assert_eq!(out.body, b"");
        assert_eq!(out.header(header::CONTENT_LENGTH), "14");

        // --file-only: no listing, but files and indexes still.
        let files = Site::new(&root, true);
        let list = ask(&files, Method::GET, "/plain/", &[]).await;
        assert_eq!(list.status, StatusCode::NOT_FOUND);
        assert_eq!(
            ask(&files, Method::GET, "/html/", &[]).await.body,
            b"index.html"
        );
    }

    /// The root is canonicalized: a root given through a symlink still serves its files (the
    /// containment check compares canonical paths).
    #[tokio::test]
    async fn a_root_given_through_a_symlink_serves_its_files() {
        let (root, _outside) = site_tree();
        let link = fresh_dir().join("root-link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let site = Site::new(&link, false);
        assert_eq!(
            ask(&site, Method::GET, "/a.txt", &[]).await.body,
            b"hello web"
        );
    }

    #[tokio::test]
    async fn byte_bodies_end_after_their_one_frame() {
        use hyper::body::Body as _;
        let mut empty = Body::empty();
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
        let frame = std::future::poll_fn(|cx| Pin::new(&mut empty).poll_frame(cx)).await;
        assert!(frame.is_none());
        assert!(Body::from_bytes("").is_end_stream());

        let mut body = Body::from_bytes("abc");
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(3));
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert_eq!(
            frame.unwrap().unwrap().into_data().unwrap_or_default(),
            "abc"
        );
        assert!(body.is_end_stream());
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(frame.is_none());
    }

    #[tokio::test]
    async fn file_bodies_report_what_remains() {
        use hyper::body::Body as _;
        let (path, _data) = numbered_file(CHUNK + 10);
        let file = std::fs::File::open(&path).unwrap();
        let mut body = Body::File(FileBody::new(file, 5, CHUNK as u64 + 5));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(CHUNK as u64 + 5));
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap().len(), CHUNK);
        assert_eq!(body.size_hint().exact(), Some(5));
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap().len(), 5);
        assert!(body.is_end_stream());
    }

    /// A read error (here: reading a directory) ends the body with that error, at once.
    #[tokio::test]
    async fn a_read_error_ends_the_body_with_it() {
        let dir = fresh_dir();
        let err = read_chunk(&std::fs::File::open(&dir).unwrap(), 0, 10).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
        let body = FileBody::new(std::fs::File::open(&dir).unwrap(), 0, 10);
        let err = drain(body).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    }
}
