// Accessibility of every main page, checked by axe-core (WCAG 2.1 A and AA rules: labels,
// names, contrast, landmarks, ARIA) in Debian's Chromium; focus moves through a page in order.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { config, login, run, test } from './lib.mjs';

const { base, users } = config();
const require = createRequire(import.meta.url);
const AXE = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
const id = Date.now().toString(36);

async function axe(page, what) {
  // evaluated through the DevTools protocol: the page's CSP does not apply to it
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`),
    [],
    `${what}: accessibility violations`,
  );
  return result;
}

async function seed() {
  const login = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'hd', password: users.hd }),
  });
  const csrf = (await login.json()).csrf_token;
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const post = async (p, body) => {
    const r = await fetch(`${base}${p}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    assert.ok(r.ok, `${p}: ${r.status} ${text}`);
    return JSON.parse(text);
  };
  const t = await post('/api/v1/tickets', { title: `Accessible ticket ${id}`, description: 'text', severity: 'high', tags: ['a11y'] });
  const e = await post('/api/v1/events', { title: `Accessible event ${id}`, description: 'seen at hxxp://bad[.]example', severity: 'medium' });
  return { ticket: t.number, event: e.id };
}

test('every main page passes axe-core (WCAG 2.1 AA, serious and critical)', async ({ page }) => {
  await page.goto(`${base}/login`);
  await axe(page, '/login');
  const { ticket, event } = await seed();
  await login(page, base, 'hd', users.hd);
  for (const p of ['/', '/events', `/events/${event}`, '/tickets', `/tickets/${ticket}`, '/tickets/new', '/report', '/suppression-rules', '/account']) {
    const res = await page.goto(`${base}${p}`);
    assert.equal(res.status(), 200, p);
    // open every action so that its form is checked too
    await page.evaluate(() => document.querySelectorAll('details').forEach((d) => { d.open = true; }));
    await axe(page, p);
  }
});

test('the check is live: an unlabeled field is reported', async ({ page }) => {
  await page.goto(`${base}/login`);
  await page.evaluate(() => document.querySelector('main').insertAdjacentHTML('beforeend', '<input id="probe">'));
  await assert.rejects(axe(page, 'probe'), /label/);
});

test('the admin pages pass axe-core too', async ({ page }) => {
  const { admin } = config();
  await login(page, base, admin.username, admin.password);
  for (const p of ['/admin/users', '/admin/plan', '/admin/assets', '/admin/intake']) {
    const res = await page.goto(`${base}${p}`);
    assert.equal(res.status(), 200, p);
    await axe(page, p);
  }
});

test('keyboard: a skip link first, then the navigation, in document order', async ({ page }) => {
  await login(page, base, 'hd', users.hd);
  await page.goto(`${base}/tickets`);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => location.hash), '#main');
  await page.goto(`${base}/tickets`);
  const order = [];
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement.getAttribute('href') || document.activeElement.tagName));
  }
  assert.deepEqual(order.slice(0, 3), ['#main', '/', '/', ], 'skip link, brand, overview');
  const visible = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(visible, 'none', 'the focused element shows a focus ring');
});

await run();
