// kafkajs 2.2.4 processes for the group-of-3 test in run.py (one process per consumer, so one
// can be killed with SIGKILL):
//   node group3.js member BOOTSTRAP TOPIC GROUP NAME   a group consumer; prints "assigned [p...]"
//       after each rebalance and "msg P OFFSET VALUE" per message; SIGTERM leaves cleanly
//       (consumer.disconnect, then "left")
//   node group3.js produce BOOTSTRAP TOPIC PREFIX COUNT   produces PREFIX-0 ... with keys
// stdout is a pipe, which Node writes synchronously on Linux: a printed line is never lost to a
// SIGKILL.
const { Kafka, logLevel } = require('kafkajs')

const [mode, bootstrap, topic, a, b] = process.argv.slice(2)
const kafka = new Kafka({ clientId: `kjs-${mode}`, brokers: [bootstrap], logLevel: logLevel.NOTHING })

async function member (groupId, name) {
  // Short timeouts keep the test quick: 6 s is busbar's smallest session timeout (Kafka's too).
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 })
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const mine = (e.payload.memberAssignment[topic] || []).slice().sort((x, y) => x - y)
    console.log(`assigned ${JSON.stringify(mine)}`)
  })
  consumer.on(consumer.events.CRASH, (e) => console.log(`crash ${e.payload.error}`))
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      console.log(`msg ${partition} ${message.offset} ${message.value.toString()}`)
    }
  })
  process.on('SIGTERM', async () => {
    await consumer.disconnect()
    console.log('left')
    process.exit(0)
  })
  console.log(`running ${name}`)
}

async function produce (prefix, count) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `${prefix}-${i}` })
  await producer.send({ topic, messages })
  await producer.disconnect()
}

const run = mode === 'member' ? member(a, b) : produce(a, Number(b))
run.catch((e) => { console.error('FAILED: ' + (e.stack || e)); process.exit(1) })
