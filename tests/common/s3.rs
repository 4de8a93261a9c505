//! A real S3-compatible server on loopback for the S3 tests: s3s-fs, built once by
//! `scripts/s3-server` (which says why this server and where it differs from S3). It keeps
//! objects as files under a temporary folder, so a test can stop it mid-upload, start it again
//! on the same port and find every completed object still there.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::repo_root;

/// Fixed test credentials: the server refuses requests signed with any others.
pub const ACCESS_KEY_ID: &str = "fathom-test";
pub const SECRET_ACCESS_KEY: &str = "fathom-test-secret";
/// Any region signs; object_store needs one to sign with.
pub const REGION: &str = "us-east-1";

/// How long a started server may take to accept connections (the build is done before).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server with one bucket. Dropping it kills the server and removes its data.
pub struct S3Server {
    bucket: String,
    port: u16,
    /// Holds `data/` (the server's root: one folder per bucket) and `server.log`.
    dir: tempfile::TempDir,
    data: PathBuf,
    child: Option<Child>,
}

/// Builds the server once per test binary (minutes the first time on a machine, then cached in
/// the user's cache by the script) and returns the binary's path.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = repo_root().join("scripts/s3-server");
        let out = Command::new(&script)
            .arg("install")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} install failed ({})", script.display(), out.status);
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}

impl S3Server {
    /// Starts a server on a free loopback port with an empty bucket `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        assert!(!bucket.is_empty() && !bucket.contains('/'), "bad bucket name {bucket:?}");
        binary();
        let dir = tempfile::tempdir().expect("temporary folder for the S3 server");
        // With s3s-fs a bucket is a folder of the root.
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(bucket)).expect("bucket folder");
        // Port 0 lets the kernel pick a free one; the listener is closed before the server binds
        // it, a race small enough on loopback.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = S3Server { bucket: bucket.to_string(), port, dir, data, child: None };
        server.spawn();
        server
    }

    /// The dataset URL of `prefix` in the bucket: `s3://BUCKET/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// `http://127.0.0.1:PORT` (pyarrow's `endpoint_override` takes it without the scheme).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What a child process needs to reach the server through object_store's
    /// `AmazonS3Builder::from_env()`: the endpoint over plain HTTP, the test credentials and a
    /// region. Path-style requests (`/BUCKET/KEY`) are object_store's default and the only kind
    /// this server takes without `--domain`; setting it also overrides a developer's own
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The server's root folder: `data_dir()/BUCKET/KEY` is each object's file.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Kills the server (SIGKILL, as a crash would: an upload in flight is lost, its staging file
    /// is removed at the next start) and waits for it. The data folder is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs the binary itself (not through the script, so `kill` reaches the server) and waits
    /// until its port accepts connections: s3s-fs binds only once it has opened its root.
    fn spawn(&mut self) {
        // Its output goes to a file: a pipe nobody reads could fill and stall the server.
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("server log");
        let mut child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY_ID, "--secret-key", SECRET_ACCESS_KEY])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            let exited = child.try_wait().expect("polling the S3 server");
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                let why = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!("did not answer within {READY_TIMEOUT:?}"),
                };
                panic!(
                    "the S3 server on {addr} {why}; its output:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
