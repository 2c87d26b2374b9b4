// Search from the page header, as an analyst would: the box is labelled and reached by keyboard,
// results link to their ticket and observables, user text never runs, a restricted ticket is not
// found by someone it is hidden from, and a query too short is refused in words.

import assert from 'node:assert/strict';
import { config, login, run, test } from './lib.mjs';

const { base, users } = config();
const run_id = Date.now().toString(36);
const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;

/** The API as a signed-in user (session cookie and CSRF token). */
async function as(name) {
  const res = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: name, password: users[name] }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const csrf = JSON.parse(text).csrf_token;
  const cookie = res.headers.get('set-cookie').split(';')[0];
  return async (method, p, body) => {
    const r = await fetch(`${base}${p}`, {
      method,
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const t = await r.text();
    assert.ok(r.status >= 200 && r.status < 300, `${method} ${p}: ${r.status} ${t}`);
    return t ? JSON.parse(t) : null;
  };
}

test('the header search finds a ticket and its observables, and links them', async ({ page, shot }) => {
  const hd = await as('hd');
  const word = `quokka${run_id}`;
  const t = await hd('POST', '/api/v1/tickets', {
    title: `Beaconing to ${word}.example ${XSS}`,
    description: `Seen from a workstation: hxxps://cdn.${word}[.]example/b.js`,
    severity: 'high',
  });
  await login(page, base, 'hd', users.hd);
  // by keyboard: the header's box has a name, and `/` reaches it
  const box = page.getByRole('searchbox', { name: /search tickets, events and observables/i }).first();
  assert.ok(await box.isVisible());
  await page.keyboard.press('/');
  await box.fill(word);
  await box.press('Enter');
  await page.waitForURL(/\/search\?q=/);
  const results = page.locator('ol.search-results > li');
  await results.first().waitFor();
  const text = await page.locator('ol.search-results').innerText();
  assert.match(text, new RegExp(`${t.number}`), 'the ticket, by its number');
  assert.match(text, new RegExp(`https://cdn\\.${word}\\.example/b\\.js`), 'the URL, refanged');
  assert.match(text, /<img src=x/, 'user text is shown as text');
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'user text ran as script');
  await shot('results');
  await page.getByRole('link', { name: new RegExp(t.number) }).click();
  await page.waitForURL(new RegExp(`/tickets/${t.number}$`));
  assert.match(await page.locator('h1').innerText(), /Beaconing/);
});

test('a ticket restricted from someone is not found by them', async ({ page }) => {
  const hd = await as('hd');
  const word = `wombat${run_id}`;
  const t = await hd('POST', '/api/v1/tickets', {
    title: `Insider case ${word}`,
    severity: 'medium',
    restricted: true,
  });
  assert.equal(t.restricted, true);
  // the responder is not involved and not on its access list
  await login(page, base, 'resp', users.resp);
  await page.goto(`${base}/search?q=${word}`);
  const heading = page.locator('#results-heading');
  await heading.waitFor();
  assert.equal(await heading.innerText(), 'No results');
  // its opener finds it
  await page.context().clearCookies();
  await login(page, base, 'hd', users.hd);
  await page.goto(`${base}/search?q=${word}`);
  await page.locator('#results-heading').waitFor();
  assert.match(await page.locator('ol.search-results').innerText(), new RegExp(t.number));
});

test('a query too short is refused in words', async ({ page, watch, shot }) => {
  // the page is served with status 422, which Chromium logs to the console
  watch.allow(/Failed to load resource: the server responded with a status of 422/);
  await login(page, base, 'hd', users.hd);
  await page.goto(`${base}/search?q=x`);
  const alert = page.locator('[role=alert]');
  await alert.waitFor();
  assert.match(await alert.innerText(), /2/);
  await shot('too-short');
});

await run();
