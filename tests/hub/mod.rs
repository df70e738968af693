//! Helpers for the hub tests: tiny models made here, a Hugging Face cache
//! laid out as the Python libraries lay it out, a mock hub on 127.0.0.1,
//! and `smelt` run with a clean Hugging Face environment (the tests set
//! variables for the child only, never for this process).

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Every variable that points smelt (or hf-hub) at a cache, a hub or a
/// token: removed for the child, so the host's settings never leak in.
const HF_VARS: &[&str] = &[
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    "XDG_CACHE_HOME",
];

/// Run `smelt args` in `cwd` with `HOME` at `home` and the given variables.
pub fn smelt(args: &[&str], cwd: &Path, home: &Path, vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smelt"));
    c.args(args).current_dir(cwd);
    for v in HF_VARS {
        c.env_remove(v);
    }
    c.env("HOME", home);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("run smelt")
}

/// stdout, stderr.
pub fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A tiny Llama-named model with `layers` layers, its values offset by
/// `shift` (so two models differ), as safetensors bytes.
pub fn tiny_model(layers: usize, shift: f32) -> Vec<u8> {
    tiny_model_part(layers, shift, |_| true)
}

/// The tensors of [`tiny_model`] whose names `keep` accepts (a shard).
pub fn tiny_model_part(layers: usize, shift: f32, keep: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let data = |n: usize, k: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (i as f32 * 0.25 + k + shift).to_le_bytes())
            .collect()
    };
    tensors.push((
        "model.embed_tokens.weight".into(),
        vec![8, 4],
        data(32, 0.0),
    ));
    for l in 0..layers {
        tensors.push((
            format!("model.layers.{l}.mlp.down_proj.weight"),
            vec![4, 4],
            data(16, l as f32),
        ));
    }
    tensors.push(("model.norm.weight".into(), vec![4], data(4, 9.0)));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .filter(|(n, _, _)| keep(n))
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A config.json stating `layers` layers.
pub fn tiny_config(layers: usize) -> Vec<u8> {
    format!(
        "{{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \
         \"num_hidden_layers\": {layers}}}"
    )
    .into_bytes()
}

/// A stable content hash standing in for the hub's etag (FNV-1a, hex).
pub fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Put `files` into the cache `cache` as the Python libraries do: each
/// file's bytes in `blobs/<etag>`, `snapshots/<commit>/<file>` a relative
/// link to it, and `refs/<r>` holding `commit` for each of `refs`.
pub fn cache_repo(
    cache: &Path,
    repo: &str,
    commit: &str,
    files: &[(&str, Vec<u8>)],
    refs: &[&str],
) -> PathBuf {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = dir.join("snapshots").join(commit);
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for (name, bytes) in files {
        let tag = etag(bytes);
        std::fs::write(dir.join("blobs").join(&tag), bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{tag}"), snap.join(name)).unwrap();
    }
    for r in refs {
        let at = dir.join("refs").join(r);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, commit).unwrap();
    }
    snap
}

/// One request the mock hub answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request path.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
}

/// A repository the mock hub serves.
#[derive(Clone, Debug, Default)]
pub struct Repo {
    /// The commit every revision resolves to.
    pub sha: String,
    /// File name to bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// When set, requests without `Authorization: Bearer <token>` get 401.
    pub token: Option<String>,
    /// When set, requests about it are read and never answered: the
    /// connection stays open, silent, until the client closes it.
    pub stall: bool,
}

/// A mock hub on 127.0.0.1: the repository API and `resolve` downloads
/// with the headers hf-hub reads (`etag`, `x-repo-commit`,
/// `content-range`), honouring `Range`. Every request is logged.
pub struct Hub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Hub {
    /// Serve `repos` (keyed by `org/name`) on a free port.
    pub fn serve(repos: BTreeMap<String, Repo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = answer(&mut conn, &repos, &l);
            }
        });
        Hub { url, log }
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// The files downloaded (`resolve` requests other than hf-hub's
    /// one-byte metadata probe), in order.
    pub fn downloads(&self) -> Vec<(String, Option<String>)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/resolve/") && r.range.as_deref() != Some("bytes=0-0"))
            .map(|r| (r.path.rsplit('/').next().unwrap().to_string(), r.range))
            .collect()
    }
}

fn answer(
    conn: &mut std::net::TcpStream,
    repos: &BTreeMap<String, Repo>,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v),
                "authorization" => auth = Some(v),
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(Request {
        path: path.clone(),
        range: range.clone(),
        auth: auth.clone(),
    });
    let reply = |conn: &mut std::net::TcpStream, status: &str, headers: &[String], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        conn.flush()
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/models/{org}/{name}/revision/{rev}
    if parts.len() >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "revision" {
        let Some(repo) = repos.get(&format!("{}/{}", parts[2], parts[3])) else {
            return reply(conn, "404 Not Found", &[], b"{}");
        };
        if repo.stall {
            // Until the client hangs up (its process ends).
            let mut rest = Vec::new();
            return reader.read_to_end(&mut rest).map(|_| ());
        }
        if repo.token.is_some() && auth != repo.token.as_ref().map(|t| format!("Bearer {t}")) {
            return reply(conn, "401 Unauthorized", &[], b"{}");
        }
        let siblings: Vec<String> = repo
            .files
            .keys()
            .map(|f| format!("{{\"rfilename\": \"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"sha\": \"{}\", \"siblings\": [{}]}}",
            repo.sha,
            siblings.join(", ")
        );
        return reply(
            conn,
            "200 OK",
            &["Content-Type: application/json".into()],
            body.as_bytes(),
        );
    }
    // /{org}/{name}/resolve/{rev}/{file}
    if parts.len() >= 5 && parts[2] == "resolve" {
        let Some(repo) = repos.get(&format!("{}/{}", parts[0], parts[1])) else {
            return reply(conn, "404 Not Found", &[], b"");
        };
        if repo.token.is_some() && auth != repo.token.as_ref().map(|t| format!("Bearer {t}")) {
            return reply(conn, "401 Unauthorized", &[], b"");
        }
        let file = parts[4..].join("/");
        let Some(bytes) = repo.files.get(&file) else {
            return reply(conn, "404 Not Found", &[], b"");
        };
        let size = bytes.len();
        let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let (a, b) = r.split_once('-').unwrap_or((r, ""));
                let a: usize = a.parse().unwrap_or(0);
                let b: usize = b.parse().map_or(size - 1, |b: usize| b.min(size - 1));
                (a, b)
            }
            None => (0, size - 1),
        };
        let headers = [
            format!("ETag: \"{}\"", etag(bytes)),
            format!("X-Repo-Commit: {}", repo.sha),
            format!("Content-Range: bytes {start}-{end}/{size}"),
        ];
        return reply(conn, "206 Partial Content", &headers, &bytes[start..=end]);
    }
    reply(conn, "404 Not Found", &[], b"")
}
