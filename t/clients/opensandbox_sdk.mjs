// opensandbox_sdk.mjs BASE KEY: OpenSandbox's own JS SDK (npm
// @alibaba-group/opensandbox), driven against BASE as its users drive an
// execd: the health check, a bash session made in a working directory,
// commands in it (exit codes, a timeout, an interrupt), its deletion, and
// one-shot commands.
// Prints what the SDK reported, as JSON.
import {load} from './npm.mjs'

const {ConnectionConfig, DefaultAdapterFactory} =
    await load('@alibaba-group/opensandbox')
const [base, key] = process.argv.slice(2)

const {commands, health} = new DefaultAdapterFactory().createExecdStack({
    connectionConfig: new ConnectionConfig({domain: base})
        .withTransportIfMissing(),
    execdBaseUrl: base,
    endpointHeaders: {'X-EXECD-ACCESS-TOKEN': key},
})

const out = {}
const text = (execution) => execution.logs.stdout.map((m) => m.text).join('')

out.ping = await health.ping()
const sid = await commands.createSession({workingDirectory: 'work/dir'})
let run = await commands.runInSession(sid, 'pwd; echo hi >&2')
out.pwd = {stdout: text(run), exitCode: run.exitCode}
run = await commands.runInSession(sid, 'false')
out.false = run.exitCode
run = await commands.runInSession(sid, 'sleep 10', {timeoutSeconds: 1})
out.timeout = run.exitCode

// an interrupt while a command runs, once it has begun printing
let started
const begun = new Promise((resolve) => { started = resolve })
const running = commands.runInSession(sid, 'echo go; sleep 30', undefined,
                                      {onStdout: () => started()})
await begun
await commands.interrupt(sid)
run = await running
out.interrupted = {stdout: text(run), exitCode: run.exitCode}
run = await commands.runInSession(sid, 'echo still here')
out.after = text(run)
await commands.deleteSession(sid)

// one-shot commands, each in a session of its own that goes with it
run = await commands.run('echo $A; pwd', {workingDirectory: 'w',
                                          envs: {A: 'x'}})
out.oneShot = {stdout: text(run), exitCode: run.exitCode}
run = await commands.run('exit 4')
out.oneShotExit = run.exitCode
try {
    await commands.runInSession(sid, 'true')
    out.deleted = 'ran'
} catch (e) {
    out.deleted = 'refused'
}
console.log(JSON.stringify(out))
