//! A connection that never finishes its request header is closed (slowloris), while a normal
//! client is served meanwhile.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Server;

#[tokio::test]
async fn a_connection_that_never_finishes_its_header_is_closed() {
    let server = Server::start_with_env(&[("MISSIVE_LIMITS__HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let addr = server.api().base_url().trim_start_matches("http://").to_owned();
    let mut half_open = Vec::new();
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        half_open.push(c);
    }
    // Others are served while those hang.
    let health = reqwest::get(server.api().url("/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    for mut c in half_open {
        let mut buf = Vec::new();
        // The server answers 408 or just closes; either way the read ends, well before this.
        let read = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a half-open connection was still held after 20 s");
    }
}
