//! The client against real loopback servers started by each test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_http::{Allowlist, Client, ClientConfig, HttpError, HttpRequest};

// === harness ===

fn client() -> Client {
    Client::new(ClientConfig {
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
}

/// Reads one request (head, then a body by Content-Length) as the server sees it.
async fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before the end of the head");
        got.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    while got.len() < head_end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before the end of the body");
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// A server for one connection: reads the request, writes `parts` one by one (with a
/// short pause between, to split the response across reads), closes. The handle yields
/// the request bytes.
async fn serve(parts: Vec<&'static [u8]>) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let req = read_request(&mut s).await;
        for part in parts {
            // The client may hang up early (a too-large body): stop writing then.
            if s.write_all(part).await.is_err() || s.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = s.shutdown().await;
        req
    });
    (addr, task)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

// === responses ===

#[tokio::test]
async fn content_length_body() {
    let (addr, server) = serve(vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhel",
        b"lo",
    ])
    .await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "/x")))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    server.await.unwrap();
}

#[tokio::test]
async fn chunked_body() {
    let (addr, server) = serve(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n",
        b"5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n",
    ])
    .await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "/")))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"Wikipedia in\r\n\r\nchunks.");
    server.await.unwrap();
}

#[tokio::test]
async fn read_to_close() {
    let (addr, server) = serve(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"the end"]).await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "/")))
        .await
        .unwrap();
    assert_eq!(resp.body, b"until the end");
    server.await.unwrap();
}

#[tokio::test]
async fn not_found_is_a_response() {
    let (addr, server) = serve(vec![
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
    ])
    .await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "/missing")))
        .await
        .unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (404, &b"nope"[..]));
    server.await.unwrap();
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let (addr, server) = serve(vec![
        b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/\r\nContent-Length: 0\r\n\r\n",
    ])
    .await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "/")))
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("http://192.0.2.1/"));
    server.await.unwrap();
}

#[tokio::test]
async fn interim_continue_is_skipped() {
    let (addr, server) = serve(vec![
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    ])
    .await;
    let resp = client()
        .send(HttpRequest::post(url(addr, "/"), b"x".to_vec()))
        .await
        .unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (201, &b"ok"[..]));
    server.await.unwrap();
}

#[tokio::test]
async fn too_large() {
    let small = Client::new(ClientConfig {
        timeout: Duration::from_secs(5),
        max_response_bytes: 8,
        ..ClientConfig::default()
    });
    // Announced by Content-Length, streamed to the close, and in chunks.
    for parts in [
        vec![&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789"[..]],
        vec![b"HTTP/1.1 200 OK\r\n\r\n12345", b"6789"],
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n",
            b"4\r\n6789\r\n0\r\n\r\n",
        ],
    ] {
        let (addr, server) = serve(parts).await;
        let got = small.send(HttpRequest::get(url(addr, "/"))).await;
        assert_eq!(got, Err(HttpError::TooLarge));
        server.await.unwrap();
    }
    // Exactly at the limit is fine.
    let (addr, server) = serve(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678",
    ])
    .await;
    assert_eq!(
        small
            .send(HttpRequest::get(url(addr, "/")))
            .await
            .unwrap()
            .body,
        b"12345678"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn timeout_when_server_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let c = Client::new(ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    let started = Instant::now();
    assert_eq!(
        c.send(HttpRequest::get(url(addr, "/"))).await,
        Err(HttpError::Timeout)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    server.abort();
}

#[tokio::test]
async fn connection_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let got = client().send(HttpRequest::get(url(addr, "/"))).await;
    assert!(matches!(got, Err(HttpError::Connect(_))), "{got:?}");
}

#[tokio::test]
async fn malformed_responses_are_protocol_errors() {
    for parts in [
        vec![&b"HTTP/1.1 OK\r\n\r\n"[..]],
        vec![b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"],
        vec![b"garbage"],
        vec![],
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"],
    ] {
        let (addr, server) = serve(parts).await;
        let got = client().send(HttpRequest::get(url(addr, "/"))).await;
        assert!(matches!(got, Err(HttpError::Protocol(_))), "{got:?}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn https_to_a_plain_server_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let got = client()
        .send(HttpRequest::get(format!("https://{addr}/")))
        .await;
    assert!(
        matches!(got, Err(HttpError::Connect(ref m)) if m.contains("tls")),
        "{got:?}"
    );
    server.await.unwrap();
}

// === requests ===

#[tokio::test]
async fn request_bytes_as_seen_by_the_server() {
    let (addr, server) = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).await;
    let req = HttpRequest::post(url(addr, "/v1/send?x=1#frag"), b"{\"to\":\"abc\"}".to_vec())
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer t0k3n");
    client().send(req).await.unwrap();
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        seen,
        format!(
            "POST /v1/send?x=1 HTTP/1.1\r\n\
             Host: {addr}\r\n\
             User-Agent: weir\r\n\
             Connection: close\r\n\
             Content-Length: 12\r\n\
             Content-Type: application/json\r\n\
             Authorization: Bearer t0k3n\r\n\
             \r\n\
             {{\"to\":\"abc\"}}"
        )
    );
}

#[tokio::test]
async fn get_without_body_has_no_content_length() {
    let (addr, server) = serve(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]).await;
    let resp = client()
        .send(HttpRequest::get(url(addr, "")))
        .await
        .unwrap();
    assert_eq!(resp.status, 204);
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        seen,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir\r\nConnection: close\r\n\r\n")
    );
}

#[tokio::test]
async fn dns_name_is_resolved() {
    // `localhost` may resolve to ::1 first; the client then tries 127.0.0.1.
    let (addr, server) = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]).await;
    let resp = client()
        .send(HttpRequest::get(format!(
            "http://localhost:{}/",
            addr.port()
        )))
        .await
        .unwrap();
    assert_eq!(resp.body, b"ok");
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        seen.contains(&format!("\r\nHost: localhost:{}\r\n", addr.port())),
        "{seen}"
    );
}

#[tokio::test]
async fn ipv6_literal() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let req = read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6")
            .await
            .unwrap();
        req
    });
    let resp = client()
        .send(HttpRequest::get(format!("http://[::1]:{}/", addr.port())))
        .await
        .unwrap();
    assert_eq!(resp.body, b"v6");
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        seen.contains(&format!("\r\nHost: [::1]:{}\r\n", addr.port())),
        "{seen}"
    );
}

#[tokio::test]
async fn invalid_requests_never_connect() {
    let c = client();
    for (u, want_url) in [("ftp://127.0.0.1/", true), ("http://127.0.0.1/a b", true)] {
        let got = c.send(HttpRequest::get(u)).await;
        assert_eq!(
            matches!(got, Err(HttpError::InvalidUrl(_))),
            want_url,
            "{got:?}"
        );
    }
    let got = c
        .send(HttpRequest::get("http://127.0.0.1:1/").header("X", "a\r\nHost: evil"))
        .await;
    assert!(matches!(got, Err(HttpError::InvalidRequest(_))), "{got:?}");
    let got = c
        .send(HttpRequest::get("http://127.0.0.1:1/").header("Host", "evil"))
        .await;
    assert!(matches!(got, Err(HttpError::InvalidRequest(_))), "{got:?}");
}

// === admission ===

#[tokio::test]
async fn busy_beyond_max_concurrent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut s).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
    });
    let c = Client::new(ClientConfig {
        timeout: Duration::from_secs(5),
        max_concurrent: 1,
        ..ClientConfig::default()
    });
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.send(HttpRequest::get(url(addr, "/"))).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.send(HttpRequest::get(url(addr, "/"))).await,
        Err(HttpError::Busy)
    );
    assert_eq!(first.await.unwrap().unwrap().status, 200);
    server.await.unwrap();
    // The permit is back: the next request gets through to the (now closed) port.
    let got = c.send(HttpRequest::get(url(addr, "/"))).await;
    assert!(matches!(got, Err(HttpError::Connect(_))), "{got:?}");
    // 0 refuses everything.
    let none = Client::new(ClientConfig {
        max_concurrent: 0,
        ..ClientConfig::default()
    });
    assert_eq!(
        none.send(HttpRequest::get(url(addr, "/"))).await,
        Err(HttpError::Busy)
    );
}

// === allowlist ===

#[tokio::test]
async fn send_allowed_checks_the_allowlist() {
    let (addr, server) = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).await;
    let grant = Allowlist::new([format!("http://{addr}/push/")]).unwrap();
    let c = client();
    let got = c
        .send_allowed(&grant, HttpRequest::get(url(addr, "/admin")))
        .await;
    assert!(matches!(got, Err(HttpError::NotAllowed(_))), "{got:?}");
    let got = c
        .send_allowed(&grant, HttpRequest::get(url(addr, "/push/../admin")))
        .await;
    assert!(matches!(got, Err(HttpError::InvalidUrl(_))), "{got:?}");
    let got = c
        .send_allowed(
            &Allowlist::default(),
            HttpRequest::get(url(addr, "/push/x")),
        )
        .await;
    assert!(matches!(got, Err(HttpError::NotAllowed(_))), "{got:?}");
    let resp = c
        .send_allowed(&grant, HttpRequest::get(url(addr, "/push/x")))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    server.await.unwrap();
}
