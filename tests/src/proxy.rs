//! TCP proxies that misbehave on purpose, between berthd and a registry.

use std::future::Future;

use tokio::net::TcpStream;

/// A TCP proxy on a loopback port: for each connection it connects to `upstream` and hands the
/// client's and the server's streams to `relay`, on a task of its own. Returns its `host:port`.
pub async fn proxy<F, Fut>(upstream: String, relay: F) -> String
where
    F: Fn(TcpStream, TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let host = listener.local_addr().expect("proxy address").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { continue };
            tokio::spawn(relay(client, server));
        }
    });
    host
}

/// A TCP proxy to `upstream` that cuts the first connection to pass `cut_after` bytes back to
/// the client (a download interrupted mid-layer), then lets everything through. Returns its
/// `host:port` and how many connections it cut.
pub async fn cutting_proxy(
    upstream: String,
    cut_after: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cuts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = cuts.clone();
    let host = proxy(upstream, move |client, server| {
        let cuts = counted.clone();
        async move {
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let requests = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let mut passed = 0;
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if passed + n > cut_after && cuts.load(Ordering::SeqCst) == 0 {
                    cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = client_write.write_all(&buffer[..cut_after - passed]).await;
                    break;
                }
                passed += n;
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
            requests.abort();
        }
    })
    .await;
    (host, cuts)
}

/// A TCP proxy to `upstream` that passes the server's bytes back at about `bytes_per_second`
/// per connection, so a pull lasts long enough to watch. Returns its `host:port`.
pub async fn throttled_proxy(upstream: String, bytes_per_second: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLICES_PER_SECOND: usize = 20;
    proxy(upstream, move |client, server| async move {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let requests = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut buffer = vec![0u8; (bytes_per_second / SLICES_PER_SECOND).max(1)];
        let mut slices = tokio::time::interval(std::time::Duration::from_secs(1) / SLICES_PER_SECOND as u32);
        loop {
            slices.tick().await;
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        requests.abort();
    })
    .await
}
