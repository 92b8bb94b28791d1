// Read the root of a CAR through @helia/verified-fetch with no network: the CAR's blocks go into an in-memory
// blockstore, Helia runs with no routers, no block brokers and no libp2p, so every block comes from memory.
// One warm-up read, then REPS timed reads of the whole body; prints one line of JSON with the best MiB/s.
//
//     node helia_read.mjs FILE.car [--verify] [--reps N]
//
// --verify wraps the blockstore's get so every block is sha256-hashed and checked against its CID once per read.
// Helia hashes blocks it fetches from the network but trusts its own blockstore, so without --verify Helia reads
// the file without hashing anything.

import './node20-shim.mjs'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { CarBlockIterator } from '@ipld/car/iterator'
import { createVerifiedFetchWithHelia } from '@helia/verified-fetch'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { createHeliaLight } from 'helia'

const SHA2_256 = 0x12

function parseArgs (argv) {
  const args = { car: null, verify: false, reps: 3 }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--verify') args.verify = true
    else if (argv[i] === '--reps') args.reps = Number(argv[++i])
    else if (args.car == null) args.car = argv[i]
    else throw new Error(`unexpected argument: ${argv[i]}`)
  }
  if (args.car == null || !(args.reps >= 1)) {
    throw new Error('usage: node helia_read.mjs FILE.car [--verify] [--reps N]')
  }
  return args
}

class VerifyingBlockstore extends MemoryBlockstore {
  hashed = 0;   // blocks hashed since the last reset
  gets = 0;     // gets since the last reset
  verified = new Set();

  // Forget which blocks were verified, so the next read hashes each block again (once).
  reset () {
    this.hashed = 0
    this.gets = 0
    this.verified.clear()
  }

  // A block is stored as a list of chunks and read as a generator of them: gather, hash, compare, then yield.
  // verified-fetch asks for some blocks twice per read (it reads the start of the file to sniff its content type,
  // and the exporter's read-ahead fetches further blocks for that abandoned read); a block already verified
  // since the last reset is not hashed again, so each read hashes every block once, as protoreg does.
  * get (key, options) {
    const chunks = [...super.get(key, options)]
    this.gets++
    const id = key.toString()
    if (!this.verified.has(id)) {
      if (key.multihash.code !== SHA2_256) throw new Error(`unsupported hash 0x${key.multihash.code.toString(16)}`)
      const h = createHash('sha256')
      for (const c of chunks) h.update(c)
      if (!h.digest().equals(key.multihash.digest)) throw new Error(`block ${key} failed verification`)
      this.verified.add(id)
      this.hashed++
    }
    yield * chunks
  }
}

async function loadCar (path, blockstore) {
  const reader = await CarBlockIterator.fromIterable(createReadStream(path))
  const [root] = await reader.getRoots()
  let blocks = 0
  let bytes = 0
  for await (const { cid, bytes: data } of reader) {
    await blockstore.put(cid, data)
    blocks++
    bytes += data.length
  }
  return { root, blocks, bytes }
}

async function readOnce (verifiedFetch, url, digest = null) {
  const t = performance.now()
  // session: false reads straight from helia.blockstore; a session would want a block broker to ask peers.
  const resp = await verifiedFetch(url, { session: false })
  if (resp.status !== 200) throw new Error(`${url}: HTTP ${resp.status}: ${await resp.text()}`)
  let got = 0
  for await (const chunk of resp.body) {
    got += chunk.length
    digest?.update(chunk)
  }
  return { seconds: (performance.now() - t) / 1000, bytes: got }
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const blockstore = args.verify ? new VerifyingBlockstore() : new MemoryBlockstore()
  const loaded = await loadCar(args.car, blockstore)
  // createHeliaLight: no libp2p, no bitswap, no HTTP gateways or delegated routers. A block missing from the
  // blockstore would fail rather than be fetched (there is nothing to fetch it from).
  const helia = createHeliaLight({ blockstore })
  await helia.start()
  const verifiedFetch = await createVerifiedFetchWithHelia(helia)
  const url = `ipfs://${loaded.root}/`
  try {
    // The warm-up read (untimed) also hashes the body, so the driver can check Helia returned the file's bytes.
    const body = createHash('sha256')
    const warm = await readOnce(verifiedFetch, url, body)
    if (args.verify) blockstore.reset()
    const times = []
    let hashed = 0
    let gets = 0
    for (let i = 0; i < args.reps; i++) {
      if (args.verify) {
        hashed += blockstore.hashed
        gets += blockstore.gets
        blockstore.reset()
      }
      const r = await readOnce(verifiedFetch, url)
      if (r.bytes !== warm.bytes) throw new Error(`read ${r.bytes} bytes, the warm-up read ${warm.bytes}`)
      times.push(r.seconds)
    }
    if (args.verify) {
      hashed += blockstore.hashed
      gets += blockstore.gets
    }
    const mib = warm.bytes / 2 ** 20
    process.stdout.write(JSON.stringify({
      reader: args.verify ? 'helia-verifying' : 'helia',
      node: process.version,
      root: loaded.root.toString(),
      blocks: loaded.blocks,
      bytes: warm.bytes,
      body_sha256: body.digest('hex'),
      blocks_hashed_per_read: hashed / args.reps,
      block_gets_per_read: args.verify ? gets / args.reps : null,
      reps: args.reps,
      seconds: times,
      best_mib_s: mib / Math.min(...times),
      median_mib_s: mib / times.slice().sort((a, b) => a - b)[Math.floor(times.length / 2)]
    }) + '\n')
  } finally {
    await verifiedFetch.stop()
    await helia.stop()
  }
}

main().catch(err => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exit(1)
})
