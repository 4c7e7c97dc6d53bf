// npm.mjs: load a package the test suite installed under build/npm
// (helpers.npm_install), wherever this script lives.
import {createRequire} from 'node:module'
import {pathToFileURL} from 'node:url'

export async function load(name) {
    const require = createRequire(process.env.PYREPL_NPM + '/')
    return import(pathToFileURL(require.resolve(name)).href)
}
