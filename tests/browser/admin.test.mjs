// Administration in a real browser: users and roles, tokens, the response plan editor with its
// validation, the asset CSV import; and that non-admins are kept out.

import assert from 'node:assert/strict';
import { writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { config, login, run, test } from './lib.mjs';

const { base, admin, users } = config();
const id = Date.now().toString(36);
const XSS = `<img src=x onerror="window.__xss=1">`;

test('admin: add a user with roles, change the roles, mint a token that works', async ({ page, shot }) => {
  await login(page, base, admin.username, admin.password);
  await page.click('nav >> text=Admin');
  await page.fill('#u-name', `analyst-${id}`);
  await page.check('#user-form input[name=roles][value=responder]');
  await page.fill('#u-title', `Analyst ${XSS}`);
  await page.fill('#u-password', `a-long-password-${id}`);
  await page.click('#user-submit');
  await page.waitForLoadState('load');
  const row = page.locator(`tr[data-user="analyst-${id}"]`);
  await row.waitFor();
  assert.ok((await row.innerText()).includes(`Analyst ${XSS}`));
  assert.ok(await row.locator('input[value=responder]').isChecked());
  await row.locator('input[value=senior_responder]').check();
  await row.locator('.roles-form button').click();
  await page.waitForLoadState('load');
  assert.ok(await page.locator(`tr[data-user="analyst-${id}"] input[value=senior_responder]`).isChecked());
  // a token for a sensor user, shown once, accepted by the API
  await page.locator(`tr[data-user="analyst-${id}"] select[name=scope]`).selectOption('read');
  await page.locator(`tr[data-user="analyst-${id}"] button:has-text("New token")`).click();
  const token = (await page.locator('#new-token').innerText()).trim();
  const me = await fetch(`${base}/api/v1/users/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).username, `analyst-${id}`);
  await shot('admin-users');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
});

test('admin: the plan editor lists every problem with its path, then saves a new version', async ({ page, watch, shot }) => {
  watch.allow(/status of 422/);
  await login(page, base, admin.username, admin.password);
  await page.goto(`${base}/admin/plan`);
  const before = await page.locator('#plan-version').innerText();
  const version = Number(/Version (\d+)/.exec(before)[1]);
  const yaml = await page.inputValue('#plan-yaml');
  assert.match(yaml, /\w+:/, 'the current plan is shown as YAML');
  await page.fill('#plan-yaml', `${yaml}\nno_such_section: 1\n`);
  await page.click('#plan-submit');
  await page.locator('[role=alert]').waitFor();
  assert.match(await page.locator('[role=alert]').innerText(), /no_such_section/);
  assert.ok((await page.inputValue('#plan-yaml')).includes('no_such_section'), 'the edit is kept');
  await shot('plan-invalid');
  await page.fill('#plan-yaml', yaml);
  await page.click('#plan-submit');
  await page.waitForLoadState('load');
  assert.equal(await page.locator('[role=alert]').count(), 0);
  assert.match(await page.locator('#plan-version').innerText(), new RegExp(`Version ${version + 1}\\b`));
});

test('admin: assets from a CSV file', async ({ page, shot }) => {
  await login(page, base, admin.username, admin.password);
  await page.goto(`${base}/admin/assets`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-assets-'));
  const file = path.join(dir, 'assets.csv');
  await writeFile(file, `name,addresses,owner,critical_production,description\npayroll-${id},10.9.0.5;10.9.0.6,finance,true,Payroll ${XSS}\nprinter-${id},10.9.1.9,it,false,\n`);
  await page.setInputFiles('#csv-file', file);
  await page.waitForFunction(() => document.querySelector('#csv-text').value.includes('payroll-'));
  await page.click('#assets-submit');
  await page.locator('.notice').waitFor();
  assert.match(await page.locator('.notice').innerText(), /2 asset\(s\) imported/);
  const table = await page.locator('main table').innerText();
  assert.ok(table.includes(`payroll-${id}`) && table.includes('10.9.0.6'));
  assert.ok(table.includes(`Payroll ${XSS}`));
  await shot('admin-assets');
});

test('a user manages their own tokens; a non-admin is kept out of administration', async ({ page, watch, shot }) => {
  watch.allow(/status of 403/);
  await login(page, base, 'hd', users.hd);
  assert.equal(await page.locator('nav >> text=Admin').count(), 0);
  const res = await page.goto(`${base}/admin/users`);
  assert.equal(res.status(), 403);
  await page.goto(`${base}/account`);
  assert.equal(await page.locator('#token-form input[value=admin]').count(), 0, 'no admin scope offered');
  await page.fill('#tok-name', `siem-${id}`);
  await page.check('#token-form input[value=intake]');
  await page.click('#token-submit');
  const token = (await page.locator('#new-token').innerText()).trim();
  const ok = await fetch(`${base}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: `from the SIEM ${id}` }),
  });
  assert.equal(ok.status, 201, await ok.text());
  await shot('account-tokens');
  page.once('dialog', (d) => d.accept());
  await page.locator('#tokens tr', { hasText: `siem-${id}` }).locator('button').click();
  await page.waitForLoadState('load');
  const gone = await fetch(`${base}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'after revocation' }),
  });
  assert.equal(gone.status, 401);
});

await run();
