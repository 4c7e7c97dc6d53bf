// opensandbox_background.mjs BASE KEY: OpenSandbox's own JS SDK (npm
// @alibaba-group/opensandbox) driving background commands against BASE as
// its users do: commands.run(..., {background: true}), then
// getCommandStatus and getBackgroundCommandLogs by the id the run's init
// gave, and commands.interrupt.  Prints what the SDK reported, as JSON.
import {load} from './npm.mjs'

const {ConnectionConfig, DefaultAdapterFactory} =
    await load('@alibaba-group/opensandbox')
const [base, key] = process.argv.slice(2)

const {commands} = new DefaultAdapterFactory().createExecdStack({
    connectionConfig: new ConnectionConfig({domain: base})
        .withTransportIfMissing(),
    execdBaseUrl: base,
    endpointHeaders: {'X-EXECD-ACCESS-TOKEN': key},
})

// the API has no event for a command's end or output: its users poll
const pause = () => new Promise((resolve) => setTimeout(resolve, 50))

async function until(what, test) {
    for (let i = 0; i < 400; i++) {
        const got = await what()
        if (test(got)) {
            return got
        }
        await pause()
    }
    throw new Error('gave up waiting')
}

const out = {}

// one that ends by itself, in its own directory and environment
let run = await commands.run('echo $B; pwd; echo err >&2; exit 3',
                             {background: true, workingDirectory: 'bg',
                              envs: {B: 'y'}})
const done = run.id
out.launch = {id: done, exitCode: run.exitCode ?? null,
              complete: run.complete != null}
let st = await until(() => commands.getCommandStatus(done),
                     (s) => !s.running)
out.done = {id: st.id, content: st.content, exitCode: st.exitCode,
            error: st.error, started: st.startedAt instanceof Date,
            finished: st.finishedAt instanceof Date}
let logs = await commands.getBackgroundCommandLogs(done)
out.logs = logs
out.again = await commands.getBackgroundCommandLogs(done, logs.cursor)

// one that runs until it is interrupted, read as it goes
run = await commands.run('echo first; sleep 60; echo never',
                         {background: true})
const long = run.id
logs = await until(() => commands.getBackgroundCommandLogs(long),
                   (l) => l.content === 'first\n')
out.running = await commands.getCommandStatus(long)
await commands.interrupt(long)
st = await until(() => commands.getCommandStatus(long), (s) => !s.running)
out.interrupted = {exitCode: st.exitCode,
                   rest: (await commands.getBackgroundCommandLogs(
                       long, logs.cursor)).content}

// one past its timeout
run = await commands.run('sleep 60', {background: true, timeoutSeconds: 1})
st = await until(() => commands.getCommandStatus(run.id), (s) => !s.running)
out.timedOut = st.exitCode

try {
    await commands.getCommandStatus('0'.repeat(32))
    out.unknown = 'answered'
} catch (e) {
    out.unknown = 'refused'
}
out.ids = [done, long, run.id]
console.log(JSON.stringify(out))
