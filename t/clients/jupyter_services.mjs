// jupyter_services.mjs BASE TOKEN: JupyterLab's own client library (npm
// @jupyterlab/services) against BASE as JupyterLab drives a Jupyter
// server: the kernel specs, a kernel started by KernelManager, its info,
// executes with their iopub messages (streams, results, display data,
// errors), input() answered on stdin, an interrupt and a restart over
// REST, shutdown.
// Prints what the library reported, as JSON.
import {load} from './npm.mjs'

// the library logs its connections on stdout, which carries our answer
console.log = console.debug = console.info = console.error

const {KernelManager, KernelSpecManager, ServerConnection, SessionManager} =
    await load('@jupyterlab/services')
const [base, token] = process.argv.slice(2)

const serverSettings = ServerConnection.makeSettings({
    baseUrl: base, wsUrl: base.replace(/^http/, 'ws'), token,
    appendToken: true,
})

const out = {}

const specs = new KernelSpecManager({serverSettings})
await specs.refreshSpecs()
out.spec = {default: specs.specs.default,
            language: specs.specs.kernelspecs.python3.language}

const manager = new KernelManager({serverSettings})
const kernel = await manager.startNew({name: 'python3'})
out.id = kernel.id

const info = await kernel.info
out.info = {protocol: info.protocol_version,
            language: info.language_info.name}

// one execute: what iopub carried, and the reply
async function execute(code, onStdin) {
    const future = kernel.requestExecute({code, allow_stdin: !!onStdin})
    const iopub = []
    future.onIOPub = (msg) => {
        const c = msg.content
        const m = {type: msg.header.msg_type,
                   parent: msg.parent_header.msg_id ===
                           future.msg.header.msg_id}
        if (m.type === 'status') m.state = c.execution_state
        if (m.type === 'stream') { m.name = c.name; m.text = c.text }
        if (m.type === 'execute_input') m.count = c.execution_count
        if (m.type === 'execute_result' || m.type === 'display_data') {
            m.data = c.data
        }
        if (m.type === 'execute_result') m.count = c.execution_count
        if (m.type === 'error') m.ename = c.ename
        iopub.push(m)
    }
    if (onStdin) {
        future.onStdin = (msg) => onStdin(future, msg)
    }
    const reply = await future.done
    return {iopub, reply: {status: reply.content.status,
                           count: reply.content.execution_count,
                           ename: reply.content.ename}}
}

out.first = await execute('print("hi")\n6 * 7')

// what a front end asks as the user types: Tab, Shift-Tab, Enter
await execute('import os\nalpha_value = 1')
out.complete = (await kernel.requestComplete(
    {code: 'alpha_v', cursor_pos: 7})).content
out.attributes = (await kernel.requestComplete(
    {code: 'x = os.pat', cursor_pos: 10})).content
out.literal = (await kernel.requestComplete(
    {code: "'abc'.up", cursor_pos: 8})).content
out.inspect = (await kernel.requestInspect(
    {code: 'len(', cursor_pos: 4, detail_level: 0})).content
out.isComplete = [
    (await kernel.requestIsComplete({code: 'for i in x:'})).content,
    (await kernel.requestIsComplete({code: 'x = 1'})).content,
    (await kernel.requestIsComplete({code: 'x = )'})).content]
out.history = (await kernel.requestHistory(
    {output: false, raw: true, hist_access_type: 'tail', n: 2})).content
out.display = await execute('display({"text/html": "<b>b</b>"}, raw=True)')
out.error = await execute('1 / 0')
out.input = await execute('x = input("name? ")\nprint("hello", x)',
    (future, msg) => {
        out.prompt = msg.content.prompt
        future.sendInputReply({status: 'ok', value: 'bob'}, msg.header)
    })

// two executes sent at once run in order, as a kernel's queue runs them
const [a, b] = await Promise.all([execute('import time; time.sleep(0.2); 1'),
                                  execute('2')])
out.queued = [a.reply.count, b.reply.count]

// an interrupt over REST, once the code is running
let begun
const running = new Promise((resolve) => { begun = resolve })
const long = kernel.requestExecute({code: 'print("go", flush=True)\n' +
                                          'import time; time.sleep(60)'})
long.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') begun()
}
await running
await kernel.interrupt()
const stopped = await long.done
out.interrupted = {status: stopped.content.status,
                   ename: stopped.content.ename}
out.after = (await execute('x')).iopub
    .filter((m) => m.type === 'execute_result').map((m) => m.data)

// a restart: a new process, the namespace and the count start again
await kernel.restart()
const again = await execute('x')
out.restarted = {reply: again.reply,
                 errors: again.iopub.filter((m) => m.type === 'error')
                     .map((m) => m.ename)}

await kernel.shutdown()
out.shutdown = kernel.isDisposed || kernel.status

// a notebook's session, as JupyterLab opens a notebook: on a new kernel
const sessions = new SessionManager({kernelManager: manager, serverSettings})
const conn = await sessions.startNew({path: 'work/a.ipynb', name: 'a.ipynb',
                                      type: 'notebook',
                                      kernel: {name: 'python3'}})
out.session = {path: conn.path, name: conn.name, type: conn.type,
               kernel: conn.kernel.name}
const sum = conn.kernel.requestExecute({code: '40 + 2'})
let summed = null
sum.onIOPub = (msg) => {
    if (msg.header.msg_type === 'execute_result') {
        summed = msg.content.data['text/plain']
    }
}
await sum.done
out.sessionRun = summed
await conn.setPath('work/b.ipynb')
out.found = (await sessions.findByPath('work/b.ipynb'))?.id === conn.id
out.gone = (await sessions.findByPath('work/a.ipynb')) === undefined
const sessionKernel = conn.kernel.id
await conn.shutdown()
await sessions.refreshRunning()                   // its list, from the server
out.afterShutdown = {
    session: (await sessions.findByPath('work/b.ipynb')) === undefined,
    kernel: sessionKernel}
process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
