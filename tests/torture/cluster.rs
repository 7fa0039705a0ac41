//! The torture workload across two daemons sharing their executions
//! through a real 3-member etcd cluster (the cluster mode, issue 20):
//! writers, the ender and subscribers of every kind spread over both
//! daemons, and every check on each daemon's streams and history. Skipped,
//! saying so, without `etcd`.

use crate::common;
use crate::scenarios::{run_on, Scenario};
use crate::torture_support::Config;
use crate::ALL_HISTORY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_across_two_daemons_sharing_etcd() {
    let Some(etcd) = crate::etcd_cluster::Cluster::start().await else {
        return;
    };
    let endpoints = etcd.endpoints().join(",");
    let args = vec![
        "--etcd",
        endpoints.as_str(),
        "--history-retention",
        ALL_HISTORY,
        "--subscriber-queue",
        "8",
        "--connection-queue",
        "16",
    ];
    let a = common::Daemon::start(&args);
    let b = common::Daemon::start(&args);
    run_on(
        Scenario {
            name: "cluster",
            args: Vec::new(),
            config: Config::from_env(600, 0),
            crash: false,
            replayable: true,
        },
        a,
        vec![b],
    )
    .await;
    drop(etcd);
}
