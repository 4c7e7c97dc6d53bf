// A PyREPL client in Node, with the built-in fetch and a WebSocket (the
// runtime's own from Node 22, else Debian's node-ws): it creates a session,
// streams a run's output over Server-Sent Events, answers the code's input()
// and interrupts a long run over the WebSocket, saves a checkpoint and brings
// its state back in a new session, then deletes what it made.
//
// Run the server (util/run) in another terminal, then:
//
//     node examples/clients/pyrepl_client.mjs [BASE_URL]
//
// BASE_URL (or $PYREPL_URL) defaults to http://127.0.0.1:8080; $PYREPL_KEY,
// if set, is sent as "Authorization: Bearer" (and as ?token= on the
// WebSocket).

import { createRequire } from 'node:module';

const BASE = (process.argv[2] ?? process.env.PYREPL_URL
              ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const KEY = process.env.PYREPL_KEY;
const headers = KEY ? { Authorization: `Bearer ${KEY}` } : {};

// what the runs do: print as they go, ask, loop until interrupted, read state
const COUNT = `import time
for i in range(3):
    print(f'tick {i}')
    time.sleep(0.3)
total = 6
total`;
const ASK = "name = input('Your name? ')\nprint(f'Hello, {name}!')";
const LONG = "import time\nprint('working...')\nwhile True: time.sleep(0.1)";
const STATE = "print(f'{name = }, {total = }')";

// Node 22 has a WebSocket of its own; before, Debian's node-ws, which
// Debian installs under /usr/share/nodejs, where import does not look
function webSocketClass() {
    if (globalThis.WebSocket) return globalThis.WebSocket;
    const require = createRequire(import.meta.url);
    for (const name of ['ws', '/usr/share/nodejs/ws']) {
        try { return require(name); } catch { /* the next one */ }
    }
    throw new Error('no WebSocket in this Node: apt-get install node-ws');
}

// One request to the API: its answer (JSON, or the response to stream), or
// an error saying why.
async function api(method, path, body) {
    const r = await fetch(BASE + path, {
        method, headers: { ...headers, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok)
        throw new Error(`${method} ${path}: ${r.status} ${(await r.text()).trim()}`);
    if (r.headers.get('content-type')?.startsWith('text/event-stream')) return r;
    return r.status === 204 ? null : r.json();
}

// Print a run's event as it arrives: output as it is, the rest briefly; the
// run's status once it ended.
function show(event, data) {
    if (event === 'stdout' || event === 'stderr') process.stdout.write(data.text);
    else if (event === 'result') console.log('  result:', data.data['text/plain']);
    else if (event === 'error')
        console.log(`  error: ${data.ename}${data.evalue && ': ' + data.evalue}`);
    else if (event === 'execution_complete') {
        console.log('  run ended:', data.status);
        return data.status;
    }
}

function expect(status, wanted = 'ok') {
    if (status !== wanted) throw new Error(`a run ended ${status}, not ${wanted}`);
}

// Run code over SSE, printing each event as it comes; its status.
async function sseRun(sid, code) {
    const r = await api('POST', `/session/${sid}/run`, { code });
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of r.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {     // one event
            let event, data;
            for (const line of buffer.slice(0, end).split('\n')) {
                if (line.startsWith('event: ')) event = line.slice(7);
                else if (line.startsWith('data: ')) data = line.slice(6);
            }
            buffer = buffer.slice(end + 2);
            const status = data && show(event, JSON.parse(data));
            if (status) return status;
        }
    }
    throw new Error("the run's event stream ended before the run");
}

// Start a run on the WebSocket and print its events as they come; onEvent
// may answer them.  Its status.
function wsRun(ws, code, onEvent = () => {}) {
    return new Promise((resolve, reject) => {
        ws.onmessage = (e) => {
            const msg = JSON.parse(e.data);
            if (msg.type === 'error' && msg.error)           // a refusal
                return reject(new Error(`WebSocket: ${msg.error.message}`));
            onEvent(msg);
            const status = show(msg.type, msg);
            if (status) resolve(status);
        };
        ws.onclose = () => reject(new Error('the WebSocket closed mid-run'));
        ws.send(JSON.stringify({ type: 'run', id: 'r', code }));
    });
}

async function overWebSocket(sid) {
    let url = `${BASE.replace('http', 'ws')}/session/${sid}/ws`;
    if (KEY) url += `?token=${encodeURIComponent(KEY)}`;
    const ws = new (webSocketClass())(url);
    await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = (e) => reject(new Error(
            `the WebSocket did not open${e.message ? `: ${e.message}` : ''}`));
    });
    try {
        console.log('input() answered over the WebSocket:');
        expect(await wsRun(ws, ASK, (msg) => {
            if (msg.type !== 'input_request') return;
            console.log(`  asked '${msg.prompt}', answering 'Ada'`);
            ws.send(JSON.stringify({ type: 'input', value: 'Ada' }));
        }));

        console.log('a long run, interrupted once it printed:');
        let interrupted = false;
        expect(await wsRun(ws, LONG, (msg) => {
            if (msg.type !== 'stdout' || interrupted) return;
            ws.send(JSON.stringify({ type: 'interrupt' }));
            interrupted = true;
        }), 'interrupted');
    } finally {
        ws.close();
    }
}

async function main() {
    const sessions = [];
    let checkpoint;
    try {
        const { session_id: sid } = await api('POST', '/session');
        sessions.push(sid);
        console.log(`session ${sid} created at ${BASE}`);

        console.log('a run streamed over SSE:');
        expect(await sseRun(sid, COUNT));

        await overWebSocket(sid);

        ({ checkpoint_id: checkpoint } =
            await api('POST', `/session/${sid}/checkpoint`));
        console.log(`checkpoint ${checkpoint} saved`);
        const { session_id: restored } = await api('POST', '/session',
                                                   { from_checkpoint: checkpoint });
        sessions.push(restored);
        console.log(`session ${restored} made from it; there:`);
        expect(await sseRun(restored, STATE));
    } finally {
        for (const sid of sessions) {
            await api('DELETE', `/session/${sid}`);
            console.log(`session ${sid} deleted`);
        }
        if (checkpoint) {
            await api('DELETE', `/session/checkpoints/${checkpoint}`);
            console.log(`checkpoint ${checkpoint} deleted`);
        }
    }
}

try {
    await main();
} catch (e) {
    const why = e.cause?.code === 'ECONNREFUSED'
        ? `cannot reach ${BASE} (is util/run running?)`
        : e.cause ? `${e.message}: ${e.cause.message}` : e.message;
    console.error(`pyrepl_client.mjs: ${why}`);
    process.exit(1);
}
