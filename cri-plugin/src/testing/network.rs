//! A [`PodNetwork`] that attaches in memory: [`FakeNetwork::attached`] is what a CNI DEL would
//! still have to free.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::recorder::Recorder;
use crate::error::CriError;
use crate::pod::network::{PodNetwork, PodNetworkRequest};

#[derive(Default)]
pub struct FakeNetwork {
    pub recorder: Arc<Recorder>,
    attached: Mutex<BTreeMap<String, PodNetworkRequest>>,
    pod_cidr: Mutex<Option<String>>,
}

impl FakeNetwork {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    /// The sandboxes whose network is attached.
    pub fn attached(&self) -> Vec<String> {
        self.attached.lock().map(|a| a.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr.lock().ok()?.clone()
    }
}

#[tonic::async_trait]
impl PodNetwork for FakeNetwork {
    async fn set_up(&self, request: &PodNetworkRequest) -> Result<Vec<IpAddr>, CriError> {
        self.recorder.call("network.set_up", request.sandbox_id.clone())?;
        let mut attached = self.attached.lock().map_err(|_| CriError::internal("poisoned"))?;
        attached.insert(request.sandbox_id.clone(), request.clone());
        Ok(vec![IpAddr::from([10, 88, 0, 2])])
    }

    async fn tear_down(&self, request: &PodNetworkRequest) -> Result<(), CriError> {
        self.recorder.call("network.tear_down", request.sandbox_id.clone())?;
        self.attached.lock().map_err(|_| CriError::internal("poisoned"))?.remove(&request.sandbox_id);
        Ok(())
    }

    async fn set_pod_cidr(&self, cidr: &str) -> Result<(), CriError> {
        self.recorder.call("network.set_pod_cidr", cidr)?;
        *self.pod_cidr.lock().map_err(|_| CriError::internal("poisoned"))? = Some(cidr.to_string());
        Ok(())
    }
}
