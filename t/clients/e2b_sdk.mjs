// e2b_sdk.mjs BASE [KEY]: E2B's own code interpreter SDK (npm
// @e2b/code-interpreter), driven against BASE as its users drive a
// self-hosted sandbox: Sandbox.connect in debug mode with sandboxUrl, then
// runCode with callbacks, results, errors, contexts, envs, bash, a
// client-side timeout and the run right after it.  With KEY, the sandbox
// carries it as E2B's access tokens, which the SDK sends on its calls.
// Prints what the SDK reported, as JSON.
import {load} from './npm.mjs'

const {Sandbox} = await load('@e2b/code-interpreter')
const [base, key] = process.argv.slice(2)

const sbx = await Sandbox.connect('pyrepl', {debug: true, sandboxUrl: base})
if (key) {
    // what E2B's API hands a connecting SDK, which sends them on each call
    Object.assign(sbx, {envdAccessToken: key, trafficAccessToken: key})
}

const out = {}
const errorOf = async (promise) => {
    try {
        await promise
        return null
    } catch (e) {
        return {name: e.constructor.name, message: e.message}
    }
}

// output while the code runs: each line with when it came
const started = Date.now()
const lines = []
let exec = await sbx.runCode(
    "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')",
    {onStdout: (m) => lines.push({line: m.line, at: Date.now() - started})})
out.streamed = {lines, stdout: exec.logs.stdout, ended: Date.now() - started}

// results: the value, a display()ed plot, HTML
exec = await sbx.runCode('x = 41\nx + 1')
out.value = {text: exec.text, count: exec.executionCount,
             main: exec.results.map((r) => r.isMainResult)}
exec = await sbx.runCode([
    'import matplotlib.pyplot as plt',
    'plt.plot([1, 2, 3], [1, 4, 9])',
    'plt.show()',
].join('\n'))
out.plot = exec.results.map((r) => ({formats: r.formats(), main: r.isMainResult,
                                     png: (r.png || '').slice(0, 8)}))
exec = await sbx.runCode([
    'from IPython.display import HTML, display',
    "display(HTML('<b>bold</b>'))",
    'import pandas as pd',
    "pd.DataFrame({'a': [1, 2]})",
].join('\n'))
out.html = exec.results.map((r) => ({html: r.html, text: r.text,
                                     main: r.isMainResult}))

// an error
exec = await sbx.runCode('1 / 0')
out.error = {name: exec.error.name, value: exec.error.value,
             traceback: exec.error.traceback}
const errors = []
await sbx.runCode('undefined_name', {onError: (e) => errors.push(e.name)})
out.onError = errors

// contexts: each its own namespace
const a = await sbx.createCodeContext()
const b = await sbx.createCodeContext({language: 'python', cwd: '/tmp'})
await sbx.runCode('y = "in a"', {context: a})
exec = await sbx.runCode('y', {context: a})
out.inA = exec.text
exec = await sbx.runCode('import os\ny', {context: b})
out.inB = exec.error && exec.error.name
out.contexts = {a, b, listed: (await sbx.listCodeContexts()).map((c) => c.id)}
exec = await sbx.runCode('os.getcwd()', {context: b})
out.cwdB = exec.text
await sbx.runCode('z = 1', {context: a})
await sbx.restartCodeContext(a)
exec = await sbx.runCode('z', {context: a})
out.afterRestart = exec.error && exec.error.name
await sbx.removeCodeContext(b)
out.removed = await errorOf(sbx.runCode('1', {context: b}))
out.listedAfter = (await sbx.listCodeContexts()).map((c) => c.id)

// envs for one run
exec = await sbx.runCode('import os\nos.environ.get("FOO")',
                         {envs: {FOO: 'bar'}})
out.env = exec.text
exec = await sbx.runCode('os.environ.get("FOO")')
out.envAfter = exec.text

// bash
exec = await sbx.runCode('echo $((20 + 22)) $FOO', {language: 'bash',
                                                   envs: {FOO: 'baz'}})
out.bash = exec.logs.stdout.join('')
exec = await sbx.runCode('echo $FOO; false', {language: 'bash'})
out.bashAfter = {stdout: exec.logs.stdout.join(''),
                 error: exec.error && exec.error.name}
const sh = await sbx.createCodeContext({language: 'bash'})
exec = await sbx.runCode('echo in bash context', {context: sh})
out.bashContext = {language: sh.language, stdout: exec.logs.stdout.join('')}
out.otherLanguage = await errorOf(sbx.runCode('1', {language: 'r'}))

// a client-side timeout, then a run at once in the same context
await sbx.runCode('kept = "still here"')
out.timeout = await errorOf(sbx.runCode(
    "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
    {timeoutMs: 1000}))
exec = await sbx.runCode('kept')
out.afterTimeout = {text: exec.text, error: exec.error && exec.error.name}

console.log(JSON.stringify(out))
// the SDK leaves the request timer of a call that failed (60 s) running
process.exit(0)
