//! A CNI plugin's ADD output, as berth reads it for the pod's addresses.
#![no_main]

use berth_cri_plugin::cni::{CniResult, parse_result_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = parse_result_json(data) else { return };
    let Ok(result) = CniResult::from_value(&value, "eth0") else { return };
    assert_eq!(result.ifname, "eth0");
    assert!(result.ips.iter().all(|ip| ip.ip().is_some()));
    let pod_ips = result.pod_ips();
    // IPv4 first.
    assert!(pod_ips.windows(2).all(|w| w[0].is_ipv4() || w[1].is_ipv6()));
    // What berth keeps of a result reads back.
    let kept = serde_json::to_value(&result).expect("serialise");
    assert!(CniResult::from_value(&kept, "eth0").is_ok(), "{kept}");
});
