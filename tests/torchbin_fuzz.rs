//! Seeded, deterministic fuzzing of the PyTorch `.bin` reader over the
//! torch-written fixtures (tests/fixtures/torchbin): thousands of mutated
//! checkpoints, none of which may panic or hang; every refusal names the
//! file, and every accepted file's tensors lie inside it, as long as their
//! shapes and dtypes say.
//!
//! Two kinds of case: mutations of the pickle (`data.pkl`), re-zipped so
//! that the archive stays valid and the unpickler sees them (flipped and
//! random bytes, deleted and duplicated spans, opcodes spliced in from a
//! list that includes the dangerous ones), and mutations of the whole file
//! (the zip directory and headers, truncation).
//!
//! `SMELT_FUZZ_CASES` and `SMELT_FUZZ_SEED` run more or other cases.

use smelt::model::parse_torch;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod common;
use common::Rng;

fn fixtures() -> Vec<Vec<u8>> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchbin");
    let files: Vec<PathBuf> = vec![
        d.join("models/tied/pytorch_model.bin"),
        d.join("models/bf16/pytorch_model.bin"),
        d.join("models/sharded/pytorch_model-00002-of-00003.bin"),
        d.join("misc/views.bin"),
        d.join("misc/dtypes.bin"),
    ];
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// The archive's entries, in order.
fn entries(file: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(file)).expect("fixture zip");
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).expect("entry");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read entry");
            (e.name().expect("name").to_string(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// Pieces of pickle to splice in: the globals and opcodes an attacker
/// would use, and the ones torch uses, out of place.
const SPLICES: &[&[u8]] = &[
    b"cos\nsystem\n",
    b"cbuiltins\neval\n",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ctorch\nFloatStorage\n",
    b"ccollections\nOrderedDict\n",
    b"R",
    b"b",
    b"Q",
    b"(",
    b"t",
    b"0",
    b"1",
    b"2",
    b"s",
    b"u",
    b"a",
    b"e",
    b"}",
    b"]",
    b")",
    b"\x81",
    b"\x82\x01",
    b"i",
    b"o",
    b"h\x00",
    b"h\xff",
    b"j\xff\xff\xff\xff",
    b"q\x00",
    b"\x94",
    b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09",
    b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\xff",
    b"J\xff\xff\xff\xff",
    b"X\xff\xff\xff\x7f",
    b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80\x09",
    b".",
    b"\x93",
    b"N",
];

fn mutate_pickle(rng: &mut Rng, pkl: &mut Vec<u8>) {
    let n = pkl.len();
    match rng.below(6) {
        0 => {
            let i = rng.below(n);
            pkl[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(n);
            pkl[i] = rng.next() as u8;
        }
        2 => {
            let i = rng.below(n);
            let len = 1 + rng.below(8).min(n - i - 1);
            pkl.drain(i..i + len);
        }
        3 => {
            let i = rng.below(n);
            let len = 1 + rng.below(16).min(n - i - 1);
            let span: Vec<u8> = pkl[i..i + len].to_vec();
            let j = rng.below(pkl.len());
            pkl.splice(j..j, span);
        }
        4 => {
            let s = rng.pick(SPLICES);
            let j = rng.below(n);
            pkl.splice(j..j, s.iter().copied());
        }
        _ => {
            let cut = rng.below(n);
            pkl.truncate(cut);
        }
    }
}

fn mutate_file(rng: &mut Rng, file: &mut Vec<u8>) {
    let n = file.len();
    match rng.below(4) {
        0 => {
            // The zip directory sits at the end: aim there often.
            let i = n - 1 - rng.below(n.min(200));
            file[i] = rng.next() as u8;
        }
        1 => {
            let i = rng.below(n);
            file[i] ^= 1 << rng.below(8);
        }
        2 => {
            let cut = rng.below(n);
            file.truncate(cut);
        }
        _ => {
            // Local file headers: the first 64 bytes of each entry.
            let i = rng.below(n.min(64));
            file[i] = rng.next() as u8;
        }
    }
}

fn check(name: &Path, bytes: &[u8], accepted: &mut usize) {
    match parse_torch(name, bytes) {
        Ok(entries) => {
            *accepted += 1;
            for e in entries {
                assert!(e.start <= e.end && e.end <= bytes.len(), "{}", e.name);
                assert_eq!(
                    Some(e.end - e.start),
                    e.dtype.nbytes(&e.shape),
                    "{}",
                    e.name
                );
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.bin"), "file not named: {msg}");
        }
    }
}

#[test]
fn mutated_torch_checkpoints_never_panic_and_errors_name_the_file() {
    let cases: usize = std::env::var("SMELT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("SMELT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0070_c4b1);
    let mut rng = Rng(seed);
    let originals = fixtures();
    let parsed: Vec<Vec<(String, Vec<u8>)>> = originals.iter().map(|f| entries(f)).collect();
    let name = Path::new("fuzz.bin");
    // The fixtures themselves, and re-zipped unchanged, read.
    for (f, e) in originals.iter().zip(&parsed) {
        parse_torch(name, f).expect("fixture");
        parse_torch(name, &rezip(e)).expect("re-zipped fixture");
    }
    let (mut accepted, mut pickle_cases) = (0, 0);
    for _ in 0..cases {
        let k = rng.below(originals.len());
        let bytes = if rng.below(3) > 0 {
            pickle_cases += 1;
            let mut e = parsed[k].clone();
            let pkl = e
                .iter_mut()
                .find(|(n, _)| n.ends_with("/data.pkl"))
                .expect("data.pkl");
            for _ in 0..1 + rng.below(3) {
                if !pkl.1.is_empty() {
                    mutate_pickle(&mut rng, &mut pkl.1);
                }
            }
            rezip(&e)
        } else {
            let mut f = originals[k].clone();
            for _ in 0..1 + rng.below(3) {
                if !f.is_empty() {
                    mutate_file(&mut rng, &mut f);
                }
            }
            f
        };
        check(name, &bytes, &mut accepted);
    }
    // Not every mutation breaks a file (a flipped bit in a float's bytes
    // does not): some must pass, most must not.
    assert!(pickle_cases > cases / 2);
    assert!(
        accepted > 0 && accepted < cases,
        "accepted {accepted} of {cases}"
    );
}
