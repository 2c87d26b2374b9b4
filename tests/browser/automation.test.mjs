// Automation in a real browser: a ticket's observables with their intel verdicts (a local
// indicator), a look-up button, the ticket's playbook runs, a manager approving what a run asks,
// a responder starting a playbook from the ticket page; user text in playbook output stays text.

import assert from 'node:assert/strict';
import { api, config, login, run, test } from './lib.mjs';

const { base, token, tokens, users } = config();
const id = Date.now().toString(36);
const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;

test('ticket page: verdicts on observables, a run waiting for a manager, approved in the browser', async ({ page, shot }) => {
  const admin = api(base, token);
  const resp = api(base, tokens.resp);
  // a local indicator for an address the ticket mentions
  const r = await admin.request('POST', `/api/v1/indicators/import?format=stix&source=${encodeURIComponent('browser feed')}`, {
    type: 'bundle', id: 'bundle--6f1e4c8a-0000-4000-8000-00000000000a',
    objects: [{ type: 'indicator', spec_version: '2.1', id: 'indicator--6f1e4c8a-0000-4000-8000-00000000000b', created: '2026-12-01T00:00:00Z', modified: '2026-12-01T00:00:00Z', pattern: "[ipv4-addr:value = '198.51.100.200']", pattern_type: 'stix', valid_from: '2026-12-01T00:00:00Z', confidence: 90, name: 'C2 server' }],
  });
  assert.equal(r.status, 200, r.text);
  // a playbook that logs user text and asks a manager
  const yaml = `name: ask-${id}\ntrigger: manual\nsteps:\n  - id: note\n    add_log: { text: "Automated note about {{ ticket.title }}" }\n  - id: ok\n    approval: { role: manager, prompt: "Isolate the host for {{ ticket.number }}?", timeout: 4h }\n  - id: done\n    add_log: { text: "approved and done" }\n`;
  const res = await fetch(`${base}/api/v1/playbooks`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' }, body: yaml });
  assert.equal(res.status, 201, await res.text());
  const t = await resp.post('/api/v1/tickets', { title: `Beaconing to 198.51.100.200 ${XSS}`, description: 'seen from host ws-17' });
  await resp.post(`/api/v1/tickets/${t.number}/observables`, { value: '198.51.100.200' });

  // the responder starts the playbook from the ticket page
  await login(page, base, 'resp', users.resp);
  await page.goto(`${base}/tickets/${t.number}`);
  const verdict = page.locator('#observable-table .verdict-malicious');
  await verdict.first().waitFor();
  assert.match(await verdict.first().innerText(), /browser feed: malicious/);
  await page.selectOption('#run-playbook', `ask-${id}`);
  await page.click('form[action$="/do/run-playbook"] button');
  await page.waitForLoadState('load');
  // the worker picks it up within a second or two; the page shows it waiting
  const status = page.locator('#run-list [data-run-status]');
  for (let i = 0; i < 40; i++) {
    await page.reload();
    if ((await status.count()) && (await status.first().innerText()) === 'waiting') break;
    await page.waitForTimeout(250);
  }
  assert.equal(await status.first().innerText(), 'waiting');
  assert.match(await page.locator('#run-list').innerText(), /Waiting for a manager: Isolate the host/);
  assert.equal(await page.locator('#run-list button:has-text("Approve")').count(), 0, 'a responder cannot approve');
  await shot('ticket-run-waiting');

  // the manager approves in the browser
  const ctx2 = await page.context().browser().newContext();
  const mpage = await ctx2.newPage();
  await login(mpage, base, 'mgr', users.mgr);
  await mpage.goto(`${base}/tickets/${t.number}#playbooks`);
  await mpage.fill('#run-list input[name=comment]', 'go ahead');
  await mpage.click('#run-list button:has-text("Approve")');
  await mpage.waitForLoadState('load');
  for (let i = 0; i < 40; i++) {
    await mpage.reload();
    if ((await mpage.locator('#run-list [data-run-status]').first().innerText()) === 'succeeded') break;
    await mpage.waitForTimeout(250);
  }
  assert.equal(await mpage.locator('#run-list [data-run-status]').first().innerText(), 'succeeded');
  const timeline = await mpage.locator('.timeline').innerText();
  assert.ok(timeline.includes('approved and done'), timeline);
  assert.ok(timeline.includes(`Automated note about Beaconing to 198.51.100.200 ${XSS}`), 'user text in playbook output shows as text');
  assert.equal(await mpage.evaluate(() => window.__xss), undefined);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await ctx2.close();
  await page.reload();
  await shot('ticket-run-done');
});

test('admin: store a playbook (every error listed with its path first), disable it, import indicators', async ({ page, watch, shot }) => {
  watch.allow(/status of 422/);
  await login(page, base, 'admin', users.admin);
  await page.goto(`${base}/admin/automation`);
  await page.click('details[data-action=playbook] summary');
  await page.fill('#playbook-yaml', `name: Bad Name\ntrigger: { on: sometimes }\nsteps:\n  - id: a\n    notify: { channel: fax }\n`);
  await page.click('#playbook-submit');
  const alert = page.locator('[role=alert]');
  await alert.waitFor();
  const text = await alert.innerText();
  for (const p of ['name', 'trigger.on', 'steps[0].notify.channel']) {
    assert.ok(text.includes(p), `${p} in ${text}`);
  }
  assert.ok((await page.inputValue('#playbook-yaml')).includes('Bad Name'), 'the YAML typed is kept');
  await shot('admin-automation-invalid');
  await page.fill('#playbook-yaml', `name: tag-${id}\ndescription: Tags new tickets ${XSS}\ntrigger: ticket_created\nsteps:\n  - id: tag\n    add_tag: { tag: triaged }\n`);
  await page.click('#playbook-submit');
  await page.waitForLoadState('load');
  const row = page.locator(`tr[data-playbook="tag-${id}"]`);
  await row.waitFor();
  assert.ok((await row.innerText()).includes(`Tags new tickets ${XSS}`));
  await row.locator('button:has-text("Disable")').click();
  await page.waitForLoadState('load');
  assert.match(await page.locator(`tr[data-playbook="tag-${id}"]`).innerText(), /disabled/);
  const before = Number(/\((\d+)\)/.exec(await page.locator('#indicators').innerText())[1]);
  await page.click('details[data-action=indicators] summary');
  await page.fill('#i-source', 'admin page');
  await page.fill('#i-doc', `type,value,confidence\ndomain,evil-${id}.example,80\nsha256,${'ab'.repeat(32)},95\n`);
  await page.click('#indicator-submit');
  await page.waitForLoadState('load');
  assert.match(await page.locator('.notice').innerText(), /2 indicator\(s\) imported/);
  const after = Number(/\((\d+)\)/.exec(await page.locator('#indicators').innerText())[1]);
  assert.equal(after, before + 2);
  await shot('admin-automation');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
});

await run();
