//! `version` and `info`: what berthd is and how its node looks.

use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use crate::shared::runtime_client;

pub async fn version(channel: &Channel) -> anyhow::Result<()> {
    let cri = runtime_client(channel).version(cri::VersionRequest::default()).await?.into_inner();
    let native = VersionClient::new(channel.clone()).version(()).await?.into_inner();
    println!("RuntimeName:       {}", cri.runtime_name);
    println!("RuntimeVersion:    {}", cri.runtime_version);
    println!("RuntimeApiVersion: {}", cri.runtime_api_version);
    println!("Revision:          {}", native.revision);
    Ok(())
}

pub async fn info(channel: &Channel) -> anyhow::Result<()> {
    let status = runtime_client(channel).status(cri::StatusRequest { verbose: true }).await?.into_inner();
    for condition in status.status.map(|s| s.conditions).unwrap_or_default() {
        let state = if condition.status { "true" } else { "false" };
        println!("{:<14} {state:<6} {} {}", condition.r#type, condition.reason, condition.message);
    }
    // What kubelet is told this node can run, per runtime handler, and why.
    let explained = status
        .info
        .get("runtime")
        .and_then(|runtime| serde_json::from_str::<serde_json::Value>(runtime).ok())
        .and_then(|runtime| runtime.get("handlerFeatures").cloned());
    for handler in status.runtime_handlers.iter().filter(|h| !h.name.is_empty()) {
        println!("features of runtime handler {:?}:", handler.name);
        let lines = explained.as_ref().and_then(|e| e.get(&handler.name)).and_then(|l| l.as_array().cloned());
        for line in lines.unwrap_or_default() {
            println!("  {}", line.as_str().unwrap_or_default());
        }
    }
    if let Some(features) = &status.features {
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("features of the node:");
        println!("  supplemental groups policy: {}", yes(features.supplemental_groups_policy));
        println!("  user namespaces with host network: {}", yes(features.user_namespaces_host_network));
    }
    if let Some(cdi) = status.info.get("cdi").and_then(|c| serde_json::from_str(c).ok()) {
        print_cdi(&cdi);
    }
    let mut keys: Vec<&String> = status.info.keys().collect();
    keys.sort();
    for key in keys {
        println!("{key}: {}", status.info[key]);
    }
    Ok(())
}

/// The CDI devices containers may ask for, and the spec files and directories refused.
fn print_cdi(cdi: &serde_json::Value) {
    let entries = |key: &str| cdi[key].as_object().cloned().unwrap_or_default();
    let text = |value: &serde_json::Value| value.as_str().map_or_else(|| value.to_string(), str::to_string);
    let devices = entries("devices");
    println!("{}", if devices.is_empty() { "CDI devices: none" } else { "CDI devices:" });
    for (name, spec) in &devices {
        println!("  {name} (from {})", text(spec));
    }
    for (name, files) in entries("conflicts") {
        println!("  {name}: unusable, declared by more than one spec of one directory: {files}");
    }
    for (file, error) in entries("invalidSpecs") {
        println!("  refused spec {file}: {}", text(&error));
    }
    for (dir, why) in entries("refusedDirs") {
        println!("  refused directory {dir}: {}", text(&why));
    }
}
