//! Read-index batching: concurrent callers share one leadership confirmation.
//!
//! A linearizable read needs a read index obtained by a confirmation that began
//! after the read arrived. So callers queue while a confirmation is in flight and
//! are answered by the *next* one, which starts when the current one ends and
//! answers everyone queued before it started. With 64 readers that is one round
//! trip to a quorum per batch instead of one per read.
//!
//! There is no background task: the first caller drives a round, then hands the
//! next round to the longest-waiting caller. A driver whose caller gives up
//! (timeout, dropped request) hands over on drop, and the callers of its
//! abandoned round queue again.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

enum Msg<T> {
    Done(T),
    Drive,
}

struct Inner<T> {
    running: bool,
    waiting: VecDeque<oneshot::Sender<Msg<T>>>,
}

pub struct Coalescer<T> {
    inner: Mutex<Inner<T>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            inner: Mutex::new(Inner {
                running: false,
                waiting: VecDeque::new(),
            }),
        }
    }
}

impl<T: Clone> Coalescer<T> {
    /// The result of a `fetch` that started after this call did, shared with every
    /// caller that arrived before it started.
    pub async fn run<F, Fut>(&self, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            let queued = {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.running {
                    let (tx, rx) = oneshot::channel();
                    inner.waiting.push_back(tx);
                    Some(rx)
                } else {
                    inner.running = true;
                    None
                }
            };
            if let Some(rx) = queued {
                match rx.await {
                    Ok(Msg::Done(t)) => return t,
                    Ok(Msg::Drive) => {}
                    // The round we were in was abandoned: queue again.
                    Err(_) => continue,
                }
            }
            return self.drive(fetch).await;
        }
    }

    /// One round, run by a caller that holds `running`.
    async fn drive<F, Fut>(&self, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let handover = HandOver(self);
        let batch: Vec<_> = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.waiting.drain(..).collect()
        };
        let t = fetch().await;
        for tx in batch {
            let _ = tx.send(Msg::Done(t.clone()));
        }
        drop(handover);
        t
    }
}

/// Passes `running` to the longest-waiting live caller, or clears it.
struct HandOver<'a, T>(&'a Coalescer<T>);

impl<T> Drop for HandOver<'_, T> {
    fn drop(&mut self) {
        let mut inner = self.0.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(tx) = inner.waiting.pop_front() {
            if tx.send(Msg::Drive).is_ok() {
                return;
            }
        }
        inner.running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Every caller gets the result of a fetch that started after it arrived, and
    /// concurrent callers share fetches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn callers_share_rounds_that_start_after_they_arrive() {
        let c = Arc::new(Coalescer::<(u64, u64)>::default());
        // `started` counts rounds begun; a round returns (its number, rounds begun
        // when it ended) so a caller can check its round began after it arrived.
        let started = Arc::new(AtomicU64::new(0));
        let mut tasks = vec![];
        for i in 0..200u64 {
            let (c, started) = (c.clone(), started.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 50)).await;
                let before = started.load(Ordering::SeqCst);
                let (round, _) = c
                    .run(|| async {
                        let round = started.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        (round, started.load(Ordering::SeqCst))
                    })
                    .await;
                assert!(round > before, "answered by round {round}, which began before the call ({before} rounds had begun)");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rounds = started.load(Ordering::SeqCst);
        assert!(rounds < 200, "no sharing: {rounds} rounds for 200 callers");
    }

    /// A driver that is dropped mid-round does not strand the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_round_is_taken_over() {
        let c = Arc::new(Coalescer::<u32>::default());
        let c1 = c.clone();
        let stuck = tokio::spawn(async move {
            c1.run(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                0
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.run(|| async { 7 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stuck.abort();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was stranded")
            .unwrap();
        assert_eq!(got, 7);
    }
}
