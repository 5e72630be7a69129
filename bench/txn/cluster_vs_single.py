"""Transactional producer latency, single node against a 3-broker cluster on one PostgreSQL
(issue 20): one confluent-kafka transactional producer commits 200 transactions of 10 records
over 6 partitions, twice on each. Usage, after `cargo build -p busbar` (or a release build):

    python3 bench/txn/cluster_vs_single.py [path/to/busbar]

Prints transactions per second and the commit's p50/p99 (from begin to commit's answer).
Not run in CI: figures go to docs/cluster.md with the build and machine they came from.
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "clients"))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "target", "debug", "busbar")
sys.argv = ["run.py", BIN, "__no_test_matches__"]
import run  # noqa: E402  (tests/clients/run.py: the Busbar test server)
import cluster as cl  # noqa: E402  (tests/clients/cluster.py: Postgres, create_everywhere)
from confluent_kafka import Producer  # noqa: E402


def bench(bootstrap, label, n=200):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{label}",
                  "linger.ms": 0})
    p.init_transactions(30)
    lat = []
    start = time.time()
    for i in range(n):
        t0 = time.time()
        p.begin_transaction()
        for k in range(10):
            p.produce("tb", key=f"k{k}", value=f"v{i}-{k}")
        p.commit_transaction(30)
        lat.append((time.time() - t0) * 1000)
    total = time.time() - start
    lat.sort()
    print(f"{label}: {n / total:.0f} txn/s (10 records each), commit p50 "
          f"{statistics.median(lat):.1f} ms p99 {lat[int(0.99 * len(lat)) - 1]:.1f} ms",
          flush=True)


def main():
    single = run.Busbar()
    try:
        cl.create_everywhere([single], {"tb": 6})
        for r in range(2):
            bench(single.kafka, f"single-{r}")
    finally:
        single.stop()
    pg = cl.Postgres()
    brokers = []
    try:
        brokers = [run.Busbar(extra_env={"BUSBAR_CLUSTER_POSTGRES_URL": pg.url(),
                                         "BUSBAR_CLUSTER_NODE_ID": str(i + 1)})
                   for i in range(3)]
        cl.create_everywhere(brokers, {"tb": 6})
        for r in range(2):
            bench(",".join(b.kafka for b in brokers), f"cluster-{r}")
    finally:
        for b in brokers:
            b.stop()
        pg.stop()


if __name__ == "__main__":
    main()
