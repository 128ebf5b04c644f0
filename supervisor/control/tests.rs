use super::*;

/// A fake event loop that answers every call with a fixed status.
async fn serve_for_test(
    path: &Path,
) -> (
    watch::Sender<Stop>,
    tokio::task::JoinHandle<Option<ControlServer>>,
) {
    let server = ControlServer::bind(path).unwrap();
    let (calls_tx, mut calls_rx) = mpsc::unbounded_channel::<ControlCall>();
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    tokio::spawn(async move {
        while let Some(call) = calls_rx.recv().await {
            let _ = call.reply.send(Response::Stopped { pid: 7 });
        }
    });
    let task = tokio::spawn(server.serve(calls_tx, stop_rx, Duration::from_secs(1)));
    (stop_tx, task)
}

async fn exchange(path: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(path).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(s)
        .read_line(&mut line)
        .await
        .unwrap();
    line
}

#[tokio::test]
async fn answers_good_and_bad_requests_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let (stop, task) = serve_for_test(&path).await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    assert_eq!(
        exchange(&path, b"{\"command\":\"stop\"}\n").await,
        "{\"result\":\"stopped\",\"pid\":7}\n"
    );
    let bad = exchange(&path, b"{\"command\":\"fly\"}\n").await;
    assert!(bad.contains("\"kind\":\"bad_request\""), "{bad}");
    let huge = vec![b'x'; MAX_REQUEST + 10];
    let long = exchange(&path, &huge).await;
    assert!(long.contains("longer than"), "{long}");
    // Still serving after all that.
    assert_eq!(
        exchange(&path, b"{\"command\":\"status\"}\n").await,
        "{\"result\":\"stopped\",\"pid\":7}\n"
    );

    stop.send(Stop::Close).unwrap();
    task.await.unwrap();
    assert!(!path.exists(), "the control socket file is removed");
}

#[tokio::test]
async fn a_second_server_on_a_live_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let (_stop, _task) = serve_for_test(&path).await;
    let err = ControlServer::bind(&path)
        .err()
        .expect("must not bind twice");
    assert!(
        err.to_string().contains("another process is listening"),
        "{err}"
    );
}
