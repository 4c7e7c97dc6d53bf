// sse_reconnect.mjs URL CODE: run CODE with the npm "eventsource" package,
// as a browser's EventSource would (POST through its fetch option), and
// let it reconnect as it does when a stream ends.  Prints, as JSON, the
// stdout texts seen, how many times it opened a stream, and whether it
// stopped on its own (readyState CLOSED); gives up after 3 opens.
import {load} from './npm.mjs'

const {EventSource} = await load('eventsource')
const [url, code] = process.argv.slice(2)
const seen = {stdout: [], opens: 0, closed: false}

const es = new EventSource(url, {
    fetch: (input, init) => fetch(input, {
        ...init,
        method: 'POST',
        headers: {...init.headers, 'Content-Type': 'application/json'},
        body: JSON.stringify({code}),
    }),
})

function done() {
    es.close()
    console.log(JSON.stringify(seen))
}

es.addEventListener('open', () => {
    if (++seen.opens > 3) {
        done()
    }
})
es.addEventListener('stdout', (e) => seen.stdout.push(JSON.parse(e.data).text))
es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
        seen.closed = true
        done()
    }
})
