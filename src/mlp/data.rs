//! The digits data: a CSV (optionally gzipped) of one sample a line, the
//! pixel values then the integer label, no header.
//!
//! The split is fixed so every tool sees the same test set: the sample on
//! 0-based line `i` is test data when `i % 5 == 0`, training data otherwise.

use super::{MlpError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The bundled copy of the digits set (UCI optdigits via scikit-learn, CC BY
/// 4.0; see `sample_models/data/README.md`). Embedded so `smelt eval` works
/// from any directory, offline.
const BUILTIN: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sample_models/data/digits.csv.gz"
));

/// Which samples of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Lines with `i % 5 != 0`.
    Train,
    /// Lines with `i % 5 == 0`.
    Test,
    /// Every line.
    All,
}

/// A flat batch of samples: `x` is `len() x dim`, row-major, raw values
/// (before a model's `input_scale`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// Features per sample.
    pub dim: usize,
    /// The features, `len() x dim`, row-major.
    pub x: Vec<f32>,
    /// The label of each sample.
    pub y: Vec<u32>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// The features of sample `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }
    /// Only the samples whose label is in `classes`.
    pub fn with_classes(&self, classes: &[u32]) -> Samples {
        let mut out = Samples {
            dim: self.dim,
            ..Samples::default()
        };
        for i in 0..self.len() {
            if classes.contains(&self.y[i]) {
                out.x.extend_from_slice(self.row(i));
                out.y.push(self.y[i]);
            }
        }
        out
    }
}

/// A data set with its fixed train/test split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from (`<builtin digits>` for the embedded copy).
    pub source: PathBuf,
    /// Features per sample.
    pub dim: usize,
    /// (line index, features, label) in file order.
    rows: Vec<(usize, Vec<f32>, u32)>,
}

impl Dataset {
    /// The bundled digits set.
    pub fn builtin() -> Result<Dataset> {
        Dataset::parse(BUILTIN, Path::new("<builtin digits.csv.gz>"))
    }

    /// Read a CSV file, gzipped or not (detected by the gzip magic bytes).
    pub fn load(path: &Path) -> Result<Dataset> {
        let bytes = std::fs::read(path).map_err(|e| MlpError::Data {
            path: path.to_path_buf(),
            line: 0,
            msg: e.to_string(),
        })?;
        Dataset::parse(&bytes, path)
    }

    /// `path` when given, else the bundled set.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Dataset> {
        match path {
            Some(p) => Dataset::load(p),
            None => Dataset::builtin(),
        }
    }

    /// Parse CSV bytes (gzipped or plain); `path` is for messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Dataset> {
        let err = |line: usize, msg: String| MlpError::Data {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_string(&mut s)
                .map_err(|e| err(0, format!("gzip: {e}")))?;
            s
        } else {
            String::from_utf8(bytes.to_vec()).map_err(|_| err(0, "not UTF-8 text".into()))?
        };
        let mut rows = Vec::new();
        let mut dim = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() < 2 {
                return Err(err(i + 1, "expected features then a label".into()));
            }
            let n = fields.len() - 1;
            match dim {
                None => dim = Some(n),
                Some(d) if d != n => {
                    return Err(err(
                        i + 1,
                        format!("{n} features, but earlier lines have {d}"),
                    ))
                }
                _ => {}
            }
            let mut x = Vec::with_capacity(n);
            for (j, f) in fields[..n].iter().enumerate() {
                let v: f32 = f
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| err(i + 1, format!("field {}: `{f}` is not a number", j + 1)))?;
                x.push(v);
            }
            let label = fields[n];
            let y: u32 = label.parse().map_err(|_| {
                err(
                    i + 1,
                    format!("label `{label}` is not a non-negative integer"),
                )
            })?;
            rows.push((i, x, y));
        }
        let dim = dim.ok_or_else(|| err(0, "no samples".into()))?;
        Ok(Dataset {
            source: path.to_path_buf(),
            dim,
            rows,
        })
    }

    /// Number of samples (both splits).
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The samples of one split.
    pub fn split(&self, split: Split) -> Samples {
        let mut out = Samples {
            dim: self.dim,
            ..Samples::default()
        };
        for (i, x, y) in &self.rows {
            let keep = match split {
                Split::Train => i % 5 != 0,
                Split::Test => i % 5 == 0,
                Split::All => true,
            };
            if keep {
                out.x.extend_from_slice(x);
                out.y.push(*y);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_by_line_index_mod_5() {
        let csv = b"1,2,0\n3,4,1\n5,6,2\n7,8,3\n9,10,4\n11,12,5\n";
        let d = Dataset::parse(csv, Path::new("t.csv")).unwrap();
        let test = d.split(Split::Test);
        assert_eq!(test.y, vec![0, 5]);
        assert_eq!(test.x, vec![1.0, 2.0, 11.0, 12.0]);
        assert_eq!(d.split(Split::Train).y, vec![1, 2, 3, 4]);
        assert_eq!(d.split(Split::All).len(), 6);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = Dataset::parse(b"1,2,0\n1,x,1\n", Path::new("d.csv")).unwrap_err();
        assert!(e.to_string().starts_with("d.csv:2:"), "{e}");
        let e = Dataset::parse(b"1,2,0\n1,1\n", Path::new("d.csv")).unwrap_err();
        assert!(e.to_string().contains("d.csv:2"), "{e}");
    }

    #[test]
    fn builtin_digits_load() {
        let d = Dataset::builtin().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.dim, 64);
        assert_eq!(d.split(Split::Test).len(), 360);
    }
}
