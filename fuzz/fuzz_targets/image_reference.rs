//! Image references as kubelet, crictl and people write them.
#![no_main]

use berth_supervisor::images::reference::ImageReference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(reference) = ImageReference::parse(text) else { return };
    // The normalised form is a fixed point: it parses back to the same reference.
    let full = reference.full();
    assert_eq!(ImageReference::parse(&full).ok().as_ref(), Some(&reference), "{full:?}");
    assert!(reference.tag.is_some() || reference.digest.is_some());
    assert!(!reference.registry.is_empty() && !reference.repository.is_empty());
    if let Some(tagged) = reference.tagged() {
        assert!(ImageReference::parse(&tagged).is_ok(), "{tagged:?}");
    }
});
