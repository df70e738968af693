//! Any bytes as a PyTorch `.bin` checkpoint: smelt's reader (zip directory
//! plus restricted unpickler) must not panic, must name the file in every
//! refusal, and every tensor it accepts must lie inside the file, exactly
//! as long as its shape and dtype say.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|file: &[u8]| {
    match smelt::model::parse_torch(Path::new("fuzz.bin"), file) {
        Ok(entries) => {
            for e in entries {
                assert!(e.start <= e.end && e.end <= file.len(), "{}", e.name);
                assert_eq!(Some(e.end - e.start), e.dtype.nbytes(&e.shape), "{}", e.name);
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.bin"), "{e}"),
    }
});
