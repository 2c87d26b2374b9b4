// The analyst's flows in a real browser: the help desk's queue (report, triage, dismiss,
// suppress), the responder's normal path to closure, escalation and emergency, the live
// ticket list, keyboard navigation, a phone-sized screen, and user text that never runs.

import assert from 'node:assert/strict';
import { config, login, run, test } from './lib.mjs';

const { base, token, users } = config();
const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>"'&`;
const run_id = Date.now().toString(36);

function pass(name) {
  const p = users[name];
  assert.ok(p, `the harness gives the password of ${name}`);
  return p;
}

/** Confirmation dialogs are accepted; an alert() would be user text running: a failure. */
function dialogs(page) {
  const seen = [];
  page.on('dialog', async (d) => {
    seen.push(`${d.type()}: ${d.message()}`);
    if (d.type() === 'confirm') await d.accept();
    else await d.dismiss();
  });
  return seen;
}

async function noScriptRan(page) {
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'user text ran as script');
}

async function ingestEve(lines) {
  const res = await fetch(`${base}/api/v1/ingest/ndjson?format=eve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

/** The API as a signed-in user (session cookie and CSRF token), for the tickets a test needs. */
async function as(name) {
  const res = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: name, password: pass(name) }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const csrf = JSON.parse(text).csrf_token;
  const cookie = res.headers.get('set-cookie').split(';')[0];
  return {
    async post(p, body) {
      const r = await fetch(`${base}${p}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
        body: JSON.stringify(body),
      });
      const t = await r.text();
      assert.ok(r.status >= 200 && r.status < 300, `POST ${p}: ${r.status} ${t}`);
      return JSON.parse(t);
    },
  };
}

function eve(sig, sid, src, host) {
  return {
    timestamp: new Date().toISOString().replace('Z', '+0000'),
    event_type: 'alert',
    src_ip: src,
    src_port: 44321,
    dest_ip: '10.1.2.3',
    dest_port: 80,
    proto: 'TCP',
    host,
    alert: { action: 'allowed', gid: 1, signature_id: sid, rev: 1, signature: sig, category: 'Web Application Attack', severity: 1 },
  };
}

test('help desk: a person reports an event through the form; it reaches the queue', async ({ page, shot }) => {
  dialogs(page);
  await login(page, base, 'hd', pass('hd'));
  await page.click('nav >> text=Report an event');
  await page.fill('#r-title', `Suspicious invoice mail ${run_id} ${XSS}`);
  await page.fill('#r-description', `From billing@evil-${run_id}.example, link hxxp://evil-${run_id}[.]example/pay\n${XSS}`);
  await page.selectOption('#r-severity', 'high');
  await page.selectOption('#r-kind', 'employee');
  await page.fill('#r-contact', 'ana@example.org');
  await shot('report-form');
  await page.click('#report-submit');
  await page.locator('.notice').waitFor();
  assert.match(await page.locator('.notice').innerText(), /report was received/);
  await page.click('nav >> text=Event queue');
  const row = page.locator('tr[data-event-id]', { hasText: `Suspicious invoice mail ${run_id}` });
  await row.waitFor();
  assert.ok((await row.innerText()).includes(XSS), 'the title shows as text, markup and all');
  await row.locator('a').click();
  await page.locator('h1.event-title').waitFor();
  const body = await page.locator('main').innerText();
  assert.ok(body.includes(`evil-${run_id}.example`), 'the defanged domain is an observable');
  assert.ok(body.includes('ana@example.org'), 'the reporter contact is shown');
  await shot('reported-event');
  await noScriptRan(page);
});

test('help desk: select two events, open one ticket; dismiss another with a reason', async ({ page, watch, shot }) => {
  dialogs(page);
  watch.allow(/status of 422/);
  const out = await ingestEve([
    eve(`ET WEB_SERVER probe A ${run_id}`, 2100001, '203.0.113.10', 'web-01'),
    eve(`ET WEB_SERVER probe B ${run_id}`, 2100002, '203.0.113.11', 'web-01'),
    eve(`ET POLICY noisy ${run_id}`, 2100003, '198.51.100.7', 'lab-9'),
  ]);
  assert.equal(out.created, 3);
  await login(page, base, 'hd', pass('hd'));
  await page.goto(`${base}/events?q=${run_id}`);
  const a = page.locator('tr[data-event-id]', { hasText: `probe A ${run_id}` });
  const b = page.locator('tr[data-event-id]', { hasText: `probe B ${run_id}` });
  await a.locator('input[name=ids]').check();
  await b.locator('input[name=ids]').check();
  assert.equal(await page.locator('[data-selected-count]').innerText(), '2');
  await page.selectOption('#bulk-action', 'ticket');
  await shot('queue-two-selected');
  await Promise.all([page.waitForURL(/\/tickets\/[A-Z]+-\d+$/), page.click('#bulk-submit')]);
  const number = (await page.locator('#ticket-number').innerText()).trim();
  assert.match(number, /^[A-Z]+-\d{6}$/);
  const events = await page.locator('main').innerText();
  assert.ok(events.includes(`probe A ${run_id}`) && events.includes(`probe B ${run_id}`), 'both events are on the ticket');
  assert.ok(events.includes('203.0.113.10'), 'their observables came along');
  await shot('ticket-from-events');

  await page.goto(`${base}/events?q=${encodeURIComponent(`noisy ${run_id}`)}`);
  await page.locator('tr[data-event-id] input[name=ids]').first().check();
  await page.selectOption('#bulk-action', 'dismiss');
  // no reason: refused, saying which field is missing
  await page.click('#bulk-submit');
  await page.locator('[role=alert]').waitFor();
  assert.match(await page.locator('[role=alert]').innerText(), /reason/);
  await page.locator('tr[data-event-id] input[name=ids]').first().check();
  await page.selectOption('#bulk-action', 'dismiss');
  await page.fill('#bulk-reason', `lab scanner ${XSS}`);
  await page.click('#bulk-submit');
  await page.locator('.notice').waitFor();
  assert.match(await page.locator('.notice').innerText(), /1 event\(s\) dismissed/);
  assert.equal(await page.locator('tr[data-event-id]', { hasText: `noisy ${run_id}` }).count(), 0, 'gone from the new queue');
  await page.goto(`${base}/events?status=dismissed&q=${encodeURIComponent(`noisy ${run_id}`)}`);
  await page.locator('tr[data-event-id]').first().locator('a').click();
  assert.ok((await page.locator('main').innerText()).includes(`lab scanner ${XSS}`), 'the reason is kept, as text');
  await noScriptRan(page);
});

test('help desk: a suppression rule from an event in two clicks', async ({ page, shot }) => {
  dialogs(page);
  await ingestEve([eve(`ET SCAN internal scanner ${run_id}`, 2100099, '10.250.0.5', 'scan-01')]);
  await login(page, base, 'hd', pass('hd'));
  await page.goto(`${base}/events?q=${encodeURIComponent(`internal scanner ${run_id}`)}`);
  await page.locator('tr[data-event-id] a').first().click();
  const cond = await page.inputValue('#rule-condition');
  assert.match(cond, /event\.source == "suricata"/);
  assert.match(cond, /event\.rule_id == "2100099"/);
  await page.fill('#rule-reason', `authorised scanner ${XSS}`);
  await shot('suppress-from-event');
  await Promise.all([page.waitForURL(/\/suppression-rules\?done=created$/), page.click('#suppress-submit')]);
  assert.match(await page.locator('.notice').innerText(), /created/);
  assert.ok((await page.locator('main').innerText()).includes(`authorised scanner ${XSS}`));
  // the next such event is suppressed, not queued, and counted on the rule
  const out = await ingestEve([eve(`ET SCAN internal scanner ${run_id}`, 2100099, '10.250.0.6', 'scan-01')]);
  assert.equal(out.suppressed, 1);
  await page.reload();
  const row = page.locator('tr', { hasText: `authorised scanner` });
  assert.match(await row.innerText(), /\b1\b/);
  await shot('suppression-rules');
  await noScriptRan(page);
});

test('responder: start, log, resolve; the owner accepts the closure', async ({ browser, page, shot }) => {
  dialogs(page);
  const t = await (await as('hd')).post('/api/v1/tickets', {
    title: `Malware on laptop ${run_id} ${XSS}`,
    description: `EDR quarantined ${XSS}`,
    severity: 'high',
    tags: ['malware', `tag-${run_id}`],
  });
  await login(page, base, 'resp', pass('resp'));
  await page.goto(`${base}/tickets/${t.number}`);
  assert.ok((await page.locator('h1').innerText()).includes(XSS), 'the title is text');
  // resolve is offered only once the work has started, and says so
  const resolve = page.locator('details[data-action=resolve]');
  assert.equal(await resolve.getAttribute('aria-disabled'), 'true');
  await resolve.locator('summary').click();
  assert.match(await resolve.locator('.why').innerText(), /in_progress/);
  await page.locator('details[data-action=start] summary').click();
  await page.locator('details[data-action=start] button[type=submit]').click();
  await page.waitForLoadState('load');
  assert.equal((await page.locator('#ticket-status').innerText()).trim(), 'in_progress');
  await page.fill('#log-text', `Isolated the laptop ${XSS}`);
  await page.selectOption('#log-kind', 'action');
  await page.click('#log-submit');
  await page.waitForLoadState('load');
  assert.ok((await page.locator('#timeline-list').innerText()).includes(`Isolated the laptop ${XSS}`));
  // evidence from the ticket page: hashed, listed, downloadable as it was
  const evidence = `quarantine log ${run_id}\n`;
  await page.locator('details[data-action=upload] summary').click();
  await page.setInputFiles('#doc-file', { name: `edr<b onclick=x>${run_id}.log`, mimeType: 'text/plain', buffer: Buffer.from(evidence) });
  await page.fill('#doc-source', 'laptop-17');
  await page.click('#upload-submit');
  await page.waitForLoadState('load');
  const { createHash } = await import('node:crypto');
  const sha = createHash('sha256').update(evidence).digest('hex');
  const doc = page.locator('a', { hasText: `edr<b onclick=x>${run_id}.log` });
  await doc.waitFor();
  assert.ok((await page.locator('main').innerText()).includes(sha.slice(0, 12)), 'the SHA-256 is shown');
  const href = await doc.getAttribute('href');
  const got = await page.evaluate(async (u) => (await fetch(u)).text(), href);
  assert.equal(got, evidence);
  await page.locator('details[data-action=resolve] summary').click();
  await page.fill('#resolve-resolution', 'Reimaged; credentials rotated');
  await page.fill('#resolve-problem_category', 'malware');
  await page.locator('details[data-action=resolve] button[type=submit]').click();
  await page.waitForLoadState('load');
  assert.equal((await page.locator('#ticket-status').innerText()).trim(), 'pending_closure');
  await shot('ticket-pending-closure');
  await noScriptRan(page);
  // the written controls open from the page: the Help Desk Ticket as HTML and as PDF
  for (const [fmt, sig] of [['html', /<html|<!doctype/i], ['pdf', /^%PDF-/]]) {
    const href = await page.locator(`a[href$="/reports/help-desk-ticket.${fmt}"]`).getAttribute('href');
    const [status, head] = await page.evaluate(async (u) => {
      const r = await fetch(u);
      return [r.status, (await r.text()).slice(0, 200)];
    }, href);
    assert.equal(status, 200, `${fmt}: ${head}`);
    assert.match(head, sig, fmt);
  }

  // the owner (the help desk agent who opened it) accepts
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const owner = await ctx.newPage();
  dialogs(owner);
  await login(owner, base, 'hd', pass('hd'));
  await owner.goto(`${base}/tickets/${t.number}`);
  await owner.locator('details[data-action=accept-closure] summary').click();
  await owner.locator('details[data-action=accept-closure] button[type=submit]').click();
  await owner.waitForLoadState('load');
  assert.equal((await owner.locator('#ticket-status').innerText()).trim(), 'closed');
  await ctx.close();
});

test('escalation: the escalation report form, then a manager declares an emergency', async ({ browser, page, watch, shot }) => {
  dialogs(page);
  watch.allow(/status of (422|403)/);
  const t = await (await as('hd')).post('/api/v1/tickets', { title: `Payroll server beaconing ${run_id}`, severity: 'critical' });
  await login(page, base, 'hd', pass('hd'));
  await page.goto(`${base}/tickets/${t.number}`);
  const esc = page.locator('details[data-action=escalate]');
  await esc.locator('summary').click();
  // a missing required field is refused by the server with the field named
  await page.fill('#escalate-reason', 'critical production system');
  await page.fill('#escalate-impact', 'payroll run at risk');
  await page.fill('#escalate-systems', 'payroll-db, payroll-app');
  await page.fill('#escalate-actions_taken', '   ');
  await esc.locator('button[type=submit]').click();
  await page.locator('[role=alert]').waitFor();
  assert.match(await page.locator('[role=alert]').innerText(), /actions_taken/);
  await page.fill('#escalate-actions_taken', 'ticket opened, owner called');
  await page.locator('details[data-action=escalate] button[type=submit]').click();
  await page.waitForLoadState('load');
  assert.match(await page.locator('.ticket-head').innerText(), /escalation/);
  assert.match(await page.locator('.warn').innerText(), /critical production system|Escalation/);
  await shot('ticket-escalated');
  // the help desk may not declare an emergency, and is told why
  const em = page.locator('details[data-action=declare-emergency]');
  assert.equal(await em.getAttribute('aria-disabled'), 'true');

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const mgr = await ctx.newPage();
  dialogs(mgr);
  await login(mgr, base, 'mgr', pass('mgr'));
  await mgr.goto(`${base}/tickets/${t.number}`);
  await mgr.locator('details[data-action=declare-emergency] summary').click();
  await mgr.fill('#declare-emergency-reason', 'payroll data exfiltration suspected');
  await mgr.locator('details[data-action=declare-emergency] button[type=submit]').click();
  await mgr.waitForLoadState('load');
  assert.match(await mgr.locator('.ticket-head').innerText(), /emergency/);
  // the emergency dashboard: obligations, then the course of action and a status report
  await mgr.click('#emergency-link');
  await mgr.locator('#obligations').waitFor();
  await mgr.locator('details[data-action=course] summary').click();
  await mgr.selectOption('#course-course', 'lockdown_repair');
  await mgr.fill('#course-rationale', `contain first ${XSS}`);
  await mgr.locator('details[data-action=course] button[type=submit]').click();
  await mgr.waitForLoadState('load');
  const err = await mgr.locator('[role=alert]').count();
  assert.equal(err, 0, err ? await mgr.locator('[role=alert]').innerText() : '');
  assert.match(await mgr.locator('#course').innerText(), /Lock-down & Repair/);
  assert.ok((await mgr.locator('#course').innerText()).includes(`contain first ${XSS}`));
  // a status report is the coordinator's: the manager is told so, and what was typed is kept
  await mgr.locator('details[data-action=status-report] summary').click();
  await mgr.fill('#sr-cost', '2 analyst days');
  await mgr.fill('#sr-exposure', 'payroll records of 1,200 staff');
  await mgr.fill('#sr-risk', 'regulatory notification');
  await mgr.fill('#sr-next', 'image the server');
  await mgr.locator('details[data-action=status-report] button[type=submit]').click();
  await mgr.locator('[role=alert]').waitFor();
  assert.match(await mgr.locator('[role=alert]').innerText(), /coordinator/);
  assert.equal(await mgr.inputValue('#sr-exposure'), 'payroll records of 1,200 staff');
  const dashboard = mgr.url().replace(/\/status-report$/, '');
  const coordinator = (await mgr.locator('#coordinator').innerText()).split(/\s/)[0];
  assert.equal(coordinator, 'resp', 'the responder is the default coordinator');
  const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const co = await ctx2.newPage();
  dialogs(co);
  await login(co, base, 'resp', pass('resp'));
  await co.goto(dashboard);
  await co.locator('details[data-action=status-report] summary').click();
  await co.fill('#sr-cost', '2 analyst days');
  await co.fill('#sr-exposure', 'payroll records of 1,200 staff');
  await co.fill('#sr-risk', 'regulatory notification');
  await co.fill('#sr-next', 'image the server');
  await co.locator('details[data-action=status-report] button[type=submit]').click();
  await co.waitForLoadState('load');
  assert.match(await co.locator('#status-reports').innerText(), /by resp/);
  // the coordinator schedules a meeting, records its minutes (a manager attended), finalizes them
  await co.locator('details[data-action=meeting] summary').click();
  await co.fill('#meeting-at', '2026-11-27T15:00');
  await co.locator('details[data-action=meeting] button[type=submit]').click();
  await co.waitForLoadState('load');
  await co.locator('details[data-action=minutes] summary').click();
  await co.fill('#min-attendees', 'resp, mgr');
  await co.fill('#min-status', `Contained; imaging in progress ${XSS}`);
  await co.fill('#min-actions', 'Image the payroll server; resp; 2026-11-28');
  await co.fill('#min-resolutions', 'Keep the server isolated until the image is verified');
  await co.locator('details[data-action=minutes] button[type=submit]').click();
  await co.waitForLoadState('load');
  const minErr = await co.locator('[role=alert]').count();
  assert.equal(minErr, 0, minErr ? await co.locator('[role=alert]').innerText() : '');
  assert.ok((await co.locator('main table').first().innerText()).includes(`imaging in progress ${XSS}`));
  await co.locator('main table button:has-text("Finalize")').click();
  await co.waitForLoadState('load');
  const finErr = await co.locator('[role=alert]').count();
  assert.equal(finErr, 0, finErr ? await co.locator('[role=alert]').innerText() : '');
  assert.match(await co.locator('main table').first().innerText(), /final/);
  await noScriptRan(co);
  await ctx2.close();
  await noScriptRan(mgr);
  const { shot: snap } = await import('./lib.mjs');
  await snap(mgr, 'emergency-dashboard');
  await ctx.close();
});

test('response: a task, a lock-down change control approved by a second person, the phase, the review that closes', async ({ browser, page, watch, shot }) => {
  dialogs(page);
  watch.allow(/status of (403|409|422)/);
  const t = await (await as('hd')).post('/api/v1/tickets', { title: `Worm on file server ${run_id}`, severity: 'high' });
  await login(page, base, 'resp', pass('resp'));
  await page.goto(`${base}/tickets/${t.number}`);
  await page.locator('details[data-action=start] summary').click();
  await page.locator('details[data-action=start] button[type=submit]').click();
  await page.waitForLoadState('load');
  // a task, then done
  await page.locator('details[data-action=task] summary').click();
  await page.fill('#task-title', `Collect the file server's memory ${XSS}`);
  await page.fill('#task-owner', 'resp');
  await page.fill('#task-due', '2026-12-01');
  await page.locator('details[data-action=task] button[type=submit]').click();
  await page.waitForLoadState('load');
  const task = page.locator('#task-list li', { hasText: 'Collect the file server' });
  assert.ok((await task.innerText()).includes(XSS));
  await task.locator('button').click();
  await page.waitForLoadState('load');
  // the click posts a form: waitForLoadState may answer for the page before it, so wait for
  // the new one to show the task struck through (or time out) before counting
  const done = page.locator('#task-list li s', { hasText: 'Collect the file server' });
  await done.first().waitFor({ timeout: 10000 }).catch(() => {});
  assert.equal(await done.count(), 1, 'the task is done');
  // a lock-down change, raised by tier 2: the requester may not approve it, a manager does
  const ctx0 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const sr = await ctx0.newPage();
  dialogs(sr);
  await login(sr, base, 'sr', pass('sr'));
  await sr.goto(`${base}/tickets/${t.number}`);
  await sr.locator('details[data-action=change-control] summary').click();
  await sr.selectOption('#change-control-kind', 'lockdown');
  await sr.fill('#change-control-description', 'Block SMB from the file server VLAN; roll back by removing the ACL');
  await sr.fill('#change-control-systems', 'fs-01, core-sw-2');
  await sr.locator('details[data-action=change-control] button[type=submit]').click();
  await sr.waitForLoadState('load');
  const err0 = await sr.locator('[role=alert]').count();
  assert.equal(err0, 0, err0 ? await sr.locator('[role=alert]').innerText() : '');
  assert.equal((await sr.locator('#change-list li [data-change-status]').first().innerText()).trim(), 'requested');
  assert.equal(await sr.locator('#change-list li button:has-text("Approve")').count(), 0, 'tier 2 does not approve');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const mgr = await ctx.newPage();
  dialogs(mgr);
  await login(mgr, base, 'mgr', pass('mgr'));
  await mgr.goto(`${base}/tickets/${t.number}`);
  await mgr.locator('#change-list li').first().locator('button:has-text("Approve")').click();
  await mgr.waitForLoadState('load');
  assert.equal((await mgr.locator('#change-list li [data-change-status]').first().innerText()).trim(), 'approved');
  await ctx.close();
  await sr.goto(`${base}/tickets/${t.number}`);
  await sr.locator('#change-list li').first().locator('button:has-text("Implemented")').click();
  await sr.waitForLoadState('load');
  await sr.locator('#change-list li').first().locator('button:has-text("Verified")').click();
  await sr.waitForLoadState('load');
  assert.equal((await sr.locator('#change-list li [data-change-status]').first().innerText()).trim(), 'verified');
  await ctx0.close();
  await page.goto(`${base}/tickets/${t.number}`);
  assert.equal(await page.locator('details[data-action=change-control]').getAttribute('aria-disabled'), 'true', 'a responder is told change controls are tier 2');
  // the phase
  await page.locator('details[data-action=phase] summary').click();
  await page.selectOption('#phase-phase', 'containment');
  await page.fill('#phase-note', 'SMB blocked');
  await page.locator('details[data-action=phase] button[type=submit]').click();
  await page.waitForLoadState('load');
  assert.equal(await page.locator('[role=alert]').count(), 0, await page.locator('main').innerText());
  assert.match(await page.locator('#timeline-list').innerText(), /containment/i);
  await shot('ticket-response-process');
  // the post-incident review: a malformed action item is named, then it closes the ticket
  await page.locator('details[data-action=post-incident-review] summary').click();
  await page.fill('#post-incident-review-what_happened', 'A worm spread over SMB from one laptop.');
  await page.fill('#post-incident-review-timeline', '09:00 alert; 09:20 contained; 11:00 cleaned');
  await page.fill('#post-incident-review-root_cause', 'An unpatched file server');
  await page.check('#post-incident-review-human_root_cause');
  await page.fill('#post-incident-review-what_worked', 'EDR alerting worked; patching did not');
  await page.fill('#post-incident-review-action_items', 'Patch the file servers without an owner');
  await page.locator('details[data-action=post-incident-review] button[type=submit]').click();
  await page.locator('[role=alert]').waitFor();
  assert.match(await page.locator('[role=alert]').innerText(), /action_items\[0\]/);
  assert.equal(await page.inputValue('#post-incident-review-root_cause'), 'An unpatched file server', 'the review is kept');
  await page.fill('#post-incident-review-action_items', 'Patch the file servers; resp; 2026-12-15');
  await page.locator('details[data-action=post-incident-review] button[type=submit]').click();
  await page.waitForLoadState('load');
  const err = await page.locator('[role=alert]').count();
  assert.equal(err, 0, err ? await page.locator('[role=alert]').innerText() : '');
  assert.equal((await page.locator('#ticket-status').innerText()).trim(), 'closed');
  await noScriptRan(page);
});

test('ticket list: filters, keyboard navigation, and a new ticket appears without reload', async ({ page, shot }) => {
  dialogs(page);
  await login(page, base, 'resp', pass('resp'));
  await page.goto(`${base}/tickets?severity=critical`);
  const texts = await page.locator('#ticket-rows').innerText();
  assert.ok(!/\bhigh\b/.test(texts), 'the severity filter holds');
  await page.goto(`${base}/tickets`);
  await page.keyboard.press('j');
  const first = await page.evaluate(() => document.activeElement?.getAttribute('data-href'));
  assert.match(first || '', /^\/tickets\/[A-Z]+-\d+$/);
  await page.keyboard.press('j');
  await page.keyboard.press('k');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-href')), first);
  await page.keyboard.press('Enter');
  await page.waitForURL(new RegExp(`${first}$`));
  await page.goto(`${base}/tickets`);
  const title = `Live update ${run_id}`;
  await (await as('mgr')).post('/api/v1/tickets', { title, severity: 'low' });
  // the list refreshes itself (the live stream; every 60 s without it)
  await page.locator('#ticket-rows tr', { hasText: title }).waitFor({ timeout: 10_000 });
  await shot('ticket-list-live');
});

test('ticket list: a view saved by the user comes back, as text, and can be forgotten', async ({ page }) => {
  await login(page, base, 'resp', pass('resp'));
  await page.goto(`${base}/tickets?severity=low&status=open`);
  const name = `Low ones <b>${run_id}</b>`;
  page.once('dialog', (d) => d.accept(name));
  await page.click('[data-save-view]');
  await page.goto(`${base}/tickets`);
  const link = page.locator('#saved-views a', { hasText: name });
  await link.waitFor();
  await link.click();
  await page.waitForURL(/severity=low/);
  assert.match(page.url(), /status=open/);
  await page.locator('#saved-views button').first().click();
  assert.equal(await page.locator('#saved-views a').count(), 0);
});

test('new ticket form: required fields, then created with its source', async ({ page, watch, shot }) => {
  dialogs(page);
  watch.allow(/status of 422/);
  await login(page, base, 'hd', pass('hd'));
  await page.goto(`${base}/tickets/new`);
  await page.fill('#title', '   ');
  await page.fill('#description', 'only spaces in the title');
  // bypass the browser's own check to see the server's answer
  await page.evaluate(() => document.querySelector('#title').removeAttribute('required'));
  await page.click('#create-ticket');
  await page.locator('[role=alert]').waitFor();
  assert.match(await page.locator('[role=alert]').innerText(), /title/);
  assert.equal(await page.inputValue('#description'), 'only spaces in the title', 'the form keeps what was typed');
  await page.fill('#title', `Lost laptop ${run_id} ${XSS}`);
  await page.selectOption('#severity', 'high');
  await page.selectOption('#source_kind', 'employee');
  await page.fill('#source_name', `Bob ${XSS}`);
  await page.fill('#source_contact', '+1 555 0100');
  await page.fill('#tags', 'lost-device, laptop');
  await shot('new-ticket');
  await Promise.all([page.waitForURL(/\/tickets\/[A-Z]+-\d+$/), page.click('#create-ticket')]);
  const main = await page.locator('main').innerText();
  assert.ok(main.includes(`Lost laptop ${run_id} ${XSS}`));
  assert.ok(main.includes(`Bob ${XSS}`));
  assert.ok(main.includes('lost-device'));
  await noScriptRan(page);
});

test('phone-sized screen: the queue and a ticket are usable at 390 px', async ({ browser }) => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const page = await ctx.newPage();
  dialogs(page);
  await login(page, base, 'hd', pass('hd'));
  await page.goto(`${base}/events`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page does not scroll sideways (${overflow}px)`);
  const { shot: snap } = await import('./lib.mjs');
  await snap(page, 'phone-queue');
  await page.goto(`${base}/tickets`);
  await snap(page, 'phone-tickets');
  await ctx.close();
});

test('every page is served with a strict CSP and no inline script', async ({ page }) => {
  await login(page, base, 'hd', pass('hd'));
  for (const p of ['/', '/events', '/tickets', '/tickets/new', '/suppression-rules', '/report', '/account']) {
    const res = await page.goto(`${base}${p}`);
    assert.equal(res.status(), 200, p);
    const csp = res.headers()['content-security-policy'] || '';
    assert.match(csp, /script-src 'self'/, p);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), `${p}: ${csp}`);
    const inline = await page.evaluate(() => [...document.scripts].filter((s) => !s.src).length);
    assert.equal(inline, 0, `${p} has inline script`);
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((el) => {
        if (el.getAttribute('aria-label')) return false;
        if (el.id && document.querySelector(`label[for="${el.id}"]`)) return false;
        return !el.closest('label');
      }).map((el) => el.name || el.id),
    );
    assert.deepEqual(unlabeled, [], `${p}: every field has a label`);
  }
});

test('overview: counts, the age chart and the trends, as SVG drawn by the server', async ({ page, shot }) => {
  const t = await (await as('hd')).post('/api/v1/tickets', { title: `For the overview ${run_id}`, severity: 'low' });
  await (await as('resp')).post(`/api/v1/tickets/${t.number}/start`, {});
  await login(page, base, 'mgr', pass('mgr'));
  await page.goto(`${base}/`);
  const main = await page.locator('main').innerText();
  assert.match(main, /open tickets/);
  assert.match(main, /Last 8 weeks/);
  // the trends are recomputed at most every 30 s: an earlier test's visit may have cached them
  // before this ticket was started
  const started = Date.now();
  while ((await page.locator('svg.chart').count()) < 4 && Date.now() - started < 40_000) {
    await page.waitForTimeout(1_000);
    await page.reload();
  }
  assert.ok((await page.locator('svg.chart').count()) >= 4, 'age, events, weeks, sources charts');
  const weeks = await page.locator('svg[aria-label^="Tickets opened and closed"]').innerHTML();
  assert.match(weeks, /opened/);
  assert.match(weeks, /MTTA/);
  assert.match(weeks, />\d+\.\d (h|d)</, 'a started ticket gives this week a time to acknowledge');
  await shot('overview');
});

await run();
