"""Kafka transactions (issue 18) against the real binary: confluent-kafka's transactional producer
(librdkafka: InitProducerId with a transactional id, AddPartitionsToTxn v0, AddOffsetsToTxn v0,
TxnOffsetCommit, EndTxn), read_committed and read_uncommitted consumers, consume-transform-produce
with send_offsets_to_transaction, zombie fencing, the coordinator's timeout, kill -9 of the broker
with a transaction open and after a commit, kcat reading read_committed, and kafka-python's and
aiokafka's transactional producers. Registered into run.py's tests.
"""
import subprocess, time, uuid

TOPIC_PARTS = 3


def _create(b, topic, partitions=TOPIC_PARTS):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": b.kafka})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def _producer(b, txn_id, **extra):
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": b.kafka, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def _read_all(b, topic, isolation, expect_at_least=0, timeout=15, group=None):
    """Every value on `topic` from the start, read at `isolation`, until nothing new arrives for
    a while (and at least `expect_at_least` values arrived, or `timeout` passed)."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": group or f"r-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.subscribe([topic])
    got, deadline, idle_since = [], time.time() + timeout, None
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(got) >= expect_at_least and idle_since and time.time() - idle_since > 2:
                break
            idle_since = idle_since or time.time()
            continue
        idle_since = None
        if m.error():
            continue
        got.append(m.value().decode())
    c.close()
    return sorted(got)


def register(test, Busbar):
    @test
    def transactions_commit_and_abort_across_three_partitions(b):
        _create(b, "tx")
        p = _producer(b, "tx-1")
        p.begin_transaction()
        for i in range(30):
            p.produce("tx", value=f"c{i}", partition=i % TOPIC_PARTS)
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(30):
            p.produce("tx", value=f"a{i}", partition=i % TOPIC_PARTS)
        p.flush(30)
        p.abort_transaction(30)
        p.begin_transaction()
        p.produce("tx", value="c-last", partition=0)
        p.commit_transaction(30)
        committed = sorted([f"c{i}" for i in range(30)] + ["c-last"])
        assert _read_all(b, "tx", "read_committed", 31) == committed
        everything = sorted(committed + [f"a{i}" for i in range(30)])
        assert _read_all(b, "tx", "read_uncommitted", 61) == everything
        # HTTP reads are committed reads: no aborted event, no marker.
        seen = []
        for part in range(TOPIC_PARTS):
            page = b.get(f"/topics/tx/partitions/{part}/events?limit=1000")
            seen += [e["value"] for e in page["events"]]
        assert sorted(seen) == committed, seen

    @test
    def transactions_read_committed_waits_for_an_open_transaction(b):
        _create(b, "open", 1)
        p = _producer(b, "open-1")
        p.begin_transaction()
        p.produce("open", value="pending")
        p.flush(30)
        # The last stable offset holds at the open transaction: nothing is readable yet.
        assert _read_all(b, "open", "read_committed", 0, timeout=4) == []
        assert _read_all(b, "open", "read_uncommitted", 1) == ["pending"]
        lso = subprocess.run(["kcat", "-b", b.kafka, "-Q", "-X", "isolation.level=read_committed",
                              "-t", "open:0:-1"], capture_output=True, text=True, timeout=30)
        p.commit_transaction(30)
        assert _read_all(b, "open", "read_committed", 1) == ["pending"]
        out = subprocess.run(["kcat", "-b", b.kafka, "-C", "-t", "open", "-e", "-q",
                              "-X", "isolation.level=read_committed"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["pending"], (out.stdout, out.stderr, lso.stdout)

    @test
    def transactions_delete_records_past_an_open_transaction_moves_the_last_stable_offset(b):
        """DeleteRecords past the first offset of an open transaction: read_committed readers
        are not held below the new start (Kafka clamps the first unstable offset to it), so
        ListOffsets latest answers the start, not an offset below it that Fetch refuses."""
        from confluent_kafka import Producer, TopicPartition
        from confluent_kafka.admin import AdminClient
        _create(b, "opendel", 1)
        plain = Producer({"bootstrap.servers": b.kafka})
        for i in range(5):
            plain.produce("opendel", value=f"v{i}")
        assert plain.flush(30) == 0
        p = _producer(b, "opendel-1")
        p.begin_transaction()
        p.produce("opendel", value="pending")
        p.flush(30)
        plain.produce("opendel", value="after")
        assert plain.flush(30) == 0
        admin = AdminClient({"bootstrap.servers": b.kafka})
        [f] = admin.delete_records([TopicPartition("opendel", 0, -1)]).values()
        start = f.result(15).low_watermark
        assert start == 7, start
        # kafka-python's ListOffsets carries the consumer's isolation level (librdkafka's
        # watermark query does not).
        from kafka import KafkaConsumer, TopicPartition as KTP
        kc = KafkaConsumer(bootstrap_servers=b.kafka, isolation_level="read_committed")
        tp = KTP("opendel", 0)
        ends = (kc.beginning_offsets([tp])[tp], kc.end_offsets([tp])[tp])
        kc.close()
        assert ends == (7, 7), ends
        p.commit_transaction(30)
        plain.produce("opendel", value="later")
        assert plain.flush(30) == 0
        assert _read_all(b, "opendel", "read_committed", 1) == ["later"]

    @test
    def transactions_consume_transform_produce_commits_offsets_atomically(b):
        from confluent_kafka import Consumer, Producer, TopicPartition
        _create(b, "in", 1)
        _create(b, "out", 1)
        src = Producer({"bootstrap.servers": b.kafka})
        for i in range(20):
            src.produce("in", value=f"e{i}")
        src.flush(30)
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "ctp", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
        c.subscribe(["in"])
        p = _producer(b, "ctp-1")
        done = 0
        aborted_once = False
        deadline = time.time() + 60
        while done < 20 and time.time() < deadline:
            msgs = c.consume(5, 1.0)
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce("out", value=m.value().decode().upper())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            if not aborted_once:
                # The first batch is aborted: its output is dropped and its offsets are not
                # committed, so it is processed again from the last committed position.
                aborted_once = True
                p.abort_transaction(30)
                committed = c.committed([TopicPartition("in", 0)], 10)[0].offset
                c.seek(TopicPartition("in", 0, committed if committed >= 0 else 0))
                continue
            p.commit_transaction(30)
            done += len(msgs)
        c.close()
        assert done == 20, done
        assert _read_all(b, "out", "read_committed", 20) == sorted(f"E{i}" for i in range(20))
        chk = Consumer({"bootstrap.servers": b.kafka, "group.id": "ctp"})
        assert chk.committed([TopicPartition("in", 0)], 10)[0].offset == 20
        chk.close()

    @test
    def transactions_a_second_producer_fences_the_first(b):
        from confluent_kafka import KafkaException
        _create(b, "z", 1)
        old = _producer(b, "zombie")
        old.begin_transaction()
        old.produce("z", value="zombie")
        old.flush(30)
        new = _producer(b, "zombie")  # aborts the old one's open transaction, bumps the epoch
        new.begin_transaction()
        new.produce("z", value="fresh")
        new.commit_transaction(30)
        try:
            old.produce("z", value="zombie-2")
            old.commit_transaction(15)
            raise AssertionError("the fenced producer committed")
        except KafkaException as e:
            assert e.args[0].fatal() or "fenced" in str(e).lower() or e.args[0].txn_requires_abort(), e
        assert _read_all(b, "z", "read_committed", 1) == ["fresh"]

    @test
    def transactions_the_coordinator_aborts_a_transaction_past_its_timeout(b):
        from confluent_kafka import KafkaException
        _create(b, "slow", 1)
        p = _producer(b, "slow-1", **{"transaction.timeout.ms": 2000})
        p.begin_transaction()
        p.produce("slow", value="late")
        p.flush(30)
        time.sleep(5)  # the coordinator's 1 s timer aborts it and bumps the epoch
        try:
            p.commit_transaction(15)
            raise AssertionError("a timed-out transaction committed")
        except KafkaException:
            pass
        assert _read_all(b, "slow", "read_committed", 0, timeout=4) == []
        # A new producer with the id works, and its commit is readable past the aborted data.
        q = _producer(b, "slow-1")
        q.begin_transaction()
        q.produce("slow", value="on-time")
        q.commit_transaction(30)
        assert _read_all(b, "slow", "read_committed", 1) == ["on-time"]

    @test
    def transactions_survive_kill_9_of_the_broker(b):
        _create(b, "k", 2)
        p = _producer(b, "k-1", **{"transaction.timeout.ms": 3000})
        p.begin_transaction()
        for i in range(10):
            p.produce("k", value=f"ok{i}", partition=i % 2)
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(10):
            p.produce("k", value=f"open{i}", partition=i % 2)
        p.flush(30)
        b.restart(hard=True)
        # The open transaction is held back after the restart, then aborted by its timeout.
        assert _read_all(b, "k", "read_committed", 10, timeout=8) == sorted(f"ok{i}" for i in range(10))
        time.sleep(4)
        q = _producer(b, "k-1")
        q.begin_transaction()
        q.produce("k", value="after", partition=1)
        q.commit_transaction(30)
        want = sorted([f"ok{i}" for i in range(10)] + ["after"])
        assert _read_all(b, "k", "read_committed", 11) == want
        assert len(_read_all(b, "k", "read_uncommitted", 21)) == 21

    @test
    def transactions_kafka_python_and_aiokafka_producers(b):
        import asyncio
        from kafka import KafkaProducer
        _create(b, "kp", 1)
        kp = KafkaProducer(bootstrap_servers=b.kafka, transactional_id="kp-1")
        kp.init_transactions()
        kp.begin_transaction()
        kp.send("kp", b"kafka-python-commit")
        kp.commit_transaction()
        kp.begin_transaction()
        kp.send("kp", b"kafka-python-abort")
        kp.flush()
        kp.abort_transaction()
        kp.close()

        async def aio():
            from aiokafka import AIOKafkaProducer
            ap = AIOKafkaProducer(bootstrap_servers=b.kafka, transactional_id="aio-1")
            await ap.start()
            try:
                async with ap.transaction():
                    await ap.send_and_wait("kp", b"aiokafka-commit")
                await ap.begin_transaction()
                await ap.send_and_wait("kp", b"aiokafka-abort")
                await ap.abort_transaction()
            finally:
                await ap.stop()

        asyncio.run(aio())
        assert _read_all(b, "kp", "read_committed", 2) == ["aiokafka-commit", "kafka-python-commit"]
        assert len(_read_all(b, "kp", "read_uncommitted", 4)) == 4

    @test
    def transactions_http_reads_groups_and_the_bus_see_committed_events_only(b):
        import json, urllib.request
        _create(b, "src", 1)
        _create(b, "copy", 1)
        # A subscription copying every event of "src" to "copy", and an HTTP group consumer.
        b.post("/subscriptions", {"name": "copier", "sources": ["src"], "target": {"topic": "copy"}})
        c = b.post("/groups/hg/consumers", {"topics": ["src"], "start": "earliest"})
        p = _producer(b, "bus-1")
        for i in range(4):
            p.begin_transaction()
            p.produce("src", value=f"v{i}")
            if i % 2:
                p.abort_transaction(30)
            else:
                p.commit_transaction(30)
        # The partition ends in a marker: a page read from the start goes on past it.
        page = b.get("/topics/src/partitions/0/events?limit=100")
        assert [e["value"] for e in page["events"]] == ["v0", "v2"], page
        assert page["next_offset"] == page["high_watermark"], page
        after = b.get(f"/topics/src/partitions/0/events?offset={page['next_offset']}")
        assert after["events"] == [], after
        # The HTTP group consumer gets the committed events once, then nothing (no spin on markers).
        got = []
        deadline = time.time() + 20
        while len(got) < 2 and time.time() < deadline:
            polled = b.get(f"/groups/hg/consumers/{c['consumer_id']}/events?wait_ms=500")
            got += [e["value"] for e in polled["events"]]
        assert got == ["v0", "v2"], got
        polled = b.get(f"/groups/hg/consumers/{c['consumer_id']}/events?wait_ms=1000")
        assert polled["events"] == [], polled
        # The bus delivered only the committed ones, never a marker.
        deadline = time.time() + 20
        while time.time() < deadline:
            copied = b.get("/topics/copy/partitions/0/events?limit=100")["events"]
            if len(copied) >= 2:
                break
            time.sleep(0.2)
        time.sleep(1)
        copied = b.get("/topics/copy/partitions/0/events?limit=100")["events"]
        assert [e["value"] for e in copied] == ["v0", "v2"], copied

