//! The CRI RuntimeService: a thin dispatcher. Identity, status and configuration are
//! answered here; pods, containers, stats, events and the streaming URLs by their areas
//! through [`CriRuntime`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::cni::{first_network_config, network_readiness};
use crate::config::{CgroupDriver, CriConfig};
use crate::engine::{Readiness, RuntimeInfo};
use crate::events::EventStream;
use crate::runtime::CriRuntime;
use crate::spec::AppArmorSupport;

/// Version of the kubelet runtime API that `Version` reports, as containerd does.
const KUBELET_API_VERSION: &str = "0.1.0";

/// The CRI API version berth speaks, as `Version` reports it.
pub const CRI_API_VERSION: &str = "v1";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The span of one CRI call: its name, and the pod and container it is about, each recorded
/// once, here. A container's pod is recorded with it; ids are resolved (a unique prefix is
/// recorded as the full id), and an id berth does not know is recorded as given.
fn call_span(runtime: &CriRuntime, rpc: &'static str, pod: &str, container: &str) -> tracing::Span {
    let span =
        tracing::info_span!("cri", rpc, pod = tracing::field::Empty, container = tracing::field::Empty);
    let mut pod = pod.to_string();
    if !container.is_empty() {
        match runtime.containers.resolve(container) {
            Some(found) => {
                span.record("container", found.id.as_str());
                if pod.is_empty() {
                    pod = found.sandbox_id.clone();
                }
            }
            None => {
                span.record("container", container);
            }
        }
    }
    if !pod.is_empty() {
        let full = runtime.sandboxes.resolve(&pod).map(|s| s.id.clone()).unwrap_or(pod);
        span.record("pod", full.as_str());
    }
    span
}

/// Items per message of the `Stream*` calls.
const STREAM_BATCH: usize = 100;

/// A list as a stream of messages of at most [`STREAM_BATCH`] items.
fn batches<T: Send + 'static, M: Send + 'static>(
    items: Vec<T>,
    message: impl Fn(Vec<T>) -> M,
) -> ResponseStream<M> {
    let mut messages = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        messages.push(Ok(message(items.by_ref().take(STREAM_BATCH).collect())));
    }
    Box::pin(tokio_stream::iter(messages))
}

/// Serves `runtime.v1.RuntimeService`: identity and status here, everything else in the
/// area that owns it (see [`CriRuntime`]).
pub struct CriRuntimeService {
    config: CriConfig,
    info: Arc<dyn RuntimeInfo>,
    runtime: Arc<CriRuntime>,
}

impl CriRuntimeService {
    pub fn new(runtime: Arc<CriRuntime>) -> Self {
        Self { config: runtime.config.clone(), info: runtime.info.clone(), runtime }
    }

    fn condition(kind: &str, readiness: Readiness) -> cri::RuntimeCondition {
        cri::RuntimeCondition {
            r#type: kind.to_string(),
            status: readiness.ready,
            reason: readiness.reason,
            message: readiness.message,
        }
    }

    /// The `info` map of a verbose `Status`: JSON documents, as crictl expects.
    fn verbose_info(&self) -> HashMap<String, String> {
        let facts = self.info.facts();
        let runtime = serde_json::json!({
            "runtimeName": facts.runtime_name,
            "runtimeVersion": facts.runtime_version,
            "cgroupLayout": facts.cgroup_layout,
            "cgroupDriver": self.config.cgroup_driver,
            "oomScoreAdj": facts.oom_score_adj,
            "canLowerOomScoreAdj": facts.can_lower_oom_score_adj,
            // What each handler advertises to kubelet, and why.
            "handlerFeatures": self
                .info
                .runtime_handlers()
                .into_iter()
                .map(|name| {
                    let explained = self.info.handler_features(&name).explained;
                    (name, explained)
                })
                .collect::<std::collections::BTreeMap<_, _>>(),
        });
        let cni = serde_json::json!({
            "confDir": self.config.cni_conf_dir,
            "binDirs": self.config.cni_bin_dirs,
            "networkConfig": first_network_config(&self.config.cni_conf_dir),
        });
        let support = AppArmorSupport::of_this_host();
        let apparmor = serde_json::json!({
            "support": support,
            "defaultProfile": crate::spec::apparmor::DEFAULT_PROFILE,
            "rules": support.describe(),
        });
        HashMap::from([
            ("runtime".to_string(), runtime.to_string()),
            ("cni".to_string(), cni.to_string()),
            ("apparmor".to_string(), apparmor.to_string()),
        ])
    }
}

#[tonic::async_trait]
impl RuntimeService for CriRuntimeService {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        let facts = self.info.facts();
        Ok(Response::new(cri::VersionResponse {
            version: KUBELET_API_VERSION.to_string(),
            runtime_name: facts.runtime_name,
            runtime_version: facts.runtime_version,
            runtime_api_version: CRI_API_VERSION.to_string(),
        }))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let network = network_readiness(&self.config.cni_conf_dir, &self.config.cni_bin_dirs);
        let conditions = vec![
            Self::condition("RuntimeReady", self.info.runtime_readiness()),
            Self::condition("NetworkReady", network),
        ];
        let mut info = if request.get_ref().verbose { self.verbose_info() } else { HashMap::new() };
        if request.get_ref().verbose {
            // The CDI devices known, and what was refused; reading the spec directories blocks.
            let cdi = self.runtime.cdi.clone();
            let described = tokio::task::spawn_blocking(move || cdi.describe())
                .await
                .map_err(|e| Status::internal(format!("CDI task: {e}")))?;
            info.insert("cdi".to_string(), described.to_string());
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            // The default handler is also reported under "", as kubelet looks it up by that name.
            runtime_handlers: std::iter::once(String::new())
                .chain(self.info.runtime_handlers())
                .map(|name| {
                    let features = self.info.handler_features(&name);
                    cri::RuntimeHandler {
                        name,
                        features: Some(cri::RuntimeHandlerFeatures {
                            recursive_read_only_mounts: features.recursive_read_only_mounts,
                            user_namespaces: features.user_namespaces,
                        }),
                    }
                })
                .collect(),
            // Strict supplemental groups are berth's own work (the spec lists only the groups
            // asked for), whatever the runtime. Host-network pods in a user namespace are not
            // offered until they are tested.
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        let driver = match self.config.cgroup_driver {
            CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
            CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: driver as i32 }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.runtime.update_pod_cidr(&cidr).await?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let pod_sandbox_id = {
            let request = request.into_inner();
            let name = request
                .config
                .as_ref()
                .and_then(|c| c.metadata.as_ref())
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let span =
                tracing::info_span!("cri", rpc = "RunPodSandbox", pod = tracing::field::Empty, name = %name);
            self.runtime.run_pod_sandbox(request).instrument(span).await?
        };
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        {
            let id = request.into_inner().pod_sandbox_id;
            self.runtime
                .stop_pod_sandbox(&id)
                .instrument(call_span(&self.runtime, "StopPodSandbox", &id, ""))
                .await?
        };
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        {
            let id = request.into_inner().pod_sandbox_id;
            self.runtime
                .remove_pod_sandbox(&id)
                .instrument(call_span(&self.runtime, "RemovePodSandbox", &id, ""))
                .await?
        };
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        Ok(Response::new(self.runtime.pod_sandbox_status(request.into_inner()).await?))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let items = self.runtime.list_pod_sandboxes(request.into_inner().filter);
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    type StreamPodSandboxesStream = ResponseStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let items = self.runtime.list_pod_sandboxes(request.into_inner().filter);
        Ok(Response::new(batches(items, |pod_sandboxes| cri::StreamPodSandboxesResponse { pod_sandboxes })))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        self.runtime.update_pod_sandbox_resources(request.into_inner())?;
        Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let span = call_span(&self.runtime, "CreateContainer", &request.pod_sandbox_id, "");
        let container_id = self.runtime.create_container(request).instrument(span).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        {
            let id = request.into_inner().container_id;
            self.runtime
                .start_container(&id)
                .instrument(call_span(&self.runtime, "StartContainer", "", &id))
                .await?
        };
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let request = request.into_inner();
        self.runtime
            .stop_container(&request.container_id, request.timeout)
            .instrument(call_span(&self.runtime, "StopContainer", "", &request.container_id))
            .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        {
            let id = request.into_inner().container_id;
            self.runtime
                .remove_container(&id)
                .instrument(call_span(&self.runtime, "RemoveContainer", "", &id))
                .await?
        };
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let containers = self.runtime.list_containers(request.into_inner().filter);
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    type StreamContainersStream = ResponseStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let items = self.runtime.list_containers(request.into_inner().filter);
        Ok(Response::new(batches(items, |containers| cri::StreamContainersResponse { containers })))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        Ok(Response::new(self.runtime.container_status(request.into_inner())?))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        {
            let request = request.into_inner();
            let span = call_span(&self.runtime, "UpdateContainerResources", "", &request.container_id);
            self.runtime.update_container_resources(request).instrument(span).await?
        };
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        {
            let id = request.into_inner().container_id;
            self.runtime
                .reopen_container_log(&id)
                .instrument(call_span(&self.runtime, "ReopenContainerLog", "", &id))
                .await?
        };
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(self.runtime.container_events()))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let span = call_span(&self.runtime, "ExecSync", "", &request.container_id);
        Ok(Response::new(self.runtime.exec_sync(request).instrument(span).await?))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
        let request = request.into_inner();
        let _span = call_span(&self.runtime, "Exec", "", &request.container_id).entered();
        Ok(Response::new(self.runtime.exec_url(request)?))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let request = request.into_inner();
        let _span = call_span(&self.runtime, "Attach", "", &request.container_id).entered();
        Ok(Response::new(self.runtime.attach_url(request)?))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let request = request.into_inner();
        let _span = call_span(&self.runtime, "PortForward", &request.pod_sandbox_id, "").entered();
        Ok(Response::new(self.runtime.port_forward_url(request)?))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let stats = self.runtime.container_stats(&request.into_inner().container_id).await?;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let stats = self.runtime.list_container_stats(request.into_inner().filter).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    type StreamContainerStatsStream = ResponseStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let stats = self.runtime.list_container_stats(request.into_inner().filter).await?;
        Ok(Response::new(batches(stats, |container_stats| cri::StreamContainerStatsResponse {
            container_stats,
        })))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let stats = self.runtime.pod_sandbox_stats(&request.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(stats) }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let stats = self.runtime.list_pod_sandbox_stats(request.into_inner().filter).await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    type StreamPodSandboxStatsStream = ResponseStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let stats = self.runtime.list_pod_sandbox_stats(request.into_inner().filter).await?;
        Ok(Response::new(batches(stats, |pod_sandbox_stats| cri::StreamPodSandboxStatsResponse {
            pod_sandbox_stats,
        })))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: self.runtime.metric_descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        let pod_metrics = self.runtime.list_pod_sandbox_metrics().await?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse { pod_metrics }))
    }

    type StreamPodSandboxMetricsStream = ResponseStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let metrics = self.runtime.list_pod_sandbox_metrics().await?;
        Ok(Response::new(batches(metrics, |pod_sandbox_metrics| cri::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        })))
    }

    async fn checkpoint_container(
        &self,
        request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        {
            let request = request.into_inner();
            let span = call_span(&self.runtime, "CheckpointContainer", "", &request.container_id);
            self.runtime.checkpoint_container(request).instrument(span).await?
        };
        Ok(Response::new(cri::CheckpointContainerResponse {}))
    }
}
