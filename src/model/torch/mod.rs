//! PyTorch checkpoints (`pytorch_model.bin` and its shards), in the zip
//! format `torch.save` has written since torch 1.6, read without running
//! anything in them.
//!
//! Such a file is a zip archive whose entries are stored, not compressed:
//! `<prefix>/data.pkl` (a pickle of the state dict, with each tensor's
//! storage named by a persistent id), `<prefix>/data/<key>` (one entry per
//! storage, its raw little-endian bytes), `<prefix>/byteorder` and a few
//! version records. The archive is read with the `zip` crate; the pickle
//! with the restricted unpickler in [`pickle`]. Each tensor then becomes a
//! byte range of the file, exactly like a safetensors tensor, so the
//! engine reads `.bin` tensors through the same positioned reads, with no
//! copy and no whole-file load. Two tensors over one storage (tied
//! weights) are two ranges over the same bytes.
//!
//! Refused, with the file named: the legacy (pre-1.6) pickle format,
//! compressed or encrypted entries, big-endian data, tensors that are not
//! contiguous (a transposed view saved as is), tensors reaching past their
//! storage, and every global or opcode outside what a state dict needs.

mod pickle;

use super::header::HeaderEntry;
use super::{ModelError, Result};
use std::collections::HashMap;
use std::path::Path;

/// Whether `path` names a PyTorch checkpoint by its extension (`.bin`,
/// `.pt`, `.pth`) rather than a safetensors file.
pub(super) fn is_torch_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "bin" | "pt" | "pth"))
}

fn format_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The zip entries' byte ranges that the checkpoint needs.
struct Archive<'a> {
    path: &'a Path,
    file: &'a [u8],
    zip: ::zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    /// The folder inside the archive that holds `data.pkl`, with its `/`.
    prefix: String,
}

impl<'a> Archive<'a> {
    fn open(path: &'a Path, file: &'a [u8]) -> Result<Archive<'a>> {
        if !file.starts_with(b"PK\x03\x04") {
            // torch < 1.6 wrote a bare pickle stream (protocol 2 opens with
            // 0x80 0x02), and torch < 0.4 a tar archive.
            let legacy =
                file.first() == Some(&0x80) || file.get(257..262).is_some_and(|m| m == b"ustar");
            return Err(format_err(
                path,
                if legacy {
                    "a PyTorch checkpoint in the legacy format written before torch 1.6, \
                     which smelt does not read: save it again with torch >= 1.6 \
                     (torch.save(torch.load(f), f)), or convert it to safetensors"
                        .to_string()
                } else {
                    "not a PyTorch checkpoint (since torch 1.6 those are zip archives) \
                     nor a safetensors file"
                        .to_string()
                },
            ));
        }
        let zip = ::zip::ZipArchive::new(std::io::Cursor::new(file))
            .map_err(|e| format_err(path, format!("not a readable zip archive: {e}")))?;
        let mut pkls = zip
            .file_names()
            .filter_map(|n| {
                let n = n.ok()?;
                let dir = n.strip_suffix("data.pkl")?;
                (dir.ends_with('/') && dir.matches('/').count() == 1).then(|| dir.to_string())
            })
            .collect::<Vec<_>>();
        pkls.sort();
        pkls.dedup();
        let prefix = match pkls.len() {
            1 => pkls.remove(0),
            0 => {
                return Err(format_err(
                    path,
                    "a zip archive without a data.pkl: not a PyTorch checkpoint",
                ))
            }
            _ => {
                return Err(format_err(
                    path,
                    format!(
                        "holds {} pickles ({}data.pkl, {}data.pkl, ...); a checkpoint has one",
                        pkls.len(),
                        pkls[0],
                        pkls[1]
                    ),
                ))
            }
        };
        Ok(Archive {
            path,
            file,
            zip,
            prefix,
        })
    }

    /// The byte range of entry `<prefix>/<name>` in the file: it must be
    /// stored whole (not compressed, not encrypted). `None` when absent.
    fn range(&mut self, name: &str) -> Result<Option<(usize, usize)>> {
        let full = format!("{}{name}", self.prefix);
        let Some(i) = self.zip.index_for_name(&full) else {
            return Ok(None);
        };
        let path = self.path;
        let bad = |msg: String| format_err(path, format!("entry `{full}`: {msg}"));
        let entry = self
            .zip
            .by_index_raw(i)
            .map_err(|e| bad(format!("unreadable: {e}")))?;
        if entry.encrypted() {
            return Err(bad("is encrypted".into()));
        }
        if entry.compression() != ::zip::CompressionMethod::Stored {
            return Err(bad(format!(
                "is compressed ({}); torch stores entries uncompressed, and smelt reads \
                 tensors in place, so it needs them so",
                entry.compression()
            )));
        }
        let size = entry.size();
        if entry.compressed_size() != size {
            return Err(bad(format!(
                "stored entry of {size} bytes takes {} bytes in the archive",
                entry.compressed_size()
            )));
        }
        let start = entry
            .data_start()
            .ok_or_else(|| bad("no data offset".into()))?;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= self.file.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "{size} bytes at {start} run past the end of the file"
                ))
            })?;
        Ok(Some((start as usize, end as usize)))
    }
}

/// Read the tensors of the torch checkpoint `file` (the whole file's
/// bytes, normally a memory map; only the zip directory, `data.pkl` and
/// `byteorder` are read). `path` is for messages. Entries are in the
/// state dict's order, offsets absolute within the file; tied tensors
/// may share bytes.
pub fn parse(path: &Path, file: &[u8]) -> Result<Vec<HeaderEntry>> {
    let mut ar = Archive::open(path, file)?;
    if let Some((s, e)) = ar.range("byteorder")? {
        match &file[s..e] {
            b"little" => {}
            b"big" => {
                return Err(format_err(
                    path,
                    "big-endian tensor data; smelt reads little-endian checkpoints",
                ))
            }
            other => {
                return Err(format_err(
                    path,
                    format!(
                        "byteorder record says `{}`",
                        crate::text::Escaped(&String::from_utf8_lossy(other))
                    ),
                ))
            }
        }
    }
    let (s, e) = ar
        .range("data.pkl")?
        .ok_or_else(|| format_err(path, "data.pkl is listed but cannot be found"))?;
    let dict =
        pickle::load(&file[s..e]).map_err(|msg| format_err(path, format!("data.pkl: {msg}")))?;

    let tensor_err = |name: &str, msg: String| ModelError::Tensor {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        msg,
    };
    // Storage key → (its bytes' range, the dtype it was first seen with).
    let mut storages: HashMap<String, (usize, usize, super::Dtype)> = HashMap::new();
    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let st = &t.storage;
        let (s_start, s_end) = match storages.get(&st.key) {
            Some(&(a, b, dtype)) => {
                if dtype != st.dtype {
                    return Err(tensor_err(
                        &name,
                        format!(
                            "storage `{}` is {} here but {} for another tensor",
                            st.key,
                            st.dtype.name(),
                            dtype.name()
                        ),
                    ));
                }
                (a, b)
            }
            None => {
                let (a, b) = ar.range(&format!("data/{}", st.key))?.ok_or_else(|| {
                    tensor_err(
                        &name,
                        format!("its storage `data/{}` is not in the archive", st.key),
                    )
                })?;
                let want = (st.numel as u128) * st.dtype.size() as u128;
                if want != (b - a) as u128 {
                    return Err(tensor_err(
                        &name,
                        format!(
                            "storage `{}` should hold {} {} elements ({want} bytes) but has {} bytes",
                            st.key,
                            st.numel,
                            st.dtype.name(),
                            b - a
                        ),
                    ));
                }
                storages.insert(st.key.clone(), (a, b, st.dtype));
                (a, b)
            }
        };
        let (start, end, shape) = place(&t, s_start, s_end).map_err(|m| tensor_err(&name, m))?;
        out.push(HeaderEntry {
            name,
            dtype: st.dtype,
            shape,
            start,
            end,
        });
    }
    Ok(out)
}

/// A contiguous tensor's bytes inside its storage's `[s_start, s_end)`.
fn place(
    t: &pickle::Tensor,
    s_start: usize,
    s_end: usize,
) -> std::result::Result<(usize, usize, Vec<usize>), String> {
    let shape: Vec<usize> = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative size {:?}", t.shape)))
        .collect::<std::result::Result<_, _>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("size {:?} overflows", t.shape))?;
    // Row-major strides; a dimension of size 1 may carry any stride, and a
    // tensor with no elements any strides at all, as in torch.
    if numel > 0 {
        let mut want: i64 = 1;
        for (i, (&d, &s)) in t.shape.iter().zip(&t.stride).enumerate().rev() {
            if d != 1 && s != want {
                return Err(format!(
                    "not contiguous: size {:?} with stride {:?} (dimension {i}); smelt reads \
                     tensors in place and needs them row-major, as torch.save writes \
                     `.contiguous()` ones",
                    t.shape, t.stride
                ));
            }
            want = want.saturating_mul(d);
        }
    }
    let size = t.storage.dtype.size();
    let offset =
        usize::try_from(t.offset).map_err(|_| format!("negative storage offset {}", t.offset))?;
    let range = offset
        .checked_mul(size)
        .and_then(|o| Some((o, numel.checked_mul(size)?)))
        .and_then(|(o, n)| Some((s_start.checked_add(o)?, n)))
        .and_then(|(a, n)| Some((a, a.checked_add(n)?)))
        .filter(|&(_, b)| b <= s_end);
    let Some((start, end)) = range else {
        return Err(format!(
            "elements {offset}..+{numel} reach past its storage `{}` ({} elements)",
            t.storage.key, t.storage.numel
        ));
    };
    Ok((start, end, shape))
}
