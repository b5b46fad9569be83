// Real-browser end-to-end tests, run by scripts/e2e.sh (which starts the servers and sets
// the environment): headless Debian Chromium, driven by playwright-core, talks to our proxy.
//   E2E_PROXY_PORT    our proxy: --web /usr/share/novnc, --cert, target a TigerVNC server
//   E2E_CONSOLE_PORT  our proxy: --web web/, --cert, target demo/lineserver.py
//   E2E_ARTIFACTS     where screenshots go (target/e2e)
//   E2E_DESKTOP_BG    the desktop's background colour (#rrggbb), set with xsetroot
//   E2E_CHROMIUM      the browser (default /usr/bin/chromium)
// Every wait is bounded; nothing sleeps hoping things are ready.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with scripts/e2e.sh`);
  return v;
}
const PROXY_PORT = env('E2E_PROXY_PORT');
const CONSOLE_PORT = env('E2E_CONSOLE_PORT');
const ARTIFACTS = env('E2E_ARTIFACTS');
const DESKTOP_BG = env('E2E_DESKTOP_BG');
mkdirSync(ARTIFACTS, { recursive: true });

const STEP = 20_000; // the bound of every single wait, in ms

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 60_000,
    // playwright-core gives the browser a fresh temporary profile (--user-data-dir) itself
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--ignore-certificate-errors',
    ],
  });
});
after(async () => { await browser?.close(); });

// A page whose console messages and errors are kept, to print when a test fails.
async function newPage() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1100, height: 860 },
  });
  context.setDefaultTimeout(STEP);
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  return { context, page, log };
}

async function withPage(t, fn) {
  const { context, page, log } = await newPage();
  try {
    await fn(page);
  } catch (e) {
    const out = await page.locator('#output').textContent({ timeout: 1000 }).catch(() => null);
    if (out) t.diagnostic(`#output:\n${out}`);
    t.diagnostic(`browser log:\n${log.join('\n') || '(empty)'}`);
    throw e;
  } finally {
    await context.close();
  }
}

// Samples the noVNC canvas on a grid: how many distinct colours, and what share of the
// samples is near the desktop's background colour.
function canvasStats(bgHex) {
  const canvas = document.querySelector('#noVNC_container canvas') || document.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const { width, height } = canvas;
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const bg = [1, 3, 5].map((i) => parseInt(bgHex.slice(i, i + 2), 16));
  const colours = new Set();
  let samples = 0, nearBg = 0;
  for (let y = 2; y < height; y += 8) {
    for (let x = 2; x < width; x += 8) {
      const i = (y * width + x) * 4;
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      colours.add((r << 16) | (g << 8) | b);
      samples++;
      if (Math.abs(r - bg[0]) + Math.abs(g - bg[1]) + Math.abs(b - bg[2]) <= 24) nearBg++;
    }
  }
  return { width, height, distinct: colours.size, samples, bgShare: nearBg / samples };
}

async function novnc(t, scheme) {
  await withPage(t, async (page) => {
    const url = `${scheme}://localhost:${PROXY_PORT}/vnc.html?resize=scale`;
    const resp = await page.goto(url);
    assert.equal(resp.status(), 200, `GET ${url}`);
    // noVNC's UI is up when its connect button shows
    await page.locator('#noVNC_connect_button').waitFor({ state: 'visible' });

    // Click Connect as a person would, and listen for the RFB object's own events
    // (UI.connect() creates UI.rfb synchronously, long before the WebSocket opens).
    const result = await page.evaluate(async (timeout) => {
      const UI = (await import(new URL('app/ui.js', location.href).href)).default;
      document.getElementById('noVNC_connect_button').click();
      const rfb = UI.rfb;
      if (!rfb) return { event: 'no rfb object after clicking Connect' };
      const event = await new Promise((resolve) => {
        rfb.addEventListener('connect', () => resolve('connect'));
        rfb.addEventListener('disconnect', (e) => resolve(`disconnect clean=${e.detail.clean}`));
        rfb.addEventListener('securityfailure', (e) => resolve(`securityfailure ${e.detail.reason}`));
        setTimeout(() => resolve('timeout'), timeout);
      });
      return { event, wsUrl: rfb._sock?._websocket?.url, state: rfb._rfbConnectionState };
    }, STEP);
    assert.equal(result.event, 'connect', `rfb event (state ${result.state})`);
    assert.ok(result.wsUrl?.startsWith(`${scheme === 'https' ? 'wss' : 'ws'}://`),
      `WebSocket URL ${result.wsUrl}`);

    // noVNC's own status: the page is in the connected state, the status line says so
    await page.waitForFunction(() => document.documentElement.classList.contains('noVNC_connected'));
    const status = await page.locator('#noVNC_status').textContent();
    assert.match(status, scheme === 'https' ? /Connected \(encrypted\)/ : /Connected \(unencrypted\)/);
    t.diagnostic(`noVNC status: ${status.trim()}`);

    // The canvas shows the desktop: the full 1024x768 framebuffer, many colours, mostly the
    // background colour set with xsetroot, plus the X clients' windows.
    await page.waitForFunction(
      (bg) => {
        const canvas = document.querySelector('#noVNC_container canvas') || document.querySelector('canvas');
        if (!canvas || canvas.width !== 1024) return false;
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length && seen.size < 8; i += 4 * 997) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size >= 8;
      },
      DESKTOP_BG,
      { polling: 200 },
    );
    const stats = await page.evaluate(canvasStats, DESKTOP_BG);
    t.diagnostic(`canvas: ${JSON.stringify(stats)}`);
    assert.deepEqual([stats.width, stats.height], [1024, 768], 'framebuffer size');
    assert.ok(stats.distinct >= 8, `distinct colours: ${stats.distinct}`);
    assert.ok(stats.bgShare > 0.3 && stats.bgShare < 0.95, `background share: ${stats.bgShare}`);

    const shot = path.join(ARTIFACTS, `novnc-${scheme === 'https' ? 'wss' : 'ws'}.png`);
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);

    // Disconnect through the UI, cleanly
    const clean = await page.evaluate(async (timeout) => {
      const UI = (await import(new URL('app/ui.js', location.href).href)).default;
      const rfb = UI.rfb;
      const done = new Promise((resolve) => {
        rfb.addEventListener('disconnect', (e) => resolve(e.detail.clean));
        setTimeout(() => resolve('timeout'), timeout);
      });
      UI.disconnect();
      return done;
    }, STEP);
    assert.equal(clean, true, 'clean disconnect');
  });
}

test('noVNC over ws:// through our proxy to TigerVNC shows the desktop', (t) => novnc(t, 'http'));
test('noVNC over wss:// on the same port shows the desktop', (t) => novnc(t, 'https'));

async function lineConsole(t, scheme) {
  await withPage(t, async (page) => {
    const url = `${scheme}://localhost:${CONSOLE_PORT}/telnet.html`;
    const resp = await page.goto(url);
    assert.equal(resp.status(), 200, `GET ${url}`);
    const output = page.locator('#output');
    await page.click('#connect');
    await page.locator('#status[data-state=connected]').waitFor();
    await assertEventually(output, /Welcome to the websockify line demo/);
    assert.match(await output.textContent(), /subprotocol "binary"/);

    await page.fill('#line', 'hello websockify');
    await page.press('#line', 'Enter');
    await assertEventually(output, /> HELLO WEBSOCKIFY\n/);

    // multi-byte UTF-8 both ways
    await page.fill('#line', 'grüße, ĳssel → ok');
    await page.press('#line', 'Enter');
    await assertEventually(output, /> GRÜSSE, ĲSSEL → OK\n/);

    if (scheme === 'http') await page.screenshot({ path: path.join(ARTIFACTS, 'console-ws.png') });

    // the service closes on "quit": the page sees the close
    await page.fill('#line', 'quit');
    await page.press('#line', 'Enter');
    await assertEventually(output, /Bye\.\n/);
    await assertEventually(output, /\[disconnected: code \d+/);
    const closed = (await output.textContent()).match(/\[disconnected: code \d+[^\]]*\]/)[0];
    t.diagnostic(`after quit: ${closed}, status ${await page.locator('#status').getAttribute('data-state')}`);
    // The target ended the session: the proxy says so with a normal close and its reason.
    assert.equal(closed, '[disconnected: code 1000, Target closed]');
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'disconnected');
  });
}

// Polls a locator's text until it matches (bounded by STEP).
async function assertEventually(locator, re) {
  const deadline = Date.now() + STEP;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent()) ?? '';
    if (re.test(text)) return;
    await locator.page().waitForTimeout(50);
  }
  assert.match(text, re);
}

test('line console page over ws:// sends a line and shows the answer', (t) => lineConsole(t, 'http'));
test('line console page over wss:// sends a line and shows the answer', (t) => lineConsole(t, 'https'));
