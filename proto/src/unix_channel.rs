//! A tonic channel to a gRPC server on a unix socket, the way kubelet, crictl and ctr reach
//! berthd.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Error};

/// Connects to the gRPC server listening on `socket`.
pub async fn connect(socket: impl AsRef<Path>) -> Result<Channel, Error> {
    let socket: PathBuf = socket.as_ref().to_path_buf();
    // The URI is required by tonic but unused: every connection goes to `socket`.
    Endpoint::from_static("http://berth.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
}
