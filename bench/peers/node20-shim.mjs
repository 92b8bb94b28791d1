// Node 20 lacks Promise.withResolvers (Node 22+), which some of Helia's dependencies call (it-queue, on stop).
// Imported first by helia_read.mjs so it is in place before any dependency module runs.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
