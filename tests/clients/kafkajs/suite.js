// kafkajs 2.2.4 against busbar: node suite.js BOOTSTRAP. Admin (topics, configs, offsets by time,
// delete records, groups: describe, fetch/set/reset offsets, delete), an idempotent producer with
// keys, headers and tombstones, a consumer group, and recovery from OFFSET_OUT_OF_RANGE after
// DeleteRecords (kafkajs commits -2 / -1 for resets: busbar must store them as Kafka does).
// Prints "ok <step>" per step; exits non-zero on the first failure.
const { Kafka, logLevel } = require('kafkajs')
const assert = require('assert')

const kafka = new Kafka({ clientId: 'kjs-suite', brokers: [process.argv[2]], logLevel: logLevel.NOTHING })
const step = (name) => console.log('ok ' + name)

async function consumeAll (groupId, topic, want, fromBeginning = true) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning })
  const seen = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${groupId}: got ${seen.length} of ${want}`)), 30000)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message)
        if (seen.length >= want) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  return seen
}

async function main () {
  const admin = kafka.admin()
  await admin.connect()

  assert(await admin.createTopics({ topics: [{ topic: 'kjs', numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '3600000' }] }] }))
  assert((await admin.listTopics()).includes('kjs'))
  const meta = await admin.fetchTopicMetadata({ topics: ['kjs'] })
  assert.strictEqual(meta.topics[0].partitions.length, 3)
  await admin.alterConfigs({ resources: [{ type: 2, name: 'kjs', configEntries: [{ name: 'cleanup.policy', value: 'compact,delete' }] }] })
  const cfg = await admin.describeConfigs({ resources: [{ type: 2, name: 'kjs' }], includeSynonyms: false })
  const entries = Object.fromEntries(cfg.resources[0].configEntries.map(e => [e.configName, e.configValue]))
  // AlterConfigs replaces a topic's whole set, as in Kafka: retention.ms is back to its default.
  assert.strictEqual(entries['retention.ms'], '604800000')
  assert.strictEqual(entries['cleanup.policy'], 'compact,delete')
  await admin.createPartitions({ topicPartitions: [{ topic: 'kjs', count: 4 }] })
  step('admin topics and configs')

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const messages = []
  for (let i = 0; i < 200; i++) {
    messages.push({ key: `k${i % 10}`, value: `v${i}`, headers: { n: `${i}`, src: 'kjs' }, partition: 0 })
  }
  messages.push({ key: 'k0', value: null, partition: 0 }) // tombstone
  await producer.send({ topic: 'kjs', messages })
  await producer.disconnect()
  step('idempotent producer with keys, headers and a tombstone')

  const seen = await consumeAll('kjs-g1', 'kjs', 201)
  assert.strictEqual(seen[5].headers.n.toString(), '5')
  assert.strictEqual(seen[200].value, null)
  step('consumer group reads everything back')

  const now = Date.now()
  const byTime = await admin.fetchTopicOffsetsByTimestamp('kjs', now - 3600000)
  assert.strictEqual(byTime.find(p => p.partition === 0).offset, '0')
  const ends = await admin.fetchTopicOffsets('kjs')
  assert.strictEqual(ends.find(p => p.partition === 0).high, '201')
  step('offsets by time and high watermarks')

  const groups = await admin.listGroups()
  assert(groups.groups.some(g => g.groupId === 'kjs-g1'))
  const desc = await admin.describeGroups(['kjs-g1'])
  assert.strictEqual(desc.groups[0].state, 'Empty')
  const committed = await admin.fetchOffsets({ groupId: 'kjs-g1', topics: ['kjs'] })
  assert.strictEqual(committed[0].partitions.find(p => p.partition === 0).offset, '201')
  await admin.setOffsets({ groupId: 'kjs-g1', topic: 'kjs', partitions: [{ partition: 0, offset: '50' }] })
  let again = await admin.fetchOffsets({ groupId: 'kjs-g1', topics: ['kjs'] })
  assert.strictEqual(again[0].partitions.find(p => p.partition === 0).offset, '50')
  // resetOffsets commits -2 (earliest): Kafka stores it; on busbar it used to be refused with
  // INVALID_REQUEST and resetOffsets never settled.
  await admin.resetOffsets({ groupId: 'kjs-g1', topic: 'kjs', earliest: true })
  again = await admin.fetchOffsets({ groupId: 'kjs-g1', topics: ['kjs'] })
  assert.strictEqual(again[0].partitions.find(p => p.partition === 0).offset, '-2')
  step('groups: list, describe, fetch/set/reset offsets')

  // A committed position below the log start (DeleteRecords): the consumer gets
  // OFFSET_OUT_OF_RANGE, commits its reset and carries on from the new log start.
  await admin.setOffsets({ groupId: 'kjs-g2', topic: 'kjs', partitions: [0, 1, 2, 3].map(p => ({ partition: p, offset: '10' })) })
  await admin.deleteTopicRecords({ topic: 'kjs', partitions: [{ partition: 0, offset: '150' }] })
  const low = await admin.fetchTopicOffsets('kjs')
  assert.strictEqual(low.find(p => p.partition === 0).low, '150')
  const rest = await consumeAll('kjs-g2', 'kjs', 51)
  assert.strictEqual(rest[0].offset, '150')
  step('recovery from OFFSET_OUT_OF_RANGE after DeleteRecords')

  await admin.deleteGroups(['kjs-g1', 'kjs-g2'])
  assert(!(await admin.listGroups()).groups.some(g => g.groupId === 'kjs-g1'))
  await admin.deleteTopics({ topics: ['kjs'] })
  assert(!(await admin.listTopics()).includes('kjs'))
  step('delete groups and topics')
  await admin.disconnect()
}

main().catch(e => { console.error('FAILED: ' + (e.stack || e)); process.exit(1) })
