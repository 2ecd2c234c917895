//! A ttrpc client for the shim Task service under its v2 name, `containerd.task.v2.Task`,
//! which every shim v2 serves (containerd 1.6's Go shims only that one). The generated
//! client in containerd-shim-protos calls `containerd.task.v3.Task`, which older shims lack;
//! the messages are the same.

use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::ttrpc;

/// The service name berthd calls shims by.
pub const TASK_SERVICE: &str = "containerd.task.v2.Task";

#[derive(Clone)]
pub struct ShimClient {
    client: ttrpc::r#async::Client,
}

impl ShimClient {
    pub fn new(client: ttrpc::r#async::Client) -> Self {
        Self { client }
    }
}

/// One async method per Task RPC: encode, call `TASK_SERVICE`/`method`, decode.
macro_rules! task_calls {
    ($($name:ident: $request:ty => $response:ty = $method:literal;)*) => {
        impl ShimClient {
            $(
                pub async fn $name(&self, ctx: ttrpc::context::Context, req: &$request) -> ttrpc::Result<$response> {
                    let mut cres = <$response>::new();
                    ttrpc::async_client_request!(self, ctx, req, TASK_SERVICE, $method, cres);
                }
            )*
        }
    };
}

task_calls! {
    state: api::StateRequest => api::StateResponse = "State";
    create: api::CreateTaskRequest => api::CreateTaskResponse = "Create";
    start: api::StartRequest => api::StartResponse = "Start";
    delete: api::DeleteRequest => api::DeleteResponse = "Delete";
    pids: api::PidsRequest => api::PidsResponse = "Pids";
    pause: api::PauseRequest => Empty = "Pause";
    resume: api::ResumeRequest => Empty = "Resume";
    checkpoint: api::CheckpointTaskRequest => Empty = "Checkpoint";
    kill: api::KillRequest => Empty = "Kill";
    exec: api::ExecProcessRequest => Empty = "Exec";
    resize_pty: api::ResizePtyRequest => Empty = "ResizePty";
    close_io: api::CloseIORequest => Empty = "CloseIO";
    update: api::UpdateTaskRequest => Empty = "Update";
    wait: api::WaitRequest => api::WaitResponse = "Wait";
    stats: api::StatsRequest => api::StatsResponse = "Stats";
    connect: api::ConnectRequest => api::ConnectResponse = "Connect";
    shutdown: api::ShutdownRequest => Empty = "Shutdown";
}
