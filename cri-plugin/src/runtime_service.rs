//! The CRI RuntimeService: runtime identity, status and configuration today; pods,
//! containers, streaming and stats as their capabilities arrive (see [`crate::pending`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::CRI_API_VERSION;
use crate::cni::{first_network_config, network_readiness};
use crate::config::{CgroupDriver, CriConfig};
use crate::engine::{Engine, Readiness};
use crate::pending::{Capability, pending};

/// Version of the kubelet runtime API that `Version` reports, as containerd does.
const KUBELET_API_VERSION: &str = "0.1.0";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves `runtime.v1.RuntimeService`.
pub struct CriRuntimeService {
    config: CriConfig,
    engine: Arc<dyn Engine>,
}

impl CriRuntimeService {
    pub fn new(config: CriConfig, engine: Arc<dyn Engine>) -> Self {
        Self { config, engine }
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
        let facts = self.engine.facts();
        let runtime = serde_json::json!({
            "runtimeName": facts.runtime_name,
            "runtimeVersion": facts.runtime_version,
            "cgroupLayout": facts.cgroup_layout,
            "cgroupDriver": self.config.cgroup_driver,
            "oomScoreAdj": facts.oom_score_adj,
            "canLowerOomScoreAdj": facts.can_lower_oom_score_adj,
        });
        let cni = serde_json::json!({
            "confDir": self.config.cni_conf_dir,
            "binDirs": self.config.cni_bin_dirs,
            "networkConfig": first_network_config(&self.config.cni_conf_dir),
        });
        HashMap::from([("runtime".to_string(), runtime.to_string()), ("cni".to_string(), cni.to_string())])
    }
}

#[tonic::async_trait]
impl RuntimeService for CriRuntimeService {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        let facts = self.engine.facts();
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
            Self::condition("RuntimeReady", self.engine.runtime_readiness()),
            Self::condition("NetworkReady", network),
        ];
        let info = if request.get_ref().verbose { self.verbose_info() } else { HashMap::new() };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            // The default handler is also reported under "", as kubelet looks it up by that name.
            runtime_handlers: std::iter::once(String::new())
                .chain(self.engine.runtime_handlers())
                .map(|name| cri::RuntimeHandler {
                    name,
                    features: Some(cri::RuntimeHandlerFeatures::default()),
                })
                .collect(),
            features: Some(cri::RuntimeFeatures::default()),
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
        _request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // kubelet sends the pod CIDR here; it matters once CNI networking exists.
        pending("RuntimeService/UpdateRuntimeConfig", Capability::PodSandboxes)
    }

    async fn run_pod_sandbox(
        &self,
        _request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        pending("RuntimeService/RunPodSandbox", Capability::PodSandboxes)
    }

    async fn stop_pod_sandbox(
        &self,
        _request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        pending("RuntimeService/StopPodSandbox", Capability::PodSandboxes)
    }

    async fn remove_pod_sandbox(
        &self,
        _request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        pending("RuntimeService/RemovePodSandbox", Capability::PodSandboxes)
    }

    async fn pod_sandbox_status(
        &self,
        _request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        pending("RuntimeService/PodSandboxStatus", Capability::PodSandboxes)
    }

    async fn list_pod_sandbox(
        &self,
        _request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        pending("RuntimeService/ListPodSandbox", Capability::PodSandboxes)
    }

    type StreamPodSandboxesStream = ResponseStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        pending("RuntimeService/StreamPodSandboxes", Capability::PodSandboxes)
    }

    async fn update_pod_sandbox_resources(
        &self,
        _request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        pending("RuntimeService/UpdatePodSandboxResources", Capability::PodSandboxes)
    }

    async fn create_container(
        &self,
        _request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        pending("RuntimeService/CreateContainer", Capability::Containers)
    }

    async fn start_container(
        &self,
        _request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        pending("RuntimeService/StartContainer", Capability::Containers)
    }

    async fn stop_container(
        &self,
        _request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        pending("RuntimeService/StopContainer", Capability::Containers)
    }

    async fn remove_container(
        &self,
        _request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        pending("RuntimeService/RemoveContainer", Capability::Containers)
    }

    async fn list_containers(
        &self,
        _request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        pending("RuntimeService/ListContainers", Capability::Containers)
    }

    type StreamContainersStream = ResponseStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        pending("RuntimeService/StreamContainers", Capability::Containers)
    }

    async fn container_status(
        &self,
        _request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        pending("RuntimeService/ContainerStatus", Capability::Containers)
    }

    async fn update_container_resources(
        &self,
        _request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        pending("RuntimeService/UpdateContainerResources", Capability::Containers)
    }

    async fn reopen_container_log(
        &self,
        _request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        pending("RuntimeService/ReopenContainerLog", Capability::Containers)
    }

    type GetContainerEventsStream = ResponseStream<cri::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        pending("RuntimeService/GetContainerEvents", Capability::Containers)
    }

    async fn exec_sync(
        &self,
        _request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        pending("RuntimeService/ExecSync", Capability::Streaming)
    }

    async fn exec(&self, _request: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
        pending("RuntimeService/Exec", Capability::Streaming)
    }

    async fn attach(
        &self,
        _request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        pending("RuntimeService/Attach", Capability::Streaming)
    }

    async fn port_forward(
        &self,
        _request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        pending("RuntimeService/PortForward", Capability::Streaming)
    }

    async fn container_stats(
        &self,
        _request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        pending("RuntimeService/ContainerStats", Capability::Stats)
    }

    async fn list_container_stats(
        &self,
        _request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        pending("RuntimeService/ListContainerStats", Capability::Stats)
    }

    type StreamContainerStatsStream = ResponseStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        pending("RuntimeService/StreamContainerStats", Capability::Stats)
    }

    async fn pod_sandbox_stats(
        &self,
        _request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        pending("RuntimeService/PodSandboxStats", Capability::Stats)
    }

    async fn list_pod_sandbox_stats(
        &self,
        _request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        pending("RuntimeService/ListPodSandboxStats", Capability::Stats)
    }

    type StreamPodSandboxStatsStream = ResponseStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        pending("RuntimeService/StreamPodSandboxStats", Capability::Stats)
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        pending("RuntimeService/ListMetricDescriptors", Capability::Stats)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        pending("RuntimeService/ListPodSandboxMetrics", Capability::Stats)
    }

    type StreamPodSandboxMetricsStream = ResponseStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        pending("RuntimeService/StreamPodSandboxMetrics", Capability::Stats)
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        pending("RuntimeService/CheckpointContainer", Capability::Checkpoint)
    }
}
