// Smoke: the sign-in page renders, a wrong password is refused with an alert, the right one signs in.

import assert from 'node:assert/strict';
import { config, login, run, test } from './lib.mjs';

const { base, admin } = config();

test('the sign-in page renders', async ({ page, shot }) => {
  const res = await page.goto(`${base}/login`);
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /sign in/i);
  await page.locator('#username').waitFor();
  assert.equal(await page.locator('#password').getAttribute('type'), 'password');
  assert.ok(await page.locator('button[type=submit]').isVisible());
  assert.equal(await page.locator('[role=alert]').count(), 0);
  await shot('sign-in');
});

test('a wrong password shows an error', async ({ page, watch, shot }) => {
  // the refused sign-in page is served with status 401, which Chromium logs to the console
  watch.allow(/Failed to load resource: the server responded with a status of 401/);
  const res = await login(page, base, admin.username, 'not the password');
  assert.equal(res.status(), 401);
  const alert = page.locator('[role=alert]');
  await alert.waitFor();
  assert.match(await alert.innerText(), /\S/);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(await page.inputValue('#username'), admin.username, 'the username is kept');
  await shot('sign-in-wrong-password');
});

test('the right password signs in', async ({ page, shot }) => {
  const res = await login(page, base, admin.username, admin.password);
  assert.equal(res.status(), 200);
  assert.notEqual(new URL(page.url()).pathname, '/login');
  assert.equal(await page.locator('[role=alert]').count(), 0);
  assert.ok(
    (await page.locator('body').innerText()).includes(admin.username),
    'the page names the signed-in user',
  );
  await shot('signed-in');
});

await run();
