//! `shoal get URL -o FILE`: any large file (model weights) through the
//! local daemon and the swarm.
//!
//! The daemon fetches the file (`POST /api/v1/get` on its admin address;
//! registry blob URLs, `…/v2/<name>/blobs/<digest>`, through its mirror,
//! as containerd's pulls go) and streams it back; this command writes
//! `FILE.part`, and renames it to `FILE` once every byte arrived and, with
//! a digest, matched it. `FILE.part.key` names the version the partial
//! file is of: a later run resumes from the partial file's end (a `Range`
//! request; the daemon keeps what it fetched too) when the daemon still
//! names the same version, and starts over otherwise. A cut transfer is
//! resumed a few times before the command gives up; a refusal or a
//! mismatch ends it at once, non-zero, with the daemon's one-line reason.
//! Headers given with `--header` go to the daemon in the request body and
//! are never written to disk or printed.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use shoal_core::Digest;

/// Transfers cut mid-way that are resumed before giving up.
const RESUMES: u32 = 5;

/// `shoal get` flags.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The file's http(s) URL (a registry blob URL, …/v2/<name>/blobs/sha256:…, works too).
    pub(crate) url: String,
    /// Where to write it (FILE.part until it is complete).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// The file's digest (sha256:…): it is verified against it, and a mismatch leaves no FILE.
    #[arg(long)]
    pub(crate) digest: Option<Digest>,
    /// A header for the origin, e.g. 'Authorization: Bearer …' (repeatable; never written to disk or
    /// logged). For a registry blob URL only Authorization is sent.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// The local daemon's admin address.
    #[arg(long, env = "SHOAL_METRICS_LISTEN", default_value = "127.0.0.1:65002")]
    pub(crate) admin: String,
    /// The local daemon's mirror (for registry blob URLs).
    #[arg(long, env = "SHOAL_MIRROR", default_value = "http://127.0.0.1:65001")]
    pub(crate) mirror: String,
}

/// How the file is asked for.
enum Source {
    /// `POST /api/v1/get` with this JSON body.
    Daemon { endpoint: String, body: serde_json::Value },
    /// A registry blob through the mirror, with the caller's credentials.
    Mirror { url: String, authorization: Option<String> },
}

/// Why a request got no bytes.
enum Refused {
    /// The file cannot be had as asked (mismatch, changed, refused): stop.
    Final(anyhow::Error),
    /// A mismatch or a changed file: the partial file is worthless.
    Conflict(anyhow::Error),
    /// The partial file is no prefix of the file (416 for its length):
    /// fetch from byte 0.
    Restart,
}

/// Entry point of `shoal get`.
pub(crate) fn main(args: GetArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: GetArgs) -> anyhow::Result<()> {
    let url = url_of(&args.url)?;
    let headers = parse_headers(&args.headers)?;
    let in_url = blob_digest(&url);
    if let (Some(a), Some(b)) = (&args.digest, &in_url.as_ref().map(|x| &x.1))
        && a != *b
    {
        bail!("--digest {a} contradicts the digest in the URL ({b})");
    }
    let expected = args.digest.clone().or_else(|| in_url.as_ref().map(|x| x.1.clone()));
    let source = match &in_url {
        Some((name, d)) => {
            let authorization =
                headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization")).map(|h| h.1.clone());
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let ns = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            let mirror = args.mirror.trim_end_matches('/');
            Source::Mirror { url: format!("{mirror}/v2/{name}/blobs/{d}?ns={ns}"), authorization }
        }
        None => {
            let admin = args.admin.split(',').next().unwrap_or_default().trim();
            let base = if admin.starts_with("http") { admin.to_owned() } else { format!("http://{admin}") };
            let body = serde_json::json!({
                "url": args.url,
                "digest": args.digest.as_ref().map(|d| d.to_string()),
                "headers": headers,
            });
            Source::Daemon { endpoint: format!("{}/api/v1/get", base.trim_end_matches('/')), body }
        }
    };
    let part = suffixed(&args.output, ".part");
    let key_file = suffixed(&args.output, ".part.key");
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut run_key: Option<String> = None;
    let mut resumes = 0;
    loop {
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let stored = std::fs::read_to_string(&key_file).ok();
        let from = if stored.is_some() { have } else { 0 };
        let resp = match send(&client, &source, from).await {
            Ok(r) => r,
            Err(Refused::Final(e)) => return Err(e),
            Err(Refused::Conflict(e)) => {
                discard(&part, &key_file);
                return Err(e);
            }
            Err(Refused::Restart) => {
                eprintln!("{} does not fit the file; starting over", part.display());
                discard(&part, &key_file);
                continue;
            }
        };
        let key = response_key(&resp);
        if let (Some(before), Some(now)) = (&run_key, &key)
            && before != now
        {
            discard(&part, &key_file);
            bail!("{} changed at the origin during the download; run shoal get again", shown(&url));
        }
        if from > 0 && (key.is_none() || key != stored || resp.status() != reqwest::StatusCode::PARTIAL_CONTENT) {
            eprintln!("{} is of another version of the file; starting over", part.display());
            drop(resp);
            discard(&part, &key_file);
            continue;
        }
        if let Some(k) = &key {
            std::fs::write(&key_file, k).with_context(|| format!("cannot write {}", key_file.display()))?;
            run_key = Some(k.clone());
        }
        match receive(resp, &part, from).await {
            Ok(()) => break,
            Err(e) if resumes < RESUMES => {
                resumes += 1;
                eprintln!("transfer cut ({e:#}); resuming");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("the transfer was cut {} times, last: {e:#}; run the same command to resume", resumes + 1),
        }
    }
    if let Some(d) = &expected {
        let actual = hash_file(&part, d)?;
        if &actual != d {
            discard(&part, &key_file);
            bail!("{} hashes to {actual}, not {d}; removed it", shown(&url));
        }
    }
    File::open(&part)?.sync_all()?;
    std::fs::rename(&part, &args.output).with_context(|| format!("cannot rename {} into place", part.display()))?;
    let _ = std::fs::remove_file(&key_file);
    Ok(())
}

fn url_of(raw: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw).map_err(|_| anyhow::anyhow!("{raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("only http:// and https:// URLs can be fetched, not {}:", url.scheme());
    }
    Ok(url)
}

/// `NAME: VALUE` pairs.
fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| match h.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_owned(), v.trim().to_owned())),
            // The value may be a secret: only the name part is shown.
            _ => bail!("--header wants 'NAME: VALUE' (got one without a colon or a name)"),
        })
        .collect()
}

/// The repository name and digest of a registry blob URL.
fn blob_digest(url: &reqwest::Url) -> Option<(String, Digest)> {
    let (before, d) = url.path().rsplit_once("/blobs/")?;
    let name = before.strip_prefix("/v2/")?;
    (!name.is_empty()).then_some(())?;
    Some((name.to_owned(), d.parse().ok()?))
}

fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn discard(part: &Path, key_file: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(key_file);
}

/// Ask for the file from byte `from` on; a refusal carries the daemon's reason.
async fn send(client: &reqwest::Client, source: &Source, from: u64) -> Result<reqwest::Response, Refused> {
    let (target, req) = match source {
        Source::Daemon { endpoint, body } => (endpoint.clone(), client.post(endpoint).json(body)),
        Source::Mirror { url, authorization } => {
            let mut r = client.get(url);
            if let Some(a) = authorization {
                r = r.header(reqwest::header::AUTHORIZATION, a);
            }
            (url.split('/').take(3).collect::<Vec<_>>().join("/"), r)
        }
    };
    let req = if from > 0 { req.header(reqwest::header::RANGE, format!("bytes={from}-")) } else { req };
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_connect() { "is `shoal daemon` running? (--admin/--mirror name its addresses)" } else { "" };
        Refused::Final(anyhow::anyhow!("no answer from the shoal daemon at {target}: {e} {why}"))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && from > 0 {
        return Err(Refused::Restart);
    }
    let body = resp.text().await.unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let why = v["error"]
        .as_str()
        .or_else(|| v["errors"][0]["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{status}"));
    let e = anyhow::anyhow!("{why}");
    Err(if status == reqwest::StatusCode::CONFLICT { Refused::Conflict(e) } else { Refused::Final(e) })
}

/// The version a response is of: the daemon's key, or a blob's digest.
fn response_key(resp: &reqwest::Response) -> Option<String> {
    ["x-shoal-key", "docker-content-digest"]
        .iter()
        .find_map(|h| resp.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Write the body into `part` at `from`, with a progress bar on a terminal.
async fn receive(mut resp: reqwest::Response, part: &Path, from: u64) -> anyhow::Result<()> {
    let len = resp.content_length().unwrap_or(0);
    let total = from + len;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    file.set_len(from)?;
    file.seek(SeekFrom::Start(from))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_position(from);
        b
    });
    let mut at = from;
    let result = loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                file.write_all(&c).with_context(|| format!("cannot write {}", part.display()))?;
                at += c.len() as u64;
                if let Some(b) = &bar {
                    b.set_position(at);
                }
            }
            Ok(None) if at == total => break Ok(()),
            Ok(None) => break Err(anyhow::anyhow!("the daemon's answer ended at byte {at} of {total}")),
            Err(e) => break Err(anyhow::anyhow!("at byte {at} of {total}: {e}")),
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    file.flush()?;
    result
}

/// The digest of the file at `path`, with `like`'s algorithm.
fn hash_file(path: &Path, like: &Digest) -> anyhow::Result<Digest> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = like.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_blob_urls_and_headers() {
        let d = Digest::sha256_of(b"x");
        let u = url_of(&format!("https://r.example/v2/org/model/blobs/{d}")).unwrap();
        assert_eq!(blob_digest(&u), Some(("org/model".to_owned(), d)));
        assert_eq!(blob_digest(&url_of("https://h.example/model.bin").unwrap()), None);
        assert!(url_of("file:///etc/passwd").is_err());
        let h = parse_headers(&["Authorization: Bearer s3cr3t".to_owned()]).unwrap();
        assert_eq!(h, vec![("Authorization".to_owned(), "Bearer s3cr3t".to_owned())]);
        let e = parse_headers(&["Bearer s3cr3t".to_owned()]).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
