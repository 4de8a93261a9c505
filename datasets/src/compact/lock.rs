//! One compaction at a time: a second one would take the first's half-written outputs for a
//! crashed compaction's and roll them back under it.
//!
//! The lock is `_compaction/lock`, created only if absent. A lock left by a process of this
//! host that has ended is taken over, so a crashed nightly run does not block the next one.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::CompactError;
use super::manifest::LOCK;
use crate::schema::COMPACTION_DIR;
use crate::store::{Dataset, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            id: uuid::Uuid::now_v7().to_string(),
            host: hostname(),
            pid: std::process::id(),
            started_at: Utc::now(),
        }
    }

    /// Whether the holder certainly ended: only knowable for a process of this host.
    fn ended(&self) -> bool {
        cfg!(target_os = "linux")
            && self.host == hostname()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

pub(crate) fn location(dataset: &Dataset) -> Path {
    dataset.child(&format!("{COMPACTION_DIR}/{LOCK}"))
}

#[derive(Debug)]
pub(crate) struct Lock {
    holder: Holder,
}

pub(crate) async fn acquire(dataset: &Dataset) -> Result<Lock, CompactError> {
    let path = location(dataset);
    let me = Holder::me();
    let bytes = Bytes::from(serde_json::to_vec(&me).expect("a lock holder always serialises"));
    for _ in 0..3 {
        if dataset.put_if_absent(&path, bytes.clone()).await? {
            return Ok(Lock { holder: me });
        }
        let held = match dataset.get(&path).await {
            Ok(held) => held,
            // Released in the meantime.
            Err(StoreError::Object { cause: object_store::Error::NotFound { .. }, .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let locked = |holder: String| CompactError::Locked { lock: dataset.display(&path), holder };
        match serde_json::from_slice::<Holder>(&held) {
            Ok(h) if h.ended() => {
                tracing::warn!(
                    "taking over the compaction lock of pid {} on {} (since {}): that process has ended",
                    h.pid,
                    h.host,
                    h.started_at
                );
                dataset.delete(&path).await?;
            }
            Ok(h) => return Err(locked(format!("pid {} on {} since {}", h.pid, h.host, h.started_at))),
            Err(e) => return Err(locked(format!("unreadable: {e}"))),
        }
    }
    Err(CompactError::Locked { lock: dataset.display(&path), holder: "taken by another compaction".into() })
}

impl Lock {
    /// Deletes the lock if it is still this one's.
    pub(crate) async fn release(self, dataset: &Dataset) -> Result<(), StoreError> {
        let path = location(dataset);
        let held = match dataset.get(&path).await {
            Ok(held) => held,
            Err(StoreError::Object { cause: object_store::Error::NotFound { .. }, .. }) => {
                tracing::warn!("{} was removed while this compaction held it", dataset.display(&path));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<Holder>(&held) {
            Ok(h) if h == self.holder => dataset.delete(&path).await,
            _ => {
                tracing::warn!("{} was taken over by another compaction; left to it", dataset.display(&path));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_ended_one_is_taken_over() {
        let ds = Dataset::create("memory://compact-lock").unwrap();
        let first = acquire(&ds).await.unwrap();
        let err = acquire(&ds).await.unwrap_err().to_string();
        assert!(err.contains("another compaction holds") && err.contains("_compaction/lock"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        first.release(&ds).await.unwrap();
        assert!(!ds.exists(&location(&ds)).await.unwrap());

        // A holder of this host whose process ended (pids never reach u32::MAX).
        let ended = Holder { pid: u32::MAX, ..Holder::me() };
        ds.put(&location(&ds), Bytes::from(serde_json::to_vec(&ended).unwrap())).await.unwrap();
        let taken = acquire(&ds).await.unwrap();
        taken.release(&ds).await.unwrap();
        // One of another host: nothing to know about it, so it is respected.
        let remote = Holder { host: "elsewhere".into(), pid: u32::MAX, ..Holder::me() };
        ds.put(&location(&ds), Bytes::from(serde_json::to_vec(&remote).unwrap())).await.unwrap();
        let err = acquire(&ds).await.unwrap_err().to_string();
        assert!(err.contains("on elsewhere"), "{err}");
    }
}
