# Installs the real clients the tests drive, when missing: kcat (Debian) and confluent-kafka,
# kafka-python, aiokafka (PyPI). Sourced by test.sh and reliability.sh.

install_clients() {
  if ! command -v kcat >/dev/null; then
    printf '\n== installing kcat (Debian)\n'
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
  fi
  if ! python3 -c 'import confluent_kafka, kafka, aiokafka' 2>/dev/null; then
    printf '\n== installing confluent-kafka, kafka-python and aiokafka (PyPI)\n'
    python3 -m pip install -q --disable-pip-version-check confluent-kafka kafka-python aiokafka
  fi
}
