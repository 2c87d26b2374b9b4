// Live updates: pages refresh their lists when the server's live stream (/live) says something
// of their kind changed: the ticket list, the event queue (held while events are selected), a
// ticket's timeline (the log form keeps what is being typed). No reload, no polling interval.

import assert from 'node:assert/strict';
import { api, config, login, run, test } from './lib.mjs';

const { base, tokens, users } = config();
const id = Date.now().toString(36);

/** Resolves with the page's `/live` response (its head: the stream is open). */
function streamOpened(page) {
  return page.waitForResponse((r) => new URL(r.url()).pathname === '/live');
}

async function ingest(sid, title) {
  const line = JSON.stringify({
    timestamp: '2026-12-06T08:00:00.000000+0000',
    event_type: 'alert',
    src_ip: `198.51.100.${sid % 200}`,
    dest_ip: '10.1.2.3',
    proto: 'TCP',
    alert: { signature_id: sid, signature: title, severity: 2, category: 'Misc activity' },
  });
  const res = await fetch(`${base}/api/v1/ingest/ndjson?format=eve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.hd}`, 'content-type': 'application/x-ndjson' },
    body: `${line}\n`,
  });
  assert.equal(res.status, 200, await res.text());
}

test('ticket list: a ticket created through the API appears without a reload within 3 s', async ({ page, shot }) => {
  await login(page, base, 'resp', users.resp);
  const opened = streamOpened(page);
  await page.goto(`${base}/tickets`);
  const live = await opened;
  assert.equal(live.status(), 200);
  assert.match(live.headers()['content-type'], /^text\/event-stream/);
  await page.evaluate(() => { window.__samePage = true; });
  const title = `Arrives live ${id}`;
  assert.equal(await page.locator('#ticket-rows tr', { hasText: title }).count(), 0);
  const t0 = Date.now();
  await api(base, tokens.resp).post('/api/v1/tickets', { title, severity: 'high' });
  await page.locator('#ticket-rows tr', { hasText: title }).waitFor({ timeout: 3_000 });
  const ms = Date.now() - t0;
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page was not reloaded');
  console.log(`# live: the new ticket's row was on the page ${ms} ms after the API call`);
  await shot('ticket-list-live-row');
});

test('event queue: a new event appears live, but not while events are selected', async ({ page, shot }) => {
  await ingest(9_400_001, `First live event ${id}`);
  await login(page, base, 'hd', users.hd);
  const opened = streamOpened(page);
  await page.goto(`${base}/events`);
  await opened;
  const first = page.locator('#event-rows tr', { hasText: `First live event ${id}` });
  await first.locator('input[type=checkbox]').check();
  await page.evaluate(() => { window.__samePage = true; });

  // a selection holds the refresh: the page asks for it, and waits
  await ingest(9_400_002, `Second live event ${id}`);
  await page.waitForFunction(() => document.getElementById('event-rows').fbLivePending === true, null, { timeout: 3_000 });
  assert.equal(await page.locator('#event-rows tr', { hasText: `Second live event ${id}` }).count(), 0);
  assert.ok(await first.locator('input[type=checkbox]').isChecked(), 'the selection is kept');
  await shot('event-queue-held-while-selected');

  // let go: it refreshes
  await first.locator('input[type=checkbox]').uncheck();
  await page.locator('#event-rows tr', { hasText: `Second live event ${id}` }).waitFor({ timeout: 3_000 });
  // the counts above the list follow too
  await page.locator('#event-counts', { hasText: 'new: 2' }).waitFor({ timeout: 3_000 });
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page was not reloaded');
  await shot('event-queue-live');
});

test('ticket page: a log entry made elsewhere joins the timeline, the typed entry stays', async ({ page, shot }) => {
  const resp = api(base, tokens.resp);
  const t = await resp.post('/api/v1/tickets', { title: `Timeline live ${id}` });
  await login(page, base, 'resp', users.resp);
  const opened = streamOpened(page);
  await page.goto(`${base}/tickets/${t.number}`);
  await opened;
  await page.fill('#log-text', 'half-typed note');
  await page.evaluate(() => { window.__samePage = true; });
  const text = `Entry from a colleague ${id}`;
  const t0 = Date.now();
  await api(base, tokens.hd).post(`/api/v1/tickets/${t.number}/log`, { text });
  await page.locator('#timeline-list li', { hasText: text }).waitFor({ timeout: 3_000 });
  const ms = Date.now() - t0;
  assert.equal(await page.inputValue('#log-text'), 'half-typed note', 'what was typed is kept');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'log-text', 'focus is kept');
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page was not reloaded');
  console.log(`# live: the log entry was on the ticket page ${ms} ms after the API call`);
  await shot('ticket-timeline-live');
});

test('a page whose session is gone goes to the sign-in page at its next refresh', async ({ page, watch }) => {
  watch.allow(/Failed to load resource: the server responded with a status of 401/);
  await login(page, base, 'resp', users.resp);
  const opened = streamOpened(page);
  await page.goto(`${base}/tickets`);
  await opened;
  // the browser forgets the session; the open stream still says what changed
  await page.context().clearCookies();
  await api(base, tokens.resp).post('/api/v1/tickets', { title: `After sign-out ${id}` });
  await page.waitForURL(/\/login$/, { timeout: 3_000 });
  assert.equal(await page.locator('#ticket-rows').count(), 0);
});

await run();
