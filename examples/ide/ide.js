// ide.js: PyREPL's web IDE.  One session per page, kept across reloads
// (its id in localStorage, with the cells' code); runs go over the
// session's WebSocket (GET /session/{id}/ws, the key as ?token=) one at
// a time, in the order they were asked for; everything else is plain
// HTTP with the key as a Bearer token.  Output streams into the cell as
// the code writes it; rich output (display data, results) shows images
// as images and HTML in a sandboxed frame that runs no script.
'use strict'

const $ = (id) => document.getElementById(id)
const store = {
    get: (name, dflt) => JSON.parse(localStorage.getItem('pyrepl.' + name)) ?? dflt,
    set: (name, value) => localStorage.setItem('pyrepl.' + name, JSON.stringify(value)),
}

const ide = {
    session: null,          // {id, language}
    ready: null,            // the last attempt to attach to a session
    socket: null,
    cells: [],
    queue: [],              // cells waiting to run, first one running
    running: null,          // {cell, id} of the run going on
    seq: 0,
}

// HTTP ------------------------------------------------------------------------

async function api(method, path, body) {
    const headers = {}
    const key = $('key').value
    if (key) headers['Authorization'] = 'Bearer ' + key
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    const r = await fetch(path, {method, headers,
                                 body: body === undefined ? undefined : JSON.stringify(body)})
    const text = await r.text()
    const data = text ? JSON.parse(text) : null
    if (!r.ok) {
        const e = new Error((data && data.error && data.error.message) || r.statusText)
        e.status = r.status
        throw e
    }
    return data
}

function status(text, isError) {
    $('status').textContent = text
    $('status').className = isError ? 'error' : ''
}

// the session -----------------------------------------------------------------

async function attach() {
    const kept = store.get('session', null)
    if (kept) {
        try {
            const s = await api('GET', '/session/' + kept.id)
            return use({id: s.session_id, language: s.language})
        } catch (e) {
            if (e.status === 401) throw e          // the key, not the session
        }
    }
    const s = await api('POST', '/session', {language: $('language').value})
    return use({id: s.session_id, language: s.language})
}

function use(session) {
    ide.session = session
    store.set('session', session)
    $('language').value = session.language
    for (const cell of ide.cells) cell.setMode(session.language)
    status('session ' + session.id + ' (' + session.language + ')')
    connect()
    refreshVariables()
    refreshCheckpoints()
}

async function restart() {
    const old = ide.session
    ide.session = null
    if (ide.socket) ide.socket.close()
    finishAll('the session was restarted')
    if (old) api('DELETE', '/session/' + old.id).catch(() => {})
    store.set('session', null)
    for (const cell of ide.cells) cell.clear()
    try {
        await attach()
    } catch (e) {
        failed(e)
    }
}

function failed(e) {
    if (e.status === 401) {
        status('This server wants an API key: enter it above.', true)
        $('key').focus()
    } else {
        status(e.message, true)
    }
}

// the WebSocket ---------------------------------------------------------------

function connect() {
    const session = ide.session
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
    const key = $('key').value
    const ws = new WebSocket(scheme + location.host + '/session/' + session.id +
                             '/ws' + (key ? '?token=' + encodeURIComponent(key) : ''))
    ide.socket = ws
    ws.onopen = () => next()
    ws.onmessage = (m) => event(JSON.parse(m.data))
    ws.onclose = () => {
        if (ide.socket !== ws) return
        ide.socket = null
        // a run cut off by the socket is over; the session goes on
        finishAll('the connection was lost')
        if (ide.session === session) setTimeout(connect, 1000)
    }
}

function send(message) {
    if (ide.socket && ide.socket.readyState === WebSocket.OPEN) {
        ide.socket.send(JSON.stringify(message))
        return true
    }
    return false
}

function run(cell) {
    if (ide.queue.includes(cell)) return
    cell.queued()
    ide.queue.push(cell)
    if (!ide.running) next()
}

function next() {
    if (ide.running || !ide.queue.length) return
    const cell = ide.queue[0]
    const id = 'run-' + (++ide.seq)
    if (!send({type: 'run', id, code: cell.code()})) return    // on open
    ide.running = {cell, id}
    cell.start()
}

function finishAll(why) {
    if (ide.running) ide.running.cell.end(null, why)
    for (const cell of ide.queue.slice(1)) cell.end(null, null)
    ide.running = null
    ide.queue = []
}

function event(m) {
    const run = ide.running
    if (m.type === 'error' && m.error) {                 // a refused message
        if (run && m.id === run.id) done(run, null, m.error.message)
        else status(m.error.message, true)
        return
    }
    if (!run || m.id !== run.id) return
    const cell = run.cell
    switch (m.type) {
    case 'stdout':
    case 'stderr':
        cell.text(m.type, m.text)
        break
    case 'display_data':
        cell.bundle(m.data)
        break
    case 'result':
        cell.bundle(m.data)
        break
    case 'error':
        cell.error(m)
        break
    case 'input_request':
        cell.ask(m, (value) => send({type: 'input', value, request_id: m.request_id}))
        break
    case 'execution_complete':
        done(run, m)
        break
    }
}

function done(run, complete, why) {
    run.cell.end(complete, why)
    ide.queue.shift()
    ide.running = null
    refreshVariables()
    next()
}

// the side panel: variables, checkpoints ----------------------------------------

async function refreshVariables() {
    const vars = $('vars'), defs = $('defs')
    vars.textContent = ''
    defs.textContent = ''
    if (!ide.session || ide.session.language !== 'python') return
    let ns
    try {
        ns = await api('GET', '/session/' + ide.session.id + '/namespace')
    } catch (e) {
        return
    }
    for (const v of ns.variables) {
        const tr = vars.insertRow()
        tr.insertCell().textContent = v.name
        tr.insertCell().textContent = v.type
        tr.insertCell().textContent = v.size_bytes + ' B'
    }
    for (const d of ns.definitions) {
        const li = document.createElement('li')
        li.textContent = d.kind + ' ' + d.name
        li.title = d.source
        defs.append(li)
    }
}

async function refreshCheckpoints(chosen) {
    const list = $('checkpoints')
    let answer
    try {
        answer = await api('GET', '/session/checkpoints')
    } catch (e) {
        return
    }
    list.textContent = ''
    for (const c of answer.checkpoints) {
        const when = new Date(c.created_at * 1000).toLocaleTimeString()
        list.add(new Option(when + ' ' + c.checkpoint_id.slice(0, 8), c.checkpoint_id))
    }
    if (chosen) list.value = chosen
}

async function checkpoint() {
    try {
        const c = await api('POST', '/session/' + ide.session.id + '/checkpoint')
        status('checkpoint ' + c.checkpoint_id + ' (' + c.size_bytes + ' bytes)')
        refreshCheckpoints(c.checkpoint_id)
    } catch (e) {
        failed(e)
    }
}

async function restore() {
    const id = $('checkpoints').value
    if (!id) return
    try {
        const r = await api('POST', '/session/' + ide.session.id + '/restore',
                            {checkpoint_id: id})
        status('restored ' + r.restored.length + ' names from ' + id)
        refreshVariables()
    } catch (e) {
        failed(e)
    }
}

// cells -----------------------------------------------------------------------

function Cell(code) {
    const root = document.createElement('div')
    root.className = 'cell'
    const prompt = document.createElement('div')
    prompt.className = 'prompt'
    prompt.textContent = '[ ]:'
    const input = document.createElement('div')
    input.className = 'input'
    const remove = document.createElement('button')
    remove.className = 'remove'
    remove.textContent = '\u00d7'
    remove.title = 'Delete this cell'
    const output = document.createElement('div')
    output.className = 'output'
    root.append(prompt, input, remove, output)

    const cell = {root}
    let editor = null, area = null, last = null

    if (window.CodeMirror) {
        editor = CodeMirror(input, {value: code, mode: mode(ide.session),
                                    lineNumbers: false, matchBrackets: true,
                                    indentUnit: 4, viewportMargin: Infinity,
                                    extraKeys: {'Shift-Enter': () => runAndMove(cell),
                                                'Ctrl-Enter': () => run(cell),
                                                'Tab': (cm) => cm.execCommand(
                                                    cm.somethingSelected() ? 'indentMore'
                                                                           : 'insertSoftTab')}})
        editor.on('changes', save)
    } else {
        area = document.createElement('textarea')
        area.value = code
        area.rows = Math.max(1, code.split('\n').length)
        area.spellcheck = false
        area.addEventListener('input', () => {
            area.rows = Math.max(1, area.value.split('\n').length)
            save()
        })
        area.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && (e.shiftKey || e.ctrlKey)) {
                e.preventDefault()
                if (e.shiftKey) runAndMove(cell)
                else run(cell)
            }
        })
        input.append(area)
    }
    remove.onclick = () => removeCell(cell)

    cell.code = () => editor ? editor.getValue() : area.value
    cell.focus = () => editor ? editor.focus() : area.focus()
    cell.setMode = (language) => editor && editor.setOption('mode', mode({language}))
    cell.clear = () => {
        output.textContent = ''
        prompt.textContent = '[ ]:'
        last = null
    }
    cell.queued = () => {
        cell.clear()
        prompt.textContent = '[*]:'
        root.classList.add('queued')
    }
    cell.start = () => {
        root.classList.remove('queued')
        root.classList.add('running')
    }
    cell.text = (stream, text) => {
        if (!last || last.dataset.stream !== stream) {
            last = document.createElement('pre')
            last.className = stream
            last.dataset.stream = stream
            output.append(last)
        }
        last.textContent += text
    }
    cell.bundle = (data) => {
        last = null
        output.append(render(data))
    }
    cell.error = (e) => {
        last = null
        const pre = document.createElement('pre')
        pre.className = 'error'
        pre.textContent = (e.traceback && e.traceback.length)
            ? e.traceback.map((l) => l.endsWith('\n') ? l : l + '\n').join('')
            : e.ename + ': ' + e.evalue
        output.append(pre)
    }
    cell.ask = (request, answer) => {
        last = null
        const form = document.createElement('form')
        form.className = 'ask'
        const label = document.createElement('label')
        label.textContent = request.prompt
        const field = document.createElement('input')
        field.type = request.password ? 'password' : 'text'
        field.autocomplete = 'off'
        label.append(field)
        form.append(label)
        const was = document.activeElement      // the focus goes back there
        form.onsubmit = (e) => {
            e.preventDefault()
            answer(field.value)
            if (was && was.isConnected) was.focus()
            const echo = document.createElement('pre')
            echo.className = 'stdout answered'
            echo.textContent = request.prompt + (request.password ? '' : field.value) + '\n'
            form.replaceWith(echo)
        }
        output.append(form)
        field.focus()
    }
    cell.end = (complete, why) => {
        root.classList.remove('running', 'queued')
        for (const form of output.querySelectorAll('form.ask')) form.remove()
        if (complete) {
            prompt.textContent = '[' + complete.execution_count + ']:'
            root.dataset.status = complete.status
        } else {
            prompt.textContent = '[ ]:'
        }
        if (why) {
            const note = document.createElement('div')
            note.className = 'note'
            note.textContent = why
            output.append(note)
        }
    }
    return cell
}

function mode(session) {
    return session && session.language === 'bash' ? 'shell' : 'python'
}

// one output of a MIME bundle: an image, HTML in a frame that runs no
// script (allow-same-origin alone lets this page size it), else text
function render(data) {
    for (const type of ['image/png', 'image/jpeg']) {
        if (data[type]) {
            const img = document.createElement('img')
            img.src = 'data:' + type + ';base64,' + data[type]
            return img
        }
    }
    if (data['image/svg+xml']) {
        const img = document.createElement('img')
        img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(data['image/svg+xml'])
        return img
    }
    if (data['text/html']) {
        const frame = document.createElement('iframe')
        frame.className = 'html'
        frame.setAttribute('sandbox', 'allow-same-origin')
        frame.srcdoc = '<!DOCTYPE html><style>body{margin:0;font:13px sans-serif}' +
                       'table{border-collapse:collapse}td,th{padding:2px 8px;' +
                       'border-bottom:1px solid #ddd}</style>' + data['text/html']
        frame.onload = () => {
            frame.style.height = (frame.contentDocument.body.scrollHeight + 4) + 'px'
        }
        return frame
    }
    const pre = document.createElement('pre')
    pre.className = 'result'
    pre.textContent = data['text/plain'] ?? ''
    return pre
}

function addCell(code, after) {
    const cell = Cell(code || '')
    const at = after ? ide.cells.indexOf(after) + 1 : ide.cells.length
    ide.cells.splice(at, 0, cell)
    const before = ide.cells[at + 1]
    $('notebook').insertBefore(cell.root, before ? before.root : null)
    save()
    return cell
}

function removeCell(cell) {
    if (ide.queue.includes(cell)) return
    ide.cells.splice(ide.cells.indexOf(cell), 1)
    cell.root.remove()
    if (!ide.cells.length) addCell('').focus()
    save()
}

function runAndMove(cell) {
    run(cell)
    const i = ide.cells.indexOf(cell)
    const nextCell = ide.cells[i + 1] || addCell('', cell)
    nextCell.focus()
}

function save() {
    store.set('cells', ide.cells.map((c) => c.code()))
}

// the page --------------------------------------------------------------------

function start() {
    $('key').value = store.get('key', '')
    $('key').onchange = () => {
        store.set('key', $('key').value)
        // the key asked for: after the attempt under way, one with it,
        // then on to the first cell
        ide.ready = ide.ready.catch(() => {})
            .then(() => ide.session ? null : attach())
        ide.ready.then(() => ide.cells[0].focus(), failed)
    }
    $('language').onchange = () => {
        if (!ide.session || ide.session.language !== $('language').value) {
            if (ide.session) ide.session.language = $('language').value
            restart()
        }
    }
    $('interrupt').onclick = () => send({type: 'interrupt'})
    $('restart').onclick = () => restart()
    $('checkpoint').onclick = () => checkpoint()
    $('restore').onclick = () => restore()
    $('add').onclick = () => addCell('', ide.cells[ide.cells.length - 1]).focus()

    for (const code of store.get('cells', [''])) addCell(code)
    ide.cells[0].focus()

    ide.ready = attach()
    ide.ready.catch(failed)
}

start()
