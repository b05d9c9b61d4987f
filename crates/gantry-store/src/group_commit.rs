//! Group commit for new changes: concurrent `insert_change` calls are queued to one writer
//! task, which commits whatever has queued up as one transaction (a few multi-row
//! statements), then answers each caller. Under load a commit carries many changes, so the
//! cost of a transaction (a WAL write and fsync, the stream lock on PostgreSQL) is shared;
//! alone, a change commits by itself with no added wait.
//!
//! If a group fails (say one change's service is not registered), its changes are retried
//! one by one, so each caller gets its own answer and no good change is refused.

use std::sync::Arc;

use futures::future::BoxFuture;
use gantry_core::Change;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// Most changes one transaction carries.
const MAX_GROUP: usize = 256;

/// What the writer does with a group: commit it, returning each change's event seq.
pub(crate) type CommitGroup =
    Arc<dyn Fn(Vec<Change>) -> BoxFuture<'static, Result<Vec<i64>>> + Send + Sync>;

struct Pending {
    change: Change,
    reply: oneshot::Sender<Result<i64>>,
}

#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub(crate) fn spawn(commit: CommitGroup) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(write(receiver, commit));
        GroupCommit { queue }
    }

    pub(crate) async fn insert(&self, change: Change) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Config("the store is closed".into());
        self.queue
            .send(Pending { change, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write(mut receiver: mpsc::Receiver<Pending>, commit: CommitGroup) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (changes, replies): (Vec<Change>, Vec<oneshot::Sender<Result<i64>>>) =
            group.drain(..).map(|p| (p.change, p.reply)).unzip();
        match commit(changes.clone()).await {
            Ok(seqs) => {
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) if changes.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(_) => {
                for (change, reply) in changes.into_iter().zip(replies) {
                    let one = commit(vec![change]).await.and_then(|seqs| {
                        seqs.first()
                            .copied()
                            .ok_or_else(|| StoreError::Corrupt("a commit returned no seq".into()))
                    });
                    let _ = reply.send(one);
                }
            }
        }
    }
}
