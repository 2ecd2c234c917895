//! hosts.toml, the containerd-style registry host configuration.
#![no_main]

use std::path::Path;

use berth_supervisor::images::hosts::endpoints_from_toml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let registry =
        ["docker.io", "registry.example:5000", "127.0.0.1:5000", "[::1]:5000"][usize::from(mode % 4)];
    let base = Path::new("/etc/berth/certs.d").join(registry);
    let Ok(endpoints) = endpoints_from_toml(text, &base, registry) else { return };
    for endpoint in &endpoints {
        assert!(!endpoint.host.is_empty());
        let path = &endpoint.path;
        // The API root is cleaned: empty, or `/`-separated non-empty segments.
        assert!(path.is_empty() || (path.starts_with('/') && !path.ends_with('/')), "{path:?}");
        assert!(!path.contains("//"), "{path:?}");
        assert!(endpoint.ca_files.iter().all(|p| p.is_absolute()));
        assert!(endpoint.client_certs.iter().all(|c| c.cert.is_absolute()));
        let url = endpoint.base_url();
        assert!(url.starts_with("http://") || url.starts_with("https://"));
    }
});
