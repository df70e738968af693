//! Any bytes as a safetensors file: smelt's header parser must not panic,
//! and must agree with the `safetensors` crate (smelt refuses more only
//! for shapes torch cannot hold), reading the same bytes for each tensor.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|file: &[u8]| {
    let ours = smelt::model::parse_header(Path::new("fuzz.safetensors"), file);
    let theirs = safetensors::SafeTensors::deserialize(file);
    match (ours, theirs) {
        (Ok(entries), Ok(st)) => {
            assert_eq!(entries.len(), st.len());
            for e in &entries {
                let view = st.tensor(&e.name).expect("the crate has the tensor");
                assert_eq!(e.dtype.to_safetensors(), view.dtype());
                assert_eq!(e.shape, view.shape());
                assert_eq!(&file[e.start..e.end], view.data());
            }
        }
        (Ok(_), Err(err)) => panic!("smelt accepts what the crate refuses: {err}"),
        (Err(e), Ok(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("torch"),
                "smelt refuses what the crate accepts: {msg}"
            );
        }
        (Err(e), Err(_)) => {
            assert!(e.to_string().contains("fuzz.safetensors"));
        }
    }
});
