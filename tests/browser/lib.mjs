// Helpers for the browser tests: headless Chromium (Debian's, driven by playwright-core), a tiny
// sequential test runner, screenshots, sign-in, a console/page-error/CSP watcher and a JSON API
// client.
//
// A spec file is `tests/browser/NAME.test.mjs`: it registers tests with `test(name, fn)` and ends
// with `await run()`. `cargo test -p firebreak --test it browser` starts a fresh `firebreak serve`
// for each spec file and runs `node NAME.test.mjs` with:
//
//   FIREBREAK_URL             http://127.0.0.1:PORT (no trailing slash)
//   FIREBREAK_ADMIN_USER      an admin's username ...
//   FIREBREAK_ADMIN_PASSWORD  ... and password
//   FIREBREAK_TOKEN           an API token of that admin
//   FIREBREAK_TOKENS          JSON {"username": "token", ...}: an API token of every user
//   FIREBREAK_USERS           JSON {"username": "password", ...} of every user created
//   FIREBREAK_USER_ROLES      JSON {"username": "role", ...}
//                             (today: admin/admin, hd/helpdesk, resp/responder, mgr/manager;
//                             an admin alone may not open tickets: use `tokens.resp` for that)
//   FIREBREAK_BROWSER_OUT     where screenshots go (default: <workspace>/target/browser)
//
// `FIREBREAK_BROWSER_SPEC=smoke cargo test -p firebreak --test it browser` runs only the spec
// files whose name contains `smoke`. Optional here: CHROMIUM (the browser binary, default /usr/bin/chromium), FIREBREAK_BROWSER_TEST (run
// only the tests whose name contains this text), FIREBREAK_BROWSER_TEST_TIMEOUT_MS (per test,
// default 120000).
//
// Each test gets a fresh browser context (no cookies) and page, watched: any console error, page
// error or Content Security Policy violation in any page of that context fails the test, unless
// allowed with `watch.allow(/pattern/)`. (A 404 of the browser's own /favicon.ico request is
// not counted.)

import { chromium } from 'playwright-core';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WORKSPACE = fileURLToPath(new URL('../../', import.meta.url));

/** Where screenshots are written: `$FIREBREAK_BROWSER_OUT/<spec>/<name>.png`. */
export const OUT = path.resolve(
  process.env.FIREBREAK_BROWSER_OUT || path.join(WORKSPACE, 'target', 'browser'),
);

/** The running spec's name: `smoke` for `smoke.test.mjs`. */
export const SPEC = path.basename(process.argv[1] || 'spec').replace(/(\.test)?\.m?js$/, '');

const TEST_TIMEOUT_MS = Number(process.env.FIREBREAK_BROWSER_TEST_TIMEOUT_MS || 120_000);

/** What the harness passes in the environment, checked. */
export function config() {
  const need = (name) => {
    const v = process.env[name];
    if (!v) {
      throw new Error(
        `${name} is not set: run the browser tests with \`cargo test -p firebreak --test it browser\``,
      );
    }
    return v;
  };
  const json = (name) => (process.env[name] ? JSON.parse(process.env[name]) : {});
  return {
    base: need('FIREBREAK_URL').replace(/\/+$/, ''),
    admin: { username: need('FIREBREAK_ADMIN_USER'), password: need('FIREBREAK_ADMIN_PASSWORD') },
    token: process.env.FIREBREAK_TOKEN || '',
    tokens: json('FIREBREAK_TOKENS'),
    users: json('FIREBREAK_USERS'),
    roles: json('FIREBREAK_USER_ROLES'),
  };
}

/** Debian's Chromium, headless. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

function slug(name) {
  return (
    String(name)
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 120) || 'page'
  );
}

/** A full-page PNG at `$FIREBREAK_BROWSER_OUT/<spec>/<name>.png`; returns its path. */
export async function shot(page, name) {
  const dir = path.join(OUT, SPEC);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${slug(name)}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Signs in through the form at `${base}/login` and waits for the page that follows (the home
 * page, or the sign-in page again with an error). Returns the final navigation's response.
 */
export async function login(page, base, username, password) {
  await page.goto(`${base.replace(/\/+$/, '')}/login`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.click('button[type=submit]'),
  ]);
  return response;
}

let bindings = 0;

/**
 * Records every console error, page error (uncaught exception) and Content Security Policy
 * violation of a page (or of every page of a browser context). `assertClean()` throws if any
 * happened that no `allow(pattern)` matches.
 */
export function watch(target) {
  const entries = [];
  const allowed = [];
  const record = (kind, text) => entries.push({ kind, text: String(text) });
  const isContext = typeof target.newPage === 'function';

  target.on('console', (msg) => {
    const text = msg.text();
    const loc = msg.location();
    const where = loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : '';
    // the browser's own request for /favicon.ico, not the page's doing
    if (loc && /\/favicon\.ico$/.test(loc.url || '') && /^Failed to load resource/.test(text)) {
      return;
    }
    if (/content security policy/i.test(text)) record('csp', text + where);
    else if (msg.type() === 'error') record('console.error', text + where);
  });
  if (isContext) {
    target.on('weberror', (e) => record('pageerror', e.error()?.stack || e.error()));
  } else {
    target.on('pageerror', (e) => record('pageerror', e?.stack || e));
  }

  // The securitypolicyviolation DOM event as well (it also covers report-only policies).
  const binding = `__firebreakCsp${++bindings}`;
  const ready = target
    .exposeBinding(binding, (_source, v) =>
      record(
        'csp',
        `${v.disposition} violation of ${v.directive}: blocked ${v.blocked || '(inline)'} ` +
          `at ${v.source}:${v.line}${v.sample ? ` sample ${JSON.stringify(v.sample)}` : ''}`,
      ),
    )
    .then(() =>
      target.addInitScript((name) => {
        document.addEventListener(
          'securitypolicyviolation',
          (e) =>
            window[name]?.({
              disposition: e.disposition,
              directive: e.effectiveDirective || e.violatedDirective,
              blocked: e.blockedURI,
              source: e.sourceFile,
              line: e.lineNumber,
              sample: e.sample,
            }),
          true,
        );
      }, binding),
    )
    .catch((e) => record('watch', `could not install the CSP listener: ${e?.message || e}`));

  return {
    entries,
    /** Resolves once the CSP listener is installed (before the next navigation). */
    ready,
    /** Ignore entries whose text matches (a RegExp or a substring). */
    allow(pattern) {
      allowed.push(pattern);
      return this;
    },
    clear() {
      entries.length = 0;
    },
    /** The entries not allowed. */
    problems() {
      return entries.filter(
        (e) =>
          !allowed.some((p) => (p instanceof RegExp ? p.test(e.text) : e.text.includes(p))),
      );
    },
    assertClean() {
      const bad = this.problems();
      if (bad.length) {
        throw new Error(
          `the browser reported ${bad.length} problem(s):\n` +
            bad.map((e) => `  [${e.kind}] ${e.text}`).join('\n'),
        );
      }
    },
  };
}

/**
 * JSON calls to the API with `Authorization: Bearer <token>`. `get/post/put/patch/delete` return
 * the parsed body and throw on a non-2xx status; `request` returns `{status, headers, json, text}`
 * whatever the status.
 */
export function api(base, token) {
  const root = base.replace(/\/+$/, '');
  async function request(method, p, body, headers = {}) {
    const res = await fetch(`${root}${p}`, {
      method,
      headers: {
        accept: 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  }
  async function call(method, p, body) {
    const r = await request(method, p, body);
    if (r.status < 200 || r.status > 299) {
      throw new Error(`${method} ${p}: HTTP ${r.status}: ${r.text.slice(0, 1000)}`);
    }
    return r.json;
  }
  return {
    request,
    get: (p) => call('GET', p),
    post: (p, body = {}) => call('POST', p, body),
    put: (p, body = {}) => call('PUT', p, body),
    patch: (p, body = {}) => call('PATCH', p, body),
    delete: (p) => call('DELETE', p),
  };
}

const tests = [];

/**
 * Registers a test. `fn` receives `{browser, context, page, watch, shot}`: a fresh context and
 * page, `watch` already recording that context (checked when the test ends), `shot(name)` a
 * screenshot of `page`.
 */
export function test(name, fn) {
  tests.push({ name, fn });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function indent(text) {
  return String(text)
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** Runs the registered tests one after another; exits 1 if any failed. */
export async function run() {
  const only = process.env.FIREBREAK_BROWSER_TEST;
  const selected = only ? tests.filter((t) => t.name.includes(only)) : tests;
  console.log(`# ${SPEC}: ${selected.length} test(s)${only ? ` matching ${JSON.stringify(only)}` : ''}`);
  // this spec's screenshots of an earlier run would mislead
  if (!only) await rm(path.join(OUT, SPEC), { recursive: true, force: true });
  let browser;
  let failed = 0;
  for (const t of selected) {
    const started = Date.now();
    let context;
    let page;
    try {
      if (!browser || !browser.isConnected()) browser = await launch();
      context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      context.setDefaultTimeout(30_000);
      context.setDefaultNavigationTimeout(60_000);
      const w = watch(context);
      await w.ready;
      page = await context.newPage();
      await withTimeout(
        Promise.resolve().then(() =>
          t.fn({ browser, context, page, watch: w, shot: (name) => shot(page, name) }),
        ),
        TEST_TIMEOUT_MS,
        t.name,
      );
      w.assertClean();
      console.log(`ok - ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`not ok - ${t.name} (${Date.now() - started} ms)`);
      console.log(indent(e?.stack || e));
      if (page) {
        const file = await shot(page, `FAILED-${t.name}`).catch(() => null);
        if (file) console.log(`    screenshot: ${file}`);
        console.log(`    url: ${page.url()}`);
      }
    } finally {
      await context?.close().catch(() => {});
    }
  }
  await browser?.close().catch(() => {});
  console.log(`# ${SPEC}: ${selected.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
